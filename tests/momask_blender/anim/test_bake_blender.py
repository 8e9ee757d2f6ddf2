"""A generated Rigify rig (what Rigify users animate) gets the motion through the bake path.

Runs tests/blender/bake_blender.py once per Blender version: it generates a Rigify rig from the
human metarig, retargets the real sample (60 frames, foot locking on) onto the rig's ORG skeleton
(``bake.describe_for_bake``), bakes it onto the FK controls with ``momask_blender.anim.bake.bake_take``
and reads the DEF bones — what the mesh follows — as Blender evaluates them.
"""

from __future__ import annotations

import json

import pytest

from tests.conftest import BLENDER_VERSIONS, passed_case, run_blender

MAX_DIRECTION_DEG = 5.0
FRAMES = 60


@pytest.fixture(scope="module", params=BLENDER_VERSIONS)
def report(request) -> dict:
    """The script's results (every case: generate_and_map, direct_keys, bake, failed_bake_restores_rig)."""
    data = run_blender(request.param, "bake_blender.py", str(FRAMES), timeout=900)
    print(json.dumps([{k: v for k, v in c.items() if k != "values"} for c in data["cases"]], indent=1))
    return data


def test_generated_rigify_rig_needs_the_bake_and_maps_its_org_skeleton(report):
    values = passed_case(report, "generate_and_map")["values"]
    assert values["frames"] == FRAMES
    assert values["needs_bake"] == {"rig": True, "metarig": False}
    assert values["mapping"]["convention"] == "rigify_org" and values["mapping"]["missing"] == []


def test_direct_keys_do_not_move_a_control_rig(report):
    """The problem the bake solves: keys on constraint-driven bones leave the mesh where it was."""
    assert passed_case(report, "direct_keys")["values"]["bone_direction_deg"] > 20.0


def test_baked_controls_show_the_source_motion(report):
    values = passed_case(report, "bake")["values"]
    baked = values["baked"]
    assert baked["bone_direction_deg"] <= MAX_DIRECTION_DEG, baked
    assert max(baked["per_segment_deg"]) <= 2 * MAX_DIRECTION_DEG, baked
    take = values["take"]
    assert take["assigned"] and take["name"] == "walk baked" and take["original_kept"]
    assert take["switches"] == 4 and take["switches_fk"] and take["switches_keyed"]
    for control in ("torso", "upper_arm_fk.L", "forearm_fk.R", "hand_fk.L", "thigh_fk.R", "shin_fk.L",
                    "foot_fk.R", "shoulder.L", "neck", "head"):
        assert control in take["keyed_bones"], control
    assert not any(b.startswith(("DEF-", "ORG-", "MCH-")) for b in take["keyed_bones"])


def test_bake_leaves_nothing_behind(report):
    assert passed_case(report, "bake")["values"]["leftovers"] == {
        "objects": 0, "armatures": 0, "constraints": 0, "new_actions": ["walk baked"]}
    assert passed_case(report, "failed_bake_restores_rig")["values"] == {
        "raised": True, "same_data": True, "action_restored": True, "switches_restored": True}
