"""What the panel edits: the generation settings (per scene) and the bone mapping (per armature).

Takes need no property of their own: a take is an action tagged by ``takes.record_take``, so the
take list draws ``bpy.data.actions`` filtered to this rig's takes; only the selected row lives here
(``Object.momask_take_index``).
"""

from __future__ import annotations

import math

import bpy
from bpy.props import (
    BoolProperty,
    CollectionProperty,
    EnumProperty,
    FloatProperty,
    IntProperty,
    PointerProperty,
    StringProperty,
)

from ..remote.client import load_backend_module

MAX_SECONDS = 9.8  # 196 model frames at 20 fps
MIN_SECONDS = 0.2  # 4 model frames (one token) at 20 fps: the shortest take
SEED_MAX = 2**31 - 1  # Blender's IntProperty is 32-bit signed; the backend takes any 32-bit seed


def _prompt_edited(settings, context) -> None:
    """A prompt was typed: warm the backend up for it (preference "Warm Up While Typing"). ``settings``
    is the group whose prompt changed: the panel's settings, a sequence segment or the sequence."""
    from ..remote import jobs
    from .preferences import client_config, get_prefs

    prefs = get_prefs(context)
    if prefs is None or not prefs.warm_up:
        return
    try:
        prompts = [getattr(settings, name, "") for name in ("prompt", "inbetween_prompt", "continue_prompt")]
        jobs.warm_up([p for p in prompts if isinstance(p, str)], client_config(context))
    except Exception as exc:  # noqa: BLE001 (typing must never fail; Generate reports backend problems)
        print(f"MoMask: the warm-up did not start: {exc}")


class MoMaskSettings(bpy.types.PropertyGroup):
    prompt: StringProperty(
        name="Prompt",
        default="a person walks forward and waves",
        description="What the character should do",
        update=_prompt_edited,
    )
    auto_length: BoolProperty(
        name="Auto Length",
        default=False,
        description="Let MoMask's length estimator choose the duration from the prompt",
    )
    seconds: FloatProperty(
        name="Seconds",
        default=4.0,
        min=0.2,
        max=MAX_SECONDS,
        step=10,
        precision=1,
        description="Duration of the motion (MoMask makes at most 9.8 s)",
    )
    seed: IntProperty(
        name="Seed",
        default=0,
        min=0,
        max=SEED_MAX,
        description="Same seed, prompt and settings give the same motion",
    )
    randomize_seed: BoolProperty(
        name="Randomise",
        default=True,
        description="Pick a new seed for every generation (the take remembers it)",
    )
    variations: IntProperty(
        name="Variations", default=1, min=1, max=8, description="Takes made in one batch from the same prompt"
    )
    # Advanced (the paper's defaults)
    cond_scale: FloatProperty(
        name="Guidance",
        default=4.0,
        min=0.0,
        max=20.0,
        description="How strongly the motion follows the text (classifier-free guidance)",
    )
    steps: IntProperty(
        name="Steps",
        default=10,
        min=1,
        max=50,
        description="Decoding steps of the masked transformer (more: slower)",
    )
    temperature: FloatProperty(
        name="Temperature",
        default=1.0,
        min=0.05,
        max=3.0,
        description="Sampling temperature (lower: safer, less varied)",
    )
    foot_lock: BoolProperty(
        name="Foot Lock", default=True, description="Pin feet to the ground while they are in contact"
    )
    in_place: BoolProperty(
        name="In Place",
        default=False,
        description="Keep the root at the origin (for cycles and game engines)",
    )
    show_advanced: BoolProperty(name="Advanced", default=False)
    # In-between
    inbetween_prompt: StringProperty(
        name="Prompt",
        default="the person jumps",
        description="What happens inside the frame range",
        update=_prompt_edited,
    )
    inbetween_custom_range: BoolProperty(
        name="Custom Range",
        default=False,
        description="Choose the frames here instead of the scene's preview range (or the action's range)",
    )
    inbetween_start: IntProperty(name="Start", default=1, description="First frame to regenerate")
    inbetween_end: IntProperty(name="End", default=40, description="Last frame to regenerate")
    blend_frames: IntProperty(
        name="Blend",
        default=4,
        min=0,
        max=24,
        description="Frames at each side that blend into the existing motion",
    )
    # Generate Through Keyed Poses (ui/operators/targets.py)
    pose_targets: StringProperty(
        name="Pose Targets",
        default="",
        description="Frames whose keyed poses the take passes through, e.g. 1, 30, 60; empty: every frame "
        "where the mapped bones have keys inside the range (From Keys lists them)",
    )


class MoMaskBoneRole(bpy.types.PropertyGroup):
    """One of the 22 MoMask joints and the bone that plays it (``name`` is the role)."""

    bone: StringProperty(name="Bone", description="Bone driven by this joint")
    detected: StringProperty(name="Detected", description="What automatic mapping chose")


