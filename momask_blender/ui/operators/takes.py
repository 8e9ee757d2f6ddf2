"""Takes: apply, compare (A/B), show and delete the actions generations made."""

from __future__ import annotations

import bpy
from bpy.props import EnumProperty

from ...anim import takes
from .common import active_armature, report_error


def selected_take(context):
    obj = active_armature(context)
    return (None, None) if obj is None else (obj, takes.selected_take(obj))


class _TakeOperator(bpy.types.Operator):
    """What the take operators share (never registered itself: it has no ``bl_idname``)."""

    bl_options = {"REGISTER", "UNDO"}

    @classmethod
    def poll(cls, context):
        return selected_take(context)[1] is not None


class MOMASK_OT_take_apply(_TakeOperator):
    """Play the selected take on the armature"""

    bl_idname = "momask.take_apply"
    bl_label = "Apply Take"

    def execute(self, context):
        obj, action = selected_take(context)
        try:
            takes.end_compare(obj)
            takes.apply_take(obj, action)
        except Exception as exc:  # noqa: BLE001
            return report_error(self, exc)
        return {"FINISHED"}


class MOMASK_OT_take_compare(_TakeOperator):
    """Compare the playing take (A) with the selected one (B) on the same rig"""

    bl_idname = "momask.take_compare"
    bl_label = "Compare"

    def execute(self, context):
        obj, b = selected_take(context)
        a = obj.animation_data.action if obj.animation_data else None
        if a is None or a == b:
            self.report({"WARNING"}, "Play another take first (Apply), then select the take to compare with.")
            return {"CANCELLED"}
        try:
            takes.compare_takes(obj, a, b)
            takes.show_compare(obj, "b")
        except Exception as exc:  # noqa: BLE001
            return report_error(self, exc)
        return {"FINISHED"}


class MOMASK_OT_take_show(bpy.types.Operator):
    """Switch the comparison between take A and take B"""

    bl_idname = "momask.take_show"
    bl_label = "Show"
    bl_options = {"REGISTER", "UNDO"}

    which: EnumProperty(  # type: ignore[valid-type]
        items=[("a", "A", "The playing take"), ("b", "B", "The compared take")]
    )

    def execute(self, context):
        obj = active_armature(context)
        try:
            takes.show_compare(obj, self.which)
        except Exception as exc:  # noqa: BLE001
            return report_error(self, exc)
        return {"FINISHED"}


class MOMASK_OT_take_compare_end(bpy.types.Operator):
    """Stop comparing; the playing take stays"""

    bl_idname = "momask.take_compare_end"
    bl_label = "End Compare"
    bl_options = {"REGISTER", "UNDO"}

    def execute(self, context):
        obj = active_armature(context)
        if obj is not None:
            takes.end_compare(obj)
        return {"FINISHED"}


class MOMASK_OT_take_delete(_TakeOperator):
    """Delete the selected take (its action)"""

    bl_idname = "momask.take_delete"
    bl_label = "Delete Take"

    def execute(self, context):
        obj, action = selected_take(context)
        name = action.name
        try:
            takes.delete_take(obj, action)
        except Exception as exc:  # noqa: BLE001
            return report_error(self, exc)
        obj.momask_take_index = min(obj.momask_take_index, len(bpy.data.actions) - 1)
        self.report({"INFO"}, f"Deleted take '{name}'")
        return {"FINISHED"}


classes = (
    MOMASK_OT_take_apply,
    MOMASK_OT_take_compare,
    MOMASK_OT_take_show,
    MOMASK_OT_take_compare_end,
    MOMASK_OT_take_delete,
)
