#!/usr/bin/env python3
"""MoMask for Blender: the one entry point for setting up, building, running and testing.

    python build.py setup [--no-weights] [--torch SPEC]   environments (+ official weights)
    python build.py weights [--dataset t2m|kit|all] [--from-zip FILE ...] [--clip-only]
    python build.py build [--out dist/]                  the extension zip, validated
    python build.py demo [--prompt TEXT] [--rig metarig|bvh|mixamo|PATH] [--blender 4.2|4.5|5.0]
    python build.py test [pytest args]
    python build.py lint

Runs with any Python >= 3.11 and imports only the standard library (and, for `weights`, the project's
stdlib-only ``backend/portable/weights_installer.py``), so it works before anything is installed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
import zipfile
from collections.abc import Iterator, Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parent
ADDON_DIR = REPO / "momask_blender"
BACKEND_DIR = REPO / "backend"
MANIFEST = REPO / "blender_manifest.toml"
WEIGHTS_DIR = REPO / "weights"

BACKEND_VENV = REPO / ".venv"
#: The torch pin Install Backend uses too (requirements/install.txt): one version for both.
DEFAULT_TORCH = next(line.strip() for line in (REPO / "requirements" / "install.txt").read_text().splitlines()
                     if line.startswith("torch=="))
#: The pinned requirements the add-on's Install Backend reads, shipped in the zip at the same paths.
SHIPPED_REQUIREMENTS = (REPO / "requirements" / "install.txt", REPO / "requirements" / "backend.txt")
REQUIREMENTS = (REPO / "requirements" / "backend.txt", REPO / "requirements" / "dev.txt")
#: Blender version -> (environment, its pinned packages: the bpy release on PyPI first). bpy wheels
#: exist for CPython 3.11 only. 4.2 LTS (the oldest the manifest allows, classic actions) gets the numpy
#: Blender 4.2 bundles: the 4.2 wheel leaves numpy unpinned and pip would take numpy 2.
BLENDER_ENVS: dict[str, tuple[Path, tuple[str, ...]]] = {
    "4.2": (REPO / ".venv-bpy42", ("bpy==4.2.23", "numpy==1.26.4")),
    "4.5": (REPO / ".venv-bpy45", ("bpy==4.5.4",)),
    "5.0": (REPO / ".venv-bpy50", ("bpy==5.0.1",)),
}
BPY_PYTHON = (3, 11)

MIN_BLENDER = (4, 2, 0)


class BuildError(Exception):
    """A step failed; the message says what happened and what to do."""


# --- small helpers ---------------------------------------------------------------------------------


def venv_python(venv: Path) -> Path:
    return venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def shown_python() -> str:
    """The backend environment's interpreter as a command to type here (``.venv\\Scripts\\python.exe``
    on Windows, ``.venv/bin/python`` elsewhere)."""
    return str(venv_python(BACKEND_VENV).relative_to(REPO))


def run(cmd: Sequence[str | Path], **kwargs) -> subprocess.CompletedProcess:
    """Run a command, echoing it; raise BuildError when it fails."""
    printable = " ".join(shlex.quote(str(c)) for c in cmd)
    print(f"    $ {printable}", flush=True)
    proc = subprocess.run([str(c) for c in cmd], **kwargs)
    if proc.returncode != 0:
        raise BuildError(f"Command failed (exit {proc.returncode}): {printable}")
    return proc


def capture(cmd: Sequence[str | Path], timeout: float = 120) -> str | None:
    """A command's stdout, or None when it cannot run or fails (used for probes)."""
    try:
        proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return proc.stdout if proc.returncode == 0 else None


@contextlib.contextmanager
def step(title: str) -> Iterator[dict[str, str]]:
    """Print a step, then how long it took; the body may set note["result"]."""
    print(f"==> {title}", flush=True)
    started = time.monotonic()
    note: dict[str, str] = {}
    try:
        yield note
    except BaseException:
        note["result"] = "FAILED"
        raise
    finally:
        print(f"    {note.get('result', 'done')} ({time.monotonic() - started:.1f} s)", flush=True)


