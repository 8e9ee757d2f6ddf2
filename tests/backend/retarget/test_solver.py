"""The retargeting solver without Blender: exactness, rest-pose and roll invariance, guards, resampling,
foot locking and the inverse, on the real HumanML3D sample (000612) and numpy-built rigs."""

from __future__ import annotations

import numpy as np
import pytest

from backend.motion.skeleton import T2M_PARENTS
from backend.portable.quaternion import quat_to_matrix
from backend.retarget import metrics
from backend.retarget.footlock import source_contacts
from backend.retarget.geometry import limb_frames
from backend.retarget.inverse import joints_from_pose, pose_matrices_from_basis
from backend.retarget.mapping import auto_map
from backend.retarget.resample import resample_positions, resample_result
from backend.retarget.rig import RigDescription
from backend.retarget.solver import retarget

# --- rigs built in numpy ----------------------------------------------------------------------------

SMPL_NAMES = ("Pelvis", "L_Hip", "R_Hip", "Spine1", "L_Knee", "R_Knee", "Spine2", "L_Ankle", "R_Ankle",
              "Spine3", "L_Foot", "R_Foot", "Neck", "L_Collar", "R_Collar", "Head", "L_Shoulder",
              "R_Shoulder", "L_Elbow", "R_Elbow", "L_Wrist", "R_Wrist")
CHILD = {0: 3, 1: 4, 2: 5, 3: 6, 4: 7, 5: 8, 6: 9, 7: 10, 8: 11, 9: 12, 12: 15, 13: 16, 14: 17, 16: 18,
         17: 19, 18: 20, 19: 21}
SOURCE_TO_BLENDER = np.array([[1.0, 0, 0], [0, 0, -1.0], [0, 1.0, 0]])   # Y-up → Z-up, facing −Y


def axis_rotation(axis, angle: float) -> np.ndarray:
    axis = np.asarray(axis, float) / np.linalg.norm(axis)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + np.sin(angle) * k + (1 - np.cos(angle)) * k @ k


def smpl_rest_joints(frame0: np.ndarray, pose: str = "T") -> np.ndarray:
    """Rest joints (source axes) with the SAMPLE's proportions and rigid parts, limbs re-posed.

    The pelvis triangle (hips, spine1) and the chest group (neck, collars) keep the sample's frame-0
    shape — they move rigidly in the source — while spine, neck, legs and arms are straightened into a
    T-pose (``"T"``), arms 45° down (``"A"``), or left as in frame 0 (``"frame0"``).
    """
    if pose == "frame0":
        return frame0.copy()
    hips = frame0[1] - frame0[2]
    yaw = np.arctan2(hips[2], hips[0])                  # turn the hip line onto +X (rig left)
    frame0 = frame0 @ axis_rotation([0, 1.0, 0], yaw).T
    length = {j: np.linalg.norm(frame0[j] - frame0[T2M_PARENTS[j]]) for j in range(1, 22)}
    up, left = np.array([0.0, 1, 0]), np.array([1.0, 0, 0])
    out = np.zeros((22, 3))
    out[0] = frame0[0]
    for j in (1, 2, 3):
        out[j] = out[0] + frame0[j] - frame0[0]
    out[6] = out[3] + up * length[6]
    out[9] = out[6] + up * length[9]
    for j in (12, 13, 14):
        out[j] = out[9] + frame0[j] - frame0[9]
    out[15] = out[12] + up * length[15]
    arm_drop = {"T": 0.0, "A": np.radians(45)}[pose]
    for side, sign in ((0, 1.0), (1, -1.0)):
        hip, knee, ankle, ball = (1 + side, 4 + side, 7 + side, 10 + side)
        out[knee] = out[hip] - up * length[knee]
        out[ankle] = out[knee] - up * length[ankle]
        foot = frame0[ball] - frame0[ankle]
        out[ball] = out[ankle] + foot / np.linalg.norm(foot) * length[ball]
        collar, shoulder, elbow, wrist = 13 + side, 16 + side, 18 + side, 20 + side
        out[shoulder] = out[collar] + sign * left * length[shoulder]
        arm = axis_rotation([0, 0, 1.0], -sign * arm_drop) @ (sign * left)
        out[elbow] = out[shoulder] + arm * length[elbow]
        out[wrist] = out[elbow] + arm * length[wrist]
    out[:, 1] -= out[:, 1].min() - 0.03
    return out


