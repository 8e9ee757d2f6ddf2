"""``targets``: a take from a prompt that passes through poses keyed on the rig (docs/retargeting.md §12).

1. The keyed poses (``pose_bone.matrix`` of every bone at each target frame) become 22 joints through
   the rig's mapping (``retarget/inverse.py``), with the transform that maps them back onto the rig.
2. A source motion at the model's rate holds each pose over the token its target falls in and moves
   linearly between them; encoded (RVQ-VAE), its tokens at the targets are kept on all six layers and
   every other token is regenerated from the prompt (``pipeline.regenerate``, the masked regeneration
   with an arbitrary keep mask that composing shares).
3. The generated joints are placed on the targets: at each target's model frame the root position and
   heading are the keyed pose's, in between they are interpolated (a piecewise space-time placement).
4. Retargeted onto the rig through the transform of step 1, at the source's fps, then every output
   bone's rotation and the root's location are blended into the user's keys around each target
   (``retarget/pose_targets.py``): exact at the target frames.
"""

from __future__ import annotations

import time

import numpy as np

from backend.inference.pipeline import MAX_FRAMES, TOKEN_FRAMES, heading
from backend.inference.sampling import job_units
from backend.portable import messages
from backend.portable.errors import InputError
from backend.portable.quaternion import wrap_angle
from backend.retarget.inverse import joints_and_transform_from_pose
from backend.retarget.mapping import require_complete
from backend.retarget.pose_targets import MIN_WINDOW, pin_to_keys
from backend.retarget.solver import retarget
from backend.service.jobs import Job, JobProgress, check_cancel
from backend.service.state import ServiceState
from backend.service.usecases.fields import (
    check_before_loading,
    float_array,
    pick_seed,
    sampling_settings,
    stage_timings,
)
from backend.service.usecases.rig_target import mapped_rig, retarget_target


