"""Steered takes evaluated by real Blender (4.2 LTS, 4.5 LTS, 5.0): tests/blender/steering_blender.py.

On a Mixamo-named rig with an FBX-style object transform and a ``root`` bone above the hips, the real
sample on a circle path: extracting the travel onto the root bone or onto the object (quaternion or
XYZ Euler keys) moves no bone of the body in the world (≤ 0.5 mm), the root bone stays at its rest
height and carries the travel, and the hips follow the path within 2 cm as Blender shows them.
"""

from __future__ import annotations

import json

import pytest

from tests.conftest import BLENDER_VERSIONS, passed_case, run_blender


@pytest.fixture(scope="module", params=BLENDER_VERSIONS)
def report(request) -> dict:
    data = run_blender(request.param, "steering_blender.py", timeout=900)
    print(json.dumps(data, indent=1))
    return data


@pytest.mark.parametrize("name", ["root_bone", "object_quaternion", "object_euler"])
def test_root_motion_extraction_moves_no_bone_of_the_body(report, name):
    values = passed_case(report, name)["values"]
    assert values["body_moved_mm"] <= 0.5, values
    assert values["hips_to_path_cm"] <= 2.0, values
    assert values["travel_m"] > 1.0, values                     # the root carries the walk
    if name == "root_bone":
        assert values["mode"] == "root_bone" and values["root_height_range_mm"] < 1e-3, values
    else:
        assert values["mode"] == "object", values
