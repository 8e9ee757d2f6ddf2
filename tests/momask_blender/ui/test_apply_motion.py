"""Apply Motion and Copy Take in real Blender 4.2, 4.5 and 5.0 against a real backend process (tiny
random weights; a retarget needs no model), through the panel's operators (tests/blender/apply_motion.py).

The motion is the official template.bvh (720 frames at 60 fps) in a 30 fps scene. What a user would
notice, per case:

* the take on the rig shows the file's motion: mean bone-direction error (backend/retarget/metrics.py)
  of the evaluated rig against the BVH ≤ 1° on the Rigify metarig and a Mixamo-named A-pose rig, from
  the BVH and from an FBX that Blender's exporter wrote with the same motion; from the BVH rig's
  action (one key per BVH frame) too;
* the take is resampled to the scene's fps (360 frames for 12 s at 30 fps);
* nothing else of the file changes: no datablock of the import is left, the scene's fps (the FBX
  importer sets its own), frame range, selection, active object and its mode (Pose mode in one case)
  are as before, the rig's own action is untouched, and one undo removes the take (redo brings it
  back);
* Copy Take writes one take per selected rig in one undo step, on the take's frames, ≤ 1° from it;
* the real HumanML3D walk (sample 000612, keyed on an SMPL rig) applied along a Bezier circle with the
  Path panel: its travel (the hips' ground track low-passed over 0.25 s, docs/retargeting.md §11.1)
  stays within 2 cm of the circle on average, and the feet skate no more than without the path
  (+ 0.01, issue 13's bounds);
* Root Motion 'Root Bone' with no bone named picks the rig's own ``root`` (a UE-style rig): the walk's
  travel is keyed on it, it stays on the ground, and the hips travel with it;
* a broken, missing, non-motion or unmappable file is refused with a message naming the problem
  (for a skeleton that is no humanoid: its missing roles), and nothing changes.
"""

from __future__ import annotations

import pytest

from tests.conftest import BLENDER_VERSIONS, assert_cases_passed, passed_case, run_blender

MAX_DIRECTION_DEG = 1.0
CASES = {"bvh_onto_rigify_metarig", "bvh_onto_mixamo_a_pose", "fbx_onto_rigify_metarig",
         "another_armatures_action_onto_mixamo", "copy_take_to_selected", "bad_sources_change_nothing",
         "real_walk_applied_along_a_circle", "real_walk_onto_a_root_bone"}


@pytest.fixture(scope="module", params=BLENDER_VERSIONS)
def results(request, tiny_weights, tmp_path_factory) -> dict:
    return run_blender(request.param, "apply_motion.py", str(tiny_weights), timeout=900,
                       env={"MOMASK_USER_DIR": str(tmp_path_factory.mktemp("user"))})


def test_every_case_passed(results):
    assert_cases_passed(results, CASES)


FILE_CASES = ("bvh_onto_rigify_metarig", "bvh_onto_mixamo_a_pose", "fbx_onto_rigify_metarig")


@pytest.mark.parametrize("name", FILE_CASES)
def test_a_file_motion_is_shown_on_the_rig_at_the_scene_fps(results, name):
    values = passed_case(results, name)["values"]
    print(f"Blender {results['blender']} {name}: {values['bone_direction_deg']:.3f} deg")
    assert values["bone_direction_deg"] <= MAX_DIRECTION_DEG
    assert values["frames"] == values["source_frames"] == 360


def test_another_armatures_action_and_copies_keep_the_motion(results):
    assert passed_case(results, "another_armatures_action_onto_mixamo")["values"]["bone_direction_deg"] \
        <= MAX_DIRECTION_DEG
    copies = passed_case(results, "copy_take_to_selected")["values"]["bone_direction_deg"]
    assert set(copies) == {"Mixamo", "T-pose", "Mixamo vs bvh", "T-pose vs bvh"}
    assert all(error <= MAX_DIRECTION_DEG for error in copies.values()), copies


def test_a_real_walk_follows_the_circle_without_more_skating(results):
    values = passed_case(results, "real_walk_applied_along_a_circle")["values"]
    print(f"Blender {results['blender']}: travel {values['mean_distance_cm']:.2f} cm from the circle (mean) "
          f"(max {values['max_distance_cm']:.2f} cm) over {values['travelled_m']:.2f} m; skating "
          f"{values['skating']:.3f} (free {values['free_skating']:.3f})")
    assert values["mean_distance_cm"] <= 2.0 and values["travelled_m"] > 2.0
    assert values["skating"] <= values["free_skating"] + 0.01
