"""``python -m backend doctor``: is this Python able to run MoMask, and if not, what to do.

Each check is ``{name, ok, detail, fix}``; ``optional`` checks never make the whole diagnosis fail.
The add-on's "Check backend" button runs the same checks through the service (``diagnose``) and shows
them one per line. A check never raises: a broken install is exactly what it must describe.
"""

from __future__ import annotations

import importlib
import json
import platform
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

MIN_PYTHON = (3, 10)
SETUP_FIX = "Run `python build.py setup`, or point the add-on preferences at the backend's Python."


def check(name: str, ok: bool, detail: str, fix: str = "", optional: bool = False) -> dict[str, Any]:
    return {"name": name, "ok": bool(ok), "detail": detail, "fix": "" if ok else fix, "optional": optional}


def _guarded(name: str, fn: Callable[[], dict[str, Any] | list[dict[str, Any]]]) -> list[dict[str, Any]]:
    try:
        out = fn()
    except Exception as exc:  # noqa: BLE001 - a crashing check is itself the diagnosis
        fix = getattr(exc, "fix", "") or SETUP_FIX
        detail = getattr(exc, "problem", "") or f"{type(exc).__name__}: {exc}"
        return [check(name, False, detail, fix)]
    return out if isinstance(out, list) else [out]


def _version_of(module: str) -> str:
    imported = importlib.import_module(module)
    return str(getattr(imported, "__version__", "unknown version"))


# --- facts the service's hello also reports ---------------------------------------------------------

def torch_version() -> str | None:
    try:
        return _version_of("torch")
    except Exception:  # noqa: BLE001 - an absent or broken torch reads as None
        return None


def usable_devices() -> list[str]:
    """``cpu`` plus every CUDA GPU (with name and memory) and Apple MPS that torch can use."""
    import torch

    devices = ["cpu"]
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(i)
            devices.append(f"cuda:{i} ({props.name}, {props.total_memory / 2**30:.0f} GiB)")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        devices.append("mps")
    return devices


def resolve_device(requested: str) -> str | None:
    """What ``auto`` (or a named device) means on this machine; None when it is not usable here."""
    try:
        import torch
    except Exception:  # noqa: BLE001
        return None
    cuda = torch.cuda.is_available()
    mps = getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    if requested == "auto":
        return "cuda" if cuda else "mps" if mps else "cpu"
    if requested == "cpu" or (requested.startswith("cuda") and cuda) or (requested == "mps" and mps):
        return requested
    return None


def weights_status(weights: Path | str | None, dataset: str = "t2m") -> dict[str, Any]:
    """``found`` (every required file present), ``missing`` (their paths), ``files`` {path: present}."""
    if weights is None:
        return {"found": False, "missing": [], "files": {}}
    from backend.weights.checkpoints import WeightsLayout

    layout = WeightsLayout(Path(weights).expanduser(), dataset)
    files = {str(p): p.is_file() for p in layout.required_files()}
    return {"found": all(files.values()), "missing": [p for p, ok in files.items() if not ok], "files": files,
            "length_estimator": layout.length_checkpoint.is_file()}


def clip_status(clip: Path | str | None, weights: Path | str | None) -> dict[str, Any]:
    """Which CLIP file would be loaded (explicit → <weights>/clip → ~/.cache/clip)."""
    try:
        from backend.models.text_encoder import find_clip_file

        path = find_clip_file(Path(clip) if clip else None, Path(weights) if weights else None)
    except Exception as exc:  # noqa: BLE001
        return {"path": str(clip) if clip else None, "found": False,
                "problem": getattr(exc, "problem", str(exc)), "fix": getattr(exc, "fix", SETUP_FIX)}
    return {"path": str(path), "found": True}


# --- the checks ------------------------------------------------------------------------------------

def _python() -> dict[str, Any]:
    ok = sys.version_info[:2] >= MIN_PYTHON
    return check("Python", ok, f"{platform.python_version()} at {sys.executable}",
                 f"The backend needs Python {'.'.join(map(str, MIN_PYTHON))} or newer. {SETUP_FIX}")


def _torch(device: str) -> list[dict[str, Any]]:
    version = _version_of("torch")
    out = [check("PyTorch", True, f"torch {version}")]
    devices = usable_devices()
    resolved = resolve_device(device)
    wanted = f"'{device}' → {resolved}" if device == "auto" else f"'{device}'"
    if resolved is None:
        fix = ("Choose 'auto' or 'cpu' as the device, or install a CUDA build of PyTorch for this GPU "
               "(https://pytorch.org/get-started/locally/).")
        seen = ", ".join(devices)
        out.append(check("Device", False, f"{wanted} is not usable; this torch sees: {seen}", fix))
    else:
        out.append(check("Device", True, f"{wanted}; usable: {', '.join(devices)}"))
    return out