def make_rig(rest_joints: np.ndarray, roll_seed: int | None = None, world: np.ndarray | None = None,
             rotation_modes: list[str] | None = None, fingers: bool = False) -> RigDescription:
    """An SMPL-named armature (Z-up Blender conventions) with its heads on ``rest_joints`` (source axes).

    ``roll_seed`` gives every bone a random roll; ``world`` is the object's matrix_world (the armature
    space is then ``world⁻¹`` of the Z-up scene); ``fingers`` adds 3×5 finger bones per hand, twist
    bones, a root and end bones (64 bones).
    """
    rng = np.random.default_rng(roll_seed)
    world = np.eye(4) if world is None else world
    to_armature = np.linalg.inv(world)
    heads = rest_joints @ SOURCE_TO_BLENDER.T
    names, parents, tails = list(SMPL_NAMES), list(T2M_PARENTS), []
    for j in range(22):
        if j in CHILD:
            tails.append(heads[CHILD[j]])
        else:
            parent = heads[T2M_PARENTS[j]]
            tails.append(heads[j] + 0.5 * (heads[j] - parent))
    heads, tails = list(heads), tails
    if fingers:
        names.append("Root")
        parents.append(-1)
        heads.append(np.zeros(3))
        tails.append(np.array([0, 0.2, 0.0]))
        parents[0] = len(names) - 1
        for side, wrist in (("L", 20), ("R", 21)):
            direction = tails[wrist] - heads[wrist]
            lateral = np.array([0.0, -1, 0])
            for f, finger in enumerate(("Thumb", "Index", "Middle", "Ring", "Pinky")):
                parent = wrist
                start = tails[wrist] + lateral * (f - 2) * 0.02
                for k in range(1, 4):
                    names.append(f"{side}_{finger}{k}")
                    parents.append(parent)
                    heads.append(start)
                    start = start + direction * 0.25
                    tails.append(start)
                    parent = len(names) - 1
        for j, twist in ((16, "L_UpperArm_Twist"), (17, "R_UpperArm_Twist"), (18, "L_Forearm_Twist"),
                         (19, "R_Forearm_Twist"), (1, "L_Thigh_Twist"), (2, "R_Thigh_Twist"),
                         (4, "L_Calf_Twist"), (5, "R_Calf_Twist")):
            names.append(twist)
            parents.append(j)
            heads.append(0.5 * (heads[j] + tails[j]))
            tails.append(tails[j])
        for j, end in ((15, "Head_End"), (10, "L_Foot_End"), (11, "R_Foot_End")):
            names.append(end)
            parents.append(j)
            heads.append(tails[j])
            tails.append(tails[j] + (tails[j] - heads[j]))
    mats = np.tile(np.eye(4), (len(names), 1, 1))
    for i, (h, t) in enumerate(zip(heads, tails, strict=True)):
        y = (t - h) / np.linalg.norm(t - h)
        x = np.cross(y, [0, 0, 1.0]) if abs(y[2]) < 0.9 else np.cross(y, [1.0, 0, 0])
        x /= np.linalg.norm(x)
        rot = np.stack([x, y, np.cross(x, y)], axis=-1)
        if roll_seed is not None:
            rot = rot @ axis_rotation([0, 1.0, 0], rng.uniform(-np.pi, np.pi))
        world_rest = np.eye(4)
        world_rest[:3, :3], world_rest[:3, 3] = rot, h
        local = to_armature @ world_rest
        local[:3, :3] /= np.linalg.norm(local[:3, :3], axis=0)     # matrix_local carries no scale
        mats[i] = local
    modes = rotation_modes or ["QUATERNION"] * len(names)
    return RigDescription(bone_names=names, parents=parents, rest_matrices=mats, world_matrix=world,
                          rotation_modes=modes + ["QUATERNION"] * (len(names) - len(modes)))


