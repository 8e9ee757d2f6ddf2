"""The add-on without a backend, in real Blender: register/unregister twice, panel classes, preferences,
bone-mapping presets in the user directory.

Run by tests/momask_blender/test_addon_register.py; cases (``tests/blender/cases.py``):
``register_unregister_twice``, ``mapping_presets``, ``refused_continue_keeps_the_comparison``,
``apply_motion_refuses_bad_steering_before_reading``.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
USER = tempfile.mkdtemp(prefix="momask_user_")
os.environ["MOMASK_USER_DIR"] = USER

import bpy  # (bpy first: it puts addon_utils on the path)

# isort: split
import addon_utils
import rigs  # tests/blender/rigs.py
from cases import Skip, case, check, finish

bpy.ops.wm.read_factory_settings(use_empty=True)


@case
def case_register_unregister_twice():
    for round_ in (1, 2):
        addon_utils.enable("momask_blender", default_set=True, handle_error=None)
        check(addon_utils.check("momask_blender")[1], f"round {round_}: not enabled")
        check(hasattr(bpy.types, "MOMASK_PT_main"), f"round {round_}: no panel")
        check(bpy.types.MOMASK_PT_main.bl_category == "MoMask", "panel tab is not 'MoMask'")
        check(hasattr(bpy.types.Scene, "momask"), f"round {round_}: no scene settings")
        check(bpy.context.preferences.addons.get("momask_blender") is not None, "no preferences")
        check(bpy.ops.momask.generate.poll() is False, "Generate is enabled without an armature")
        addon_utils.disable("momask_blender", default_set=True)
        check(not hasattr(bpy.types, "MOMASK_PT_main"), f"round {round_}: panel left after unregister")
        check(not hasattr(bpy.types.Scene, "momask"), f"round {round_}: scene settings left after unregister")


@case
def case_mapping_presets():
    addon_utils.enable("momask_blender", default_set=True, handle_error=None)
    from momask_blender.anim import presets
    from momask_blender.ui import properties

    arm = bpy.data.armatures.new("Rig")
    obj = bpy.data.objects.new("Rig", arm)
    bpy.context.scene.collection.objects.link(obj)
    bpy.context.view_layer.objects.active = obj
    obj.select_set(True)
    bpy.ops.object.mode_set(mode="EDIT")
    for name in ("Hips", "Head", "Other"):
        bone = arm.edit_bones.new(name)
        bone.head, bone.tail = (0, 0, 0), (0, 0, 1)
    bpy.ops.object.mode_set(mode="OBJECT")
    properties.store_mapping(obj, {"bones": {"pelvis": "Hips", "head": "Head"}, "missing": ["left_wrist"]})
    check([i.name for i in obj.momask_mapping] == ["pelvis", "head", "left_wrist"], "mapping roles")
    check(list(obj["momask_missing_roles"]) == ["left_wrist"], "missing roles not recorded")
    obj.momask_mapping["head"].bone = "Other"  # the user's edit
    check(properties.user_overrides(obj) == {"head": "Other"}, f"overrides {properties.user_overrides(obj)}")
    bpy.ops.momask.mapping_preset_save(name="My rig/v1")
    files = list(Path(USER, "mapping_presets").glob("*.json"))
    check(len(files) == 1, f"preset files {files}")
    data = json.loads(files[0].read_text())
    check(data["name"] == "My rig/v1" and data["bones"]["head"] == "Other", f"preset content {data}")
    check(presets.list_presets() == ["My rig/v1"], f"list {presets.list_presets()}")
    obj.momask_mapping["head"].bone = "Head"
    bpy.ops.momask.mapping_preset_load(preset="My rig/v1")
    check(obj.momask_mapping["head"].bone == "Other", "preset not loaded")
    properties.store_mapping(obj, {"bones": {"pelvis": "Hips", "head": "Head"}, "missing": []})
    check(obj.momask_mapping["head"].bone == "Other", "re-detecting lost the user's edit")
    bpy.ops.momask.mapping_preset_delete(preset="My rig/v1")
    check(presets.list_presets() == [], "preset not deleted")
    addon_utils.disable("momask_blender", default_set=True)
    return {"preset_file": files[0].name}


def active_mixamo_rig():
    """A Mixamo-named rig, the only selected object and the active one."""
    obj = rigs.make_mixamo_rig(a_pose=True)
    for other in bpy.context.view_layer.objects:
        other.select_set(False)
    obj.select_set(True)
    bpy.context.view_layer.objects.active = obj
    return obj


def press(op, **props) -> tuple[set, str]:
    """Call a panel operator: (its result, the error it reported or "")."""
    try:
        return op(**props), ""
    except RuntimeError as exc:  # an operator's ERROR report raises when called from Python
        return {"CANCELLED"}, str(exc)


@case
def case_refused_continue_keeps_the_comparison():
    """Continue refused for a broken (NaN) action leaves the user's A/B comparison track in place."""
    addon_utils.enable("momask_blender", default_set=True, handle_error=None)
    from momask_blender.anim import actions, takes

    scene = bpy.context.scene
    obj = active_mixamo_rig()
    hips = obj.pose.bones[0]
    hips.rotation_mode = "QUATERNION"
    for frame, angle in ((1, 0.0), (30, 0.3), (60, 0.6)):
        hips.rotation_quaternion = (1.0, angle, 0.0, 0.0)
        hips.keyframe_insert("rotation_quaternion", frame=frame)
    mine = obj.animation_data.action
    other = mine.copy()
    fcurve = actions.Channels(mine, actions.object_slot(mine, obj)).fcurves[1]
    fcurve.keyframe_points[1].co[1] = float("nan")
    fcurve.update()
    track = obj.animation_data.nla_tracks.new()
    track.name = takes.COMPARE_TRACK
    track.strips.new("B", 1, other)
    track.mute = True
    scene.momask_sequence.continue_prompt, scene.momask_sequence.continue_seconds = "a person runs", 1.0
    scene.frame_set(50)
    result, message = press(bpy.ops.momask.extend_motion, direction="after")
    check(result == {"CANCELLED"} and "not a number" in message, f"not refused: {result} {message}")
    check(obj.animation_data.nla_tracks.get(takes.COMPARE_TRACK) is not None,
          "the refused Continue removed the A/B comparison")
    check(obj.animation_data.action == mine, "the rig no longer plays its action")
    addon_utils.disable("momask_blender", default_set=True)
    return {"message": message}


