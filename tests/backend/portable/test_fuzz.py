"""Fuzzing the decoder and the request parser (profiles: tests/backend/portable/conftest.py).

For any line: ``decode_message`` returns a message or raises ProtocolError, never anything else, and
the error carries the id whenever the line's top level holds a readable one. For any request-shaped
object: ``parse_request`` returns a typed request whose fields lie inside BOUNDS, or refuses it with a
``bad_request``/``bad_input`` ProtocolError carrying the id.
"""

from __future__ import annotations

import json
import math

from hypothesis import given
from hypothesis import strategies as st

from backend.portable import messages as m
from backend.portable import protocol as p

ID = st.one_of(st.integers(-(2**63), 2**63 - 1), st.text(max_size=20))
ODD_NUMBERS = st.sampled_from([0, -1, 1, 2**31, 2**32, 2**70, 10**400, 1e-300, 1e300, 0.5, 196, 197, 3, 4])
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True),
    ODD_NUMBERS,
    st.text(max_size=12),
    st.sampled_from(["\ud800", "fast", "fp16", "pose", "t2m", "cuda:0"]),
)
ARRAYISH = st.fixed_dictionaries(
    {
        "__array__": st.one_of(st.text(max_size=12), st.sampled_from(["", "AAAA"]), st.integers()),
        "dtype": st.one_of(st.sampled_from(["float32", "<U5", "object", ">f4", "bool"]), st.integers()),
        "shape": st.lists(st.integers(-3, 2**40), max_size=4) | SCALARS,
    }
)
VALUES = st.recursive(
    SCALARS | ARRAYISH,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
FIELD_NAMES = st.sampled_from(
    [
        "prompt",
        "prompts",
        "seconds",
        "frames",
        "seed",
        "variations",
        "steps",
        "cond_scale",
        "res_cond_scale",
        "temperature",
        "topk",
        "flow",
        "precision",
        "retarget",
        "rig",
        "overrides",
        "dst_fps",
        "foot_lock",
        "in_place",
        "path",
        "points",
        "timing",
        "facing",
        "waypoints",
        "position",
        "frame",
        "root_motion",
        "mode",
        "bone",
        "heading",
        "ground",
        "source",
        "start",
        "end",
        "joints",
        "fps",
        "target",
        "protocol",
        "client",
        "device",
        "dataset",
        "weights",
        "clip",
        "prime",
        "regen_residual_everywhere",
        "bone_names",
        "parents",
        "rest_matrices",
        "kind",
        "data",
        "pose_matrices",
    ]
)
REQUESTS = st.builds(
    lambda rid, kind, fields: {"id": rid, "type": kind, **fields},
    ID,
    st.sampled_from(p.REQUEST_TYPES),
    st.dictionaries(FIELD_NAMES, VALUES, max_size=8),
)


def check_refusal(exc: p.ProtocolError, message: object) -> None:
    assert exc.code in (p.BAD_REQUEST, p.BAD_INPUT) and exc.problem and exc.fix
    expected = p.readable_id(message)
    assert exc.request_id == expected or (exc.request_id != exc.request_id and expected != expected)


def parse_or_check_refusal(message: dict) -> m.Request | None:
    """The typed request for ``message`` sent as one line, or None once its refusal checked out."""
    line = json.dumps(message, allow_nan=True).encode("utf-8", "surrogatepass")
    try:
        return m.parse_request(p.decode_message(line, kind="request"))
    except p.ProtocolError as exc:
        check_refusal(exc, message)
        return None


@given(st.binary(max_size=300))
def test_fuzz_decoder_any_bytes_give_a_message_or_a_protocol_error(line):
    try:
        p.decode_message(line, kind="request")
    except p.ProtocolError as exc:
        assert exc.code == p.BAD_REQUEST and exc.problem


@given(st.one_of(VALUES, REQUESTS))
def test_fuzz_decoder_any_json_value_is_read_or_refused_with_its_id(value):
    line = json.dumps(value, allow_nan=True).encode("utf-8", "surrogatepass")
    try:
        p.decode_message(line, kind="request")
    except p.ProtocolError as exc:
        check_refusal(exc, value)


@given(REQUESTS)
def test_fuzz_parser_any_request_is_typed_within_bounds_or_refused_with_its_id(message):
    request = parse_or_check_refusal(message)
    if request is None:
        return
    assert request.id == message["id"] and message["type"] == request.TYPE
    assert_within_bounds(request)
    assert p.encode_reply(p.result(request.id, {"echo": request})).endswith(b"\n")


def assert_within_bounds(request: m.Request) -> None:
    """Every bounded number a typed request holds (per-prompt lengths included) is finite and inside
    its BOUNDS row; source and scene frame rates use the "fps" row."""
    for name, value in request.fields().items():
        bound = m.BOUNDS.get("fps" if name in ("fps", "dst_fps") else name)
        if bound is None or bound.kind not in ("integer", "number"):
            continue
        for number in value if isinstance(value, tuple) else (value,):
            assert number is None or (math.isfinite(number) and bound.contains(number)), (name, value)


@given(st.text(max_size=40), ID)
def test_fuzz_any_string_id_or_text_reply_is_encoded_into_one_line_that_decodes_back(text, rid):
    line = p.encode_reply(p.error(rid, p.BAD_INPUT, text, text))
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    reply = p.decode_message(line, kind="reply")
    assert reply["id"] == rid and reply["error"]["problem"] == text


VALID_GENERATE = {
    "id": 5,
    "type": "generate",
    "prompts": ["a person walks"],
    "seed": 1,
    "variations": 2,
    "steps": 3,
    "cond_scale": 4,
    "temperature": 1,
    "topk": 0.9,
    "frames": [40],
    "retarget": {
        "rig": {
            "bone_names": ["a"],
            "parents": [-1],
            "rest_matrices": [[[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]]],
        },
        "dst_fps": 24,
    },
}


@given(st.dictionaries(FIELD_NAMES, st.one_of(ODD_NUMBERS, SCALARS, VALUES), max_size=3))
def test_fuzz_parser_a_valid_generate_with_fields_replaced_stays_within_bounds_or_is_refused(changes):
    request = parse_or_check_refusal({**VALID_GENERATE, **changes})
    if request is not None:
        assert_within_bounds(request)
