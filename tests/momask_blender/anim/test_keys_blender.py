"""Keys, takes and rig reading in real Blender 4.2 (classic actions), 4.5 and 5.0 (keys_suite.py).

The suite runs once per Blender version (one process each); every check it makes is its own test
here, so a failure names the behaviour that broke.
"""

from __future__ import annotations

import json

import pytest

from tests.conftest import BLENDER_VERSIONS, run_blender

CHECKS = [
    "describe_armature_matches_blender",        # RigDescription dict: names, parents, rest, world, modes
    "write_take_keys_at_scene_fps",             # paths/frames/values at 24 and 30 fps, GENERATED, slot bound
    "take_names_are_unique_and_short",          # ≤ 63 bytes, unique, prompt kept
    "read_pose_matrices_matches_numpy_fk",      # evaluated pose matrices == numpy FK of the keys (< 1e-5)
    "failure_mid_write_keeps_previous_action",  # no half-written take assigned, no orphan action
    "inbetween_keeps_outside_keys_and_blends",  # keys outside the range bit-identical, no jump at seams
    "inbetween_on_a_generated_take",            # generate, then in-between: motion outside the range exact
    "takes_apply_compare_delete",               # list/apply/A-B/delete with fallback to the user's action
    "real_retarget_result_on_real_rigs",        # backend RetargetResult on Rigify/BVH/Mixamo rigs == numpy FK
]


@pytest.fixture(scope="module", params=BLENDER_VERSIONS)
def suite(request) -> tuple[str, dict[str, str]]:
    """(version, the suite's results): one Blender run per version, a failed run not repeated."""
    out = run_blender(request.param, "keys_suite.py", timeout=600)
    line = next((ln for ln in out.splitlines() if ln.startswith("KEYS_RESULTS ")), None)
    assert line is not None, f"keys_suite.py printed no results:\n{out[-4000:]}"
    return request.param, json.loads(line[len("KEYS_RESULTS "):])


@pytest.mark.parametrize("check", CHECKS)
def test_keys_in_blender(suite, check: str) -> None:
    version, results = suite
    assert check in results, f"check {check} did not run in Blender {version}"
    if results[check].startswith("SKIP: "):
        pytest.skip(results[check][len("SKIP: "):])
    assert results[check] == "ok", f"Blender {version}, {check}:\n{results[check]}"


def test_every_blender_check_is_listed(suite) -> None:
    assert sorted(suite[1]) == sorted(CHECKS)