def mixamo_like_world() -> np.ndarray:
    """FBX-import style object: rotated 90° about X, scale 0.01, moved."""
    world = np.eye(4)
    world[:3, :3] = axis_rotation([1.0, 0, 0], np.pi / 2) * 0.01
    world[:3, 3] = [1.0, -2.0, 0.0]
    return world


@pytest.fixture(scope="module")
def source(sample_joints) -> np.ndarray:
    return sample_joints.astype(np.float64)


def read_back(rig, mapping, result, reproportion: bool = False) -> np.ndarray:
    """The 22 joints as Blender would show the keys (numpy FK), in the source's space."""
    pose = pose_matrices_from_basis(rig, result)
    return joints_from_pose(rig, mapping, pose, reproportion=reproportion, transform=result.transform)


# --- exactness on the SMPL layout ------------------------------------------------------------------

@pytest.mark.parametrize("pose, roll_seed, world", [
    ("frame0", None, None), ("T", None, None), ("A", 1, None), ("T", 2, "mixamo"), ("A", 3, "mixamo")])
def test_smpl_layout_rig_reproduces_the_sample(source, pose, roll_seed, world):
    rig = make_rig(smpl_rest_joints(source[0], pose), roll_seed,
                   mixamo_like_world() if world else None)
    mapping = auto_map(rig)
    assert not mapping.missing
    result = retarget(source, rig, mapping, foot_lock=False)
    back = read_back(rig, mapping, result)
    assert metrics.mpjpe_mm(back, source) <= 1.0
    assert metrics.bone_direction_error(back, source) < 0.1


def test_rest_pose_and_roll_do_not_change_the_posed_bones(source):
    """T vs A rest and random rolls: identical posed bone orientations, not just identical joints."""
    worlds = []
    for pose, roll in (("T", None), ("A", None), ("T", 7)):
        rig = make_rig(smpl_rest_joints(source[0], pose), roll)
        result = retarget(source, rig, auto_map(rig), foot_lock=False)
        pose_m = pose_matrices_from_basis(rig, result)
        # The bone's anatomical frame: its pose rotation relative to its own rest, applied to the rest
        # frame of a reference rig (T, no roll) — equal across rigs iff the solver is rest-independent.
        worlds.append(pose_m[..., :3, :3] @ np.swapaxes(rig.rest_matrices[:, :3, :3], -1, -2))
    t_pose, a_pose, rolled = worlds
    arms = [SMPL_NAMES.index(n) for n in ("L_Shoulder", "R_Shoulder", "L_Elbow", "R_Elbow", "L_Wrist",
                                          "R_Wrist")]
    others = [i for i in range(22) if i not in arms]
    assert np.abs(rolled - t_pose).max() < 1e-6             # roll: the same world deltas everywhere
    assert np.abs(a_pose[:, others] - t_pose[:, others]).max() < 1e-6
    # Arms: the A rest differs by a 45° turn about forward, so posed = delta(A) · R45 = delta(T).
    for side, sign in ((0, 1.0), (1, -1.0)):
        turn = axis_rotation([0, -1.0, 0], -sign * np.radians(45))    # forward is −Y in Blender
        for i in arms[side::2]:
            assert np.abs(a_pose[:, i] @ turn - t_pose[:, i]).max() < 1e-6


# --- guards and formats -----------------------------------------------------------------------------