def inbetween_frames(scene, obj=None) -> tuple[int, int, str]:
    """The in-between frames, inclusive, and where they come from: the custom range, else the
    preview range if on, else the armature's active action's frame range (never the scene range,
    which runs past the animation: 1-250 by default, over MoMask's 9.8 s at 24 fps)."""
    s = scene.momask
    if s.inbetween_custom_range:
        return s.inbetween_start, s.inbetween_end, "custom"
    if scene.use_preview_range:
        return scene.frame_preview_start, scene.frame_preview_end, "preview range"
    ad = getattr(obj, "animation_data", None)
    action = ad.action if ad is not None else None
    if action is not None:
        first, last = action.frame_range
        return int(math.floor(first)), int(math.ceil(last)), "action range"
    return scene.frame_start, scene.frame_end, "scene range"


def mapping_overrides(obj) -> dict[str, str]:
    """``{role: bone}`` the user set or kept, for bones the armature still has."""
    bones = obj.data.bones
    return {item.name: item.bone for item in obj.momask_mapping if item.bone and item.bone in bones}


def user_overrides(obj) -> dict[str, str]:
    """Only the roles the user changed from the detected mapping."""
    bones = obj.data.bones
    return {
        item.name: item.bone
        for item in obj.momask_mapping
        if item.bone and item.bone != item.detected and item.bone in bones
    }


def store_mapping(obj, mapping: dict, keep_edits: bool = True) -> None:
    """Show the backend's mapping (``{"bones": {role: bone}, "missing": [...]}``) on the armature."""
    edits = user_overrides(obj) if keep_edits else {}
    bones = dict(mapping.get("bones") or {})
    roles = list(bones) + [r for r in mapping.get("missing") or [] if r not in bones]
    obj.momask_mapping.clear()
    for role in roles:
        item = obj.momask_mapping.add()
        item.name = role
        item.detected = bones.get(role) or ""
        item.bone = edits.get(role, item.detected)
    obj["momask_missing_roles"] = [r for r in roles if not (edits.get(r) or bones.get(r))]


def _other_armature(settings, obj) -> bool:
    """Apply Motion's source armature: any armature but the one the motion goes to (the active)."""
    active = getattr(bpy.context, "active_object", None)
    return obj.type == "ARMATURE" and obj != active


class MoMaskApplySettings(bpy.types.PropertyGroup):
    """Apply Motion: where the motion comes from (Scene.momask_apply)."""

    source: EnumProperty(
        name="From",
        items=[("FILE", "File", "A BVH or FBX file, read by Blender's own importer (nothing of it stays)"),
               ("ARMATURE", "Armature", "Another armature's action or take in this file")],
        default="FILE",
    )
    filepath: StringProperty(
        name="File", subtype="FILE_PATH", description="The BVH or FBX file whose motion to apply"
    )
    armature: PointerProperty(
        name="Armature", type=bpy.types.Object, poll=_other_armature,
        description="The armature whose animation to apply to the active one",
    )
    action: PointerProperty(
        name="Action", type=bpy.types.Action,
        description="The action (or take) to apply; empty: the one the armature plays",
    )


def _is_curve(settings, obj) -> bool:
    return obj.type == "CURVE"


def _is_empty(item, obj) -> bool:
    return obj.type == "EMPTY"


class MoMaskWaypoint(bpy.types.PropertyGroup):
    """A waypoint: the root passes ``target`` (an empty; its ground projection) at scene ``frame``."""

    target: PointerProperty(name="Empty", type=bpy.types.Object, poll=_is_empty,
                            description="The empty the root passes through")
    frame: IntProperty(name="Frame", default=1, description="The scene frame the root is there")


class MoMaskSteerSettings(bpy.types.PropertyGroup):
    """Steering a generation (Scene.momask_steer; docs/protocol.md "Steering")."""

    use_path: BoolProperty(name="Follow Path", default=False,
                           description="The take's root follows a curve (its ground projection)")
    path: PointerProperty(name="Curve", type=bpy.types.Object, poll=_is_curve,
                          description="A Bezier, poly or NURBS curve the root walks along, from its start")
    timing: EnumProperty(
        name="Timing",
        items=[("keep_speed", "Keep Speed", "The motion keeps its own walking speed; the duration comes "
                "from the path's length"),
               ("fit_duration", "Fit Duration", "The take's duration (Seconds) covers the whole path; the "
                "speed (stride) is scaled to fit")],
        default="keep_speed",
    )
    facing: EnumProperty(
        name="Facing",
        items=[("tangent", "Along Path", "The body turns to face along the path"),
               ("keep_relative", "Keep Relative", "The body keeps the motion's own facing relative to the "
                "path (a sidestep stays a sidestep)")],
        default="tangent",
    )
    waypoints: CollectionProperty(type=MoMaskWaypoint)
    waypoint_index: IntProperty(name="Waypoint", default=0)
    root_motion: EnumProperty(
        name="Root Motion",
        items=[("none", "On the Hips", "The travel stays on the hips bone, as generated"),
               ("root_bone", "Root Bone", "Travel extracted onto a root bone above the hips (game engines: "
                "UE's 'root')"),
               ("object", "Object", "Travel extracted onto the armature object's own keys")],
        default="none",
    )
    root_bone: StringProperty(name="Root Bone", default="",
                              description="The bone that carries the travel; empty: a bone named 'root' if "
                              "the rig has one, else the object")
    heading: BoolProperty(name="Heading", default=True,
                          description="The extracted root also turns with the body's facing")
    ground: BoolProperty(name="Ground", default=False,
                         description="No foot below the rig's rest sole height; the pelvis lowers where a "
                         "foot cannot reach")


