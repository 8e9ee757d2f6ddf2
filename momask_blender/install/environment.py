"""The backend's own Python environment, built by Install Backend (docs/install.md, "Install Backend").

Stdlib only, no bpy, no threads of its own: ``install/backend_env.py`` runs a :class:`Builder` on a
worker thread. An install never touches the environment in use until it is complete:

1. a stale staging folder (an install that was interrupted, or Blender that was killed) is removed;
2. ``<python> -m venv`` (with ensurepip) makes ``backend-env.staging`` beside the final folder;
3. pip installs the pins of ``requirements/install.txt`` (pip itself, then torch from the index of the
   build :mod:`torch_build` chose) and ``requirements/backend.txt`` (numpy, scipy, openai-clip, ...);
4. each pinned package is checked in the new environment: its version, and its module imports (torch,
   numpy and scipy are imported for real);
5. a marker (``momask-env.json``: build, pins, Python) is written, and the staging folder is renamed to
   ``backend-env``. Only a folder with that marker is ever used (:func:`installed_python`).

Repair makes a staging copy of the environment (hard links, so it costs no space), reinstalls the
packages whose check fails, checks them all again and swaps the copy in. Cancel kills pip's whole
process group; the staging folder is then removed. pip runs isolated from the user's pip
configuration (``PIP_CONFIG_FILE`` = the null device, ``--isolated``), with its download cache in
the add-on's user folder, and reports bytes with ``--progress-bar raw`` (pip 24.1+, hence the pip pin
is installed first). Every line pip prints goes to the install log.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import errno
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, Any

from ..remote.client import BackendError
from . import torch_build

ENV_FOLDER = "backend-env"
STAGING_SUFFIX = ".staging"
OLD_SUFFIX = ".old"
MARKER = "momask-env.json"
#: ``backend-env.removing-<pid>``: a folder Remove renamed aside to delete; one Blender did not finish
#: deleting (killed, a file in use) is deleted by the next install.
REMOVING_INFIX = ".removing-"
#: The Pythons the pins install on: numpy 2.4 and scipy 1.17 need 3.11+; 3.14 is untested.
SUPPORTED_PYTHON = ((3, 11), (3, 13))
#: The pin files, relative to the folder holding ``backend/`` (the repository, or the extension: the
#: zip ships them, build.py ``SHIPPED_REQUIREMENTS``).
REQUIREMENT_FILES = ("requirements/install.txt", "requirements/backend.txt")
#: Free space an install needs beside the pip cache, by what the build runs on (an installed CPU torch
#: is about 1 GB, a CUDA one about 5 GB with its libraries), in MB. Checked before anything is written.
SPACE_NEEDED_MB = {"cpu": 2500, "mps": 2000, "cuda": 9000}
#: Environment variables that replace the package indexes: a mirror, or a test's loopback index. The
#: torch one replaces ``https://download.pytorch.org/whl`` (the build's tag is appended).
PYPI_INDEX_ENV = "MOMASK_PYPI_INDEX"
TORCH_INDEX_ENV = "MOMASK_TORCH_INDEX"

#: What the check imports for each pinned distribution; True: really import it (the backend imports
#: it at start), False: find it only (clip imports torchvision's transforms, which the backend replaces).
MODULES = {"torch": ("torch", True), "numpy": ("numpy", True), "scipy": ("scipy", True),
           "openai-clip": ("clip", False), "pillow": ("PIL", False), "setuptools": ("pkg_resources", False),
           "pip": ("pip", False)}

#: How much lower than Blender pip and the checks run (POSIX niceness; Windows: below normal).
CHILD_NICENESS = 10

_CHECK = r"""
import importlib, importlib.metadata as md, importlib.util, json, sys
bad = []
for dist, want, module, really in json.loads(sys.argv[1]):
    try:
        have = md.version(dist)
    except md.PackageNotFoundError:
        bad.append([dist, "is not installed"])
        continue
    if have.split("+")[0] != want:
        bad.append([dist, "is version %s, not %s" % (have, want)])
        continue
    try:
        if really:
            importlib.import_module(module)
        elif importlib.util.find_spec(module) is None:
            raise ImportError("no module named %r" % module)
    except Exception as exc:
        bad.append([dist, "does not import (%s: %s)" % (type(exc).__name__, exc)])
