"""Where the add-on keeps its own files (mapping presets, the backend's log, a downloaded backend).

``bpy.utils.extension_path_user`` when installed as an extension (never next to the add-on), a folder
in Blender's user config when run as a legacy add-on from the repository, or ``$MOMASK_USER_DIR``
(tests). Below the UI and the animation modules, which both keep files there.
"""

from __future__ import annotations

import os
from pathlib import Path

import bpy

#: The add-on's own package (``momask_blender``, or ``bl_ext.<repo>.momask_blender`` as an extension):
#: preferences and the user folder are keyed by it.
PACKAGE = __package__


def user_dir(*parts: str) -> Path:
    """The add-on's writable folder (created), optionally a sub-folder of it."""
    base: Path | None = None
    if os.environ.get("MOMASK_USER_DIR"):
        base = Path(os.environ["MOMASK_USER_DIR"])
    else:
        try:
            base = Path(bpy.utils.extension_path_user(PACKAGE, create=True))
        except (ValueError, AttributeError):  # a legacy add-on (development), not an extension
            base = Path(bpy.utils.user_resource("CONFIG", path="momask_blender", create=True))
    path = base.joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path
