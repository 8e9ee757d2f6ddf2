"""HumanML3D motion features <-> joint positions (docs/model.md §9).

* :func:`recover_from_ric` turns the model's 263-D (KIT: 251-D) frames into joint positions, exactly as
  the official generation scripts do (float32, only the root and "ric" dims are read).
* :func:`features_from_joints` is the official dataset builder (``process_file``): any joint
  animation -> the features the models were trained on, so a user's own animation can be encoded for
  in-betweening. The dataset's quirks are replicated on purpose (the models expect them): the
  half-cancelling facing vector inside the IK, ``r_rot[t+1]`` for the root velocity but ``r_rot[t]`` for
  the joint velocities, the last frame dropped, and float32 rounding wherever the official numpy
  helpers went through float32 torch tensors.

Everything is vectorised over frames; the only Python loops walk the 21 bones.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from backend.motion import skeleton as sk
from backend.portable.errors import InputError
from backend.portable.quaternion import as_f32, qbetween, qinv, qmul, qrot, quat_to_cont6d

UP = np.array([0.0, 1.0, 0.0])
FORWARD = np.array([0.0, 0.0, 1.0])
#: sigma (frames) of the Gaussian that smooths the facing direction before the root rotation.
FACING_SMOOTH_SIGMA = 20


@dataclass(frozen=True)
class DatasetSkeleton:
    """What ``process_file`` needs to know about a dataset's skeleton."""

    parents: tuple[int, ...]
    chain: tuple[tuple[int, ...], ...]
    raw_offsets: np.ndarray
    target_offsets: np.ndarray | None   # None: keep the input's own frame-0 bone lengths
    leg_idx: tuple[int, int]
    face_joints: tuple[int, int, int, int]
    feet_left: tuple[int, int]
    feet_right: tuple[int, int]
    feet_threshold: float

    @property
    def num_joints(self) -> int:
        return len(self.parents)


def _parents_from_chain(chain: tuple[tuple[int, ...], ...], num_joints: int) -> tuple[int, ...]:
    parents = [-1] * num_joints
    for links in chain:
        for parent, child in itertools.pairwise(links):
            parents[child] = parent
    return tuple(parents)


SKELETONS = {
    "t2m": DatasetSkeleton(
        parents=sk.T2M_PARENTS, chain=sk.T2M_KINEMATIC_CHAIN, raw_offsets=sk.T2M_RAW_OFFSETS,
        target_offsets=sk.T2M_TARGET_OFFSETS, leg_idx=sk.T2M_LEG_IDX, face_joints=sk.T2M_FACE_JOINTS,
        feet_left=sk.T2M_FOOT_LEFT, feet_right=sk.T2M_FOOT_RIGHT, feet_threshold=sk.T2M_FEET_THRESHOLD),
    # The KIT target skeleton (sample 03950) is not shipped: KIT clips keep their own bone lengths.
    "kit": DatasetSkeleton(
        parents=_parents_from_chain(sk.KIT_KINEMATIC_CHAIN, sk.KIT_NUM_JOINTS), chain=sk.KIT_KINEMATIC_CHAIN,
        raw_offsets=sk.KIT_RAW_OFFSETS, target_offsets=None, leg_idx=sk.KIT_LEG_IDX,
        face_joints=sk.KIT_FACE_JOINTS, feet_left=sk.KIT_FOOT_LEFT, feet_right=sk.KIT_FOOT_RIGHT,
        feet_threshold=sk.KIT_FEET_THRESHOLD),
}


# --- features -> joints ----------------------------------------------------------------------------

def _cumsum_like_torch_cpu(x: np.ndarray, axis: int) -> np.ndarray:
    """float32 running sum as torch's CPU ``cumsum`` computes it: accumulated in float64, each prefix
    rounded to float32 (a float32 ``np.cumsum`` drifts from the official values by a few ulps/frame)."""
    return np.cumsum(x, axis=axis, dtype=np.float64).astype(np.float32)


