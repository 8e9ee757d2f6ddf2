"""The typed messages of the wire protocol: every request and result as a frozen dataclass, the
bounds each request field is checked against (:data:`BOUNDS`) and :func:`parse_request`.

``protocol.py`` frames the exchange (lines, ids, arrays, error replies); this module says what each
message holds. The add-on builds a request with ``GenerateRequest(...).to_message(id)``; the service
turns a decoded line into one typed request with :func:`parse_request`, once, before any work. Field
names, ranges and why: docs/protocol.md ("Typed requests", "Bounds").

Stdlib only, like ``protocol.py``: Blender loads both files by path (protocol first).
"""

from __future__ import annotations

import dataclasses
import math
import re
import sys
from collections.abc import Callable, Mapping
from typing import Any

try:
    from backend.portable import protocol
except ImportError:
    # Loaded by file path inside Blender: momask_blender/remote/client.py::load_backend_module loads
    # protocol.py first, under this name (SHARED_BACKEND_MODULES), and never imports the backend package.
    protocol = sys.modules["_momask_blender_backend_protocol"]  # type: ignore[assignment]

# --- the models' real limits (the backend's own constants live in backend/motion/skeleton.py and
# backend/inference/pipeline.py, which this file cannot import; tests/backend/portable asserts they agree)

DATASET_FPS: dict[str, float] = {"t2m": 20.0, "kit": 12.5}
UNIT_LENGTH = 4                      # model frames per token
MAX_MOTION_FRAMES = 196              # the longest clip the models were trained on (49 tokens)
FLOWS: tuple[str, ...] = ("fast", "reference")
PRECISIONS: tuple[str, ...] = ("fp32", "bf16", "fp16")
DEVICES: tuple[str, ...] = ("auto", "cpu", "cuda", "mps")      # and "cuda:N"
SOURCE_KINDS: tuple[str, ...] = ("pose", "joints", "features")
#: The longest duration any dataset can make: 196 frames at KIT's 12.5 fps (t2m: 9.8 s at 20 fps).
MAX_SECONDS = MAX_MOTION_FRAMES / min(DATASET_FPS.values())
#: Seeds the backend draws itself stay below 2**31 so the add-on's seed property (a signed 32-bit
#: Blender IntProperty) can hold them; a client may send any 32-bit seed (0..MAX_SEED).
MAX_SEED = 2**32 - 1
MAX_DRAWN_SEED = 2**31 - 1
#: Compose (docs/compose.md): the longest composed take, the most segments, the longest transition.
MAX_COMPOSE_SECONDS = 300.0
MAX_SEGMENTS = 64
MAX_TRANSITION_SECONDS = 4.0
#: Tokens a composed take's ``codes`` may hold: 300 s at t2m's 5 tokens per second, plus the tokens
#: generated past the end (KIT makes fewer: 12.5 fps / 4).
MAX_COMPOSE_TOKENS = 1600
#: ``compose`` capabilities that ``hello`` advertises (docs/protocol.md, compose).
COMPOSE_CAPABILITIES: tuple[str, ...] = ("compose", "continue", "lead_in", "loop", "regenerate_segment",
                                         "exact_durations")
COMPOSE_DIRECTIONS: tuple[str, ...] = ("after", "before")

@dataclasses.dataclass(frozen=True)
class Bound:
    """The accepted range of one request field: ``kind`` is "integer" (a JSON integer), "number" (any
    JSON number), "count" (how many items a list holds) or "chars" (a string's length)."""

    kind: str
    low: float
    high: float
    why: str
    low_open: bool = False           # the range excludes ``low`` itself
    high_open: bool = False

    def contains(self, value: float) -> bool:
        above = value > self.low if self.low_open else value >= self.low
        below = value < self.high if self.high_open else value <= self.high
        return above and below

    def describe(self) -> str:
        low = "(" if self.low_open else "["
        high = ")" if self.high_open else "]"
        return f"{low}{_number_text(self.low)}, {_number_text(self.high)}{high}"


