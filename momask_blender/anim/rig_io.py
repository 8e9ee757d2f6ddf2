"""What the backend needs to know about an armature, and reading its animation back as matrices.

``describe_armature`` produces the dict form of the backend's ``RigDescription``
(``backend/retarget/rig.py``); ``read_pose_matrices`` samples the posed bone matrices Blender
evaluates (constraints, drivers and NLA included) so that the backend can turn an existing animation
into joints for in-betweening. bpy + stdlib + numpy only.
"""

from __future__ import annotations

import contextlib
import hashlib

import bpy
import numpy as np

from .armature import CHANNEL_SIZES, MoMaskError, require_armature, scene_of


def _matrices(collection, prop: str) -> np.ndarray:
    """``collection.foreach_get(prop)`` of 4×4 matrices as (n, 4, 4) row-major arrays.

    Blender hands matrices out column by column, so the flat buffer reshapes to the transpose.
    """
    flat = np.empty(len(collection) * 16, dtype=np.float32)
    collection.foreach_get(prop, flat)
    return flat.reshape(-1, 4, 4).transpose(0, 2, 1).astype(np.float64)


def bone_parents(obj) -> tuple[list[str], list[int]]:
    """Bone names in armature order and each bone's parent index (-1 for roots)."""
    bones = obj.data.bones
    index = {bone.name: i for i, bone in enumerate(bones)}
    names = [bone.name for bone in bones]
    parents = [index[bone.parent.name] if bone.parent else -1 for bone in bones]
    return names, parents


def describe_armature(obj) -> dict:
    """The armature as the backend's ``RigDescription.to_dict()``.

    ``rest_matrices`` are ``bone.matrix_local`` (armature space, roll included) and
    ``world_matrix`` the object's ``matrix_world``; ``lengths`` are ``bone.length`` and ``name`` the
    object's name (for messages). Bones are listed in ``obj.data.bones`` order, which
    is also ``obj.pose.bones`` order.
    """
    require_armature(obj)
    names, parents = bone_parents(obj)
    return {
        "bone_names": names,
        "parents": parents,
        "rest_matrices": _matrices(obj.data.bones, "matrix_local"),
        "world_matrix": np.array(obj.matrix_world, dtype=np.float64),
        "rotation_modes": [pose_bone.rotation_mode for pose_bone in obj.pose.bones],
        "lengths": _lengths(obj.data.bones),
        "name": obj.name,
    }


def _lengths(bones) -> np.ndarray:
    out = np.empty(len(bones), dtype=np.float32)
    bones.foreach_get("length", out)
    return out.astype(np.float64)


def armature_fingerprint(obj) -> str:
    """A short hash of the bone names and hierarchy: a job compares it to notice the rig changed."""
    require_armature(obj)
    names, parents = bone_parents(obj)
    text = "\n".join(f"{name}\t{parent}" for name, parent in zip(names, parents, strict=True))
    return hashlib.sha1(text.encode("utf-8")).hexdigest()[:16]


def read_pose_matrices(obj, frame_start: int, frame_end: int) -> np.ndarray:
    """``pose_bone.matrix`` (armature space) of every bone at scene frames ``[frame_start, frame_end)``.

    Returns (T, n, 4, 4) float64 with T = frame_end - frame_start, as Blender evaluates the rig at
    each frame (action, NLA, constraints, drivers). The scene's current frame is restored afterwards.
    """
    return read_pose(obj, frame_start, frame_end, action_only=False)[0]




#: What :func:`kept_pose` saves: every pose bone's channels and the object's own transform.
POSE_BONE_CHANNELS = ("location", "rotation_quaternion", "rotation_euler", "rotation_axis_angle", "scale")
OBJECT_CHANNELS = ("location", "rotation_quaternion", "rotation_euler", "rotation_axis_angle", "scale")


@contextlib.contextmanager
def kept_pose(obj):
    """Put ``obj``'s pose (every pose bone's channels) and object transform back as they were when the
    block ends, then re-evaluate the scene's current frame.

    Stepping frames writes the evaluated values into the rig's channels, and an action played only
    while it is read (``sources.read_action``) leaves its values in every channel the rig's own action
    does not key (a rig with no action would lose its hand-made pose). The caller restores the
    rig's own action inside the block; here the saved values go back and the current frame is
    evaluated again, so the channels the own action keys show it and the others what they held.
    """
    scene = scene_of(obj)
    current, subframe = scene.frame_current, scene.frame_subframe
    bones = obj.pose.bones
    saved = {}
    for prop in POSE_BONE_CHANNELS:
        values = np.empty(len(bones) * (4 if prop in ("rotation_quaternion", "rotation_axis_angle") else 3),
                          dtype=np.float32)
        bones.foreach_get(prop, values)
        saved[prop] = values
    own = {prop: tuple(getattr(obj, prop)) for prop in OBJECT_CHANNELS}
    try:
        yield
    finally:
        bones = obj.pose.bones
        for prop, values in saved.items():
            bones.foreach_set(prop, values)
        for prop, value in own.items():
            setattr(obj, prop, value)
        scene.frame_set(current, subframe=subframe)


@contextlib.contextmanager
def active_action_only(obj):
    """Evaluate only the armature's active action inside the block (NLA tracks off), then restore.

    An in-between edits a copy of the active action, so the motion it is made from must be that
    action alone: other NLA tracks (layers, a soloed track) would otherwise be baked into the
    source the model sees and blended into keys they never came from.
    """
    ad = obj.animation_data
    if ad is None or not len(ad.nla_tracks) or not ad.use_nla:
        yield
        return
    ad.use_nla = False
    try:
        yield
    finally:
        ad.use_nla = True


def read_pose(obj, frame_start: int, frame_end: int, action_only: bool = True
              ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Posed matrices (as :func:`read_pose_matrices`) and the evaluated channel values per frame.

    The channels are ``{prop: (T, n, k) float32}`` for every pose channel (``armature.CHANNEL_SIZES``), in
    pose-bone order: what each channel evaluates to on each frame, including channels the action does
    not key (an in-between blends those from these values, not from whatever pose the rig has later).
    ``action_only`` (default) evaluates the active action alone (:func:`active_action_only`).
    """
    require_armature(obj)
    frame_start, frame_end = int(frame_start), int(frame_end)
    if frame_end <= frame_start:
        raise MoMaskError(f"The frame range {frame_start}-{frame_end} is empty.",
                          "Choose an end frame after the start frame.")
    scene = scene_of(obj)
    current, subframe = scene.frame_current, scene.frame_subframe
    n, count = len(obj.pose.bones), frame_end - frame_start
    out = np.empty((count, n * 16), dtype=np.float32)
    channels = {prop: np.empty((count, n * size), dtype=np.float32) for prop, size in CHANNEL_SIZES.items()}
    try:
        with active_action_only(obj) if action_only else contextlib.nullcontext():
            for t, frame in enumerate(range(frame_start, frame_end)):
                scene.frame_set(frame)
                depsgraph = bpy.context.evaluated_depsgraph_get()
                bones = obj.evaluated_get(depsgraph).pose.bones
                bones.foreach_get("matrix", out[t])
                for prop, values in channels.items():
                    bones.foreach_get(prop, values[t])
    finally:  # after the NLA is back on, so the rig shows what it showed before
        scene.frame_set(current, subframe=subframe)
    matrices = out.reshape(-1, n, 4, 4).transpose(0, 1, 3, 2).astype(np.float64)
    return matrices, {prop: v.reshape(count, n, CHANNEL_SIZES[prop]) for prop, v in channels.items()}
