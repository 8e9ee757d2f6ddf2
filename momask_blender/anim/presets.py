"""Bone-mapping presets: ``{role: bone}`` as JSON files in the add-on's user directory.

One file per preset (``<user dir>/mapping_presets/<name>.json``), so presets can be shared by
copying a file. Written atomically (temp file + rename) so a crash never leaves half a preset.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from ..user_folder import user_dir

FORMAT = "momask-bone-mapping"


def presets_dir() -> Path:
    return user_dir("mapping_presets")


def _file_name(name: str) -> str:
    safe = re.sub(r"[^\w\- .]+", "_", name.strip()).strip(" .") or "preset"
    return safe[:80] + ".json"


def list_presets() -> list[str]:
    """Names of the saved presets, sorted."""
    names = []
    for path in sorted(presets_dir().glob("*.json")):
        try:
            names.append(str(json.loads(path.read_text(encoding="utf-8")).get("name") or path.stem))
        except (OSError, ValueError, AttributeError):
            continue
    return names


def _path_of(name: str) -> Path | None:
    for path in presets_dir().glob("*.json"):
        try:
            if json.loads(path.read_text(encoding="utf-8")).get("name") == name:
                return path
        except (OSError, ValueError, AttributeError):
            continue
    path = presets_dir() / _file_name(name)
    return path if path.exists() else None


def save_preset(name: str, bones: dict[str, str]) -> Path:
    """Save ``{role: bone}`` as preset ``name`` (replacing one with that name)."""
    path = _path_of(name) or presets_dir() / _file_name(name)
    data = {"format": FORMAT, "version": 1, "name": name, "bones": dict(sorted(bones.items()))}
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False), encoding="utf-8")
    os.replace(tmp, path)
    return path


def load_preset(name: str) -> dict[str, str]:
    """The ``{role: bone}`` of preset ``name``; raises ``KeyError`` naming what exists."""
    path = _path_of(name)
    if path is None:
        raise KeyError(
            f"No bone-mapping preset named '{name}' (have: {', '.join(list_presets()) or 'none'})."
        )
    data = json.loads(path.read_text(encoding="utf-8"))
    return {str(role): str(bone) for role, bone in (data.get("bones") or {}).items()}


def delete_preset(name: str) -> bool:
    path = _path_of(name)
    if path is None:
        return False
    path.unlink()
    return True