def _number_text(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


#: Every request field's range (docs/protocol.md, "Bounds", lists this same table; a test checks).
BOUNDS: dict[str, Bound] = {
    "seconds": Bound("number", 0, MAX_SECONDS, "a duration; 196 model frames is the longest clip (9.8 s "
                     "at t2m's 20 fps, 15.68 s at KIT's 12.5); the pipeline checks the dataset's own "
                     "limit", low_open=True),
    "frames": Bound("integer", UNIT_LENGTH, MAX_MOTION_FRAMES, "model frames: one token is 4 frames, "
                    "the models were trained on at most 196"),
    "fps": Bound("number", 1, 1000, "a scene or source frame rate (Blender's fps / fps_base; 1..240 in "
                 "practice): the floor keeps resampling from allocating millions of frames, the ceiling "
                 "bounds a take's key count"),
    "steps": Bound("integer", 1, 100, "confidence-ordered decoding steps (10 is the paper's)"),
    "cond_scale": Bound("number", 0, 100, "classifier-free guidance (4 is the paper's, the panel offers "
                        "0..20); beyond 100 the logits only saturate"),
    "res_cond_scale": Bound("number", 0, 100, "the residual transformer's guidance (5, inpaint 2)"),
    "temperature": Bound("number", 0.01, 10, "sampling temperature (the panel offers 0.05..3); logits "
                         "are divided by it, so a tiny one overflows"),
    "topk": Bound("number", 0, 1, "the fraction of codes sampling drops (0.9 keeps the best 10%)",
                  low_open=True, high_open=True),
    "seed": Bound("integer", 0, MAX_SEED, "the random generator's 32-bit seed; seeds the backend draws "
                  "stay below 2**31 for Blender's signed seed property"),
    "variations": Bound("integer", 1, 16, "takes per prompt in one batch (the panel offers 1..8)"),
    "prompts": Bound("count", 1, 64, "prompts in one batch"),
    "takes": Bound("count", 1, 64, "prompts x variations: one batch on the device"),
    "prompt": Bound("chars", 1, 1000, "CLIP reads 77 tokens (about 300 characters) and cuts the rest"),
    "protocol": Bound("integer", 0, 2**31 - 1, "the client's protocol version"),
    "start": Bound("number", 0, 1_000_000, "an inpaint range's first source frame"),
    "end": Bound("number", 0, 1_000_000, "an inpaint range's end (exclusive), at most the source's frames"),
    "source_frames": Bound("count", 1, 1_000_000, "frames of an inpaint source or of retarget joints"),
    "bones": Bound("count", 1, 4096, "bones of one armature (game and film rigs stay well below)"),
    "parents": Bound("integer", -1, 4095, "a bone's parent index, -1 for a root"),
    "overrides": Bound("count", 0, 256, "role -> bone overrides of one mapping"),
    "name": Bound("chars", 1, 255, "a bone, role or rotation-mode name (Blender names are 63 bytes)"),
    "text": Bound("chars", 0, 4096, "a path, a device, a dataset or a client name"),
    # compose (docs/compose.md)
    "segments": Bound("count", 1, MAX_SEGMENTS, "segments of one composed take (one prompt each)"),
    "segment_seconds": Bound("number", 0, MAX_COMPOSE_SECONDS, "one segment's duration; longer than "
                             "9.8 s is made by sliding-window outpainting", low_open=True),
    "total_seconds": Bound("number", 0, MAX_COMPOSE_SECONDS, "a composed take's length (the sum of its "
                           "segments, auto ones counted as 9.8 s), tested to 5 minutes", low_open=True),
    "transition": Bound("number", 0, MAX_TRANSITION_SECONDS, "seconds of each inpainted transition "
                        "(rounded up to whole tokens of 0.2 s; default 0.4 s)", low_open=True),
    "index": Bound("integer", 0, MAX_SEGMENTS - 1, "the segment of a composed take to regenerate"),
    "codes": Bound("count", 1, MAX_COMPOSE_TOKENS, "tokens of a composed take (5 per second at t2m)"),
}

# --- typed replies (the ``data`` of a result; ``result(id, ...)`` takes them as they are) -------------

@dataclasses.dataclass(frozen=True, kw_only=True)
class Take:
    """One generated motion: ``joints`` (frames, joints, 3) at ``fps``; ``retarget`` and ``mapping``
    when a rig was driven; the inpaint ranges (``{"start", "end", "fps"}``) for an in-between."""

    prompt: str
    seed: int
    index: int
    frames: int
    fps: float
    joints: Any
    retarget: Mapping[str, Any] | None = None
    mapping: Mapping[str, Any] | None = None
    range: Mapping[str, Any] | None = None
    requested_range: Mapping[str, Any] | None = None
    window: Mapping[str, Any] | None = None
    source_range: Mapping[str, Any] | None = None
    source_frames: int | None = None
    # compose: each segment {prompt, seed, start, end} in this take's frames at ``fps`` (end exclusive),
    # the (tokens, 6) int codes that ``regenerate`` sends back, and a loop's per-cycle root offset
    segments: tuple[Mapping[str, Any], ...] | None = None
    codes: Any = None
    loop: Mapping[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        data = _present(self)
        if self.segments is not None:
            data["segments"] = [dict(segment) for segment in self.segments]
        return data


@dataclasses.dataclass(frozen=True, kw_only=True)
class TakesResult:
    """The result of ``generate`` (one take per prompt and variation, prompt-major) and ``inpaint``
    (one take over the whole source); ``timings`` in seconds: load, generate, retarget, total."""

    takes: tuple[Take, ...]
    timings: Mapping[str, float]

    def to_dict(self) -> dict[str, Any]:
        return {"takes": [take.to_dict() for take in self.takes], "timings": dict(self.timings)}


@dataclasses.dataclass(frozen=True, kw_only=True)
class MapRigResult:
    mapping: Mapping[str, Any]
    report: str
    missing: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"mapping": self.mapping, "report": self.report, "missing": list(self.missing),
                "complete": not self.missing}


@dataclasses.dataclass(frozen=True, kw_only=True)
class RetargetResult:
    retarget: Mapping[str, Any]
    mapping: Mapping[str, Any]
    timings: Mapping[str, float]

    def to_dict(self) -> dict[str, Any]:
        return _present(self)


@dataclasses.dataclass(frozen=True, kw_only=True)
class CancelResult:
    """``target`` given: what it ``was`` (queued, running, unknown); ``target`` null: the ``jobs``."""

    target: Any
    cancelled: bool
    was: str | None = None
    jobs: tuple[Any, ...] | None = None

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"target": self.target, "cancelled": self.cancelled}
        if self.target is None:
            data["jobs"] = list(self.jobs or ())
        else:
            data["was"] = self.was or "unknown"
        return data


@dataclasses.dataclass(frozen=True, kw_only=True)
class ShutdownResult:
    clean: bool

    def to_dict(self) -> dict[str, Any]:
        return {"bye": True, "clean": self.clean}


def _present(obj: Any) -> dict[str, Any]:
    """A dataclass's fields as a dict, leaving out those that are ``None`` (not given)."""
    return {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj) if getattr(obj, f.name) is not None}


# --- reading request fields ------------------------------------------------------------------------

