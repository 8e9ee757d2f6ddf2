"""Generate Through Keyed Poses in real Blender 4.2, 4.5 and 5.0 against a real backend on tiny random
weights (tests/blender/pose_targets_blender.py), on the Rigify metarig and a Mixamo-named Euler rig:
the keyed rotations are hit at every target frame, the user's action keeps its keys, one undo step;
the same pinning on the real sample's motion keeps the seams within twice the median step; bad pose
targets are refused with one message and its fix, changing nothing."""

from __future__ import annotations

import json

import pytest

from tests.conftest import BLENDER_VERSIONS, assert_cases_passed, passed_case, run_blender

MAX_KEY_ERROR_DEG = 0.01
MAX_SEAM_RATIO = 2.0
RIGS = ("metarig", "mixamo")


@pytest.fixture(scope="module", params=BLENDER_VERSIONS)
def results(request, tiny_weights, tmp_path_factory) -> dict:
    data = run_blender(request.param, "pose_targets_blender.py", str(tiny_weights), timeout=900,
                       env={"MOMASK_USER_DIR": str(tmp_path_factory.mktemp("user"))})
    print(json.dumps(data, indent=1))
    return data


def test_every_case_ran_and_passed(results):
    assert_cases_passed(results, {f"{name}_{rig}" for rig in RIGS
                                  for name in ("through_keyed_poses", "real_motion_pinned", "bad_input")})


@pytest.mark.parametrize("rig", RIGS)
def test_the_operator_hits_the_keyed_rotations(results, rig):
    values = passed_case(results, f"through_keyed_poses_{rig}")["values"]
    assert values["max_error_deg"] <= MAX_KEY_ERROR_DEG and values["bones"] >= 18
    assert values["tokens"] == [0, 6, 12]         # frames 1, 30, 60 at 24 fps: model frames 0, 24.2, 49.2


@pytest.mark.parametrize("rig", RIGS)
def test_on_real_motion_the_seams_stay_within_twice_the_median_step(results, rig):
    values = passed_case(results, f"real_motion_pinned_{rig}")["values"]
    assert values["max_error_deg"] <= MAX_KEY_ERROR_DEG
    assert values["seam_step_deg"] <= MAX_SEAM_RATIO * values["median_step_deg"], values


@pytest.mark.parametrize("rig", RIGS)
def test_bad_targets_are_refused_with_the_fix(results, rig):
    messages = passed_case(results, f"bad_input_{rig}")["values"]
    assert "at least 5 frames apart" in messages["one_token"] and "outside" in messages["outside"]
    assert all("Fix:" in message for message in messages.values())
