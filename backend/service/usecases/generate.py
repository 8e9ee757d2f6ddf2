"""``generate``: text to motion for every prompt and variation, optionally retargeted onto a rig."""

from __future__ import annotations

import time
from typing import Any

from backend.inference.sampling import job_units
from backend.portable import messages
from backend.service.jobs import Job, JobProgress, check_cancel
from backend.service.state import ServiceState
from backend.service.usecases.fields import (
    check_before_loading,
    model_frames,
    pick_seed,
    sampling_settings,
    stage_timings,
    take_frames,
)
from backend.service.usecases.rig_target import retarget_target


def run(request: messages.GenerateRequest, job: Job, state: ServiceState) -> messages.TakesResult:
    config = state.config
    started = time.perf_counter()
    frames = model_frames(request, config.fps)
    prompts = [p for p in request.prompts for _ in range(request.variations)]
    seed = pick_seed(request.seed)
    settings = sampling_settings(request.sampling, seed)
    check_before_loading(settings, frames)
    target = retarget_target(request.retarget, config.fps)
    if target and frames and all(f is not None for f in frames):
        # Waypoints after the shortest take's end fail now, not after generating (lengths round
        # down to whole tokens, docs/protocol.md generate).
        shortest = min(int(f) // messages.UNIT_LENGTH * messages.UNIT_LENGTH for f in frames if f is not None)
        target.check_steering(shortest, config.fps)

    load_units = 0 if state.loaded else 1
    tail = len(prompts) if target else 0
    total = load_units + job_units(settings.steps) + tail
    progress = JobProgress(job, total, config.step_delay)
    progress.report("start", 0)
    pipeline = state.ensure_pipeline(progress, job)
    loaded = time.perf_counter()
    batch = pipeline.text_to_motion(prompts, frames, settings, cancel=job.cancel,
                                    progress=progress.pipeline_callback(load_units, tail))
    generated = time.perf_counter()
    takes = []
    exact = take_frames(request, config.fps)                  # seconds: exactly round(s · fps) frames
    keys = take_frames(request, target.dst_fps) if target else exact
    for i, prompt in enumerate(prompts):
        length = int(batch.lengths[i]) if exact[i] is None else min(exact[i], int(batch.lengths[i]))
        joints = batch.joints[i, :int(batch.lengths[i])]
        driven: dict[str, Any] = {}
        if target:
            check_cancel(job)
            driven = {"retarget": target.run(joints, float(batch.fps), frame_count=keys[i]),
                      "mapping": target.mapping.to_dict()}
            progress.report("retarget", progress.done + 1)
        joints = joints[:length]
        takes.append(messages.Take(prompt=prompt, seed=seed, index=i, frames=length, fps=float(batch.fps),
                                   joints=joints, **driven))
    progress.finish()
    done = time.perf_counter()
    timings = stage_timings(started, loaded, generated, done, load_units)
    return messages.TakesResult(takes=tuple(takes), timings=timings)
