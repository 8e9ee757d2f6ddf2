"""MoMask for Blender: text to motion on your own rig, with in-betweening.

An extension (``blender_manifest.toml``) that talks to a bundled local backend (``backend/``, run in
its own Python with torch) and writes the motion onto the active armature as keyframes. This package
uses bpy, the standard library and numpy only. ``bl_info`` lets the repository folder also load as a
legacy add-on in development (``addon_utils.enable("momask_blender")``).
"""

from __future__ import annotations

bl_info = {
    "name": "MoMask Text to Motion",
    "author": "MoMask for Blender",
    "version": (0, 1, 0),
    "blender": (4, 2, 0),
    "location": "3D Viewport > Sidebar > MoMask",
    "description": "Generate character animation from text on your own rig, and regenerate frame ranges",
    "category": "Animation",
}

#: The add-on's modules, each after the ones it imports: re-enabling reloads them in this order.
MODULES = (
    "remote.client", "user_folder", "install.weights", "install.torch_build", "install.environment",
    "install.backend_env", "anim.presets", "anim.armature", "anim.actions",
    "anim.rig_io", "anim.segments",
    "anim.takes", "anim.keys", "anim.bake", "anim.sources", "anim.paths", "remote.jobs", "ui.preferences",
    "ui.properties",
    "ui.operators.common", "ui.operators.steer", "ui.operators.generate", "ui.operators.compose",
    "ui.operators.targets", "ui.operators.results", "ui.operators.backend",
    "ui.operators.takes", "ui.operators.mapping", "ui.operators.install_weights",
    "ui.operators.install_backend", "ui.operators.apply_motion", "ui.operators", "ui.panel",
)

if "bpy" in locals():  # re-enabling in the same session: pick up edited modules (those loaded so far)
    import importlib
    import sys

    for _name in MODULES:
        if f"{__name__}.{_name}" in sys.modules:
            importlib.reload(sys.modules[f"{__name__}.{_name}"])

import bpy  # noqa: E402

from .anim import presets  # noqa: E402,F401
from .install import backend_env  # noqa: E402
from .install import weights as install_weights  # noqa: E402
from .remote import client, jobs  # noqa: E402,F401
from .ui import operators, panel, preferences, properties  # noqa: E402

_CLASSES = (*preferences.classes, *properties.classes, *operators.classes, *panel.classes)


def register() -> None:
    for cls in _CLASSES:
        bpy.utils.register_class(cls)
    properties.register_properties()
    jobs.register()  # the handler that drops jobs for the old file when another one is opened


def unregister() -> None:
    jobs.unregister()  # cancel jobs, stop the backend process, remove the timer and the handler
    install_weights.cancel()  # stop a weights download (its partial file stays for resuming)
    backend_env.cancel()  # stop pip: the staging folder is removed, an installed environment stays
    properties.unregister_properties()
    for cls in reversed(_CLASSES):
        bpy.utils.unregister_class(cls)
