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

if "bpy" in locals():  # re-enabling in the same session: pick up edited modules
    import importlib

    for _name in ("client", "preferences", "properties", "presets", "jobs", "operators", "panel"):
        if _name in locals():
            importlib.reload(locals()[_name])

import bpy  # noqa: E402

from . import client, jobs, operators, panel, preferences, presets, properties  # noqa: E402,F401

_CLASSES = (*preferences.classes, *properties.classes, *operators.classes, *panel.classes)


def register() -> None:
    for cls in _CLASSES:
        bpy.utils.register_class(cls)
    properties.register_properties()


def unregister() -> None:
    jobs.unregister()  # cancel jobs, stop the backend process, remove the timer
    properties.unregister_properties()
    for cls in reversed(_CLASSES):
        bpy.utils.unregister_class(cls)
