"""Steering (docs/retargeting.md §11) on the real HumanML3D sample 000612 and numpy-built rigs: the
root follows a circle, an S-curve and a polyline with a 90° corner within 2 cm without adding foot
skating, waypoints are passed at their frames, the travel goes onto a root bone or the object without
moving a single joint, the ground rule keeps the feet up, and bad steering fails before any work."""

from __future__ import annotations

import numpy as np
import pytest

from backend.portable.errors import InputError, RigError
from backend.portable.quaternion import quat_to_matrix
from backend.retarget import metrics
from backend.retarget.channels import channel_to_matrices
from backend.retarget.inverse import default_transform, joints_from_pose, pose_matrices_from_basis
from backend.retarget.mapping import auto_map
from backend.retarget.rig_setup import SOURCE_UP
from backend.retarget.solver import analyse_rig, retarget
from backend.retarget.steering import Knot, Route, Steering, waypoint_route, world_per_source, world_to_source
from tests.backend.retarget.test_solver import make_rig, read_back, smpl_rest_joints


def circle(radius: float = 1.5, n: int = 400) -> np.ndarray:
    a = np.linspace(0, 2 * np.pi, n)
    return np.stack([radius * np.sin(a), radius * (1 - np.cos(a)), 0 * a], axis=1)


def s_curve(n: int = 400) -> np.ndarray:
    t = np.linspace(0, 1, n)
    return np.stack([5 * t, np.sin(2 * np.pi * t), 0 * t], axis=1)


def corner(n: int = 200) -> np.ndarray:
    up = np.stack([np.zeros(n), np.linspace(0, 2.5, n), np.zeros(n)], axis=1)
    across = np.stack([np.linspace(0, 2.5, n), np.full(n, 2.5), np.zeros(n)], axis=1)
    return np.concatenate([up, across[1:]])


PATHS = {"circle": circle, "s_curve": s_curve, "corner_90": corner}


@pytest.fixture(scope="module")
def source(sample_joints) -> np.ndarray:
    return sample_joints[:196].astype(np.float64)


@pytest.fixture(scope="module")
def rig(source):
    return make_rig(smpl_rest_joints(source[0], "A"), 6)


@pytest.fixture(scope="module")
def mapping(rig):
    return auto_map(rig)


@pytest.fixture(scope="module")
def plain(source, rig, mapping) -> np.ndarray:
    return read_back(rig, mapping, retarget(source, rig, mapping))


def root_to_path_cm(rig, result, back: np.ndarray, points: np.ndarray) -> np.ndarray:
    route = Route(world_to_source(points, rig.world_matrix, result.transform)[:, [0, 2]])
    return route.distance(back[:, 0][:, [0, 2]]) * world_per_source(rig.world_matrix, result.transform) * 100


@pytest.mark.parametrize("timing", ["keep_speed", "fit_duration"])
@pytest.mark.parametrize("shape", list(PATHS))
def test_the_root_follows_the_path_without_adding_foot_skating(source, rig, mapping, plain, shape, timing):
    points = PATHS[shape]()
    result = retarget(source, rig, mapping, steering=Steering(path=points, timing=timing))
    back = read_back(rig, mapping, result)
    distance = root_to_path_cm(rig, result, back, points)
    assert distance.mean() <= 2.0, distance.mean()
    assert metrics.foot_skating_ratio(back) <= metrics.foot_skating_ratio(plain) + 0.01
    report = result.steering
    length = np.linalg.norm(np.diff(points[:, :2], axis=0), axis=1).sum()
    assert report["path_length"] == pytest.approx(length, rel=1e-3)
    # The upper body moves exactly as generated, only turned: its distances to the pelvis per frame.
    upper = [3, 6, 9, 12, 15, 16, 17, 18, 19, 20, 21]
    own = np.linalg.norm(source[:, upper] - source[:, :1], axis=-1)
    steered = np.linalg.norm(back[:, upper] - back[:, :1], axis=-1)
    assert np.abs(own - steered).max() < 1e-3
    if timing == "fit_duration":                  # the take's length covers the path exactly
        assert report["covered"] == pytest.approx(report["path_length"], rel=1e-3)
        assert report["stride_scale"] == pytest.approx(report["path_length"] / report["travelled"], rel=1e-3)
        assert distance[-5:].mean() <= 5.0


def test_keep_speed_reports_the_duration_the_path_needs(source, rig, mapping):
    result = retarget(source, rig, mapping, steering=Steering(path=circle(radius=3.0)))
    report = result.steering
    assert report["stride_scale"] == 1.0 and report["covered"] == pytest.approx(report["travelled"], rel=1e-3)
    assert report["seconds_for_path"] == pytest.approx(report["path_length"] / report["speed"], rel=1e-3)
    assert any("needs" in w and f"{report['seconds_for_path']:.1f} s" in w for w in report["warnings"])
    short = retarget(source, rig, mapping, steering=Steering(path=corner(n=20) * 0.3)).steering
    assert any("past the path's end" in w for w in short["warnings"])