def _valid_text(value: str) -> bool:
    """Whether UTF-8 can hold ``value``: JSON's ``\\u`` escapes can carry lone surrogates in."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


class _Fields:
    """One JSON object of a request, read field by field against :data:`BOUNDS`. Every refusal is a
    ``bad_input`` :class:`ProtocolError` naming the field by its path (``retarget.dst_fps``) and
    carrying the request's id."""

    def __init__(self, obj: Mapping[str, Any], request_id: Any, path: str = "") -> None:
        self.obj, self.request_id, self.path = obj, request_id, path

    def fail(self, name: str, problem: str, fix: str) -> protocol.ProtocolError:
        return protocol.ProtocolError(problem.replace("{field}", repr(self.path + name)), fix,
                             request_id=self.request_id, code=protocol.BAD_INPUT)

    def get(self, name: str) -> Any:
        return self.obj.get(name)

    def given(self, name: str) -> bool:
        return self.obj.get(name) is not None

    def _missing(self, name: str) -> protocol.ProtocolError:
        return self.fail(name, "The request needs {field}.", f"Add \"{name}\" (docs/protocol.md, Requests).")

    # scalars

    def number(self, name: str, bound: str | None = None, required: bool = False) -> float | None:
        value = self.get(name)
        if value is None:
            if required:
                raise self._missing(name)
            return None
        return self.check_number(value, name, bound or name)

    def check_number(self, value: Any, name: str, bound_name: str, integer: bool = False) -> Any:
        """``value`` as a float (an int for ``integer``), inside ``BOUNDS[bound_name]``."""
        bound = BOUNDS[bound_name]
        want = "a whole number" if integer else "a number"
        fix = f"Send {name!r} as {want} in {bound.describe()} (docs/protocol.md, Bounds)."
        if isinstance(value, bool) or not isinstance(value, (int, float, protocol.OversizedInteger)):
            raise self.fail(name, f"{{field}} must be {want}, not {protocol.describe(value)}.", fix)
        if isinstance(value, protocol.OversizedInteger):
            raise self.fail(name, f"{{field}} is an integer of {value.digits} digits, outside "
                            f"{bound.describe()}.", fix)
        if integer and not isinstance(value, int):
            raise self.fail(name, f"{{field}} must be a whole number, not {protocol.shorten(value)}.", fix)
        if isinstance(value, float) and not math.isfinite(value):
            raise self.fail(name, f"{{field}} must be a finite number, not {value}.", fix)
        if not bound.contains(value):        # ints compare exactly: no float overflow for 10**400
            raise self.fail(name, f"{{field}}={protocol.shorten(value)} is outside {bound.describe()} "
                            f"({bound.why}).", fix)
        return value if integer else float(value)

    def integer(self, name: str, bound: str | None = None, required: bool = False) -> int | None:
        value = self.get(name)
        if value is None:
            if required:
                raise self._missing(name)
            return None
        return int(self.check_number(value, name, bound or name, integer=True))

    def flag(self, name: str, default: bool) -> bool:
        value = self.get(name)
        if value is None:
            return default
        if not isinstance(value, bool):
            raise self.fail(name, f"{{field}} must be true or false, not {protocol.describe(value)}.",
                            f"Send {name!r} as a JSON boolean.")
        return value

    def text(self, name: str, bound: str = "text", choices: tuple[str, ...] = (),
             required: bool = False) -> str | None:
        value = self.get(name)
        if value is None:
            if required:
                raise self._missing(name)
            return None
        return self.check_text(value, name, bound, choices)

    def check_text(self, value: Any, name: str, bound_name: str, choices: tuple[str, ...] = (),
                   strip: bool = False) -> str:
        bound = BOUNDS[bound_name]
        if not isinstance(value, str):
            raise self.fail(name, f"{{field}} must be a string, not {protocol.describe(value)}.",
                            f"Send {name!r} as text.")
        if not _valid_text(value):
            raise self.fail(name, "{field} holds a character that is not valid Unicode (a lone UTF-16 "
                            "surrogate).", "Remove the broken character (retype the text).")
        value = value.strip() if strip else value
        if not bound.contains(len(value)):
            raise self.fail(name, f"{{field}} has {len(value):,} characters, outside {bound.describe()} "
                            f"({bound.why}).", f"Send {name!r} with {bound.describe()} characters.")
        if choices and value not in choices:
            raise self.fail(name, f"{{field}} is {protocol.shorten(value)}, not one of {', '.join(choices)}.",
                            f"Use one of: {', '.join(choices)}.")
        return value

    # containers

    def section(self, name: str, required: bool = False) -> _Fields | None:
        value = self.get(name)
        if value is None:
            if required:
                raise self._missing(name)
            return None
        if not isinstance(value, Mapping):
            raise self.fail(name, f"{{field}} must be an object, not {protocol.kind_of(value)}.",
                            "See docs/protocol.md, Requests.")
        return _Fields(value, self.request_id, f"{self.path}{name}.")

    def items(self, name: str, bound: str, value: Any = None) -> list[Any]:
        """``obj[name]`` (or ``value``) as a list whose length is inside ``BOUNDS[bound]``."""
        value = self.get(name) if value is None else value
        if not isinstance(value, list):
            raise self.fail(name, f"{{field}} must be a list, not {protocol.kind_of(value)}.",
                            f"Send {name!r} as a JSON list.")
        if not BOUNDS[bound].contains(len(value)):
            raise self.fail(name, f"{{field}} has {len(value):,} items, outside {BOUNDS[bound].describe()} "
                            f"({BOUNDS[bound].why}).", f"Send {BOUNDS[bound].describe()} items.")
        return value

    def names(self, name: str, bound: str = "bones") -> tuple[str, ...]:
        return tuple(self.check_text(v, f"{name}[{i}]", "name")
                     for i, v in enumerate(self.items(name, bound)))

    def overrides(self, name: str = "overrides") -> dict[str, str]:
        value = self.get(name)
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            raise self.fail(name, f"{{field}} must map roles to bone names, not {protocol.kind_of(value)}.",
                            "Send {\"pelvis\": \"Hips\", ...}.")
        if not BOUNDS["overrides"].contains(len(value)):
            raise self.fail(name, f"{{field}} has {len(value)} entries, more than "
                            f"{int(BOUNDS['overrides'].high)}.", "Send one entry per role at most.")
        return {self.check_text(role, f"{name} role", "name"):
                self.check_text(bone, f"{name}[{role!r}]", "name") for role, bone in value.items()}

    def array(self, name: str, trailing: tuple[int | None, ...], first: str = "source_frames",
              required: bool = True) -> Any:
        """A numeric array (decoded or nested lists) shaped (n, *trailing), ``n`` within
        ``BOUNDS[first]`` (``None`` in ``trailing``: any size); float32 numpy where numpy exists."""
        value = self.get(name)
        if value is None:
            if required:
                raise self._missing(name)
            return None
        want = "(" + ", ".join(["n", *("any" if t is None else str(t) for t in trailing)]) + ")"
        fix = f"Send {name!r} as an encoded float32 array shaped {want} (docs/protocol.md, Arrays)."
        if protocol.is_array(value):
            if getattr(value.dtype, "kind", "f") not in "fiu":
                raise self.fail(name, f"{{field}} has dtype {value.dtype}, not a number type.", fix)
            shape = tuple(int(n) for n in value.shape)
        elif isinstance(value, list):
            shape = self._list_shape(value, name, fix)
        else:
            raise self.fail(name, f"{{field}} must be an array, not {protocol.kind_of(value)}.", fix)
        if len(shape) != len(trailing) + 1 or any(
                t is not None and t != n for t, n in zip(trailing, shape[1:], strict=True)):
            raise self.fail(name, f"{{field}} has shape {shape}, expected {want}.", fix)
        if not BOUNDS[first].contains(shape[0]):
            raise self.fail(name, f"{{field}} has {shape[0]:,} rows, outside {BOUNDS[first].describe()} "
                            f"({BOUNDS[first].why}).", fix)
        try:
            import numpy as np
        except ImportError:
            return value if isinstance(value, list) else value.tolist()
        try:
            with np.errstate(over="ignore", invalid="ignore"):     # non-finite values: the use case's check
                return np.asarray(value, dtype=np.float32)
        except (OverflowError, ValueError, TypeError) as exc:
            raise self.fail(name, f"{{field}} cannot be read as float32 ({exc}).", fix) from exc

    def _list_shape(self, value: list[Any], name: str, fix: str) -> tuple[int, ...]:
        """The shape of a rectangular nested list of numbers; refuses ragged lists, non-numbers and
        more than protocol.MAX_ARRAY_ELEMENTS elements."""
        shape: list[int] = []
        level: list[Any] = [value]
        while level and all(isinstance(v, list) for v in level):
            lengths = {len(v) for v in level}
            if len(lengths) != 1:
                raise self.fail(name, "{field} is a ragged list (rows of different lengths).", fix)
            shape.append(lengths.pop())
            if len(level) * shape[-1] > protocol.MAX_ARRAY_ELEMENTS:
                raise self.fail(name, f"{{field}} holds more than {protocol.MAX_ARRAY_ELEMENTS:,} elements.",
                                fix)
            level = [item for v in level for item in v]
        bad = next((v for v in level if isinstance(v, bool) or not isinstance(v, (int, float))), None)
        if level and (bad is not None or len(shape) > protocol.MAX_ARRAY_NDIM):
            what = f"holds {protocol.kind_of(bad)}" if bad is not None else "is nested too deeply"
            raise self.fail(name, f"{{field}} {what}; an array holds numbers only.", fix)
        return tuple(shape)


