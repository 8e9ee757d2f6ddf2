"""Inside real Blender: steered takes (docs/retargeting.md §11) evaluated by Blender itself.

Run by tests/momask_blender/anim/test_steering_blender.py. The rig is the Mixamo-named A-pose rig with
an FBX-style object transform (scale 0.01, rotated 90° about X) and a ``root`` bone added above the
hips, as game rigs have; the motion is the real sample 000612 on a circle path (world metres). Cases:

* ``root_bone``: the travel extracted onto ``root`` (with heading); every channel (the root's location
  too) set on the pose bones frame by frame, Blender evaluates, and the world positions of the body's
  bones are compared with the unextracted steered take's; the root's world height, and the hips'
  distance to the path as Blender shows them;
* ``object``: the travel on the armature object's location and rotation (quaternion, then XYZ Euler),
  compared the same way.
"""

from __future__ import annotations

import math
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import bpy
import numpy as np
import rigs
from cases import case, finish
from mathutils import Matrix

from backend.motion.features import recover_from_ric
from backend.retarget.inverse import joints_from_pose
from backend.retarget.mapping import auto_map
from backend.retarget.rig import RigDescription
from backend.retarget.solver import retarget
from backend.retarget.steering import Route, Steering, world_per_source, world_to_source

SOURCE = recover_from_ric(np.load(rigs.shared_file("humanml3d_000612.npy"))).astype(np.float64)[:120]
ANGLES = np.linspace(0, 2 * math.pi, 400)
CIRCLE = np.stack([1.5 * np.sin(ANGLES), 1.5 * (1 - np.cos(ANGLES)), 0 * ANGLES], axis=1)


def rig_with_root():
    rigs.reset_scene()
    bpy.context.scene.render.fps = 20
    obj = rigs.make_mixamo_rig(a_pose=True)
    bpy.context.view_layer.objects.active = obj
    bpy.ops.object.mode_set(mode="EDIT")
    root = obj.data.edit_bones.new("root")
    root.head, root.tail = (0.0, 0.0, 0.0), (0.0, 0.0, 20.0)       # data space: cm, Y up
    obj.data.edit_bones["mixamorig:Hips"].parent = root
    bpy.ops.object.mode_set(mode="OBJECT")
    bpy.context.view_layer.update()
    return obj


def evaluate(obj, result, object_channel: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Set the take's channels per frame; (world matrices of the object (F, 4, 4), pose_bone.matrix
    (F, n, 4, 4)) as Blender evaluates them."""
    pose_bones = obj.pose.bones
    n = len(obj.data.bones)
    channels = [(pose_bones[b.name], b.channel, b.values) for b in result.bones]
    motion = result.root_motion or {}
    root_bone = pose_bones[motion["name"]] if motion.get("mode") == "root_bone" else None
    if object_channel == "rotation_quaternion":
        obj.rotation_mode = "QUATERNION"
    elif object_channel == "rotation_euler":
        obj.rotation_mode = "XYZ"
    worlds, poses = np.empty((result.frame_count, 4, 4)), np.empty((result.frame_count, n, 4, 4))
    buffer = np.empty(n * 16, dtype=np.float32)
    depsgraph = bpy.context.evaluated_depsgraph_get()
    for f in range(result.frame_count):
        for pb, channel, values in channels:
            setattr(pb, channel, values[f].tolist())
        pose_bones[result.root_name].location = result.root_location[f].tolist()
        if root_bone is not None:
            root_bone.location = motion["location"][f].tolist()
        if object_channel:
            obj.location = motion["location"][f].tolist()
            setattr(obj, object_channel, motion[object_channel][f].tolist())
        bpy.context.view_layer.update()
        evaluated = obj.evaluated_get(depsgraph)
        evaluated.pose.bones.foreach_get("matrix", buffer)
        poses[f] = buffer.reshape(n, 4, 4).transpose(0, 2, 1)
        worlds[f] = np.array(evaluated.matrix_world)
    return worlds, poses


def world_heads(worlds: np.ndarray, poses: np.ndarray) -> np.ndarray:
    return np.einsum("tij,tbj->tbi", worlds[:, :3, :3], poses[..., :3, 3]) + worlds[:, None, :3, 3]


def compared(mode: str, object_channel: str | None = None) -> dict:
    obj = rig_with_root()
    rig = RigDescription.from_dict(rigs.describe_armature(obj))
    mapping = auto_map(rig)
    world0 = np.array(obj.matrix_world)
    reference = retarget(SOURCE, rig, mapping, steering=Steering(path=CIRCLE))
    bone = "root" if mode == "root_bone" else ""
    steered = retarget(SOURCE, rig, mapping, steering=Steering(path=CIRCLE, root_mode=mode, root_bone=bone))
    ref_worlds, ref_poses = evaluate(obj, reference)
    obj.matrix_world = Matrix(world0.tolist())          # (the reference pass left it as it was)
    worlds, poses = evaluate(obj, steered, object_channel)
    body = [i for i, b in enumerate(obj.data.bones) if b.name != "root"]
    moved = np.abs(world_heads(worlds, poses) - world_heads(ref_worlds, ref_poses))[:, body].max()
    back = joints_from_pose(rig, mapping, ref_poses, reproportion=False, transform=reference.transform)
    route = Route(world_to_source(CIRCLE, rig.world_matrix, reference.transform)[:, [0, 2]])
    distance = route.distance(back[:, 0][:, [0, 2]]) * world_per_source(rig.world_matrix, reference.transform)
    out = {"mode": steered.root_motion["mode"], "body_moved_mm": float(moved * 1000),
           "hips_to_path_cm": float(distance.mean() * 100),
           "travel_m": float(np.linalg.norm(steered.root_motion["location"][-1, :2]
                                            - steered.root_motion["location"][0, :2]))}
    if mode == "root_bone":
        root_world = world_heads(worlds, poses)[:, [b.name for b in obj.data.bones].index("root")]
        out["root_height_range_mm"] = float(np.ptp(root_world[:, 2]) * 1000)
        out["travel_m"] = float(np.linalg.norm(root_world[-1, :2] - root_world[0, :2]))
    return out


@case
def case_root_bone():
    return compared("root_bone")


@case
def case_object_quaternion():
    return compared("object", "rotation_quaternion")


@case
def case_object_euler():
    return compared("object", "rotation_euler")


finish()
