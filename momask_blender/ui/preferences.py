"""Add-on preferences: which Python runs the backend, where the weights are, which device.

The defaults live in the add-on's own folder (``user_folder.user_dir``) when nothing is set.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import bpy
from bpy.props import BoolProperty, EnumProperty, StringProperty

from ..install import backend_env, environment
from ..install import torch_build as builds
from ..install import weights as install_weights
from ..remote import client, jobs
from ..user_folder import PACKAGE, user_dir

DEVICES = [
    ("auto", "Auto", "CUDA if available, then Apple MPS, else CPU"),
    ("cpu", "CPU", "Run on the processor (slow but always works)"),
    ("cuda", "CUDA", "An NVIDIA GPU"),
    ("mps", "MPS", "Apple silicon GPU"),
]


def get_prefs(context=None):
    """This add-on's preferences, or None when it is not enabled (e.g. imported by a test)."""
    context = context or bpy.context
    addon = context.preferences.addons.get(PACKAGE)
    return addon.preferences if addon is not None else None


def default_weights(root: Path | None) -> str:
    """The weights folder when none is set: the one ``python build.py weights`` fills next to the
    backend (a development checkout), else ``weights`` in the add-on's user folder, where Install
    Weights puts them (never inside the extension, which an update replaces)."""
    if root is not None and (root / "weights" / "t2m").is_dir():
        return str(root / "weights")
    return str(user_dir() / "weights")


def client_config(context=None) -> client.BackendConfig:
    """The backend settings now in effect (preferences, with defaults filled in)."""
    prefs = get_prefs(context)
    root = client.backend_root()
    if prefs is not None and prefs.backend_command.strip():
        return remote_config(prefs.backend_command.strip(), root)
    python = bpy.path.abspath(prefs.backend_python) if prefs and prefs.backend_python else ""
    weights = bpy.path.abspath(prefs.weights_dir) if prefs and prefs.weights_dir else ""
    clip = bpy.path.abspath(prefs.clip_file) if prefs and prefs.clip_file else ""
    return client.BackendConfig(
        python=python or client.default_backend_python(root, user_dir(), installed_backend_python()),
        weights=(weights or default_weights(root)).rstrip("/\\") or "/",
        clip=clip,
        device=prefs.device if prefs else "auto",
        root=str(root) if root else "",
        log_path=str(user_dir("logs") / "backend.log"),
    )


def backend_env_dir() -> Path:
    """Where Install Backend builds the backend's environment: ``backend-env`` in the add-on's user
    folder (``bpy.utils.extension_path_user``; never inside the extension, which an update replaces).
    Not created here: it appears, complete, when an install renames its staging folder into place."""
    return user_dir() / environment.ENV_FOLDER


def installed_backend_python() -> Path | None:
    """The python of the environment Install Backend finished (None: none, or an unfinished one)."""
    return environment.installed_python(backend_env_dir())


def remote_config(command: str, root: Path | None) -> client.BackendConfig:
    """A backend that runs through the user's command (docs/install.md, "Remote backend"): the weights,
    CLIP file and device are the remote's, part of the command, so the local ones are left out (a
    change to them must not restart a remote backend). Online access is read now, at every request."""
    return client.BackendConfig(
        python="", weights="", device="", remote=command, online_access=bool(bpy.app.online_access),
        root=str(root) if root else "", log_path=str(user_dir("logs") / "backend.log"),
    )


