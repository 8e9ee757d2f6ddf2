"""Composed takes: the segments and tokens a take remembers, its prompt markers, and loops.

A composed take (Generate Sequence, Regenerate Segment, Continue, Lead-in) is an ordinary take
(``takes.record_take``) that also carries, as custom properties on its action:

* ``momask_segments``: JSON, one ``{"prompt", "seed", "start", "end"}`` per segment, frames relative to
  the take's first frame ``momask_start`` (scene frames, end exclusive);
* ``momask_codes``: the take's motion tokens, (tokens, 6) ints stored flat (``momask_code_layers`` = 6):
  what Regenerate Segment sends back so the backend keeps every other token bit-identical. A
  5-minute take is 1500 tokens, 9000 integers; :data:`MAX_STORED_CODES` (the wire's ``codes``
  bound) bounds it.

Prompt markers: each segment's prompt is a **pose marker** of the take's action at the segment's
start, so the markers travel with the take (the Action editor shows them with "Show Pose Markers").
The timeline shows scene markers only, so the playing take's markers are mirrored there
(:func:`sync_scene_markers`); the scene remembers which markers it made (name and frame, in
``scene["momask_markers"]``, per armature) and removes exactly that armature's when another take
plays on it, so another armature's prompt markers and the user's own markers are never touched
(one they renamed or moved is theirs from then on). The same rule holds on
a take's action: ``action["momask_markers"]`` names the pose markers MoMask made, so the pose markers of
a user's action copied into a Continue take stay.

Loops (:func:`close_loop`, :func:`set_cycles`): a looped take of ``n`` frames gets one closing key at
``start + n`` equal to its first key, so the last key equals the first and the curve returns to where
it began; rotations close exactly (a quaternion by the sign nearer its last key, an Euler angle by the
whole turns it wound), a location that travels closes with its per-cycle offset (Cycles' "Repeat
with Offset"). The action's manual frame range is set to the cycle and marked cyclic.

bpy + stdlib + numpy only.
"""

from __future__ import annotations

import json
import math

import numpy as np

from ..remote.client import load_backend_module
from .actions import Channels, object_slot
from .armature import MoMaskError

# The wire's compose bounds (backend/portable/messages.py, docs/protocol.md "Bounds"), loaded by path.
messages = load_backend_module("messages")

PREFIX = "momask_"
SEGMENTS = PREFIX + "segments"
CODES = PREFIX + "codes"
CODE_LAYERS = PREFIX + "code_layers"
START = PREFIX + "start"
TRANSITION = PREFIX + "transition"
LOOP = PREFIX + "loop"
CYCLES = PREFIX + "cycles"
COMPOSE = PREFIX + "compose"          # what made the take: sequence | regenerate | continue | leadin
MARKERS = PREFIX + "markers"
#: Tokens x layers a take stores: the most a composed take has (``codes`` bound: 1600 tokens x 6).
MAX_STORED_CODES = messages.MAX_COMPOSE_TOKENS * 6
#: Blender stores marker names in 64 bytes (63 + NUL).
MARKER_BYTES = 63
#: Segments a take stores (each is a marker and a row of JSON): the most a composed take has.
MAX_STORED_SEGMENTS = messages.MAX_SEGMENTS


# --------------------------------------------------------------------------------------------
# What a take remembers


def store_composition(action, segments: list[dict], codes, start_frame: int, *, kind: str,
                      transition: float | None = None, loop: bool = False) -> None:
    """Remember ``segments`` (``{"prompt", "seed", "start", "end"}``, take frames) and ``codes``
    ((tokens, 6) ints, or None) on the take ``action`` whose first frame is ``start_frame``."""
    rows = [{"prompt": str(s["prompt"]), "seed": None if s.get("seed") is None else int(s["seed"]),
             "start": int(s["start"]), "end": int(s["end"])} for s in segments]
    if len(rows) > MAX_STORED_SEGMENTS:
        raise MoMaskError(f"The take has {len(rows)} segments, more than the {MAX_STORED_SEGMENTS} a take "
                          "stores.", "Compose fewer, longer segments.")
    action[SEGMENTS] = json.dumps(rows, ensure_ascii=False)
    action[START] = int(start_frame)
    action[COMPOSE] = kind
    action[LOOP] = bool(loop)
    if transition is not None:
        action[TRANSITION] = float(transition)
    if codes is None:
        for key in (CODES, CODE_LAYERS):
            if key in action:
                del action[key]
        return
    codes = np.asarray(codes)
    if codes.ndim != 2 or codes.size > MAX_STORED_CODES:
        raise MoMaskError(f"The take's tokens have shape {codes.shape}; a take stores (tokens, layers) "
                          f"with at most {MAX_STORED_CODES} values.", "Compose a shorter take.")
    action[CODES] = [int(c) for c in codes.ravel()]
    action[CODE_LAYERS] = int(codes.shape[1])


