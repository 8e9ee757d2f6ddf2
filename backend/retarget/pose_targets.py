"""Pose targets: the solved channels pinned to the rig's own keys (docs/retargeting.md §12).

A take made through pose targets is generated from tokens pinned to each keyed pose, so near a
target the motion is already close to the key; what remains is made exact here, on the solved
channels, where it can be exact: for every output bone, the local rotation the user keyed is read
back from the posed matrices (:func:`key_channels`), and a correction ``δ = gen⁻¹ · key`` (the
generated local rotation times ``δ`` is the key) is blended in around each target frame
(:func:`pin_to_keys`). At the target frame the weight is 1, so the key is reproduced to float
rounding; away from it the weight falls smoothly (smoothstep) to 0 over a window wide enough that
the correction adds at most the motion's own median per-frame step. Two targets closer than their
windows share one blend: the correction turns from one target's δ straight into the next one's. The
root bone's location is pinned the same way, with an offset instead of a rotation.

numpy only; runs in the backend on the solver's :class:`RetargetResult`.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from backend.portable.errors import InputError
from backend.portable.quaternion import IDENTITY, matrix_to_quat, qcontinuous, qinv, qmul, slerp
from backend.retarget.channels import RetargetResult, channel_to_quats, channel_values

#: Least blend half-width in result frames, whatever the motion (a 1-frame window would be a step).
MIN_WINDOW = 3


def _rotation(m: np.ndarray) -> np.ndarray:
    """The nearest rotation to each 3×3 in ``m`` (polar part; a keyed pose without scale is one)."""
    u, _, vt = np.linalg.svd(m)
    r = u @ vt
    flip = np.linalg.det(r) < 0
    if np.any(flip):
        u = u.copy()
        u[flip, :, -1] *= -1
        r = u @ vt
    return r


def key_channels(rig, pose_matrices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """What each bone's own channels are keyed to, from armature-space ``pose_bone.matrix`` rows.

    Returns (local rotations as quaternions (K, n, 4), local locations (K, n, 3)): the rotation and
    translation of ``matrix_basis = (M_p · L_p⁻¹ · L_b)⁻¹ · M_b`` (``L`` = ``bone.matrix_local``, ``p``
    the parent; a root has ``L_b⁻¹ · M_b``), which Blender evaluates the keys to on a rig without
    constraints.
    """
    pose = np.asarray(pose_matrices, dtype=np.float64)
    rest = np.asarray(rig.rest_matrices, dtype=np.float64)
    parents = np.asarray(rig.parents, dtype=np.int64)
    if pose.ndim != 4 or pose.shape[1:] != (len(rest), 4, 4):
        raise InputError(f"Pose matrices of shape {pose.shape} do not match the rig's {len(rest)} bones.",
                         "Send pose_bone.matrix of every bone at each target frame.")
    rest_inv = np.linalg.inv(rest)
    frame = np.broadcast_to(rest, pose.shape).copy()           # M_p · L_p⁻¹ · L_b (the bone's frame)
    has_parent = parents >= 0
    parent_rows = parents[has_parent]
    frame[:, has_parent] = pose[:, parent_rows] @ (rest_inv[parent_rows] @ rest[has_parent])
    basis = np.linalg.inv(frame) @ pose
    return matrix_to_quat(_rotation(basis[..., :3, :3])), basis[..., :3, 3]


def _smooth(u: np.ndarray) -> np.ndarray:
    u = np.clip(u, 0.0, 1.0)
    return u * u * (3.0 - 2.0 * u)


def blend_schedule(count: int, frames: np.ndarray, windows: np.ndarray
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per result frame ``(a, b, s)``: the correction there is ``slerp(C[a], C[b], s)`` with ``C[0]`` =
    none and ``C[i + 1]`` = target ``i``'s. ``frames`` (K,) are increasing result frames, ``windows``
    (K,) their blend half-widths; neighbours closer than their two windows blend into each other."""
    a = np.zeros(count, dtype=np.int64)
    b = np.zeros(count, dtype=np.int64)
    s = np.zeros(count)
    t = np.arange(count, dtype=np.float64)
    k = len(frames)
    first, last = frames[0], frames[-1]
    before = t < first
    a[before], b[before] = 0, 1
    s[before] = _smooth(1.0 - (first - t[before]) / windows[0])
    after = t > last
    a[after], b[after] = k, 0
    s[after] = _smooth((t[after] - last) / windows[-1])
    for i in range(k):
        on = t == frames[i]
        a[on], b[on], s[on] = i + 1, i + 1, 0.0
    for i in range(k - 1):
        lo, hi = frames[i], frames[i + 1]
        inside = (t > lo) & (t < hi)
        gap = hi - lo
        if gap <= windows[i] + windows[i + 1]:
            a[inside], b[inside] = i + 1, i + 2
            s[inside] = _smooth((t[inside] - lo) / gap)
            continue
        near_lo = inside & (t - lo < windows[i])
        near_hi = inside & (hi - t < windows[i + 1])
        a[near_lo], b[near_lo] = i + 1, 0
        s[near_lo] = _smooth((t[near_lo] - lo) / windows[i])
        a[near_hi], b[near_hi] = 0, i + 2
        s[near_hi] = _smooth(1.0 - (hi - t[near_hi]) / windows[i + 1])
    return a, b, s


