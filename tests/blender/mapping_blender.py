"""In real Blender: the Rigify metarig, the BVH template armature and a Mixamo A-pose rig (and
an SMPL rig posed from the real sample) map completely.

Run by tests/momask_blender/anim/test_mapping_blender.py. One case per rig (``tests/blender/cases.py``):
the add-on's description agrees with Blender's own heads, ``auto_map`` detects the rig's convention,
maps every role with no warning and picks the expected bones; the values are the mapping's counts,
its missing roles and its report.
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np
import rigs
from cases import case, check, finish

from backend.retarget.mapping import ROLES, auto_map
from backend.retarget.rig import RigDescription
from momask_blender.anim import rig_io  # (the add-on's own description)

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


def mapped(label: str, obj) -> dict:
    """Map ``obj``, check it as the module says; the mapping's numbers (RigDescription, mapping)."""
    rig = RigDescription.from_dict(rig_io.describe_armature(obj))
    mapping = auto_map(rig)
    print(mapping.report())
    for bone in obj.data.bones:  # the description must agree with Blender
        check(np.allclose(rig.heads[rig.index(bone.name)], np.array(bone.head_local), atol=1e-5),
              f"{label}: head of {bone.name} differs from bone.head_local")
    check(not mapping.missing and not mapping.optional_missing,
          f"{label}: unmapped roles {mapping.missing + mapping.optional_missing}")
    check(mapping.convention == label, f"{label}: detected convention {mapping.convention!r}")
    wrong = {role: (mapping.bones.get(role), bone) for role, bone in EXPECTED[label].items()
             if mapping.bones.get(role) != bone}
    check(not wrong, f"{label}: roles mapped to other bones than expected (got, expected): {wrong}")
    check(not mapping.warnings, f"{label}: warnings {mapping.warnings}")
    values = {"object": obj.name, "bones": len(rig), "convention": mapping.convention,
              "mapped": len(mapping.bones), "roles": len(ROLES), "missing": list(mapping.missing),
              "report": mapping.report()}
    return {"rig": rig, "values": values}


@case
def case_rigify():
    rigs.reset_scene()
    return mapped("rigify", rigs.make_rigify_metarig())["values"]


@case
def case_humanml3d_bvh():
    rigs.reset_scene()
    return mapped("humanml3d_bvh", rigs.import_template_bvh())["values"]


@case
def case_mixamo():
    rigs.reset_scene()
    result = mapped("mixamo", rigs.make_mixamo_rig())
    up = result["rig"].up_axis
    check(np.allclose(up, [0, 1, 0], atol=1e-6),     # FBX-style rotation: world Z is armature Y
          f"mixamo: up axis in armature space {up}, expected +Y")
    return {**result["values"], "up_axis": up}


@case
def case_smpl():
    rigs.reset_scene()
    sample = np.load(rigs.shared_file("humanml3d_000612.npy"))
    return mapped("smpl", rigs.make_smpl_rig_from_sample(sample))["values"]


finish()
