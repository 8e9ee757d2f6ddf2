"""The add-on in real Blender 4.2, 4.5 and 5.0 (the ``bpy`` module), end to end against a real backend
process with tiny random weights (tests/blender/addon_backend.py): panel operators, takes,
variations, undo step, cancel, a killed backend, in-betweening, 24 and 30 fps, three kinds of rig."""

from __future__ import annotations

import pytest

from tests.conftest import BLENDER_VERSIONS, assert_cases_passed, run_blender

EXPECTED_CASES = {
    "generate_metarig_variations_24fps",
    "one_undo_step_per_generation",
    "same_seed_same_motion",
    "takes_apply_compare_delete",
    "inbetween_keeps_keys_outside_range",
    "inbetween_hand_keyed_euler_bvh_rig_30fps",
    "generate_bvh_rig_30fps",
    "generate_mixamo_rig",
    "unmappable_rig_names_missing_roles",
    "armature_deleted_mid_job_drops_result",
    "cancel_mid_generation",
    "backend_killed_mid_job_then_next_works",
    "editing_the_prompt_warms_the_backend_up_quietly",
    "missing_weights_tells_how_to_get_them",
    "free_memory_stops_backend",
    "generate_onto_a_generated_rigify_control_rig",
}


@pytest.mark.parametrize("version", BLENDER_VERSIONS)
def test_addon_against_real_backend(version: str, tiny_weights, tmp_path) -> None:
    results = run_blender(version, "addon_backend.py", str(tiny_weights), timeout=900,
                          env={"MOMASK_USER_DIR": str(tmp_path)})
    assert_cases_passed(results, EXPECTED_CASES)
