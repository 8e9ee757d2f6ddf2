"""Writing a retarget result onto an armature as ordinary keyframes, in bulk.

The backend returns ``RetargetResult.to_dict()``::

    {"fps": 30.0, "frame_count": F,
     "bones": [{"name": "hips", "channel": "rotation_quaternion", "values": (F, 4)}, ...],
     "root": {"name": "hips", "location": (F, 3)}}

``write_take`` puts it into a NEW action (one take); ``write_inbetween`` copies the current action
and replaces only the keys inside a frame range, blending into the existing motion at the seams.
Keys go in with ``keyframe_points.add`` + ``foreach_set`` (milliseconds for hundreds of curves)
and are tagged GENERATED so animators can tell them from their own.

Blender's action API (classic, slotted, 5.0) is handled in ``actions.py``.
"""

from __future__ import annotations

import contextlib

import bpy
import numpy as np
from mathutils import Euler, Matrix, Quaternion, Vector

from ..remote.client import load_backend_module
from . import segments, takes
from .actions import Channels, assign_action, is_slotted, new_action, object_slot, unique_action_name
from .armature import CHANNEL_SIZES, MoMaskError, RigError, require_armature, scene_of

# The backend's quaternion math (backend/portable/quaternion.py, numpy only, loaded by path), so keys
# blend and stay continuous exactly as the backend's resampling makes them.
quaternion = load_backend_module("quaternion")

__all__ = ["write_take", "write_inbetween", "write_curve", "key_frames", "channel_for_mode", "object_tracks",
           "quats_to_euler", "quats_to_axis_angle"]

#: DNA values of the keyframe enums, for foreach_set (checked on the first curve written).
_KEY_GENERATED = 5
_INTERP_LINEAR = 1


# --------------------------------------------------------------------------------------------
# Reading the result


def bone_path(bone_name: str, prop: str) -> str:
    return f'pose.bones["{bpy.utils.escape_identifier(bone_name)}"].{prop}'


def result_tracks(obj, result: dict) -> list[tuple[str, str, np.ndarray]]:
    """(bone, property, values (F, k)) for every channel the result drives, checked against the rig."""
    frame_count = int(result["frame_count"])
    entries = [(b["name"], b["channel"], b["values"]) for b in result.get("bones", [])]
    root = result.get("root")
    if root is not None and root.get("name") and root.get("location") is not None:
        entries.append((root["name"], "location", root["location"]))
    moved = result.get("root_motion") or {}
    if moved.get("mode") == "root_bone" and moved.get("name"):   # the travel extracted onto a root bone
        entries.append((moved["name"], "location", moved["location"]))
    pose_bones = obj.pose.bones
    missing = [name for name, _, _ in entries if pose_bones.get(name) is None]
    if missing:
        raise RigError(f"The armature '{obj.name}' has no bone named {', '.join(sorted(set(missing)))}; "
                       "the rig changed while the motion was being made.", "Generate again.")
    changed = [name for name, prop, _ in entries
               if prop != "location" and prop != channel_for_mode(pose_bones[name].rotation_mode)]
    if changed:
        raise RigError(f"The rotation mode of {', '.join(changed)} changed while the motion was being made.",
                       "Generate again (or set the bones' rotation mode back).")
    tracks = []
    for name, prop, values in entries:
        size = CHANNEL_SIZES.get(prop)
        values = np.asarray(values, dtype=np.float64)
        if size is None or values.shape != (frame_count, size):
            raise MoMaskError(f"The result for bone '{name}' is malformed ({prop}, shape {values.shape}).",
                              "Update the add-on and the backend to the same version.")
        tracks.append((name, prop, values))
    return tracks