# --- the typed requests ----------------------------------------------------------------------------

_SCHEMA = dataclasses.dataclass(frozen=True, kw_only=True)


@_SCHEMA
class RigSpec:
    """An armature as sent (``backend/retarget/rig.py::RigDescription.from_dict`` reads ``to_dict()``):
    bone names, parent indices (-1: root), rest matrices (bones, 4, 4) in armature space."""

    bone_names: tuple[str, ...]
    parents: tuple[int, ...]
    rest_matrices: Any
    world_matrix: Any = None
    rotation_modes: tuple[str, ...] = ()
    lengths: Any = None
    name: str = ""

    def to_dict(self) -> dict[str, Any]:
        data = {"bone_names": list(self.bone_names), "parents": list(self.parents),
                "rest_matrices": self.rest_matrices, "world_matrix": self.world_matrix,
                "rotation_modes": list(self.rotation_modes) or None, "lengths": self.lengths,
                "name": self.name or None}
        return {k: v for k, v in data.items() if v is not None}


@_SCHEMA
class RetargetSpec:
    """Where a motion goes: ``rig`` with its role ``overrides``, keyed at ``dst_fps`` (None: the
    source's or the model's rate), with foot lock and in-place options."""

    rig: RigSpec | None = None
    overrides: Mapping[str, str] = dataclasses.field(default_factory=dict)
    dst_fps: float | None = None
    foot_lock: bool = True
    in_place: bool = False

    def to_dict(self) -> dict[str, Any]:
        data = {"rig": self.rig, "overrides": dict(self.overrides), "dst_fps": self.dst_fps,
                "foot_lock": self.foot_lock, "in_place": self.in_place}
        return {k: v for k, v in data.items() if v is not None}


