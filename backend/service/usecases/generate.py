"""``generate``: text to motion for every prompt and variation, optionally retargeted onto a rig."""

from __future__ import annotations

import time
from typing import Any

from backend.inference.sampling import job_units
from backend.portable.errors import InputError
from backend.service.jobs import Job, JobProgress, check_cancel
from backend.service.state import ServiceState
from backend.service.usecases.fields import (
    check_before_loading,
    field,
    frames_from_request,
    pick_seed,
    prompts_from_request,
    sampling_settings,
)
from backend.service.usecases.rig_target import retarget_target


def run(request: dict[str, Any], job: Job, state: ServiceState) -> dict[str, Any]:
    config = state.config
    started = time.perf_counter()
    base_prompts = prompts_from_request(request)
    variations = field(request, "variations", int, 1)
    if variations < 1:
        raise InputError(f"variations must be 1 or more, got {variations}.", "Ask for at least one take.")
    frames = frames_from_request(request, len(base_prompts), variations, config.fps)
    prompts = [p for p in base_prompts for _ in range(variations)]
    seed = pick_seed(request)
    settings = sampling_settings(request, seed)
    check_before_loading(settings, frames)
    target = retarget_target(request.get("retarget"), config.fps)

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
    for i, prompt in enumerate(prompts):
        length = int(batch.lengths[i])
        joints = batch.joints[i, :length]
        take: dict[str, Any] = {"prompt": prompt, "seed": seed, "index": i, "frames": length,
                                "fps": float(batch.fps), "joints": joints}
        if target:
            check_cancel(job)
            take["retarget"] = target.run(joints, float(batch.fps))
            take["mapping"] = target.mapping.to_dict()
            progress.report("retarget", progress.done + 1)
        takes.append(take)
    progress.finish()
    done = time.perf_counter()
    return {"takes": takes, "timings": {
        "load": round(loaded - started, 4) if load_units else 0.0,
        "generate": round(generated - loaded, 4), "retarget": round(done - generated, 4),
        "total": round(done - started, 4)}}
