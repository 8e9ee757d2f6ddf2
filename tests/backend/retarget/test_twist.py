"""Upper arms and thighs never spin about themselves: the limb hinge is coherent in time.

Positions alone cannot show it (the joints stay exact), but a mesh does: an upper arm that turns 180°
about its own axis between two frames is a candy-wrapper twist, and an elbow solved as bending
backwards is a broken arm. Checked on the real sample and on a constructed clip with the poses that
used to flip: an arm raised forward overhead with the hand behind the head, an arm reaching behind
with a bent elbow, an arm raised sideways with a bent elbow, a knee pulled to the chest (thigh past
horizontal, deep knee bend) and a leg swung back.
"""

from __future__ import annotations

import numpy as np
import pytest

from backend.retarget import metrics
from backend.retarget.inverse import pose_matrices_from_basis
from backend.retarget.mapping import auto_map
from backend.retarget.solver import retarget
from tests.backend.retarget.test_solver import (
    SOURCE_TO_BLENDER,
    axis_rotation,
    make_rig,
    read_back,
    smpl_rest_joints,
)

MAX_TWIST_STEP_DEG = 45.0          # between consecutive 20 fps frames (a flip is 180°)
MAX_SAMPLE_TWIST_DEG = 120.0       # the real sample: humeral/femoral rotation stays anatomical
MIN_FLEXION_DEG = -15.0            # elbows and knees never bend backwards more than this
LIMBS = {"L_Shoulder": ("L_Elbow", "L_Wrist"), "R_Shoulder": ("R_Elbow", "R_Wrist"),
         "L_Hip": ("L_Knee", "L_Ankle"), "R_Hip": ("R_Knee", "R_Ankle")}


def _angles(times: list[int], degrees: list[float], n: int) -> np.ndarray:
    return np.interp(np.arange(n), times, np.radians(degrees))


def reach_motion(frame0: np.ndarray) -> np.ndarray:
    """160 frames (source axes: Y up, facing +Z, left +X) built on one standing frame of the sample."""
    n = 160
    out = np.repeat(frame0[None], n, axis=0)
    down, x_axis, z_axis = np.array([0, -1.0, 0]), np.array([1.0, 0, 0]), np.array([0, 0, 1.0])

    def length(a: int, b: int) -> float:
        return float(np.linalg.norm(frame0[a] - frame0[b]))

    keys = [0, 40, 60, 90, 120, 150, 159]
    raise_fwd = _angles(keys, [0, 170, 170, 0, -70, 0, 0], n)         # left arm: flexion, then extension
    elbow_l = _angles(keys, [10, 110, 110, 20, 80, 10, 10], n)         # hand behind head, bent behind
    keys_r = [0, 50, 70, 110, 159]
    raise_side = _angles(keys_r, [0, 170, 170, 0, 0], n)               # right arm: abduction overhead
    elbow_r = _angles(keys_r, [5, 90, 90, 30, 5], n)
    keys_leg = [0, 40, 70, 100, 130, 159]
    hip_l = _angles(keys_leg, [0, 110, 110, 0, -30, 0], n)             # knee to chest, then leg back
    knee_l = _angles(keys_leg, [0, 140, 140, 5, 70, 0], n)
    foot = frame0[10] - frame0[7]
    for t in range(n):
        upper, lower = axis_rotation(x_axis, -raise_fwd[t]), axis_rotation(x_axis, -raise_fwd[t] - elbow_l[t])
        out[t, 18] = out[t, 16] + length(18, 16) * upper @ down
        out[t, 20] = out[t, 18] + length(20, 18) * lower @ down
        side = axis_rotation(z_axis, -raise_side[t])
        out[t, 19] = out[t, 17] + length(19, 17) * side @ down
        out[t, 21] = out[t, 19] + length(21, 19) * side @ axis_rotation(x_axis, -elbow_r[t]) @ down
        thigh, shin = axis_rotation(x_axis, -hip_l[t]), axis_rotation(x_axis, -hip_l[t] + knee_l[t])
        out[t, 4] = out[t, 1] + length(4, 1) * thigh @ down
        out[t, 7] = out[t, 4] + length(7, 4) * shin @ down
        out[t, 10] = out[t, 7] + shin @ foot
    return out


