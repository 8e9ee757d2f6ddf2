"""The automatic mapping on rigs built in real Blender (Rigify metarig, BVH template, Mixamo A-pose)."""

from __future__ import annotations

import pytest

from tests.conftest import BLENDER_VERSIONS, run_blender


@pytest.mark.parametrize("version", BLENDER_VERSIONS)
def test_three_real_rigs_map_with_no_user_input(version):
    out = run_blender(version, "check_mapping.py", timeout=300)
    print(out)
    for convention in ("rigify", "humanml3d_bvh", "mixamo", "smpl"):
        assert f"Bone mapping ({convention}): 22 of 22 joints mapped." in out
    assert out.rstrip().endswith("OK")
