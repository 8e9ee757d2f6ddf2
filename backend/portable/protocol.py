"""The wire format between the Blender add-on and ``python -m backend serve`` (see docs/protocol.md).

One JSON object per line (UTF-8, ``\\n``-terminated) in each direction. The add-on sends requests
``{"id", "type", ...}``; the backend answers with ``progress`` events and exactly one ``result`` or
``error`` per request, all carrying the request's ``id``.

This module frames that exchange: message types and error codes, the limits on a line, the hardened
decoder (one :class:`ProtocolError` for anything unreadable, with the id whenever it was readable),
arrays, and the reply builders. What each message holds — the typed requests and results, their
bounds, ``parse_request`` — is ``messages.py``.

It is stdlib only: Blender loads this very file by path into its own Python, which has numpy but
never torch, and the backend's package may not be importable there. Arrays are therefore recognised
by duck typing (``.tobytes()``, ``.dtype``, ``.shape``) and decoded to numpy only when numpy can be
imported.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
import struct
import sys
from collections.abc import Mapping
from typing import Any

#: Bumped on any change a peer must know about (a renamed field, a new required field...).
PROTOCOL_VERSION = 1

# --- message types ---------------------------------------------------------------------------------

HELLO = "hello"
DIAGNOSE = "diagnose"
LOAD = "load"
GENERATE = "generate"
INPAINT = "inpaint"
MAP_RIG = "map_rig"
RETARGET = "retarget"
CANCEL = "cancel"
SHUTDOWN = "shutdown"
COMPOSE = "compose"
REQUEST_TYPES: tuple[str, ...] = (
    HELLO, DIAGNOSE, LOAD, GENERATE, INPAINT, MAP_RIG, RETARGET, CANCEL, SHUTDOWN, COMPOSE)

PROGRESS = "progress"
RESULT = "result"
ERROR = "error"
LOG = "log"
REPLY_TYPES: tuple[str, ...] = (PROGRESS, RESULT, ERROR, LOG)

# --- error codes (``error.code``); the MoMaskError kinds bring their own ("bad_input", "bad_weights",
# "bad_rig", "cancelled", "error") ---------------------------------------------------------------------

BAD_REQUEST = "bad_request"          # the line is not a valid request (JSON, id, type, array encoding)
BAD_INPUT = "bad_input"              # a field's value is wrong: type or bounds (as errors.InputError)
PROTOCOL_MISMATCH = "protocol_mismatch"
OUT_OF_MEMORY = "out_of_memory"
INTERNAL = "internal"                # a bug: the problem names the exception, the log has the traceback

# --- limits on the line itself -----------------------------------------------------------------------

#: One line at most; an in-between's pose source (frames x bones x 16 float32, base64) is the largest
#: real message: 2,000 frames of a 500-bone rig are 85 MB on the wire.
MAX_LINE_BYTES = 512 * 1024 * 1024
#: JSON nesting: the deepest real message (inpaint > source > rig > matrices as lists) is 6 deep.
MAX_DEPTH = 32
#: Elements of one array and of all arrays in one message, checked before anything is allocated.
MAX_ARRAY_ELEMENTS = 2**25
MAX_MESSAGE_ELEMENTS = 2**26
MAX_ARRAY_NDIM = 8
#: Ids: strings of at most this many characters, or integers that fit in 64 bits (signed).
MAX_ID_CHARS = 256
MAX_INT_ID = 2**63 - 1


ARRAY_KEY = "__array__"
_LITTLE_ENDIAN_CODES = {          # dtype name -> struct code, for decoding without numpy
    "float16": "e", "float32": "f", "float64": "d", "int8": "b", "uint8": "B", "int16": "h",
    "uint16": "H", "int32": "i", "uint32": "I", "int64": "q", "uint64": "Q", "bool": "?",
}
ARRAY_DTYPES: tuple[str, ...] = tuple(_LITTLE_ENDIAN_CODES)

RequestId = str | int


class ProtocolError(ValueError):
    """A line or a field the backend refuses. Shaped like ``backend.portable.errors.MoMaskError``
    (code, problem, fix) so it travels back as an ordinary error reply: ``code`` is ``bad_request``
    for a line that is not a valid request, ``bad_input`` for a field whose value is wrong;
    ``request_id`` is the id whenever one was readable, so the client can route the error.
    """

    def __init__(self, problem: str, fix: str = "", request_id: Any = None, code: str = BAD_REQUEST) -> None:
        self.problem = problem
        self.fix = fix or ("Send one JSON object per line with an \"id\" and a known \"type\" "
                           "(docs/protocol.md).")
        self.request_id = request_id
        self.code = code
        super().__init__(f"{problem} Fix: {self.fix}")


class OversizedInteger:
    """A JSON integer with more digits than Python converts (``sys.get_int_max_str_digits``): kept as
    its digit count so the field holding it is refused by name instead of the whole line failing."""

    def __init__(self, text: str) -> None:
        self.digits = len(text.lstrip("-"))

    def __repr__(self) -> str:
        return f"of {self.digits} digits"


# --- arrays ----------------------------------------------------------------------------------------

def is_array(value: Any) -> bool:
    return hasattr(value, "tobytes") and hasattr(value, "dtype") and hasattr(value, "shape")


def encode_array(array: Any) -> dict[str, Any]:
    """``{"__array__": base64(little-endian C-order bytes), "dtype": "float32", "shape": [..]}``."""
    dtype = array.dtype
    if getattr(dtype, "byteorder", "=") == ">" or (getattr(dtype, "byteorder", "=") == "=" and
                                                    sys.byteorder == "big"):
        array = array.byteswap()     # numpy only: a big-endian peer is theoretical, but be correct
    if hasattr(array, "flags") and not array.flags["C_CONTIGUOUS"]:
        array = array.copy(order="C")
    return {ARRAY_KEY: base64.b64encode(array.tobytes()).decode("ascii"),
            "dtype": str(getattr(dtype, "name", dtype)), "shape": [int(n) for n in array.shape]}


_ARRAY_FIX = ("Encode arrays as {\"__array__\": base64 of the little-endian C-order bytes, \"dtype\": "
              "\"float32\", \"shape\": [...]} (docs/protocol.md, Arrays).")


def array_size(obj: Mapping[str, Any]) -> tuple[str, list[int], int]:
    """The dtype, shape and element count an encoded array declares, checked (kinds, dtype allow-list,
    non-negative shape, :data:`MAX_ARRAY_ELEMENTS`) before a byte of it is decoded."""
    if set(obj) != {ARRAY_KEY, "dtype", "shape"}:
        extra = sorted(str(k) for k in set(obj) - {ARRAY_KEY, "dtype", "shape"})
        missing = sorted({ARRAY_KEY, "dtype", "shape"} - set(obj))
        what = ([f"no {', '.join(missing)}"] if missing else []) + ([f"unknown keys {', '.join(extra)}"]
                                                                    if extra else [])
        raise ProtocolError(f"A malformed array: {'; '.join(what)}.", _ARRAY_FIX)
    data, dtype, shape = obj[ARRAY_KEY], obj["dtype"], obj["shape"]
    if not isinstance(data, str):
        raise ProtocolError(f"A malformed array: \"__array__\" must be a base64 string, not "
                            f"{kind_of(data)}.", _ARRAY_FIX)
    if not isinstance(dtype, str) or dtype not in _LITTLE_ENDIAN_CODES:
        raise ProtocolError(f"Unsupported array dtype {shorten(dtype)}.",
                            f"Use one of: {', '.join(ARRAY_DTYPES)} (little-endian, named as numpy names "
                            "them).")
    if not isinstance(shape, list) or len(shape) > MAX_ARRAY_NDIM or not all(
            isinstance(n, int) and not isinstance(n, bool) for n in shape):
        raise ProtocolError(f"A malformed array shape {shorten(shape)}: it must be a list of at most "
                            f"{MAX_ARRAY_NDIM} whole numbers.", _ARRAY_FIX)
    if any(n < 0 for n in shape):
        raise ProtocolError(f"The array shape {shape} has a negative dimension.", _ARRAY_FIX)
    count = 1
    for n in shape:                      # stops early: a shape like [2**62, 2**62] is never multiplied out
        count *= n
        if count > MAX_ARRAY_ELEMENTS:
            raise ProtocolError(f"An array of shape {shape} is larger than the {MAX_ARRAY_ELEMENTS:,} "
                                "elements one array may hold.",
                                "Send a shorter clip or fewer bones (docs/protocol.md, Bounds).")
    return dtype, shape, count


def decode_array(obj: Mapping[str, Any]) -> Any:
    """The inverse of :func:`encode_array`: a numpy array, or nested lists where numpy is missing."""
    dtype, shape, count = array_size(obj)
    itemsize = struct.calcsize("<" + _LITTLE_ENDIAN_CODES[dtype])
    need = count * itemsize
    text = obj[ARRAY_KEY]
    if len(text) != 4 * ((need + 2) // 3):    # checked before decoding: no allocation for a lie
        raise ProtocolError(f"An array of shape {shape} and dtype {dtype} needs {need} bytes "
                            f"({4 * ((need + 2) // 3)} base64 characters), got {len(text)} characters.",
                            "Send the array's raw C-order little-endian bytes, base64-encoded.")
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ProtocolError(f"An array's \"__array__\" is not valid base64 ({exc}).", _ARRAY_FIX) from exc
    if len(raw) != need:
        raise ProtocolError(f"An array of shape {shape} and dtype {dtype} needs {need} bytes, "
                            f"got {len(raw)}.", "Send the array's raw C-order little-endian bytes.")
    try:
        import numpy as np
    except ImportError:
        flat = list(struct.unpack(f"<{count}{_LITTLE_ENDIAN_CODES[dtype]}", raw))
        return _reshape(flat, shape) if shape else flat[0]
    return np.frombuffer(raw, dtype=np.dtype(dtype).newbyteorder("<")).astype(dtype).reshape(shape)


def _reshape(flat: list[Any], shape: list[int]) -> Any:
    if len(shape) == 1:
        return flat
    step = math.prod(shape[1:])
    return [_reshape(flat[i * step:(i + 1) * step], shape[1:]) for i in range(shape[0])]


def kind_of(value: Any) -> str:
    """A JSON-ish name for a value's type, for error messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, OversizedInteger)):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, (list, tuple)):
        return "a list"
    if is_array(value):
        return "an encoded array"
    if isinstance(value, Mapping):
        return "an object"
    return type(value).__name__