def stored_segments(action) -> list[dict] | None:
    """The segments a composed take remembers, or None when it has none (not composed, or damaged)."""
    text = action.get(SEGMENTS) if action is not None else None
    if not isinstance(text, str):
        return None
    try:
        rows = json.loads(text)
    except ValueError:
        return None
    return rows if isinstance(rows, list) and rows else None


def stored_codes(action) -> np.ndarray | None:
    """The take's tokens as (tokens, layers) int64, or None when it stores none."""
    flat, layers = action.get(CODES), action.get(CODE_LAYERS)
    if flat is None or not layers:
        return None
    values = np.array(list(flat), dtype=np.int64)
    if values.size % int(layers):
        return None
    return values.reshape(-1, int(layers))


# --------------------------------------------------------------------------------------------
# Markers


def marker_name(index: int, prompt: str) -> str:
    """``"<n>: <prompt>"`` within Blender's 63 bytes."""
    text = f"{index + 1}: {' '.join(str(prompt).split())}"
    return text.encode("utf-8")[:MARKER_BYTES].decode("utf-8", errors="ignore").rstrip()


def _owned(holder, key: str) -> list[tuple[str, int]]:
    try:
        rows = json.loads(holder.get(key, "[]"))
    except (TypeError, ValueError):
        return []
    return [(str(name), int(frame)) for name, frame in rows]


def _replace_owned(markers, holder, key: str, wanted: list[tuple[str, int]]) -> None:
    """Remove the markers ``holder`` records as made by MoMask (same name and frame), add ``wanted``."""
    owned = set(_owned(holder, key))
    for marker in [m for m in markers if (m.name, int(m.frame)) in owned]:
        markers.remove(marker)
    for name, frame in wanted:
        markers.new(name).frame = int(frame)   # (pose markers take no frame argument)
    holder[key] = json.dumps(wanted, ensure_ascii=False)


def segment_markers(action) -> list[tuple[str, int]]:
    """(name, scene frame) of each stored segment's start on the take ``action``."""
    rows = stored_segments(action) or []
    start = int(action.get(START, 0))
    return [(marker_name(i, row["prompt"]), start + int(row["start"])) for i, row in enumerate(rows)]


def write_segment_markers(action) -> None:
    """The take's pose markers: one per stored segment at its start (only MoMask's are replaced)."""
    _replace_owned(action.pose_markers, action, MARKERS, segment_markers(action))


def _scene_owned(scene) -> dict[str, list[tuple[str, int]]]:
    """The timeline markers MoMask put on ``scene``, per armature (object name). A file from before
    markers were kept per armature holds one list; it counts as any armature's (key "")."""
    try:
        data = json.loads(scene.get(MARKERS, "{}"))
    except (TypeError, ValueError):
        return {}
    if isinstance(data, list):
        data = {"": data}
    if not isinstance(data, dict):
        return {}
    return {str(key): [(str(name), int(frame)) for name, frame in rows] for key, rows in data.items()}


