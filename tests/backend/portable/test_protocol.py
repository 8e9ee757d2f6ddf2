"""The wire format: what the add-on and the backend exchange must survive the trip unchanged, and a
bad line must be refused with a message that says what is wrong."""

from __future__ import annotations

import base64
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from backend.portable import protocol
from backend.portable.errors import CheckpointError

REPO = Path(__file__).resolve().parents[3]


def round_trip(message: dict) -> dict:
    line = protocol.encode_message(message)
    assert line.endswith(b"\n") and line.count(b"\n") == 1, "one message = one line"
    return protocol.decode_message(line)


@pytest.mark.parametrize("dtype", ["float32", "int64", "float64", "uint8", "bool"])
def test_arrays_round_trip_bit_exact(dtype):
    rng = np.random.default_rng(0)
    array = (rng.normal(size=(7, 22, 3)) * 100).astype(dtype)
    decoded = round_trip({"id": 1, "type": "result", "data": {"joints": array}})["data"]["joints"]
    assert decoded.dtype == np.dtype(dtype) and decoded.shape == array.shape
    assert decoded.tobytes() == array.tobytes()
    decoded[0] = 0            # decoded arrays are ordinary writable arrays


def test_non_contiguous_and_big_endian_arrays_are_sent_as_their_values():
    base = np.arange(24, dtype=np.float32).reshape(4, 6)
    view = base[:, ::2]
    assert np.array_equal(round_trip({"id": 1, "type": "result", "a": view})["a"], view)
    big = np.arange(5, dtype=">i8")
    assert round_trip({"id": 1, "type": "result", "a": big})["a"].tolist() == [0, 1, 2, 3, 4]


def test_array_encoding_is_the_documented_one():
    array = np.array([1.5, -2], np.float32)
    wire = json.loads(protocol.encode_message({"id": "a", "type": "result", "x": array}))
    assert wire["x"]["dtype"] == "float32" and wire["x"]["shape"] == [2]
    assert np.frombuffer(base64.b64decode(wire["x"]["__array__"]), "<f4").tolist() == [1.5, -2.0]


def test_numpy_scalars_tuples_and_non_finite_floats_become_plain_json():
    message = {"id": 3, "type": "result", "data": {"n": np.int64(7), "f": np.float32(0.5), "t": (1, 2),
                                                   "nan": float("nan"), "text": "marche vers l'avant ✓"}}
    data = round_trip(message)["data"]
    assert data == {"n": 7, "f": 0.5, "t": [1, 2], "nan": None, "text": "marche vers l'avant ✓"}


@pytest.mark.parametrize("line, words", [
    (b"{not json", "not valid JSON"),
    (b"[1, 2]", "JSON object"),
    (b'{"type": "generate"}', "no \"id\""),
    (b'{"id": 1}', "no \"type\""),
    (b'{"id": 1, "type": "fly"}', "Unknown message type 'fly'"),
    (b'{"id": true, "type": "hello"}', "id must be"),
    (b"\xff\xfe", "not UTF-8"),
    (b"   \n", "empty line"),
])
def test_bad_lines_are_refused_with_a_clear_message(line, words):
    with pytest.raises(protocol.ProtocolError) as info:
        protocol.decode_message(line, kind="request")
    assert words in info.value.problem
    assert info.value.fix and info.value.code == "bad_request"


def test_an_unknown_type_still_reports_the_request_id_so_the_error_can_be_routed():
    with pytest.raises(protocol.ProtocolError) as info:
        protocol.decode_message('{"id": "job-9", "type": "fly"}', kind="request")
    assert info.value.request_id == "job-9"
    reply = protocol.error_from_exception(info.value.request_id, info.value)
    assert reply["id"] == "job-9" and reply["error"]["code"] == "bad_request"


def test_requests_and_replies_are_told_apart():
    with pytest.raises(protocol.ProtocolError):
        protocol.decode_message('{"id": 1, "type": "result"}', kind="request")
    with pytest.raises(protocol.ProtocolError):
        protocol.decode_message('{"id": 1, "type": "generate"}', kind="reply")
    assert protocol.decode_message('{"id": null, "type": "log", "level": "info", "message": "hi"}',
                                   kind="reply")["message"] == "hi"


def test_malformed_arrays_are_refused():
    good = protocol.encode_array(np.zeros((2, 3), np.float32))
    for bad in ({**good, "shape": [4, 3]}, {**good, "dtype": "complex128"}, {**good, "__array__": "@@"}):
        with pytest.raises(protocol.ProtocolError):
            protocol.decode_message(json.dumps({"id": 1, "type": "retarget", "joints": bad}))


def test_error_replies_carry_problem_and_fix():
    failure = CheckpointError("No checkpoints in /w.", "Run `python build.py weights`.")
    reply = protocol.error_from_exception(5, failure)
    assert reply == {"id": 5, "type": "error", "error": {
        "code": "bad_weights", "problem": "No checkpoints in /w.", "fix": "Run `python build.py weights`."}}
    crash = protocol.error_from_exception(6, KeyError("boom"), "/tmp/backend.log")["error"]
    assert crash["code"] == "internal" and "KeyError" in crash["problem"]
    assert "/tmp/backend.log" in crash["fix"]
    oom = protocol.error_from_exception(7, RuntimeError("CUDA out of memory. Tried to allocate 2 GiB"))
    assert oom["error"]["code"] == "out_of_memory"


def test_progress_events_carry_a_fraction():
    event = protocol.progress("j", "base", 3, 16)
    assert event["fraction"] == round(3 / 16, 4) and event["type"] == "progress"
    assert protocol.progress("j", "done", 5, 0)["fraction"] == 1.0


def test_the_module_loads_by_path_without_numpy_or_the_backend_package():
    """Blender loads protocol.py by file path; it must need nothing but the stdlib."""
    script = f"""
import sys, importlib.util
sys.modules['numpy'] = None          # make `import numpy` fail
spec = importlib.util.spec_from_file_location(
    'momask_protocol', {str(REPO / 'backend' / 'portable' / 'protocol.py')!r})
mod = importlib.util.module_from_spec(spec)
sys.modules['momask_protocol'] = mod   # as the add-on's load_backend_module does (dataclasses need it)
spec.loader.exec_module(mod)
arr = {{"__array__": "AACAPwAAAEAAAEBAAACAQA==", "dtype": "float32", "shape": [2, 2]}}
msg = mod.decode_message(mod.encode_message({{"id": 1, "type": "result", "a": arr}}))
assert msg["a"] == [[1.0, 2.0], [3.0, 4.0]], msg
assert 'backend' not in sys.modules
print("ok", mod.PROTOCOL_VERSION)
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd="/")
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["ok", str(protocol.PROTOCOL_VERSION)]


def test_request_types_match_the_documentation():
    doc = (REPO / "docs" / "protocol.md").read_text()
    for name in protocol.REQUEST_TYPES + protocol.REPLY_TYPES:
        assert f'"type": "{name}"' in doc, f"docs/protocol.md has no example of {name!r}"
    assert f"version {protocol.PROTOCOL_VERSION}" in doc.lower()
    assert importlib.util.find_spec("backend.portable.protocol") is not None
