"""Inside real Blender: retarget the real sample onto real rigs and measure what Blender shows.

Run by tests/momask_blender/anim/test_retarget_blender.py. One case per rig (``tests/blender/cases.py``;
Rigify human metarig, the armature Blender's BVH importer makes from template.bvh, a Mixamo-named
A-pose rig with an FBX-style object transform): describe it, map it with no user input, solve, set
the solved channels on the pose bones frame by frame, let Blender evaluate, read
``pose.bones[...].matrix`` back and measure against the source; the measurements are the case's
values, the wrapper asserts the bounds. For the inpainting round trip, the Rigify metarig's read-back
(22 joints re-proportioned to HumanML3D) is saved as ``<out_dir>/rigify_metarig_joints.npy`` (the
first argument); the test encodes it as features outside Blender (feature extraction needs scipy,
which Blender's Python lacks).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import bpy
import numpy as np
import rigs
from cases import ARGS, case, finish

from backend.motion.features import recover_from_ric
from backend.retarget import metrics
from backend.retarget.footlock import source_contacts
from backend.retarget.inverse import joints_from_pose, pose_matrices_from_basis
from backend.retarget.mapping import auto_map
from backend.retarget.rig import RigDescription
from backend.retarget.solver import retarget
from momask_blender.anim import rig_io  # (the add-on's own description)


def clear_scene() -> None:
    bpy.ops.wm.read_factory_settings(use_empty=True)


def apply_and_read(obj, result) -> np.ndarray:
    """Set every solved channel per frame, evaluate, return pose_bone.matrix (F, n, 4, 4)."""
    pose_bones = obj.pose.bones
    n = len(obj.data.bones)
    order = [b.name for b in obj.data.bones]
    assert [pb.name for pb in pose_bones] == order
    channels = [(pose_bones[b.name], b.channel, b.values) for b in result.bones]
    root = pose_bones[result.root_name]
    out = np.empty((result.frame_count, n, 4, 4))
    buffer = np.empty(n * 16, dtype=np.float32)
    depsgraph = bpy.context.evaluated_depsgraph_get()
    for f in range(result.frame_count):
        for pb, channel, values in channels:
            setattr(pb, channel, values[f].tolist())
        root.location = result.root_location[f].tolist()
        bpy.context.view_layer.update()
        evaluated = obj.evaluated_get(depsgraph)
        evaluated.pose.bones.foreach_get("matrix", buffer)
        out[f] = buffer.reshape(n, 4, 4).transpose(0, 2, 1)
    return out


def measure(name: str, obj, source: np.ndarray, out_dir: Path, save_to: Path | None = None) -> dict:
    rig = RigDescription.from_dict(rig_io.describe_armature(obj))
    mapping = auto_map(rig)
    report = {"rig": name, "bones": len(rig.bone_names), "convention": mapping.convention,
              "missing": list(mapping.missing), "mapped": len(mapping.bones)}
    result = retarget(source, rig, mapping, foot_lock=True)
    pose = apply_and_read(obj, result)
    numpy_pose = pose_matrices_from_basis(rig, result)
    report["blender_vs_numpy_fk_mm"] = float(np.abs(pose[..., :3, 3] - numpy_pose[..., :3, 3]).max()
                                             * 1000 * np.abs(rig.world_matrix[:3, :3]).max())
    joints = joints_from_pose(rig, mapping, pose, reproportion=False, transform=result.transform)
    report["bone_direction_deg"] = metrics.bone_direction_error(joints, source)
    report["per_segment_deg"] = metrics.segment_angles(joints, source).mean(0).round(3).tolist()
    report["skating_ratio"] = metrics.foot_skating_ratio(joints)
    report["source_skating_ratio"] = metrics.foot_skating_ratio(source)
    contact = source_contacts(source, result.transform.source_floor, 20.0)
    steps = contact[1:] & contact[:-1]
    report["contact_speed"] = metrics.contact_speed(joints, steps)
    report["source_contact_speed"] = metrics.contact_speed(source, steps)
    report["jitter"] = metrics.jitter(joints)
    report["source_jitter"] = metrics.jitter(source)
    report["mpjpe_root_relative_mm"] = metrics.mpjpe_mm(joints, source, root_relative=True)
    report["ball_height_mean_cm"] = float(joints[:, [10, 11], 1].mean() * 100)
    report["source_ball_height_mean_cm"] = float(source[:, [10, 11], 1].mean() * 100)
    np.save(out_dir / f"{name}_readback.npy", joints)
    if save_to is not None:            # the inpainting read-back, encoded outside Blender (needs scipy)
        back = joints_from_pose(rig, mapping, pose)                      # re-proportioned
        np.save(save_to, back)
        report["roundtrip_joints"] = str(save_to)
    return report


OUT_DIR = Path(ARGS[0]) if ARGS else Path.cwd()
OUT_DIR.mkdir(parents=True, exist_ok=True)
SOURCE = recover_from_ric(np.load(rigs.shared_file("humanml3d_000612.npy"))).astype(np.float64)


def measured_on(name: str, build, round_trip: bool = False) -> dict:
    clear_scene()
    bpy.context.scene.render.fps = 20
    obj = build()
    obj.animation_data_clear()          # the BVH import carries the template's own motion
    return measure(name, obj, SOURCE, OUT_DIR, OUT_DIR / f"{name}_joints.npy" if round_trip else None)


@case
def case_rigify_metarig():
    return measured_on("rigify_metarig", rigs.make_rigify_metarig, round_trip=True)


@case
def case_template_bvh():
    return measured_on("template_bvh", rigs.import_template_bvh)


@case
def case_mixamo_a_pose():
    return measured_on("mixamo_a_pose", lambda: rigs.make_mixamo_rig(a_pose=True))


finish()