def _angles(q0: np.ndarray, q1: np.ndarray) -> np.ndarray:
    """Rotation angle (radians) from ``q0`` to ``q1``, elementwise over the leading axes."""
    dot = np.abs((q0 * q1).sum(-1))
    return 2.0 * np.arccos(np.clip(dot, 0.0, 1.0))


def frame_steps(quats: np.ndarray) -> np.ndarray:
    """Per frame-to-frame step, the largest rotation (radians) any bone turns by: quats (B, F, 4)
    → (F − 1,)."""
    if quats.shape[1] < 2:
        return np.zeros(0)
    return _angles(quats[:, 1:], quats[:, :-1]).max(axis=0)


def mean_steps(quats: np.ndarray) -> np.ndarray:
    """Per frame-to-frame step, the mean over bones of how far each turns (degrees): quats (B, F, 4)
    → (F − 1,). The measure of docs/retargeting.md §12's seam check (the largest bone's step is too
    noisy: a real clip's own largest steps reach twice its median)."""
    if quats.shape[1] < 2:
        return np.zeros(0)
    return np.degrees(_angles(quats[:, 1:], quats[:, :-1])).mean(axis=0)


def seam_steps(frames, windows, count: int) -> list[int]:
    """The steps (index ``t``: frame ``t`` → ``t + 1``) where the keys meet the generated motion: into
    and out of each target frame and at both ends of its blend window, inside a take of ``count``."""
    out: set[int] = set()
    for frame, window in zip(frames, windows, strict=True):
        lo, hi = int(np.floor(frame - window)), int(np.ceil(frame + window))
        out.update((frame - 1, frame, lo - 1, lo, hi - 1, hi))
    return sorted(t for t in out if 0 <= t < count - 1)


def seam_ratio(quats: np.ndarray, frames, windows) -> tuple[float, float]:
    """(largest seam step, median step) of a take's rotations (B, F, 4), in degrees per frame."""
    steps = mean_steps(quats)
    seams = seam_steps(frames, windows, quats.shape[1])
    return (float(steps[seams].max()) if seams else 0.0), float(np.median(steps))


@dataclasses.dataclass(frozen=True)
class Pinned:
    """The pinned result and how it was pinned: target frames, blend half-widths (result frames), the
    generated motion's median per-frame step and each target's largest correction (degrees)."""

    result: RetargetResult
    frames: tuple[int, ...]
    windows: tuple[float, ...]
    median_step_deg: float
    correction_deg: tuple[float, ...]
    seam_step_deg: float = 0.0
    mean_median_step_deg: float = 0.0

    def report(self) -> dict:
        return {"frames": list(self.frames), "windows": [round(w, 3) for w in self.windows],
                "median_step_deg": round(self.median_step_deg, 4),
                "correction_deg": [round(c, 3) for c in self.correction_deg],
                "seam_step_deg": round(self.seam_step_deg, 4),
                "mean_median_step_deg": round(self.mean_median_step_deg, 4)}


