"""The add-on in real Blender 4.5 and 5.0 (the ``bpy`` module), end to end against a real backend
process with tiny random weights: panel operators, takes, variations, undo step, cancel, a killed
backend, in-betweening, 24 and 30 fps, three kinds of rig, and the headless main job."""

from __future__ import annotations

import os
import subprocess

import pytest

from tests.conftest import BLENDER_VERSIONS, REPO, SHARED_DATA, blender_python, run_blender


def _cases(output: str) -> dict[str, str]:
    return {line.split()[1]: line for line in output.splitlines() if line.startswith("CASE ")}


@pytest.mark.parametrize("version", BLENDER_VERSIONS)
def test_addon_registers_and_saves_mapping_presets(version: str, tmp_path) -> None:
    out = run_blender(version, "addon_register.py", env={"MOMASK_USER_DIR": str(tmp_path)})
    cases = _cases(out)
    assert cases.keys() == {"register_unregister_twice", "mapping_presets"}
    assert all(line.split()[2] == "ok" for line in cases.values()), out


EXPECTED_CASES = {
    "generate_metarig_variations_24fps",
    "one_undo_step_per_generation",
    "same_seed_same_motion",
    "takes_apply_compare_delete",
    "inbetween_keeps_keys_outside_range",
    "inbetween_hand_keyed_euler_bvh_rig_30fps",
    "generate_bvh_rig_30fps",
    "generate_mixamo_rig",
    "unmappable_rig_names_missing_roles",
    "armature_deleted_mid_job_drops_result",
    "cancel_mid_generation",
    "backend_killed_mid_job_then_next_works",
    "editing_the_prompt_warms_the_backend_up_quietly",
    "missing_weights_tells_how_to_get_them",
    "free_memory_stops_backend",
    "generate_onto_a_generated_rigify_control_rig",
}


def _run_cases(version: str, script: str, expected: set[str], weights, tmp_path) -> None:
    """Run a case script (tests/blender/cases.py) in Blender ``version``: every expected case ran and
    passed."""
    out = run_blender(version, script, str(weights), timeout=900, env={"MOMASK_USER_DIR": str(tmp_path)})
    cases = _cases(out)
    assert cases.keys() == expected, f"cases run: {sorted(cases)}\n{out[-3000:]}"
    failed = [line for line in cases.values() if line.split()[2] != "ok"]
    assert not failed, "\n".join(failed)


@pytest.mark.parametrize("version", BLENDER_VERSIONS)
def test_addon_against_real_backend(version: str, tiny_weights, tmp_path) -> None:
    _run_cases(version, "addon_backend.py", EXPECTED_CASES, tiny_weights, tmp_path)


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
def test_headless_main_job_writes_blend_and_bvh(version: str, tiny_weights, tmp_path) -> None:
    proc = _headless(version, tmp_path, tiny_weights, "--seconds", "2", "--rig", "bvh", "--fps", "30")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    summary = __import__("json").loads(proc.stdout.strip().splitlines()[-1])
    assert (tmp_path / "demo.blend").stat().st_size > 0
    bvh = (tmp_path / "demo.bvh").read_text()
    assert bvh.startswith("HIERARCHY") and "MOTION" in bvh
    assert summary["fps"] == 30 and abs(summary["bvh_frames"] - 60) <= 3, summary


def test_headless_without_weights_says_how_to_get_them(tmp_path) -> None:
    proc = _headless("4.5", tmp_path, tmp_path / "no_weights", "--seconds", "2")
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "build.py weights" in proc.stderr, proc.stderr[-2000:]
    assert not (tmp_path / "demo.blend").exists()


LIFECYCLE_CASES = {
    "stop_during_start_does_not_wait_for_hello",
    "one_undo_step_per_generation_keeps_previous_edit",
    "file_open_during_job_drops_it_and_frees_the_panel",
    "settings_change_during_generation_is_deferred",
    "free_memory_operator_stops_backend",
    "disable_during_start_stops_backend",
    "disable_stops_backend_and_removes_handlers",
}


@pytest.mark.parametrize("version", BLENDER_VERSIONS)
def test_addon_job_and_process_lifecycle(version: str, tiny_weights, tmp_path) -> None:
    """Undo, File > Open during a job, settings changed mid-generation, Free Memory and disabling the
    add-on (also while the backend starts): tests/blender/addon_lifecycle.py."""
    _run_cases(version, "addon_lifecycle.py", LIFECYCLE_CASES, tiny_weights, tmp_path)
