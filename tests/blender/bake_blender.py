"""Inside real Blender: a GENERATED Rigify rig gets the real sample through the bake path.

Run by tests/momask_blender/anim/test_bake_blender.py. Generates a Rigify rig from the human metarig,
describes it,
maps and retargets the real sample (the solver is numpy-only, foot locking on), then:

* writes the keys straight onto the mapped bones (what a plain rig gets) — the DEF bones do not move;
* bakes with ``momask_blender.anim.bake.bake_take`` and reads the DEF bones back as Blender evaluates them;
* checks that the bake leaves nothing behind, and that a failing bake restores the rig.

``argv[1]``: frames of the sample to use. The last stdout line is ``CONTROL_RIG_RESULTS <json>``.
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback
from pathlib import Path

import bpy
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import rigs  # noqa: E402  (tests/blender/rigs.py)

from backend.motion.features import recover_from_ric  # noqa: E402
from backend.retarget import metrics  # noqa: E402
from backend.retarget.inverse import joints_from_pose  # noqa: E402
from backend.retarget.mapping import auto_map  # noqa: E402
from backend.retarget.rig import RigDescription  # noqa: E402
from backend.retarget.solver import retarget  # noqa: E402
from momask_blender.anim import bake, keys, rig_io  # noqa: E402

DATA = Path(os.environ["MOMASK_SHARED_DATA"])


def generate_rigify() -> tuple[bpy.types.Object, bpy.types.Object]:
    rigs.reset_scene()
    return rigs.make_generated_rigify_rig()


def census() -> dict:
    return {"objects": len(bpy.data.objects), "armatures": len(bpy.data.armatures),
            "actions": sorted(a.name for a in bpy.data.actions),
            "constraints": sum(c.name == bake.TAG for o in bpy.data.objects if o.type == "ARMATURE"
                               for pb in o.pose.bones for c in pb.constraints)}


def measure(rig, result, source, start) -> dict:
    """The DEF bones as Blender evaluates them (what the mesh follows), as 22 joints."""
    full = RigDescription.from_dict(rig_io.describe_armature(rig))
    deform = auto_map(full)
    assert deform.convention == "rigify_def" and not deform.missing, deform.report()
    pose = rig_io.read_pose_matrices(rig, start, start + result.frame_count)
    joints = joints_from_pose(full, deform, pose, reproportion=False, transform=result.transform)
    return {"bone_direction_deg": metrics.bone_direction_error(joints, source),
            "per_segment_deg": metrics.segment_angles(joints, source).mean(0).round(2).tolist(),
            "skating_ratio": metrics.foot_skating_ratio(joints),
            "source_skating_ratio": metrics.foot_skating_ratio(source)}


def main() -> None:
    frames = int(sys.argv[1]) if len(sys.argv) > 1 else 60
    source = recover_from_ric(np.load(DATA / "humanml3d_000612.npy")).astype(np.float64)[:frames]
    out: dict = {"blender": bpy.app.version_string, "frames": frames}
    t0 = time.perf_counter()
    metarig, rig = generate_rigify()
    out["generate_s"] = time.perf_counter() - t0
    bpy.context.scene.render.fps = 20
    out["needs_bake"] = {"rig": bake.needs_bake(rig), "metarig": bake.needs_bake(metarig)}
    desc = RigDescription.from_dict(bake.describe_for_bake(rig))
    mapping = auto_map(desc)
    out["mapping"] = {"convention": mapping.convention, "missing": mapping.missing,
                      "bones": mapping.bones}
    result = retarget(source, desc, mapping, foot_lock=True)
    start = 1

    # The user's own action, which a take must keep.
    user = bpy.data.actions.new("user animation")
    keys.assign_action(rig, user)
    if keys.is_slotted(user):
        keys.assign_action(rig, user, user.slots.new(id_type="OBJECT", name=rig.name))

    # Direct keys on the mapped (constraint-driven) bones: what happens without the bake.
    direct = keys.write_take(rig, result.to_dict(), start, "direct keys")
    out["direct"] = measure(rig, result, source, start)
    keys.assign_action(rig, user)
    bpy.data.actions.remove(direct)

    before = census()
    t0 = time.perf_counter()
    take = bake.bake_take(rig, result.to_dict(), start, "walk baked", prompt="a person walks", seed=7)
    out["bake_s"] = time.perf_counter() - t0
    after = census()
    switches = bake.fk_switches(rig)
    channels = keys.Channels(take, keys.object_slot(take, rig))
    out["leftovers"] = {
        "objects": after["objects"] - before["objects"],
        "armatures": after["armatures"] - before["armatures"],
        "constraints": after["constraints"],
        "new_actions": sorted(set(after["actions"]) - set(before["actions"])),
    }
    out["take"] = {"assigned": rig.animation_data.action == take, "name": take.name,
                   "original_kept": rig.get("momask_original_action") == user,
                   "switches": len(switches), "switches_fk": all(pb["IK_FK"] == 1.0 for pb in switches),
                   "switches_keyed": all(channels.find(f'pose.bones["{pb.name}"]["IK_FK"]', 0) is not None
                                         for pb in switches),
                   "keyed_bones": sorted({fc.data_path.split('"')[1] for fc in channels.fcurves})}
    out["baked"] = measure(rig, result, source, start)

    # A bake that fails half-way leaves the rig as it was.
    keys.assign_action(rig, user)
    for pb in switches:
        pb["IK_FK"] = 0.0
    before = census()
    real = bake._visual_channels

    def broken(*args, **kwargs):
        raise RuntimeError("simulated failure during the bake")

    bake._visual_channels = broken
    try:
        bake.bake_take(rig, result.to_dict(), start, "never")
        out["failure"] = {"raised": False}
    except RuntimeError:
        after = census()
        out["failure"] = {"raised": True, "same_data": before == after,
                          "action_restored": rig.animation_data.action == user,
                          "switches_restored": all(pb["IK_FK"] == 0.0 for pb in switches)}
    finally:
        bake._visual_channels = real
    print("CONTROL_RIG_RESULTS " + json.dumps(out))


if __name__ == "__main__":
    # os._exit: the bpy module can crash tearing down after Rigify generated a rig (seen on 4.2).
    status = 0
    try:
        main()
    except Exception:
        traceback.print_exc()
        status = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)
