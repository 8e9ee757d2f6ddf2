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
# Steering (docs/protocol.md "Steering", docs/retargeting.md §11): how a path is timed, what the
# body faces along it, and where the root's travel goes.
PATH_TIMINGS: tuple[str, ...] = ("keep_speed", "fit_duration")
PATH_FACINGS: tuple[str, ...] = ("tangent", "keep_relative")
ROOT_MOTION_MODES: tuple[str, ...] = ("none", "in_place", "root_bone", "object")
#: The speed (m/s, a brisk walk) :func:`path_seconds` plans a path's duration with before generating;
#: the result reports the motion's own measured speed and the duration that speed needs.
NOMINAL_PATH_SPEED = 1.3
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
    "target_rigs": Bound("count", 0, 64, "further rigs one retarget drives from the same motion (Copy "
                         "Take to the selected rigs)"),
    "bones": Bound("count", 1, 4096, "bones of one armature (game and film rigs stay well below)"),
    "parents": Bound("integer", -1, 4095, "a bone's parent index, -1 for a root"),
    "overrides": Bound("count", 0, 256, "role -> bone overrides of one mapping"),
    "name": Bound("chars", 1, 255, "a bone, role or rotation-mode name (Blender names are 63 bytes)"),
    "text": Bound("chars", 0, 4096, "a path, a device, a dataset or a client name"),
    # steering (docs/protocol.md, "Steering")
    "path_points": Bound("count", 2, 100_000, "points of a path polyline, world metres (the add-on "
                         "samples a curve about every 2 cm: 2 km at most)"),
    "waypoints": Bound("count", 1, 256, "waypoints of one take (one every 4 frames of 1,000)"),
    "waypoint_frame": Bound("number", 0, 1_000_000, "a waypoint's frame, in key frames (dst_fps) "
                            "from the take's first key"),
    "coordinate": Bound("number", -1_000_000, 1_000_000, "a world-space coordinate in metres"),
    # pose targets (TargetsRequest)
    "targets": Bound("count", 1, MAX_MOTION_FRAMES // UNIT_LENGTH, "pose targets of one take: each "
                     "pins its own token, and a take has at most 49"),
    "target_frames": Bound("number", 0, 1_000_000, "a pose target's frame, counted from the take's "
                           "first frame at the source fps"),
    "take_frames": Bound("integer", 2, 1_000_000, "a take's length in source frames; the use case "
                         "checks that it fits the model's 196 frames"),
    "blend_frames": Bound("integer", 0, 1000, "the least frames each side of a pose target over which "
                          "the keyed rotations blend in (the backend widens it where needed)"),
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
    #: a take through pose targets: the target frames, their blend windows, the pinned tokens
    targets: Mapping[str, Any] | None = None
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
    """The first rig's ``retarget`` and ``mapping``; ``targets``: one ``{"retarget", "mapping"}`` per
    further rig of the request, in its order; ``source_mapping``: how a pose source was read."""

    retarget: Mapping[str, Any]
    mapping: Mapping[str, Any]
    timings: Mapping[str, float]
    targets: tuple[Mapping[str, Any], ...] | None = None
    source_mapping: Mapping[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        data = _present(self)
        if "targets" in data:
            data["targets"] = list(data["targets"])
        return data


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
class PathSpec:
    """A path the take's root follows (docs/protocol.md, "Steering"): ``points`` (n, 3) a polyline in
    world space, metres, Blender's Z up (the add-on samples the curve densely; the backend uses its
    ground projection); ``timing`` "keep_speed" (the motion's own speed; the path sets the duration,
    :func:`path_seconds`) or "fit_duration" (the take's length covers the path, speed scaled);
    ``facing`` "tangent" (the body faces along the path) or "keep_relative" (the motion's travel
    runs along the path and the body keeps its own facing relative to it)."""

    points: Any
    timing: str = "keep_speed"
    facing: str = "tangent"

    def to_dict(self) -> dict[str, Any]:
        return {"points": self.points, "timing": self.timing, "facing": self.facing}


@_SCHEMA
class Waypoint:
    """The root passes ``position`` (world metres, Z up; its ground projection) at ``frame`` (key frames
    at the retarget's ``dst_fps``, counted from the take's first key, fractions allowed)."""

    position: tuple[float, float, float]
    frame: float

    def to_dict(self) -> dict[str, Any]:
        return {"position": list(self.position), "frame": self.frame}


@_SCHEMA
class RootMotionSpec:
    """Where the root's travel goes: "none" (on the pelvis bone, as generated), "in_place" (dropped:
    the pelvis stays over its rest position horizontally), "root_bone" (extracted onto ``bone``, an
    ancestor of the hips; ``""``: a bone named "root" if the rig has one, else the object) or "object"
    (onto the armature object's location/rotation keys). ``heading``: the extracted root also turns with
    the body's facing (about the vertical); otherwise it only translates. Extracted roots are
    ground-projected and the hips keep their rest offset from them."""

    mode: str = "none"
    bone: str = ""
    heading: bool = True

    def to_dict(self) -> dict[str, Any]:
        return {"mode": self.mode, "bone": self.bone, "heading": self.heading}


@_SCHEMA
class RetargetSpec:
    """Where a motion goes: ``rig`` with its role ``overrides``, keyed at ``dst_fps`` (None: the
    source's or the model's rate), with foot lock and in-place options; and the steering
    (docs/protocol.md, "Steering"): a ``path`` or ``waypoints`` the root follows, where the root
    motion goes (``root_motion``; ``in_place=True`` is the same as ``RootMotionSpec("in_place")``) and
    ``ground`` (no foot below the rig's rest sole height, the pelvis lowered where a foot cannot
    otherwise reach)."""

    rig: RigSpec | None = None
    overrides: Mapping[str, str] = dataclasses.field(default_factory=dict)
    dst_fps: float | None = None
    foot_lock: bool = True
    in_place: bool = False
    path: PathSpec | None = None
    waypoints: tuple[Waypoint, ...] = ()
    root_motion: RootMotionSpec | None = None
    ground: bool = False

    @property
    def root_mode(self) -> str:
        """The root-motion mode in effect ("none", "in_place", "root_bone" or "object")."""
        if self.root_motion is not None:
            return self.root_motion.mode
        return "in_place" if self.in_place else "none"

    @property
    def steered(self) -> bool:
        """Whether the request asks for any steering beyond the plain solve."""
        return bool(self.path is not None or self.waypoints or self.ground
                    or self.root_mode in ("root_bone", "object"))

    def to_dict(self) -> dict[str, Any]:
        data = {"rig": self.rig, "overrides": dict(self.overrides), "dst_fps": self.dst_fps,
                "foot_lock": self.foot_lock, "in_place": self.in_place,
                "path": None if self.path is None else self.path.to_dict(),
                "waypoints": [w.to_dict() for w in self.waypoints] or None,
                "root_motion": None if self.root_motion is None else self.root_motion.to_dict(),
                "ground": self.ground or None}
        return {k: v for k, v in data.items() if v is not None}


def path_seconds(points: Any, speed: float = NOMINAL_PATH_SPEED) -> float:
    """The take length (seconds) that walks ``points`` (n, 3; world metres, Z up) at ``speed`` m/s:
    the ground-projected polyline length / speed, at most the longest clip (:data:`MAX_SECONDS` is the
    KIT limit; t2m's is 9.8 s, which the pipeline enforces). Stdlib only, so the add-on can plan a
    "keep_speed" path before generating; the take then reports the motion's measured speed and the
    duration that speed needs (docs/protocol.md, "Steering")."""
    rows = points.tolist() if hasattr(points, "tolist") else list(points)
    length = sum(math.hypot(float(b[0]) - float(a[0]), float(b[1]) - float(a[1]))
                 for a, b in zip(rows, rows[1:], strict=False))
    return min(length / max(float(speed), 1e-6), MAX_MOTION_FRAMES / DATASET_FPS["t2m"])


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
class TargetsRequest(Request):
    """Generate a take of ``take_frames`` source frames from ``prompt`` that passes through the poses
    keyed on a rig: ``source.pose_matrices`` holds one row per pose target, in the order of
    ``target_frames`` (frames from the take's first frame, at ``source.fps``, strictly increasing)."""

    TYPE = protocol.TARGETS
    prompt: str
    source: PoseSource
    target_frames: tuple[float, ...]
    take_frames: int
    seed: int | None = None
    sampling: SamplingOptions = dataclasses.field(default_factory=SamplingOptions)
    blend_frames: int | None = None
    retarget: RetargetSpec | None = None

    def fields(self) -> dict[str, Any]:
        return {"prompt": self.prompt, "target_frames": list(self.target_frames),
                "take_frames": self.take_frames, "seed": self.seed, **self.sampling.given(),
                "blend_frames": self.blend_frames, "source": self.source, "retarget": self.retarget}


def pose_target_problem(target_frames: tuple[float, ...] | list[float], take_frames: int, fps: float,
                        model_fps: float, first: float = 0) -> tuple[str, str] | None:
    """(problem, fix) when pose targets cannot be hit, else None: a target outside the take
    ``[0, take_frames)``, targets out of order, or two closer than one token (4 model frames, i.e.
    :func:`min_target_spacing` source frames), which would share the token they pin. Frames count from
    the take's first frame at ``fps``; messages name them plus ``first`` (the add-on passes the take's
    first scene frame). The add-on checks with this before it sends, the backend again."""
    frames = [float(f) for f in target_frames]
    if not frames:
        return ("No pose targets were given.", "Key the poses to hit, then list their frames (From Keys).")

    def name(frame: float) -> str:
        return _number_text(frame + first)

    last = take_frames - 1
    outside = [f for f in frames if not 0 <= f <= last]
    if outside:
        return (f"The pose target at frame {name(outside[0])} is outside the take's frames "
                f"{name(0)}-{name(last)}.",
                "Extend the take's frame range over every target, or remove the target.")
    spacing = min_target_spacing(fps, model_fps)
    for before, after in zip(frames, frames[1:], strict=False):
        if after <= before:
            return (f"The pose targets are not in increasing order ({name(before)} then {name(after)}).",
                    "List each target frame once, in increasing order.")
        if after - before < spacing:
            return (f"The pose targets at frames {name(before)} and {name(after)} are "
                    f"{_number_text(after - before)} frames apart, inside one token (4 model frames = "
                    f"{UNIT_LENGTH * fps / model_fps:g} frames at {fps:g} fps).",
                    f"Space pose targets at least {spacing} frames apart, or remove one of them.")
    return None


def take_model_frames(take_frames: int, fps: float, model_fps: float) -> int:
    """Model frames (whole tokens) that cover a take of ``take_frames`` frames at ``fps``: its last frame
    at ``(take_frames − 1) / fps`` seconds lies inside them."""
    needed = (take_frames - 1) * model_fps / fps + 1
    return UNIT_LENGTH * math.ceil(needed / UNIT_LENGTH - 1e-9)


def min_target_spacing(fps: float, model_fps: float) -> int:
    """The least distance in source frames between two pose targets that always puts them in different
    tokens: one token is ``UNIT_LENGTH`` model frames, ``UNIT_LENGTH * fps / model_fps`` source frames."""
    return max(1, math.ceil(UNIT_LENGTH * fps / model_fps - 1e-9))


def transition_token_count(seconds: float, model_fps: float) -> int:
    """A compose transition of ``seconds`` in whole tokens (rounded up, at least 1; docs/compose.md).
    The tolerance covers a float32 Blender property: 0.4 reads 0.4000000060, 2 tokens, not 3."""
    return max(1, math.ceil(seconds * model_fps / UNIT_LENGTH - 1e-6))


def segment_token_bounds(seconds: list[float] | tuple[float, ...], model_fps: float) -> list[int]:
    """Token boundaries (K + 1) of segments lasting ``seconds``: each cumulative time rounded to the
    nearest token (docs/compose.md, "Plan")."""
    per_token = UNIT_LENGTH / model_fps
    bounds, elapsed = [0], 0.0
    for value in seconds:
        elapsed += float(value)
        bounds.append(int(round(elapsed / per_token + 1e-9)))
    return bounds


def segment_length_problem(seconds: list[float] | tuple[float, ...], transition: float, loop: bool,
                           model_fps: float) -> tuple[str, str] | None:
    """(problem, fix) when a segment of a composed timeline is too short for its transitions, else
    None. Each transition takes half its tokens from both neighbours; what is left of a segment (its
    core) must be at least 2 tokens, so that its own prompt makes some of it and each transition sees
    a token of it as context (docs/compose.md). A segment between two transitions (any segment of a
    loop) needs transition + 2 tokens, the first of an open timeline half the transition (rounded
    down) + 2, the last the other half + 2. The add-on checks with this before it sends, the backend
    again (both with the seconds on the wire)."""
    count = len(seconds)
    if count == 0 or (count == 1 and not loop):
        return None
    tau = transition_token_count(transition, model_fps)
    per_token = UNIT_LENGTH / model_fps
    bounds = segment_token_bounds(seconds, model_fps)
    for k in range(count):
        before = tau - tau // 2 if (k > 0 or loop) else 0
        after = tau // 2 if (k < count - 1 or loop) else 0
        need = before + after + 2
        have = bounds[k + 1] - bounds[k]
        if have < need:
            where = ("between two transitions" if before and after else
                     "after the first transition" if before else "before the first transition")
            return (f"Segment {k + 1} lasts {float(seconds[k]):g} s ({have} tokens on the timeline), shorter "
                    f"than the {need * per_token:g} s ({need} tokens) a segment {where} needs with a "
                    f"{transition:g} s transition ({tau} tokens): the transition would leave none of it "
                    "to its own prompt.",
                    f"Lengthen segment {k + 1} to at least {need * per_token:g} s, or shorten the "
                    "transition.")
    return None


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
    """Drive ``target.rig`` from ``joints`` (frames, joints, 3) at ``fps`` (None: the model's), or from
    another rig's animation ``source`` (a :class:`PoseSource`: Apply Motion, Copy Take). ``targets``:
    more rigs driven from the same motion in the same request (Copy Take to several rigs)."""

    TYPE = protocol.RETARGET
    target: RetargetSpec
    joints: Any = None
    fps: float | None = None
    source: PoseSource | None = None
    targets: tuple[RetargetSpec, ...] = ()

    def fields(self) -> dict[str, Any]:
        return {"joints": self.joints, "fps": self.fps, **self.target.to_dict(), "source": self.source,
                "targets": [t.to_dict() for t in self.targets] or None}


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
    in_place = f.flag("in_place", False)
    root_motion = _root_motion(f)
    if in_place and root_motion is not None and root_motion.mode != "in_place":
        raise f.fail("root_motion", f"{{field}} is {root_motion.mode!r} but 'in_place' is true.",
                     "Send one of the two: 'root_motion' {\"mode\": ...} or 'in_place'.")
    return RetargetSpec(rig=_rig(f, required=rig_required), overrides=f.overrides(),
                        dst_fps=f.number("dst_fps", "fps"), foot_lock=f.flag("foot_lock", True),
                        in_place=in_place, path=_path(f), waypoints=_waypoints(f),
                        root_motion=root_motion, ground=f.flag("ground", False))


def _path(f: _Fields) -> PathSpec | None:
    path = f.section("path")
    if path is None:
        return None
    value = path.get("points")
    rows = len(value) if isinstance(value, list) else (
        int(value.shape[0]) if protocol.is_array(value) and len(value.shape) else None)
    if rows is not None and rows < 2:
        raise path.fail("points", f"{{field}} has {rows} point(s); a path needs at least two (a curve "
                        "with length).", "Pick a curve with at least two points and some length, or "
                        "clear the path.")
    return PathSpec(points=path.array("points", (3,), first="path_points"),
                    timing=path.text("timing", choices=PATH_TIMINGS) or "keep_speed",
                    facing=path.text("facing", choices=PATH_FACINGS) or "tangent")


def _waypoints(f: _Fields) -> tuple[Waypoint, ...]:
    if f.get("waypoints") is None:
        return ()
    waypoints = []
    for i, item in enumerate(f.items("waypoints", "waypoints")):
        name = f"waypoints[{i}]"
        if not isinstance(item, Mapping):
            raise f.fail(name, f"{{field}} must be an object, not {protocol.kind_of(item)}.",
                         "Send {\"position\": [x, y, z], \"frame\": 24}.")
        w = _Fields(item, f.request_id, f"{f.path}{name}.")
        position = w.get("position")
        if not isinstance(position, list) or len(position) != 3:
            raise w.fail("position", "{field} must be a list of 3 numbers (world metres).",
                         "Send the waypoint's world location [x, y, z].")
        coords = tuple(w.check_number(c, f"position[{k}]", "coordinate") for k, c in enumerate(position))
        frame = w.number("frame", "waypoint_frame", required=True)
        assert frame is not None
        if waypoints and frame <= waypoints[-1].frame:
            raise f.fail(name, f"{{field}} is at frame {frame:g}, not after the previous waypoint's "
                         f"{waypoints[-1].frame:g}; waypoints must be in frame order.",
                         "Give each waypoint a later frame than the one before (sort the list by frame).")
        waypoints.append(Waypoint(position=coords, frame=frame))
    return tuple(waypoints)


def _root_motion(f: _Fields) -> RootMotionSpec | None:
    section = f.section("root_motion")
    if section is None:
        return None
    bone = section.get("bone")
    return RootMotionSpec(mode=section.text("mode", choices=ROOT_MOTION_MODES) or "none",
                          bone="" if bone in (None, "") else section.text("bone", "name") or "",
                          heading=section.flag("heading", True))


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


def _targets(f: _Fields) -> TargetsRequest:
    prompts = _prompts(f)
    if len(prompts) != 1:
        raise f.fail("prompts", f"A take through pose targets has one prompt, got {len(prompts)}.",
                     "Send \"prompt\".")
    source = f.section("source", required=True)
    assert source is not None
    kind = source.text("kind", choices=(PoseSource.KIND,), required=True)
    assert kind == PoseSource.KIND
    fps = source.number("fps", required=True)
    rig = _rig(source)
    assert rig is not None and fps is not None
    matrices = source.array("pose_matrices", (len(rig.bone_names), 4, 4), first="targets")
    frames = tuple(f.check_number(v, f"target_frames[{i}]", "target_frames")
                   for i, v in enumerate(f.items("target_frames", "targets")))
    if len(frames) != len(matrices):
        raise f.fail("target_frames", f"{{field}} lists {len(frames)} frames for {len(matrices)} posed "
                     "rows of source.pose_matrices.", "Send one pose per target frame, in the same order.")
    take_frames = f.integer("take_frames", required=True)
    assert take_frames is not None
    for before, after in zip(frames, frames[1:], strict=False):
        if after <= before:
            raise f.fail("target_frames",
                         f"{{field}} is not strictly increasing ({before:g} then {after:g}).",
                         "List each target frame once, in increasing order.")
    if frames[-1] > take_frames - 1:
        raise f.fail("target_frames", f"The pose target at frame {frames[-1]:g} is outside the take's "
                     f"frames 0-{take_frames - 1}.", "Extend the take or remove the target.")
    section = f.section("retarget")
    return TargetsRequest(
        prompt=prompts[0], source=PoseSource(rig=rig, pose_matrices=matrices, fps=fps,
                                             overrides=source.overrides()),
        target_frames=frames, take_frames=take_frames, seed=f.integer("seed"), sampling=_sampling(f),
        blend_frames=f.integer("blend_frames"),
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
    if f.given("joints") == f.given("source"):
        raise f.fail("joints", "A retarget request needs either 'joints' or a pose 'source', "
                     f"{'not both' if f.given('joints') else 'and has neither'}.",
                     "Send \"joints\" (frames, 22, 3), or \"source\": {\"kind\": \"pose\", \"rig\": ..., "
                     "\"pose_matrices\": ...} (docs/protocol.md, retarget).")
    source = None
    if f.given("source"):
        section = f.section("source")
        assert section is not None
        section.text("kind", choices=(PoseSource.KIND,), required=True)
        rig = _rig(section)
        assert rig is not None
        matrices = section.array("pose_matrices", (len(rig.bone_names), 4, 4))
        source = PoseSource(rig=rig, pose_matrices=matrices, fps=section.number("fps"),
                            overrides=section.overrides())
    more = [] if f.get("targets") is None else f.items("targets", "target_rigs")
    targets = []
    for i, item in enumerate(more):
        if not isinstance(item, Mapping):
            raise f.fail(f"targets[{i}]", f"{{field}} must be an object, not {protocol.kind_of(item)}.",
                         "Send each further rig as {\"rig\": ..., \"overrides\": ..., \"dst_fps\": ...}.")
        section = _Fields(item, f.request_id, f"{f.path}targets[{i}].")
        targets.append(_retarget_spec(section, rig_required=True))
    joints = f.array("joints", (None, 3)) if source is None else None
    return RetargetRequest(joints=joints, fps=f.number("fps"), source=source,
                           target=_retarget_spec(f, rig_required=True), targets=tuple(targets))


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
    protocol.TARGETS: _targets,
    protocol.COMPOSE: _compose,
}
