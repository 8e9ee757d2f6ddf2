"""The headless main job (``python -m momask_blender.headless``, what ``build.py demo`` runs) in real
Blender 4.2, 4.5 and 5.0: a prompt becomes a .blend and a .bvh; without weights it says how to get
them. It runs the add-on's own module, not a script in tests/blender/."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from tests.conftest import BLENDER_VERSIONS, REPO, SHARED_DATA, blender_python


def _headless(version: str, tmp_path, weights, *extra: str) -> subprocess.CompletedProcess:
    env = dict(
        os.environ,
        PYTHONPATH=str(REPO),
        MOMASK_SHARED_DATA=str(SHARED_DATA),
        MOMASK_USER_DIR=str(tmp_path / "user"),
    )
    cmd = [
        str(blender_python(version)),
        "-m",
        "momask_blender.headless",
        "--prompt",
        "a person walks forward",
        "--backend-python",
        str(REPO / ".venv" / "bin" / "python"),
        "--weights",
        str(weights),
        "--device",
        "cpu",
        "--out-blend",
        str(tmp_path / "demo.blend"),
        "--out-bvh",
        str(tmp_path / "demo.bvh"),
        *extra,
    ]
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.parametrize("version", BLENDER_VERSIONS)
def test_headless_main_job_writes_blend_and_bvh(version: str, tiny_weights, shared_data, tmp_path) -> None:
    proc = _headless(version, tmp_path, tiny_weights, "--seconds", "2", "--rig", "bvh", "--fps", "30")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert (tmp_path / "demo.blend").stat().st_size > 0
    bvh = (tmp_path / "demo.bvh").read_text()
    assert bvh.startswith("HIERARCHY") and "MOTION" in bvh
    assert summary["fps"] == 30 and abs(summary["bvh_frames"] - 60) <= 3, summary


def test_headless_without_weights_says_how_to_get_them(tmp_path) -> None:
    proc = _headless("4.5", tmp_path, tmp_path / "no_weights", "--seconds", "2")
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "build.py weights" in proc.stderr, proc.stderr[-2000:]
    assert not (tmp_path / "demo.blend").exists()
