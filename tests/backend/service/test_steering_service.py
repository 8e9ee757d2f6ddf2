"""Steering through the live service (docs/protocol.md, "Steering"): a ``retarget`` request follows a
path and reports it, a ``generate`` with waypoints honours them, and bad steering fails before any
generation with one clear error."""

from __future__ import annotations

import numpy as np

from backend.motion.features import recover_from_ric
from tests.backend.service.live import smpl_rig

LINE = np.stack([np.linspace(0, 3, 300), np.zeros(300), np.zeros(300)], axis=1).astype(np.float32)


def test_retarget_follows_a_path_and_reports_the_walk(backend, source_features):
    joints = recover_from_ric(source_features[:120]).astype(np.float32)
    data = backend.call("retarget", joints=joints, fps=20, rig=smpl_rig(), dst_fps=24,
                        path={"points": LINE, "timing": "fit_duration"}, root_motion={"mode": "object"})
    out = data["retarget"]
    steering = out["steering"]
    assert abs(steering["path_length"] - 3.0) < 1e-3 and abs(steering["covered"] - 3.0) < 1e-3
    assert steering["root_motion"] == "object"
    assert abs(steering["stride_scale"] - 3.0 / steering["travelled"]) < 1e-3
    motion = out["root_motion"]
    assert motion["location"].shape == (out["frame_count"], 3)
    assert abs(motion["location"][-1, 0] - 3.0) < 0.1            # the object walked the line's length


def test_generate_and_retarget_honour_waypoints(backend, source_features):
    waypoints = [{"position": [0.0, -1.0, 0.0], "frame": 40}, {"position": [1.0, -2.0, 0.0], "frame": 76}]
    data = backend.call("generate", prompts=["a person walks forward"], frames=[80], seed=3, steps=2,
                        retarget={"rig": smpl_rig(), "dst_fps": 20, "root_motion": {"mode": "object"},
                                  "waypoints": waypoints})
    steering = data["takes"][0]["retarget"]["steering"]
    assert steering["path_length"] > 2.4 and steering["root_motion"] == "object"    # through both
    # On a real walk (the tiny test weights make no walk) the root is at each waypoint at its frame.
    joints = recover_from_ric(source_features[:80]).astype(np.float32)
    out = backend.call("retarget", joints=joints, fps=20, rig=smpl_rig(), dst_fps=20,
                       root_motion={"mode": "object", "heading": False}, waypoints=waypoints)["retarget"]
    for w in waypoints:
        assert np.linalg.norm(out["root_motion"]["location"][w["frame"], :2] - w["position"][:2]) < 0.05


def refused_before_generating(backend, retarget: dict) -> dict:
    events, final = backend.wait(backend.send("generate", prompts=["a person walks"], frames=[40], seed=1,
                                              steps=2, retarget={"rig": smpl_rig(), **retarget}))
    assert final["type"] == "error", final
    assert not [e for e in events if e.get("stage") in ("base", "residual")], "generated before checking"
    return final["error"]


def test_bad_steering_fails_before_generating(backend):
    error = refused_before_generating(backend, {"waypoints": [{"position": [40.0, 0.0, 0.0], "frame": 10}]})
    assert error["code"] == "bad_input" and "m/s" in error["problem"] and "later frame" in error["fix"]
    error = refused_before_generating(backend, {"waypoints": [{"position": [1.0, 0.0, 0.0], "frame": 100}]})
    assert "after the take's end" in error["problem"]
    error = refused_before_generating(backend, {"root_motion": {"mode": "root_bone", "bone": "left_knee"}})
    assert error["code"] == "bad_rig" and "not an ancestor of the hips" in error["problem"]
    error = refused_before_generating(backend, {"path": {"points": np.zeros((4, 3), np.float32)}})
    assert error["code"] == "bad_input" and "cm long" in error["problem"] and "curve" in error["fix"]
    error = refused_before_generating(backend, {"path": {"points": [[0.0, 0.0, 0.0]]}})
    assert error["code"] == "bad_input" and "1 point" in error["problem"]


def test_inpaint_honours_the_steering_over_the_whole_answer(backend, source_features):
    joints = recover_from_ric(source_features[:120]).astype(np.float32)
    data = backend.call("inpaint", prompt="a person kicks", start=40, end=80, seed=2, steps=2,
                        source={"kind": "joints", "data": joints, "fps": 20},
                        retarget={"rig": smpl_rig(), "dst_fps": 20, "path": {"points": LINE},
                                  "root_motion": {"mode": "object", "heading": False}, "ground": True})
    out = data["takes"][0]["retarget"]
    assert out["steering"]["root_motion"] == "object" and abs(out["steering"]["path_length"] - 3.0) < 1e-3
    location = out["root_motion"]["location"]
    real = np.r_[0:36, 84:len(location)]              # the sample's own frames (tiny weights make no walk)
    assert np.abs(location[real, 1]).mean() < 0.03 and location[-1, 0] > 1.0     # along the line (+X)


def test_waypoints_on_one_spot_are_refused_not_allocated(backend):
    # One point to follow used to set a 3e8-sample smoothing window (tens of GB) before generating.
    spot = [1.0, 0.0, 0.0]
    for waypoints in ([{"position": spot, "frame": 0}],
                      [{"position": spot, "frame": 0}, {"position": spot, "frame": 20}]):
        error = refused_before_generating(backend, {"waypoints": waypoints})
        assert error["code"] == "bad_input" and "cm long" in error["problem"], error
        assert "second waypoint" in error["fix"]


def test_a_path_longer_than_10_km_is_refused_before_resampling(backend):
    far = [[-1e6, 0.0, 0.0], [1e6, 0.0, 0.0]]
    error = refused_before_generating(backend, {"path": {"points": far}})
    assert error["code"] == "bad_input" and "2000.0 km long" in error["problem"] and "shorter" in error["fix"]
