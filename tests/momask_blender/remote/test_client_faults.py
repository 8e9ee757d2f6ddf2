"""A backend that sends garbage or dies mid-reply, met through the real Generate button in real
Blender 4.2, 4.5 and 5.0 (tests/blender/client_faults.py): the panel shows a clear message, no
action or key changes, and the next Generate against the real backend (tiny random weights) works."""

from __future__ import annotations

import pytest

from tests.conftest import BLENDER_VERSIONS, run_blender


@pytest.mark.blender
@pytest.mark.slow
@pytest.mark.parametrize("version", BLENDER_VERSIONS)
def test_generate_survives_a_misbehaving_backend(version: str, tiny_weights, tmp_path) -> None:
    # run_blender appends the results path as the script's last argument and returns its JSON
    results = run_blender(version, "client_faults.py", str(tiny_weights), timeout=600,
                          env={"MOMASK_USER_DIR": str(tmp_path / "user")})
    assert "exception" not in results, results.get("exception")
    expected_codes = {"garbage": "backend_bad_reply", "dies_mid_reply": "backend_crashed"}
    pids = set()
    for name, fault in results["faults"].items():
        assert fault["started"] == ["FINISHED"], (name, fault)
        assert fault["state"] == "failed" and fault["code"] == expected_codes[name], (name, fault)
        problem, fix = fault["panel_error"]
        assert problem.startswith("The MoMask backend ") and "backend.log" in fix, (name, problem, fix)
        assert fault["unchanged"] and not fault["actions_added"], (name, fault)
        pids.add(fault["pid"])
    assert pids == {None}, "a backend that broke the protocol or died is still running"
    assert "in the middle of a reply" in results["faults"]["dies_mid_reply"]["panel_error"][0]
    healthy = results["healthy"]
    assert healthy["state"] == "applied", healthy
    assert healthy["panel_error"] is None and len(healthy["actions_added"]) == 1, healthy
