"""Property-based fuzz of a live ``python -m backend serve`` (docs/protocol.md, Framing): for any line,
exactly one final reply per request (with its id when the id was readable, ``null`` otherwise), never
``internal``, the process alive after and its stdout only protocol lines.

The suite's run is derandomised and bounded (``max_examples`` below, well under 60 s on a 2-core CPU),
so a failure reproduces as it is; ``HYPOTHESIS_PROFILE=long`` runs many more random examples, and a
failing one prints its ``@reproduce_failure`` blob.
"""

from __future__ import annotations

import itertools
import json
import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from backend.portable import protocol
from tests.backend.service.live import Backend

LONG = os.environ.get("HYPOTHESIS_PROFILE") == "long"
FUZZ = settings(max_examples=3000 if LONG else 60, derandomize=not LONG, deadline=None, print_blob=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
IDS = itertools.count()

# Values a field may hold: the JSON the add-on would send, the extremes of issue 10, and arrays
# both well formed and not.
NUMBERS = st.one_of(st.integers(-2**70, 2**70), st.floats(allow_nan=True, allow_infinity=True),
                    st.sampled_from([0, 1, -1, 4, 16, 196, 2**31, 2**32, 1e-300, 1e300]))
TEXT = st.one_of(st.text(max_size=12), st.sampled_from(["a person walks", "\ud800", "", "fast", "t2m"]))
ARRAYS = st.builds(
    lambda data, dtype, shape: {"__array__": data, "dtype": dtype, "shape": shape},
    st.one_of(st.sampled_from(["", "AAAAAA==", "AACAPwAAAEA=", "!!"]), NUMBERS),
    st.sampled_from(["float32", "int64", "object", "<U5", ">f4", "bool"]),
    st.one_of(st.lists(st.integers(-3, 30), max_size=4), NUMBERS, TEXT))
SCALARS = st.one_of(st.none(), st.booleans(), NUMBERS, TEXT, ARRAYS)
VALUES = st.recursive(SCALARS, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                       st.dictionaries(TEXT, inner, max_size=4)),
                      max_leaves=12)
FIELDS = ["prompts", "prompt", "seconds", "frames", "seed", "variations", "steps", "cond_scale",
          "res_cond_scale", "temperature", "topk", "flow", "precision", "retarget", "rig", "overrides",
          "joints", "fps", "dst_fps", "foot_lock", "in_place", "source", "start", "end", "target",
          "protocol", "client", "prime", "device", "dataset"]
# Every request type but shutdown (which ends the process by design); load and diagnose do real work
# for any fields, so they come less often.
TYPES = st.sampled_from([protocol.HELLO, protocol.MAP_RIG, protocol.RETARGET, protocol.GENERATE,
                         protocol.INPAINT, protocol.CANCEL] * 3 + [protocol.LOAD, protocol.DIAGNOSE, "nope"])
BAD_IDS = st.one_of(st.none(), st.booleans(), st.floats(), st.lists(st.integers(), max_size=2))


@pytest.fixture(scope="module")
def fuzzed(tiny_weights, tmp_path_factory):
    proc = Backend.serve(tiny_weights, tmp_path_factory.mktemp("fuzz") / "backend.log")
    yield proc
    proc.close()          # asserts stdout held protocol lines only


def finals_after(backend: Backend, raw: bytes, request_id) -> list[dict]:
    """Send ``raw``, then a cancel the reader answers in order; the final replies ``raw`` got."""
    seen = len(backend.messages)
    backend.send_raw(raw)
    sentinel = backend.send("cancel", target="nobody")
    backend.wait(sentinel)
    if request_id is not None:
        backend.wait(request_id)          # a lane's reply may come after the sentinel's
    with backend._cond:
        new = backend.messages[seen:]
    finals = [m for m in new if m["type"] in ("result", "error") and m["id"] != sentinel]
    assert backend.proc.poll() is None, f"the service exited after {raw[:200]!r}"
    assert not backend.bad_lines, backend.bad_lines[:2]
    for final in finals:
        assert final["type"] == "result" or final["error"]["code"] != protocol.INTERNAL, (raw[:300], final)
    return finals


@FUZZ
@given(request_type=TYPES, fields=st.dictionaries(st.sampled_from(FIELDS), VALUES, max_size=5),
       good_id=st.booleans(), bad_id=BAD_IDS, surrogate=st.booleans())
def test_any_request_gets_exactly_one_final_reply_with_its_id(fuzzed, request_type, fields, good_id, bad_id,
                                                               surrogate):
    request_id = f"fz-{next(IDS)}" + ("\ud800" if surrogate else "") if good_id else bad_id
    if request_type == protocol.LOAD:     # keep the fuzzed process on its tiny weights and CPU
        fields = {k: v for k, v in fields.items() if k not in ("device", "dataset")}
    message = {"id": request_id, "type": request_type, **fields}
    raw = json.dumps(message, allow_nan=True).encode("utf-8").replace(b"\n", b" ") + b"\n"
    expected = request_id if good_id else None
    finals = finals_after(fuzzed, raw, expected)
    assert [f["id"] for f in finals] == [expected], (raw[:300], finals)


@FUZZ
@given(raw=st.binary(max_size=200))
def test_any_bytes_get_at_most_one_reply_and_the_service_lives_on(fuzzed, raw):
    line = raw.replace(b"\n", b" ") + b"\n"
    finals = finals_after(fuzzed, line, None)
    assert len(finals) == (0 if not line.strip() else 1), (line, finals)
