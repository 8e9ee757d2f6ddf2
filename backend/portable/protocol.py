"""The wire format between the Blender add-on and ``python -m backend serve`` (see docs/protocol.md).

One JSON object per line (UTF-8, ``\\n``-terminated) in each direction. The add-on sends requests
``{"id", "type", ...}``; the backend answers with ``progress`` events and exactly one ``result`` or
``error`` per request, all carrying the request's ``id``.

This module is stdlib only: Blender loads this very file by path into its own Python, which has
numpy but never torch, and the backend's package may not be importable there. Arrays are therefore
recognised by duck typing (``.tobytes()``, ``.dtype``, ``.shape``) and decoded to numpy only when
numpy can be imported.
"""

from __future__ import annotations

import base64
import json
import math
import struct
import sys
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
REQUEST_TYPES: tuple[str, ...] = (
    HELLO, DIAGNOSE, LOAD, GENERATE, INPAINT, MAP_RIG, RETARGET, CANCEL, SHUTDOWN)

PROGRESS = "progress"
RESULT = "result"
ERROR = "error"
LOG = "log"
REPLY_TYPES: tuple[str, ...] = (PROGRESS, RESULT, ERROR, LOG)

# --- error codes (``error.code``); the MoMaskError kinds bring their own ("bad_input", "bad_weights",
# "bad_rig", "cancelled", "error") ---------------------------------------------------------------------

BAD_REQUEST = "bad_request"          # the line is not a valid request (JSON, id, type, fields)
PROTOCOL_MISMATCH = "protocol_mismatch"
OUT_OF_MEMORY = "out_of_memory"
INTERNAL = "internal"                # a bug: the problem names the exception, the log has the traceback

ARRAY_KEY = "__array__"
_LITTLE_ENDIAN_CODES = {          # dtype name -> struct code, for decoding without numpy
    "float16": "e", "float32": "f", "float64": "d", "int8": "b", "uint8": "B", "int16": "h",
    "uint16": "H", "int32": "i", "uint32": "I", "int64": "q", "uint64": "Q", "bool": "?",
}


class ProtocolError(ValueError):
    """A line that is not a valid message. Shaped like ``backend.portable.errors.MoMaskError`` (code, problem,
    fix) so it travels back as an ordinary error reply; ``request_id`` is the id when one was readable.
    """

    code = BAD_REQUEST

    def __init__(self, problem: str, fix: str = "", request_id: Any = None) -> None:
        self.problem = problem
        self.fix = fix or ("Send one JSON object per line with an \"id\" and a known \"type\" "
                           "(docs/protocol.md).")
        self.request_id = request_id
        super().__init__(f"{problem} Fix: {self.fix}")


# --- arrays ----------------------------------------------------------------------------------------

def _is_array(value: Any) -> bool:
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


def decode_array(obj: dict[str, Any]) -> Any:
    """The inverse of :func:`encode_array`: a numpy array, or nested lists where numpy is missing."""
    try:
        raw = base64.b64decode(obj[ARRAY_KEY], validate=True)
        dtype = str(obj["dtype"])
        shape = [int(n) for n in obj["shape"]]
    except (KeyError, TypeError, ValueError) as exc:
        raise ProtocolError(f"A malformed array in the message ({exc}).",
                            "Encode arrays as {\"__array__\": base64, \"dtype\": ..., \"shape\": [...]}."
                            ) from exc
    if dtype not in _LITTLE_ENDIAN_CODES:
        raise ProtocolError(f"Unsupported array dtype {dtype!r}.",
                            f"Use one of: {', '.join(sorted(_LITTLE_ENDIAN_CODES))}.")
    count = math.prod(shape)
    itemsize = struct.calcsize("<" + _LITTLE_ENDIAN_CODES[dtype])
    if count * itemsize != len(raw):
        raise ProtocolError(f"An array of shape {shape} and dtype {dtype} needs {count * itemsize} bytes, "
                            f"got {len(raw)}.", "Send the array's raw C-order little-endian bytes.")
    try:
        import numpy as np
    except ImportError:
        flat = list(struct.unpack(f"<{count}{_LITTLE_ENDIAN_CODES[dtype]}", raw))
        return _reshape(flat, shape)
    return np.frombuffer(raw, dtype=np.dtype(dtype).newbyteorder("<")).astype(dtype).reshape(shape)


def _reshape(flat: list[Any], shape: list[int]) -> Any:
    if not shape:
        return flat[0]
    if len(shape) == 1:
        return flat
    step = math.prod(shape[1:])
    return [_reshape(flat[i * step:(i + 1) * step], shape[1:]) for i in range(shape[0])]


# --- messages --------------------------------------------------------------------------------------