def sync_scene_markers(scene, action, obj) -> None:
    """Show the prompt markers of ``action`` (the take ``obj`` now plays; None: no take) on the scene's
    timeline, replacing only the markers MoMask put there for ``obj`` before: another armature's
    prompt markers stay (``scene["momask_markers"]``: JSON ``{armature name: [[name, frame], ...]}``)."""
    wanted = segment_markers(action) if action is not None and stored_segments(action) else []
    owned = _scene_owned(scene)
    mine = owned.pop(obj.name, []) + owned.pop("", [])
    if not wanted and not mine:
        return
    others = {row for rows in owned.values() for row in rows}   # a marker two armatures share stays
    markers = scene.timeline_markers
    drop = set(mine) - others
    for marker in [m for m in markers if (m.name, int(m.frame)) in drop]:
        markers.remove(marker)
    for name, frame in wanted:
        if (name, frame) not in others:
            markers.new(name).frame = int(frame)
    if wanted:
        owned[obj.name] = wanted
    scene[MARKERS] = json.dumps(owned, ensure_ascii=False)


# --------------------------------------------------------------------------------------------
# Loops


def _curves(obj, action) -> list:
    return list(Channels(action, object_slot(action, obj)).fcurves)


def _keys(fcurve) -> np.ndarray:
    co = np.empty(len(fcurve.keyframe_points) * 2, dtype=np.float32)
    fcurve.keyframe_points.foreach_get("co", co)
    return co.reshape(-1, 2)


def close_loop(obj, action, start_frame: int, frame_count: int) -> int:
    """Add the closing key at ``start_frame + frame_count`` to every curve of the take that keys
    frames ``start_frame .. start_frame + frame_count - 1``; returns how many curves were closed."""
    end = int(start_frame) + int(frame_count)
    by_path: dict[str, list] = {}
    for fcurve in _curves(obj, action):
        by_path.setdefault(fcurve.data_path, []).append(fcurve)
    closed = 0
    for path, curves in by_path.items():
        rows = [_keys(fc) for fc in curves]
        if any(len(r) < 2 or r[0, 0] != start_frame or r[-1, 0] >= end for r in rows):
            continue                        # a constant (a switch keyed once) or not the take's frames
        first = np.array([r[0, 1] for r in rows], dtype=np.float64)
        last = np.array([r[-1, 1] for r in rows], dtype=np.float64)
        if path.endswith("rotation_quaternion"):
            closing = first if float(np.dot(first, last)) >= 0 else -first
        elif path.endswith("rotation_euler"):
            closing = first + 2 * math.pi * np.round((last - first) / (2 * math.pi))
        elif path.endswith("location"):
            closing = np.array([_closing_location(r[:, 1]) for r in rows])
        else:
            closing = first
        for fcurve, value in zip(curves, closing, strict=True):
            points = fcurve.keyframe_points
            points.add(1)
            key = points[len(points) - 1]
            key.co = (float(end), float(value))
            key.interpolation = points[len(points) - 2].interpolation
            key.type = points[len(points) - 2].type
            fcurve.update()
        closed += len(curves)
    action.use_frame_range = True
    action.frame_start, action.frame_end = float(start_frame), float(end)
    action.use_cyclic = True
    action[LOOP] = True
    return closed


def _closing_location(values: np.ndarray) -> float:
    """The closing key of a location curve: its first value when the take ends where it began (within
    two median steps), else the first value plus the distance travelled per cycle."""
    n = len(values)
    drift = float(values[-1] - values[0])
    steps = np.abs(np.diff(values))
    if abs(drift) <= 2.0 * float(np.median(steps)) + 1e-9:
        return float(values[0])
    return float(values[0]) + drift * n / (n - 1)


def set_cycles(obj, action, enabled: bool) -> int:
    """Add (``enabled``) or remove a Cycles modifier on every curve of the take; returns the number of
    curves that have one afterwards. Curves whose closing key differs from their first key repeat
    with that offset (a root that travels, an Euler angle that winds); the others repeat as they are."""
    count = 0
    for fcurve in _curves(obj, action):
        for modifier in [m for m in fcurve.modifiers if m.type == "CYCLES"]:
            fcurve.modifiers.remove(modifier)
        if not enabled or len(fcurve.keyframe_points) < 2:
            continue
        keys = _keys(fcurve)
        modifier = fcurve.modifiers.new("CYCLES")
        offset = (not fcurve.data_path.endswith("rotation_quaternion")) and keys[-1, 1] != keys[0, 1]
        modifier.mode_before = modifier.mode_after = "REPEAT_OFFSET" if offset else "REPEAT"
        count += 1
    action[CYCLES] = bool(enabled)
    return count
