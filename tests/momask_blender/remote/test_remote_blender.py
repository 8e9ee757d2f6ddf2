"""A remote backend (an ssh command to a throwaway sshd on 127.0.0.1) through the real Generate, Cancel
and Free Memory buttons in real Blender 4.2, 4.5 and 5.0 (tests/blender/remote_blender.py): keys as a
local backend writes them, a connection killed mid-job writes nothing and the next Generate reconnects,
online access off starts nothing, and each broken command is a clear message."""

from __future__ import annotations

import json
import uuid

import pytest
import sshd

from tests.conftest import BLENDER_VERSIONS, assert_cases_passed, run_blender

pytestmark = pytest.mark.skipif(sshd.missing() is not None, reason=sshd.missing() or "")

EXPECTED_CASES = {
    "generate_over_ssh_writes_the_keys_a_local_backend_writes",
    "connection_killed_mid_job_writes_nothing_and_next_generate_reconnects",
    "cancel_works_remotely",
    "online_access_off_refuses_and_starts_nothing",
    "a_program_that_is_not_found",
    "a_command_that_exits_at_once_shows_ssh_stderr",
    "non_protocol_text_on_stdout_is_a_clear_error",
}
#: A failed remote start must show within this (the hello timeout is for a slow network, not this).
FAILS_WITHIN_S = 15.0


@pytest.mark.blender
@pytest.mark.parametrize("version", BLENDER_VERSIONS)
def test_remote_backend_in_blender(version: str, tiny_weights, tmp_path) -> None:
    marker = uuid.uuid4().hex
    with sshd.running(tmp_path / "sshd") as server:
        commands = {
            "backend": server.backend_command(tiny_weights, marker=marker),
            "slow": server.backend_command(tiny_weights, step_delay=0.3, marker=marker),
            "not_found": "momask-no-such-ssh gpu-box python -m backend serve",
            "unreachable": server.command("true", port=sshd.free_port()),
            "chatter": server.command("echo '{ motd: maintenance tonight }'; sleep 60"),
        }
        results = run_blender(version, "remote_blender.py", str(tiny_weights), json.dumps(commands),
                              timeout=600, env={"MOMASK_USER_DIR": str(tmp_path / "user")})
        found = assert_cases_passed(results, EXPECTED_CASES)
        assert not sshd.processes_marked(marker), "a remote backend outlived Blender's session"
    for name in ("a_program_that_is_not_found", "a_command_that_exits_at_once_shows_ssh_stderr",
                 "non_protocol_text_on_stdout_is_a_clear_error"):
        assert found[name]["values"]["seconds"] < FAILS_WITHIN_S, (name, found[name]["values"])
    lost = found["connection_killed_mid_job_writes_nothing_and_next_generate_reconnects"]["values"]
    assert lost["noticed_s"] < 5.0, lost
    print(version, {name: found[name]["values"] for name in found if found[name]["values"]})
