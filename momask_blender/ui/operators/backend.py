"""The backend process: Check Backend (and its result), Free Memory, Open Log."""

from __future__ import annotations

import bpy

from ...remote import jobs
from ...user_folder import user_dir
from ..preferences import client_config
from .common import open_path


@jobs.applier("diagnose", undo=False)
def apply_diagnose(job: jobs.Job, obj) -> str:
    jobs.STATE.diagnosis = list(job.data.get("checks") or [])
    jobs.STATE.checking = False
    return "Backend OK" if job.data.get("ok") else "The backend has problems; see the checks"


@jobs.applier("diagnose", undo=False, outcome=jobs.Outcome.FAILURE)
def diagnose_failed(job: jobs.Job, obj) -> str:
    _, problem, fix = job.error or ("", "The backend did not answer.", "")
    jobs.STATE.diagnosis = [{"name": "Backend process", "ok": False, "detail": problem, "fix": fix}]
    jobs.STATE.checking = False
    return problem


class MOMASK_OT_check_backend(bpy.types.Operator):
    """Start the backend and check its Python, torch and device, the weights and CLIP"""

    bl_idname = "momask.check_backend"
    bl_label = "Check Backend"

    def execute(self, context):
        jobs.STATE.diagnosis = []
        jobs.STATE.checking = True
        jobs.submit(jobs.Job(jobs.messages.DiagnoseRequest(), client_config(context), label="Check backend"))
        return {"FINISHED"}


class MOMASK_OT_free_memory(bpy.types.Operator):
    """Stop the backend process, freeing the memory its models use (it restarts on the next Generate)"""

    bl_idname = "momask.free_memory"
    bl_label = "Free Memory"

    def execute(self, context):
        jobs.cancel_active()
        jobs.stop_backend(wait=False)
        self.report({"INFO"}, "MoMask: backend stopped")
        return {"FINISHED"}


class MOMASK_OT_open_log(bpy.types.Operator):
    """Open the backend's log file"""

    bl_idname = "momask.open_log"
    bl_label = "Open Log"

    def execute(self, context):
        path = user_dir("logs") / "backend.log"
        return open_path(self, path, f"No backend log yet ({path}).")


classes = (
    MOMASK_OT_check_backend,
    MOMASK_OT_free_memory,
    MOMASK_OT_open_log,
)