@_SCHEMA
class SamplingOptions:
    """The sampler's settings a request may set; ``None`` keeps the pipeline's default."""

    steps: int | None = None
    cond_scale: float | None = None
    res_cond_scale: float | None = None
    temperature: float | None = None
    topk: float | None = None
    flow: str | None = None
    precision: str | None = None

    def given(self) -> dict[str, Any]:
        """The settings that were set, by name (``SamplingSettings(**options.given())``)."""
        return _present(self)


@_SCHEMA
class PoseSource:
    """An in-between's source read from a rig: each pose bone's armature-space ``matrix`` per frame,
    ``pose_matrices`` (frames, bones, 4, 4), at ``fps``."""

    KIND = "pose"
    rig: RigSpec
    pose_matrices: Any
    fps: float | None = None
    overrides: Mapping[str, str] = dataclasses.field(default_factory=dict)

    @property
    def frame_count(self) -> int:
        return len(self.pose_matrices)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.KIND, **_present(self)}


@_SCHEMA
class _ArraySource:
    """A source given as one array ``data`` whose first axis is frames, at ``fps``."""

    KIND = ""
    data: Any
    fps: float | None = None

    @property
    def frame_count(self) -> int:
        return len(self.data)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.KIND, **_present(self)}


@_SCHEMA
class JointsSource(_ArraySource):
    """An in-between's source as joint positions ``data`` (frames, joints, 3) at ``fps``."""

    KIND = "joints"


@_SCHEMA
class FeaturesSource(_ArraySource):
    """An in-between's source as de-normalised features ``data`` (frames, feature dims), model fps."""

    KIND = "features"


Source = PoseSource | JointsSource | FeaturesSource


