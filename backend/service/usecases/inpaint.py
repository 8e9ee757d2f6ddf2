"""``inpaint``: regenerate a range of a source motion (features, joints or a rig's pose) from a prompt."""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np

from backend.inference.pipeline import INPAINT_RES_COND_SCALE, inpaint_window
from backend.inference.sampling import job_units
from backend.motion import skeleton as sk
from backend.portable import messages
from backend.portable.errors import InputError
from backend.retarget.inverse import joints_and_transform_from_pose
from backend.retarget.mapping import require_complete
from backend.retarget.resample import resample_positions
from backend.service.jobs import Job, JobProgress, check_cancel
from backend.service.state import ServiceState
from backend.service.usecases.fields import check_before_loading, float_array, pick_seed, sampling_settings
from backend.service.usecases.rig_target import RetargetTarget, mapped_rig, retarget_target


def run(request: messages.InpaintRequest, job: Job, state: ServiceState) -> messages.TakesResult:
    """Regenerate ``[start, end)`` of a source motion given in its own fps (features, joints or a
    rig's posed bone matrices); the answer covers the whole source span."""
    config = state.config
    started = time.perf_counter()
    prompt = request.prompt
    model_fps = config.fps
    source = request.source
    src_fps = model_fps if source.fps is None else source.fps
    target: RetargetTarget | None
    placement = None      # the source → rig transform of a pose source retargeted onto its own rig
    source_joints: np.ndarray | None = None
    if isinstance(source, messages.PoseSource):
        # The pose is read through the source rig's mapping; the answer is retargeted onto the same
        # rig (the add-on writes it back there) unless the retarget section names another one.
        source_rig, source_mapping = mapped_rig(source.rig, source.overrides)
        require_complete(source_mapping)
        retarget_spec = request.retarget or messages.RetargetSpec()
        same_rig = retarget_spec.rig is None
        target = retarget_target(retarget_spec, src_fps,
                                 mapped=(source_rig, source_mapping) if same_rig else None)
        matrices = float_array(source.pose_matrices, "source.pose_matrices",
                               (len(source.rig.bone_names), 4, 4))
        assert target is not None      # (a pose source always has a target: its own rig by default)
        source_joints, read_transform = joints_and_transform_from_pose(
            source_rig, source_mapping, matrices, setup=target.analysis() if same_rig else None)
        # Back onto the same rig through the transform that read it, so retargeting the untouched
        # source reproduces the rig's own motion (height, scale) and the range joins it seamlessly.
        if same_rig:
            placement = read_transform
        source_frames = int(matrices.shape[0])
    else:
        target = retarget_target(request.retarget, src_fps)
        if isinstance(source, messages.JointsSource):
            source_joints = float_array(source.data, "source.data", (sk.NUM_JOINTS[config.dataset], 3))
            source_frames = int(source_joints.shape[0])
        else:
            if abs(src_fps - model_fps) > 1e-6:
                raise InputError(f"Feature sources must be at the model's {model_fps:g} fps, "
                                 f"got {src_fps:g}.", "Send joints or a pose; those are resampled.")
            features = float_array(source.data, "source.data", (sk.FEATURE_DIM[config.dataset],))
            source_frames = int(features.shape[0])

    start, end = request.start, request.end       # inside the source: parse_request checked that
    if source_joints is not None:
        check_cancel(job)
        if abs(src_fps - model_fps) > 1e-6:
            source_joints = resample_positions(source_joints, src_fps, model_fps)
        model_source = np.asarray(source_joints, dtype=np.float32)
    else:
        model_source = features
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
    total = load_units + job_units(settings.steps) + tail
    progress = JobProgress(job, total, config.step_delay)
    progress.report("start", 0)
    pipeline = state.ensure_pipeline(progress, job)
    loaded = time.perf_counter()
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
    return messages.TakesResult(takes=(take,), timings={
        "load": round(loaded - started, 4) if load_units else 0.0,
        "generate": round(generated - loaded, 4), "retarget": round(done - generated, 4),
        "total": round(done - started, 4)})