def twist_deg(quats: np.ndarray) -> np.ndarray:
    """Twist of a pose-bone key about the bone's own axis (local Y), relative to its parent, degrees."""
    return np.degrees(2 * np.arctan2(quats[:, 2], quats[:, 0]) + np.pi) % 360 - 180


def flexion_deg(rig, pose: np.ndarray, upper: str, lower: str, end: str) -> np.ndarray:
    """Signed elbow/knee flexion on a T-pose rig: + bends the anatomical way, − bends backwards.

    The anatomical hinge is known at rest (arms: forearm flexes forward; legs: shin flexes back) and
    carried by the upper bone's posed rotation.
    """
    names = rig.bone_names
    iu, il, ie = (names.index(b) for b in (upper, lower, end))
    rest = rig.rest_matrices
    u_rest = rest[il, :3, 3] - rest[iu, :3, 3]
    forward = SOURCE_TO_BLENDER @ np.array([0, 0, 1.0])
    flex = forward if "Shoulder" in upper else -forward
    hinge_rest = np.cross(u_rest, flex)
    hinge = (pose[:, iu, :3, :3] @ rest[iu, :3, :3].T) @ hinge_rest
    u = pose[:, il, :3, 3] - pose[:, iu, :3, 3]
    low = pose[:, ie, :3, 3] - pose[:, il, :3, 3]
    sin = (np.cross(u, low) * hinge).sum(-1) / np.linalg.norm(hinge, axis=-1)
    return np.degrees(np.arctan2(sin, (u * low).sum(-1)))


@pytest.fixture(scope="module")
def source(sample_joints) -> np.ndarray:
    return sample_joints.astype(np.float64)


def solve(source: np.ndarray, motion: np.ndarray, rest: str, roll_seed: int | None):
    rig = make_rig(smpl_rest_joints(source[0], rest), roll_seed)
    mapping = auto_map(rig)
    result = retarget(motion, rig, mapping, foot_lock=False)
    assert metrics.mpjpe_mm(read_back(rig, mapping, result), motion) < 1.0     # joints stay exact
    return rig, result


@pytest.mark.parametrize("clip", ["sample", "reach"])
@pytest.mark.parametrize("rest, roll_seed", [("T", None), ("A", 3)])
def test_upper_limbs_never_spin_about_themselves(source, clip, rest, roll_seed):
    motion = source if clip == "sample" else reach_motion(source[0])
    _, result = solve(source, motion, rest, roll_seed)
    keys = {b.name: b.values for b in result.bones}
    for bone in LIMBS:
        twist = twist_deg(keys[bone])
        step = np.abs((np.diff(twist) + 180) % 360 - 180)
        assert step.max() <= MAX_TWIST_STEP_DEG, (bone, int(step.argmax()), float(step.max()))
        if clip == "sample":
            assert np.abs(twist).max() <= MAX_SAMPLE_TWIST_DEG, (bone, float(np.abs(twist).max()))


@pytest.mark.parametrize("clip", ["sample", "reach"])
def test_elbows_and_knees_bend_the_anatomical_way(source, clip):
    """A hand behind the head or a knee at the chest is a flexed joint, never a joint bent backwards."""
    motion = source if clip == "sample" else reach_motion(source[0])
    rig, result = solve(source, motion, "T", None)
    pose = pose_matrices_from_basis(rig, result)
    for upper, (lower, end) in LIMBS.items():
        flexion = flexion_deg(rig, pose, upper, lower, end)
        assert flexion.min() >= MIN_FLEXION_DEG, (upper, int(flexion.argmin()), float(flexion.min()))