class MOMASK_AP_preferences(bpy.types.AddonPreferences):
    bl_idname = PACKAGE

    # Property declarations, not types (see the mypy section of pyproject.toml), hence the ignores.
    backend_python: StringProperty(  # type: ignore[valid-type]
        name="Backend Python",
        subtype="FILE_PATH",
        description="Python interpreter of the backend's environment (with torch). "
        "Empty: the environment Install Backend made, else the .venv made by `python build.py setup`",
    )
    weights_dir: StringProperty(  # type: ignore[valid-type]
        name="Weights Folder",
        subtype="DIR_PATH",
        description="Folder with the MoMask checkpoints (t2m/...). "
        "Empty: the add-on's own folder, where Install Weights puts them",
    )
    clip_file: StringProperty(  # type: ignore[valid-type]
        name="CLIP File",
        subtype="FILE_PATH",
        description="CLIP ViT-B/32 checkpoint. Empty: <weights>/clip/ViT-B-32.pt",
    )
    device: EnumProperty(  # type: ignore[valid-type]
        name="Device", items=DEVICES, default="auto", description="Where the backend runs the models"
    )
    backend_command: StringProperty(  # type: ignore[valid-type]
        name="Backend Command",
        description="Run the backend with this command instead of a local Python, e.g. on a GPU computer "
        "over ssh: ssh gpu-box \"cd /opt/momask && .venv/bin/python -m backend serve --weights "
        "/opt/momask/weights\". Its weights and device are the remote's. Empty: a local backend",
    )
    warm_up: BoolProperty(  # type: ignore[valid-type]
        name="Warm Up While Typing",
        default=True,
        description="When a prompt is edited, start the backend and load the models in the background, so "
        "that Generate starts at once. The backend then stays in memory (about 0.8 GB on CPU) until "
        "Free Memory or the end of the session",
    )

    torch_build: EnumProperty(  # type: ignore[valid-type]
        name="Torch Build",
        items=builds.OVERRIDES,
        default="auto",
        description="Which build of torch Install Backend installs. Auto: CUDA with an NVIDIA driver new "
        "enough for it, Apple Silicon's build on a Mac, else CPU",
    )
    install_python: StringProperty(  # type: ignore[valid-type]
        name="Install With Python",
        subtype="FILE_PATH",
        description="The Python Install Backend makes the environment from (3.11 to 3.13, with venv). "
        "Empty: Blender's own Python",
    )

    def draw(self, context):
        layout = self.layout
        # the defaults are looked up on disk: only when a field is empty and they are shown
        cfg = client_config(context) if not (self.backend_python and self.weights_dir) else None
        col = layout.column()
        col.prop(self, "backend_python")
        if cfg is not None and not self.backend_python:
            col.label(text=f"Using: {cfg.python or 'none found'}", icon="INFO")
        col.prop(self, "weights_dir")
        if cfg is not None and not self.weights_dir:
            col.label(text=f"Using: {cfg.weights}", icon="INFO")
        col.prop(self, "clip_file")
        col.prop(self, "device")
        col.prop(self, "warm_up")
        draw_remote(layout, self)
        row = layout.row()
        row.operator("momask.check_backend", icon="CHECKMARK")
        row.operator("momask.free_memory", icon="X")
        row.operator("momask.open_log", icon="TEXT")
        draw_diagnosis(layout, jobs.STATE)
        draw_backend_env(layout, self)
        draw_weights(layout, (cfg or client_config(context)).weights, self.clip_file)


def draw_backend_env(layout, prefs) -> None:
    """The Backend Environment box: what is installed (and whether it is in use), the torch build
    Install Backend picks and why, the install in progress or its outcome, and the buttons."""
    box = layout.box()
    box.label(text="Backend Environment", icon="CONSOLE")
    try:
        env_dir = backend_env_dir()
    except OSError as err:
        refusal = environment.os_error(err, Path(err.filename or "the add-on's user folder"))
        for line in wrap(f"{refusal.problem} Fix: {refusal.fix}", 90):
            box.label(text=line, icon="ERROR")
        return
    marker = environment.read_marker(env_dir)
    if marker is not None:
        gone = environment.gone_base_python(env_dir)
        if gone is not None:
            for line in wrap(f"Installed in {env_dir}, but made from a Python that is gone ({gone}): "
                             "press Install Backend to make it again.", 90):
                box.label(text=line, icon="ERROR")
        else:
            box.label(text=f"Installed: torch {marker.get('label', '?')} in {env_dir}", icon="CHECKMARK")
        if prefs.backend_python:
            box.label(text="Not in use: Backend Python is set above (clear it to use this one).", icon="INFO")
    else:
        box.label(text=f"Not installed (Install Backend puts it in {env_dir}).", icon="INFO")
    box.prop(prefs, "torch_build")
    box.prop(prefs, "install_python")
    choice = backend_env.machine_choice(prefs.torch_build)
    if choice is None:
        box.label(text="Torch build: looking for an NVIDIA driver...", icon="SORTTIME")
    else:
        label = choice.build.label if choice.build else "none"
        for i, line in enumerate(wrap(f"Torch build: {label}. {choice.reason}", 90)):
            box.label(text=line, icon="INFO" if i == 0 and choice.build else ("ERROR" if i == 0 else "NONE"))
        if choice.fix:
            for line in wrap(f"Fix: {choice.fix}", 90):
                box.label(text=line)
    draw_install(box, backend_env.CURRENT)
    if not getattr(bpy.app, "online_access", True):
        box.label(text="Online access is off: Install Backend and Repair will not download.", icon="INFO")
    row = box.row()
    row.operator("momask.install_backend", icon="IMPORT")
    row.operator("momask.repair_backend", icon="TOOL_SETTINGS")
    row.operator("momask.remove_backend", icon="TRASH")
    row.operator("momask.cancel_backend_install", icon="CANCEL")
    row.operator("momask.open_install_log", icon="TEXT")