@_SCHEMA
class Request:
    """One request; ``id`` is set by :func:`parse_request`, ``to_message(id)`` builds the wire form."""

    TYPE = ""
    id: Any = None

    def fields(self) -> dict[str, Any]:
        """The wire fields (without id and type); ``None`` means "not sent"."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "id"}

    def wire_fields(self) -> dict[str, Any]:
        """The fields that are sent: those not ``None``."""
        return {k: v for k, v in self.fields().items() if v is not None}

    def to_message(self, request_id: protocol.RequestId) -> dict[str, Any]:
        return {"id": request_id, "type": self.TYPE, **self.wire_fields()}


@_SCHEMA
class HelloRequest(Request):
    TYPE = protocol.HELLO
    protocol: int | None = protocol.PROTOCOL_VERSION
    client: str = ""


@_SCHEMA
class DiagnoseRequest(Request):
    TYPE = protocol.DIAGNOSE


@_SCHEMA
class LoadRequest(Request):
    """Load (or reload with other weights, dataset, CLIP file or device) and encode ``prompts``."""

    TYPE = protocol.LOAD
    weights: str | None = None
    dataset: str | None = None
    clip: str | None = None
    device: str | None = None
    prompts: tuple[str, ...] = ()
    prime: bool = False


@_SCHEMA
class GenerateRequest(Request):
    """Text to motion: ``seconds`` or ``frames`` hold one length per prompt (``None``: the estimator's)."""

    TYPE = protocol.GENERATE
    prompts: tuple[str, ...]
    seconds: tuple[float | None, ...] | None = None
    frames: tuple[int | None, ...] | None = None
    seed: int | None = None
    variations: int = 1
    sampling: SamplingOptions = dataclasses.field(default_factory=SamplingOptions)
    retarget: RetargetSpec | None = None

    def fields(self) -> dict[str, Any]:
        return {"prompts": list(self.prompts), "seconds": self.seconds, "frames": self.frames,
                "seed": self.seed, "variations": self.variations, **self.sampling.given(),
                "retarget": self.retarget}


@_SCHEMA
class InpaintRequest(Request):
    """Regenerate source frames ``[start, end)`` (at the source's fps) from ``prompt``."""

    TYPE = protocol.INPAINT
    prompt: str
    source: Source
    start: float
    end: float
    seed: int | None = None
    sampling: SamplingOptions = dataclasses.field(default_factory=SamplingOptions)
    regen_residual_everywhere: bool = False
    retarget: RetargetSpec | None = None

    def fields(self) -> dict[str, Any]:
        return {"prompt": self.prompt, "start": self.start, "end": self.end, "seed": self.seed,
                **self.sampling.given(), "regen_residual_everywhere": self.regen_residual_everywhere,
                "source": self.source, "retarget": self.retarget}


@_SCHEMA
class Segment:
    """One segment of a composed take: its prompt, ``seconds`` (None: the length estimator's) and
    ``seed`` (None: derived from the take's seed and the segment's index, docs/compose.md)."""

    prompt: str
    seconds: float | None = None
    seed: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return _present(self)


@_SCHEMA
class RegenerateSpec:
    """Regenerate segment ``index`` of a previous composed take: its ``codes`` (tokens, 6) and the
    ``segments`` it was made from (their seconds must equal the request's)."""

    codes: Any
    segments: tuple[Segment, ...]
    index: int

    def to_dict(self) -> dict[str, Any]:
        return {"codes": self.codes, "segments": [s.to_dict() for s in self.segments], "index": self.index}


@_SCHEMA
class ComposeRequest(Request):
    """A long take from a timeline of segments joined by inpainted transitions (docs/compose.md):
    optionally a ``loop``, a continuation of (``direction`` "after") or a lead-in to ("before") the
    motion ``continue_from``, or ``regenerate`` one segment of a previous take. ``fps``: the take's
    frame rate (None: ``retarget.dst_fps``, else the model's); every duration is exact at it."""

    TYPE = protocol.COMPOSE
    segments: tuple[Segment, ...]
    transition: float | None = None
    loop: bool = False
    seed: int | None = None
    fps: float | None = None
    sampling: SamplingOptions = dataclasses.field(default_factory=SamplingOptions)
    retarget: RetargetSpec | None = None
    continue_from: Source | None = None
    direction: str = "after"
    regenerate: RegenerateSpec | None = None

    def fields(self) -> dict[str, Any]:
        return {"segments": [s.to_dict() for s in self.segments], "transition": self.transition,
                "loop": self.loop, "seed": self.seed, "fps": self.fps, **self.sampling.given(),
                "retarget": self.retarget, "continue_from": self.continue_from,
                "direction": self.direction if self.continue_from is not None else None,
                "regenerate": self.regenerate.to_dict() if self.regenerate is not None else None}


@_SCHEMA
class MapRigRequest(Request):
    TYPE = protocol.MAP_RIG
    rig: RigSpec
    overrides: Mapping[str, str] = dataclasses.field(default_factory=dict)


@_SCHEMA
class RetargetRequest(Request):
    """Drive ``target.rig`` from ``joints`` (frames, joints, 3) at ``fps`` (None: the model's)."""

    TYPE = protocol.RETARGET
    joints: Any
    target: RetargetSpec
    fps: float | None = None

    def fields(self) -> dict[str, Any]:
        return {"joints": self.joints, "fps": self.fps, **self.target.to_dict()}


@_SCHEMA
class CancelRequest(Request):
    """Cancel job ``target``; ``None`` cancels every job."""

    TYPE = protocol.CANCEL
    target: protocol.RequestId | None = None

    def to_message(self, request_id: protocol.RequestId) -> dict[str, Any]:
        return {"id": request_id, "type": self.TYPE, "target": self.target}   # null is meaningful


@_SCHEMA
class ShutdownRequest(Request):
    TYPE = protocol.SHUTDOWN


# --- parsing a request -----------------------------------------------------------------------------

def parse_request(message: Mapping[str, Any]) -> Request:
    """The typed request for a decoded message (``decode_message(line, kind="request")``), every field
    checked against :data:`BOUNDS` before any work. Raises :class:`ProtocolError`: ``bad_request``
    when the message is not a request, ``bad_input`` naming the field whose value is wrong; both carry
    the id whenever it was readable. Dataset-dependent checks (joint and feature counts, the frame
    limit in seconds) and the finiteness of big arrays are the use cases' (they know the dataset)."""
    request_id = protocol.readable_id(message)
    if not isinstance(message, Mapping):
        raise protocol.ProtocolError(f"A request must be an object, not {protocol.kind_of(message)}.")
    parser = _PARSERS.get(message.get("type")) if isinstance(message.get("type"), str) else None
    if parser is None:
        raise protocol.ProtocolError(f"Unknown request type {protocol.shorten(message.get('type'))}.",
                            f"Use one of: {', '.join(protocol.REQUEST_TYPES)}.", request_id=request_id)
    if message.get("id") is None or not protocol.valid_id(message.get("id")):
        raise protocol.ProtocolError(f"The request id must be a string of at most {protocol.MAX_ID_CHARS} "
                                     f"characters or an "
                            f"integer within ±2**63, not {protocol.shorten(message.get('id'))}.",
                            "Give every request a unique string or integer \"id\".", request_id=request_id)
    request = parser(_Fields(message, request_id))
    return dataclasses.replace(request, id=message["id"])


def _hello(f: _Fields) -> HelloRequest:
    return HelloRequest(protocol=f.integer("protocol"), client=f.text("client") or "")


def _diagnose(f: _Fields) -> DiagnoseRequest:
    return DiagnoseRequest()


def _shutdown(f: _Fields) -> ShutdownRequest:
    return ShutdownRequest()


def _load(f: _Fields) -> LoadRequest:
    device = f.text("device")
    if device is not None and device not in DEVICES and not re.fullmatch(r"cuda:\d{1,3}", device):
        raise f.fail("device", f"{{field}} is {protocol.shorten(device)}, not a device.",
                     f"Use one of: {', '.join(DEVICES)} (or cuda:N).")
    prompts = () if f.get("prompts") is None else tuple(
        f.check_text(p, f"prompts[{i}]", "text") for i, p in enumerate(f.items("prompts", "prompts")))
    too_long = next((p for p in prompts if len(p.strip()) > BOUNDS["prompt"].high), None)
    if too_long is not None:      # a warm-up may send the empty prompts of an untouched panel, not long ones
        f.check_text(too_long, "prompts", "prompt", strip=True)
    return LoadRequest(weights=f.text("weights"), dataset=f.text("dataset", choices=tuple(DATASET_FPS)),
                       clip=f.text("clip"), device=device, prompts=prompts, prime=f.flag("prime", False))


def _sampling(f: _Fields) -> SamplingOptions:
    return SamplingOptions(
        steps=f.integer("steps"), cond_scale=f.number("cond_scale"),
        res_cond_scale=f.number("res_cond_scale"), temperature=f.number("temperature"), topk=f.number("topk"),
        flow=f.text("flow", choices=FLOWS), precision=f.text("precision", choices=PRECISIONS))


def _prompts(f: _Fields) -> tuple[str, ...]:
    """``prompts`` (a list) or a single ``prompt``, each stripped and 1..1000 characters."""
    if f.get("prompts") is None and f.get("prompt") is None:
        raise f.fail("prompts", "The request has no prompt.",
                     "Send \"prompts\": [\"a person walks forward\"].")
    if f.get("prompts") is None:
        return (f.check_text(f.get("prompt"), "prompt", "prompt", strip=True),)
    return tuple(f.check_text(p, f"prompts[{i}]", "prompt", strip=True)
                 for i, p in enumerate(f.items("prompts", "prompts")))


def _lengths(f: _Fields, name: str, count: int, integer: bool) -> tuple[Any, ...] | None:
    """``seconds`` or ``frames``: one value for every prompt, a list of one per prompt, or null."""
    value = f.get(name)
    if value is None:
        return None
    values = f.items(name, "prompts") if isinstance(value, list) else [value] * count
    if len(values) != count:
        raise f.fail(name, f"{{field}} has {len(values)} values for {count} prompts.",
                     f"Give one {name!r} per prompt, a single value, or null for an automatic length.")
    return tuple(None if v is None else f.check_number(v, name, name, integer=integer) for v in values)


def _rig(f: _Fields, name: str = "rig", required: bool = True) -> RigSpec | None:
    rig = f.section(name, required=required)
    if rig is None:
        return None
    bone_names = rig.names("bone_names")
    parents = tuple(rig.check_number(p, f"parents[{i}]", "parents", integer=True)
                    for i, p in enumerate(rig.items("parents", "bones")))
    modes = rig.names("rotation_modes") if rig.get("rotation_modes") not in (None, []) else ()
    lengths = rig.array("lengths", (), first="bones", required=False)
    rest = rig.array("rest_matrices", (4, 4), first="bones")
    world = rig.get("world_matrix")
    if world is not None:   # one 4x4 matrix: read as a one-row stack of them
        world = rig.array("world_matrix", (4,), first="bones")
        if len(world) != 4:
            raise rig.fail("world_matrix", "{field} must be a 4x4 matrix.", "Send the object's matrix_world.")
    return RigSpec(bone_names=bone_names, parents=parents, rest_matrices=rest, world_matrix=world,
                   rotation_modes=modes, lengths=lengths, name=rig.text("name") or "")


def _retarget_spec(f: _Fields, rig_required: bool) -> RetargetSpec:
    return RetargetSpec(rig=_rig(f, required=rig_required), overrides=f.overrides(),
                        dst_fps=f.number("dst_fps", "fps"), foot_lock=f.flag("foot_lock", True),
                        in_place=f.flag("in_place", False))


def _generate(f: _Fields) -> GenerateRequest:
    prompts = _prompts(f)
    variations = f.integer("variations")
    variations = 1 if variations is None else variations
    takes = len(prompts) * variations
    if not BOUNDS["takes"].contains(takes):
        raise f.fail("variations", f"{len(prompts)} prompts x {variations} variations make {takes} takes, "
                     f"more than the {int(BOUNDS['takes'].high)} of one batch.",
                     "Ask for fewer variations or prompts at once.")
    if f.given("seconds") and f.given("frames"):
        raise f.fail("seconds", "The request gives both 'frames' and 'seconds'.", "Send one of the two.")
    section = f.section("retarget")
    return GenerateRequest(
        prompts=prompts, seconds=_lengths(f, "seconds", len(prompts), integer=False),
        frames=_lengths(f, "frames", len(prompts), integer=True), seed=f.integer("seed"),
        variations=variations, sampling=_sampling(f),
        retarget=None if section is None else _retarget_spec(section, rig_required=True))


def _source(f: _Fields, name: str = "source") -> Source:
    source = f.section(name)
    if source is None:
        raise f.fail(name, "The inpaint request has no {field}.",
                     "Send \"source\": {\"kind\": \"pose\"|\"joints\"|\"features\", ...}.")
    kind = source.text("kind", choices=SOURCE_KINDS, required=True)
    fps = source.number("fps")
    if kind == PoseSource.KIND:
        rig = _rig(source)
        assert rig is not None
        matrices = source.array("pose_matrices", (len(rig.bone_names), 4, 4))
        if len(matrices) < 2:
            raise source.fail("pose_matrices", "{field} has one frame; an in-between needs at least two.",
                              "Send the source animation's frames around the range.")
        return PoseSource(rig=rig, pose_matrices=matrices, fps=fps, overrides=source.overrides())
    if kind == JointsSource.KIND:
        return JointsSource(data=source.array("data", (None, 3)), fps=fps)
    return FeaturesSource(data=source.array("data", (None,)), fps=fps)


def _inpaint(f: _Fields) -> InpaintRequest:
    prompts = _prompts(f)
    if len(prompts) != 1:
        raise f.fail("prompts", f"An in-between takes one prompt, got {len(prompts)}.", "Send \"prompt\".")
    source = _source(f)
    start, end = f.number("start", required=True), f.number("end", required=True)
    assert start is not None and end is not None
    if not start < end <= source.frame_count:
        raise f.fail("start", f"The range [{start:g}, {end:g}) is not inside the source's "
                     f"{source.frame_count} frames.", "Choose a range with start < end inside the animation.")
    section = f.section("retarget")
    return InpaintRequest(
        prompt=prompts[0], source=source, start=start, end=end, seed=f.integer("seed"), sampling=_sampling(f),
        regen_residual_everywhere=f.flag("regen_residual_everywhere", False),
        retarget=None if section is None else _retarget_spec(section, rig_required=False))


def _segments(f: _Fields, name: str = "segments") -> tuple[Segment, ...]:
    """A timeline: 1..64 segments, each a prompt, seconds (or null: auto) and an optional seed."""
    value = f.get(name)
    if value is None or value == []:
        raise f.fail(name, "The timeline {field} has no segment.",
                     "Add at least one segment: {\"prompt\": \"a person walks\", \"seconds\": 4}.")
    segments = []
    for i, item in enumerate(f.items(name, "segments")):
        if not isinstance(item, Mapping):
            raise f.fail(f"{name}[{i}]", f"{{field}} must be an object, not {protocol.kind_of(item)}.",
                         "Send {\"prompt\": \"...\", \"seconds\": 4}.")
        seg = _Fields(item, f.request_id, f"{f.path}{name}[{i}].")
        prompt = seg.get("prompt")
        if isinstance(prompt, str) and not prompt.strip():
            raise seg.fail("prompt", f"Segment {i + 1}'s {{field}} is empty.",
                           "Describe the segment's motion, e.g. 'a person walks forward'.")
        if prompt is None:
            raise seg.fail("prompt", f"Segment {i + 1} has no {{field}}.", "Give every segment a prompt.")
        seconds = seg.get("seconds")
        segments.append(Segment(
            prompt=seg.check_text(prompt, "prompt", "prompt", strip=True),
            seconds=None if seconds is None else seg.check_number(seconds, "seconds", "segment_seconds"),
            seed=seg.integer("seed")))
    return tuple(segments)


def _compose(f: _Fields) -> ComposeRequest:
    segments = _segments(f)
    known = sum(s.seconds or 0.0 for s in segments)
    automatic = sum(s.seconds is None for s in segments)
    total = known + automatic * MAX_MOTION_FRAMES / DATASET_FPS["t2m"]
    if not BOUNDS["total_seconds"].contains(total):
        raise f.fail("segments", f"The timeline {{field}} lasts {total:g} s"
                     + (f" (its {automatic} automatic segments counted as 9.8 s each)" if automatic else "")
                     + f", more than the maximum of {MAX_COMPOSE_SECONDS:g} s ({MAX_COMPOSE_SECONDS / 60:g} "
                     "minutes).", "Shorten or remove segments, or compose the rest as a second take.")
    transition = f.number("transition")
    loop = f.flag("loop", False)
    section = f.section("retarget")
    source = _source(f, "continue_from") if f.given("continue_from") else None
    direction = f.text("direction", choices=COMPOSE_DIRECTIONS) or "after"
    if source is not None and loop:
        raise f.fail("loop", "A continuation or lead-in cannot be a {field}: it joins the source motion, "
                     "not its own start.", "Send either 'loop' or 'continue_from'.")
    regenerate = None
    spec = f.section("regenerate")
    if spec is not None:
        if source is not None:
            raise f.fail("regenerate", "A request cannot both {field} a segment and continue a motion.",
                         "Send one of 'regenerate' and 'continue_from'.")
        previous = _segments(spec, "segments")
        codes = spec.array("codes", (6,), first="codes")
        index = spec.integer("index", required=True)
        assert index is not None
        if index >= len(previous):
            raise spec.fail("index", f"{{field}}={index} names no segment: the take has {len(previous)} "
                            f"segments (0..{len(previous) - 1}).", "Pick a segment of the take.")
        if len(previous) != len(segments) or any(
                a.seconds != b.seconds for a, b in zip(previous, segments, strict=True)):
            raise spec.fail("segments", "The request's segments do not have the durations of the take's "
                            "{field}.", "Send the take's segments, changing only the prompt or seed of the "
                            "regenerated one.")
        if any(s.seconds is None for s in previous):
            raise spec.fail("segments", "{field} has a segment without seconds.",
                            "Send the take's segments with their real durations ((end - start) / fps).")
        regenerate = RegenerateSpec(codes=codes, segments=previous, index=index)
    # A continuation of a posed rig is keyed back onto that rig unless ``retarget.rig`` names another.
    retarget = None if section is None else _retarget_spec(
        section, rig_required=not isinstance(source, PoseSource))
    return ComposeRequest(
        segments=segments, transition=transition, loop=loop, seed=f.integer("seed"), fps=f.number("fps"),
        sampling=_sampling(f), retarget=retarget, continue_from=source, direction=direction,
        regenerate=regenerate)


def _map_rig(f: _Fields) -> MapRigRequest:
    rig = _rig(f)
    assert rig is not None
    return MapRigRequest(rig=rig, overrides=f.overrides())


def _retarget(f: _Fields) -> RetargetRequest:
    return RetargetRequest(joints=f.array("joints", (None, 3)), fps=f.number("fps"),
                           target=_retarget_spec(f, rig_required=True))


def _cancel(f: _Fields) -> CancelRequest:
    target = f.get("target")
    if not protocol.valid_id(target):
        raise protocol.ProtocolError(f"A cancel's \"target\" must be a request id (a string or an integer) "
                                     f"or null, "
                            f"not {protocol.describe(target)}.",
                            "Send the id of the request to cancel, or null to cancel every job.",
                            request_id=f.request_id)
    return CancelRequest(target=target)


_PARSERS: dict[str, Callable[[_Fields], Request]] = {
    protocol.HELLO: _hello, protocol.DIAGNOSE: _diagnose, protocol.LOAD: _load,
    protocol.GENERATE: _generate, protocol.INPAINT: _inpaint, protocol.MAP_RIG: _map_rig,
    protocol.RETARGET: _retarget, protocol.CANCEL: _cancel, protocol.SHUTDOWN: _shutdown,
    protocol.COMPOSE: _compose,
}