def object_tracks(obj, result: dict) -> list[tuple[str, np.ndarray]]:
    """(property, values (F, k)) of the armature object's own keys when the result extracted the travel
    onto the object (``root_motion`` mode "object", docs/protocol.md "Steering"): its location and its
    rotation in the object's rotation mode, through its parent when it has one; [] otherwise."""
    moved = result.get("root_motion") or {}
    if moved.get("mode") != "object":
        return []
    count = int(result["frame_count"])
    location = np.array(moved["location"], dtype=np.float64)
    quats = quaternion.qcontinuous(np.array(moved["rotation_quaternion"], dtype=np.float64))
    if location.shape != (count, 3) or quats.shape != (count, 4):
        raise MoMaskError("The result's object motion is malformed.",
                          "Update the add-on and the backend to the same version.")
    if obj.parent is not None:
        # The keys are the object's own channels: world → local through its parent (as posed now)
        parent = obj.parent.matrix_world @ obj.matrix_parent_inverse
        to_local = parent.inverted_safe()
        scale = obj.matrix_world.to_scale()
        for k in range(count):
            world = Matrix.LocRotScale(Vector(location[k]), Quaternion(quats[k]), scale)
            local_loc, local_rot, _ = (to_local @ world).decompose()
            location[k], quats[k] = tuple(local_loc), tuple(local_rot)
        quats = quaternion.qcontinuous(quats)
    mode = obj.rotation_mode
    if mode == "QUATERNION":
        rotation = ("rotation_quaternion", quats)
    elif mode == "AXIS_ANGLE":
        rotation = ("rotation_axis_angle", quats_to_axis_angle(quats, np.empty((0, 4))))
    else:
        rotation = ("rotation_euler", quats_to_euler(quats, np.array([tuple(obj.rotation_euler)]), mode))
    return [("location", location), rotation]


def channel_for_mode(mode: str) -> str:
    """The keyed property that drives a pose bone in ``mode`` (every Euler order keys rotation_euler)."""
    special = {"QUATERNION": "rotation_quaternion", "AXIS_ANGLE": "rotation_axis_angle"}
    return special.get(mode, "rotation_euler")


def scene_fps(scene) -> float:
    return scene.render.fps / scene.render.fps_base


# --------------------------------------------------------------------------------------------
# Writing keys


def _set_key_type(points, count: int) -> None:
    """Tag ``count`` keys GENERATED: one foreach_set where the enum takes raw values, else per key."""
    try:
        points.foreach_set("type", np.full(count, _KEY_GENERATED, dtype=np.int32))
        if count == 0 or points[0].type == "GENERATED":
            return
    except (TypeError, AttributeError, RuntimeError):
        pass
    for point in points:
        point.type = "GENERATED"


def write_curve(fcurve, frames: np.ndarray, values: np.ndarray) -> None:
    """Append one key per frame to an empty F-Curve, linear, tagged GENERATED."""
    count = len(frames)
    co = np.empty((count, 2), dtype=np.float32)
    co[:, 0] = frames
    co[:, 1] = values
    points = fcurve.keyframe_points
    points.add(count)
    points.foreach_set("co", co.ravel())
    points.foreach_set("interpolation", np.full(count, _INTERP_LINEAR, dtype=np.int32))
    _set_key_type(points, count)
    fcurve.update()


def _write_track(channels: Channels, bone: str, prop: str, frames: np.ndarray, values: np.ndarray) -> None:
    path = bone_path(bone, prop)
    for index in range(values.shape[1]):
        fcurve = channels.find(path, index) or channels.new(path, index, bone)
        write_curve(fcurve, frames, values[:, index])


def key_frames(start_frame: float, count: int, result_fps: float, fps_now: float) -> np.ndarray:
    """Scene frames of the result's samples: one per frame, or by time if the scene fps changed."""
    step = 1.0 if abs(result_fps - fps_now) < 1e-6 * fps_now else fps_now / result_fps
    return float(start_frame) + np.arange(count, dtype=np.float64) * step


def write_take(obj, result: dict, start_frame: float, name: str, *, prompt: str | None = None,
               seed: int | None = None, kind: str = "generate"):
    """Write ``result`` into a NEW action named from ``name`` and make it the armature's take.

    Keys start at ``start_frame``, one per frame at the scene's fps (the backend resampled to it;
    if the scene fps changed meanwhile, keys are placed by time). Bones not in the result are not
    keyed. The action is filled first and assigned last; on any failure it is removed and the
    armature keeps its previous action.
    """
    require_armature(obj)
    tracks = result_tracks(obj, result)
    fps_now = scene_fps(scene_of(obj))
    frames = key_frames(start_frame, int(result["frame_count"]), float(result["fps"]), fps_now)
    previous_action = obj.animation_data.action if obj.animation_data else None
    action, slot = new_action(name, obj)
    with _new_take(obj, action):
        channels = Channels(action, slot, ensure=True)
        for bone, prop, values in tracks:
            if prop == "rotation_quaternion":
                values = quaternion.qcontinuous(values)
            _write_track(channels, bone, prop, frames, values)
        for prop, values in object_tracks(obj, result):
            for index in range(values.shape[1]):
                fcurve = channels.find(prop, index) or channels.new(prop, index, "Object Transforms")
                write_curve(fcurve, frames, values[:, index])
        _publish(obj, action, slot, kind=kind, prompt=prompt if prompt is not None else name, seed=seed,
                 frames=len(frames), fps=fps_now, source=previous_action)
    return action


