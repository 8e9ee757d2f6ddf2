"""The add-on's client against a backend run over a real ssh connection (a throwaway sshd on 127.0.0.1,
tests/momask_blender/remote/sshd.py): the protocol runs unchanged, a lost connection fails the job
clearly and the next request reconnects, and each broken command gets its own message and fix."""

from __future__ import annotations

import os
import platform
import signal
import subprocess
import threading
import time
import uuid

import numpy as np
import pytest
import sshd
from client_harness import REPO, client, stop_and_check_no_leak

pytestmark = pytest.mark.skipif(sshd.missing() is not None, reason=sshd.missing() or "")

messages = client.load_backend_module("messages", REPO)
REQUEST = messages.GenerateRequest(prompts=("a person walks forward",), seconds=(2.0,), seed=3).wire_fields()
#: What a remote start may take here (ssh login + importing torch), and the bound on a failure.
CALL_TIMEOUT_S = 120.0
FAILS_WITHIN_S = 15.0


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with sshd.running(tmp_path_factory.mktemp("sshd")) as running:
        yield running


def remote_client(tmp_path, command: str):
    return client.BackendClient(client.BackendConfig(
        python="", weights="", device="", remote=command, root=str(REPO),
        log_path=str(tmp_path / "logs" / "backend.log")))


def no_process_left(marker: str) -> None:
    assert client.wait_for(lambda: not sshd.processes_marked(marker), 10.0), \
        f"the remote backend outlived its connection: {sshd.processes_marked(marker)}"


def start_slow_job(backend) -> tuple[dict, threading.Thread]:
    """A generation on a thread; returns once it is decoding (its outcome lands in the dict)."""
    outcome: dict = {}
    decoding = threading.Event()

    def run() -> None:
        try:
            outcome["data"] = backend.call(
                "generate", timeout=CALL_TIMEOUT_S, on_submit=lambda call: outcome.update(call=call),
                on_progress=lambda event: event.get("stage") == "base" and decoding.set(), **REQUEST)
        except client.BackendError as exc:
            outcome["error"] = exc
        decoding.set()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert decoding.wait(CALL_TIMEOUT_S) and "error" not in outcome, outcome.get("error")
    return outcome, thread


def test_a_generation_over_ssh_is_the_one_a_local_backend_makes(server, tiny_weights, tmp_path) -> None:
    # A remote shell that greets on stdout before the backend starts is tolerated.
    remote = remote_client(tmp_path, server.backend_command(tiny_weights, before="echo Welcome to gpu-box; "))
    local = client.BackendClient(client.BackendConfig(
        python=str(REPO / ".venv" / "bin" / "python"), weights=str(tiny_weights), device="cpu",
        root=str(REPO), log_path=str(tmp_path / "local.log")))
    try:
        started = time.monotonic()
        hello = remote.ensure_started()
        hello_s = time.monotonic() - started
        assert remote.remote and hello["host"] == platform.node()
        over_ssh = remote.call("generate", timeout=CALL_TIMEOUT_S, **REQUEST)
        here = local.call("generate", timeout=CALL_TIMEOUT_S, **REQUEST)
    finally:
        local.stop(timeout=2.0)  # (the leak check counts every reader thread: this one's too)
        stop_and_check_no_leak(remote)
        stop_and_check_no_leak(local)
    joints = over_ssh["takes"][0]["joints"]
    assert joints.shape[1:] == (22, 3) and joints.shape[0] > 10
    np.testing.assert_array_equal(joints, here["takes"][0]["joints"])
    print(f"hello over ssh in {hello_s:.2f} s")


@pytest.mark.parametrize("kill", ["ssh_client", "sshd_session"])
def test_a_connection_lost_mid_job_says_so_and_the_next_request_reconnects(
        server, tiny_weights, tmp_path, kill: str) -> None:
    marker = uuid.uuid4().hex
    backend = remote_client(tmp_path, server.backend_command(tiny_weights, step_delay=0.3, marker=marker))
    try:
        outcome, thread = start_slow_job(backend)
        first_pid = backend.pid
        killed = [first_pid] if kill == "ssh_client" else server.sessions()
        assert killed and all(killed)
        lost_at = time.monotonic()
        for pid in killed:
            os.kill(pid, signal.SIGKILL)
        thread.join(FAILS_WITHIN_S)
        assert not thread.is_alive(), "the job still waits on a dead connection"
        assert time.monotonic() - lost_at < FAILS_WITHIN_S
        error = outcome.get("error")
        assert error is not None and error.code == client.CRASHED, outcome
        assert "connection to the backend was lost" in error.problem
        assert "Nothing was written" in error.problem
        assert "reconnects" in error.fix
        no_process_left(marker)
        data = backend.call("generate", timeout=CALL_TIMEOUT_S, **REQUEST)  # the next request reconnects
        assert data["takes"][0]["joints"].shape[1:] == (22, 3)
        assert backend.pid not in (None, first_pid)
    finally:
        stop_and_check_no_leak(backend)
    no_process_left(marker)


