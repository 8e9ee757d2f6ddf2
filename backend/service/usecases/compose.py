"""``compose``: a long take from a timeline of segments — optionally a loop, a continuation or
lead-in of a source motion, or one segment of an earlier take regenerated (docs/compose.md)."""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from backend.inference import compose as recipe
from backend.motion import skeleton as sk
from backend.portable import messages
from backend.portable.errors import InputError
from backend.service.jobs import Job, JobProgress, check_cancel
from backend.service.state import ServiceState
from backend.service.usecases.fields import check_before_loading, pick_seed, sampling_settings, stage_timings
from backend.service.usecases.rig_target import retarget_target
from backend.service.usecases.sources import SourceMotion, read_source


def take_fps(request: messages.ComposeRequest, default: float) -> float:
    """The take's frame rate: ``fps``, else ``retarget.dst_fps``, else ``default``; both given must agree."""
    dst = request.retarget.dst_fps if request.retarget is not None else None
    if request.fps is not None and dst is not None and abs(request.fps - dst) > 1e-6 * dst:
        raise InputError(f"The take's fps ({request.fps:g}) and retarget.dst_fps ({dst:g}) differ.",
                         "Send one frame rate: the scene's.")
    return request.fps if request.fps is not None else dst if dst is not None else default


def check_timeline(segments: list[recipe.SegmentSpec], request: messages.ComposeRequest, fps: float,
                   model_fps: float) -> recipe.Plan:
    """The plan's checks before loading (automatic segments counted at their longest, 9.8 s; the
    pipeline checks them again once estimated): boundaries, transitions, a regenerated take's codes."""
    longest = sk.MAX_MOTION_FRAMES // sk.UNIT_LENGTH
    counts = [None if s.seconds is not None else longest for s in segments]
    direction = request.direction if request.continue_from is not None else None
    plan = recipe.plan_timeline(segments, counts, 0, request.transition, request.loop, fps, model_fps,
                                direction)
    if request.regenerate is not None:
        codes = np.asarray(request.regenerate.codes)
        if codes.shape != (plan.tokens, 6):
            raise InputError(f"regenerate.codes holds {codes.shape[0]} tokens but the take's segments make "
                             f"{plan.tokens} at {fps:g} fps.",
                             "Send the take's own codes with its segments, transition, loop and fps "
                             "unchanged.")
        recipe.check_token_values(codes)          # before loading, and before any int64 cast
    return plan


def run(request: messages.ComposeRequest, job: Job, state: ServiceState) -> messages.TakesResult:
    config = state.config
    started = time.perf_counter()
    source: SourceMotion | None = None
    if request.continue_from is not None:
        # The answer is keyed at the take's fps (default: the source's) onto the source's rig.
        source_fps = request.continue_from.fps
        fps = take_fps(request, config.fps if source_fps is None else source_fps)
    else:
        fps = take_fps(request, config.fps)
    segments = [recipe.SegmentSpec(s.prompt, s.seconds, s.seed) for s in request.segments]
    plan = check_timeline(segments, request, fps, config.fps)     # before reading (FK of) the source
    if request.continue_from is not None:
        source = read_source(request.continue_from, request.retarget, config, job, dst_fps=fps)
        if len(source.model_source) < sk.UNIT_LENGTH:
            raise InputError(f"The source motion has {source.source_frames} frames, less than one token "
                             f"({sk.UNIT_LENGTH / config.fps:g} s).", "Continue from a longer animation.")
        target = source.target
    else:
        target = retarget_target(request.retarget, fps)
    seed = pick_seed(request.seed)
    settings = sampling_settings(request.sampling, seed)
    check_before_loading(settings)

    load_units = 0 if state.loaded else 1
    tail = 1 if target else 0
    # The whole job's total, known now unless a segment's length is left to the estimator (then it
    # grows once, when the lengths are drawn).
    context = 0 if source is None else recipe.context_tokens(len(source.model_source), config.fps)
    index = None if request.regenerate is None else request.regenerate.index
    units = recipe.job_units(plan, settings, context, index)
    progress = JobProgress(job, load_units + units + tail, config.step_delay)
    progress.report("start", 0)
    pipeline = state.ensure_pipeline(progress, job)
    loaded = time.perf_counter()
    regenerate = request.regenerate
    take = recipe.compose(
        pipeline, segments, settings, transition=request.transition, loop=request.loop, fps=fps,
        source=None if source is None else source.model_source, direction=request.direction,
        previous_codes=None if regenerate is None else np.asarray(regenerate.codes).astype(np.int64),
        regenerate_index=None if regenerate is None else regenerate.index,
        progress=progress.pipeline_callback(load_units, tail), cancel=job.cancel)
    generated = time.perf_counter()
    driven: dict[str, Any] = {}
    if target:
        check_cancel(job)
        if source is not None:
            target.in_place = False       # a continuation follows the source's root
        driven = {"retarget": target.run(take.joints, take.fps, frame_count=take.frames,
                                         transform=None if source is None else source.placement),
                  "mapping": target.mapping.to_dict()}
        progress.report("retarget", progress.done + 1)
    loop = None
    if take.loop_offset is not None:
        offset = np.zeros(3) if target is not None and target.in_place else take.loop_offset
        loop = {"offset": [float(v) for v in offset]}
    result = messages.Take(
        prompt=" | ".join(s["prompt"] for s in take.segments), seed=seed, index=0, frames=take.frames,
        fps=take.fps, joints=take.joints, segments=tuple(take.segments), codes=take.codes.astype(np.int64),
        loop=loop, range=None if take.changed is None else {"start": take.changed[0], "end": take.changed[1],
                                                            "fps": take.fps}, **driven)
    progress.finish()
    done = time.perf_counter()
    timings = stage_timings(started, loaded, generated, done, load_units)
    return messages.TakesResult(takes=(result,), timings=timings)
