"""The typed wire schema: what the add-on builds arrives as the same typed request, every field outside
its documented bounds is refused by name with the request's id, and the protocol's limits are the
backend's real ones."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from backend.inference import pipeline
from backend.motion import skeleton as sk
from backend.portable import messages as m
from backend.portable import protocol as p

REPO = Path(__file__).resolve().parents[3]


def rig(bones: int = 3) -> m.RigSpec:
    return m.RigSpec(
        bone_names=tuple(f"bone{i}" for i in range(bones)),
        parents=(-1, *range(bones - 1)),
        rest_matrices=np.tile(np.eye(4, dtype=np.float32), (bones, 1, 1)),
        world_matrix=np.eye(4, dtype=np.float32),
        rotation_modes=("QUATERNION",) * bones,
        name="Armature",
    )


def wire(request: m.Request, request_id: p.RequestId = 7) -> bytes:
    return p.encode_message(request.to_message(request_id))


def parse_line(line: bytes | str) -> m.Request:
    return m.parse_request(p.decode_message(line, kind="request"))


EXAMPLES = [
    m.HelloRequest(client="momask_blender 0.1.0"),
    m.DiagnoseRequest(),
    m.LoadRequest(device="cuda:0", prompts=("a person waves", ""), prime=True),
    m.GenerateRequest(
        prompts=("a person walks", "a person jumps"),
        seconds=(4.0, None),
        seed=2**32 - 1,
        variations=3,
        sampling=m.SamplingOptions(steps=4, topk=0.5, flow="reference"),
        retarget=m.RetargetSpec(rig=rig(), overrides={"pelvis": "bone0"}, dst_fps=24.0),
    ),
    m.InpaintRequest(
        prompt="the person jumps",
        start=3.0,
        end=9.5,
        seed=1,
        source=m.PoseSource(rig=rig(), pose_matrices=np.zeros((12, 3, 4, 4), np.float32), fps=24.0),
        retarget=m.RetargetSpec(dst_fps=30.0, foot_lock=False),
    ),
    m.InpaintRequest(
        prompt="kick", start=0.0, end=4.0, source=m.JointsSource(data=np.ones((8, 22, 3), np.float32))
    ),
    m.InpaintRequest(
        prompt="kick", start=0.0, end=4.0, source=m.FeaturesSource(data=np.ones((8, 263), np.float32))
    ),
    m.MapRigRequest(rig=rig(5), overrides={"left_wrist": "bone4"}),
    m.RetargetRequest(
        joints=np.zeros((10, 22, 3), np.float32), fps=20.0, target=m.RetargetSpec(rig=rig(), in_place=True)
    ),
    m.CancelRequest(target="job-4"),
    m.CancelRequest(),
    m.ShutdownRequest(),
]


@pytest.mark.parametrize("request_", EXAMPLES, ids=lambda r: type(r).__name__)
def test_what_the_add_on_builds_arrives_as_the_same_typed_request(request_):
    parsed = parse_line(wire(request_, "req-1"))
    assert type(parsed) is type(request_) and parsed.id == "req-1"
    assert wire(parsed, "req-1") == wire(request_, "req-1"), "the wire form survives parse and rebuild"


def test_a_scalar_length_applies_to_every_prompt_and_a_single_prompt_is_a_list_of_one():
    parsed = parse_line('{"id": 1, "type": "generate", "prompt": "  a person bows ", "frames": 40}')
    assert isinstance(parsed, m.GenerateRequest)
    assert parsed.prompts == ("a person bows",) and parsed.frames == (40,) and parsed.seconds is None
    parsed = parse_line('{"id": 1, "type": "generate", "prompts": ["a", "b"], "seconds": 2}')
    assert parsed.seconds == (2.0, 2.0)


def test_seeds_span_32_bits_and_the_backend_draws_below_2_31_for_blenders_seed_property():
    assert parse_line('{"id": 1, "type": "generate", "prompts": ["a"], "seed": 4294967295}').seed == 2**32 - 1
    for seed in (2**32, 2**40, 2**70, -1, 1.5, True, "7"):
        with pytest.raises(p.ProtocolError) as info:
            parse_line(json.dumps({"id": 1, "type": "generate", "prompts": ["a"], "seed": seed}))
        assert info.value.code == "bad_input" and info.value.request_id == 1 and "seed" in info.value.problem
    assert m.MAX_DRAWN_SEED == 2**31 - 1


# Each is (a field's path, a JSON value for it): every one must be refused by name, with the id.
OUT_OF_BOUNDS = [
    ("seconds", "1e308"),
    ("seconds", "NaN"),
    ("seconds", "-Infinity"),
    ("seconds", "0"),
    ("seconds", "[1, 2, 3]"),
    ("frames", "3"),
    ("frames", "197"),
    ("frames", "40.5"),
    ("frames", '["long"]'),
    ("seed", "1180591620717411303424"),
    ("seed", "9" * 5000),
    ("cond_scale", "1e300"),
    ("res_cond_scale", "-1"),
    ("temperature", "1e-300"),
    ("topk", "1"),
    ("topk", "0"),
    ("steps", "0"),
    ("steps", "1e2"),
    ("variations", "17"),
    ("flow", '"turbo"'),
    ("precision", "7"),
    ("prompts", "[]"),
    ("prompts", '["\\ud800"]'),
    ("prompts", '["   "]'),
    ("prompts", json.dumps(["x" * 1001])),
    ("prompts", '"a person"'),
    ("retarget", "[]"),
    ("retarget.dst_fps", "1e-300"),
    ("retarget.foot_lock", "1"),
    ("retarget.rig", "null"),
    ("retarget.rig.parents", '["a", 0, 1]'),
    ("retarget.rig.bone_names", '"abc"'),
    ("retarget.rig.rest_matrices", "[[1, 2], [3]]"),
    ("retarget.overrides", '["pelvis"]'),
]


def generate_with(path: str, value: str) -> str:
    request = json.loads(wire(EXAMPLES[3], 41))
    *parents, last = path.split(".")
    node = request
    for name in parents:
        node = node[name]
    node[last] = "@VALUE@"
    if path == "frames":
        request.pop("seconds")
    return json.dumps(request).replace('"@VALUE@"', value)


@pytest.mark.parametrize("path, value", OUT_OF_BOUNDS, ids=[f"{a}={b[:12]}" for a, b in OUT_OF_BOUNDS])
def test_every_field_outside_its_bounds_is_refused_by_name_with_the_request_id(path, value):
    with pytest.raises(p.ProtocolError) as info:
        parse_line(generate_with(path, value))
    error = info.value
    assert error.code == "bad_input" and error.request_id == 41, error
    assert path.split(".")[-1] in error.problem and error.fix, error


@pytest.mark.parametrize(
    "line",
    [
        '{"id": 9, "type": "inpaint", "prompt": "x", "start": 0, "end": 5, "source": {"kind": "joints", '
        '"fps": 1e-300, "data": [[[0, 0, 0]]]}}',
        '{"id": 9, "type": "inpaint", "prompt": "x", "start": 4, "end": 2, "source": {"kind": "features", '
        '"data": [[0], [0], [0], [0], [0]]}}',
        '{"id": 9, "type": "inpaint", "prompt": "x", "start": 0, "end": 9, "source": {"kind": "features", '
        '"data": [[0], [0]]}}',
        '{"id": 9, "type": "inpaint", "prompt": "x", "start": 0, "end": 1, "source": {"kind": "video"}}',
        '{"id": 9, "type": "inpaint", "prompts": ["a", "b"], "start": 0, "end": 1, '
        '"source": {"kind": "joints", '
        '"data": [[[0, 0, 0]]]}}',
        '{"id": 9, "type": "map_rig", "rig": {"bone_names": ["a", "b"], "parents": [-1, 0.5], '
        '"rest_matrices": [[[1,0,0,0],[0,1,0,0],[0,0,1,0],[0,0,0,1]]]}}',
        '{"id": 9, "type": "map_rig", "rig": {"bone_names": ["a"], "parents": [-1], "rest_matrices": [[1]]}}',
        '{"id": 9, "type": "retarget", "joints": [[[0, 0, "x"]]], "rig": {}}',
        '{"id": 9, "type": "load", "device": "gpu"}',
        '{"id": 9, "type": "load", "dataset": "h36m"}',
        '{"id": 9, "type": "hello", "protocol": 1e999}',
    ],
)
def test_other_requests_refuse_bad_fields_the_same_way(line):
    with pytest.raises(p.ProtocolError) as info:
        parse_line(line)
    assert info.value.code == "bad_input" and info.value.request_id == 9, info.value


J = '{"id": 3, "type": "retarget", "joints": '     # then an array, then "}"


@pytest.mark.parametrize(
    "line, words",
    [
        ('{"id": 3, "type": "cancel", "target": [1]}', "target"),
        ('{"id": 3, "type": "cancel", "target": {"id": 1}}', "target"),
        (
            J + '{"__array__": "", "dtype": "float32", "shape": [-2, -2]}}',
            "negative",
        ),
        (
            J + '{"__array__": "", "dtype": "float32", "shape": [0, -1]}}',
            "negative",
        ),
        (
            J + '{"__array__": "", "dtype": "float32", "shape": [1e999]}}',
            "shape",
        ),
        (
            J + '{"__array__": 12, "dtype": "float32", "shape": [1]}}',
            "base64 string",
        ),
        (
            J + '{"__array__": "@@@@", "dtype": "float32", "shape": [1]}}',
            "base64",
        ),
        (
            J + '{"__array__": "AAAA", "dtype": "object", "shape": [1]}}',
            "dtype",
        ),
        (
            J + '{"__array__": "AAAA", "dtype": "<U5", "shape": [1]}}',
            "dtype",
        ),
        (
            J + '{"__array__": "AAAAAA==", "dtype": ">f4", "shape": [1]}}',
            "dtype",
        ),
        (J + '{"__array__": "AAAAAA==", "shape": [1]}}', "dtype"),
        (
            J + '{"__array__": "AAAAAA==", "dtype": "float32", "shape": [2]}}',
            "needs 8 bytes",
        ),
        (
            J + '{"__array__": "", "dtype": "float32", "shape": [65536, 65536]}}',
            "larger than",
        ),
        (
            J + '{"__array__": "", "dtype": "float32", "shape": 4}}',
            "shape",
        ),
        (
            J + '{"__array__": {"__array__": "", "dtype": "float32", '
            '"shape": [0]}, "dtype": "float32", "shape": [0]}}',
            "base64 string",
        ),
        ('{"id": 3, "type": "retarget", "joints": ' + "[" * 200_000 + "]" * 200_000 + "}", "nested"),
        ('{"id": 3, "type": "hello", "x": ' + "[" * 500 + "1" + "]" * 499 + "}", "nested"),
    ],
)
def test_malformed_lines_are_refused_as_bad_requests_with_their_id(line, words):
    with pytest.raises(p.ProtocolError) as info:
        parse_line(line)
    assert info.value.code == "bad_request" and info.value.request_id == 3, info.value
    assert words in info.value.problem and info.value.fix


def test_an_id_that_cannot_be_read_is_the_only_reason_for_a_null_id():
    for line in (
        '{"id": ' + "9" * 5000 + ', "type": "hello"}',
        '{"id": [1], "type": "hello"}',
        "[1]",
        "nope",
        '{"id": 3, "type": "generate", "prompts": ["a"] 999',
    ):
        with pytest.raises(p.ProtocolError) as info:
            parse_line(line)
        assert info.value.request_id is None and info.value.code == "bad_request"
    with pytest.raises(p.ProtocolError) as info:
        parse_line('{"id": "' + "x" * 300 + '", "type": "hello"}')
    # Only ids a peer's decoder accepts are echoed: a reply carrying this one would be refused as a bad
    # line by the client, which would then wait for ever; null is a reply it can read.
    assert info.value.request_id is None
    with pytest.raises(p.ProtocolError) as info:
        parse_line(b'{"id": 12, "type": "hello", "client": "\xff"}')
    assert info.value.request_id == 12 and "UTF-8" in info.value.problem


def test_a_lone_surrogate_id_comes_back_exactly_and_every_reply_can_be_encoded():
    request = parse_line('{"id": "\\ud800", "type": "hello"}')
    line = p.encode_reply(p.result(request.id, {"ok": True}))
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert p.decode_message(line, kind="reply")["id"] == "\ud800"
    unsendable = p.encode_reply(p.result(5, {"value": object()}), "/tmp/backend.log")
    reply = p.decode_message(unsendable, kind="reply")
    assert (
        reply["id"] == 5
        and reply["error"]["code"] == "internal"
        and "/tmp/backend.log" in reply["error"]["fix"]
    )
    assert p.decode_message(p.encode_reply({"id": [1], "type": "result", "data": object()}))["id"] is None


def test_typed_results_travel_as_the_documented_data():
    take = m.Take(prompt="walk", seed=3, index=0, frames=8, fps=20.0, joints=np.zeros((8, 22, 3), np.float32))
    data = p.decode_message(
        p.encode_message(p.result(1, m.TakesResult(takes=(take,), timings={"total": 0.5})))
    )
    assert (
        data["data"]["takes"][0]["joints"].shape == (8, 22, 3) and "retarget" not in data["data"]["takes"][0]
    )
    assert m.CancelResult(target=None, cancelled=True, jobs=(4,)).to_dict() == {
        "target": None,
        "cancelled": True,
        "jobs": [4],
    }
    assert m.CancelResult(target=4, cancelled=False).to_dict()["was"] == "unknown"
    assert m.ShutdownResult(clean=True).to_dict() == {"bye": True, "clean": True}
    assert m.MapRigResult(mapping={}, report="", missing=("pelvis",)).to_dict()["complete"] is False


def test_the_protocols_limits_are_the_backends_own():
    """protocol.py cannot import the backend (Blender loads it by path), so it repeats these."""
    assert m.MAX_MOTION_FRAMES == sk.MAX_MOTION_FRAMES == pipeline.MAX_FRAMES
    assert m.UNIT_LENGTH == sk.UNIT_LENGTH and m.DATASET_FPS == sk.FPS
    assert m.FLOWS == pipeline.FLOWS and m.PRECISIONS == pipeline.PRECISIONS and m.DEVICES == pipeline.DEVICES
    assert m.BOUNDS["frames"].low == pipeline.TOKEN_FRAMES and m.BOUNDS["frames"].high == pipeline.MAX_FRAMES
    steps = m.BOUNDS["steps"]
    pipeline.SamplingSettings(steps=int(steps.low)).validate()
    pipeline.SamplingSettings(steps=int(steps.high)).validate()
    for outside in (int(steps.low) - 1, int(steps.high) + 1):
        with pytest.raises(Exception, match="steps"):
            pipeline.SamplingSettings(steps=outside).validate()


def test_the_bounds_table_is_documented():
    doc = (REPO / "docs" / "protocol.md").read_text()
    section = doc[doc.index("## Bounds") :]
    for name, bound in m.BOUNDS.items():
        row = re.search(rf"^\| `{re.escape(name)}` \|[^\n]*\|", section, re.M)
        assert row, f"docs/protocol.md has no bounds row for {name!r}"
        assert bound.describe() in row.group(), (name, bound.describe(), row.group())
