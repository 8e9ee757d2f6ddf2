"""The hostile-input cases that once ended or deafened the service (issue 10), against a live process:
each gets one well-formed final reply (with its id whenever the id was readable), none is ``internal``,
and the service keeps serving (docs/protocol.md, Framing and Error codes)."""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest

from backend.portable import protocol
from tests.backend.service.live import STUB_RIG, Backend, smpl_rig

REFUSALS = {"bad_request", "bad_input", "bad_rig"}


@pytest.fixture(scope="module")
def hostile(tiny_weights, tmp_path_factory):
    """Its own process: these cases must not disturb the shared one if one of them regresses."""
    proc = Backend.serve(tiny_weights, tmp_path_factory.mktemp("hostile") / "backend.log")
    yield proc
    proc.close()


def line(message: dict) -> bytes:
    """A request line written by hand (not through encode_message, which refuses some of these)."""
    return json.dumps(message, allow_nan=True).encode("utf-8") + b"\n"


def array(shape, dtype="float32", data: object = None) -> dict:
    if data is None:
        data = base64.b64encode(b"\0" * 16).decode()
    return {"__array__": data, "dtype": dtype, "shape": shape}


def joints(frames: int = 8) -> np.ndarray:
    return np.zeros((frames, 22, 3), dtype=np.float32)


def answer(backend: Backend, raw: bytes, request_id) -> dict:
    """Send ``raw`` and return the one final reply for ``request_id``; checks the service still serves."""
    before = len(backend.replies(request_id))
    backend.send_raw(raw)
    # A cancel is answered by the reader in order, so once it is, the line before it has been read.
    sentinel = backend.send("cancel", target="nobody")
    backend.wait(sentinel)
    if request_id is None:
        finals = [m for m in backend.replies(None)[before:] if m["type"] in ("result", "error")]
        assert len(finals) == 1, finals
        final = finals[0]
    else:
        final = backend.wait(request_id)[1]
    assert backend.proc.poll() is None, "the service exited"
    assert backend.call("hello")["protocol"] == protocol.PROTOCOL_VERSION, "the light lane went deaf"
    return final


def refused(final: dict, *codes: str) -> dict:
    assert final["type"] == "error", final
    error = final["error"]
    assert error["code"] in (codes or REFUSALS), error
    assert error["problem"] and error["fix"], error
    return error


# --- one line used to end the whole process ---------------------------------------------------------

@pytest.mark.parametrize("shape", [[-2, -2], [0, -1], "1e999", [2**70], [1.5, 2]])
def test_an_array_with_an_impossible_shape_is_refused_with_its_id(hostile, shape):
    raw = line({"id": f"shape {shape}", "type": "retarget", "rig": {"bone_names": ["a"]},
                "joints": array(shape)}).replace(b'"1e999"', b"[1e999]")
    refused(answer(hostile, raw, f"shape {shape}"), "bad_request")


def test_deep_nesting_is_refused_and_the_id_is_kept_when_it_comes_first(hostile):
    deep = b"[" * 200_000 + b"]" * 200_000
    refused(answer(hostile, b'{"id": "deep", "type": "hello", "client": ' + deep + b"}\n", "deep"),
            "bad_request")
    refused(answer(hostile, deep + b"\n", None), "bad_request")


def test_an_integer_id_with_5000_digits_is_refused(hostile):
    refused(answer(hostile, b'{"id": ' + b"7" * 5000 + b', "type": "hello"}\n', None), "bad_request")


@pytest.mark.parametrize("target", [[1, 2], {"id": 1}, 1.5, True])
def test_a_cancel_whose_target_is_not_an_id_gets_bad_request(hostile, target):
    request_id = f"cancel {target}"
    refused(answer(hostile, line({"id": request_id, "type": "cancel", "target": target}), request_id),
            "bad_request")


# --- a worker used to die and leave the process deaf ------------------------------------------------

@pytest.mark.parametrize("request_type", ["hello", "generate"])
def test_an_id_with_a_lone_surrogate_gets_its_reply_and_the_lanes_live_on(hostile, request_type):
    request_id = "\ud800" + request_type
    final = answer(hostile, line({"id": request_id, "type": request_type}), request_id)
    if request_type == "generate":
        refused(final, "bad_input")
    else:
        assert final["type"] == "result"


def test_a_prompt_with_a_lone_surrogate_is_bad_input(hostile):
    refused(answer(hostile, line({"id": "ps", "type": "generate", "prompts": ["walk \ud800"],
                                  "frames": [16], "steps": 1}), "ps"), "bad_input")


# --- malformed arrays used to come back with "id": null ---------------------------------------------