def to_wire(value: Any) -> Any:
    """A JSON-ready copy of ``value``: arrays encoded, numpy scalars unwrapped, tuples as lists and
    non-finite floats as ``null`` (strict JSON has no NaN)."""
    if isinstance(value, dict):
        return {str(k): to_wire(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_wire(v) for v in value]
    if isinstance(value, (str, bool, int)) or value is None:
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if _is_array(value):
        if tuple(value.shape) == ():
            return to_wire(value.item())          # numpy scalar or 0-d array
        return encode_array(value)
    if hasattr(value, "__fspath__"):
        return str(value.__fspath__())
    if hasattr(value, "to_dict"):
        return to_wire(value.to_dict())
    raise TypeError(f"Cannot send a {type(value).__name__} over the protocol.")


def from_wire(value: Any) -> Any:
    """Decode every ``{"__array__": ...}`` inside a parsed message."""
    if isinstance(value, dict):
        if ARRAY_KEY in value:
            return decode_array(value)
        return {k: from_wire(v) for k, v in value.items()}
    if isinstance(value, list):
        return [from_wire(v) for v in value]
    return value


def encode_message(message: dict[str, Any]) -> bytes:
    """One message as a UTF-8 JSON line (ending in ``\\n``); arrays are encoded on the way."""
    if not isinstance(message, dict) or "type" not in message:
        raise TypeError("A protocol message is a dict with a \"type\".")
    text = json.dumps(to_wire(message), ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    return text.encode("utf-8") + b"\n"


def decode_message(line: bytes | str, kind: str | None = None, arrays: bool = True) -> dict[str, Any]:
    """Parse and validate one line. ``kind`` is ``"request"``, ``"reply"`` or ``None`` (either).

    Raises :class:`ProtocolError` naming what is wrong: not JSON, not an object, no ``type`` or an
    unknown one, no ``id`` (requests need a string or integer id; replies may carry ``null``).
    """
    if isinstance(line, bytes):
        try:
            line = line.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ProtocolError(f"The line is not UTF-8 ({exc}).", "Encode messages as UTF-8.") from exc
    text = line.strip()
    if not text:
        raise ProtocolError("An empty line is not a message.")
    try:
        message = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ProtocolError(f"The line is not valid JSON: {exc.msg} at column {exc.colno} "
                            f"(line starts {text[:60]!r}).") from exc
    if not isinstance(message, dict):
        raise ProtocolError(f"A message must be a JSON object, not {type(message).__name__}.")
    request_id = message.get("id")
    if isinstance(request_id, bool) or not isinstance(request_id, (str, int, type(None))):
        raise ProtocolError(f"The message id must be a string or an integer, not {request_id!r}.")
    allowed = {"request": REQUEST_TYPES, "reply": REPLY_TYPES}.get(kind or "", REQUEST_TYPES + REPLY_TYPES)
    message_type = message.get("type")
    if not isinstance(message_type, str):
        raise ProtocolError("The message has no \"type\".", request_id=request_id)
    if message_type not in allowed:
        raise ProtocolError(f"Unknown message type {message_type!r}.",
                            f"Use one of: {', '.join(allowed)}.", request_id=request_id)
    if "id" not in message or (request_id is None and message_type in REQUEST_TYPES):
        raise ProtocolError(f"The {message_type!r} message has no \"id\".",
                            "Give every request a unique string or integer \"id\"; replies carry it back.")
    return from_wire(message) if arrays else message


# --- builders (both sides use these so field names live in one place) ------------------------------

def request(message_type: str, request_id: str | int, **fields: Any) -> dict[str, Any]:
    if message_type not in REQUEST_TYPES:
        raise ValueError(f"Unknown request type {message_type!r}.")
    return {"id": request_id, "type": message_type, **fields}


def progress(request_id: Any, stage: str, done: int, total: int, **extra: Any) -> dict[str, Any]:
    """A progress event: ``done`` of ``total`` work units for the whole job, ``fraction`` in [0, 1]."""
    fraction = 1.0 if total <= 0 else max(0.0, min(1.0, done / total))
    return {"id": request_id, "type": PROGRESS, "stage": stage, "done": int(done), "total": int(total),
            "fraction": round(fraction, 4), **extra}


def result(request_id: Any, data: dict[str, Any]) -> dict[str, Any]:
    return {"id": request_id, "type": RESULT, "data": data}


def error(request_id: Any, code: str, problem: str, fix: str = "") -> dict[str, Any]:
    return {"id": request_id, "type": ERROR, "error": {"code": code, "problem": problem, "fix": fix}}


def error_from_exception(request_id: Any, exc: BaseException, log_hint: str = "") -> dict[str, Any]:
    """An error reply for ``exc``: a MoMaskError/ProtocolError keeps its code, problem and fix; an
    out-of-memory becomes ``out_of_memory``; anything else is ``internal`` (a bug, see the log)."""
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
