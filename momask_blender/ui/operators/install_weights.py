"""Install Weights from the preferences: download (official sources, resumable), From File... for files
the user already has, Cancel, Open Folder. The work runs on a worker thread (install/weights.py); the
UI's timer follows it (remote/jobs.py::follow) and redraws the preferences as it progresses."""

from __future__ import annotations

from pathlib import Path

import bpy
from bpy.props import CollectionProperty, StringProperty

from ...install import weights
from ...remote import client as client_mod
from ...remote import jobs
from ..preferences import client_config
from .common import open_path


def weights_root(context) -> Path:
    """Where Install Weights installs: the weights folder the backend is started with."""
    return Path(client_config(context).weights)


def online_access() -> bool:
    """``bpy.app.online_access`` (Blender 4.2+): False when the user disallowed internet access, or
    Blender was started with ``--offline-mode``."""
    return bool(getattr(bpy.app, "online_access", True))


def _started(op, start) -> set[str]:
    try:
        job = start()
    except client_mod.BackendError as err:
        op.report({"ERROR"}, f"{err.problem} Fix: {err.fix}" if err.fix else err.problem)
        jobs.follow(weights.shown)  # (redraws the preferences, which now show the refusal)
        return {"CANCELLED"}
    jobs.follow(weights.shown)
    op.report({"INFO"}, f"MoMask: installing the weights into {job.root}")
    return {"FINISHED"}


def _idle_poll(cls) -> bool:
    if weights.CURRENT is not None and weights.CURRENT.running:
        cls.poll_message_set("The weights are being installed; wait or press Cancel")
        return False
    return True


class MOMASK_OT_install_weights(bpy.types.Operator):
    """Download the official MoMask HumanML3D models and CLIP ViT-B/32, verify them and install them into
    the weights folder (a partial download resumes; pieces already installed are kept)"""

    bl_idname = "momask.install_weights"
    bl_label = "Install Weights"

    @classmethod
    def poll(cls, context):
        return _idle_poll(cls)

    def execute(self, context):
        return _started(self, lambda: weights.start_download(weights_root(context), online_access()))


class MOMASK_OT_install_weights_from_file(bpy.types.Operator):
    """Install the official humanml3d_models.zip and/or ViT-B-32.pt that you already downloaded (no
    internet needed; each file is verified before it is installed)"""

    bl_idname = "momask.install_weights_from_file"
    bl_label = "From File..."

    filepath: StringProperty(subtype="FILE_PATH")  # type: ignore[valid-type]
    directory: StringProperty(subtype="DIR_PATH")  # type: ignore[valid-type]
    files: CollectionProperty(type=bpy.types.OperatorFileListElement)  # type: ignore[valid-type]
    filter_glob: StringProperty(default="*.zip;*.pt", options={"HIDDEN"})  # type: ignore[valid-type]

    @classmethod
    def poll(cls, context):
        return _idle_poll(cls)

    def invoke(self, context, event):
        context.window_manager.fileselect_add(self)
        return {"RUNNING_MODAL"}

    def execute(self, context):
        chosen = [Path(self.directory) / f.name for f in self.files if f.name] if self.directory else []
        if not chosen and self.filepath:
            chosen = [Path(bpy.path.abspath(self.filepath))]
        return _started(self, lambda: weights.start_from_files(weights_root(context), chosen))


class MOMASK_OT_cancel_weights_install(bpy.types.Operator):
    """Stop installing the weights (a partial download is kept and the next Install resumes it; nothing
    half-installed is used)"""

    bl_idname = "momask.cancel_weights_install"
    bl_label = "Cancel"

    @classmethod
    def poll(cls, context):
        return weights.CURRENT is not None and weights.CURRENT.running

    def execute(self, context):
        weights.cancel()
        return {"FINISHED"}


class MOMASK_OT_open_weights_folder(bpy.types.Operator):
    """Open the weights folder in the file manager"""

    bl_idname = "momask.open_weights_folder"
    bl_label = "Open Folder"

    def execute(self, context):
        root = weights_root(context)
        return open_path(self, root, f"The weights folder {root} does not exist yet; Install Weights "
                                     "makes it.")


classes = (
    MOMASK_OT_install_weights,
    MOMASK_OT_install_weights_from_file,
    MOMASK_OT_cancel_weights_install,
    MOMASK_OT_open_weights_folder,
)
