"""``retarget`` against a live service (backend/service/usecases/retarget.py)."""

from __future__ import annotations

import numpy as np

from backend.motion.features import recover_from_ric
from tests.backend.service.live import smpl_rig


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