def recover_root_rotation_position(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Integrate the root: yaw quaternions ``(…, T, 4)`` and positions ``(…, T, 3)``, float32.

    Frame 0 faces +Z at x = z = 0. Dim 0 holds HALF the yaw change per frame, so the quaternion
    ``(cos a, 0, sin a, 0)`` built from the running sum ``a`` is a yaw of ``2a``. numpy only (this
    runs in Blender's Python too); :func:`recover_from_ric` uses the bit-exact torch twin when it can.
    """
    data = as_f32(features)
    angle = np.zeros_like(data[..., 0])
    angle[..., 1:] = data[..., :-1, 0]
    angle = _cumsum_like_torch_cpu(angle, axis=-1)
    root_quat = np.zeros(data.shape[:-1] + (4,), dtype=np.float32)
    root_quat[..., 0] = np.cos(angle)
    root_quat[..., 2] = np.sin(angle)

    root_pos = np.zeros(data.shape[:-1] + (3,), dtype=np.float32)
    # Dims 1:3 of frame t-1 hold root[t] - root[t-1] expressed in frame t's facing (r_rot[t+1] quirk
    # of the extraction), so the step into frame t is un-rotated by frame t's yaw.
    root_pos[..., 1:, 0] = data[..., :-1, 1]
    root_pos[..., 1:, 2] = data[..., :-1, 2]
    root_pos = qrot(qinv(root_quat), root_pos)
    root_pos = _cumsum_like_torch_cpu(root_pos, axis=-2)
    root_pos[..., 1] = data[..., 3]
    return root_quat, root_pos


def _recover_from_ric_numpy(data: np.ndarray, joints_num: int) -> np.ndarray:
    needed = 4 + 3 * (joints_num - 1)
    root_quat, root_pos = recover_root_rotation_position(data)
    local = data[..., 4:needed].reshape(data.shape[:-1] + (joints_num - 1, 3))
    local = qrot(qinv(root_quat)[..., None, :], local)
    local[..., 0] += root_pos[..., None, 0]
    local[..., 2] += root_pos[..., None, 2]
    return np.concatenate([root_pos[..., None, :], local], axis=-2)


def _recover_one_clip_torch(torch, clip: np.ndarray, joints_num: int) -> np.ndarray:
    """The official ``recover_from_ric`` on ONE clip (T, D), with the same torch CPU ops in the same
    order and shapes: torch's ``cos``/``sin`` (SLEEF, vector/scalar split by position in the buffer),
    ``cross`` and ``cumsum`` (float64 accumulation) round differently from numpy's, so only the same
    calls on the same (T,)-shaped tensors reproduce the official joints bit for bit."""
    data = torch.from_numpy(np.ascontiguousarray(clip, dtype=np.float32))

    def qrot_t(q, v):  # v + 2·(w·(u×v) + u×(u×v)) on flattened rows, as upstream
        shape = v.shape
        q, v = q.contiguous().view(-1, 4), v.contiguous().view(-1, 3)
        uv = torch.cross(q[:, 1:], v, dim=1)
        uuv = torch.cross(q[:, 1:], uv, dim=1)
        return (v + 2 * (q[:, :1] * uv + uuv)).view(shape)

    conj = torch.tensor([1.0, -1.0, -1.0, -1.0])
    angle = torch.zeros_like(data[:, 0])
    angle[1:] = data[:-1, 0]
    angle = torch.cumsum(angle, dim=-1)
    root_quat = torch.zeros(data.shape[:-1] + (4,))
    root_quat[:, 0] = torch.cos(angle)
    root_quat[:, 2] = torch.sin(angle)
    root_pos = torch.zeros(data.shape[:-1] + (3,))
    root_pos[1:, 0] = data[:-1, 1]
    root_pos[1:, 2] = data[:-1, 2]
    root_pos = torch.cumsum(qrot_t(root_quat * conj, root_pos), dim=-2)
    root_pos[:, 1] = data[:, 3]
    local = data[:, 4:4 + 3 * (joints_num - 1)].reshape(len(data), joints_num - 1, 3)
    local = qrot_t((root_quat * conj)[:, None, :].expand(local.shape[:-1] + (4,)), local)
    local[..., 0] += root_pos[:, 0:1]
    local[..., 2] += root_pos[:, 2:3]
    return torch.cat([root_pos[:, None, :], local], dim=-2).numpy()


def _torch_or_none():
    try:
        import torch
    except ImportError:  # Blender's Python: the numpy twin (same maths, last-bit differences)
        return None
    return torch


def recover_from_ric(features: np.ndarray, joints_num: int = 22) -> np.ndarray:
    """Joint positions ``(…, T, J, 3)`` float32 from features ``(…, T, D)`` (official semantics).

    With torch available (the backend) every clip goes through the official torch CPU ops one clip at
    a time, as the generation scripts call it, so the joints equal the official ones bit for bit when
    given the same (cropped) clip; without torch (Blender) a numpy twin agrees to ~1e-6 m.
    """
    data = as_f32(features)
    needed = 4 + 3 * (joints_num - 1)
    if data.ndim < 2 or data.shape[-1] < needed:
        raise InputError(f"Motion features of shape {data.shape} cannot hold {joints_num} joints.",
                         f"Pass (frames, dims) features with at least {needed} dims (263 for HumanML3D).")
    torch = _torch_or_none()
    if torch is None or data.shape[-2] == 0:
        return _recover_from_ric_numpy(data, joints_num)
    clips = data.reshape((-1,) + data.shape[-2:])
    with torch.no_grad():
        joints = [_recover_one_clip_torch(torch, clip, joints_num) for clip in clips]
    return np.stack(joints).reshape(data.shape[:-1] + (joints_num, 3))


# --- joints -> features ----------------------------------------------------------------------------

def _bone_offsets(frame: np.ndarray, skel: DatasetSkeleton) -> np.ndarray:
    """Rest offsets with this frame's bone lengths along the raw directions (float32, as upstream)."""
    parents = np.array(skel.parents)
    lengths = np.linalg.norm(frame[1:] - frame[parents[1:]], axis=-1)
    offsets = skel.raw_offsets.astype(np.float32).copy()
    offsets[1:] *= lengths[:, None].astype(np.float32)
    return offsets


def _facing_quaternions(joints: np.ndarray, skel: DatasetSkeleton, smooth: bool) -> np.ndarray:
    """Per-frame yaw taking the (quirky) facing direction to +Z; frame 0 forced to identity.

    QUIRK (docs/model.md §11): the face joints are unpacked as (l_hip, r_hip, sdr_r, sdr_l) although they are
    listed as (r_hip, l_hip, r_shoulder, l_shoulder), so the hip and shoulder terms partly cancel.
    The dataset was built this way; the trained models expect it.
    """
    l_hip, r_hip, sdr_r, sdr_l = skel.face_joints
    across = (joints[:, r_hip] - joints[:, l_hip]) + (joints[:, sdr_r] - joints[:, sdr_l])
    across = across / np.sqrt((across ** 2).sum(-1))[:, None]
    forward = np.cross(UP, across)                                 # float64, like upstream's int row
    if smooth:
        # Imported here: recover_from_ric must also run where scipy is absent (Blender's Python).
        from scipy.ndimage import gaussian_filter1d

        forward = gaussian_filter1d(forward, FACING_SMOOTH_SIGMA, axis=0, mode="nearest")
    forward = forward / np.sqrt((forward ** 2).sum(-1))[:, None]
    root_quat = qbetween(as_f32(forward), as_f32(np.broadcast_to(FORWARD, forward.shape)))
    root_quat[0] = (1.0, 0.0, 0.0, 0.0)
    return root_quat


def inverse_kinematics(joints: np.ndarray, skel: DatasetSkeleton, smooth_forward: bool) -> np.ndarray:
    """Local quaternions ``(N, J, 4)`` float64 (values float32-rounded) from joints ``(N, J, 3)``.

    Joint 0 holds the facing yaw; joint ``c`` holds the rotation of the bone ending at ``c`` relative
    to its parent's accumulated rotation (the HumanML3D convention: stored at the CHILD joint).
    """
    root_quat = _facing_quaternions(joints, skel, smooth_forward)
    quats = np.zeros(joints.shape[:-1] + (4,))
    quats[:, 0] = root_quat
    raw = as_f32(skel.raw_offsets)
    for links in skel.chain:
        accumulated = root_quat
        for parent, child in itertools.pairwise(links):
            direction = joints[:, child] - joints[:, parent]
            direction = direction / np.sqrt((direction ** 2).sum(-1))[:, None]
            world = qbetween(np.broadcast_to(raw[child], direction.shape), as_f32(direction))
            local = qmul(qinv(as_f32(accumulated)), world)
            quats[:, child] = local
            accumulated = qmul(as_f32(accumulated), local)
    return quats


def forward_kinematics(quats: np.ndarray, root_pos: np.ndarray, offsets: np.ndarray,
                       skel: DatasetSkeleton) -> np.ndarray:
    """Joint positions ``(N, J, 3)`` float64 from local quaternions, root positions and bone offsets."""
    joints = np.zeros(quats.shape[:-1] + (3,))
    joints[:, 0] = root_pos
    offsets = as_f32(offsets)
    for links in skel.chain:
        accumulated = as_f32(quats[:, 0])
        for parent, child in itertools.pairwise(links):
            accumulated = qmul(accumulated, as_f32(quats[:, child]))
            joints[:, child] = qrot(accumulated, offsets[child]) + joints[:, parent]
    return joints


def uniform_skeleton(joints: np.ndarray, skel: DatasetSkeleton) -> np.ndarray:
    """Re-pose the clip on the dataset's target skeleton (same rotations, canonical bone lengths).

    The root trajectory is scaled by the leg-length ratio (sum of the largest |component| of two leg
    offsets), as upstream.
    """
    source = _bone_offsets(joints[0], skel)
    target = source if skel.target_offsets is None else as_f32(skel.target_offsets)
    a, b = skel.leg_idx
    source_leg = np.abs(source[a]).max() + np.abs(source[b]).max()
    target_leg = np.abs(target[a]).max() + np.abs(target[b]).max()
    root = joints[:, 0] * (target_leg / source_leg)
    quats = inverse_kinematics(joints, skel, smooth_forward=False)
    return forward_kinematics(quats, root, target, skel)


def _foot_contacts(positions: np.ndarray, feet: tuple[int, int], threshold: float) -> np.ndarray:
    """1.0 where a foot joint moves less than ``sqrt(threshold)`` between frames t and t+1."""
    step = positions[1:, list(feet)] - positions[:-1, list(feet)]
    return ((step ** 2).sum(-1) < threshold).astype(np.float64)


def features_from_joints(joints: np.ndarray, dataset: str = "t2m", fix_yaw_wrap: bool = False) -> np.ndarray:
    """HumanML3D features ``(N-1, 263)`` (KIT: 251) float64 from joint positions ``(N, J, 3)``.

    ``joints``: Y up, metres, dataset joint order, the dataset's fps (20 for t2m). The result does not
    depend on where the clip starts or which way it faces: it is floored, moved to the origin and
    turned to face +Z at frame 0. Re-extraction of generated motion is close to, not equal to, the
    model's own features (the smoothing window and the dropped last frame; docs/model.md §9.5).

    QUIRK: upstream takes ``arcsin`` of the y component of ``r_rot[t+1] ⊗ r_rot[t]⁻¹`` without making its
    w positive, so on the frame where the facing crosses ±180° (facing -Z) the turn gets the wrong sign
    and every later frame of :func:`recover_from_ric` is off by twice that turn. ``fix_yaw_wrap=True``
    picks the short-way quaternion there (exact re-encoding); the default replicates the dataset.
    """
    if dataset not in SKELETONS:
        raise InputError(f"Unknown dataset {dataset!r}.", f"Use one of {sorted(SKELETONS)}.")
    skel = SKELETONS[dataset]
    joints = np.asarray(joints, dtype=np.float64)
    if joints.ndim != 3 or joints.shape[1:] != (skel.num_joints, 3) or len(joints) < 2:
        raise InputError(
            f"Joint positions of shape {joints.shape} are not a {dataset} clip.",
            f"Pass (frames >= 2, {skel.num_joints}, 3) positions in the {dataset} joint order.")
    if not np.isfinite(joints).all():
        raise InputError("The joint positions contain NaN or infinite values.",
                         "Check the source animation (a bone with zero length or a broken key).")

    positions = uniform_skeleton(joints, skel)
    positions[:, :, 1] -= positions[:, :, 1].min()                    # floor
    positions = positions - positions[0, 0] * np.array([1.0, 0.0, 1.0])  # frame-0 root over the origin

    # Face +Z at frame 0 with the CORRECT facing vector (right minus left, hips + shoulders).
    r_hip, l_hip, sdr_r, sdr_l = skel.face_joints
    first = positions[0]
    across = (first[r_hip] - first[l_hip]) + (first[sdr_r] - first[sdr_l])
    across = across / np.sqrt((across ** 2).sum())
    forward = np.cross(UP, across)
    forward = forward / np.sqrt((forward ** 2).sum())
    positions = qrot(qbetween(as_f32(forward), as_f32(FORWARD)), as_f32(positions))  # float32 from here
    global_positions = positions

    feet_left = _foot_contacts(positions, skel.feet_left, skel.feet_threshold)
    feet_right = _foot_contacts(positions, skel.feet_right, skel.feet_threshold)

    quats = inverse_kinematics(positions, skel, smooth_forward=True)
    cont6d = quat_to_cont6d(as_f32(quats))
    r_rot = as_f32(quats[:, 0])
    root_velocity = qrot(r_rot[1:], positions[1:, 0] - positions[:-1, 0])
    root_turn = qmul(r_rot[1:], qinv(r_rot[:-1]))
    if fix_yaw_wrap:
        root_turn = np.where(root_turn[:, :1] < 0, -root_turn, root_turn)

    # "ric": joints relative to the root's ground projection, in the root's facing frame.
    ric = positions - positions[:, :1] * np.array([1, 0, 1], dtype=np.float32)
    ric = qrot(r_rot[:, None], ric)
    local_velocity = qrot(r_rot[:-1, None], global_positions[1:] - global_positions[:-1])

    frames = len(positions) - 1
    root_data = np.concatenate([
        np.arcsin(root_turn[:, 2:3]),       # half the yaw change (the quaternion's y component)
        root_velocity[:, [0, 2]],
        ric[:-1, 0, 1:2],                   # root height
    ], axis=-1)
    return np.concatenate([
        root_data,
        ric[:-1, 1:].reshape(frames, -1),
        cont6d[:-1, 1:].reshape(frames, -1),
        local_velocity.reshape(frames, -1),
        feet_left, feet_right,
    ], axis=-1)