def test_hyper_extended_knee_does_not_flip_the_leg():
    """A knee bent 5° backwards must not turn the thigh 180° about itself (sign guard)."""
    angles = np.radians(np.linspace(-10, 40, 51))          # negative = hyper-extension
    hip = np.zeros((51, 3))
    knee = np.tile([0, -0.4, 0.0], (51, 1))
    shin = np.stack([np.zeros(51), -np.cos(angles), -np.sin(angles)], axis=-1) * 0.4  # flex: shin back
    forward = np.tile([0, 0, 1.0], (51, 1))
    thigh, _, hinge = limb_frames(hip, knee, knee + shin, -forward, -np.tile([0, 1.0, 0], (51, 1)))
    assert (hinge[:, 0] > 0.99).all()                      # left-pointing hinge on every frame
    assert np.abs(np.diff(thigh, axis=0)).max() < 1e-9      # the thigh frame never moves


def test_quaternions_are_continuous_and_euler_modes_agree(source):
    modes = ["QUATERNION"] * 22
    modes[SMPL_NAMES.index("L_Shoulder")] = "XYZ"
    modes[SMPL_NAMES.index("R_Elbow")] = "ZXY"
    modes[SMPL_NAMES.index("Spine2")] = "AXIS_ANGLE"
    rig = make_rig(smpl_rest_joints(source[0], "A"), 5, rotation_modes=modes)
    mapping = auto_map(rig)
    result = retarget(source, rig, mapping, foot_lock=False)
    data = result.to_dict()
    assert data["frame_count"] == len(source) and data["fps"] == 20.0
    assert data["root"]["name"] == "Pelvis" and data["root"]["location"].shape == (len(source), 3)
    channels = {b["name"]: b for b in data["bones"]}
    assert channels["L_Shoulder"]["channel"] == "rotation_euler"
    assert channels["Spine2"]["channel"] == "rotation_axis_angle"
    for bone in data["bones"]:
        values = bone["values"]
        if bone["channel"] == "rotation_quaternion":
            assert values.shape == (len(source), 4)
            assert ((values[1:] * values[:-1]).sum(-1) >= 0).all()
        elif bone["channel"] == "rotation_euler":
            assert values.shape == (len(source), 3)
            assert np.abs(np.diff(values, axis=0)).max() < np.pi
    assert metrics.mpjpe_mm(read_back(rig, mapping, result), source) <= 1.0


# --- resampling ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("fps", [24.0, 25.0, 30.0, 60.0, 29.97])
def test_resampled_keys_round_trip(source, fps):
    rig = make_rig(smpl_rest_joints(source[0], "T"), 4)
    mapping = auto_map(rig)
    result = retarget(source, rig, mapping, foot_lock=False)
    scene = resample_result(result, fps)
    assert scene.fps == fps
    assert scene.frame_count == int(np.floor((len(source) - 1) / 20.0 * fps + 1e-6)) + 1
    assert retarget(source, rig, mapping, foot_lock=False, dst_fps=fps).frame_count == scene.frame_count
    back = resample_result(scene, 20.0)
    n = min(back.frame_count, result.frame_count)
    # Slerp between 20 fps keys and back: small interpolation error only, never a flip.
    joints = read_back(rig, mapping, back)[:n]
    assert metrics.mpjpe_mm(joints, source[:n]) < 15.0
    # Integer-ratio frames coincide with the originals exactly.
    if fps in (60.0,):
        exact = read_back(rig, mapping, scene)[::3]
        assert metrics.mpjpe_mm(exact, source[:len(exact)]) < 1.0
    positions = resample_positions(resample_positions(source, 20.0, fps), fps, 20.0)
    assert metrics.mpjpe_mm(positions, source[:len(positions)]) < 15.0


def test_resampling_positions_keeps_the_duration(source):
    up = resample_positions(source, 20.0, 60.0)
    assert len(up) == (len(source) - 1) * 3 + 1
    assert np.allclose(up[::3], source)
    down = resample_positions(up, 60.0, 20.0)
    assert np.allclose(down, source)


