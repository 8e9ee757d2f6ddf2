"""The automatic mapping on rigs built in real Blender (Rigify metarig, BVH template, Mixamo A-pose,
SMPL): tests/blender/mapping_blender.py, one run per Blender version."""

from __future__ import annotations

import pytest

from tests.conftest import BLENDER_VERSIONS, assert_cases_passed, run_blender

CONVENTIONS = {"rigify", "humanml3d_bvh", "mixamo", "smpl"}


@pytest.mark.parametrize("version", BLENDER_VERSIONS)
def test_four_real_rigs_map_with_no_user_input(version):
    results = assert_cases_passed(run_blender(version, "mapping_blender.py", timeout=300), CONVENTIONS)
    for convention, case in results.items():
        values = case["values"]
        assert values["convention"] == convention, values["report"]
        assert values["mapped"] == values["roles"] == 22 and values["missing"] == [], values["report"]
    assert results["mixamo"]["values"]["up_axis"] == pytest.approx([0, 1, 0], abs=1e-6)