def test_a_motion_that_does_not_travel_is_reported_not_dragged(source, rig, mapping):
    standing = source.copy()
    standing[..., [0, 2]] -= source[:, :1, [0, 2]]          # the pelvis stays over the origin: no travel
    for timing in ("keep_speed", "fit_duration"):
        result = retarget(standing, rig, mapping, steering=Steering(path=s_curve(), timing=timing))
        report = result.steering
        assert any("does not walk" in w for w in report["warnings"]), report
        assert report["covered"] < 0.3 and report["stride_scale"] == 1.0
        back = read_back(rig, mapping, result)
        assert np.linalg.norm(back[-1, 0, [0, 2]] - back[0, 0, [0, 2]]) < 0.3


@pytest.mark.parametrize("key_fps", [20.0, 30.0])
def test_waypoints_are_passed_at_their_frames_with_continuous_velocity(source, rig, mapping, key_fps):
    positions = np.array([[1.0, 0.5, 0.0], [2.0, -0.5, 0.0], [3.2, 0.0, 0.0]])
    frames = np.array([50.0, 110.0, 170.0]) * (key_fps / 20.0)      # key frames at the scene rate
    result = retarget(source, rig, mapping, dst_fps=key_fps,
                      steering=Steering(waypoint_positions=positions, waypoint_frames=frames))
    back = read_back(rig, mapping, result)
    world = world_to_source(positions, rig.world_matrix, result.transform)
    for k, f in enumerate(frames.astype(int)):
        assert np.linalg.norm(back[f, 0, [0, 2]] - world[k, [0, 2]]) < 0.05
    travel = np.diff(back[:, 0, [0, 2]], axis=0)
    acceleration = np.linalg.norm(np.diff(travel, axis=0), axis=-1)
    around = np.concatenate([acceleration[f - 3:f + 2] for f in frames.astype(int)])
    assert around.max() < 4 * np.median(acceleration) + 0.01     # no kink in the velocity at a waypoint


def test_unreachable_waypoints_say_the_speed_needed_before_any_work(source, rig, mapping):
    steering = Steering(waypoint_positions=np.array([[30.0, 0.0, 0.0]]), waypoint_frames=np.array([40.0]))
    setup = analyse_rig(rig, mapping)
    with pytest.raises(InputError, match=r"needs 1[45]\.\d m/s") as info:
        steering.check(setup, default_transform(setup), rig.world_matrix, 20.0, 20.0)
    assert "later frame (at least frame 1" in info.value.fix
    late = Steering(waypoint_positions=np.array([[1.0, 0.0, 0.0]]), waypoint_frames=np.array([400.0]))
    with pytest.raises(InputError, match="after the take's end"):
        late.check(setup, default_transform(setup), rig.world_matrix, 20.0, 20.0, frames=196)
    with pytest.raises(InputError, match="after the take's end"):
        retarget(source, rig, mapping, steering=late)


@pytest.mark.parametrize("points, problem", [
    (np.zeros((5, 3)), "0.00 cm long"),
    (np.array([[0.0, 0.0, 0.0], [0.0, 0.0, 2.0]]), "vertical"),
    (np.array([[0.0, 0.0, 0.0]]), "at least two"),
    (np.array([[0.0, 0.0, 0.0], [np.nan, 1.0, 0.0]]), "NaN"),
    (np.array([[-1e6, 0.0, 0.0], [1e6, 0.0, 0.0]]), "2000.0 km long"),       # 2e8 samples otherwise
])
def test_a_path_without_ground_length_is_refused_with_the_fix(rig, mapping, points, problem):
    setup = analyse_rig(rig, mapping)
    with pytest.raises(InputError, match=problem) as info:
        Steering(path=points).check(setup, default_transform(setup), rig.world_matrix, 20.0, 20.0)
    assert "curve" in info.value.fix


def test_in_place_with_a_path_is_refused(rig, mapping):
    setup = analyse_rig(rig, mapping)
    with pytest.raises(InputError, match="In Place"):
        Steering(path=circle(), root_mode="in_place").check(setup, default_transform(setup),
                                                            rig.world_matrix, 20.0, 20.0)


# --- root motion -----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def rooted(source):
    """The 64-bone SMPL-layout rig with a "Root" bone above the pelvis."""
    rig = make_rig(smpl_rest_joints(source[0], "A"), 3, fingers=True)
    return rig, auto_map(rig)


