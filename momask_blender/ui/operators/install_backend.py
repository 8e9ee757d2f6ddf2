"""Install Backend, Repair, Remove, Cancel and Open Install Log in the preferences (docs/install.md,
"Install Backend"). The work runs on a worker thread (install/backend_env.py); the UI's timer follows
it (remote/jobs.py::follow) and redraws the preferences as it progresses. None of them starts while a
motion is being made (it would be stopped); the worker stops a backend running from the environment
just before it is replaced or removed, so the next request starts the new one."""

from __future__ import annotations

from pathlib import Path

import bpy

from ...install import backend_env
from ...remote import client as client_mod
from ...remote import jobs
from ...user_folder import user_dir
from ..preferences import backend_env_dir, get_prefs
from .common import open_path
from .install_weights import online_access


def install_log() -> Path:
    return user_dir("logs") / "install-backend.log"


def pip_cache() -> Path:
    """pip's download cache for Install Backend: in the add-on's user folder (a reinstall or repair
    downloads nothing again; Blender started from a desktop icon may have no usable home cache)."""
    return user_dir() / "pip-cache"


def _follow() -> tuple | None:
    return backend_env.shown()


#: What the worker is given to find (and stop) the backend, and to wait for a generation.
BACKEND = {"in_use": jobs.current_client, "busy": lambda: jobs.STATE.busy}


def busy_refusal(action: str) -> client_mod.BackendError | None:
    """Install/Repair/Remove while a motion is being made: refused (it would stop the backend)."""
    if not jobs.STATE.busy:
        return None
    return client_mod.BackendError(
        "busy", f"MoMask is making a motion with the backend; {action} now would stop it.",
        f"Wait for the motion to finish (or press Cancel in the MoMask panel), then press {action} again.")


def _started(op, start, action: str) -> set[str]:
    try:
        refusal = busy_refusal(action)
        if refusal is not None:
            raise refusal
        try:
            job = start()
        except OSError as err:  # the add-on's user folder itself cannot be made or written
            folder = Path(err.filename or "the add-on's user folder")
            raise backend_env.environment.os_error(err, folder) from err
    except client_mod.BackendError as err:
        op.report({"ERROR"}, f"{err.problem} Fix: {err.fix}" if err.fix else err.problem)
        jobs.follow(_follow)  # (redraws the preferences, which now show the refusal)
        return {"CANCELLED"}
    jobs.follow(_follow)
    op.report({"INFO"}, f"MoMask: {job.action} of the backend environment started ({job.env_dir})")
    return {"FINISHED"}


def _idle_poll(cls) -> bool:
    if backend_env.CURRENT is not None and backend_env.CURRENT.running:
        cls.poll_message_set("The backend environment is being installed; wait or press Cancel")
        return False
    return True


class MOMASK_OT_install_backend(bpy.types.Operator):
    """Make the backend's Python environment in the add-on's user folder and install torch (the build
    that fits this computer), numpy, scipy and CLIP into it; replaces an installed one only once the new
    one is complete"""

    bl_idname = "momask.install_backend"
    bl_label = "Install Backend"

    @classmethod
    def poll(cls, context):
        return _idle_poll(cls)

    def execute(self, context):
        prefs = get_prefs(context)
        python = bpy.path.abspath(prefs.install_python) if prefs and prefs.install_python else ""
        override = prefs.torch_build if prefs else "auto"
        return _started(self, lambda: backend_env.start_install(
            backend_env_dir(), client_mod.backend_root() or Path(), install_log(), online_access(),
            base_python=python, override=override, cache_dir=pip_cache(), **BACKEND), "Install Backend")


class MOMASK_OT_repair_backend(bpy.types.Operator):
    """Check every package of the installed backend environment and reinstall those that are missing or
    broken (in a copy, swapped in once it checks out)"""

    bl_idname = "momask.repair_backend"
    bl_label = "Repair"

    @classmethod
    def poll(cls, context):
        return _idle_poll(cls)

    def execute(self, context):
        return _started(self, lambda: backend_env.start_repair(
            backend_env_dir(), client_mod.backend_root() or Path(), install_log(), online_access(),
            cache_dir=pip_cache(), **BACKEND), "Repair")


class MOMASK_OT_remove_backend(bpy.types.Operator):
    """Delete the backend environment Install Backend made (and its download cache); the weights stay"""

    bl_idname = "momask.remove_backend"
    bl_label = "Remove"

    @classmethod
    def poll(cls, context):
        return _idle_poll(cls)

    def invoke(self, context, event):
        return context.window_manager.invoke_confirm(self, event)

    def execute(self, context):
        return _started(self, lambda: backend_env.start_remove(backend_env_dir(), install_log(),
                                                               also=[pip_cache()], **BACKEND), "Remove")


class MOMASK_OT_cancel_backend_install(bpy.types.Operator):
    """Stop installing or repairing the backend environment: pip is stopped, nothing half-installed is
    kept, the environment in use (if any) is unchanged"""

    bl_idname = "momask.cancel_backend_install"
    bl_label = "Cancel"

    @classmethod
    def poll(cls, context):
        return backend_env.CURRENT is not None and backend_env.CURRENT.running

    def execute(self, context):
        backend_env.cancel()
        return {"FINISHED"}


class MOMASK_OT_open_install_log(bpy.types.Operator):
    """Open the log of the last Install Backend or Repair (every line pip printed)"""

    bl_idname = "momask.open_install_log"
    bl_label = "Open Install Log"

    def execute(self, context):
        path = install_log()
        return open_path(self, path, f"No install log yet ({path}); Install Backend writes it.")


classes = (
    MOMASK_OT_install_backend,
    MOMASK_OT_repair_backend,
    MOMASK_OT_remove_backend,
    MOMASK_OT_cancel_backend_install,
    MOMASK_OT_open_install_log,
)