print("MOMASK-CHECK " + json.dumps(bad))
"""

_PROBE = ("import sys, venv, ensurepip; print('MOMASK-PROBE %d.%d.%d %s' % (sys.version_info[:3] + "
          "(sys.platform,)))")


class Cancelled(Exception):
    """The user pressed Cancel; nothing was installed."""


@dataclasses.dataclass(frozen=True)
class Pin:
    name: str  # the distribution, normalised: "openai-clip"
    version: str

    @property
    def spec(self) -> str:
        return f"{self.name}=={self.version}"


def env_python(env_dir: Path) -> Path:
    return env_dir / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def staging_dir(env_dir: Path) -> Path:
    return env_dir.with_name(env_dir.name + STAGING_SUFFIX)


def old_dir(env_dir: Path) -> Path:
    """Where the installed environment is moved while the new one is renamed into place."""
    return env_dir.with_name(env_dir.name + OLD_SUFFIX)


def restore_old(env_dir: Path) -> bool:
    """Move ``backend-env.old`` back to ``backend-env`` when that is missing (a swap that failed or
    was interrupted between its renames); True when it did."""
    old = old_dir(env_dir)
    if env_dir.exists() or not old.exists():
        return False
    with contextlib.suppress(OSError):
        os.replace(old, env_dir)
    return env_dir.exists()


def read_marker(env_dir: Path) -> dict[str, Any] | None:
    """The marker of a complete environment, or None (no environment, or one never finished)."""
    try:
        data = json.loads((env_dir / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def installed_python(env_dir: Path) -> Path | None:
    """The python of the environment Install Backend finished in ``env_dir``; None when there is none
    (a staging folder, an interrupted install, a removed one: never used), or when it cannot run: not
    executable, or the Python it was made from is gone (:func:`gone_base_python`)."""
    python = env_python(env_dir)
    usable = python.is_file() and os.access(python, os.X_OK) and gone_base_python(env_dir) is None
    return python if read_marker(env_dir) is not None and usable else None


def gone_base_python(env_dir: Path) -> str | None:
    """The Python the environment was made from, as its marker names it, when that file no longer
    exists (Blender moved or upgraded: a venv cannot run without it); None otherwise."""
    base = str((read_marker(env_dir) or {}).get("base_python") or "")
    return base if base and not Path(base).is_file() else None


def read_pins(root: Path) -> list[Pin]:
    """Every ``name==version`` of the requirement files, in install order (pip, torch, the rest)."""
    pins = []
    for rel in REQUIREMENT_FILES:
        path = root / rel
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as err:
            raise BackendError("not_installed", f"The backend's requirement file {path} is missing ({err}).",
                               "Reinstall the MoMask extension from its zip (it ships requirements/).") \
                from err
        for line in text.splitlines():
            line = line.split("#", 1)[0].strip()
            if not line:
                continue
            name, sep, version = line.partition("==")
            if not sep or not version.strip():
                raise BackendError("bad_input", f"{path}: '{line}' is not pinned as name==version.",
                                   "Reinstall the MoMask extension from its zip.")
            pins.append(Pin(re.sub(r"[-_.]+", "-", name.strip()).lower(), version.strip()))
    return pins


def probe_python(python: str | Path, timeout: float = 60.0) -> tuple[tuple[int, int, int], str]:
    """``((3, 11, 9), "linux")`` of an interpreter that can make environments (venv + ensurepip), or a
    BackendError saying why it cannot be used."""
    fix = ("Leave 'Install With Python' empty to use Blender's own Python, or pick a python "
           f"{shown_range()} that has the venv module (python.org installers have it; Debian/Ubuntu: "
           "apt install python3-venv).")
    path = Path(python)
    if not path.is_file():
        raise BackendError("bad_input", f"The Python {python} does not exist.", fix)
    try:
        proc = subprocess.run([str(path), "-I", "-c", _PROBE], capture_output=True, text=True,
                              timeout=timeout, env=clean_env(), creationflags=_no_window())
    except (OSError, subprocess.SubprocessError) as err:
        raise BackendError("bad_input", f"The Python {python} does not run ({err}).", fix) from err
    match = re.search(r"MOMASK-PROBE (\d+)\.(\d+)\.(\d+) (\S+)", proc.stdout or "")
    if match is None:
        tail = (proc.stderr or proc.stdout or "").strip().splitlines()[-1:] or ["no output"]
        raise BackendError("bad_input", f"The Python {python} cannot make a virtual environment "
                                        f"(venv or ensurepip is missing: {tail[0]}).", fix)
    version = (int(match.group(1)), int(match.group(2)), int(match.group(3)))
    if not SUPPORTED_PYTHON[0] <= version[:2] <= SUPPORTED_PYTHON[1]:
        raise BackendError("bad_input", f"The Python {python} is version {'.'.join(map(str, version))}; the "
                                        f"backend's packages need Python {shown_range()}.", fix)
    return version, match.group(4)


def shown_range() -> str:
    (a, b), (c, d) = SUPPORTED_PYTHON
    return f"{a}.{b} to {c}.{d}"


def clean_env() -> dict[str, str]:
    """The environment pip and the new Python run in: none of Blender's interpreter settings, none of
    the user's pip settings (``--isolated`` covers the rest), UTF-8 output, unbuffered."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONHOME", "PYTHONPATH", "PYTHONSTARTUP") and not k.startswith("PIP_")}
    env.update(PYTHONUNBUFFERED="1", PYTHONIOENCODING="utf-8", PYTHONUTF8="1", PYTHONNOUSERSITE="1",
               PIP_CONFIG_FILE=os.devnull)
    return env


