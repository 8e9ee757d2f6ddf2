"""`build.py`: the extension zip (contents, manifest validation, real install in Blender:
tests/blender/build.py) and `demo`'s refusal without weights."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

from tests.conftest import BLENDER_VERSIONS, REPO, assert_cases_passed, run_blender


def load_build_module():
    spec = importlib.util.spec_from_file_location("momask_build", REPO / "build.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["momask_build"] = module
    spec.loader.exec_module(module)
    return module


build = load_build_module()


def run_build_py(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "build.py"), *args], cwd=REPO, capture_output=True,
                          text=True, timeout=600, **kwargs)


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("dist")
    proc = run_build_py("build", "--out", str(out))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    zips = list(out.glob("*.zip"))
    assert len(zips) == 1, zips
    return zips[0], proc.stdout


def source_files(folder: Path, suffix: str = ".py") -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.rglob(f"*{suffix}")
            if "__pycache__" not in p.parts and "tests" not in p.relative_to(folder).parts}


def test_zip_holds_manifest_addon_and_backend_sources_only(built):
    zip_path, _ = built
    names = set(zipfile.ZipFile(zip_path).namelist())

    assert {"blender_manifest.toml", "__init__.py"} <= names
    assert source_files(REPO / "momask_blender") <= names                       # the add-on is the root
    assert {f"backend/{n}" for n in source_files(REPO / "backend")} <= names    # every backend module
    # the pins Install Backend installs (requirements/install.txt, backend.txt), never the dev tools
    assert {"requirements/install.txt", "requirements/backend.txt"} <= names
    opt_files = {n for n in names if n.startswith("backend/weights/official_opt/")}
    assert len(opt_files) == 6 and all(n.endswith("/opt.txt") for n in opt_files)

    for name in names:
        parts = name.split("/")
        assert "__pycache__" not in parts and not name.endswith((".pyc", ".pyo")), name
        assert "tests" not in parts and parts[0] != "weights", name      # backend/weights/ is code
        assert parts[0] not in {"dist", "out", "bench"}, name
        if parts[0] == "requirements":
            assert name in {"requirements/install.txt", "requirements/backend.txt"}, name
            continue
        assert not name.endswith((".tar", ".pt", ".npy")), name
        if parts[0] == "backend":
            assert name.endswith(".py") or name in opt_files, name
        else:
            assert len(parts) == 1 or (REPO / "momask_blender" / name).is_file(), name


def test_manifest_passes_blender_validation(built):
    zip_path, stdout = built
    assert build.zip_problems(zip_path) == []
    for version in BLENDER_VERSIONS:
        assert f"Blender {version} `extension validate`: passed" in stdout


@pytest.mark.parametrize("field, value, complaint", [
    ("tagline", "Text to motion on your own rig.", "punctuation"),
    ("tagline", "x" * 65, "at most 64"),
    ("version", "1.0", "semantic"),
    ("blender_version_min", "4.1.0", "4.2.0"),
    ("license", ["GPL-3.0"], "SPDX"),
    ("permissions", {"files": "Reads weights."}, "punctuation"),
    ("permissions", {"network": "Downloads weights"}, "permissions.files is required"),
    ("id", "momask-blender", "identifier"),
    ("homepage", "https://example.org", "unknown key"),
])
def test_manifest_rules_reject_what_blender_rejects(field, value, complaint):
    manifest = tomllib.loads((REPO / "blender_manifest.toml").read_text())
    assert build.manifest_problems(manifest) == []
    manifest[field] = value
    problems = build.manifest_problems(manifest)
    assert any(complaint in p for p in problems), problems


def test_blender_validator_rejects_a_bad_tagline(tmp_path):
    """The same rule, checked by Blender's own `extension validate` (both bpy versions)."""
    manifest = (REPO / "blender_manifest.toml").read_text()
    bad = tmp_path / "bad.zip"
    with zipfile.ZipFile(bad, "w") as zf:
        zf.writestr("blender_manifest.toml",
                    re.sub(r'(?m)^tagline = .*$', 'tagline = "Text to motion on your own rig."', manifest))
        zf.writestr("__init__.py", "def register():\n    pass\n\n\ndef unregister():\n    pass\n")
    results = build.blender_validate(bad)
    assert [v for v, _, _ in results] == list(BLENDER_VERSIONS)
    for version, ok, output in results:
        assert not ok and "tagline" in output, (version, output)


@pytest.mark.parametrize("version", BLENDER_VERSIONS)
def test_zip_installs_registers_and_uninstalls_in_blender(built, version, tmp_path):
    zip_path, _ = built
    results = run_blender(version, "build.py", str(zip_path),
                          env={"BLENDER_USER_RESOURCES": str(tmp_path / "blender_user")})
    cases = assert_cases_passed(results, {
        "install_enables_the_addon", "registers_operators_and_a_momask_panel", "uninstall_leaves_nothing"})
    registered = cases["registers_operators_and_a_momask_panel"]["values"]
    assert "momask.generate" in registered["operators"], registered
    assert "MOMASK_PT_main" in registered["panels"], registered


def test_demo_without_weights_says_how_to_get_them(tmp_path):
    proc = run_build_py("demo", "--weights", str(tmp_path / "no_weights"), "--out", str(tmp_path / "out"))
    assert proc.returncode == 1
    assert "No MoMask weights" in proc.stderr
    assert "python build.py weights" in proc.stderr
    assert "-m backend make-test-weights" in proc.stderr and "--size tiny" in proc.stderr
    assert not (tmp_path / "out" / "momask_demo.blend").exists()