# --- setup -----------------------------------------------------------------------------------------


def find_python(version: tuple[int, int]) -> Path | None:
    """An interpreter of exactly ``version`` that can make virtual environments."""
    name = f"python{version[0]}.{version[1]}"
    candidates: list[Sequence[str]] = []
    if sys.version_info[:2] == version:
        candidates.append([sys.executable])
    if found := shutil.which(name):
        candidates.append([found])
    if os.name == "nt" and shutil.which("py"):
        candidates.append(["py", f"-{version[0]}.{version[1]}"])
    probe = "import sys, venv, ensurepip; print(sys.executable); print('%d.%d' % sys.version_info[:2])"
    for cmd in candidates:
        out = capture([*cmd, "-c", probe])
        if out and out.split()[-1] == f"{version[0]}.{version[1]}":
            return Path(out.split("\n")[0].strip())
    return None


_UNMET_PROBE = r"""
import importlib.metadata as md, json, sys
unmet = []
for req in json.loads(sys.argv[1]):
    name, _, want = req.partition("==")
    try:
        have = md.version(name.strip())
    except md.PackageNotFoundError:
        unmet.append(req)
        continue
    if want and have.split("+")[0] != want.strip():  # "2.13.0+cpu" satisfies "==2.13.0"
        unmet.append(req)
print(json.dumps(unmet))
"""


def pinned_requirements(files: Sequence[Path]) -> list[str]:
    """``name==version`` lines of requirement files (comments and options dropped)."""
    reqs = []
    for path in files:
        for line in path.read_text().splitlines():
            line = line.split("#", 1)[0].strip()
            if line and not line.startswith("-"):
                reqs.append(line)
    return reqs


def unmet_requirements(python: Path, reqs: Sequence[str]) -> list[str] | None:
    """Requirements the environment lacks (None when the interpreter does not run)."""
    out = capture([python, "-c", _UNMET_PROBE, json.dumps(list(reqs))])
    if out is None:
        return None
    try:
        return list(json.loads(out.strip().splitlines()[-1]))
    except (ValueError, IndexError):
        return None


def ensure_venv(venv: Path, base_python: Path) -> Path:
    """Create ``venv`` with ``base_python`` unless a working one of the same Python version exists."""
    python = venv_python(venv)
    version = "import sys; print('%d.%d' % sys.version_info[:2])"
    want = capture([base_python, "-c", version])
    have = capture([python, "-c", version]) if python.exists() else None
    if have is not None and have == want:
        return python
    if venv.exists():
        print(f"    {venv.name} is broken or uses Python {have}, recreating it with {want}")
    run([base_python, "-m", "venv", "--clear", venv])
    return python


def ensure_packages(venv: Path, base_python: Path, installs: Sequence[Sequence[str]],
                    check: Sequence[str], note: dict[str, str]) -> Path:
    """Make ``venv`` hold ``check`` (pinned names), running the pip ``installs`` only when something lacks."""
    python = ensure_venv(venv, base_python)
    unmet = unmet_requirements(python, check)
    if unmet == []:
        note["result"] = "already installed"
        return python
    print(f"    missing or different: {', '.join(unmet) if unmet else 'unknown (probe failed)'}")
    for args in installs:
        run([python, "-m", "pip", "install", "--disable-pip-version-check", *args])
    unmet = unmet_requirements(python, check)
    if unmet:
        raise BuildError(f"{venv.name} still lacks {', '.join(unmet)} after pip install; see pip's output.")
    note["result"] = "installed"
    return python


