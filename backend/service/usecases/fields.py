"""What the use cases add to a parsed request (``messages.parse_request`` has checked every field's
type and bounds): the drawn seed, the sampler's settings, lengths in model frames, and the checks that
need the dataset or the whole array (docs/protocol.md, Bounds)."""

from __future__ import annotations

import math
import random
from typing import Any

import numpy as np

from backend.inference.compose import exact_frames
from backend.inference.pipeline import SamplingSettings, frames_to_tokens
from backend.portable import messages
from backend.portable.errors import InputError


def pick_seed(seed: int | None) -> int:
    """The request's seed, or a fresh one (reported back so the take can be reproduced); drawn ones
    stay below 2**31 for the add-on's signed seed property."""
    return random.randint(0, messages.MAX_DRAWN_SEED) if seed is None else seed


def sampling_settings(options: messages.SamplingOptions, seed: int, **defaults: Any) -> SamplingSettings:
    """The sampler's settings: the request's, else ``defaults``, else the pipeline's."""
    return SamplingSettings(seed=seed, **{**defaults, **options.given()})


def model_frames(request: messages.GenerateRequest, fps: float) -> list[int | None]:
    """One length in model frames to generate (``None``: the estimator's) per take, prompt-major like
    the takes. ``frames`` are taken as they are (rounded down to whole tokens by the pipeline);
    ``seconds`` are generated past the end, up to whole tokens, so that the take can be trimmed to
    exactly :func:`take_frames` after resampling (docs/protocol.md, generate)."""
    if request.seconds is not None:
        dst = request.retarget.dst_fps if request.retarget is not None else None
        per_prompt = [None if s is None else covering_frames(s, fps, dst) for s in request.seconds]
    else:
        per_prompt = list(request.frames or [None] * len(request.prompts))
    return [f for f in per_prompt for _ in range(request.variations)]


def covering_frames(seconds: float, fps: float, dst_fps: float | None = None) -> int:
    """Model frames to generate for exactly ``exact_frames(seconds, ·)`` frames at the model's ``fps``
    and at ``dst_fps``: whole tokens covering both (the longest clip caps it; below one token the
    pipeline refuses the length). When the keys at ``dst_fps`` would need more than the longest clip
    while the model frames fit (9.8 s at 25 or 30 fps: 197 frames), the longest clip it is: the last
    keys, less than one model frame past its end, hold its last pose (``solver.retarget``'s
    ``frame_count``), so round(S × dst_fps) keys are still delivered (docs/protocol.md, generate)."""
    model_need = exact_frames(seconds, fps)
    if model_need < messages.UNIT_LENGTH:
        return max(1, model_need)
    need = model_need
    if dst_fps:
        keys = exact_frames(seconds, dst_fps)
        need = max(need, math.ceil((keys - 1) * fps / dst_fps - 1e-9) + 1)
    covering = -(-need // messages.UNIT_LENGTH) * messages.UNIT_LENGTH
    if covering > messages.MAX_MOTION_FRAMES and model_need <= messages.MAX_MOTION_FRAMES:
        return messages.MAX_MOTION_FRAMES
    return covering


def take_frames(request: messages.GenerateRequest, fps: float) -> list[int | None]:
    """Per take, the exact frame count at ``fps`` its ``seconds`` ask for (None: ``frames`` or auto)."""
    per_prompt = list(request.seconds) if request.seconds is not None else [None] * len(request.prompts)
    return [None if s is None else exact_frames(s, fps)
            for s in per_prompt for _ in range(request.variations)]


def check_before_loading(settings: SamplingSettings, frames: list[int | None] | None = None) -> None:
    """Refuse bad sampling settings and lengths before the models are loaded (seconds, on a first
    request); the pipeline checks them again, cheaply."""
    settings.validate()
    for frame_count in frames or ():
        if frame_count is not None:
            frames_to_tokens(frame_count)


def stage_timings(started: float, loaded: float, generated: float, done: float,
                  load_units: int) -> dict[str, float]:
    """A result's ``timings`` in seconds from the use case's ``perf_counter`` marks: loading (0 when the
    models were already loaded), the model's generation, retargeting, and the whole job."""
    return {"load": round(loaded - started, 4) if load_units else 0.0,
            "generate": round(generated - loaded, 4), "retarget": round(done - generated, 4),
            "total": round(done - started, 4)}


def float_array(value: Any, name: str, trailing: tuple[int, ...]) -> np.ndarray:
    """``value`` as float32 with the dataset's trailing shape and finite values (the parser has checked
    the rank and the size; the joint and feature counts depend on the dataset)."""
    array = np.asarray(value, dtype=np.float32)
    if array.ndim != len(trailing) + 1 or tuple(array.shape[1:]) != trailing or array.shape[0] < 1:
        want = "(frames, " + ", ".join(map(str, trailing)) + ")"
        raise InputError(f"{name!r} has shape {tuple(array.shape)}, expected {want}.",
                         f"Send {name!r} with shape {want}.")
    if not np.isfinite(array).all():
        raise InputError(f"{name!r} contains NaN or infinite values.", "Check the source animation.")
    return array