def _module(name: str, label: str) -> dict[str, Any]:
    return check(label, True, f"{name} {_version_of(name)}")


def _clip_package() -> dict[str, Any]:
    from backend.models.text_encoder import import_clip

    clip = import_clip()
    where = Path(getattr(clip, "__file__", "") or "?").parent
    torchvision = sys.modules.get("torchvision")
    stand_in = torchvision is None or getattr(torchvision, "__momask_stand_in__", False)
    note = " (no torchvision: text encoder only, as intended)" if stand_in else ""
    return check("CLIP package", True, f"openai clip at {where}{note}")


def _weights(weights: Path | str | None, dataset: str) -> list[dict[str, Any]]:
    fix = ("Press Install Weights (or From File...) in the add-on preferences, or set the weights folder "
           "there, or install them with `python build.py weights`.")
    if weights is None:
        return [check("Weights folder", False, "No weights folder is configured.", fix)]
    root = Path(weights).expanduser()
    if not root.is_dir():
        return [check("Weights folder", False, f"{root} does not exist.", fix)]
    status = weights_status(root, dataset)
    out = [check("Weights folder", True, f"{root} ({dataset})")]
    for path, present in status["files"].items():
        rel = Path(path).relative_to(root)
        out.append(check(f"Weights: {rel}", present, "found" if present else "missing",
                         f"The file {path} is missing; re-install the official checkpoints with Install "
                         "Weights in the add-on preferences, or `python build.py weights`."))
    out.append(check("Length estimator", status["length_estimator"],
                     "found" if status["length_estimator"] else
                     "not found: durations must be given (no 'auto' length)",
                     "Optional. The HumanML3D length estimator comes with the official t2m checkpoints.",
                     optional=True))
    return out


def _clip_file(clip: Path | str | None, weights: Path | str | None) -> dict[str, Any]:
    status = clip_status(clip, weights)
    if status["found"]:
        return check("CLIP weights", True, status["path"])
    return check("CLIP weights", False, status["problem"], status["fix"])


def diagnose(weights: Path | str | None, clip: Path | str | None = None, device: str = "auto",
             dataset: str = "t2m") -> dict[str, Any]:
    """Every check, in the order a user would fix them, plus a summary."""
    checks = [_python()]
    checks += _guarded("PyTorch", lambda: _torch(device))
    torch_ok = any(c["name"] == "PyTorch" and c["ok"] for c in checks)
    checks += _guarded("NumPy", lambda: _module("numpy", "NumPy"))
    checks += _guarded("SciPy", lambda: _module("scipy", "SciPy"))
    if torch_ok:
        checks += _guarded("CLIP package", _clip_package)
        checks += _guarded("Weights", lambda: _weights(weights, dataset))
        checks += _guarded("CLIP weights", lambda: _clip_file(clip, weights))
    else:
        for name in ("CLIP package", "Weights", "CLIP weights"):
            checks.append(check(name, False, "not checked: PyTorch is not usable", "Fix PyTorch first."))
    return {
        "ok": all(c["ok"] or c["optional"] for c in checks),
        "checks": checks,
        "python": platform.python_version(),
        "executable": sys.executable,
        "torch": torch_version(),
        "device": {"requested": device, "resolved": resolve_device(device) if torch_ok else None},
        "dataset": dataset,
        "weights": str(weights) if weights else None,
        "clip": clip_status(clip, weights).get("path") if torch_ok else None,
    }


def format_report(report: dict[str, Any]) -> str:
    lines = []
    for item in report["checks"]:
        mark = " OK " if item["ok"] else ("warn" if item["optional"] else "FAIL")
        lines.append(f"[{mark}] {item['name']}: {item['detail']}")
        if item["fix"]:
            lines.append(f"       Fix: {item['fix']}")
    verdict = "Ready to generate." if report["ok"] else "Not ready: fix the FAIL lines above."
    return "\n".join([*lines, "", verdict])


def main(args: Any) -> int:
    """``python -m backend doctor [--weights DIR] [--clip FILE] [--device D] [--dataset D] [--json]``."""
    report = diagnose(getattr(args, "weights", None), getattr(args, "clip", None),
                      getattr(args, "device", None) or "auto", getattr(args, "dataset", None) or "t2m")
    if getattr(args, "json", False):
        print(json.dumps(report, indent=2))
    else:
        print(format_report(report))
    return 0 if report["ok"] else 1
