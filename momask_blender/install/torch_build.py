"""Which torch build Install Backend installs, and why (docs/install.md, "Install Backend").

A pure choice (stdlib, no bpy) from what the machine is: its operating system and processor
(``platform.system()``, ``platform.machine()``), the NVIDIA driver version (``nvidia-smi``, or None
without one), the Python the environment is made from, and the user's override. Each answer carries
the reason the preferences show ("CUDA 12.8: NVIDIA driver 572.16 supports it"), or, when no build
fits, the problem and the fix. The torch version itself is pinned in ``requirements/install.txt``;
this module only picks the index that serves the matching build:

* Linux and Windows with an NVIDIA driver: the newest CUDA build the driver runs (each CUDA build
  needs a minimum driver, :data:`CUDA_BUILDS`), from ``download.pytorch.org/whl/<tag>``;
* a driver older than the oldest CUDA build needs, or no driver: the CPU build, from the CPU index;
* macOS on Apple Silicon: PyPI's build, which runs on the GPU through MPS; Intel Macs have no build of
  this torch (PyTorch stopped publishing them after 2.2).
"""

from __future__ import annotations

import dataclasses
import os
import re
import subprocess
from collections.abc import Callable

PYPI_INDEX = "https://pypi.org/simple"
TORCH_INDEX_BASE = "https://download.pytorch.org/whl"


@dataclasses.dataclass(frozen=True)
class CudaBuild:
    tag: str  # the index's name, e.g. "cu128"
    cuda: str  # "12.8"
    linux_driver: tuple[int, ...]  # the oldest driver that runs it
    windows_driver: tuple[int, ...]
    aarch64: bool  # also built for 64-bit ARM Linux (Grace, Jetson Thor)


#: The CUDA builds of the pinned torch, newest first, with the driver each needs (NVIDIA's CUDA
#: toolkit release notes, "minimum required driver version").
CUDA_BUILDS: tuple[CudaBuild, ...] = (
    CudaBuild("cu130", "13.0", (580, 65, 6), (580, 88), True),
    CudaBuild("cu128", "12.8", (570, 26), (570, 65), True),
    CudaBuild("cu126", "12.6", (560, 28, 3), (560, 76), False),
)

#: The override choices of the preferences (key, label, description); "auto" decides by the machine.
OVERRIDES: tuple[tuple[str, str, str], ...] = (
    ("auto", "Auto", "The build that fits this computer (the preferences say which and why)"),
    ("cpu", "CPU", "The CPU build: works everywhere, generation is slower"),
    *((b.tag, f"CUDA {b.cuda}", f"NVIDIA GPUs, needs driver {'.'.join(map(str, b.linux_driver))}+ "
                                f"(Linux) or {'.'.join(map(str, b.windows_driver))}+ (Windows)")
      for b in CUDA_BUILDS),
    ("default", "PyPI Default", "PyPI's own build (on Apple Silicon it runs on the GPU through MPS)"),
)


@dataclasses.dataclass(frozen=True)
class TorchBuild:
    """A torch build: which index serves it and what it runs on."""

    key: str  # "cpu", "cu128", "default"
    label: str  # "CUDA 12.8", "CPU", "Apple Silicon (MPS)"
    index_url: str  # where pip finds torch
    device: str  # what the backend will run on: "cuda", "mps" or "cpu"


@dataclasses.dataclass(frozen=True)
class Choice:
    """The build for this machine and the reason shown; ``build`` is None when none fits (then
    ``reason`` is the problem and ``fix`` what to do)."""

    build: TorchBuild | None
    reason: str
    fix: str = ""


def cpu_build() -> TorchBuild:
    return TorchBuild("cpu", "CPU", f"{TORCH_INDEX_BASE}/cpu", "cpu")


def cuda_build(cuda: CudaBuild) -> TorchBuild:
    return TorchBuild(cuda.tag, f"CUDA {cuda.cuda}", f"{TORCH_INDEX_BASE}/{cuda.tag}", "cuda")


def parse_version(text: str | None) -> tuple[int, ...] | None:
    """``"572.16"`` -> ``(572, 16)``; None for no driver or text that is not a version."""
    if not text:
        return None
    match = re.match(r"\s*(\d+(?:\.\d+)*)", text)
    return tuple(int(p) for p in match.group(1).split(".")) if match else None


def shown(version: tuple[int, ...]) -> str:
    return ".".join(str(p) for p in version)