MALFORMED_ARRAYS = {
    "bad base64": array([8, 22, 3], data="not base64!"),
    "non-string base64": array([8, 22, 3], data=12345),
    "dtype object": array([1], dtype="object"),
    "dtype <U5": array([1], dtype="<U5"),
    "big-endian": array([4], dtype=">f4"),
    "no dtype": {"__array__": "AAAAAA==", "shape": [1]},
    "shape mismatch": array([3, 22, 3]),
    "huge": array([10**6, 10**6, 10**6]),
    "shape not a list": array("4"),
    "array in an array": {"__array__": array([4]), "dtype": "float32", "shape": [4]},
}


@pytest.mark.parametrize("case", MALFORMED_ARRAYS)
def test_a_malformed_array_is_refused_with_the_requests_id(hostile, case):
    raw = line({"id": f"arr-{case}", "type": "retarget", "rig": {"bone_names": ["a"]},
                "joints": MALFORMED_ARRAYS[case]})
    refused(answer(hostile, raw, f"arr-{case}"), "bad_request")


# --- numeric extremes used to reach torch and come back "internal" ----------------------------------

GENERATE = {"prompts": ["a person walks"], "frames": [16], "steps": 1}
NUMERIC_EXTREMES = {
    "seconds 1e308": {"prompts": ["a person walks"], "seconds": [1e308]},
    "seconds NaN": {"prompts": ["a person walks"], "seconds": [float("nan")]},
    "seconds inf": {"prompts": ["a person walks"], "seconds": float("inf")},
    "seed 2**70": {**GENERATE, "seed": 2**70},
    "seed 2**40": {**GENERATE, "seed": 2**40},
    "seed -1": {**GENERATE, "seed": -1},
    "cond_scale 1e300": {**GENERATE, "cond_scale": 1e300},
    "cond_scale NaN": {**GENERATE, "cond_scale": float("nan")},
    "temperature 1e-300": {**GENERATE, "temperature": 1e-300},
    "topk NaN": {**GENERATE, "topk": float("nan")},
    "variations 10**9": {**GENERATE, "variations": 10**9},
    "frames 2**70": {**GENERATE, "frames": [2**70]},
}


@pytest.mark.parametrize("case", NUMERIC_EXTREMES)
def test_a_numeric_extreme_in_generate_is_bad_input(hostile, case):
    raw = line({"id": f"num-{case}", "type": "generate", **NUMERIC_EXTREMES[case]})
    refused(answer(hostile, raw, f"num-{case}"), "bad_input")


@pytest.mark.parametrize("fps", [1e-300, 1e300, float("nan"), -24, 0])
def test_an_absurd_source_fps_is_bad_input_before_any_allocation(hostile, fps):
    source = {"kind": "joints", "data": protocol.to_wire(joints(40)), "fps": fps}
    raw = line({"id": f"fps-{fps}", "type": "inpaint", "prompt": "a person jumps", "start": 4, "end": 20,
                "source": source})
    refused(answer(hostile, raw, f"fps-{fps}"), "bad_input")
    raw = line({"id": f"dst-{fps}", "type": "retarget", "joints": protocol.to_wire(joints()),
                "rig": protocol.to_wire(smpl_rig()), "dst_fps": fps})
    refused(answer(hostile, raw, f"dst-{fps}"), "bad_input")


@pytest.mark.parametrize("case, rig", list(enumerate([
    {**STUB_RIG, "parents": ["root", 0]},
    {**STUB_RIG, "parents": [-1, 0.5]},
    {**STUB_RIG, "bone_names": "root"},
    {**STUB_RIG, "bone_names": [1, 2]},
    {**STUB_RIG, "rest_matrices": [[1, 2]]},
    {"bone_names": ["a"] * 3, "parents": [-1, 0, 1]},
    "a rig",
])))
def test_a_malformed_rig_is_refused_in_map_rig_and_retarget(hostile, case, rig):
    wire = protocol.to_wire(rig) if isinstance(rig, dict) else rig
    refused(answer(hostile, line({"id": f"map {case}", "type": "map_rig", "rig": wire}), f"map {case}"))
    raw = line({"id": f"rt {case}", "type": "retarget", "joints": protocol.to_wire(joints()), "rig": wire})
    refused(answer(hostile, raw, f"rt {case}"))


def test_after_all_of_it_the_service_still_generates(hostile):
    data = hostile.call("generate", prompts=["a person waves"], frames=[16], steps=2, seed=2**32 - 1)
    assert data["takes"][0]["frames"] == 16 and data["takes"][0]["seed"] == 2**32 - 1