def draw_weights(layout, root: str, clip_file: str = "") -> None:
    """The Weights box: what is installed in ``root`` (per piece, the installer's own check), the
    install in progress or its outcome, and Install / From File... / Cancel / Open Folder."""
    box = layout.box()
    box.label(text="Weights", icon="FILE_BLEND")
    box.label(text=f"Folder: {root}")
    clip = bpy.path.abspath(clip_file) if clip_file else None
    for piece, missing in install_weights.missing(root, clip).items():
        if not missing:
            box.label(text=f"{piece}: installed", icon="CHECKMARK")
            continue
        shown = ", ".join(missing[:2]) + (f" and {len(missing) - 2} more" if len(missing) > 2 else "")
        box.label(text=f"{piece}: missing {shown}", icon="ERROR")
    draw_install(box, install_weights.CURRENT)
    if not getattr(bpy.app, "online_access", True):
        box.label(text="Online access is off: Install Weights will not download; From File... works.",
                  icon="INFO")
    row = box.row()
    row.operator("momask.install_weights", icon="IMPORT")
    row.operator("momask.install_weights_from_file", icon="FILEBROWSER")
    row.operator("momask.cancel_weights_install", icon="CANCEL")
    row.operator("momask.open_weights_folder", icon="FILE_FOLDER")


def draw_install(box, job) -> None:
    """An install's progress bar while it runs, then its outcome (and the fix of a failure); ``job``
    is a weights install or a backend environment job (running, fraction, text, state, error)."""
    if job is None:
        return
    if job.running:
        box.progress(factor=job.fraction, type="BAR", text=job.text)
    elif job.error is None:
        box.label(text=job.text, icon="CHECKMARK" if job.state == "done" else "INFO")
    else:
        box.label(text=f"{job.text} {job.error[0]}"[:300], icon="ERROR")
        for line in wrap(f"Fix: {job.error[1]}", 90):
            box.label(text=line)


def draw_remote(layout, prefs) -> None:
    """The "Remote backend" box: the command, and when it is set, what it replaces and where it runs."""
    box = layout.box()
    box.label(text="Remote Backend", icon="URL")
    box.prop(prefs, "backend_command", text="Command")
    if not prefs.backend_command.strip():
        box.label(text="Empty: the backend runs on this computer with the settings above.")
        return
    for line in wrap("The command runs instead of Backend Python; the weights and device are the "
                     "remote's (give --weights/--device in the command). Its output must be the "
                     "backend's only: see docs/install.md, Remote backend.", 90):
        box.label(text=line)
    if not bpy.app.online_access:
        box.label(text="Online access is off: the remote backend is not used. Turn on "
                  "Preferences > System > Network > Allow Online Access.", icon="ERROR")
    hello = jobs.backend_hello()
    if hello is not None and jobs.remote_host() is not None:
        device = (hello.get("device") or {}).get("resolved", "?")
        box.label(text=f"Connected to {hello.get('host', '?')}: device {device}, torch {hello.get('torch')}",
                  icon="LINKED")


def draw_diagnosis(layout, state) -> None:
    """Each result of 'Check backend' as a line with ok/fail, and the fix under a failed one."""
    if state.checking:
        layout.label(text="Checking the backend...", icon="SORTTIME")
    if not state.diagnosis:
        return
    box = layout.box()
    for check in state.diagnosis:
        ok = bool(check.get("ok"))
        optional = bool(check.get("optional"))
        icon = "CHECKMARK" if ok else ("INFO" if optional else "ERROR")
        row = box.row()
        row.label(text=f"{check.get('name', '?')}: {'ok' if ok else 'fail'}", icon=icon)
        row.label(text=str(check.get("detail", "")))
        if not ok and check.get("fix"):
            for line in wrap(str(check["fix"]), 90):
                box.label(text=line)


def wrap(text: str, width: int) -> list[str]:
    """Split a long message into label-sized lines (labels do not wrap)."""
    lines: list[str] = []
    for paragraph in text.splitlines() or [""]:
        lines += textwrap.wrap(paragraph, width) or [""]
    return lines


classes = (MOMASK_AP_preferences,)
