"""Changing frame rates: solved keys 20 fps → scene fps, and a user's animation scene fps → 20 fps.

Frame ``k`` of the output sits at time ``k / dst_fps``; the last output frame is the last one that
does not run past the input's last frame, so ``resample(resample(x, a, b), b, a)`` keeps the clip's
duration up to one output frame. Rotations are interpolated as quaternions (slerp along the shorter
arc), whatever the bone's rotation mode; locations and joint positions linearly.
"""

from __future__ import annotations

import numpy as np

from backend.portable.errors import InputError
from backend.portable.quaternion import qcontinuous, slerp
from backend.retarget.channels import BoneChannel, RetargetResult, channel_to_quats, channel_values


def sample_times(frame_count: int, src_fps: float, dst_fps: float, count: int | None = None
                 ) -> tuple[np.ndarray, np.ndarray]:
    """For each output frame: the input frame just before it and the fraction towards the next.

    ``count`` fixes the number of output frames (frames past the input's end hold its last frame);
    by default it is the last output frame that does not run past the input.
    """
    if src_fps <= 0 or dst_fps <= 0:
        raise InputError(f"Frame rates must be positive (got {src_fps} → {dst_fps}).",
                         "Set a positive scene frame rate (Output Properties → Frame Rate).")
    if count is None:
        duration = (frame_count - 1) / src_fps
        count = int(np.floor(duration * dst_fps + 1e-6)) + 1
    position = np.arange(count) * (src_fps / dst_fps)          # in input frames
    before = np.minimum(np.floor(position + 1e-9).astype(np.int64), max(frame_count - 2, 0))
    frac = np.clip(position - before, 0.0, 1.0)
    return before, frac


def resample_vectors(x: np.ndarray, before: np.ndarray, frac: np.ndarray) -> np.ndarray:
    if len(x) == 1:
        return np.repeat(x, len(before), axis=0)
    f = frac.reshape((-1,) + (1,) * (x.ndim - 1))
    return (1 - f) * x[before] + f * x[before + 1]


def resample_quaternions(q: np.ndarray, before: np.ndarray, frac: np.ndarray) -> np.ndarray:
    """Slerp of (T, ..., 4) sign-continuous quaternions at the given sample positions."""
    if len(q) == 1:
        return np.repeat(q, len(before), axis=0)
    f = frac.reshape((-1,) + (1,) * (q.ndim - 1))
    return qcontinuous(slerp(q[before], q[before + 1], f))


def resample_result(result: RetargetResult, dst_fps: float) -> RetargetResult:
    """The same motion keyed at ``dst_fps`` (24, 25, 30, 60, 29.97... any ratio)."""
    before, frac = sample_times(result.frame_count, result.fps, dst_fps)
    quats = np.stack([channel_to_quats(b.values, b.rotation_mode) for b in result.bones], axis=1)
    quats = resample_quaternions(quats, before, frac)                 # all bones in one slerp
    bones = [BoneChannel(b.name, b.channel, channel_values(quats[:, k], b.rotation_mode), b.rotation_mode)
             for k, b in enumerate(result.bones)]
    return RetargetResult(fps=float(dst_fps), bones=bones, root_name=result.root_name,
                          root_location=resample_vectors(result.root_location, before, frac),
                          transform=result.transform)


def resample_positions(joints: np.ndarray, src_fps: float, dst_fps: float) -> np.ndarray:
    """Joint positions (T, J, 3) at ``src_fps`` → (T', J, 3) at ``dst_fps`` (linear in time)."""
    joints = np.asarray(joints, dtype=np.float64)
    if abs(src_fps - dst_fps) < 1e-9:
        return joints.copy()
    before, frac = sample_times(len(joints), src_fps, dst_fps)
    return resample_vectors(joints, before, frac)
