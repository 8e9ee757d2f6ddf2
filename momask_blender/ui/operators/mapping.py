"""The bone mapping: Detect (and its result) and mapping presets."""

from __future__ import annotations

import bpy
from bpy.props import EnumProperty, StringProperty

from ...anim import presets
from ...anim.bake import describe_target
from ...remote import jobs
from .. import properties
from ..preferences import client_config
from .common import active_armature, report_error, rig_spec


@jobs.applier("map_rig", undo=False)
def apply_map_rig(job: jobs.Job, obj) -> str:
    properties.store_mapping(obj, job.data.get("mapping") or {}, keep_edits=False)
    missing = job.data.get("missing") or (job.data.get("mapping") or {}).get("missing") or []
    if missing:
        return f"MoMask could not map: {', '.join(missing)}"
    return f"MoMask: mapped {len((job.data.get('mapping') or {}).get('bones') or {})} joints"


class MOMASK_OT_detect_mapping(bpy.types.Operator):
    """Map MoMask's 22 joints to this armature's bones by their names (your edits are replaced)"""

    bl_idname = "momask.detect_mapping"
    bl_label = "Detect"

    @classmethod
    def poll(cls, context):
        return active_armature(context) is not None

    def execute(self, context):
        obj = active_armature(context)
        try:
            jobs.submit(
                jobs.Job(
                    jobs.messages.MapRigRequest(rig=rig_spec(describe_target(obj))),
                    client_config(context),
                    label="Detect mapping",
                    target=jobs.Target.of(obj),
                )
            )
        except Exception as exc:  # noqa: BLE001
            return report_error(self, exc)
        return {"FINISHED"}


_preset_items_cache: list[tuple[str, str, str]] = []


def _preset_items(self, context):
    # Blender keeps only pointers to these strings: the list must outlive the call.
    _preset_items_cache[:] = [(name, name, "") for name in presets.list_presets()] or [
        ("", "(no presets)", "")
    ]
    return _preset_items_cache


class MOMASK_OT_mapping_preset_save(bpy.types.Operator):
    """Save this armature's bone mapping as a preset in your user folder"""

    bl_idname = "momask.mapping_preset_save"
    bl_label = "Save Mapping Preset"

    name: StringProperty(name="Name", default="My rig")  # type: ignore[valid-type]

    @classmethod
    def poll(cls, context):
        obj = active_armature(context)
        return obj is not None and len(obj.momask_mapping) > 0

    def invoke(self, context, event):
        self.name = active_armature(context).name
        return context.window_manager.invoke_props_dialog(self)

    def execute(self, context):
        obj = active_armature(context)
        bones = {item.name: item.bone for item in obj.momask_mapping if item.bone}
        path = presets.save_preset(self.name, bones)
        self.report({"INFO"}, f"Saved bone mapping '{self.name}' ({path})")
        return {"FINISHED"}


class MOMASK_OT_mapping_preset_load(bpy.types.Operator):
    """Use a saved bone-mapping preset on this armature"""

    bl_idname = "momask.mapping_preset_load"
    bl_label = "Load Mapping Preset"
    bl_property = "preset"
    bl_options = {"REGISTER", "UNDO"}

    preset: EnumProperty(name="Preset", items=_preset_items)  # type: ignore[valid-type]

    @classmethod
    def poll(cls, context):
        return active_armature(context) is not None

    def invoke(self, context, event):
        context.window_manager.invoke_search_popup(self)
        return {"RUNNING_MODAL"}

    def execute(self, context):
        obj = active_armature(context)
        try:
            bones = presets.load_preset(self.preset)
        except (KeyError, OSError, ValueError) as exc:
            self.report({"ERROR"}, str(exc).strip("'\""))
            return {"CANCELLED"}
        known = {item.name: item for item in obj.momask_mapping}
        absent = [bone for bone in bones.values() if bone not in obj.data.bones]
        for role, bone in bones.items():
            item = known.get(role)
            if item is None:
                item = obj.momask_mapping.add()
                item.name = role
            item.bone = bone if bone in obj.data.bones else ""
        obj["momask_missing_roles"] = [i.name for i in obj.momask_mapping if not i.bone]
        if absent:
            self.report(
                {"WARNING"}, f"This armature has no bone(s) {', '.join(absent)}; those roles are empty."
            )
        return {"FINISHED"}


class MOMASK_OT_mapping_preset_delete(bpy.types.Operator):
    """Delete a saved bone-mapping preset"""

    bl_idname = "momask.mapping_preset_delete"
    bl_label = "Delete Mapping Preset"
    bl_property = "preset"

    preset: EnumProperty(name="Preset", items=_preset_items)  # type: ignore[valid-type]

    def invoke(self, context, event):
        context.window_manager.invoke_search_popup(self)
        return {"RUNNING_MODAL"}

    def execute(self, context):
        name = self.preset
        if presets.delete_preset(name):
            self.report({"INFO"}, f"Deleted preset '{name}'")
        return {"FINISHED"}


classes = (
    MOMASK_OT_detect_mapping,
    MOMASK_OT_mapping_preset_save,
    MOMASK_OT_mapping_preset_load,
    MOMASK_OT_mapping_preset_delete,
)