def check_targets(request: messages.TargetsRequest, model_fps: float) -> tuple[list[int], int]:
    """The target frames as whole frames and the take's model frames, or one clear refusal."""
    fps = float(request.source.fps or model_fps)
    problem = messages.pose_target_problem(request.target_frames, request.take_frames, fps, model_fps)
    if problem is not None:
        raise InputError(*problem)
    fractional = [f for f in request.target_frames if abs(f - round(f)) > 1e-6]
    if fractional:
        raise InputError(f"The pose target at frame {fractional[0]:g} is not on a whole frame.",
                         "Key the target poses on whole frames.")
    model = messages.take_model_frames(request.take_frames, fps, model_fps)
    if model > MAX_FRAMES:
        seconds = (request.take_frames - 1) / fps
        raise InputError(f"The take is {request.take_frames} frames ({seconds:.2f} s) long; MoMask makes at "
                         f"most {MAX_FRAMES} model frames "
                         f"({(MAX_FRAMES - 1) / model_fps:.2f} s).",
                         "Shorten the take's frame range (its first to its last frame).")
    frames = [int(round(f)) for f in request.target_frames]
    tokens = {int(f * model_fps / fps) // TOKEN_FRAMES for f in frames}
    if model < 2 * TOKEN_FRAMES or len(tokens) >= model // TOKEN_FRAMES:
        raise InputError(f"The take's {request.take_frames} frames are {model // TOKEN_FRAMES} tokens and "
                         f"the {len(frames)} pose targets pin {len(tokens)} of them: nothing is left to "
                         "generate.",
                         "Make the take longer than its targets, or remove a target.")
    return frames, model


def held_source(poses: np.ndarray, tokens: list[int], model_frames: int) -> np.ndarray:
    """Joints (model_frames, 22, 3): each pose held over its token's 4 frames, linear in between,
    the first and last held to the ends."""
    times: list[float] = []
    rows: list[int] = []
    for i, token in enumerate(tokens):
        times += [TOKEN_FRAMES * token, TOKEN_FRAMES * token + TOKEN_FRAMES - 1]
        rows += [i, i]
    flat = poses.reshape(len(poses), -1)[rows]
    m = np.arange(model_frames, dtype=np.float64)
    out = np.stack([np.interp(m, times, flat[:, c]) for c in range(flat.shape[1])], axis=1)
    return out.reshape(model_frames, *poses.shape[1:]).astype(np.float32)


def _yaw(points: np.ndarray, angle: np.ndarray) -> np.ndarray:
    """Points (T, J, 3) turned about the vertical axis through the origin by ``angle`` (T,) (radians;
    a positive angle increases ``pipeline.heading``)."""
    cos, sin = np.cos(angle)[:, None], np.sin(angle)[:, None]
    out = points.copy()
    out[..., 0] = cos * points[..., 0] + sin * points[..., 2]
    out[..., 2] = -sin * points[..., 0] + cos * points[..., 2]
    return out


def place_on_targets(generated: np.ndarray, poses: np.ndarray, at: np.ndarray, dataset: str) -> np.ndarray:
    """The generated joints (T, 22, 3), canonical frame, moved so that at model frame ``at[i]`` the
    root and heading are ``poses[i]``'s; the yaw and the offset are interpolated linearly between
    targets and held before the first and after the last."""
    motion = generated.astype(np.float64)
    angles, offsets = [], []
    for pose, frame in zip(poses, at, strict=True):
        angle = wrap_angle(heading(pose, dataset) - heading(motion[frame], dataset))
        if angles:                                # unwrapped along the targets
            angle = angles[-1] + wrap_angle(angle - angles[-1])
        turned = _yaw(motion[frame][None], np.array([angle]))[0]
        angles.append(angle)
        offsets.append(pose[0] - turned[0])
    t = np.arange(len(motion), dtype=np.float64)
    angle = np.interp(t, at, angles)
    offset = np.stack([np.interp(t, at, [o[c] for o in offsets]) for c in range(3)], axis=1)
    return (_yaw(motion, angle) + offset[:, None]).astype(np.float32)


def run(request: messages.TargetsRequest, job: Job, state: ServiceState) -> messages.TakesResult:
    config = state.config
    started = time.perf_counter()
    model_fps = config.fps
    source = request.source
    fps = float(source.fps or model_fps)
    frames, model_frames = check_targets(request, model_fps)
    spec = request.retarget or messages.RetargetSpec()
    if spec.rig is not None:
        raise InputError("A take through pose targets drives the rig the poses were read from.",
                         "Leave out retarget.rig (send the rig as source.rig).")
    if spec.dst_fps is not None and abs(spec.dst_fps - fps) > 1e-6 * fps:
        raise InputError(f"The take is keyed at the poses' {fps:g} fps, not {spec.dst_fps:g}.",
                         "Send retarget.dst_fps equal to source.fps, or leave it out.")
    rig, mapping = mapped_rig(source.rig, source.overrides)
    require_complete(mapping)
    target = retarget_target(spec, fps, mapped=(rig, mapping))
    assert target is not None
    matrices = float_array(source.pose_matrices, "source.pose_matrices", (len(source.rig.bone_names), 4, 4))
    seed = pick_seed(request.seed)
    settings = sampling_settings(request.sampling, seed)
    check_before_loading(settings)
    setup = target.analysis()
    poses, placement = joints_and_transform_from_pose(rig, mapping, matrices, setup=setup)
    at = np.array([f * model_fps / fps for f in frames])
    tokens = [int(m) // TOKEN_FRAMES for m in at]

    load_units = 0 if state.loaded else 1
    total = load_units + job_units(settings.steps) + 1
    progress = JobProgress(job, total, config.step_delay)
    progress.report("start", 0)
    pipeline = state.ensure_pipeline(progress, job)
    loaded = time.perf_counter()
    source_tokens = pipeline.encode(held_source(poses, tokens, model_frames))
    keep = np.zeros(len(source_tokens), dtype=bool)
    keep[tokens] = True
    codes = pipeline.regenerate(source_tokens, keep, request.prompt, settings, cancel=job.cancel,
                                progress=progress.pipeline_callback(load_units, 2))
    check_cancel(job)
    motion = pipeline.joints_from_features(pipeline.decode_tokens(codes))
    progress.report("decode", progress.done + 1)
    generated = time.perf_counter()
    anchors = np.clip(np.round(at).astype(np.int64), 0, model_frames - 1)
    joints = place_on_targets(motion, poses, anchors, config.dataset)
    solved = retarget(joints, rig, mapping, src_fps=model_fps, dst_fps=fps, foot_lock=spec.foot_lock,
                      setup=setup, transform=placement, frame_count=request.take_frames)
    pinned = pin_to_keys(solved, rig, frames, matrices,
                         min_window=MIN_WINDOW if request.blend_frames is None else request.blend_frames)
    progress.report("retarget", progress.done + 1)
    take = messages.Take(prompt=request.prompt, seed=seed, index=0, frames=model_frames, fps=float(model_fps),
                         joints=joints, retarget=pinned.result.to_dict(), mapping=mapping.to_dict(),
                         codes=codes,
                         targets={**pinned.report(), "tokens": tokens,
                                  "pinned_tokens": source_tokens[tokens].tolist()})
    progress.finish()
    done = time.perf_counter()
    timings = stage_timings(started, loaded, generated, done, load_units)
    return messages.TakesResult(takes=(take,), timings=timings)