def cmd_setup(args: argparse.Namespace) -> int:
    started = time.monotonic()
    py311 = find_python(BPY_PYTHON)
    if py311 is None:
        raise BuildError(
            "Python 3.11 (with the venv module) was not found; Blender's bpy module exists only for 3.11.\n"
            "Fix: install Python 3.11 (python.org, pyenv, or packages python3.11 python3.11-venv)\n"
            "and run `python3.11 build.py setup`.")
    torch_args = shlex.split(args.torch)
    torch_req = next((a for a in torch_args if not a.startswith("-")), "torch")

    with step(f"Backend environment {BACKEND_VENV.name} ({args.torch}, requirements/*.txt)") as note:
        python = ensure_packages(
            BACKEND_VENV, py311,
            installs=[torch_args, [a for r in REQUIREMENTS for a in ("-r", str(r))]],
            check=[torch_req, *pinned_requirements(REQUIREMENTS)], note=note)
        smoke = "import torch, numpy, scipy; print(torch.__version__)"
        versions = capture([python, "-c", smoke], timeout=300)
        if versions is None:
            raise BuildError(f"{python} cannot import torch/numpy/scipy after installing them.")
        note["result"] += f", torch {versions.strip()}"

    for version, (venv, bpy_reqs) in BLENDER_ENVS.items():
        with step(f"Blender {version} environment {venv.name} ({', '.join(bpy_reqs)})") as note:
            ensure_packages(venv, py311, installs=[list(bpy_reqs)], check=bpy_reqs, note=note)

    with step("Test tool: OpenSSH server for the remote-backend tests (/usr/sbin/sshd)") as note:
        note["result"] = install_sshd_for_tests()

    weights_state = "skipped (--no-weights)"
    if not args.no_weights:
        with step("Official weights into weights/ (MoMask HumanML3D + CLIP ViT-B/32)") as note:
            weights_state = install_weights_for_setup()
            note["result"] = weights_state
    print(f"\nSetup finished in {time.monotonic() - started:.0f} s. Weights: {weights_state}.")
    print(f"Next: `{shown_python()} -m pytest -q` (tests use generated weights), "
          "`python build.py demo --prompt \"a person walks forward\"`.")
    return 0


SSHD = Path("/usr/sbin/sshd")


