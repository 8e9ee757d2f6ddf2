"""The steering fields of a ``retarget`` section (docs/protocol.md, "Steering"): what the add-on builds
arrives as the same typed spec, bad paths, waypoints and root-motion settings are refused by name
before any work, and the old ``in_place`` flag still means what it meant."""

from __future__ import annotations

import numpy as np
import pytest

from backend.portable import messages as m
from backend.portable import protocol as p
from tests.backend.portable.test_requests import parse_line, rig, wire

CIRCLE = np.stack([np.cos(np.linspace(0, 6.28, 200)), np.sin(np.linspace(0, 6.28, 200)),
                   np.zeros(200)], axis=1).astype(np.float32)


def steered(**spec) -> m.RetargetRequest:
    return m.RetargetRequest(joints=np.zeros((10, 22, 3), np.float32), fps=20.0,
                             target=m.RetargetSpec(rig=rig(), **spec))


@pytest.mark.parametrize("spec", [
    {"path": m.PathSpec(points=CIRCLE, timing="fit_duration", facing="keep_relative")},
    {"waypoints": (m.Waypoint(position=(1.0, 2.0, 0.0), frame=10.0),
                   m.Waypoint(position=(3.0, 2.0, 0.0), frame=40.5))},
    {"root_motion": m.RootMotionSpec(mode="root_bone", bone="root", heading=False), "ground": True},
    {"root_motion": m.RootMotionSpec(mode="object")},
])
def test_steering_survives_the_wire(spec):
    request = steered(**spec)
    parsed = parse_line(wire(request))
    assert wire(parsed) == wire(request)
    assert parsed.target.steered


def test_in_place_still_means_in_place_and_cannot_contradict_a_root_mode():
    assert parse_line(wire(steered(in_place=True))).target.root_mode == "in_place"
    assert parse_line(wire(steered())).target.root_mode == "none"
    message = p.decode_message(wire(steered(in_place=True)), kind="request")
    message["root_motion"] = {"mode": "object"}
    with pytest.raises(p.ProtocolError, match="in_place") as info:
        m.parse_request(message)
    assert info.value.code == "bad_input" and "one of the two" in info.value.fix


def refused(field: str, value) -> p.ProtocolError:
    message = p.decode_message(wire(steered()), kind="request")
    message[field] = value
    with pytest.raises(p.ProtocolError) as info:
        m.parse_request(message)
    assert info.value.code == "bad_input" and info.value.request_id == 7
    return info.value


def test_a_one_point_path_is_refused_with_the_fix():
    error = refused("path", {"points": [[0.0, 0.0, 0.0]]})
    assert "'path.points' has 1 point" in error.problem and "curve" in error.fix
    assert "timing" in refused("path", {"points": CIRCLE.tolist(), "timing": "fast"}).problem
    assert "path.points" in refused("path", {"points": [[0.0, 1.0]] * 4}).problem


def test_waypoints_out_of_frame_order_are_refused_naming_the_waypoint():
    error = refused("waypoints", [{"position": [0, 0, 0], "frame": 20}, {"position": [1, 0, 0], "frame": 20}])
    assert "'waypoints[1]'" in error.problem and "frame order" in error.problem
    assert "later frame" in error.fix
    assert "position" in refused("waypoints", [{"position": [0, 0], "frame": 2}]).problem
    assert "waypoints[0].frame" in refused("waypoints", [{"position": [0, 0, 0], "frame": -1}]).problem
    assert "waypoints[0].frame" in refused("waypoints", [{"position": [0, 0, 0]}]).problem


def test_a_root_motion_mode_must_be_known():
    assert "root_motion.mode" in refused("root_motion", {"mode": "hips"}).problem


def test_path_seconds_plans_a_keep_speed_take_from_the_ground_length():
    line = [[0.0, 0.0, 5.0], [2.6, 0.0, 0.0]]               # 2.6 m on the ground, height ignored
    assert m.path_seconds(line) == pytest.approx(2.0)
    assert m.path_seconds([[0, 0, 0], [100, 0, 0]]) == pytest.approx(9.8)   # the longest t2m clip
