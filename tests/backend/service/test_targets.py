"""``targets`` against a live service on tiny random weights (backend/service/usecases/targets.py): the
take hits the keyed poses exactly, reports the tokens it pinned, and refuses targets it cannot hit
with one message and its fix before the models do any work."""

from __future__ import annotations

import numpy as np
import pytest

from backend.motion.features import recover_from_ric
from backend.retarget.channels import channel_to_quats
from backend.retarget.inverse import pose_matrices_from_basis
from backend.retarget.mapping import auto_map
from backend.retarget.pose_targets import key_channels
from backend.retarget.rig import RigDescription
from backend.retarget.solver import retarget
from tests.backend.service.live import assert_progress_is_a_real_percentage, smpl_rig


@pytest.fixture(scope="module")
def keyed(source_features):
    """The SMPL-layout rig and its pose on every frame of the sample at 24 fps (the "user's keys")."""
    rig_dict = smpl_rig()
    rig = RigDescription.from_dict(rig_dict)
    keys = retarget(recover_from_ric(source_features), rig, auto_map(rig), src_fps=20, dst_fps=24)
    return rig_dict, rig, pose_matrices_from_basis(rig, keys).astype(np.float32)


def targets_request(rig_dict, poses, frames, take_frames, fps=24, **extra):
    return dict(prompt="a person walks forward", seed=3, steps=3, target_frames=frames,
                take_frames=take_frames,
                source={"kind": "pose", "fps": fps, "rig": rig_dict, "pose_matrices": poses}, **extra)


def test_the_pinned_tokens_are_the_encoding_of_the_held_poses(backend, keyed, tiny_weights):
    from backend.inference.pipeline import MoMaskPipeline
    from backend.retarget.inverse import joints_and_transform_from_pose
    from backend.service.usecases.targets import held_source

    rig_dict, rig, pose = keyed
    frames, posed_from = [0, 30, 70], [50, 90, 130]
    take = backend.call("targets", **targets_request(rig_dict, pose[posed_from], frames, 72))["takes"][0]
    poses, _ = joints_and_transform_from_pose(rig, auto_map(rig), pose[posed_from])
    tokens = take["targets"]["tokens"]
    assert tokens == [0, 6, 14]
    encoded = MoMaskPipeline.load(tiny_weights, device="cpu").encode(held_source(poses, tokens, 64))
    assert np.array_equal(np.asarray(take["codes"])[tokens], encoded[tokens])


def test_the_take_passes_through_every_keyed_pose(backend, keyed):
    rig_dict, rig, pose = keyed
    frames, posed_from = [0, 40, 95], [10, 120, 200]
    request_id = backend.send("targets", **targets_request(rig_dict, pose[posed_from], frames, 96))
    events, final = backend.wait(request_id)
    assert final["type"] == "result", final
    assert_progress_is_a_real_percentage(events)
    take = final["data"]["takes"][0]
    out = take["retarget"]
    assert out["fps"] == 24.0 and out["frame_count"] == 96
    report = take["targets"]
    assert report["frames"] == frames and report["tokens"] == [0, 8, 19]        # 0, 33.3, 79.2 model frames
    # the tokens at the targets are the held poses' encoding, kept on all six layers
    codes, pinned = np.asarray(take["codes"]), np.asarray(report["pinned_tokens"])
    assert codes.shape == (84 // 4, 6) and pinned.shape == (3, 6)
    assert np.array_equal(codes[report["tokens"]], pinned)
    assert (codes[[t for t in range(len(codes)) if t not in report["tokens"]]] != pinned[0]).any(axis=1).all()
    keyed_rot, keyed_loc = key_channels(rig, pose[posed_from])
    errors = []
    for bone in out["bones"]:
        b = rig_dict["bone_names"].index(bone["name"])
        q = channel_to_quats(bone["values"], rig_dict["rotation_modes"][b])[frames]
        errors.append(np.degrees(2 * np.arccos(np.clip(np.abs((q * keyed_rot[:, b]).sum(-1)), 0, 1))).max())
    assert len(errors) == 22 and max(errors) <= 0.01, max(errors)
    root = rig_dict["bone_names"].index(out["root"]["name"])
    assert np.abs(out["root"]["location"][frames] - keyed_loc[:, root]).max() < 1e-5


@pytest.mark.parametrize("frames, take_frames, fps, words", [
    ([0, 40, 96], 96, 24, "outside the take's frames 0-95"),
    ([10, 14], 96, 24, "at least 5 frames apart"),            # 4 model frames = 4.8 frames at 24 fps
    ([10, 15], 96, 30, "at least 6 frames apart"),
    ([0, 300], 400, 24, "at most 196 model frames"),
    ([0, 4], 8, 20, "nothing is left to generate"),
    ([40, 10], 96, 24, "not strictly increasing"),
])
def test_targets_it_cannot_hit_are_refused_with_the_fix(backend, keyed, frames, take_frames, fps, words):
    rig_dict, _, pose = keyed
    error = backend.wait(backend.send("targets", **targets_request(rig_dict, pose[: len(frames)], frames,
                                                                    take_frames, fps)))[1]["error"]
    assert error["code"] == "bad_input" and words in error["problem"] + " " + error["fix"], error