def install_sshd_for_tests() -> str:
    """Best effort: the remote-backend tests start their own sshd on 127.0.0.1 (and skip without one).
    Debian/Ubuntu's openssh-server is installed when apt and root are at hand; its service is not
    what the tests use, so the package's own start of it is not needed (and in a container fails
    harmlessly)."""
    if SSHD.is_file():
        return "already installed"
    if not sys.platform.startswith("linux") or not shutil.which("apt-get"):
        return "skipped (not Debian/Ubuntu: the remote-backend tests will skip)"
    if os.geteuid() != 0:
        return ("skipped (not root: `sudo apt-get install -y openssh-server` to run the remote-backend "
                "tests; they skip meanwhile)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "--no-install-recommends", "openssh-server"]
    for cmd in (["apt-get", "update"], install):
        try:
            proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return f"NOT installed ({' '.join(cmd)}: {exc}); the remote-backend tests will skip"
        if proc.returncode != 0 and cmd is install:
            tail = " ".join(proc.stderr.strip().splitlines()[-2:])
            return f"NOT installed (apt-get: {tail}); the remote-backend tests will skip"
    return "installed" if SSHD.is_file() else "NOT installed (no /usr/sbin/sshd after apt-get)"


def install_weights_for_setup() -> str:
    """Install the weights; any failure is reported, not fatal: the tests do not need real weights."""
    wi = installer()
    try:
        wi.install(WEIGHTS_DIR, ("t2m",))
    except KeyboardInterrupt:
        raise
    except wi.CheckpointError as err:
        print("\n    *** The weights were NOT installed. ***", flush=True)
        print(f"    {err.problem}")
        for line in err.fix.splitlines():
            print(f"    {line}")
        print("    Setup continues: the tests generate their own random weights. To try the pipeline\n"
              "    without the official weights: "
              f"`{shown_python()} -m backend make-test-weights weights --size tiny`.")
        return "NOT installed (see above)"
    return "installed and verified"


# --- weights ---------------------------------------------------------------------------------------


def cmd_weights(args: argparse.Namespace) -> int:
    wi = installer()
    with step(f"Weights into {args.dir}") as note:
        status = wi.run(args)
        note["result"] = "done" if status == 0 else "FAILED"
    return status


# --- build -----------------------------------------------------------------------------------------


_SKIP_DIRS = {"__pycache__", "tests", "test", ".pytest_cache", ".mypy_cache", ".ruff_cache"}


def _addon_files() -> list[tuple[Path, str]]:
    """(source, name in the zip) for the add-on: momask_blender/* at the zip root."""
    if not (ADDON_DIR / "__init__.py").is_file():
        raise BuildError(f"{ADDON_DIR}/__init__.py is missing: there is no add-on to package.")
    files = []
    for path in sorted(ADDON_DIR.rglob("*")):
        rel = path.relative_to(ADDON_DIR)
        if path.is_dir() or any(p in _SKIP_DIRS or p.startswith(".") for p in rel.parts):
            continue
        if path.suffix in {".pyc", ".pyo", ".blend1"}:
            continue
        files.append((path, rel.as_posix()))
    return files


def _backend_files() -> list[tuple[Path, str]]:
    """The backend sources the add-on bundles: its .py files and the official opt.txt copies."""
    files = []
    for path in sorted(BACKEND_DIR.rglob("*")):
        rel = path.relative_to(BACKEND_DIR)
        if path.is_dir() or any(p in _SKIP_DIRS or p.startswith(".") for p in rel.parts):
            continue
        is_source = path.suffix == ".py" and path.name != "conftest.py"
        is_opt = rel.parts[:2] == ("weights", "official_opt")
        if is_source or is_opt:
            files.append((path, "backend/" + rel.as_posix()))
    return files


def build_zip(out_dir: Path) -> Path:
    manifest = tomllib.loads(MANIFEST.read_text())
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / f"{manifest.get('id', 'momask_blender')}-{manifest.get('version', '0')}.zip"
    entries = [(MANIFEST, "blender_manifest.toml"), *_addon_files(), *_backend_files(),
               *[(path, path.relative_to(REPO).as_posix()) for path in SHIPPED_REQUIREMENTS]]
    names = [name for _, name in entries]
    if clash := sorted({n for n in names if names.count(n) > 1}):
        raise BuildError(f"Two files would share a name in the zip: {clash}.")
    fd, tmp = tempfile.mkstemp(prefix=target.name, suffix=".tmp", dir=out_dir)
    os.close(fd)
    try:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            for src, name in entries:
                # A fixed timestamp makes the zip reproducible: same sources, same bytes.
                info = zipfile.ZipInfo(name, date_time=(2024, 1, 1, 0, 0, 0))
                info.external_attr = 0o644 << 16
                info.compress_type = zipfile.ZIP_DEFLATED
                zf.writestr(info, src.read_bytes())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


# The add-on tags extensions.blender.org accepts (Blender's `_bpy_internal/extensions/tags.py`).
ADDON_TAGS = {
    "3D View", "Add Curve", "Add Mesh", "Animation", "Bake", "Camera", "Compositing", "Development",
    "Game Engine", "Geometry Nodes", "Grease Pencil", "Import-Export", "Lighting", "Material", "Mesh",
    "Modeling", "Node", "Object", "Paint", "Physics", "Pipeline", "Render", "Rigging", "Scene", "Sculpt",
    "Sequencer", "System", "Text Editor", "Tracking", "User Interface", "UV",
}
_REQUIRED_KEYS = ("schema_version", "id", "version", "name", "tagline", "maintainer", "type",
                  "blender_version_min", "license")
_OPTIONAL_KEYS = ("blender_version_max", "website", "copyright", "tags", "platforms", "wheels",
                  "permissions", "build")
_PERMISSIONS = ("files", "network", "clipboard", "camera", "microphone")
_SEMVER = re.compile(r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:-[0-9A-Za-z.-]+)?(?:\+[0-9A-Za-z.-]+)?$")


def _terse_text_problem(value: object) -> str | None:
    """Blender's rule for a tagline and a permission reason: ≤ 64 chars, no trailing punctuation."""
    if not isinstance(value, str) or not value.strip():
        return "must be a non-empty string"
    if len(value) > 64:
        return f"must be at most 64 characters, has {len(value)}"
    if value != value.strip() or any(ord(c) < 32 for c in value):
        return "must not have surrounding spaces or control characters"
    if not (value[-1].isalnum() or value[-1] in ")]}"):
        return "must not end with punctuation"
    return None


def _version_tuple(text: str) -> tuple[int, ...] | None:
    parts = text.split(".")
    return tuple(int(p) for p in parts) if len(parts) == 3 and all(p.isdigit() for p in parts) else None


def manifest_problems(manifest: dict) -> list[str]:
    """The extension-platform manifest rules (used when Blender's own validator is not available)."""
    problems = []
    for key in _REQUIRED_KEYS:
        if key not in manifest:
            problems.append(f"required key {key!r} is missing")
    for key, value in manifest.items():
        if key not in _REQUIRED_KEYS + _OPTIONAL_KEYS:
            problems.append(f"unknown key {key!r}")
        elif value in ("", [], {}):
            problems.append(f"{key!r} is empty: omit optional keys instead of leaving them empty")
    if manifest.get("schema_version", "1.0.0") != "1.0.0":
        problems.append("schema_version must be \"1.0.0\"")
    pkg_id = manifest.get("id", "x")
    if not (isinstance(pkg_id, str) and pkg_id.isidentifier() and "__" not in pkg_id
            and not pkg_id.startswith("_") and not pkg_id.endswith("_")):
        problems.append(f"id {pkg_id!r} must be a Python identifier without leading/trailing/double '_'")
    if not _SEMVER.match(str(manifest.get("version", "0.0.0"))):
        problems.append(f"version {manifest.get('version')!r} is not semantic versioning (X.Y.Z)")
    for key in ("name", "maintainer"):
        if key in manifest and (not isinstance(manifest[key], str) or not manifest[key].strip()):
            problems.append(f"{key!r} must be a non-empty string")
    if "tagline" in manifest and (why := _terse_text_problem(manifest["tagline"])):
        problems.append(f"tagline {why}")
    if manifest.get("type", "add-on") != "add-on":
        problems.append("type must be \"add-on\" for this package")
    low = _version_tuple(str(manifest.get("blender_version_min", "4.2.0")))
    if low is None or low < MIN_BLENDER:
        problems.append("blender_version_min must be a version X.Y.Z of at least 4.2.0 (extensions need 4.2)")
    if "blender_version_max" in manifest:
        high = _version_tuple(str(manifest["blender_version_max"]))
        if high is None or (low is not None and high <= low):
            problems.append("blender_version_max must be a version above blender_version_min")
    licenses = manifest.get("license", ["SPDX:x"])
    if not isinstance(licenses, list) or not licenses or not all(
            isinstance(item, str) and item.startswith("SPDX:") and len(item) > 5 for item in licenses):
        problems.append("license must be a list of SPDX identifiers such as \"SPDX:GPL-3.0-or-later\"")
    for item in manifest.get("copyright", []):
        year, _, name = str(item).partition(" ")
        if not re.fullmatch(r"\d+(-\d+)?", year) or not name.strip():
            problems.append(f"copyright {item!r} must read \"YEAR Name\"")
    if (tags := manifest.get("tags")) is not None:
        unknown = [t for t in tags if t not in ADDON_TAGS] if isinstance(tags, list) else [tags]
        if unknown:
            problems.append(f"unknown add-on tags {unknown}")
    permissions = manifest.get("permissions", {})
    if not isinstance(permissions, dict):
        problems.append("permissions must be a table of reasons")
        permissions = {}
    for key, reason in permissions.items():
        if key not in _PERMISSIONS:
            problems.append(f"unknown permission {key!r} (one of {', '.join(_PERMISSIONS)})")
        elif why := _terse_text_problem(reason):
            problems.append(f"permission {key!r} reason {why}")
    # Project rule: the add-on reads weights and writes motion files, so it must say so.
    if "files" not in permissions:
        problems.append("permissions.files is required: the add-on reads weights and writes BVH files")
    return problems


_WEIGHT_SUFFIXES = (".tar", ".pt", ".pth", ".npy", ".safetensors")
_OPT_FOLDER = "backend/weights/official_opt/"


def zip_problems(zip_path: Path) -> list[str]:
    """Package content rules: manifest and __init__.py at the root, sources only, nothing cached."""
    problems = []
    with zipfile.ZipFile(zip_path) as zf:
        names = zf.namelist()
        if zf.testzip() is not None:
            problems.append("the zip is corrupt")
        for required in ("blender_manifest.toml", "__init__.py"):
            if required not in names:
                problems.append(f"{required} is not at the zip root")
        for name in names:
            parts = name.split("/")
            if "__pycache__" in parts or name.endswith((".pyc", ".pyo")):
                problems.append(f"{name}: compiled Python does not belong in the package")
            elif parts[0] in {"tests", "weights"} or "tests" in parts or name.endswith(_WEIGHT_SUFFIXES):
                problems.append(f"{name}: tests and weights are not packaged")
            elif parts[0] == "backend" and not (name.endswith(".py") or name.startswith(_OPT_FOLDER)):
                problems.append(f"{name}: only backend .py files and data/official_opt are bundled")
        if "blender_manifest.toml" in names:
            manifest = tomllib.loads(zf.read("blender_manifest.toml").decode())
            problems += [f"manifest: {p}" for p in manifest_problems(manifest)]
        if "__init__.py" in names and re.search(rb"^bl_info\s*=", zf.read("__init__.py"), re.M):
            print("    note: __init__.py defines bl_info; extensions ignore it (the manifest wins)")
    return problems


_BLENDER_VALIDATE = (
    "import sys, bpy\n"
    "from bl_pkg import bl_extension_cli\n"  # what `blender --command extension validate` runs
    "sys.exit(bl_extension_cli.cli_extension_handler(['validate', sys.argv[1]]))\n"
)


def blender_validate(zip_path: Path) -> list[tuple[str, bool, str]]:
    """Run Blender's own `extension validate` in every bpy environment that exists."""
    results = []
    for version, (venv, _) in BLENDER_ENVS.items():
        python = venv_python(venv)
        if not python.exists():
            continue
        proc = subprocess.run([str(python), "-c", _BLENDER_VALIDATE, str(zip_path)],
                              capture_output=True, text=True, timeout=300)
        output = (proc.stdout + proc.stderr).strip()
        if "No module named 'bl_pkg'" in output:
            continue  # this bpy build lacks the extensions add-on: fall back to our own checks
        results.append((version, proc.returncode == 0, output))
    return results


def cmd_build(args: argparse.Namespace) -> int:
    with step("Extension zip") as note:
        target = build_zip(Path(args.out))
        with zipfile.ZipFile(target) as zf:
            count = len(zf.namelist())
        note["result"] = f"{target} ({count} files, {target.stat().st_size / 1e3:.0f} kB)"
    with step("Validation") as note:
        problems = zip_problems(target)
        for problem in problems:
            print(f"    ERROR {problem}")
        blender = blender_validate(target)
        for version, ok, output in blender:
            print(f"    Blender {version} `extension validate`: {'passed' if ok else 'FAILED'}")
            if not ok:
                print("      " + output.replace("\n", "\n      "))
        if not blender:
            print("    Blender's validator is not available (no bpy environment); build.py checked the "
                  "manifest rules itself")
        failed = bool(problems) or any(not ok for _, ok, _ in blender)
        note["result"] = "FAILED" if failed else "passed"
    return 1 if failed else 0


# --- demo, test, lint ------------------------------------------------------------------------------


def cmd_demo(args: argparse.Namespace) -> int:
    wi = installer()
    venv, _ = BLENDER_ENVS[args.blender]
    blender_py, backend_py = venv_python(venv), venv_python(BACKEND_VENV)
    for python, what in ((blender_py, f"Blender {args.blender}"), (backend_py, "the backend")):
        if not python.exists():
            raise BuildError(f"No Python environment for {what} ({python}).\n"
                             "Fix: run `python build.py setup`.")
    weights = Path(args.weights).resolve()
    if missing := wi.missing_files(weights, "t2m"):
        shown = ", ".join(missing[:3]) + (f" and {len(missing) - 3} more" if len(missing) > 3 else "")
        raise BuildError(
            f"No MoMask weights in {weights} (missing {shown}).\n"
            "Fix: run `python build.py weights` to download the official checkpoints, or, to try the\n"
            f"pipeline with random weights, `{backend_py.relative_to(REPO)} -m backend make-test-weights "
            f"{weights.relative_to(REPO) if weights.is_relative_to(REPO) else weights} --size tiny`.")
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    cmd = [blender_py, "-m", "momask_blender.headless", "--prompt", args.prompt,
           "--seconds", str(args.seconds), "--seed", str(args.seed), "--rig", args.rig,
           "--backend-python", backend_py, "--weights", weights, "--device", args.device,
           "--out-blend", out / "momask_demo.blend", "--out-bvh", out / "momask_demo.bvh"]
    with step(f"Headless generation in Blender {args.blender}: {args.prompt!r} onto {args.rig}") as note:
        run(cmd, cwd=REPO)
        note["result"] = f"wrote {out / 'momask_demo.blend'} and {out / 'momask_demo.bvh'}"
    return 0


def cmd_test(args: argparse.Namespace, extra: Sequence[str]) -> int:
    python = venv_python(BACKEND_VENV)
    if not python.exists():
        raise BuildError("No .venv yet. Fix: run `python build.py setup`.")
    return subprocess.call([str(python), "-m", "pytest", *extra], cwd=REPO)


def cmd_lint(args: argparse.Namespace) -> int:
    python = venv_python(BACKEND_VENV)
    if not python.exists():
        raise BuildError("No .venv yet. Fix: run `python build.py setup`.")
    status = 0
    with step("ruff check .") as note:
        code = subprocess.call([str(python), "-m", "ruff", "check", "."], cwd=REPO)
        note["result"] = "clean" if code == 0 else "problems found"
        status |= code
    with step("mypy momask_blender (against fake-bpy-module)") as note:
        code = subprocess.call([str(python), "-m", "mypy"], cwd=REPO)
        note["result"] = "clean" if code == 0 else "problems found"
        status |= code
    return 1 if status else 0


# --- command line ----------------------------------------------------------------------------------


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python build.py", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("setup", help="create .venv, .venv-bpy42/45/50 and install the weights")
    p.add_argument("--no-weights", action="store_true", help="skip downloading the official weights")
    p.add_argument("--torch", default=DEFAULT_TORCH, metavar="SPEC",
                   help=f"pip arguments for torch (default {DEFAULT_TORCH!r}; e.g. "
                        "'torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128')")

    p = sub.add_parser("weights", help="download and install the official checkpoints and CLIP")
    installer().add_arguments(p)
    p.set_defaults(dir=WEIGHTS_DIR)

    p = sub.add_parser("build", help="write and validate the extension zip")
    p.add_argument("--out", default=str(REPO / "dist"), help="output folder (default dist/)")

    p = sub.add_parser("demo", help="generate a motion headless in real Blender (.blend + .bvh)")
    p.add_argument("--prompt", default="a person walks forward and waves with the right hand")
    p.add_argument("--seconds", type=float, default=4.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--rig", default="metarig", help="metarig | bvh | mixamo | PATH to a .blend/.fbx/.bvh rig")
    p.add_argument("--weights", default=str(WEIGHTS_DIR))
    p.add_argument("--device", default="auto")
    p.add_argument("--out", default=str(REPO / "out"))
    p.add_argument("--blender", choices=tuple(BLENDER_ENVS), default="4.5")

    sub.add_parser("test", help="run pytest in .venv (extra arguments go to pytest)", add_help=False)
    sub.add_parser("lint", help="ruff check + mypy on momask_blender")
    return parser


def installer():
    """``backend/portable/weights_installer.py`` (stdlib only), imported from this checkout."""
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    from backend.portable import weights_installer

    return weights_installer


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if argv[:1] == ["test"]:
            return cmd_test(argparse.Namespace(), argv[1:])
        args = make_parser().parse_args(argv)
        handler = {"setup": cmd_setup, "weights": cmd_weights, "build": cmd_build, "demo": cmd_demo,
                   "lint": cmd_lint}[args.command]
        return handler(args)
    except BuildError as err:
        print(f"\nerror: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\nInterrupted.", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