def shorten(value: Any, limit: int = 60) -> str:
    """``repr`` of a value for an error message, cut short (a field may hold megabytes)."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def describe(value: Any) -> str:
    """``value`` for an error message: its JSON kind and a short form (``a string 'walk'``)."""
    return f"{kind_of(value)} {shorten(value)}"


# --- messages --------------------------------------------------------------------------------------

def to_wire(value: Any) -> Any:
    """A JSON-ready copy of ``value``: arrays encoded, numpy scalars unwrapped, tuples as lists,
    dataclasses (the typed parts below) as objects and non-finite floats as ``null`` (strict JSON
    has no NaN)."""
    if isinstance(value, dict):
        return {str(k): to_wire(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_wire(v) for v in value]
    if isinstance(value, (str, bool, int)) or value is None:
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if is_array(value):
        if tuple(value.shape) == ():
            return to_wire(value.item())          # numpy scalar or 0-d array
        return encode_array(value)
    if hasattr(value, "__fspath__"):
        return str(value.__fspath__())
    if hasattr(value, "to_dict"):
        return to_wire(value.to_dict())
    raise TypeError(f"Cannot send a {type(value).__name__} over the protocol.")


def from_wire(value: Any, budget: list[int] | None = None) -> Any:
    """Decode every ``{"__array__": ...}`` inside a parsed message; ``budget`` (one element: the
    elements still allowed) bounds all arrays of one message together (:data:`MAX_MESSAGE_ELEMENTS`)."""
    budget = [MAX_MESSAGE_ELEMENTS] if budget is None else budget
    if isinstance(value, dict):
        if ARRAY_KEY in value:
            count = array_size(value)[2]
            budget[0] -= count
            if budget[0] < 0:
                raise ProtocolError(f"The message's arrays hold more than the {MAX_MESSAGE_ELEMENTS:,} "
                                    "elements one message may carry.",
                                    "Send a shorter clip or fewer bones (docs/protocol.md, Bounds).")
            return decode_array(value)
        return {k: from_wire(v, budget) for k, v in value.items()}
    if isinstance(value, list):
        return [from_wire(v, budget) for v in value]
    return value


def encode_message(message: dict[str, Any]) -> bytes:
    """One message as a UTF-8 JSON line (ending in ``\\n``); arrays are encoded on the way.

    A string that UTF-8 cannot hold (a lone surrogate such as ``"\\ud800"``, which JSON's ``\\u``
    escapes can carry in) is written as its JSON escape, so it comes back exactly as it was sent: an
    id is never lost on the way back."""
    if not isinstance(message, dict) or "type" not in message:
        raise TypeError("A protocol message is a dict with a \"type\".")
    wire = to_wire(message)
    try:
        return _dump(wire, ascii_only=False).encode("utf-8") + b"\n"
    except UnicodeEncodeError:
        return _dump(wire, ascii_only=True).encode("ascii") + b"\n"


def _dump(wire: Any, ascii_only: bool) -> str:
    return json.dumps(wire, ensure_ascii=ascii_only, allow_nan=False, separators=(",", ":"))


# A JSON string token (escapes included) or one bracket: what the nesting scan looks at. Unrolled so a
# megabyte of base64 is one fast match rather than one step per character.
_TOKEN = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]', re.DOTALL)


def _nesting_depth(text: str) -> int:
    """The deepest bracket nesting of ``text``, outside strings: checked before ``json.loads`` can
    recurse, so 200,000 ``[`` are refused in one pass instead of exhausting the stack. Strings are
    dropped with ``str.split`` (C speed: a 50 MB line of base64 takes milliseconds, a regex a second)
    once their escapes are gone, which is exact for any line JSON could accept."""
    if "\\" in text:
        text = text.replace("\\\\", "").replace('\\"', "")
    depth = deepest = 0
    for char in _BRACKETS.findall("".join(text.split('"')[0::2])):
        if char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        else:
            depth -= 1
    return deepest


_BRACKETS = re.compile(r"[\[\]{}]")


def _top_level(text: str) -> str:
    """``text`` with everything nested below the top-level object replaced by ``null``: enough to read
    the id and type of a line too deep (or too odd) to parse whole."""
    pieces: list[str] = []
    depth, copied = 0, 0
    for token in _TOKEN.finditer(text):
        char = token.group()
        if char in "[{":
            depth += 1
            if depth == 2:
                pieces += [text[copied:token.start()], "null"]
        elif char in "]}":
            depth -= 1
            if depth == 1:
                copied = token.end()
    # A nested part left open (a truncated line) still leaves the fields before it readable.
    pieces.append(text[copied:] if depth <= 1 else "}")
    return "".join(pieces)


def _parse_int(text: str) -> int | OversizedInteger:
    try:
        return int(text)
    except ValueError:                   # more digits than sys.get_int_max_str_digits() allows
        return OversizedInteger(text)


def _parse_constant(name: str) -> float:
    # NaN / Infinity are not JSON; they become floats so the field holding one is refused by name
    # (every number field must be finite) instead of the whole line with its id.
    return float(name.replace("Infinity", "inf"))


def _loads(text: str) -> Any:
    return json.loads(text, parse_int=_parse_int, parse_constant=_parse_constant)


def readable_id(message: Any) -> Any:
    """The message's id when a reply can carry it back for the peer to match (a valid request id:
    a string of at most MAX_ID_CHARS characters or a 64-bit integer), else ``None``. A float, a
    boolean or an over-long string would be refused by the peer's own decoder, which would then wait
    for ever for a reply it cannot read."""
    if not isinstance(message, dict):
        return None
    value = message.get("id")
    return value if valid_id(value) else None


def _recover_id(text: str) -> Any:
    """The id of a line that cannot be parsed whole (too deep, not UTF-8...), when its top level can."""
    top = _top_level(text)
    for candidate in (top, top + "}"):       # "}": a line cut short, or closed by the wrong bracket
        try:
            return readable_id(_loads(candidate))
        except (ValueError, RecursionError):
            continue
    return None


def decode_message(line: bytes | str, kind: str | None = None, arrays: bool = True) -> dict[str, Any]:
    """Parse and validate one line. ``kind`` is ``"request"``, ``"reply"`` or ``None`` (either).

    Raises :class:`ProtocolError` (and nothing else) naming what is wrong: too long, not UTF-8, too
    deeply nested, not JSON, not an object, no ``type`` or an unknown one, no valid ``id`` (requests
    need a string or 64-bit integer id; replies may carry ``null``), a malformed or oversized array.
    The error carries the id whenever the line's top level could be read.
    """
    try:
        return _decode(line, kind, arrays)
    except ProtocolError:
        raise
    except (ValueError, TypeError, RecursionError, MemoryError, OverflowError) as exc:   # a backstop
        raise ProtocolError(f"The line cannot be read ({type(exc).__name__}: {str(exc)[:200]}).") from exc


def _decode(line: bytes | str, kind: str | None, arrays: bool) -> dict[str, Any]:
    if len(line) > MAX_LINE_BYTES:
        raise ProtocolError(f"The line is {len(line):,} bytes long, more than the {MAX_LINE_BYTES:,} a "
                            "message may have.", "Send a shorter clip or fewer bones (docs/protocol.md).")
    if isinstance(line, (bytes, bytearray)):
        try:
            text = bytes(line).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ProtocolError(f"The line is not UTF-8 ({exc}).", "Encode messages as UTF-8.",
                                request_id=_recover_id(bytes(line).decode("utf-8", "replace"))) from exc
    else:
        text = line
    text = text.strip()
    if not text:
        raise ProtocolError("An empty line is not a message.")
    if _nesting_depth(text) > MAX_DEPTH:
        raise ProtocolError(f"The message is nested more than {MAX_DEPTH} levels deep.",
                            "Send arrays as encoded arrays and objects as the documented fields "
                            "(docs/protocol.md).", request_id=_recover_id(text))
    try:
        message = _loads(text)
    except (ValueError, RecursionError) as exc:
        where = f": {exc.msg} at column {exc.colno}" if isinstance(exc, json.JSONDecodeError) else ""
        raise ProtocolError(f"The line is not valid JSON{where} (line starts {text[:60]!r}).",
                            request_id=_recover_id(text)) from exc
    if not isinstance(message, dict):
        raise ProtocolError(f"A message must be a JSON object, not {kind_of(message)}.")
    request_id = readable_id(message)
    raw_id = message.get("id")
    if not valid_id(raw_id):
        raise ProtocolError(f"The message id must be a string of at most {MAX_ID_CHARS} characters or an "
                            f"integer within ±2**63, not {describe(raw_id)}.",
                            "Give every request a unique string or integer \"id\".", request_id=request_id)
    allowed = {"request": REQUEST_TYPES, "reply": REPLY_TYPES}.get(kind or "", REQUEST_TYPES + REPLY_TYPES)
    message_type = message.get("type")
    if not isinstance(message_type, str):
        raise ProtocolError("The message has no \"type\".", request_id=request_id)
    if message_type not in allowed:
        raise ProtocolError(f"Unknown message type {shorten(message_type)}.",
                            f"Use one of: {', '.join(allowed)}.", request_id=request_id)
    if "id" not in message or (raw_id is None and message_type in REQUEST_TYPES):
        raise ProtocolError(f"The {message_type!r} message has no \"id\".",
                            "Give every request a unique string or integer \"id\"; replies carry it back.")
    if not arrays:
        return message
    try:
        return from_wire(message)
    except ProtocolError as exc:
        exc.request_id = request_id
        raise


def valid_id(value: Any) -> bool:
    """A request id (or ``None``): a string of at most MAX_ID_CHARS characters, or a 64-bit integer."""
    if value is None:
        return True
    if isinstance(value, str):
        return len(value) <= MAX_ID_CHARS
    return isinstance(value, int) and not isinstance(value, bool) and -MAX_INT_ID - 1 <= value <= MAX_INT_ID


# --- replies ---------------------------------------------------------------------------------------

def request(message_type: str, request_id: RequestId, **fields: Any) -> dict[str, Any]:
    """An untyped request (tests and tools); the add-on builds typed ones: ``XRequest(...).to_message``."""
    if message_type not in REQUEST_TYPES:
        raise ValueError(f"Unknown request type {message_type!r}.")
    return {"id": request_id, "type": message_type, **fields}


def progress(request_id: Any, stage: str, done: int, total: int, **extra: Any) -> dict[str, Any]:
    """A progress event: ``done`` of ``total`` work units for the whole job, ``fraction`` in [0, 1]."""
    fraction = 1.0 if total <= 0 else max(0.0, min(1.0, done / total))
    return {"id": request_id, "type": PROGRESS, "stage": stage, "done": int(done), "total": int(total),
            "fraction": round(fraction, 4), **extra}


def result(request_id: Any, data: Mapping[str, Any]) -> dict[str, Any]:
    """The final ``result`` reply; ``data`` is a dict or one of the typed results below."""
    return {"id": request_id, "type": RESULT, "data": data}


def error(request_id: Any, code: str, problem: str, fix: str = "") -> dict[str, Any]:
    return {"id": request_id, "type": ERROR, "error": {"code": code, "problem": problem, "fix": fix}}


def error_from_exception(request_id: Any, exc: BaseException, log_hint: str = "") -> dict[str, Any]:
    """An error reply for ``exc``: a MoMaskError/ProtocolError keeps its code, problem and fix; an
    out-of-memory becomes ``out_of_memory``; anything else is ``internal`` (a bug, see the log at
    ``log_hint``)."""
    if hasattr(exc, "problem") and hasattr(exc, "code"):
        return error(request_id, str(exc.code), str(exc.problem), str(getattr(exc, "fix", "")))
    text = f"{type(exc).__name__}: {exc}".strip()
    if isinstance(exc, MemoryError) or "out of memory" in text.lower():
        return error(request_id, OUT_OF_MEMORY, f"The backend ran out of memory ({text[:300]}).",
                     "Generate fewer variations or shorter motions at once, close other GPU programs, "
                     "or set the device to CPU in the add-on preferences.")
    where = f" ({log_hint})" if log_hint else ""
    return error(request_id, INTERNAL, f"Internal error in the backend: {text[:500]}",
                 f"This is a bug; the traceback is in the backend log{where}. Please report it with the log.")


def log(level: str, message: str, request_id: Any = None) -> dict[str, Any]:
    return {"id": request_id, "type": LOG, "level": level, "message": message}


def encode_reply(message: dict[str, Any], log_hint: str = "") -> bytes:
    """``encode_message(message)``, or, when that fails (a value that cannot be sent is a bug), the
    encoded ``internal`` error for the same id: the one call a writer needs to never lose a reply.
    An id that cannot be echoed (not a string or number) is replaced by ``null``."""
    try:
        return encode_message(message)
    except Exception as exc:  # noqa: BLE001 - whatever it was, the request still gets its one reply
        request_id = message.get("id") if isinstance(message, dict) else None
        request_id = readable_id({"id": request_id})
        try:
            return encode_message(error_from_exception(request_id, exc, log_hint))
        except Exception:  # noqa: BLE001 - an exception whose text cannot be encoded either
            return encode_message(error(request_id, INTERNAL, "Internal error in the backend: a reply "
                                        "could not be encoded.", "This is a bug; see the backend log."))