# --- foot lock ---------------------------------------------------------------------------------------

def test_foot_lock_stops_contact_sliding(source):
    rig = make_rig(smpl_rest_joints(source[0], "A"), 6)
    mapping = auto_map(rig)
    free = read_back(rig, mapping, retarget(source, rig, mapping, foot_lock=False))
    locked_result = retarget(source, rig, mapping, foot_lock=True)
    locked = read_back(rig, mapping, locked_result)
    contact = source_contacts(source, locked_result.transform.source_floor, 20.0)
    steps = contact[1:] & contact[:-1]
    assert metrics.contact_speed(locked, steps) < 0.2 * metrics.contact_speed(free, steps)
    assert metrics.foot_skating_ratio(locked) <= metrics.foot_skating_ratio(source)
    # Only the legs change, and only a little.
    upper_body = [0, 3, 6, 9, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21]
    assert metrics.mpjpe_mm(locked[:, upper_body], source[:, upper_body]) < 1.0
    assert metrics.mpjpe_mm(locked, source) < 30.0


# --- inverse ---------------------------------------------------------------------------------------

def test_inverse_round_trip_on_smpl_layout(source):
    rig = make_rig(smpl_rest_joints(source[0], "T"), 8, mixamo_like_world())
    mapping = auto_map(rig)
    result = retarget(source, rig, mapping, foot_lock=False)
    pose = pose_matrices_from_basis(rig, result)
    # Re-proportioned (the default): HumanML3D lengths, lowest joint on the floor — the sample itself.
    assert metrics.mpjpe_mm(joints_from_pose(rig, mapping, pose), source) < 1.0


def test_inverse_reproportions_a_differently_built_rig(source):
    """Longer legs and shorter arms: the read-back joints have HumanML3D lengths and the same directions."""
    rest = smpl_rest_joints(source[0], "T")
    stretched = rest.copy()
    for j in range(1, 22):        # scale bones in FK order: legs ×1.25, arms ×0.9
        p = T2M_PARENTS[j]
        scale = 1.25 if j in (4, 5, 7, 8) else 0.9 if j in (18, 19, 20, 21) else 1.0
        stretched[j] = stretched[p] + scale * (rest[j] - rest[p])
    rig = make_rig(stretched, 9)
    mapping = auto_map(rig)
    result = retarget(source, rig, mapping, foot_lock=False)
    assert result.transform.scale > 1.1
    pose = pose_matrices_from_basis(rig, result)
    raw = joints_from_pose(rig, mapping, pose, reproportion=False, transform=result.transform)
    assert metrics.bone_direction_error(raw, source) < 0.1
    fixed = joints_from_pose(rig, mapping, pose)
    lengths = np.linalg.norm(fixed[:, 1:] - fixed[:, list(T2M_PARENTS[1:])], axis=-1)
    source_lengths = np.linalg.norm(source[:, 1:] - source[:, list(T2M_PARENTS[1:])], axis=-1)
    assert np.abs(lengths - source_lengths).max() < 1e-4
    assert metrics.mpjpe_mm(fixed, source) < 20.0


def test_unmapped_bones_stay_at_rest_and_fingers_follow_the_hand(source):
    rig = make_rig(smpl_rest_joints(source[0], "T"), 10, fingers=True)
    mapping = auto_map(rig)
    result = retarget(source, rig, mapping, foot_lock=False)
    keyed = {b.name for b in result.bones}
    assert not any("Index" in n or n == "Root" for n in keyed)
    pose = pose_matrices_from_basis(rig, result)
    hand, finger = rig.bone_names.index("L_Wrist"), rig.bone_names.index("L_Index2")
    rel = np.linalg.inv(pose[:, hand]) @ pose[:, finger]
    rest_rel = np.linalg.inv(rig.rest_matrices[hand]) @ rig.rest_matrices[finger]
    assert np.abs(rel - rest_rel).max() < 1e-9
    assert metrics.mpjpe_mm(read_back(rig, mapping, result), source) <= 1.0


