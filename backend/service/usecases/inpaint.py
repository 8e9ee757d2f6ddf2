"""``inpaint``: regenerate a range of a source motion (features, joints or a rig's pose) from a prompt."""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np

from backend.inference.pipeline import INPAINT_RES_COND_SCALE, inpaint_window
from backend.inference.sampling import job_units
from backend.motion import skeleton as sk
from backend.portable.errors import InputError
from backend.retarget.inverse import joints_and_transform_from_pose
from backend.retarget.mapping import require_complete
from backend.retarget.resample import resample_positions
from backend.service.jobs import Job, JobProgress, check_cancel
from backend.service.state import ServiceState
from backend.service.usecases.fields import (
    check_before_loading,
    field,
    float_array,
    pick_seed,
    prompts_from_request,
    sampling_settings,
)
from backend.service.usecases.rig_target import RetargetTarget, mapped_rig, retarget_target


def run(request: dict[str, Any], job: Job, state: ServiceState) -> dict[str, Any]:
    """Regenerate ``[start, end)`` of a source motion given in its own fps (features, joints or a
    rig's posed bone matrices); the answer covers the whole source span."""
    config = state.config
    started = time.perf_counter()
    source = request.get("source")
    if not isinstance(source, dict):
        raise InputError("The inpaint request has no 'source'.",
                         "Send \"source\": {\"kind\": \"pose\"|\"joints\"|\"features\", ...}.")
    prompt = prompts_from_request({"prompt": request.get("prompt"), "prompts": request.get("prompts")})[0]
    model_fps = config.fps
    src_fps = field(source, "fps", float, model_fps)
    if not (src_fps > 0 and math.isfinite(src_fps)):
        raise InputError(f"The source fps must be positive, got {src_fps}.",
                         "Send the scene's frame rate.")
    kind = field(source, "kind", str, required=True)
    joint_count = sk.NUM_JOINTS[config.dataset]
    target: RetargetTarget | None
    placement = None      # the source → rig transform of a pose source retargeted onto its own rig
    if kind == "pose":
        # The pose is read through the source rig's mapping; the answer is retargeted onto the same
        # rig (the add-on writes it back there) unless the retarget section names another one.
        source_rig, source_mapping = mapped_rig(source)
        require_complete(source_mapping)
        retarget_spec = dict(request.get("retarget") or {})
        same_rig = retarget_spec.get("rig") is None
        target = retarget_target(retarget_spec, src_fps,
                                 mapped=(source_rig, source_mapping) if same_rig else None)
        matrices = np.asarray(field(source, "pose_matrices", object, required=True), dtype=np.float32)
        if matrices.ndim != 4 or matrices.shape[2:] != (4, 4) or matrices.shape[0] < 2:
            raise InputError(f"pose_matrices has shape {matrices.shape}, expected (frames, bones, 4, 4).",
                             "Send every bone's posed matrix for every source frame.")
        assert target is not None      # (a pose source always has a target: its own rig by default)
        source_joints, read_transform = joints_and_transform_from_pose(
            source_rig, source_mapping, matrices, setup=target.analysis() if same_rig else None)
        # Back onto the same rig through the transform that read it, so retargeting the untouched
        # source reproduces the rig's own motion (height, scale) and the range joins it seamlessly.
        if same_rig:
            placement = read_transform
        source_frames = int(matrices.shape[0])
    else:
        target = retarget_target(request.get("retarget"), src_fps)
        if kind == "joints":
            source_joints = float_array(field(source, "data", object, required=True), "source.data",
                                        (joint_count, 3))
            source_frames = int(source_joints.shape[0])
        elif kind == "features":
            if abs(src_fps - model_fps) > 1e-6:
                raise InputError(f"Feature sources must be at the model's {model_fps:g} fps, "
                                 f"got {src_fps:g}.", "Send joints or a pose; those are resampled.")
            source_joints = None
            features = float_array(field(source, "data", object, required=True), "source.data",
                                   (sk.FEATURE_DIM[config.dataset],))
            source_frames = int(features.shape[0])
        else:
            raise InputError(f"Unknown source kind {kind!r}.", "Use 'pose', 'joints' or 'features'.")

    start = field(request, "start", (int, float), required=True)
    end = field(request, "end", (int, float), required=True)
    if not 0 <= start < end <= source_frames:
        raise InputError(f"The range [{start}, {end}) is not inside the source's {source_frames} frames.",
                         "Choose a range with start < end inside the animation.")
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

    seed = pick_seed(request)
    settings = sampling_settings(request, seed)
    if request.get("res_cond_scale") is None:  # the official edit script's residual guidance
        settings.res_cond_scale = INPAINT_RES_COND_SCALE
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
                             regen_residual_everywhere=bool(field(request, "regen_residual_everywhere",
                                                                  bool, False)),
                             progress=progress.pipeline_callback(load_units, tail))
    generated = time.perf_counter()
    joints = batch.joints[0, :int(batch.lengths[0])]
    assert batch.start is not None and batch.end is not None
    widened = (int(batch.start), int(batch.end))
    length = int(joints.shape[0])
    back = src_fps / model_fps
    take: dict[str, Any] = {
        "prompt": prompt, "seed": seed, "index": 0, "frames": length, "fps": float(batch.fps),
        "joints": joints,
        "range": {"start": widened[0], "end": widened[1], "fps": float(batch.fps)},
        "requested_range": {"start": start_m, "end": end_m, "fps": float(batch.fps)},
        "window": {"start": window[0], "end": window[1], "fps": float(batch.fps)},
        "source_range": {"start": max(0, math.floor(widened[0] * back)),
                         "end": min(source_frames, math.ceil(widened[1] * back)), "fps": src_fps},
        "source_frames": source_frames,
    }
    if target:
        check_cancel(job)
        # The answer equals the source outside the range, so the root must follow the source
        # there: "in place" would move the whole clip (the add-on never sends it for inpaint).
        target.in_place = False
        # Exactly the source's frame count when keyed at its rate, so the whole range gets keys.
        same_rate = abs(target.dst_fps - src_fps) <= 1e-6 * src_fps
        take["retarget"] = target.run(joints, float(batch.fps), transform=placement,
                                      frame_count=source_frames if same_rate else None)
        take["mapping"] = target.mapping.to_dict()
        progress.report("retarget", progress.done + 1)
    progress.finish()
    done = time.perf_counter()
    return {"takes": [take], "timings": {
        "load": round(loaded - started, 4) if load_units else 0.0,
        "generate": round(generated - loaded, 4), "retarget": round(done - generated, 4),
        "total": round(done - started, 4)}}
