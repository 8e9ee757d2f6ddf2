"""The add-on's bpy-free install modules, loaded without Blender.

``momask_blender/__init__.py`` imports bpy, which plain Python has not; the install modules need no
bpy, so they are loaded under a stand-in package that has the add-on's folder as its path but never
runs its ``__init__``. Their relative imports (``..remote.client``) resolve inside it as in Blender.
"""

from __future__ import annotations

import importlib
import sys
import types
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
PACKAGE = "_momask_addon_without_bpy"


def load(name: str) -> types.ModuleType:
    """``load("install.environment")``: that module of the add-on, imported without bpy."""
    if PACKAGE not in sys.modules:
        package = types.ModuleType(PACKAGE)
        package.__path__ = [str(REPO / "momask_blender")]
        sys.modules[PACKAGE] = package
    return importlib.import_module(f"{PACKAGE}.{name}")
