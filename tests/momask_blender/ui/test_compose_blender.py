"""Sequences, Regenerate Segment, Continue, Lead-in and Loop through the add-on's operators, in real
Blender 4.2, 4.5 and 5.0 against a real backend process with tiny random weights
(tests/blender/compose_blender.py): exact frame counts at 24/25/30/60 fps, prompt markers at segment
starts (the user's marker kept), only the regenerated segment's frames changed, the user's action
untouched key by key, cyclic keys with a Cycles modifier, one undo step each, every bad input refused
before anything is sent."""

from __future__ import annotations

import pytest

from tests.conftest import BLENDER_VERSIONS, assert_cases_passed, passed_case, run_blender

EXPECTED_CASES = {
    "bad_sequences_refused_before_sending",
    "generate_sequence_24fps_markers_and_exact_frames",
    "exact_frame_counts_at_24_25_30_60_fps",
    "applying_another_take_replaces_only_momask_markers",
    "regenerate_segment_changes_only_that_segment",
    "regenerate_segment_bad_inputs",
    "continue_and_lead_in_keep_the_users_action",
    "continue_bad_inputs",
    "inbetween_outside_the_action_is_refused_and_continue_offered",
    "long_inbetween_over_196_model_frames_keeps_keys_outside",
    "loop_cyclic_keys_and_cycles_modifier",
    "sequence_and_continue_panels_show_their_buttons",
    "one_real_undo_removes_a_sequence_take_and_a_continue_take",
}


@pytest.mark.parametrize("version", BLENDER_VERSIONS)
def test_compose_through_the_operators(version: str, tiny_weights, tmp_path) -> None:
    results = run_blender(version, "compose_blender.py", str(tiny_weights), timeout=1200,
                          env={"MOMASK_USER_DIR": str(tmp_path)})
    assert_cases_passed(results, EXPECTED_CASES)
    assert passed_case(results, "generate_sequence_24fps_markers_and_exact_frames")["values"]["frames"] == 114
    # round(S x fps), halves up: 2.5 s + 1.3 s, and Generate's 2.5 s
    exact = passed_case(results, "exact_frame_counts_at_24_25_30_60_fps")["values"]
    assert exact["frames"] == {"25": 63 + 33, "30": 75 + 39, "60": 150 + 78}
    assert exact["generate_frames"] == {"24": 60, "25": 63, "30": 75, "60": 150}
    assert passed_case(results, "continue_and_lead_in_keep_the_users_action")["values"]["new_frames"] == {
        "after": 39, "before": 39}                                       # round(1.3 x 30)
    assert passed_case(results, "loop_cyclic_keys_and_cycles_modifier")["values"]["rotation_gap"] < 1e-4
    regenerated = passed_case(results, "regenerate_segment_changes_only_that_segment")["values"]
    lo, hi = regenerated["replaced"]          # segment 2 is frames 217-264 of a 480-frame take from frame 1
    assert 1 < lo <= 217 and 265 <= hi < 481