def posed(rig, result) -> np.ndarray:
    """Armature-space pose matrices with the root bone's location keys too."""
    names = list(rig.bone_names)
    basis = np.tile(np.eye(4), (result.frame_count, len(names), 1, 1))
    for bone in result.bones:
        basis[:, names.index(bone.name), :3, :3] = channel_to_matrices(bone.values, bone.rotation_mode)
    basis[:, names.index(result.root_name), :3, 3] = result.root_location
    if result.root_motion and result.root_motion["mode"] == "root_bone":
        basis[:, names.index(result.root_motion["name"]), :3, 3] = result.root_motion["location"]
    return pose_matrices_from_basis(rig, basis)


@pytest.mark.parametrize("heading", [True, False])
def test_root_bone_extraction_moves_no_joint_and_keeps_the_hips_over_the_root(source, rooted, heading):
    rig, mapping = rooted
    steering = Steering(path=s_curve(), root_mode="root_bone", root_bone="Root", heading=heading)
    reference = retarget(source, rig, mapping, steering=Steering(path=s_curve()))
    result = retarget(source, rig, mapping, steering=steering)
    assert result.root_motion["name"] == "Root" and result.steering["root_motion"] == "root_bone"
    same = joints_from_pose(rig, mapping, posed(rig, result), transform=result.transform)
    before = joints_from_pose(rig, mapping, posed(rig, reference), transform=reference.transform)
    assert metrics.mpjpe_mm(same, before) < 0.5
    # The root is ground-projected: it stays at its rest height and carries the travel.
    pose = posed(rig, result)
    root = list(rig.bone_names).index("Root")
    heights = pose[:, root, 2, 3]
    assert np.abs(heights - rig.rest_matrices[root][2, 3]).max() < 1e-9
    assert np.linalg.norm(pose[-1, root, :2, 3] - pose[0, root, :2, 3]) > 2.0
    # The hips keep their rest offset from the root, horizontally, in the root's own frame.
    pelvis = list(rig.bone_names).index("Pelvis")
    local = np.einsum("tji,tj->ti", pose[:, root, :3, :3], pose[:, pelvis, :3, 3] - pose[:, root, :3, 3])
    rest_local = rig.rest_matrices[root][:3, :3].T @ (rig.rest_matrices[pelvis][:3, 3]
                                                    - rig.rest_matrices[root][:3, 3])
    up_local = rig.rest_matrices[root][:3, :3].T @ np.array([0, 0, 1.0])
    flat = (local - rest_local) - np.outer((local - rest_local) @ up_local, up_local)
    assert np.abs(flat).max() < 1e-6
    root_keys = next(b for b in result.bones if b.name == "Root")
    rotation = channel_to_matrices(root_keys.values, root_keys.rotation_mode)
    spin = np.degrees(np.arccos(np.clip((np.trace(rotation, axis1=1, axis2=2) - 1) / 2, -1, 1))).max()
    assert (spin > 20) if heading else (spin < 1e-6)


def test_object_extraction_moves_no_joint_in_the_world(source, rooted):
    rig, mapping = rooted
    reference = retarget(source, rig, mapping, steering=Steering(path=circle()))
    result = retarget(source, rig, mapping, steering=Steering(path=circle(), root_mode="object"))
    motion = result.root_motion
    assert motion["mode"] == "object" and motion["rotation_euler"].shape == (result.frame_count, 3)
    world = np.tile(np.eye(4), (result.frame_count, 1, 1))
    scale = np.linalg.norm(rig.world_matrix[:3, 0])
    world[:, :3, :3] = quat_to_matrix(motion["rotation_quaternion"]) * scale
    world[:, :3, 3] = motion["location"]
    heads = (np.einsum("tij,tbj->tbi", world[:, :3, :3], posed(rig, result)[..., :3, 3])
             + world[:, None, :3, 3])
    plain = posed(rig, reference)[..., :3, 3] @ rig.world_matrix[:3, :3].T + rig.world_matrix[:3, 3]
    body = [b for b, name in enumerate(rig.bone_names) if name != "Root"]      # (the root bone travels)
    assert np.abs(heads - plain)[:, body].max() < 1e-4
    assert np.abs(motion["location"][:, 2] - rig.world_matrix[2, 3]).max() < 1e-9     # on the ground


def test_a_root_bone_that_does_not_carry_the_hips_is_refused(rooted):
    rig, mapping = rooted
    setup = analyse_rig(rig, mapping)
    with pytest.raises(RigError, match="'L_Hip' is not an ancestor of the hips bone 'Pelvis'") as info:
        Steering(root_mode="root_bone", root_bone="L_Hip").check(setup, default_transform(setup),
                                                                  rig.world_matrix, 20.0, 20.0)
    assert "'Root'" in info.value.fix and "Object" in info.value.fix
    with pytest.raises(RigError, match="not a bone of this rig"):
        Steering(root_mode="root_bone", root_bone="nope").check(setup, default_transform(setup),
                                                                 rig.world_matrix, 20.0, 20.0)


