"""Reading a request's fields, checked (docs/protocol.md, Requests)."""

from __future__ import annotations

import random
from typing import Any

import numpy as np

from backend.inference.pipeline import SamplingSettings, check_prompts, frames_to_tokens
from backend.portable.errors import InputError

MAX_SEED = 2**31 - 1        # Blender's IntProperty is 32-bit signed


def field(message: dict[str, Any], name: str, kind: type | tuple[type, ...], default: Any = None,
          required: bool = False) -> Any:
    """``message[name]`` checked against ``kind`` (ints are accepted where floats are wanted)."""
    value = message.get(name)
    if value is None:
        if required:
            raise InputError(f"The {message.get('type', 'request')!r} request needs {name!r}.",
                             f"Add \"{name}\" to the request (docs/protocol.md).")
        return default
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if float in kinds and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
        names = " or ".join(k.__name__ for k in kinds)
        raise InputError(f"{name!r} must be {names}, got {value!r}.",
                         f"Send {name!r} as {names} (docs/protocol.md).")
    return value


SETTING_FIELDS: dict[str, type] = {
    "steps": int, "cond_scale": float, "res_cond_scale": float, "temperature": float, "topk": float,
    "flow": str, "precision": str,
}


def sampling_settings(message: dict[str, Any], seed: int) -> SamplingSettings:
    values = {name: field(message, name, kind) for name, kind in SETTING_FIELDS.items()}
    return SamplingSettings(seed=seed, **{k: v for k, v in values.items() if v is not None})


def pick_seed(message: dict[str, Any]) -> int:
    """The request's seed, or a fresh one (reported back so the take can be reproduced)."""
    seed = field(message, "seed", int)
    if seed is None:
        return random.randint(0, MAX_SEED)
    if seed < 0:
        raise InputError(f"The seed must be 0 or more, got {seed}.", "Use a seed between 0 and 2147483647.")
    return seed


def expand_per_prompt(value: Any, name: str, count: int, variations: int) -> list[Any]:
    """A scalar, ``None`` or one value per prompt, repeated for each variation."""
    if not isinstance(value, list):
        return [value] * (count * variations)
    if len(value) != count:
        raise InputError(f"{name!r} has {len(value)} values for {count} prompts.",
                         f"Give one {name!r} per prompt, a single value, or null for automatic.")
    return [v for v in value for _ in range(variations)]


def frames_from_request(message: dict[str, Any], prompt_count: int, variations: int,
                        fps: float) -> list[int | None]:
    """``frames`` (model frames) or ``seconds``; ``null`` lets the length estimator choose."""
    if message.get("frames") is not None and message.get("seconds") is not None:
        raise InputError("The request gives both 'frames' and 'seconds'.", "Send one of the two.")
    if message.get("seconds") is not None:
        seconds = expand_per_prompt(message["seconds"], "seconds", prompt_count, variations)
        out: list[int | None] = []
        for s in seconds:
            if s is not None and (isinstance(s, bool) or not isinstance(s, (int, float)) or s <= 0):
                raise InputError(f"A duration must be a positive number of seconds, got {s!r}.",
                                 "Send seconds > 0, or null for an automatic length.")
            out.append(None if s is None else max(1, int(round(s * fps))))
        return out
    frames = expand_per_prompt(message.get("frames"), "frames", prompt_count, variations)
    for f in frames:
        if f is not None and (isinstance(f, bool) or not isinstance(f, int) or f <= 0):
            raise InputError(f"A length must be a positive whole number of frames, got {f!r}.",
                             "Send frames > 0, or null for an automatic length.")
    return frames


def prompts_from_request(message: dict[str, Any]) -> list[str]:
    prompts = message.get("prompts")
    if prompts is None and message.get("prompt") is not None:
        prompts = [message["prompt"]]
    if not isinstance(prompts, list) or not prompts:
        raise InputError("The request has no prompt.", "Send \"prompts\": [\"a person walks forward\"].")
    return check_prompts(prompts)


def check_before_loading(settings: SamplingSettings, frames: list[int | None] = ()) -> None:  # type: ignore[assignment]
    """Refuse bad sampling settings and lengths before the models are loaded (seconds, on a first
    request); the pipeline checks them again, cheaply."""
    settings.validate()
    for frame_count in frames:
        if frame_count is not None:
            frames_to_tokens(frame_count)


def float_array(value: Any, name: str, trailing: tuple[int, ...]) -> np.ndarray:
    """``value`` (a decoded array or nested lists) as float32 numpy with the given trailing shape."""
    try:
        array = np.asarray(value, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{name!r} is not a numeric array ({exc}).", "Send it as an encoded array.") from exc
    if array.ndim != len(trailing) + 1 or tuple(array.shape[1:]) != trailing or array.shape[0] < 1:
        want = "(frames, " + ", ".join(map(str, trailing)) + ")"
        raise InputError(f"{name!r} has shape {tuple(array.shape)}, expected {want}.",
                         f"Send {name!r} with shape {want}.")
    if not np.isfinite(array).all():
        raise InputError(f"{name!r} contains NaN or infinite values.", "Check the source animation.")
    return array
