"""Reading the official ``opt.txt`` files, with the official ``get_opt`` value rules.

Each released checkpoint folder carries the options it was trained with, written one ``key: value``
per line between two banner lines. The official loader turns values back into Python objects with a
few regular expressions rather than ``ast.literal_eval``; we keep exactly those rules so that every
field has the type the model constructors saw (docs/model.md §8):

* ``True`` / ``False`` → bool;
* ``digits.digits`` (optional sign) → float, so ``0.0002`` is a float but ``2e-4`` stays a string;
* ``digits`` (optional sign) → int;
* anything else stays a string: ``vq_norm: None`` is the STRING ``'None'``, ``[50000]`` a string.

After parsing, the dataset facts get_opt adds (joints, feature size, lengths) are filled in.
"""

from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from backend.portable.errors import CheckpointError
from backend.motion import skeleton as sk

_BANNERS = ("------------ Options -------------", "-------------- End ----------------")
_FLOAT = re.compile(r"^[0-9]+\.[0-9]+$")

#: What get_opt adds per dataset: (joints_num, dim_pose).
DATASET_FACTS = {name: (sk.NUM_JOINTS[name], sk.FEATURE_DIM[name]) for name in sk.NUM_JOINTS}


def parse_value(text: str) -> Any:
    """One opt.txt value with the official rules (see module docstring)."""
    if text in ("True", "False"):
        return text == "True"
    unsigned = text.strip().lstrip("-").lstrip("+")
    if _FLOAT.match(unsigned):
        return float(text)
    if unsigned.isdigit():
        return int(text)
    return str(text)


def parse_opt_text(text: str, source: str = "opt.txt") -> dict[str, Any]:
    """Parse the body of an opt.txt into a dict (no dataset facts added)."""
    values: dict[str, Any] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped in _BANNERS:
            continue
        key, sep, value = line.partition(": ")
        if not sep:
            raise CheckpointError(
                f"{source} line {number} is not of the form 'key: value': {line!r}.",
                "Re-install the checkpoints with `python build.py weights`.",
            )
        values[key.strip()] = parse_value(value)
    return values


def read_opt(path: Path, dataset: str | None = None) -> SimpleNamespace:
    """Read ``path`` (an opt.txt) like the official ``get_opt`` and return a namespace.

    Adds what get_opt adds: ``joints_num``/``dim_pose`` for the dataset (from ``dataset`` or the
    file's ``dataset_name``), ``max_motion_length=196``, ``max_motion_frame=196``,
    ``max_motion_token=55``, ``unit_length`` (default 4), ``dim_word=300``,
    ``num_classes=200 // unit_length``, ``is_train=False``, ``which_epoch='finest'``, and
    ``opt_path`` (where it came from, for error messages).
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CheckpointError(f"Missing options file {path}.",
                              "Run `python build.py weights` to install the checkpoints.") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"Cannot read options file {path}: {exc}.",
                              "Re-install the checkpoints with `python build.py weights`.") from None
    values = parse_opt_text(text, source=str(path))
    name = dataset or values.get("dataset_name", "t2m")
    if name not in DATASET_FACTS:
        raise CheckpointError(f"{path} names an unknown dataset {name!r} (known: t2m, kit).",
                              "Use the official HumanML3D (t2m) or KIT checkpoints.")
    values["dataset_name"] = name
    values["joints_num"], values["dim_pose"] = DATASET_FACTS[name]
    values["max_motion_length"] = sk.MAX_MOTION_FRAMES
    values["max_motion_frame"] = sk.MAX_MOTION_FRAMES
    values["max_motion_token"] = 55
    values.setdefault("unit_length", 4)
    values["dim_word"] = 300
    values["num_classes"] = 200 // values["unit_length"]
    values["is_train"] = False
    values["which_epoch"] = "finest"
    values["opt_path"] = str(path)
    return SimpleNamespace(**values)


def format_opt(values: dict[str, Any]) -> str:
    """Write options in the official opt.txt format (sorted keys, banners), e.g. for test weights."""
    lines = [_BANNERS[0]]
    lines += [f"{key}: {values[key]}" for key in sorted(values)]
    lines.append(_BANNERS[1])
    return "\n".join(lines) + "\n"