def _no_window() -> int:
    return getattr(subprocess, "CREATE_NO_WINDOW", 0) if os.name == "nt" else 0


def index_urls(build: torch_build.TorchBuild) -> tuple[str, str]:
    """(PyPI's index, torch's index) for ``build``, with the mirrors of the environment applied."""
    pypi = os.environ.get(PYPI_INDEX_ENV, "").rstrip("/") or torch_build.PYPI_INDEX
    torch = build.index_url
    mirror = os.environ.get(TORCH_INDEX_ENV, "").rstrip("/")
    if build.index_url == torch_build.PYPI_INDEX:
        torch = pypi
    elif mirror:
        torch = f"{mirror}/{build.key}"
    return pypi, torch


@dataclasses.dataclass
class Progress:
    """Where an install is, for the preferences: the stage (k of n), the packages pip has collected
    and finished in it, and the bytes of the file downloading. ``fraction`` never goes back."""

    stage: str = "Starting"
    stage_index: int = 0
    stages: int = 1
    packages_done: int = 0
    packages_seen: int = 0
    filename: str = ""
    bytes_done: int = 0
    bytes_total: int = 0
    installing: bool = False
    fraction: float = 0.0

    @property
    def text(self) -> str:
        head = f"{self.stage} (step {self.stage_index + 1} of {self.stages})"
        if self.installing:
            return f"{head}: unpacking {self.packages_seen} packages"
        if self.filename and self.bytes_total:
            number = min(self.packages_done + 1, max(self.packages_seen, 1))
            return (f"{head}: {self.filename} {_amount(self.bytes_done)} / {_amount(self.bytes_total)}, "
                    f"package {number} of {self.packages_seen}")
        if self.packages_seen:
            return f"{head}: {self.packages_done} of {self.packages_seen} packages"
        return head


@dataclasses.dataclass
class Plan:
    """One install: where, from which Python, which torch build, which pins and indexes."""

    env_dir: Path
    base_python: str
    build: torch_build.TorchBuild
    pins: list[Pin]
    log_path: Path
    cache_dir: Path | None = None
    pypi_index: str = ""
    torch_index: str = ""

    def __post_init__(self) -> None:
        if not (self.pypi_index and self.torch_index):
            self.pypi_index, self.torch_index = index_urls(self.build)


#: Install stages and their share of the bar (the torch download dominates).
INSTALL_STAGES = (("Making the environment", 0.06), ("Updating pip", 0.04), ("Installing torch", 0.6),
                  ("Installing numpy, scipy, CLIP", 0.22), ("Checking the packages", 0.08))
REPAIR_STAGES = (("Copying the environment", 0.15), ("Checking the packages", 0.15),
                 ("Reinstalling what is broken", 0.55), ("Checking the packages", 0.15))


