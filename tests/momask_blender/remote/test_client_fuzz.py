"""Property-based fuzzing of the add-on's backend client against a fake backend (fake_backend.py) that
answers ``generate`` with generated lines: random bytes, random JSON, protocol messages with right
and wrong ids and absurd numbers, lines cut off, an exit or a kill at a random point, or silence.

Whatever it sends, the call ends (a result or a BackendError, never another exception) within a
bound, the progress shown stays within 0..1 and never goes back, the client's own error for a bug
in its reader never shows, and stopping the client leaves no process and no reader thread.

Bounded by default (about 20 s): ``MOMASK_FUZZ_EXAMPLES`` examples (default 40) from the fixed seed
``MOMASK_FUZZ_SEED`` (default 0), so a failure reproduces by running it again; Hypothesis also
prints the failing example and a ``@reproduce_failure`` blob. A longer run on demand::

    MOMASK_FUZZ_EXAMPLES=2000 MOMASK_FUZZ_SEED=7 .venv/bin/python -m pytest -p no:cacheprovider \\
        tests/momask_blender/remote/test_client_fuzz.py
"""

from __future__ import annotations

import base64
import json
import math
import os
import time

from client_harness import client, fake_client, stop_and_check_no_leak
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

EXAMPLES = int(os.environ.get("MOMASK_FUZZ_EXAMPLES", "40"))
SEED = int(os.environ.get("MOMASK_FUZZ_SEED", "0"))
#: A silent backend is waited for this long; every other call must end by itself well before.
CALL_TIMEOUT_S = 1.0
BOUND_S = CALL_TIMEOUT_S + 4.0

ID = "@ID@"  # the fake puts the request's id here

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
ids = st.sampled_from([ID, ID, ID, None, 0, -1, 10**30, "7", True, 1.5, [1]])
numbers = st.one_of(st.integers(), st.floats(), st.none(), st.text(max_size=3), st.just(10**400))


def _message(fields: dict) -> str:
    text = json.dumps(fields, allow_nan=True, default=str)
    return text.replace(json.dumps(ID), ID)


messages = st.one_of(
    st.builds(lambda i, stage, done, total, fraction: {"id": i, "type": "progress", "stage": stage,
                                                      "done": done, "total": total, "fraction": fraction},
              ids, st.one_of(st.sampled_from(["base", "residual", "queued"]), json_values), numbers, numbers,
              numbers),
    st.builds(lambda i, data: {"id": i, "type": "result", "data": data}, ids,
              st.one_of(st.dictionaries(st.text(max_size=8), json_values, max_size=3), json_values)),
    st.builds(lambda i, error: {"id": i, "type": "error", "error": error}, ids,
              st.one_of(st.fixed_dictionaries({"code": json_values, "problem": json_values}), json_values)),
    st.builds(lambda i, text: {"id": i, "type": "log", "level": "info", "message": text}, ids, json_values),
    st.builds(lambda i, kind: {"id": i, "type": kind}, ids, st.text(max_size=10)),
)

lines = st.one_of(
    messages.map(lambda m: {"line": _message(m)}),
    json_values.map(lambda v: {"line": json.dumps(v, allow_nan=True)}),
    st.binary(max_size=80).map(lambda b: {"bytes": base64.b64encode(b).decode()}),
    messages.flatmap(lambda m: st.integers(0, len(_message(m))).map(  # a line cut short, no newline
        lambda cut: {"bytes": base64.b64encode(_message(m).encode()[:cut]).decode()})),
    st.just({"line": ""}),
)
endings = st.sampled_from([
    [{"line": '{"id": @ID@, "type": "result", "data": {"ok": true}}'}],
    [{"line": '{"id": @ID@, "type": "error", "error": {"code": "bad_input", "problem": "No.", "fix": ""}}'}],
    [{"exit": 0}],
    [{"exit": 1}],
    [{"kill": True}],
    [{"close_stdout": True}],
    [],  # silence: the call times out
])


@seed(SEED)
@settings(max_examples=EXAMPLES, deadline=None, database=None, print_blob=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(startup=st.lists(lines, max_size=2), answer=st.lists(lines, max_size=6), ending=endings)
def test_every_call_ends_whatever_the_backend_sends(tmp_path_factory, startup, answer, ending) -> None:
    backend = fake_client(tmp_path_factory.mktemp("fuzz"), {"startup": startup, "generate": answer + ending})
    shown: list[float] = []
    started = time.monotonic()
    hello_timeout, client.HELLO_TIMEOUT_S = client.HELLO_TIMEOUT_S, CALL_TIMEOUT_S  # a lost hello: fail fast
    try:
        try:
            data = backend.call("generate", timeout=CALL_TIMEOUT_S,
                                on_progress=lambda event: shown.append(event["fraction"]))
        except client.BackendError as exc:
            assert exc.code and exc.problem, exc
            assert "could not handle a reply" not in exc.problem, exc.problem  # a bug in the reader
        else:
            assert isinstance(data, dict)
        took = time.monotonic() - started
        # (a lost hello waits the timeout once, then the call itself may wait it once more)
        assert took < BOUND_S + CALL_TIMEOUT_S, f"the call took {took:.1f} s"
        assert all(isinstance(f, float) and math.isfinite(f) and 0.0 <= f <= 1.0 for f in shown), shown
        assert shown == sorted(shown), shown
    finally:
        client.HELLO_TIMEOUT_S = hello_timeout
        stop_and_check_no_leak(backend)
