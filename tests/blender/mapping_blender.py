"""In real Blender: the Rigify metarig, the BVH template armature and a Mixamo A-pose rig (and
an SMPL rig posed from the real sample) map completely.

Usage (via tests/conftest.py::run_blender): ``python check_mapping.py``. Prints each mapping's report
and exits non-zero when a rig misses a role or a description does not match Blender's own numbers.
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402
import rigs  # noqa: E402

from backend.retarget.mapping import auto_map  # noqa: E402
from backend.retarget.rig import RigDescription  # noqa: E402
from momask_blender.anim import rig_io  # noqa: E402  (the add-on's own description)

EXPECTED = {
    "rigify": {"pelvis": "spine", "left_hip": "thigh.L", "left_foot": "toe.L", "neck": "spine.004",
               "head": "spine.006", "left_shoulder": "upper_arm.L", "right_wrist": "hand.R",
               "spine1": "spine.001", "spine3": "spine.003"},
    "humanml3d_bvh": {"pelvis": "Hips", "left_hip": "LeftUpLeg", "left_foot": "LeftToe", "spine1": "Spine",
                      "spine2": "Spine1", "spine3": "Spine2", "left_collar": "LeftShoulder",
                      "left_shoulder": "LeftArm", "right_elbow": "RightForeArm"},
    "mixamo": {"pelvis": "mixamorig:Hips", "left_knee": "mixamorig:LeftLeg",
               "left_foot": "mixamorig:LeftToeBase",
               "left_collar": "mixamorig:LeftShoulder", "left_shoulder": "mixamorig:LeftArm",
               "left_wrist": "mixamorig:LeftHand", "spine3": "mixamorig:Spine2"},
    "smpl": {"pelvis": "Pelvis", "left_hip": "L_Hip", "left_foot": "L_Foot", "left_collar": "L_Collar",
             "left_shoulder": "L_Shoulder", "spine2": "Spine2", "right_wrist": "R_Wrist"},
}


def check(label: str, obj) -> list[str]:
    rig = RigDescription.from_dict(rig_io.describe_armature(obj))
    mapping = auto_map(rig)
    print(f"=== {label}: {obj.name}, {len(rig)} bones ===")
    print(mapping.report())
    errors = []
    # The description must agree with Blender: heads and world matrix.
    for bone in obj.data.bones:
        head = np.array(bone.head_local)
        if not np.allclose(rig.heads[rig.index(bone.name)], head, atol=1e-5):
            errors.append(f"{label}: head of {bone.name} differs from bone.head_local")
    if mapping.missing or mapping.optional_missing:
        errors.append(f"{label}: unmapped roles {mapping.missing + mapping.optional_missing}")
    if mapping.convention != label:
        errors.append(f"{label}: detected convention {mapping.convention!r}")
    for role, bone in EXPECTED[label].items():
        if mapping.bones.get(role) != bone:
            errors.append(f"{label}: {role} -> {mapping.bones.get(role)!r}, expected {bone!r}")
    if mapping.warnings:
        errors.append(f"{label}: warnings {mapping.warnings}")
    return errors


def main() -> int:
    import bpy

    print("Blender", bpy.app.version_string)
    errors: list[str] = []
    rigs.reset_scene()
    errors += check("rigify", rigs.make_rigify_metarig())
    rigs.reset_scene()
    errors += check("humanml3d_bvh", rigs.import_template_bvh())
    rigs.reset_scene()
    mixamo = rigs.make_mixamo_rig()
    errors += check("mixamo", mixamo)
    up = RigDescription.from_dict(rig_io.describe_armature(mixamo)).up_axis
    if not np.allclose(up, [0, 1, 0], atol=1e-6):        # FBX-style rotation: world Z is armature Y
        errors.append(f"mixamo: up axis in armature space {up}, expected +Y")
    rigs.reset_scene()
    sample = np.load(rigs.SHARED_DATA / "humanml3d_000612.npy")
    errors += check("smpl", rigs.make_smpl_rig_from_sample(sample))
    for e in errors:
        print("FAIL:", e)
    print("OK" if not errors else f"{len(errors)} failure(s)")
    return 1 if errors else 0


if __name__ == "__main__":
    rigs.exit_blender(main())