class Builder:
    """Runs the steps of one install or repair on the calling (worker) thread; :meth:`cancel` may be
    called from any thread and kills the pip running now."""

    def __init__(self, plan: Plan, on_progress: Callable[[Progress], None] = lambda p: None,
                 before_swap: Callable[[], None] = lambda: None) -> None:
        self.plan = plan
        self.on_progress = on_progress
        #: Called on this thread just before the new environment replaces the installed one: it stops
        #: a backend running from it (its files are in use: Windows cannot rename them, and on POSIX
        #: deleting them breaks its later imports). It may raise Cancelled.
        self.before_swap = before_swap
        self.progress = Progress()
        self.cancel_event = threading.Event()
        self._process: subprocess.Popen | None = None
        self._lock = threading.Lock()
        self._log: IO[str] | None = None
        self._stage_weights: Sequence[tuple[str, float]] = INSTALL_STAGES
        self.tail: list[str] = []  # pip's last lines, for the error message
        self.stage_started: list[tuple[str, float]] = []  # (stage, time.monotonic()) as each began

    # --- the two operations ---------------------------------------------------------------------

    def install(self) -> None:
        """Build a fresh environment in staging and rename it into place (replacing an older one)."""
        plan = self.plan
        staging = staging_dir(plan.env_dir)
        with self._logging("install"):
            self._stages(INSTALL_STAGES)
            self.remove_leftovers()
            self.check_space(plan.env_dir.parent, SPACE_NEEDED_MB.get(plan.build.device, 2500))
            self._stage(0)
            self._run([plan.base_python, "-m", "venv", str(staging)], "venv")
            python = env_python(staging)
            pins = {p.name: p for p in plan.pins}
            rest = [p for p in plan.pins if p.name not in ("pip", "torch")]
            self._stage(1)
            self._pip(python, [pins["pip"].spec] if "pip" in pins else [], plan.pypi_index, expect=1)
            self._stage(2)
            if "torch" in pins:
                self._pip(python, [pins["torch"].spec], plan.torch_index, expect=1)
            self._stage(3)
            self._pip(python, [p.spec for p in rest], plan.pypi_index, expect=len(rest))
            self._stage(4)
            bad = self.check(python)
            if bad:
                raise BackendError("not_installed", "The new environment failed its check: "
                                   + "; ".join(f"{d} {why}" for d, why in bad) + ".",
                                   f"See the install log ({plan.log_path}), then press Install Backend "
                                   "again.")
            self._finish(staging)

    def repair(self) -> list[str]:
        """Reinstall the packages of the installed environment whose check fails, in a staging copy
        swapped in when every check passes. Returns the packages reinstalled (empty: all were fine)."""
        plan = self.plan
        staging = staging_dir(plan.env_dir)
        with self._logging("repair"):
            self._stages(REPAIR_STAGES)
            if read_marker(plan.env_dir) is None:
                raise BackendError("not_installed", "There is no finished backend environment in "
                                   f"{plan.env_dir} to repair.", "Press Install Backend.")
            self.remove_leftovers()
            self._stage(0)
            self._write_log(f"copying {plan.env_dir} to {staging} (hard links)")
            try:
                shutil.copytree(plan.env_dir, staging, symlinks=True, copy_function=_link_or_copy)
            except OSError as err:
                raise os_error(err, plan.env_dir.parent) from err
            self._cancel_point()
            python = env_python(staging)
            self._stage(1)
            bad = self.check(python)
            broken = [d for d, _ in bad]
            for dist, why in bad:
                self._write_log(f"broken: {dist} {why}")
            self._stage(2)
            pins = {p.name: p for p in plan.pins}
            groups = ((["torch"], plan.torch_index), ([d for d in broken if d != "torch"], plan.pypi_index))
            for group, index in groups:
                specs = [pins[d].spec for d in group if d in broken and d in pins]
                if specs:
                    # reinstalled over the copy: pip unlinks the old files, so the installed
                    # environment (which shares them as hard links) keeps its own
                    self._pip(python, ["--force-reinstall", "--no-deps", *specs], index, expect=len(specs))
            if broken:  # a dependency of theirs may be gone too: pip fills in only what is missing
                self._pip(python, [p.spec for p in plan.pins if p.name not in ("pip", "torch")],
                          plan.pypi_index, expect=0)
            self._stage(3)
            bad = self.check(python)
            if bad:
                raise BackendError("not_installed", "The repaired environment still fails its check: "
                                   + "; ".join(f"{d} {why}" for d, why in bad) + ".",
                                   "Press Remove, then Install Backend (a fresh install).")
            self._finish(staging)
            return broken

    # --- steps ----------------------------------------------------------------------------------

    def remove_leftovers(self) -> None:
        """Remove a staging folder (an interrupted install) and an old environment left by a swap;
        an old environment with no environment in its place (a swap stopped between its two renames)
        is put back instead: it is the one that works."""
        env = self.plan.env_dir
        if restore_old(env):
            self._write_log(f"restored {env} from {old_dir(env)}, left by a swap that did not finish")
        removing = sorted(env.parent.glob(f"{env.name}*{REMOVING_INFIX}*")) if env.parent.is_dir() else []
        for path in (staging_dir(env), old_dir(env), *removing):
            if path.exists():
                self._write_log(f"removing {path}, left by an install that did not finish")
                remove_tree(path)

    def check_space(self, folder: Path, needed_mb: int) -> None:
        try:
            free = shutil.disk_usage(folder).free
        except OSError:
            return
        if free < needed_mb * 1e6:
            raise BackendError("not_installed", f"The disk holding {folder} has {free / 1e6:.0f} MB free; "
                               f"the backend ({self.plan.build.label}) needs about {needed_mb} MB.",
                               f"Free about {needed_mb} MB there, then press Install Backend again.")

    def check(self, python: Path) -> list[tuple[str, str]]:
        """(distribution, what is wrong) for each pin the environment fails; empty when all pass."""
        specs = [[p.name, p.version, *MODULES.get(p.name, (p.name.replace("-", "_"), False))]
                 for p in self.plan.pins]
        lines = self._run([str(python), "-I", "-c", _CHECK, json.dumps(specs)], "check")
        for line in reversed(lines):
            if line.startswith("MOMASK-CHECK "):
                return [tuple(x) for x in json.loads(line[len("MOMASK-CHECK "):])]
        raise BackendError("not_installed", "The new environment's Python did not answer its check.",
                           f"See the install log ({self.plan.log_path}).")

    def _finish(self, staging: Path) -> None:
        plan = self.plan
        marker = {"build": plan.build.key, "label": plan.build.label, "device": plan.build.device,
                  "index": plan.torch_index, "base_python": plan.base_python,
                  "pins": [p.spec for p in plan.pins],
                  "installed": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")}
        self._cancel_point()
        try:
            (staging / MARKER).write_text(json.dumps(marker, indent=1), encoding="utf-8")
            if plan.env_dir.exists():
                self.before_swap()
            old = old_dir(plan.env_dir)
            if plan.env_dir.exists():
                os.replace(plan.env_dir, old)
            os.replace(staging, plan.env_dir)
        except OSError as err:
            restore_old(plan.env_dir)  # the second rename failed: the installed one goes back in place
            raise os_error(err, plan.env_dir.parent) from err
        if old.exists():
            remove_tree(old)
        self.progress.fraction = 1.0
        self.stage_started.append(("done", time.monotonic()))
        self._write_log(f"installed {plan.env_dir} ({plan.build.label})")

    def _pip(self, python: Path, args: list[str], index: str, expect: int) -> None:
        if not args:
            return
        cmd = [str(python), "-I", "-m", "pip", "install", "--isolated", "--disable-pip-version-check",
               "--no-input", "--no-warn-script-location", "--timeout", "30", "--index-url", index,
               # no byte-compiling of every file at install (torch has thousands): Python compiles
               # what the backend imports, once, at its first start
               "--no-compile"]
        if self.plan.cache_dir is not None:
            cmd += ["--cache-dir", str(self.plan.cache_dir)]
        else:
            cmd += ["--no-cache-dir"]
        if args[0] != f"pip=={next((p.version for p in self.plan.pins if p.name == 'pip'), '')}":
            cmd += ["--progress-bar", "raw"]  # (the pip ensurepip brought may be older than 24.1)
        self._expect = expect
        self._run(cmd + args, "pip", index=index)

    def stage_seconds(self) -> dict[str, float]:
        """How long each stage took (for the log and the measurements)."""
        marks = self.stage_started
        return {f"{i + 1} {name}": round(marks[i + 1][1] - start, 2)
                for i, (name, start) in enumerate(marks[:-1])}

    def cancel(self) -> None:
        """Stop now: kill the running command with all it started (pip runs builds in children)."""
        self.cancel_event.set()
        with self._lock:
            process = self._process
        if process is not None and process.poll() is None:
            kill_tree(process)

    # --- running commands -----------------------------------------------------------------------

    def _run(self, cmd: list[str], kind: str, index: str = "") -> list[str]:
        """Run ``cmd``, each output line to the log and, for pip, to the progress; its lines. Raises
        Cancelled, or a BackendError with the problem and the fix read from its output."""
        self._cancel_point()
        self._write_log("$ " + " ".join(cmd))
        popen: dict[str, Any] = {"creationflags": _no_window()}
        if os.name == "nt":
            popen["creationflags"] |= (getattr(subprocess, "CREATE_NEW_PROCESS_GROUP", 0)
                                       | getattr(subprocess, "BELOW_NORMAL_PRIORITY_CLASS", 0))
        else:
            popen["start_new_session"] = True
        lines: list[str] = []
        try:
            process = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                       stdin=subprocess.DEVNULL, env=clean_env(), **popen)
        except OSError as err:
            raise BackendError("not_installed", f"Could not run {cmd[0]} ({err}).",
                               "Pick another Python in 'Install With Python', or leave it empty.") from err
        if os.name != "nt":
            # below Blender: unpacking torch and importing it must not take the cores from the UI
            # (what pip starts inherits it)
            with contextlib.suppress(OSError):
                niceness = min(19, os.getpriority(os.PRIO_PROCESS, 0) + CHILD_NICENESS)
                os.setpriority(os.PRIO_PROCESS, process.pid, niceness)
        with self._lock:
            self._process = process
        if self.cancel_event.is_set():
            kill_tree(process)
        try:
            assert process.stdout is not None
            for raw in process.stdout:
                line = raw.decode("utf-8", "replace").rstrip("\r\n")
                lines.append(line)
                if not line.startswith("Progress "):
                    self._write_log(line)
                if kind == "pip":
                    self._parse(line)
            code = process.wait()
        finally:
            with self._lock:
                self._process = None
        self.tail = lines[-30:]
        self._cancel_point()
        if code != 0:
            raise self._failure(kind, cmd, code, lines, index)
        return lines

    def _cancel_point(self) -> None:
        if self.cancel_event.is_set():
            self._write_log("cancelled")
            raise Cancelled()

    def _failure(self, kind: str, cmd: list[str], code: int, lines: list[str], index: str) -> BackendError:
        text = "\n".join(lines)
        log = self.plan.log_path
        if re.search(r"No space left on device|Errno 28\b|ENOSPC|There is not enough space", text) or \
                _nearly_full(self.plan.env_dir.parent):
            needed = SPACE_NEEDED_MB.get(self.plan.build.device, 2500)
            return BackendError("not_installed", f"The disk holding {self.plan.env_dir.parent} is full (No "
                                "space left on device); nothing was installed.",
                                f"Free about {needed} MB there, then press Install Backend again.")
        if re.search(r"Permission denied|Errno 13\b|Access is denied", text):
            return BackendError("not_installed", f"Permission denied while installing into "
                                f"{self.plan.env_dir.parent}; nothing was installed.",
                                "Make Blender's user folder writable for your account, then press Install "
                                "Backend again.")
        if kind == "venv":
            return BackendError("not_installed", f"{self.plan.base_python} could not make a virtual "
                                f"environment (exit {code}): {_last(lines)}",
                                "Pick another Python in 'Install With Python' (python.org's installers have "
                                "venv; Debian/Ubuntu: apt install python3-venv).")
        if kind == "pip":
            http = re.search(r"HTTP error (\d{3}) while getting (\S+)", text)
            if http:
                return BackendError("not_installed", f"The package index answered HTTP {http.group(1)} for "
                                    f"{http.group(2)}; nothing was installed.", _index_fix(index, log))
            missing = re.search(r"No matching distribution found for (\S+)", text)
            if missing:
                why = _explain_index(index, missing.group(1))
                return BackendError("not_installed", f"{why}; nothing was installed.", _index_fix(index, log))
            if re.search(r"Failed to establish a new connection|Max retries exceeded|ConnectTimeout|"
                         r"Read timed out|Name or service not known|getaddrinfo failed|SSLError", text):
                return BackendError("not_installed", f"pip could not reach the package index {index} "
                                    f"({_last(lines)}); nothing was installed.",
                                    "Check the network (and a proxy or firewall Blender must pass), then "
                                    "press Install Backend again.")
        return BackendError("not_installed", f"Installing the backend failed (exit {code}): {_last(lines)}; "
                            "nothing was installed.", f"See the install log ({log}), then press Install "
                            "Backend again.")

    # --- progress -------------------------------------------------------------------------------

    def _stages(self, stages: Sequence[tuple[str, float]]) -> None:
        self._stage_weights = stages
        self.progress.stages = len(stages)
        self._expect = 0

    def _stage(self, index: int) -> None:
        self._cancel_point()
        p = self.progress
        p.stage, p.stage_index = self._stage_weights[index][0], index
        self.stage_started.append((p.stage, time.monotonic()))
        self._write_log(f"== step {index + 1} of {p.stages}: {p.stage}")
        p.packages_done = p.packages_seen = p.bytes_done = p.bytes_total = 0
        p.filename, p.installing = "", False
        self._update(0.0)

    def _update(self, within: float) -> None:
        p = self.progress
        start = sum(w for _, w in self._stage_weights[:p.stage_index])
        share = self._stage_weights[p.stage_index][1]
        p.fraction = max(p.fraction, min(1.0, start + share * max(0.0, min(1.0, within))))
        self.on_progress(p)

    def _parse(self, line: str) -> None:
        """pip's output, line by line, as progress (packages collected/finished, bytes)."""
        p = self.progress
        text = line.strip()
        starts = ("Collecting ", "Requirement already satisfied", "Downloading ", "Using cached ",
                  "Installing collected packages")
        if p.filename and text.startswith(starts):
            p.packages_done += 1  # pip moved on: the file it was downloading is complete
            p.filename, p.bytes_done, p.bytes_total = "", 0, 0
        progress = re.match(r"Progress (\d+) of (\d+)", text)
        if progress:
            p.bytes_done, p.bytes_total = int(progress.group(1)), int(progress.group(2))
        elif text.startswith("Collecting "):
            p.packages_seen += 1
        elif text.startswith("Requirement already satisfied"):
            p.packages_seen += 1
            p.packages_done += 1
        elif text.startswith("Downloading "):
            match = re.match(r"Downloading (\S+?)(?:\s+\((.+)\))?$", text)
            p.filename = Path(match.group(1) if match else text.split()[1]).name.split("#")[0]
            p.bytes_total, p.bytes_done = (_size(match.group(2)) if match and match.group(2) else 0), 0
        elif text.startswith("Using cached "):
            p.packages_done += 1
        elif text.startswith("Installing collected packages"):
            p.installing = True
            p.packages_done = p.packages_seen = max(p.packages_seen, text.count(",") + 1)
        else:
            return
        total = max(p.packages_seen, self._expect, 1)
        part = p.bytes_done / p.bytes_total if p.bytes_total else 0.0
        collected = min(1.0, (p.packages_done + part) / total)
        self._update(0.85 if p.installing else 0.8 * collected)

    # --- the log --------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _logging(self, what: str):
        path = self.plan.log_path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            if path.exists():
                os.replace(path, path.with_name(path.name + ".1"))  # the previous run stays
            self._log = open(path, "w", encoding="utf-8")  # noqa: SIM115 (closed below)
        except OSError as err:
            raise os_error(err, path.parent) from err
        self._write_log(f"MoMask {what} of the backend environment {self.plan.env_dir}, torch build "
                        f"{self.plan.build.label} from {self.plan.torch_index}, "
                        f"Python {self.plan.base_python}")
        ok = False
        try:
            yield
            ok = True
        except OSError as err:
            raise os_error(err, self.plan.env_dir.parent) from err
        finally:
            if not ok:  # failed or cancelled: no half environment is left
                self._write_log(f"removing {staging_dir(self.plan.env_dir)}")
                remove_tree(staging_dir(self.plan.env_dir))
            self._log.close()
            self._log = None

    def _write_log(self, line: str) -> None:
        if self._log is not None:
            with contextlib.suppress(OSError, ValueError):
                self._log.write(f"{time.strftime('%H:%M:%S')} {line}\n")
                self._log.flush()