def test_a_rig_without_a_root_bone_puts_the_root_motion_on_the_object(source, rig, mapping):
    result = retarget(source, rig, mapping, steering=Steering(root_mode="root_bone"))
    assert result.root_motion["mode"] == "object"
    assert any("onto the armature object" in w for w in result.steering["warnings"])


# --- ground ----------------------------------------------------------------------------------------

def test_ground_keeps_feet_up_and_lowers_the_pelvis_where_a_pin_is_out_of_reach(source, rig, mapping):
    sunk = source - 0.06 * SOURCE_UP                        # the clip 6 cm into the floor
    transform = retarget(source, rig, mapping).transform      # placed as the clip on its own floor
    setup = analyse_rig(rig, mapping)
    balls_ankles = [7, 8, 10, 11]
    rest_height = setup.rest_joints[balls_ankles] @ setup.up
    for ground in (False, True):
        result = retarget(sunk, rig, mapping, transform=transform, steering=Steering(ground=ground))
        pose = pose_matrices_from_basis(rig, result)
        heads = pose[:, [setup.joint_bone[j] for j in balls_ankles]][..., :3, 3] @ setup.up
        below = (rest_height - heads).max()
        assert (below < 1e-3) if ground else (below > 0.05)
    stretched = Steering(path=circle(), timing="fit_duration", ground=True)       # strides × 2
    result = retarget(source, rig, mapping, steering=stretched)
    assert 0.005 < result.steering["pelvis_lowered"] <= 0.15 * setup.leg_length + 1e-9   # a knee bend at most
    free = retarget(source, rig, mapping, steering=Steering(path=circle(), timing="fit_duration"))
    contacts_back, free_back = read_back(rig, mapping, result), read_back(rig, mapping, free)
    assert contacts_back[:, 0, 1].min() < free_back[:, 0, 1].min()


def test_waypoints_on_a_path_are_passed_in_order_along_it(source, rig, mapping):
    points = s_curve()
    on_path = points[[120, 300]]
    result = retarget(source, rig, mapping, steering=Steering(path=points, waypoint_positions=on_path,
                                                              waypoint_frames=np.array([60.0, 150.0])))
    back = read_back(rig, mapping, result)
    assert root_to_path_cm(rig, result, back, points).mean() <= 2.0
    target = world_to_source(on_path, rig.world_matrix, result.transform)
    for k, f in enumerate((60, 150)):
        assert np.linalg.norm(back[f, 0, [0, 2]] - target[k, [0, 2]]) < 0.05
    backwards = Steering(path=points, waypoint_positions=on_path[::-1],
                         waypoint_frames=np.array([60.0, 150.0]))
    setup = analyse_rig(rig, mapping)
    with pytest.raises(InputError, match="Waypoint 2 lies behind waypoint 1 along the path"):
        backwards.check(setup, default_transform(setup), rig.world_matrix, 20.0, 20.0)     # before any work
    with pytest.raises(InputError, match="Waypoint 2 lies behind waypoint 1 along the path"):
        retarget(source, rig, mapping, steering=backwards)


def test_in_place_keeps_meaning_in_place(source, rig, mapping):
    old = retarget(source, rig, mapping, in_place=True)
    new = retarget(source, rig, mapping, steering=Steering(root_mode="in_place"))
    assert np.array_equal(old.root_location, new.root_location) and new.steering is None
    hips = read_back(rig, mapping, new)[:, 0, [0, 2]]
    assert np.linalg.norm(hips - hips[0], axis=-1).max() < 0.2      # the 4.6 m walk stays on the spot


def test_a_route_on_one_spot_is_refused_and_repeated_points_are_skipped():
    with pytest.raises(InputError, match="cm long"):
        Route(np.array([[1.0, 2.0], [1.0, 2.0]]))
    route = waypoint_route(np.zeros(2), [Knot(10.0, np.array([1.0, 0.0])), Knot(20.0, np.array([1.0, 0.0])),
                                         Knot(30.0, np.array([2.0, 0.0]))])
    assert abs(route.length - 2.0) < 1e-6 and len(route.points) == 201


def test_a_waypoint_route_longer_than_10_km_is_refused_before_resampling():
    with pytest.raises(InputError, match="km long") as info:
        waypoint_route(np.zeros(2), [Knot(10.0, np.array([20_000.0, 0.0]))])
    assert "closer together" in info.value.fix
