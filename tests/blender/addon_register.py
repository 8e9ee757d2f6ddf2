"""The add-on without a backend, in real Blender: register/unregister twice, panel classes, preferences,
bone-mapping presets in the user directory.

Run by tests/momask_blender/test_addon_register.py; cases (``tests/blender/cases.py``):
``register_unregister_twice``, ``mapping_presets``.
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
from cases import case, check, finish

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


finish()