@case
def case_apply_motion_refuses_bad_steering_before_reading():
    """Apply Motion with steering that cannot work (In Place and Root Motion 'Object' both set) is
    refused before the file is imported and read: no frame is stepped, nothing is left."""
    if (reason := rigs.missing_shared_data("template.bvh")) is not None:
        raise Skip(reason)
    rigs.enable_addon("io_anim_bvh")
    addon_utils.enable("momask_blender", default_set=True, handle_error=None)
    scene = bpy.context.scene
    active_mixamo_rig()                      # the armature the motion would go to
    scene.momask_apply.source, scene.momask_apply.filepath = "FILE", str(rigs.shared_file("template.bvh"))
    scene.momask.in_place, scene.momask_steer.root_motion = True, "object"
    objects = set(bpy.data.objects)
    stepped = []

    def step(scene, *_):                  # (a handler must be a Python function)
        stepped.append(scene.frame_current)

    bpy.app.handlers.frame_change_pre.append(step)
    try:
        result, message = press(bpy.ops.momask.apply_motion)
    finally:
        bpy.app.handlers.frame_change_pre.remove(step)
        scene.momask.in_place, scene.momask_steer.root_motion = False, "none"
    check(result == {"CANCELLED"} and "In Place" in message and "Fix:" in message, f"{result} {message}")
    check(not stepped, f"the file was read ({len(stepped)} frames stepped) before the steering was refused")
    check(set(bpy.data.objects) == objects, "objects were added or removed")
    addon_utils.disable("momask_blender", default_set=True)
    return {"message": message}


finish()