@contextlib.contextmanager
def _new_take(obj, action):
    """Fill a new take; on any failure put the previous action back and delete the half-made one."""
    ad = obj.animation_data
    previous = (ad.action, getattr(ad, "action_slot", None)) if ad is not None else (None, None)
    try:
        yield
    except BaseException:
        ad = obj.animation_data
        if ad is not None and ad.action == action:
            assign_action(obj, *previous)
        bpy.data.actions.remove(action)
        raise


def _publish(obj, action, slot, **take_info) -> None:
    """Tag the filled action as a take, keep the user's own action, then (last) assign the take."""
    takes.record_take(obj, action, **take_info)
    takes.remember_original(obj)
    takes.play(obj, action, slot)                        # keeps the object's place (Root Motion "Object")
    segments.sync_scene_markers(scene_of(obj), action, obj)  # the previous take's prompt markers go


# --------------------------------------------------------------------------------------------
# In-betweening


def blend_weights(range_start: int, range_end: int, blend_frames: int,
                  extend: str | None = None) -> np.ndarray:
    """Weight of the new motion on each frame of ``[range_start, range_end)``: 0 → existing, 1 → new.

    The first and last frames of the range keep the existing value (weight 0), then a smoothstep
    over ``blend_frames`` frames reaches the new motion, so neither seam steps and the curve segments
    leading into the range keep their shape.

    ``extend`` ("after" | "before"): the range extends the motion past its end (Continue) or before
    its start (Lead-in), so there is one seam only, the range's first (after) or last (before) frame,
    which keeps the existing value; the open side is all new.
    """
    length = range_end - range_start
    if blend_frames <= 0:
        return np.ones(length)
    i = np.arange(length)
    to_seam = {"after": i, "before": length - 1 - i}.get(extend, np.minimum(i, length - 1 - i))
    u = np.minimum(to_seam / (blend_frames + 1.0), 1.0)
    return u * u * (3.0 - 2.0 * u)


def _blend(prop: str, existing: np.ndarray, new: np.ndarray, weight: np.ndarray,
           mode: str = "QUATERNION") -> np.ndarray:
    """The keys of one channel inside the range: ``existing`` blended into ``new`` by ``weight``.

    Rotations blend as rotations (slerp) whatever the bone's mode: blending Euler angles or axis-angle
    component by component spins a bone whose existing keys are wound past ±180° (a BVH import after
    a full turn) through a full turn. Euler and axis-angle keys are converted back choosing, frame
    by frame, the equivalent value nearest the previous frame's, starting from the existing key at
    the range start, so the curves continue the animator's winding. Locations blend linearly.
    """
    if prop == "location":
        blended = existing + weight[:, None] * (new - existing)
    elif prop == "rotation_quaternion":
        new = quaternion.qcontinuous(new)
        blended = _slerp_keys(existing, new, weight)
        if len(blended) and np.dot(blended[0], existing[0]) < 0:
            blended = -blended
        blended = quaternion.qcontinuous(blended)
    elif prop == "rotation_axis_angle":
        to_quats = quaternion.axis_angle_to_quat
        quats = _slerp_keys(to_quats(existing), to_quats(new), weight)
        blended = quats_to_axis_angle(quats, existing)
    else:  # rotation_euler in the bone's order
        quats = _slerp_keys(_euler_to_quats(existing, mode), _euler_to_quats(new, mode), weight)
        blended = quats_to_euler(quats, existing, mode)
    untouched = weight == 0  # the seam frames keep the existing values exactly
    blended[untouched] = existing[untouched]
    return blended