classes = (MoMaskSettings, MoMaskBoneRole, MoMaskApplySettings, MoMaskWaypoint, MoMaskSteerSettings)


def register_properties() -> None:
    # New RNA properties on Blender's own types: the stubs cannot know them (hence the ignores).
    bpy.types.Scene.momask = PointerProperty(type=MoMaskSettings)  # type: ignore[attr-defined]
    bpy.types.Object.momask_mapping = CollectionProperty(type=MoMaskBoneRole)  # type: ignore[attr-defined]
    bpy.types.Object.momask_take_index = IntProperty(name="Take", default=-1)  # type: ignore[attr-defined]
    bpy.types.Scene.momask_apply = PointerProperty(type=MoMaskApplySettings)  # type: ignore[attr-defined]
    bpy.types.Scene.momask_steer = PointerProperty(type=MoMaskSteerSettings)  # type: ignore[attr-defined]
    register_sequence_properties()


def unregister_properties() -> None:
    unregister_sequence_properties()
    for owner, name in (
        (bpy.types.Scene, "momask"),
        (bpy.types.Object, "momask_mapping"),
        (bpy.types.Object, "momask_take_index"),
        (bpy.types.Scene, "momask_apply"),
        (bpy.types.Scene, "momask_steer"),
    ):
        if hasattr(owner, name):
            delattr(owner, name)


# --- Sequence, Continue and Lead-in (ui/operators/compose.py) -------------------------------------------
# A block of its own: the sequence's segments, its transition and loop, and what Continue / Lead-in
# ask for. ``Scene.momask_sequence`` holds it.

#: The wire's compose bounds (backend/portable/messages.py, docs/protocol.md "Bounds"), loaded by path.
_messages = load_backend_module("messages")
MAX_SEQUENCE_SECONDS = _messages.MAX_COMPOSE_SECONDS      # 5 minutes: one composed take
MAX_SEGMENTS = _messages.MAX_SEGMENTS
MAX_TRANSITION_SECONDS = _messages.MAX_TRANSITION_SECONDS


class MoMaskSegment(bpy.types.PropertyGroup):
    """One prompt of a sequence and how long it lasts."""

    prompt: StringProperty(name="Prompt", default="a person walks forward",
                           description="What the character does during this segment", update=_prompt_edited)
    seconds: FloatProperty(name="Seconds", default=3.0, min=0.0, soft_min=0.2, soft_max=60.0,
                           max=MAX_SEQUENCE_SECONDS, step=10, precision=2,
                           description="How long the segment lasts (keyed as round(seconds x fps) frames)")


class MoMaskSequence(bpy.types.PropertyGroup):
    segments: CollectionProperty(type=MoMaskSegment)  # type: ignore[valid-type]
    index: IntProperty(name="Segment", default=0, description="The selected segment (Regenerate "
                       "Segment regenerates this one of the take)")
    transition: FloatProperty(name="Transition", default=0.4, min=0.2, max=MAX_TRANSITION_SECONDS, step=10,
                              precision=2, description="Seconds at each join regenerated from both "
                              "neighbours (whole 0.2 s tokens), so one segment flows into the next")
    loop: BoolProperty(name="Loop", default=False,
                       description="The end flows into the start: cyclic keys (the last key equals "
                       "the first)")
    cycles: BoolProperty(name="Cycles Modifier", default=True,
                         description="Repeat a looped take for ever with a Cycles modifier on its curves")
    show_regenerate: BoolProperty(name="Regenerate", default=False)
    continue_prompt: StringProperty(name="Prompt", default="the person keeps walking",
                                    description="What happens in the frames Continue adds (or Lead-in "
                                    "puts before)", update=_prompt_edited)
    continue_seconds: FloatProperty(name="Seconds", default=2.0, min=0.0, soft_min=0.2, max=60.0, step=10,
                                    precision=2, description="How long the added motion lasts")
    continue_blend: IntProperty(name="Blend", default=4, min=0, max=24,
                                description="Frames over which the new motion blends out of (into) your keys")


def add_segment(sequence, prompt: str, seconds: float):
    """Append a segment to ``sequence`` and select it."""
    item = sequence.segments.add()
    item.prompt, item.seconds = prompt, seconds
    sequence.index = len(sequence.segments) - 1
    return item


SEQUENCE_CLASSES = (MoMaskSegment, MoMaskSequence)


def register_sequence_properties() -> None:
    bpy.types.Scene.momask_sequence = PointerProperty(type=MoMaskSequence)  # type: ignore[attr-defined]


def unregister_sequence_properties() -> None:
    if hasattr(bpy.types.Scene, "momask_sequence"):
        del bpy.types.Scene.momask_sequence


classes = (*classes, *SEQUENCE_CLASSES)  # registered after MoMaskSettings, in this order
