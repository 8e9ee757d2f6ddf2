"""Motions from elsewhere, for Apply Motion and Copy Take: a BVH or FBX file read through Blender's own
importers, or an action of an armature in the scene, as the posed bone matrices the backend reads
(``rig_io``; docs/protocol.md "retarget", pose source).

A file is imported into a temporary state (:func:`temporary_import`): every datablock the importer
makes (objects, armatures, meshes, materials, images, actions...) is removed afterwards, on failure
too, and the scene settings an importer changes (the FBX importer sets the scene's frame rate), the
selection, the active object and its mode are put back. The user's file is as it was; only the take
that the backend's answer becomes is new (written later, one undo step).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from pathlib import Path

import bpy
import numpy as np

from ..remote.client import load_backend_module
from .actions import assign_action
from .armature import MoMaskError, require_armature, scene_of
from .bake import read_source
from .rig_io import kept_pose
from .takes import selected_take

protocol = load_backend_module("protocol")
messages = load_backend_module("messages")

#: The longest motion Apply Motion / Copy Take read, in seconds (the longest take MoMask composes,
#: ``messages.MAX_COMPOSE_SECONDS``): the source is read frame by frame on Blender's main thread, so a
#: longer one is refused before reading (at 30 fps: 9,000 frames) instead of freezing Blender.
MAX_SOURCE_SECONDS = messages.MAX_COMPOSE_SECONDS

#: The file types Apply Motion reads, each with Blender's importer operator, its add-on (bundled with
#: Blender, on by default) and the importer's options: the file's own axes, and no change to the scene.
IMPORTERS = {
    ".bvh": ("IMPORT_ANIM_OT_bvh", "BioVision Motion Capture (BVH)"),
    ".fbx": ("IMPORT_SCENE_OT_fbx", "FBX format"),
}

#: bpy.data collections an importer may add to; what it adds is removed again (Key datablocks go with
#: their meshes; names a Blender version lacks are skipped).
_DATA = ("objects", "armatures", "meshes", "materials", "images", "textures", "actions", "curves",
         "cameras", "lights", "lattices", "collections", "node_groups", "grease_pencils", "worlds",
         "particles", "fonts", "speakers", "volumes", "pointclouds", "hair_curves")

#: Scene settings an importer may set (the FBX importer sets the frame rate to the file's).
_SCENE_SETTINGS = (("render", "fps"), ("render", "fps_base"), (None, "frame_start"), (None, "frame_end"),
                   (None, "frame_current"))


@dataclasses.dataclass(frozen=True)
class MotionSource:
    """A motion to retarget: the source armature's description (``rig_io.describe_armature`` /
    ``bake.describe_target``), its posed matrices per frame (T, n, 4, 4) at ``fps``, and a label for
    messages and take names (a file name, or ``armature: action``)."""

    label: str
    rig: dict
    pose: np.ndarray
    fps: float

    @property
    def frames(self) -> int:
        return int(len(self.pose))


def check_size(label: str, frames: int, bones: int, fps: float) -> None:
    """Refuse a source longer than :data:`MAX_SOURCE_SECONDS` at ``fps`` or than one request can carry
    (docs/protocol.md, Arrays), before reading it."""
    if frames < 2:
        raise MoMaskError(f"'{label}' has {frames} frame of animation; a motion needs at least two.",
                          "Pick an action (or a file) with keys on two or more frames.")
    longest = int(MAX_SOURCE_SECONDS * fps)
    if frames > longest:
        raise MoMaskError(f"'{label}' is {frames / fps:.0f} s long ({frames} frames at {fps:g} fps), more "
                          f"than the {MAX_SOURCE_SECONDS:g} s Apply Motion and Copy Take read.",
                          "Apply a part of it: set the action's Manual Frame Range to at most "
                          f"{longest} frames.")
    most = protocol.MAX_ARRAY_ELEMENTS // (16 * max(1, bones))
    if frames > most:
        raise MoMaskError(f"'{label}' has {frames} frames of {bones} bones, more than the {most} frames one "
                          "request carries.",
                          "Apply a part of it: set the action's Manual Frame Range to at most "
                          f"{most} frames.")


def action_frames(action) -> tuple[int, int]:
    """The scene frames ``[first, end)`` an action covers (its manual range when set)."""
    first, last = action.frame_range
    return int(math.floor(first)), int(math.ceil(last)) + 1


def read_action(obj, action=None, label: str | None = None) -> MotionSource:
    """``obj``'s animation as a :class:`MotionSource`: ``action`` (default: the one it plays) evaluated
    on ``obj`` alone (NLA off) over its frame range, at the scene's fps. ``action`` is played on ``obj``
    only while it is read; the armature's own action and slot, its pose and its transform are put back."""
    require_armature(obj)
    ad = obj.animation_data
    playing = ad.action if ad is not None else None
    action = action or playing
    if action is None:
        raise MoMaskError(f"The armature '{obj.name}' plays no action, so it has no motion to apply.",
                          "Pick an armature with an animation, or pick the action to apply.")
    label = label or f"{obj.name}: {action.name}"
    first, end = action_frames(action)
    fps = scene_of(obj).render.fps / scene_of(obj).render.fps_base
    check_size(label, end - first, len(obj.data.bones), fps)
    had_data = ad is not None
    previous = (playing, getattr(ad, "action_slot", None)) if ad is not None else (None, None)
    swapped = action != playing
    # the rig's pose and transform as they were, after its own action is back (rig_io.kept_pose)
    with kept_pose(obj):
        try:
            if swapped:
                assign_action(obj, action)
                if obj.animation_data.action != action:
                    raise MoMaskError(f"The action '{action.name}' cannot play on '{obj.name}'.",
                                      "Pick an action made for this armature.")
            rig, pose, _ = read_source(obj, first, end)
        finally:
            if swapped and not had_data:
                obj.animation_data_clear()
            elif swapped:
                assign_action(obj, *previous)
    return MotionSource(label=label, rig=rig, pose=pose, fps=float(fps))


