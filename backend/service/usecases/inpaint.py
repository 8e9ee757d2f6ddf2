"""``inpaint``: regenerate a range of a source motion (features, joints or a rig's pose) from a prompt."""

from __future__ import annotations

import math
import time
from typing import Any

from backend.inference.compose import (
    SLIDE_CONTEXT_TOKENS,
    check_long_inpaint_range,
    inpaint_long,
    long_inpaint_units,
    needs_long_inpaint,
)
from backend.inference.pipeline import INPAINT_RES_COND_SCALE, inpaint_window
from backend.inference.sampling import job_units
from backend.motion import skeleton as sk
from backend.portable import messages
from backend.service.jobs import Job, JobProgress, check_cancel
from backend.service.state import ServiceState
from backend.service.usecases.fields import check_before_loading, pick_seed, sampling_settings, stage_timings
from backend.service.usecases.sources import read_source


def run(request: messages.InpaintRequest, job: Job, state: ServiceState) -> messages.TakesResult:
    """Regenerate ``[start, end)`` of a source motion given in its own fps (features, joints or a
    rig's posed bone matrices); the answer covers the whole source span."""
    config = state.config
    started = time.perf_counter()
    prompt = request.prompt
    model_fps = config.fps
    read = read_source(request.source, request.retarget, config, job)
    model_source, src_fps, source_frames = read.model_source, read.src_fps, read.source_frames
    target, placement = read.target, read.placement
    start, end = request.start, request.end       # inside the source: parse_request checked that
    model_frames = int(model_source.shape[0])
    scale = model_fps / src_fps
    start_m = max(0, min(model_frames - 1, math.floor(start * scale)))
    end_m = max(start_m + 1, min(model_frames, math.ceil(end * scale)))

    seed = pick_seed(request.seed)
    # The official edit script's residual guidance, unless the request sets its own.
    settings = sampling_settings(request.sampling, seed, res_cond_scale=INPAINT_RES_COND_SCALE)
    check_before_loading(settings)
    load_units = 0 if state.loaded else 1
    tail = 1 if target else 0
    # A range longer than one window (188 model frames) is filled by sliding windows between the
    # source's tokens on both sides (docs/compose.md, "Long in-betweens").
    long = needs_long_inpaint(start_m, end_m, model_frames)
    if long:                                      # over 300 s: refused before the models load
        check_long_inpaint_range(start_m, end_m, model_frames, model_fps)
    units = long_inpaint_units(start_m, end_m, model_frames, settings) if long else job_units(settings.steps)
    progress = JobProgress(job, load_units + units + tail, config.step_delay)
    progress.report("start", 0)
    pipeline = state.ensure_pipeline(progress, job)
    loaded = time.perf_counter()
    if long:
        batch = inpaint_long(pipeline, model_source, start_m, end_m, prompt, settings, cancel=job.cancel,
                             progress=progress.pipeline_callback(load_units, tail))
        window = (int(batch.start) - SLIDE_CONTEXT_TOKENS * sk.UNIT_LENGTH,
                  int(batch.end) + SLIDE_CONTEXT_TOKENS * sk.UNIT_LENGTH)
        window = (max(0, window[0]), min(model_frames // sk.UNIT_LENGTH * sk.UNIT_LENGTH, window[1]))
    else:
        # A source longer than the 196 frames the models know is inpainted inside a token-aligned window
        # around the range; the pipeline does that and reports the range in the whole source's frames.
        window = inpaint_window(start_m, end_m, model_frames)
        window = (0, model_frames) if window is None else (window, window + sk.MAX_MOTION_FRAMES)
        batch = pipeline.inpaint(model_source, start_m, end_m, prompt, settings, cancel=job.cancel,
                                 regen_residual_everywhere=request.regen_residual_everywhere,
                                 progress=progress.pipeline_callback(load_units, tail))
    generated = time.perf_counter()
    joints = batch.joints[0, :int(batch.lengths[0])]
    assert batch.start is not None and batch.end is not None
    widened = (int(batch.start), int(batch.end))
    length = int(joints.shape[0])
    back = src_fps / model_fps
    driven: dict[str, Any] = {}
    if target:
        check_cancel(job)
        # The answer equals the source outside the range, so the root must follow the source
        # there: "in place" would move the whole clip (the add-on never sends it for inpaint).
        target.in_place = False
        # Exactly the source's frame count when keyed at its rate, so the whole range gets keys.
        same_rate = abs(target.dst_fps - src_fps) <= 1e-6 * src_fps
        driven = {"retarget": target.run(joints, float(batch.fps), transform=placement,
                                         frame_count=source_frames if same_rate else None),
                  "mapping": target.mapping.to_dict()}
        progress.report("retarget", progress.done + 1)
    fps = float(batch.fps)
    take = messages.Take(
        prompt=prompt, seed=seed, index=0, frames=length, fps=fps, joints=joints,
        range={"start": widened[0], "end": widened[1], "fps": fps},
        requested_range={"start": start_m, "end": end_m, "fps": fps},
        window={"start": window[0], "end": window[1], "fps": fps},
        source_range={"start": max(0, math.floor(widened[0] * back)),
                      "end": min(source_frames, math.ceil(widened[1] * back)), "fps": src_fps},
        source_frames=source_frames, **driven)
    progress.finish()
    done = time.perf_counter()
    timings = stage_timings(started, loaded, generated, done, load_units)
    return messages.TakesResult(takes=(take,), timings=timings)
