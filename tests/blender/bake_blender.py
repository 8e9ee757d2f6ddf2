"""Inside real Blender: a GENERATED Rigify rig gets the real sample through the bake path.

Run by tests/momask_blender/anim/test_bake_blender.py. Its cases (``tests/blender/cases.py``, in order,
each needing the one before) generate a Rigify rig from the human metarig, describe, map and retarget
the real sample (the solver is numpy-only, foot locking on), then:

* ``direct_keys``: write the keys straight onto the mapped bones (what a plain rig gets) — the DEF
  bones do not move;
* ``bake``: bake with ``momask_blender.anim.bake.bake_take``, read the DEF bones back as Blender
  evaluates them, and count what the bake left behind;
* ``failed_bake_restores_rig``: a bake that fails half-way leaves the rig as it was.

The cases' values are the measurements; the wrapper asserts the bounds. The first argument: frames of
the sample to use.
"""

from __future__ import annotations

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import bpy
import numpy as np
import rigs
from cases import ARGS, MADE, case, finish, made

from backend.motion.features import recover_from_ric
from backend.retarget import metrics
from backend.retarget.inverse import joints_from_pose
from backend.retarget.mapping import auto_map
from backend.retarget.rig import RigDescription
from backend.retarget.solver import retarget
from momask_blender.anim import actions, bake, keys, rig_io


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


FRAMES = int(ARGS[0]) if ARGS else 60
SOURCE = recover_from_ric(np.load(rigs.shared_file("humanml3d_000612.npy"))).astype(np.float64)[:FRAMES]
START = 1
@case
def case_generate_and_map():
    t0 = time.perf_counter()
    metarig, rig = generate_rigify()
    generate_s = time.perf_counter() - t0
    bpy.context.scene.render.fps = 20
    needs_bake = {"rig": bake.needs_bake(rig), "metarig": bake.needs_bake(metarig)}
    desc = RigDescription.from_dict(bake.describe_for_bake(rig))
    mapping = auto_map(desc)
    MADE.update(rig=rig, result=retarget(SOURCE, desc, mapping, foot_lock=True))
    return {"frames": FRAMES, "generate_s": generate_s, "needs_bake": needs_bake,
            "mapping": {"convention": mapping.convention, "missing": mapping.missing, "bones": mapping.bones}}


@case
def case_direct_keys():
    """Direct keys on the mapped (constraint-driven) bones: what happens without the bake."""
    rig, result = made("rig", "result")
    user = bpy.data.actions.new("user animation")     # the user's own action, which a take must keep
    actions.assign_action(rig, user)
    if actions.is_slotted(user):
        actions.assign_action(rig, user, user.slots.new(id_type="OBJECT", name=rig.name))
    MADE["user"] = user
    direct = keys.write_take(rig, result.to_dict(), START, "direct keys")
    measured = measure(rig, result, SOURCE, START)
    actions.assign_action(rig, user)
    bpy.data.actions.remove(direct)
    return measured


@case
def case_bake():
    rig, result, user = made("rig", "result", "user")
    before = census()
    t0 = time.perf_counter()
    take = bake.bake_take(rig, result.to_dict(), START, "walk baked", prompt="a person walks", seed=7)
    bake_s = time.perf_counter() - t0
    after = census()
    switches = MADE["switches"] = bake.fk_switches(rig)
    channels = actions.Channels(take, actions.object_slot(take, rig))
    leftovers = {
        "objects": after["objects"] - before["objects"],
        "armatures": after["armatures"] - before["armatures"],
        "constraints": after["constraints"],
        "new_actions": sorted(set(after["actions"]) - set(before["actions"])),
    }
    take_info = {"assigned": rig.animation_data.action == take, "name": take.name,
                 "original_kept": rig.get("momask_original_action") == user,
                 "switches": len(switches), "switches_fk": all(pb["IK_FK"] == 1.0 for pb in switches),
                 "switches_keyed": all(channels.find(f'pose.bones["{pb.name}"]["IK_FK"]', 0) is not None
                                       for pb in switches),
                 "keyed_bones": sorted({fc.data_path.split('"')[1] for fc in channels.fcurves})}
    return {"bake_s": bake_s, "leftovers": leftovers, "take": take_info,
            "baked": measure(rig, result, SOURCE, START)}


@case
def case_failed_bake_restores_rig():
    """A bake that fails half-way leaves the rig as it was."""
    rig, result, user, switches = made("rig", "result", "user", "switches")
    actions.assign_action(rig, user)
    for pb in switches:
        pb["IK_FK"] = 0.0
    before = census()
    real = bake._visual_channels

    def broken(*args, **kwargs):
        raise RuntimeError("simulated failure during the bake")

    bake._visual_channels = broken
    try:
        bake.bake_take(rig, result.to_dict(), START, "never")
        return {"raised": False}
    except RuntimeError:
        return {"raised": True, "same_data": before == census(),
                "action_restored": rig.animation_data.action == user,
                "switches_restored": all(pb["IK_FK"] == 0.0 for pb in switches)}
    finally:
        bake._visual_channels = real


finish()
