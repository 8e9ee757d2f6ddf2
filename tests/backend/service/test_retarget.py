"""``retarget`` against a live service (backend/service/usecases/retarget.py)."""

from __future__ import annotations

import numpy as np

from backend.motion.features import recover_from_ric
from backend.retarget import metrics
from backend.retarget.channels import BoneChannel, RetargetResult
from backend.retarget.inverse import joints_from_pose, pose_matrices_from_basis
from backend.retarget.mapping import auto_map
from backend.retarget.rig import RigDescription
from backend.retarget.solver import retarget
from tests.backend.service.live import STUB_RIG, smpl_rig


def test_retarget_drives_the_rig_at_the_scene_fps(backend, source_features):
    joints = recover_from_ric(source_features[:60]).astype(np.float32)
    data = backend.call("retarget", joints=joints, fps=20, rig=smpl_rig(), dst_fps=30, foot_lock=True)
    out = data["retarget"]
    assert out["fps"] == 30.0 and abs(out["frame_count"] - 59 * 1.5 - 1) <= 1
    channels = {b["name"]: b for b in out["bones"]}
    assert channels["left_knee"]["channel"] == "rotation_quaternion"
    assert channels["right_wrist"]["channel"] == "rotation_euler"      # the rig's XYZ bone
    assert channels["left_knee"]["values"].shape == (out["frame_count"], 4)
    assert out["root"]["name"] == "pelvis" and out["root"]["location"].shape == (out["frame_count"], 3)


def _result_from_reply(out: dict, rig) -> RetargetResult:
    modes = dict(zip(rig.bone_names, rig.rotation_modes, strict=True))
    return RetargetResult(fps=out["fps"], root_name=out["root"]["name"],
                          root_location=np.asarray(out["root"]["location"], np.float64),
                          bones=[BoneChannel(b["name"], b["channel"], np.asarray(b["values"], np.float64),
                                             modes[b["name"]]) for b in out["bones"]])


def _scaled_rig(description: dict, scale: float, name: str) -> dict:
    rest = np.array(description["rest_matrices"], dtype=np.float64)
    rest[:, :3, 3] *= scale
    return {**description, "rest_matrices": rest.astype(np.float32), "name": name}


def test_a_pose_source_drives_other_rigs_with_its_motion(backend, sample_joints):
    """Apply Motion / Copy Take: a rig's animation (posed matrices) onto two other rigs in one request;
    the motion they show is the source rig's (bone directions), at the asked fps."""
    source_rig = RigDescription.from_dict(smpl_rig())
    mapping = auto_map(source_rig)
    source_motion = retarget(np.asarray(sample_joints[:80], np.float64), source_rig, mapping, foot_lock=False)
    pose = pose_matrices_from_basis(source_rig, source_motion).astype(np.float32)
    shown = joints_from_pose(source_rig, mapping, pose, reproportion=False)
    small, tall = _scaled_rig(smpl_rig(), 0.8, "small"), _scaled_rig(smpl_rig(), 1.3, "tall")
    source = {"kind": "pose", "rig": smpl_rig(), "pose_matrices": pose, "fps": 20}
    data = backend.call("retarget", source=source, rig=small, dst_fps=20, foot_lock=False,
                        targets=[{"rig": tall, "dst_fps": 20, "foot_lock": False}])
    assert data["source_mapping"]["missing"] == [] and len(data["targets"]) == 1
    for description, out in ((small, data["retarget"]), (tall, data["targets"][0]["retarget"])):
        rig = RigDescription.from_dict(description)
        assert out["frame_count"] == 80
        posed = pose_matrices_from_basis(rig, _result_from_reply(out, rig))
        back = joints_from_pose(rig, auto_map(rig), posed, reproportion=False)
        assert metrics.bone_direction_error(back, shown) < 0.5, description["name"]
    at_30 = backend.call("retarget", source=source, rig=small, dst_fps=30)
    assert at_30["retarget"]["fps"] == 30.0 and at_30["retarget"]["frame_count"] == 119   # 79/20 s at 30 fps


def test_a_source_that_cannot_be_mapped_names_its_missing_roles(backend):
    pose = np.tile(np.eye(4, dtype=np.float32), (10, 2, 1, 1))
    events, final = backend.wait(backend.send(
        "retarget", source={"kind": "pose", "rig": {**STUB_RIG, "name": "walk.bvh"}, "pose_matrices": pose},
        rig=smpl_rig()))
    assert final["type"] == "error" and final["error"]["code"] == "bad_rig", final
    assert "walk.bvh" in final["error"]["problem"] and "left_knee" in final["error"]["problem"]
    events, final = backend.wait(backend.send(
        "retarget", joints=np.zeros((4, 22, 3), np.float32), rig=smpl_rig(),
        targets=[{"rig": {**STUB_RIG, "name": "prop"}}]))
    assert final["type"] == "error" and "'prop'" in final["error"]["problem"], final
    events, final = backend.wait(backend.send("retarget", rig=smpl_rig()))
    assert final["type"] == "error" and final["error"]["code"] == "bad_input"
    assert "'joints' or a pose 'source'" in final["error"]["problem"]
