"""The add-on without a backend in real Blender 4.2, 4.5 and 5.0: it registers and unregisters twice
cleanly, saves, loads and deletes bone-mapping presets, and a Continue refused for a broken action
keeps the user's A/B comparison, and Apply Motion refuses impossible steering before it imports the file
(tests/blender/addon_register.py)."""

from __future__ import annotations

import pytest

from tests.conftest import BLENDER_VERSIONS, assert_cases_passed, run_blender


@pytest.mark.parametrize("version", BLENDER_VERSIONS)
def test_addon_registers_and_saves_mapping_presets(version: str, tmp_path) -> None:
    results = run_blender(version, "addon_register.py", env={"MOMASK_USER_DIR": str(tmp_path)})
    cases = assert_cases_passed(results, {"register_unregister_twice", "mapping_presets",
                                            "refused_continue_keeps_the_comparison",
                                            "apply_motion_refuses_bad_steering_before_reading"})
    assert cases["mapping_presets"]["values"]["preset_file"].endswith(".json")
