"""The add-on's job and process lifecycle in real Blender 4.2, 4.5 and 5.0 against a real backend with
tiny random weights (tests/blender/addon_lifecycle.py): undo, File > Open during a job, settings
changed mid-generation, Free Memory and disabling the add-on (also while the backend starts)."""

from __future__ import annotations

import pytest

from tests.conftest import BLENDER_VERSIONS, assert_cases_passed, run_blender

LIFECYCLE_CASES = {
    "stop_during_start_does_not_wait_for_hello",
    "one_undo_step_per_generation_keeps_previous_edit",
    "file_open_during_job_drops_it_and_frees_the_panel",
    "settings_change_during_generation_is_deferred",
    "free_memory_operator_stops_backend",
    "disable_during_start_stops_backend",
    "disable_stops_backend_and_removes_handlers",
}


@pytest.mark.parametrize("version", BLENDER_VERSIONS)
def test_addon_job_and_process_lifecycle(version: str, tiny_weights, tmp_path) -> None:
    results = run_blender(version, "addon_lifecycle.py", str(tiny_weights), timeout=900,
                          env={"MOMASK_USER_DIR": str(tmp_path)})
    assert_cases_passed(results, LIFECYCLE_CASES)
