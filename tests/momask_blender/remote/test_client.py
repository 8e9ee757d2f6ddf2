"""The add-on's backend client against a scripted fake backend (fake_backend.py) that misbehaves in
one way per case: every call ends quickly with a clear BackendError (or succeeds, for harmless
noise), the reader keeps reading, and the next call gets a healthy backend, restarted if the broken
one was stopped. Plain Python: client.py needs no bpy."""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path

import fake_backend
import pytest
from client_harness import client, fake_client, stop_and_check_no_leak

CALL_TIMEOUT_S = 10.0
#: Well under the timeout: a failure is noticed, not waited out.
QUICK_S = 5.0


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def line(message: dict) -> dict:
    return {"line": json.dumps(message).replace('"@ID@"', "@ID@")}


RESULT = line({"id": "@ID@", "type": "result", "data": {"takes": []}})

# name: (actions answering 'generate', error code expected, whether the backend is restarted after)
BROKEN = {
    "text_line": ([{"line": "Traceback (most recent call last):"}], client.BAD_REPLY, True),
    "not_utf8": ([{"bytes": b64(b'{"id": 2, "type": "result", "data": {"x": "\xff\xfe"}}\n')}],
                 client.BAD_REPLY, True),
    "invalid_json": ([{"line": '{"id": @ID@, "type": "result", "data": {'}], client.BAD_REPLY, True),
    "json_not_an_object": ([{"line": "[1, 2, 3]"}], client.BAD_REPLY, True),
    "unknown_reply_type": ([{"line": '{"id": @ID@, "type": "banana"}'}], client.BAD_REPLY, True),
    "id_of_wrong_type": ([{"line": '{"id": [1], "type": "result", "data": {}}'}], client.BAD_REPLY, True),
    "error_about_an_unreadable_request": (
        [line({"id": None, "type": "error", "error": {"code": "bad_request", "problem": "Not JSON."}})],
        client.BAD_REPLY, True),
    "exits_without_answering": ([{"exit": 3}], client.CRASHED, True),
    "partial_line_then_exit": ([{"bytes": b64(b'{"id": 2, "type": "res')}, {"exit": 0}],
                               client.CRASHED, True),
    "killed_mid_reply": ([line({"id": "@ID@", "type": "progress", "stage": "base", "done": 1, "total": 4}),
                          {"bytes": b64(b'{"id": 2, "type": "result", "data": {"takes": [')}, {"kill": True}],
                         client.CRASHED, True),
    "closes_stdout_and_lives_on": ([{"close_stdout": True}, {"sleep": 60}], client.CRASHED, True),
    "garbage_flood": ([{"repeat": 100_000, "line": "x" * 100}], client.BAD_REPLY, True),
    # The call is answered, badly: that call fails, the stream is still in step and the process serves on.
    "result_data_not_an_object": ([{"result": [1, 2]}], client.BAD_REPLY, False),
    "malformed_array_in_result": (
        [{"result": {"joints": {"__array__": "!!", "dtype": "float32", "shape": [2]}}}],
        client.BAD_REPLY, False),
    "error_reply_without_details": ([line({"id": "@ID@", "type": "error", "error": "boom"})], "error", False),
}


@pytest.fixture
def make(tmp_path):
    made = []

    def make_client(scenario: dict, max_line_bytes: int | None = None):
        backend = fake_client(tmp_path / f"fake{len(made)}", scenario)
        if max_line_bytes is not None:
            backend.max_line_bytes = max_line_bytes
        made.append(backend)
        return backend

    yield make_client
    for backend in made:
        stop_and_check_no_leak(backend)


def fails_quickly(backend, message_type: str = "generate") -> client.BackendError:
    started = time.monotonic()
    with pytest.raises(client.BackendError) as info:
        backend.call(message_type, timeout=CALL_TIMEOUT_S, prompts=["a person walks"])
    assert time.monotonic() - started < QUICK_S, f"noticed only after {time.monotonic() - started:.1f} s"
    return info.value


def heal(backend) -> None:
    fake_backend.write_scenario(Path(backend.config.python).parent, {})


@pytest.mark.parametrize("name", list(BROKEN))
def test_a_broken_reply_fails_the_call_clearly_and_the_next_call_works(make, name: str) -> None:
    actions, code, restarted = BROKEN[name]
    backend = make({"generate": actions})
    backend.ensure_started()
    pid = backend.pid
    error = fails_quickly(backend)
    assert error.code == code, (error.code, error.problem)
    assert error.problem.endswith(".") and "Fix:" not in error.problem
    if code == client.BAD_REPLY:
        assert "sent" in error.problem and backend.config.log_path in error.fix, error
    if code == client.CRASHED:
        assert "stopped unexpectedly" in error.problem and f"Log: {backend.config.log_path}" in error.fix
    heal(backend)
    assert backend.call("diagnose", timeout=CALL_TIMEOUT_S) == {"ok": True, "type": "diagnose"}
    assert (backend.pid != pid) == restarted, "restarted" if not restarted else "not restarted"


def test_a_reply_cut_off_by_a_crash_says_so(make) -> None:
    backend = make({"generate": BROKEN["killed_mid_reply"][0]})
    error = fails_quickly(backend)
    assert "(exit code -9) in the middle of a reply." in error.problem, error.problem