def pin_to_keys(result: RetargetResult, rig, frames, pose_matrices: np.ndarray,
                min_window: int = MIN_WINDOW) -> Pinned:
    """``result`` with every listed bone's rotation (and the root bone's location) equal to the keys
    read from ``pose_matrices`` (K, n, 4, 4) on result frames ``frames`` (K,), blended in around them.

    Window of target ``i``: ``max(min_window, 1.5 · angle_i / median_step)`` frames each side, where
    ``angle_i`` is its largest bone correction and ``median_step`` the generated motion's median
    per-frame step (the smoothstep's steepest slope is 1.5 per window, so the correction adds at most
    one median step per frame).
    """
    frames_arr = np.asarray(frames, dtype=np.int64)
    count = result.frame_count
    if len(frames_arr) != len(pose_matrices) or not len(frames_arr):
        raise InputError(f"{len(frames_arr)} target frames for {len(pose_matrices)} poses.",
                         "Send one pose per target frame.")
    if frames_arr.min() < 0 or frames_arr.max() >= count or np.any(np.diff(frames_arr) <= 0):
        raise InputError(f"The pose target frames {frames_arr.tolist()} are not increasing frames of the "
                         f"{count}-frame take.", "List target frames inside the take, in increasing order.")
    index = {name: i for i, name in enumerate(rig.bone_names)}
    key_rot, key_loc = key_channels(rig, pose_matrices)
    rows = [index[bone.name] for bone in result.bones]
    generated = np.stack([channel_to_quats(bone.values, bone.rotation_mode) for bone in result.bones])
    keys = np.swapaxes(key_rot[:, rows], 0, 1)                          # (B, K, 4)
    delta = qmul(qinv(generated[:, frames_arr]), keys)                  # gen · δ = key
    delta = np.where((delta[..., :1] < 0), -delta, delta)               # the short way round
    steps = frame_steps(generated)
    median = float(np.median(steps)) if len(steps) else 0.0
    angle = _angles(delta, np.broadcast_to(IDENTITY, delta.shape)).max(axis=0)     # (K,)
    windows = np.maximum(float(max(min_window, 1)), 1.5 * angle / max(median, 1e-6))
    windows = np.minimum(windows, float(count))
    a, b, s = blend_schedule(count, frames_arr.astype(np.float64), windows)
    table = np.concatenate([np.broadcast_to(IDENTITY, (len(rows), 1, 4)), delta], axis=1)   # (B, K+1, 4)
    correction = slerp(table[:, a], table[:, b], s[None, :, None])
    pinned = qcontinuous(qmul(generated, correction), axis=1)
    pinned[:, frames_arr] = np.where(((pinned[:, frames_arr] * keys).sum(-1, keepdims=True) < 0),
                                     -keys, keys)                       # exactly the keys, same hemisphere
    bones = [dataclasses.replace(bone, values=channel_values(qcontinuous(pinned[k]), bone.rotation_mode))
             for k, bone in enumerate(result.bones)]
    root = index[result.root_name]
    offsets = key_loc[:, root] - result.root_location[frames_arr]       # (K, 3)
    loc_table = np.concatenate([np.zeros((1, 3)), offsets])
    location = result.root_location + loc_table[a] + s[:, None] * (loc_table[b] - loc_table[a])
    location[frames_arr] = key_loc[:, root]
    pinned_result = dataclasses.replace(result, bones=bones, root_location=location)
    seam, typical = seam_ratio(pinned, frames_arr, windows)
    return Pinned(pinned_result, tuple(int(f) for f in frames_arr), tuple(float(w) for w in windows),
                  float(np.degrees(median)), tuple(float(x) for x in np.degrees(angle)), seam, typical)


__all__ = ["Pinned", "blend_schedule", "frame_steps", "key_channels", "mean_steps", "pin_to_keys",
           "seam_ratio",
           "seam_steps"]
