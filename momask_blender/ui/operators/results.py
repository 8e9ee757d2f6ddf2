"""The running job and its outcome: Cancel, writing a finished result (one undo step), dismissing an error."""

from __future__ import annotations

import bpy
from bpy.props import IntProperty

from ...remote import jobs


class MOMASK_OT_cancel(bpy.types.Operator):
    """Stop the running generation at its next step"""

    bl_idname = "momask.cancel"
    bl_label = "Cancel"
    bl_options = {"REGISTER"}

    @classmethod
    def poll(cls, context):
        return jobs.STATE.busy

    def execute(self, context):
        jobs.cancel_active()
        return {"FINISHED"}


class MOMASK_OT_apply_result(bpy.types.Operator):
    """Write a finished MoMask result onto its armature (one undo step)"""

    bl_idname = "momask.apply_result"
    bl_label = "Apply MoMask Result"
    # UNDO without REGISTER: one undo step, but no "Adjust Last Operation" redo, which would undo the
    # keys and run this again after the job is gone (writing nothing).
    bl_options = {"UNDO", "INTERNAL"}

    # A property declaration, not a type (see the mypy section of pyproject.toml), hence the ignore.
    job_id: IntProperty(options={"HIDDEN", "SKIP_SAVE"})  # type: ignore[valid-type]

    def execute(self, context):
        job = jobs.applying(self.job_id)
        if job is None:
            return {"CANCELLED"}
        job.applied_by = "momask.apply_result"
        ok = jobs.apply_now(job)
        if not ok:
            self.report({"WARNING"}, jobs.STATE.error[0] if jobs.STATE.error else "The result was dropped.")
            return {"CANCELLED"}
        self.report({"INFO"}, job.result_message or "MoMask: done")
        return {"FINISHED"}


class MOMASK_OT_dismiss_error(bpy.types.Operator):
    """Hide the last error"""

    bl_idname = "momask.dismiss_error"
    bl_label = "Dismiss"
    bl_options = {"INTERNAL"}

    def execute(self, context):
        jobs.STATE.error = None
        return {"FINISHED"}


classes = (
    MOMASK_OT_cancel,
    MOMASK_OT_apply_result,
    MOMASK_OT_dismiss_error,
)
