"""Keys, takes and rig reading in real Blender 4.2 (classic actions), 4.5 and 5.0
(tests/blender/keys_blender.py).

The script runs once per Blender version (one process each); every case it records is its own test
here, so a failure names the behaviour that broke.
"""

from __future__ import annotations

import pytest

from tests.conftest import BLENDER_VERSIONS, passed_case, run_blender

CHECKS = [
    "describe_armature_matches_blender",        # RigDescription dict: names, parents, rest, world, modes
    "write_take_keys_at_scene_fps",             # paths/frames/values at 24 and 30 fps, GENERATED, slot bound
    "take_names_are_unique_and_short",          # ≤ 63 bytes, unique, prompt kept
    "read_pose_matrices_matches_numpy_fk",      # evaluated pose matrices == numpy FK of the keys (< 1e-5)
    "failure_mid_write_keeps_previous_action",  # no half-written take assigned, no orphan action
    "inbetween_keeps_outside_keys_and_blends",  # keys outside the range bit-identical, no jump at seams
    "inbetween_on_a_generated_take",            # generate, then in-between: motion outside the range exact
    "takes_apply_compare_delete",               # list/apply/A-B/delete with fallback to the user's action
    "reading_another_action_keeps_the_rigs_pose",  # Copy Take / Apply Motion's read leaves the pose as it was
    "object_root_motion_take_leaves_the_object_in_place",  # back to a plain action: the object is back
    "prompt_markers_are_kept_per_armature",     # a take applied on rig B keeps rig A's prompt markers
    "too_long_a_source_is_refused_before_reading",  # over MAX_SOURCE_SECONDS: refused, no frame stepped
    "real_retarget_result_on_real_rigs",        # backend RetargetResult on Rigify/BVH/Mixamo rigs == numpy FK
]


@pytest.fixture(scope="module", params=BLENDER_VERSIONS)
def results(request) -> dict:
    """The script's results in one Blender version: one run per version, a failed run not repeated."""
    return run_blender(request.param, "keys_blender.py", timeout=600)


@pytest.mark.parametrize("check", CHECKS)
def test_keys_in_blender(results, check: str) -> None:
    passed_case(results, check)


def test_measured_errors_are_within_float32(results) -> None:
    """The evaluated pose matrices equal numpy's FK of the keys, on the synthetic rig and on real rigs
    (errors relative to the rig's size: Mixamo is in centimetres)."""
    assert passed_case(results, "read_pose_matrices_matches_numpy_fk")["values"]["max_error"] < 1e-5
    relative = passed_case(results, "real_retarget_result_on_real_rigs")["values"]["relative_error"]
    assert relative.keys() == {"rigify_metarig", "template_bvh", "mixamo"}
    assert max(relative.values()) < 1e-5, relative


def test_every_blender_check_is_listed(results) -> None:
    assert sorted(c["name"] for c in results["cases"]) == sorted(CHECKS)
