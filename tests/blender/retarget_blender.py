"""Inside real Blender: retarget the real sample onto real rigs and measure what Blender shows.

Run by tests/momask_blender/anim/test_retarget_blender.py. For each rig (Rigify human metarig, the armature
Blender's
BVH importer makes from template.bvh, a Mixamo-named A-pose rig with an FBX-style object transform):
describe it, map it with no user input, solve, set the solved channels on the pose bones frame by
frame, let Blender evaluate, read ``pose.bones[...].matrix`` back and measure against the source.
For the inpainting round trip, the Rigify metarig's read-back (22 joints re-proportioned to
HumanML3D) is saved as ``<out_dir>/rigify_metarig_joints.npy`` (argv[1]); the test encodes it as
features outside Blender (feature extraction needs scipy, which Blender's Python lacks). The last
stdout line is ``RETARGET_RESULTS <json>``; the script exits non-zero only if it could not run.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import bpy
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import rigs  # noqa: E402  (tests/blender/rigs.py)

from backend.motion.features import recover_from_ric  # noqa: E402
from backend.retarget import metrics  # noqa: E402
from backend.retarget.footlock import source_contacts  # noqa: E402
from backend.retarget.inverse import joints_from_pose, pose_matrices_from_basis  # noqa: E402
from backend.retarget.mapping import auto_map  # noqa: E402
from backend.retarget.rig import RigDescription  # noqa: E402
from backend.retarget.solver import retarget  # noqa: E402
from momask_blender.anim import rig_io  # noqa: E402  (the add-on's own description)

DATA = Path(os.environ["MOMASK_SHARED_DATA"])


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


def main() -> None:
    out_dir = Path(sys.argv[1]) if len(sys.argv) > 1 else Path.cwd()
    out_dir.mkdir(parents=True, exist_ok=True)
    source = recover_from_ric(np.load(DATA / "humanml3d_000612.npy")).astype(np.float64)
    results = {"blender": bpy.app.version_string, "rigs": []}
    builders = [
        ("rigify_metarig", lambda: rigs.make_rigify_metarig(), True),
        ("template_bvh", lambda: rigs.import_template_bvh(str(DATA / "template.bvh")), False),
        ("mixamo_a_pose", lambda: rigs.make_mixamo_rig(a_pose=True), False),
    ]
    for name, build, round_trip in builders:
        clear_scene()
        bpy.context.scene.render.fps = 20
        obj = build()
        obj.animation_data_clear()          # the BVH import carries the template's own motion
        try:
            save_to = out_dir / f"{name}_joints.npy" if round_trip else None
            results["rigs"].append(measure(name, obj, source, out_dir, save_to))
        except Exception as err:  # report and carry on
            import traceback
            results["rigs"].append({"rig": name, "error": traceback.format_exc()[-3000:]})
            print(f"FAILED {name}: {err}")
    print("RETARGET_RESULTS " + json.dumps(results))


if __name__ == "__main__":
    main()
    rigs.exit_blender(0)