def choose(system: str, machine: str, driver: str | None, python: tuple[int, int],
           override: str = "auto") -> Choice:
    """The torch build for a machine: ``system`` as ``platform.system()`` ("Linux", "Windows",
    "Darwin"), ``machine`` as ``platform.machine()`` ("x86_64", "AMD64", "arm64", "aarch64"),
    ``driver`` the NVIDIA driver version ``nvidia-smi`` reports (None: no NVIDIA driver), ``python``
    the environment's version, ``override`` one of :data:`OVERRIDES`' keys."""
    arch = machine.lower()
    arm = arch in ("arm64", "aarch64", "armv8", "armv8l")
    x86 = arch in ("x86_64", "amd64", "x64")
    py = f"{python[0]}.{python[1]}"
    if system == "Darwin":
        return _mac(arm, override)
    if system not in ("Linux", "Windows"):
        return Choice(None, f"PyTorch publishes no builds for {system}.",
                      "Run the backend on a Linux, Windows or macOS computer and use it from here as a "
                      "Remote Backend (docs/install.md).")
    if not (x86 or (arm and system == "Linux") or (arm and system == "Windows" and python >= (3, 12))):
        return Choice(None, f"PyTorch publishes no build for {system} on {machine} with Python {py}.",
                      "Pick a Python 3.12 or newer (Windows on ARM), or use a Remote Backend "
                      "(docs/install.md).")
    if override == "cpu":
        return Choice(cpu_build(), "CPU: chosen in the preferences (Torch Build).")
    if override == "default":
        device = "cuda" if x86 and system == "Linux" else "cpu"
        return Choice(TorchBuild("default", "PyPI Default", PYPI_INDEX, device),
                      "PyPI's default build: chosen in the preferences (Torch Build).")
    version = parse_version(driver)
    usable = [b for b in CUDA_BUILDS if (not arm or (b.aarch64 and system == "Linux"))]
    if override != "auto":
        forced = next((b for b in CUDA_BUILDS if b.tag == override), None)
        if forced is None:
            return Choice(None, f"Unknown Torch Build '{override}'.", "Choose Auto in the preferences.")
        if forced not in usable:
            return Choice(None, f"There is no CUDA {forced.cuda} build of torch for {system} on {machine}.",
                          "Choose Auto or CPU as the Torch Build.")
        note = "" if version is not None else " (no NVIDIA driver was found: it will run on the CPU)"
        return Choice(cuda_build(forced),
                      f"CUDA {forced.cuda}: chosen in the preferences (Torch Build){note}.")
    if version is None:
        why = "no NVIDIA driver was found (nvidia-smi)" if not driver else f"nvidia-smi said '{driver}'"
        return Choice(cpu_build(), f"CPU: {why}.")
    if not usable:
        return Choice(cpu_build(), f"CPU: there is no CUDA build of torch for {system} on {machine}.")
    need = (lambda b: b.windows_driver) if system == "Windows" else (lambda b: b.linux_driver)
    for build in usable:
        if version >= need(build):
            return Choice(cuda_build(build), f"CUDA {build.cuda}: NVIDIA driver {shown(version)} runs it "
                                             f"(needs {shown(need(build))}+).")
    oldest = usable[-1]
    return Choice(cpu_build(),
                  f"CPU: NVIDIA driver {shown(version)} is older than {shown(need(oldest))}, which the "
                  f"oldest CUDA build (CUDA {oldest.cuda}) needs. Update the NVIDIA driver and Install "
                  "Backend again to use the GPU.")


def _mac(arm: bool, override: str) -> Choice:
    if not arm:
        return Choice(None, "PyTorch publishes no builds of this torch for Intel Macs (the last was 2.2).",
                      "Use a Remote Backend on a Linux or Windows computer, or an Apple Silicon Mac "
                      "(docs/install.md).")
    mps = TorchBuild("default", "Apple Silicon (MPS)", PYPI_INDEX, "mps")
    if override == "cpu":
        return Choice(TorchBuild("default", "Apple Silicon (CPU chosen)", PYPI_INDEX, "cpu"),
                      "PyPI's macOS build (the same build runs on the CPU; set Device to CPU).")
    if override not in ("auto", "default"):
        return Choice(None, "There are no CUDA builds of torch for macOS.",
                      "Choose Auto as the Torch Build: on Apple Silicon, torch runs on the GPU through MPS.")
    return Choice(mps, "Apple Silicon (MPS): PyPI's macOS arm64 build runs on the GPU through Metal.")


def nvidia_driver(run: Callable[..., subprocess.CompletedProcess] = subprocess.run,
                  timeout: float = 10.0) -> str | None:
    """The NVIDIA driver version ``nvidia-smi`` reports (the first GPU's), or None when there is no
    ``nvidia-smi`` or it fails (no driver loaded). Takes up to a second: never call it from ``draw``."""
    flags = getattr(subprocess, "CREATE_NO_WINDOW", 0) if os.name == "nt" else 0
    try:
        proc = run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                   capture_output=True, text=True, timeout=timeout, creationflags=flags)
    except (OSError, subprocess.SubprocessError):
        return None
    lines = [line.strip() for line in (proc.stdout or "").splitlines() if line.strip()]
    if proc.returncode != 0 or not lines:
        return None
    return lines[0]