def remove(env_dir: Path) -> None:
    """Remove an environment (and what an interrupted install left): renamed aside first, so that
    it is never seen half-removed."""
    for path in (env_dir, staging_dir(env_dir), old_dir(env_dir)):
        if not path.exists():
            continue
        doomed = path.with_name(f"{path.name}{REMOVING_INFIX}{os.getpid()}")
        try:
            os.replace(path, doomed)
        except OSError as err:
            raise os_error(err, env_dir.parent) from err
        remove_tree(doomed)


def remove_tree(path: Path) -> None:
    """Delete a folder, read-only files included (Windows); what cannot be deleted is left."""
    def retry(func, name, _exc):
        with contextlib.suppress(OSError):
            os.chmod(name, 0o700)
            func(name)

    if sys.version_info >= (3, 12):
        shutil.rmtree(path, onexc=retry)
    else:
        shutil.rmtree(path, onerror=retry)


def kill_tree(process: subprocess.Popen) -> None:
    """Kill a process and everything it started (its process group; Windows: its tree)."""
    with contextlib.suppress(OSError):
        if os.name == "nt":
            subprocess.run(["taskkill", "/T", "/F", "/PID", str(process.pid)], capture_output=True,
                           creationflags=_no_window(), timeout=10)
        else:
            os.killpg(process.pid, signal.SIGKILL)
    with contextlib.suppress(OSError):
        process.kill()


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def os_error(err: OSError, folder: Path) -> BackendError:
    if err.errno in (errno.EACCES, errno.EPERM, errno.EROFS) or isinstance(err, PermissionError):
        return BackendError("not_writable", f"MoMask cannot write to {folder} ({err.strerror or err}); "
                            "nothing was installed.", "Make Blender's user folder writable for your account "
                            "(or start Blender as the user who owns it), then press Install Backend again.")
    if err.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
        return BackendError("not_installed", f"The disk holding {folder} is full ({err.strerror or err}); "
                            "nothing was installed.", "Free a few GB there, then press Install Backend "
                            "again.")
    return BackendError("not_installed", f"Installing the backend into {folder} failed: {err}.",
                        "Check that the folder and its disk are usable, then press Install Backend again.")