def test_an_endless_line_is_not_held_in_memory(make) -> None:
    """A backend printing without a newline is stopped once the line passes the bound, long before
    it ends (a real 1 GB line at the default bound would take as long to print as to test)."""
    backend = make({"generate": [{"huge": 256 << 20}]}, max_line_bytes=1 << 20)
    error = fails_quickly(backend)
    assert error.code == client.BAD_REPLY and "a line longer than 1 MB" in error.problem
    heal(backend)
    assert backend.call("diagnose", timeout=CALL_TIMEOUT_S)["ok"]


def test_a_line_within_the_bound_is_read(make) -> None:
    big = "y" * (600 << 10)
    backend = make({"generate": [{"result": {"text": big}}]}, max_line_bytes=1 << 20)
    assert backend.call("generate", timeout=CALL_TIMEOUT_S)["text"] == big


def test_noise_is_ignored_and_the_process_serves_on(make) -> None:
    """Blank lines, log lines, replies for ids nobody waits for and a second final reply are noise:
    the call gets its one answer, and the duplicate is not taken for the next call's."""
    backend = make({"generate": [
        {"line": ""},
        {"line": "   "},
        line({"id": 9999, "type": "result", "data": {"stale": True}}),
        line({"id": "@ID@x", "type": "progress", "stage": "base", "done": 1, "total": 2}),
        line({"id": None, "type": "log", "level": "warning", "message": "slow disk"}),
        line({"id": "@ID@", "type": "result", "data": {"n": 1}}),
        line({"id": "@ID@", "type": "result", "data": {"n": 2}}),
        line({"id": "@ID@", "type": "error", "error": {"code": "internal", "problem": "late", "fix": ""}}),
    ]})
    assert backend.call("generate", timeout=CALL_TIMEOUT_S) == {"n": 1}
    pid = backend.pid
    assert backend.call("diagnose", timeout=CALL_TIMEOUT_S) == {"ok": True, "type": "diagnose"}
    assert backend.pid == pid
    assert any("slow disk" in entry for entry in backend._recent_logs)


def test_startup_output_before_hello_is_tolerated(make) -> None:
    backend = make({"startup": [{"line": "Intel MKL WARNING: something about the CPU."}, {"line": ""}]})
    assert backend.ensure_started()["backend_version"] == "fake"
    assert backend.call("diagnose", timeout=CALL_TIMEOUT_S)["ok"]


def test_startup_output_glued_to_the_hello_answer_fails_the_start_at_once(make) -> None:
    """Text without a newline, then the hello reply: one line that may be a reply, not chatter."""
    backend = make({"startup": [{"bytes": b64(b"loading...")}]})
    started = time.monotonic()
    with pytest.raises(client.BackendError) as info:
        backend.ensure_started()
    assert time.monotonic() - started < QUICK_S
    assert info.value.code == client.BAD_REPLY


def test_endless_startup_output_is_not_a_backend(make) -> None:
    backend = make({"startup": [{"repeat": client.MAX_STARTUP_LINES + 1, "line": "hello there"}]})
    started = time.monotonic()
    with pytest.raises(client.BackendError) as info:
        backend.ensure_started()
    assert time.monotonic() - started < QUICK_S
    assert info.value.code == client.BAD_REPLY


ABSURD = [
    {"stage": "base", "done": 1, "total": 4, "fraction": float("nan")},
    {"stage": "base", "done": 3, "total": 4, "fraction": -7},
    {"stage": "base", "fraction": float("inf")},
    {"stage": "base", "done": 10**400, "total": 3},
    {"stage": "base", "done": -5, "total": 0},
    {"stage": {"not": "a string"}, "fraction": "half"},
    {"stage": "residual", "fraction": 0.5},
    {"stage": "residual", "fraction": 0.2},  # backwards
    {"stage": "decode", "done": 2, "total": 1},
    {"stage": "s" * 10_000, "fraction": 1e308 * 10},
]


def test_absurd_progress_keeps_the_bar_within_0_1_and_monotone(make) -> None:
    actions = [{"line": json.dumps({"id": 0, "type": "progress", **event}).replace('"id": 0', '"id": @ID@')}
               for event in ABSURD]
    backend = make({"generate": [*actions, RESULT]})
    seen: list[dict] = []
    assert backend.call("generate", timeout=CALL_TIMEOUT_S, on_progress=seen.append) == {"takes": []}
    fractions = [event["fraction"] for event in seen]
    assert fractions, "no progress reached the caller"
    assert all(isinstance(f, float) and 0.0 <= f <= 1.0 for f in fractions), fractions
    assert fractions == sorted(fractions), fractions
    stages = [event.get("stage", "") for event in seen]
    assert all(isinstance(stage, str) and len(stage) <= 40 for stage in stages), stages


def test_a_progress_flood_is_coalesced(make) -> None:
    """100 000 progress events: the call still ends with its result, and the queue never held more
    than the newest one (the caller saw far fewer than were sent)."""
    event = '{"id": @ID@, "type": "progress", "stage": "base", "done": 1, "total": 2}'
    flood = {"repeat": 100_000, "line": event}
    backend = make({"generate": [flood, RESULT]})
    seen: list[dict] = []

    def slow_panel(event: dict) -> None:
        seen.append(event)
        time.sleep(0.001)

    assert backend.call("generate", timeout=60, on_progress=slow_panel) == {"takes": []}
    assert 0 < len(seen) < 100_000


def test_a_silent_backend_times_out_and_the_reader_lives_on(make) -> None:
    backend = make({"generate": [{"sleep": 30}]})
    backend.ensure_started()
    with pytest.raises(client.BackendError) as info:
        backend.call("generate", timeout=0.5)
    assert info.value.code == client.TIMEOUT and backend.config.log_path in info.value.fix