def test_cancel_and_free_memory_work_remotely(server, tiny_weights, tmp_path) -> None:
    marker = uuid.uuid4().hex
    backend = remote_client(tmp_path, server.backend_command(tiny_weights, step_delay=0.3, marker=marker))
    try:
        outcome, thread = start_slow_job(backend)
        backend.cancel(outcome["call"].id)
        thread.join(FAILS_WITHIN_S)
        assert outcome["error"].code == "cancelled", outcome
        assert backend.running, "cancelling a job stopped the backend"
    finally:
        started = time.monotonic()
        stop_and_check_no_leak(backend)  # Free Memory
        stop_s = time.monotonic() - started
    no_process_left(marker)
    assert stop_s < 8.0, f"stopping the remote backend took {stop_s:.1f} s"


def fails_fast(tmp_path, command: str) -> client.BackendError:
    backend = remote_client(tmp_path, command)
    started = time.monotonic()
    try:
        with pytest.raises(client.BackendError) as err:
            backend.call("generate", timeout=CALL_TIMEOUT_S, **REQUEST)
    finally:
        stop_and_check_no_leak(backend)
    assert time.monotonic() - started < FAILS_WITHIN_S, "the failure took too long to show"
    return err.value


def test_a_program_that_is_not_found(tmp_path) -> None:
    error = fails_fast(tmp_path, "momask-no-such-ssh gpu-box python -m backend serve")
    assert error.code == client.NOT_STARTED
    assert "'momask-no-such-ssh' was not found" in error.problem and "full path" in error.fix


def test_an_unreachable_host_shows_what_ssh_said(server, tmp_path) -> None:
    error = fails_fast(tmp_path, server.command("true", port=sshd.free_port()))
    assert error.code == client.NOT_STARTED
    assert "exited before the backend answered (exit code 255)" in error.problem
    assert "Connection refused" in error.problem, error.problem
    assert "without a password prompt" in error.fix


def test_a_refused_login_shows_what_ssh_said(server, tmp_path) -> None:
    stranger = tmp_path / "not_authorized"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(stranger)], check=True,
                   timeout=30)
    error = fails_fast(tmp_path, server.command("true", key=stranger))
    assert "exit code 255" in error.problem and "Permission denied" in error.problem, error.problem


def test_a_wrong_remote_path_shows_the_remote_shell_s_message(server, tmp_path) -> None:
    serve = "cd /opt/no-momask-here && exec .venv/bin/python -m backend serve"
    error = fails_fast(tmp_path, server.command(serve))
    assert "exited before the backend answered" in error.problem
    assert "/opt/no-momask-here: No such file or directory" in error.problem, error.problem


def test_a_command_that_exits_at_once_names_what_it_printed(server, tmp_path) -> None:
    # an earlier failed start leaves "Connection refused" in the log
    fails_fast(tmp_path, server.command("true", port=sshd.free_port()))
    error = fails_fast(tmp_path, server.command("echo 'Welcome to gpu-box'; exit 3"))
    assert "exited before the backend answered (exit code 3)" in error.problem
    assert "Welcome to gpu-box" in error.problem
    assert "Connection refused" not in error.problem, "an earlier start's stderr was quoted"


def test_text_that_is_not_the_protocol_on_stdout_stops_the_command_at_once(server, tmp_path) -> None:
    error = fails_fast(tmp_path, server.command("echo '{ motd: maintenance tonight }'; sleep 60"))
    assert error.code == client.BAD_REPLY
    assert "not the MoMask protocol" in error.problem and "maintenance tonight" in error.problem
    assert "~/.bashrc" in error.fix