def _nearly_full(folder: Path, margin_mb: int = 20) -> bool:
    """The disk is (all but) full: what a failure there is most likely due to, whatever the command
    printed (venv reports only that ensurepip failed)."""
    try:
        return shutil.disk_usage(folder).free < margin_mb * 1e6
    except OSError:
        return False


def _last(lines: list[str]) -> str:
    meaningful = [line.strip() for line in lines if line.strip() and not line.startswith("Progress ")]
    errors = [line for line in meaningful if line.startswith("ERROR")]
    return (errors or meaningful or ["no output"])[-1][:300]


def _amount(size: int) -> str:
    return f"{size / 1e6:.1f} MB" if size >= 1e6 else f"{size / 1e3:.0f} kB"


def _size(text: str) -> int:
    match = re.match(r"([\d.]+)\s*(kB|KB|MB|GB|bytes|B)", text)
    if not match:
        return 0
    scale = {"kB": 1e3, "KB": 1e3, "MB": 1e6, "GB": 1e9, "bytes": 1, "B": 1}[match.group(2)]
    return int(float(match.group(1)) * scale)


def _index_fix(index: str, log: Path) -> str:
    return (f"Check that {index} is reachable from this computer and is a package index (a proxy or captive "
            "portal may answer instead); for a torch build that does not exist for this computer, choose "
            f"Auto or CPU as the Torch Build. The install log has pip's output: {log}.")


def _explain_index(index: str, requirement: str, timeout: float = 15.0) -> str:
    """Why pip found no ``requirement`` on ``index``: the index page 404s, is not an index, or simply
    has no file of it for this computer (asked once, after pip failed)."""
    name = re.sub(r"[-_.]+", "-", re.split(r"[=<>!~ ]", requirement, maxsplit=1)[0]).lower()
    url = f"{index.rstrip('/')}/{name}/"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as reply:  # noqa: S310 (an index URL)
            body = reply.read(4_000_000).decode("utf-8", "replace")
    except urllib.error.HTTPError as err:
        return f"The package index {index} answered HTTP {err.code} for {name} ({url})"
    except (OSError, ValueError) as err:
        return f"The package index {index} could not be read for {name} ({err})"
    if not re.search(r"<a\s[^>]*href=[^>]*\.(whl|tar\.gz|zip)", body, re.I):
        return f"The package index {index} answered {url} with a page that is not a package index (no files)"
    return (f"The package index {index} has no file of {requirement} for this computer and Python "
            f"({sys.platform})")
