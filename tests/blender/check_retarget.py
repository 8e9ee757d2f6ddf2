"""Inside real Blender: retarget the real sample onto real rigs and measure what Blender shows.

Run by tests/test_retarget_blender.py. For each rig (Rigify human metarig, the armature Blender's
BVH importer makes from template.bvh, a Mixamo-named A-pose rig with an FBX-style object transform):
describe it, map it with no user input, solve, set the solved channels on the pose bones frame by
frame, let Blender evaluate, read ``pose.bones[...].matrix`` back and measure against the source.
Also the inpainting round trip on the Rigify metarig: read back as 22 joints, re-proportion, encode
as HumanML3D features. The last stdout line is ``RETARGET_RESULTS <json>``; the script exits
non-zero only if it could not run.
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

from backend.motion.features import features_from_joints, recover_from_ric  # noqa: E402
from backend.retarget import metrics  # noqa: E402
from backend.retarget.footlock import source_contacts  # noqa: E402
from backend.retarget.inverse import joints_from_pose, pose_matrices_from_basis  # noqa: E402
from backend.retarget.mapping import auto_map  # noqa: E402
from backend.retarget.rig import RigDescription  # noqa: E402
from backend.retarget.solver import retarget  # noqa: E402

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


def measure(name: str, obj, source: np.ndarray, features: np.ndarray | None = None) -> dict:
    rig = RigDescription.from_dict(rigs.describe_armature(obj))
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
    if features is not None:
        back = joints_from_pose(rig, mapping, pose)                      # re-proportioned
        report["roundtrip_joint_mpjpe_mm"] = metrics.mpjpe_mm(back, source)
        report["roundtrip_bone_direction_deg"] = metrics.bone_direction_error(back, source)
        encoded = features_from_joints(back)
        reference = features_from_joints(source)             # the encoder's own round-trip floor
        decoded = recover_from_ric(encoded).astype(np.float64)
        n = len(decoded)
        report["roundtrip_features_mpjpe_mm"] = metrics.mpjpe_mm(decoded, source[:n])
        report["roundtrip_ric_max_abs"] = float(np.abs(encoded[:, 4:67] - features[:n, 4:67]).max())
        report["roundtrip_ric_mean_abs"] = float(np.abs(encoded[:, 4:67] - features[:n, 4:67]).mean())
        report["encoder_only_ric_mean_abs"] = float(np.abs(reference[:, 4:67] - features[:n, 4:67]).mean())
    return report


def main() -> None:
    features = np.load(DATA / "humanml3d_000612.npy")
    source = recover_from_ric(features).astype(np.float64)
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
        try:
            results["rigs"].append(measure(name, obj, source, features if round_trip else None))
        except Exception as err:  # report and carry on
            import traceback
            results["rigs"].append({"rig": name, "error": traceback.format_exc()[-3000:]})
            print(f"FAILED {name}: {err}")
    print("RETARGET_RESULTS " + json.dumps(results))


if __name__ == "__main__":
    main()