def test_quaternion_keys_compose_like_blender(source):
    """The keys are Blender pose-bone quaternions: B = Lᵀ·D_pᵀ·D·L checked on one bone by hand."""
    rig = make_rig(smpl_rest_joints(source[0], "T"), 11)
    result = retarget(source, rig, auto_map(rig), foot_lock=False)
    pose = pose_matrices_from_basis(rig, result)
    knee = rig.bone_names.index("L_Knee")
    hip = rig.bone_names.index("L_Hip")
    q = {b.name: b.values for b in result.bones}
    rest = rig.rest_matrices[:, :3, :3]
    expected = pose[:, hip, :3, :3] @ rest[hip].T @ rest[knee] @ quat_to_matrix(q["L_Knee"])
    assert np.abs(pose[:, knee, :3, :3] - expected).max() < 1e-9


def test_an_elevated_rig_animation_goes_back_at_its_own_height(source):
    """In-betweening reads a rig's animation and retargets the answer with the transform that read it:
    a character 0.5 m up (on a platform) stays there, instead of dropping to the rig's rest floor."""
    from backend.retarget.inverse import joints_and_transform_from_pose

    rig = make_rig(smpl_rest_joints(source[0], "T"), 12, mixamo_like_world())
    mapping = auto_map(rig)
    keys = retarget(source, rig, mapping, foot_lock=False)
    up = keys.transform.up                                               # armature-space up
    pelvis = rig.bone_names.index("Pelvis")
    grounded = pose_matrices_from_basis(rig, keys)
    keys.root_location = keys.root_location + (0.5 * up) @ rig.rest_matrices[pelvis, :3, :3]
    pose = pose_matrices_from_basis(rig, keys)
    assert np.allclose((pose - grounded)[:, :, :3, 3] @ up, 0.5)            # every bone 0.5 m up

    def height(matrices):
        return matrices[:, pelvis, :3, 3] @ up

    joints, placement = joints_and_transform_from_pose(rig, mapping, pose)
    assert abs(joints[..., 1].min()) < 1e-9                  # the model still sees a grounded clip
    for foot_lock in (False, True):
        again = pose_matrices_from_basis(rig, retarget(joints, rig, mapping, foot_lock=foot_lock,
                                                       transform=placement))
        assert np.abs(height(again) - height(pose)).max() < 0.01, foot_lock
        assert np.abs(again[:, pelvis, :3, 3] - pose[:, pelvis, :3, 3]).max() < 0.01, foot_lock
    # Without the transform the floor is re-estimated from the grounded joints: the 0.5 m is lost.
    dropped = pose_matrices_from_basis(rig, retarget(joints, rig, mapping, foot_lock=False))
    assert (height(pose) - height(dropped)).mean() > 0.3


def test_a_fixed_frame_count_covers_the_source_span_exactly(source):
    """24 → 20 → 24 fps can lose the last frame; ``frame_count`` keys the source's frames exactly."""
    rig = make_rig(smpl_rest_joints(source[0], "T"), 13)
    mapping = auto_map(rig)
    joints_20 = resample_positions(source[:145], 24.0, 20.0)      # 145 frames at 24 fps → 121 at 20
    derived = retarget(joints_20, rig, mapping, src_fps=20.0, dst_fps=24.0, foot_lock=False)
    exact = retarget(joints_20, rig, mapping, src_fps=20.0, dst_fps=24.0, foot_lock=False, frame_count=146)
    assert derived.frame_count == 145 and exact.frame_count == 146
    assert np.allclose(exact.root_location[:145], derived.root_location, atol=1e-9)
    assert np.allclose(exact.root_location[145], derived.root_location[144], atol=0.05)
