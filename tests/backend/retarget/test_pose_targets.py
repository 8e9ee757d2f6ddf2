"""Pose targets on the solved channels (backend/retarget/pose_targets.py, docs/retargeting.md §12), with
the real HumanML3D sample 000612 as the generated motion and poses from other moments of it as the
user's keys: at each target frame every bone's local rotation is the key (≤ 0.01°) and the root its
keyed location; the steps where the keys meet the motion stay within twice its median step; frames
outside the blend windows are the generated motion itself."""

from __future__ import annotations

import numpy as np
import pytest

from backend.retarget.channels import channel_to_quats
from backend.retarget.inverse import pose_matrices_from_basis
from backend.retarget.mapping import auto_map
from backend.retarget.pose_targets import blend_schedule, key_channels, pin_to_keys, seam_ratio
from backend.retarget.solver import retarget
from tests.backend.retarget.test_solver import make_rig, mixamo_like_world, smpl_rest_joints

MAX_KEY_ERROR_DEG = 0.01
MAX_SEAM_RATIO = 2.0
#: (target frames in the 120-frame take at 24 fps, the sample's frames their keys are posed from)
TARGETS = [([10, 60, 110], [150, 170, 190]),        # start, middle, end
           ([0, 119], [200, 230]),                  # in-betweening two keys at the take's ends
           ([5, 11, 30, 80], [140, 150, 160, 170]),  # two targets 6 frames apart blend into each other
           ([20, 100], [30, 190])]


def rigs(sample_joints):
    yield "smpl_quaternions", make_rig(smpl_rest_joints(sample_joints[0], "T"))
    a_pose = smpl_rest_joints(sample_joints[0], "A")
    yield "a_pose_euler_mixamo_world", make_rig(a_pose, 3, mixamo_like_world(), rotation_modes=["XYZ"] * 22)


def quats(result):
    return np.stack([channel_to_quats(b.values, b.rotation_mode) for b in result.bones])


def angle_deg(q0, q1):
    return np.degrees(2 * np.arccos(np.clip(np.abs((q0 * q1).sum(-1)), 0, 1)))


@pytest.mark.parametrize("frames, posed_from", TARGETS)
def test_keys_are_hit_exactly_and_the_seams_stay_smooth(sample_joints, frames, posed_from):
    for name, rig in rigs(sample_joints):
        mapping = auto_map(rig)
        whole = retarget(sample_joints, rig, mapping, src_fps=20, dst_fps=24)
        user_poses = pose_matrices_from_basis(rig, whole)[posed_from]
        generated = retarget(sample_joints[:100], rig, mapping, src_fps=20, dst_fps=24, frame_count=120)
        pinned = pin_to_keys(generated, rig, frames, user_poses)
        result = pinned.result
        assert result.frame_count == 120
        assert [b.name for b in result.bones] == [b.name for b in generated.bones]
        keyed_rot, keyed_loc = key_channels(rig, user_poses)
        rows = [rig.bone_names.index(b.name) for b in result.bones]
        error = angle_deg(quats(result)[:, frames], np.swapaxes(keyed_rot[:, rows], 0, 1)).max()
        assert error <= MAX_KEY_ERROR_DEG, (name, error)
        root = rig.bone_names.index(result.root_name)
        assert np.abs(result.root_location[frames] - keyed_loc[:, root]).max() < 1e-9
        # what Blender shows (numpy FK): the posed bones at the targets are the user's poses
        shown = pose_matrices_from_basis(rig, result)[frames]
        bones = sorted(set(rows))
        assert np.abs(shown[:, bones, :3, :3] - user_poses[:, bones, :3, :3]).max() < 1e-6, name
        seam, median = seam_ratio(quats(result), pinned.frames, pinned.windows)
        assert seam <= MAX_SEAM_RATIO * median, (name, seam, median, pinned.report())
        print(name, frames, f"seam {seam:.2f} deg/frame, median {median:.2f}, ratio {seam / median:.2f}")
        a, b, _ = blend_schedule(120, np.asarray(frames, float), np.asarray(pinned.windows))
        untouched = (a == 0) & (b == 0)
        if untouched.any():
            assert np.allclose(quats(result)[:, untouched], quats(generated)[:, untouched], atol=1e-9)


def test_key_channels_read_back_the_keys_blender_was_given(sample_joints):
    rig = make_rig(smpl_rest_joints(sample_joints[0], "A"), 5, mixamo_like_world())
    result = retarget(sample_joints[:40], rig, auto_map(rig), src_fps=20)
    rotations, locations = key_channels(rig, pose_matrices_from_basis(rig, result))
    rows = [rig.bone_names.index(b.name) for b in result.bones]
    # degrees; not 0 only by arccos rounding
    assert angle_deg(np.swapaxes(rotations[:, rows], 0, 1), quats(result)).max() < 1e-4
    root = rig.bone_names.index(result.root_name)
    assert np.abs(locations[:, root] - result.root_location).max() < 1e-9
