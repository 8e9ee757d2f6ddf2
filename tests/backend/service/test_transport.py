"""The transport as the add-on sees it: malformed lines, lanes and cancel on a live service
(backend/service/transport.py, docs/protocol.md)."""

from __future__ import annotations

import time

from tests.backend.service.live import TIMEOUT


def test_malformed_requests_get_errors_and_the_process_keeps_serving(backend):
    lines = (b"this is not json\n", b"[1, 2, 3]\n", b'{"type": "generate"}\n',
             b'{"id": null, "type": "hello"}\n')
    for line in lines:
        before = len(backend.replies(None))
        backend.send_raw(line)
        deadline = time.monotonic() + 30
        while len(backend.replies(None)) == before:
            assert time.monotonic() < deadline, f"no error reply to {line!r}"
            time.sleep(0.02)
        assert backend.replies(None)[-1]["error"]["code"] == "bad_request"
    backend.send_raw(b'{"id": "x-1", "type": "teleport"}\n')
    error = backend.wait("x-1")[1]["error"]
    assert error["code"] == "bad_request" and "teleport" in error["problem"] and error["fix"]
    backend.send_raw(b'{"id": "x-2"}\n')
    assert "no \"type\"" in backend.wait("x-2")[1]["error"]["problem"]

    bad = [dict(prompts=[]), dict(prompts=["walk"], frames=["long"]), dict(prompts=["walk"], frames=[1000]),
           dict(prompts=["walk"], frames=[40], steps=0), dict(prompts=["walk"], frames=[40], seconds=[2]),
           dict(prompts=["walk"], frames=[40], seed=-3), dict(prompts=["walk"], frames=[40], topk="all")]
    for fields in bad:
        error = backend.wait(backend.send("generate", **fields))[1]
        assert error["type"] == "error" and error["error"]["code"] == "bad_input", (fields, error)
        assert error["error"]["problem"] and error["error"]["fix"]
    after = backend.call("generate", prompts=["a person waves"], frames=[16], steps=2)
    assert after["takes"][0]["frames"] == 16


def test_cancel_stops_a_running_generation_at_the_next_step_and_the_next_job_works(slow_backend):
    backend = slow_backend
    job = backend.send("generate", prompts=["a person dances"], frames=[40], steps=10, seed=0)
    deadline = time.monotonic() + TIMEOUT
    while not any(m["type"] == "progress" and m["stage"] == "base" for m in backend.replies(job)):
        assert time.monotonic() < deadline
        time.sleep(0.01)
    cancel = backend.send("cancel", target=job)
    events, final = backend.wait(job)
    assert final["type"] == "error" and final["error"]["code"] == "cancelled"
    assert events[-1]["done"] < events[-1]["total"]
    assert not [e for e in events if e["stage"] in ("residual", "decode")], "it ran on after the cancel"
    assert backend.wait(cancel)[1]["data"] == {"target": job, "was": "running", "cancelled": True}

    after = backend.call("generate", prompts=["a person dances"], frames=[24], steps=2, seed=0)
    assert after["takes"][0]["joints"].shape == (24, 22, 3)


def test_cancel_a_queued_job_answers_at_once_and_unknown_targets_are_fine(slow_backend):
    backend = slow_backend
    first = backend.send("generate", prompts=["a person sits down"], frames=[16], steps=4)
    second = backend.send("generate", prompts=["a person stands up"], frames=[16], steps=4)
    cancel = backend.send("cancel", target=second)
    _, cancelled = backend.wait(second)
    assert cancelled["error"]["code"] == "cancelled"
    assert backend.wait(cancel)[1]["data"]["was"] == "queued"
    assert not [m for m in backend.replies(first) if m["type"] in ("result", "error")], \
        "the queued job should be answered before the running one finishes"
    assert backend.wait(first)[1]["type"] == "result"
    assert backend.wait(second)[0] == [] or all(e["stage"] == "queued" for e in backend.wait(second)[0])
    unknown = backend.call("cancel", target="nobody")
    assert unknown == {"target": "nobody", "was": "unknown", "cancelled": False}