def _snapshot() -> dict[str, set]:
    return {name: set(getattr(bpy.data, name)) for name in _DATA if hasattr(bpy.data, name)}


def _added(before: dict[str, set]) -> list:
    return [item for name, old in before.items() for item in getattr(bpy.data, name) if item not in old]


@contextlib.contextmanager
def temporary_import(context):
    """Run an importer inside the block; afterwards remove everything it made and restore the scene
    settings, the selection, the active object and its mode (whatever happened inside). Yields a
    function that lists the objects made so far."""
    scene = context.scene
    view_layer = context.view_layer
    settings = {(owner, name): getattr(getattr(scene, owner) if owner else scene, name)
                for owner, name in _SCENE_SETTINGS}
    active = view_layer.objects.active
    mode = active.mode if active is not None else "OBJECT"
    selected = [o for o in view_layer.objects if o.select_get()]
    if mode != "OBJECT" and bpy.ops.object.mode_set.poll():
        bpy.ops.object.mode_set(mode="OBJECT")
    before = _snapshot()
    try:
        yield lambda: [o for o in bpy.data.objects if o not in before["objects"]]
    finally:
        made = _added(before)
        if made:
            bpy.data.batch_remove(made)
        for (owner, name), value in settings.items():
            target = getattr(scene, owner) if owner else scene
            if getattr(target, name) != value:
                setattr(target, name, value)
        for obj in view_layer.objects:
            obj.select_set(obj in selected)
        view_layer.objects.active = active
        if active is not None and mode != "OBJECT" and bpy.ops.object.mode_set.poll():
            bpy.ops.object.mode_set(mode=mode)


def read_file(context, path: str | Path) -> MotionSource:
    """The motion of a BVH or FBX file (its animated armature) through Blender's importer, imported
    only while it is read (:func:`temporary_import`). Its frame rate is the file's: the BVH importer
    keys one frame per BVH frame at the file's rate, the FBX importer at the rate it sets the scene to."""
    path = Path(bpy.path.abspath(str(path))) if str(path) else Path()
    suffix = path.suffix.lower()
    if suffix not in IMPORTERS:
        raise MoMaskError(f"'{path.name or path}' is not a BVH or FBX file.",
                          "Pick a .bvh or .fbx file with a skeleton's animation.")
    if not path.is_file():
        raise MoMaskError(f"The file '{path}' does not exist.", "Pick an existing .bvh or .fbx file.")
    operator, addon = IMPORTERS[suffix]
    if not hasattr(bpy.types, operator):
        raise MoMaskError(f"Blender's {addon} importer is turned off, so '{path.name}' cannot be read.",
                          f"Turn on the '{addon}' add-on (Edit > Preferences > Add-ons), then apply again.")
    with temporary_import(context) as made:
        try:
            if suffix == ".bvh":
                # one key per BVH frame; the scene takes the file's rate only while it is read
                result = bpy.ops.import_anim.bvh(filepath=str(path), update_scene_fps=True,
                                                 update_scene_duration=False, use_fps_scale=False)
            else:
                result = bpy.ops.import_scene.fbx(filepath=str(path), use_anim=True)
        except (RuntimeError, ValueError, OSError, IndexError, KeyError, TypeError, AttributeError) as exc:
            # the importer's own words: the last line of its traceback before Blender's "Location:"
            lines = [line.strip() for line in str(exc).splitlines()
                     if line.strip() and not line.strip().startswith("Location:")]
            why = (lines[-1] if lines else type(exc).__name__).removeprefix("Error: ")[:300]
            raise MoMaskError(f"Blender's importer could not read '{path.name}': {why}",
                              f"Check that the file opens with File > Import > {suffix[1:].upper()}; "
                              "export it again if it does not.") from exc
        if "FINISHED" not in result:
            raise MoMaskError(f"Blender's importer could not read '{path.name}'.",
                              f"Check that the file opens with File > Import > {suffix[1:].upper()}.")
        armatures = [o for o in made() if o.type == "ARMATURE"]
        animated = [o for o in armatures if o.animation_data is not None and o.animation_data.action]
        if not animated:
            what = "no armature (skeleton)" if not armatures else "an armature without animation"
            raise MoMaskError(f"'{path.name}' holds {what}, so it has no motion to apply.",
                              "Pick a file with an animated skeleton (a motion-capture BVH, an FBX exported "
                              "with its animation baked).")
        source = max(animated, key=lambda o: len(o.data.bones))
        scene = scene_of(source)
        # The FBX importer keys at the whole-number rate it sets (render.fps); the BVH one at fps / fps_base.
        fps = scene.render.fps / (scene.render.fps_base if suffix == ".bvh" else 1.0)
        motion = read_action(source, label=path.name)
        return dataclasses.replace(motion, fps=float(fps), rig={**motion.rig, "name": path.name})


def selected_take_or_action(obj):
    """What Copy Take copies from ``obj``: the take selected in the panel's list, else what it plays."""
    take = selected_take(obj)
    if take is not None:
        return take
    ad = obj.animation_data
    return ad.action if ad is not None else None