def _slerp_keys(q0: np.ndarray, q1: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Per-row slerp of quaternion keys (the backend's :func:`slerp`), normalised first: an animator's
    F-Curves need not hold unit quaternions (Blender normalises them when it evaluates the pose)."""
    return quaternion.slerp(quaternion.qnormalize(q0), quaternion.qnormalize(q1), t)


def _euler_to_quats(values: np.ndarray, order: str) -> np.ndarray:
    """Quaternions (F, 4) of Euler keys (F, 3) in Blender's rotation ``order``."""
    return quaternion.matrix_to_quat(quaternion.euler_to_matrix(np.asarray(values, np.float64), order))


def quats_to_euler(quats: np.ndarray, existing: np.ndarray, order: str) -> np.ndarray:
    """Euler keys of ``quats``, each compatible with the previous key (Blender's ``make_compatible``);
    the first with the existing key at the range start (if any)."""
    out = np.empty((len(quats), 3))
    previous = Euler(existing[0], order) if len(existing) else None
    for k, q in enumerate(quats):
        quat = Quaternion(q)
        # (order is a Blender enum the stubs type narrowly)
        euler = (quat.to_euler(order, previous) if previous is not None  # type: ignore[arg-type]
                 else quat.to_euler(order))  # type: ignore[arg-type]
        out[k] = (euler.x, euler.y, euler.z)
        previous = euler
    return out


def quats_to_axis_angle(quats: np.ndarray, existing: np.ndarray) -> np.ndarray:
    """Axis-angle keys of ``quats``, each the equivalent (angle ± 2πk, ±axis) nearest the previous key."""
    out = np.empty((len(quats), 4))
    previous = existing[0].astype(np.float64) if len(existing) else np.array([0.0, 0.0, 1.0, 0.0])
    turns = 2 * np.pi * np.arange(-2, 3)
    for k, q in enumerate(quats):
        sin = float(np.linalg.norm(q[1:]))
        angle = 2 * np.arctan2(sin, q[0])
        axis = q[1:] / sin if sin > 1e-9 else previous[1:] / max(np.linalg.norm(previous[1:]), 1e-12)
        candidates = np.array([[sign * angle + turn, *(sign * axis)] for sign in (1, -1) for turn in turns])
        out[k] = previous = candidates[np.argmin(np.linalg.norm(candidates - previous, axis=1))]
    return out


_KEY_PROPS = {  # keyframe attribute → (components, dtype)
    "co": (2, np.float32), "handle_left": (2, np.float32), "handle_right": (2, np.float32),
    "handle_left_type": (1, np.int32), "handle_right_type": (1, np.int32),
    "interpolation": (1, np.int32), "type": (1, np.int32), "easing": (1, np.int32),
    "back": (1, np.float32), "amplitude": (1, np.float32), "period": (1, np.float32),
    "select_control_point": (1, bool), "select_left_handle": (1, bool), "select_right_handle": (1, bool),
}
_HANDLES = ("handle_left", "handle_right", "handle_left_type", "handle_right_type")


def _read_keys(points) -> dict[str, np.ndarray]:
    count = len(points)
    data = {}
    for prop, (size, dtype) in _KEY_PROPS.items():
        buf = np.empty(count * size, dtype=dtype)
        points.foreach_get(prop, buf)
        data[prop] = buf.reshape(count, size) if size > 1 else buf
    return data


def _write_keys(points, data: dict[str, np.ndarray], props=_KEY_PROPS) -> None:
    for prop in props:
        points.foreach_set(prop, np.ascontiguousarray(data[prop]).ravel())


def _replace_range(fcurve, lo: int, hi: int, frames: np.ndarray, values: np.ndarray) -> None:
    """Swap the keys in ``[lo, hi)`` for new linear GENERATED keys; keys outside stay bit-identical.

    Blender recomputes automatic handles of the neighbours when a curve changes, so the kept keys'
    handles are put back after ``fcurve.update()``; a key replaced at exactly ``lo`` keeps its left
    handle, so (with the seam value kept) the curve before the range evaluates exactly as before.
    """
    points = fcurve.keyframe_points
    old = _read_keys(points)
    keep = (old["co"][:, 0] < lo) | (old["co"][:, 0] >= hi)
    before = keep & (old["co"][:, 0] < lo)
    n_before, n_new = int(before.sum()), len(frames)
    kept = {prop: array[keep] for prop, array in old.items()}
    total = len(kept["co"]) + n_new
    if hasattr(points, "clear"):
        points.clear()
    else:  # older Blender
        while len(points):
            points.remove(points[len(points) - 1], fast=True)
    points.add(total)
    merged = _read_keys(points)  # fresh keys: Blender's defaults for the new ones
    new_rows = np.zeros(total, dtype=bool)
    new_rows[n_before:n_before + n_new] = True
    for prop in _KEY_PROPS:
        merged[prop][~new_rows] = kept[prop]
    merged["co"][new_rows, 0] = frames
    merged["co"][new_rows, 1] = values
    merged["interpolation"][new_rows] = _INTERP_LINEAR
    merged["type"][new_rows] = _KEY_GENERATED
    _write_keys(points, merged)
    fcurve.update()
    recomputed = _read_keys(points)
    for prop in _HANDLES:
        recomputed[prop][~new_rows] = kept[prop]
    at_start = np.flatnonzero(old["co"][:, 0] == lo)
    if n_new and len(at_start) and frames[0] == lo:
        # the segment from the last key before the range into the key at range_start keeps its shape
        for prop in ("handle_left", "handle_left_type"):
            recomputed[prop][n_before] = old[prop][at_start[0]]
    _write_keys(points, recomputed, _HANDLES)


def write_inbetween(obj, result: dict, range_start: int, range_end: int, blend_frames: int = 4,
                    source_action=None, *, result_start: int | None = None, name: str | None = None,
                    prompt: str | None = None, seed: int | None = None,
                    source_channels: tuple[int, dict] | None = None, unblended: frozenset[str] = frozenset(),
                    extra_curves: tuple[tuple[str, int, str, np.ndarray], ...] = (),
                    extend: str | None = None):
    """Make a new take: a copy of the current action with ``[range_start, range_end)`` regenerated.

    ``result`` covers the source span that was sent to the backend; its frame 0 is scene frame
    ``result_start`` (default: ``result["start_frame"]`` if present, else ``range_start`` when the
    result is exactly the range, else the source action's first frame). Only the channels the
    result drives change, only inside the range, blended into the existing motion over
    ``blend_frames`` frames at each side (rotations slerped in every rotation mode, locations
    linearly). ``source_channels`` = (first scene frame, ``rig_io.read_pose`` channels): what the
    source evaluated to when it was read; channels the action does not key blend from those values
    (else from the rig's current pose). The source action stays as it was and selectable; the copy
    is assigned last, and removed on failure.

    ``extend`` ("after" | "before", Continue and Lead-in): the source is kept up to the range's first
    frame (from its last frame), the seam, and the range holds the new frames after (before) it: on
    every curve of the copy the seam frame is keyed with what the curve evaluates to there and the keys
    past it are dropped (:func:`_cut_at`), then the range is written with one blend, at the seam
    (:func:`blend_weights`).

    ``unblended``: bones whose channels take the new motion on every frame but the two seam frames,
    because something else blends them in (a control rig's IK/FK switch). ``extra_curves``: (data
    path, index, group, values on the range's frames) written as they are, e.g. that switch.
    """
    require_armature(obj)
    ad = obj.animation_data
    source = source_action if source_action is not None else (ad.action if ad is not None else None)
    if source is None:
        raise MoMaskError(f"'{obj.name}' has no animation to in-between.",
                          "Generate or keyframe a motion first, then pick a range inside it.")
    range_start, range_end = int(range_start), int(range_end)
    frame_count = int(result["frame_count"])
    if result_start is None:
        result_start = result.get("start_frame")
    if result_start is None:
        exactly_the_range = frame_count == range_end - range_start
        result_start = range_start if exactly_the_range else int(round(source.frame_range[0]))
    result_start = int(result_start)
    if not (result_start <= range_start < range_end <= result_start + frame_count):
        raise MoMaskError(f"The in-between range {range_start}-{range_end} is outside the motion the "
                          f"backend returned (frames {result_start}-{result_start + frame_count}).",
                          "Pick a range inside the animation and generate the in-between again.")
    fps_now = scene_fps(scene_of(obj))
    if abs(float(result["fps"]) - fps_now) > 1e-6 * fps_now:
        raise MoMaskError(f"The scene frame rate changed to {fps_now:g} fps while the in-between was made "
                          f"at {float(result['fps']):g} fps.", "Generate the in-between again.")
    tracks = result_tracks(obj, result)
    source_slot = object_slot(source, obj)

    action = source.copy()
    action.name = unique_action_name(name or f"{source.name} in-between")
    with _new_take(obj, action):
        slot = None
        if is_slotted(action) and source_slot is not None:  # the copy keeps the slot identifiers
            slot = next(s for s in action.slots if s.identifier == source_slot.identifier)
        channels = Channels(action, slot, ensure=True)
        if extend is not None:
            _cut_at(channels, range_start if extend == "after" else range_end - 1, extend)
        frames = np.arange(range_start, range_end, dtype=np.float64)
        weight = blend_weights(range_start, range_end, blend_frames, extend)
        whole = (weight > 0).astype(np.float64)  # the new motion at once, the seam frames kept
        window = slice(range_start - result_start, range_end - result_start)
        pose_bones = obj.pose.bones
        for bone, prop, values in tracks:
            path = bone_path(bone, prop)
            curves = [channels.find(path, i) for i in range(values.shape[1])]
            still = _unkeyed_values(obj, bone, prop, frames, source_channels)
            existing = np.stack([
                evaluate(fc, frames) if fc is not None
                else still[:, i] for i, fc in enumerate(curves)], axis=1)
            blended = _blend(prop, existing, values[window], whole if bone in unblended else weight,
                             pose_bones[bone].rotation_mode)
            for i, fcurve in enumerate(curves):
                # a channel that was only posed gets a new curve; its end keys hold the pose outside
                fcurve = fcurve or channels.new(path, i, bone)
                _replace_range(fcurve, range_start, range_end, frames, blended[:, i])
        for path, index, group, values in extra_curves:
            fcurve = channels.find(path, index) or channels.new(path, index, group)
            _replace_range(fcurve, range_start, range_end, frames, np.asarray(values, dtype=np.float64))
        _publish(obj, action, slot, kind="inbetween", prompt=prompt if prompt is not None else action.name,
                 seed=seed, frames=range_end - range_start, fps=fps_now, source=source,
                 frame_range=(range_start, range_end))
    return action


def _cut_at(channels: Channels, seam: int, extend: str) -> None:
    """Every curve of ``channels`` ends (``extend`` "after") or starts ("before") at frame ``seam``:
    keyed there with the value it evaluates to (unless a key is there already), the keys past it
    removed; the kept keys stay exactly as they were, handles included."""
    for fcurve in list(channels.fcurves):
        points = fcurve.keyframe_points
        old = _read_keys(points)
        frames = old["co"][:, 0]
        keep = frames <= seam if extend == "after" else frames >= seam
        if keep.all() and (frames == seam).any():
            continue
        value = fcurve.evaluate(seam)
        kept = {prop: array[keep] for prop, array in old.items()}
        if hasattr(points, "clear"):
            points.clear()
        else:  # older Blender
            while len(points):
                points.remove(points[len(points) - 1], fast=True)
        pinned = not (kept["co"][:, 0] == seam).any()
        points.add(int(keep.sum()) + int(pinned))
        merged = _read_keys(points)          # the new seam key keeps Blender's defaults
        rows = np.arange(len(merged["co"]))
        at = (len(rows) - 1 if extend == "after" else 0) if pinned else -1
        old_rows = rows != at
        for prop in _KEY_PROPS:
            merged[prop][old_rows] = kept[prop]
        if pinned:
            merged["co"][at] = (seam, value)
            merged["interpolation"][at] = _INTERP_LINEAR
            merged["type"][at] = _KEY_GENERATED
        _write_keys(points, merged)
        fcurve.update()
        recomputed = _read_keys(points)
        for prop in _HANDLES:                # the kept keys' handles exactly as they were
            recomputed[prop][old_rows] = kept[prop]
        _write_keys(points, recomputed, _HANDLES)


def evaluate(fcurve, frames: np.ndarray) -> np.ndarray:
    """What ``fcurve`` evaluates to on ``frames`` (float64)."""
    return np.array([fcurve.evaluate(f) for f in frames], dtype=np.float64)


def _unkeyed_values(obj, bone: str, prop: str, frames: np.ndarray, source_channels) -> np.ndarray:
    """(len(frames), k) values of a channel the action may not key: what the source evaluated to on
    those frames when it was read (``source_channels``), else the rig's current value held."""
    current = np.array(getattr(obj.pose.bones[bone], prop), dtype=np.float64)
    held = np.tile(current, (len(frames), 1))
    if source_channels is None:
        return held
    first, sampled = source_channels
    values = sampled.get(prop)
    index = obj.pose.bones.find(bone)
    rows = frames.astype(np.int64) - int(first)
    if values is None or index < 0 or index >= values.shape[1]:
        return held
    inside = (rows >= 0) & (rows < len(values))
    held[inside] = np.asarray(values, dtype=np.float64)[rows[inside], index]
    return held
