"""Takes: every generation is its own action, kept, listed, applied, compared and deleted.

A take is an action carrying ``momask_*`` custom properties (prompt, seed, frames, fps, created,
kind ``generate``/``inbetween``, source action, the rig's fingerprint). Takes keep a fake user so
they survive saving while not assigned. The user's own action from before the first take is
remembered on the armature (``momask_original_action``, also with a fake user), so nothing they
made is ever lost.

Comparing (A/B): ``compare_takes(obj, a, b)`` makes ``a`` the active action and puts ``b`` on a muted
NLA track named "MoMask compare". ``show_compare(obj, "b")`` solos that track, so the armature
plays ``b`` alone (solo disables the active action and other tracks); ``show_compare(obj, "a")``
mutes it again; ``end_compare(obj)`` removes the track. Both takes stay on the timeline at their
own frames, so scrubbing and toggling shows the difference on the same rig.

Takes are switched with :func:`play`: a take that keys the armature object's transform (Root Motion
"Object") keeps the object's place from before it (``momask_object_transform``) and puts it back when
an action that does not move the object plays again.
"""

from __future__ import annotations

import contextlib
import datetime

import bpy

from . import segments
from .actions import Channels, assign_action, is_slotted, object_slot
from .armature import MoMaskError, scene_of
from .rig_io import armature_fingerprint

PREFIX = "momask_"
ORIGINAL = "momask_original_action"
COMPARE_TRACK = "MoMask compare"
#: The armature object's own transform from before a take that moves it (Root Motion "Object").
OBJECT_TRANSFORM = "momask_object_transform"
_OBJECT_CHANNELS = ("location", "rotation_euler", "rotation_quaternion", "rotation_axis_angle", "scale")


def record_take(obj, action, *, kind: str, prompt: str, seed: int | None, frames: int, fps: float,
                source=None, frame_range: tuple[int, int] | None = None) -> None:
    """Tag ``action`` as a take of ``obj``'s rig and keep it (fake user)."""
    action[PREFIX + "take"] = True
    action[PREFIX + "kind"] = kind
    action[PREFIX + "prompt"] = prompt
    action[PREFIX + "seed"] = -1 if seed is None else int(seed)
    action[PREFIX + "frames"] = int(frames)
    action[PREFIX + "fps"] = float(fps)
    action[PREFIX + "created"] = datetime.datetime.now().isoformat(timespec="microseconds")
    action[PREFIX + "source"] = source.name if source is not None else ""
    action[PREFIX + "rig"] = armature_fingerprint(obj)
    if frame_range is not None:
        action[PREFIX + "range"] = list(frame_range)
    elif PREFIX + "range" in action:
        del action[PREFIX + "range"]
    action.use_fake_user = True


def is_take(action) -> bool:
    return action is not None and bool(action.get(PREFIX + "take", False))


def selected_take(obj):
    """The take selected in the panel's list for ``obj`` (``Object.momask_take_index``), or None."""
    index = obj.momask_take_index
    action = bpy.data.actions[index] if 0 <= index < len(bpy.data.actions) else None
    return action if is_take(action) else None


def take_info(action) -> dict:
    """The take's metadata as a plain dict (keys without the ``momask_`` prefix)."""
    info = {key[len(PREFIX):]: action[key] for key in action.keys() if key.startswith(PREFIX)}  # noqa: SIM118 (an ID is not iterable)
    if "range" in info:
        info["range"] = list(info["range"])
    return info


def list_takes(obj) -> list:
    """Takes made for this armature's rig (same bone names and hierarchy), oldest first."""
    rig = armature_fingerprint(obj)
    found = [a for a in bpy.data.actions if is_take(a) and a.get(PREFIX + "rig") == rig]
    return sorted(found, key=lambda a: (a.get(PREFIX + "created", ""), a.name))


def original_action(obj):
    """The user's own action from before MoMask's first take on this armature (None if there was none)."""
    remembered = obj.get(ORIGINAL)
    if isinstance(remembered, bpy.types.Action):
        return remembered
    current = obj.animation_data.action if obj.animation_data else None
    return current if current is not None and not is_take(current) else None


def remember_original(obj) -> None:
    """Keep the armature's current action if it is the user's own (not a take) before a take replaces it."""
    current = obj.animation_data.action if obj.animation_data else None
    if current is None or is_take(current):
        return
    current.use_fake_user = True
    obj[ORIGINAL] = current


def moves_object(obj, action, slot=None) -> bool:
    """Whether ``action`` keys the armature object's own transform (a Root Motion "Object" take)."""
    if action is None:
        return False
    slot = slot or object_slot(action, obj)
    if is_slotted(action) and slot is None:
        return False
    return any(fc.data_path in _OBJECT_CHANNELS for fc in Channels(action, slot).fcurves)


def play(obj, action, slot=None) -> None:
    """Make ``action`` play on ``obj`` (:func:`actions.assign_action`), keeping the object's own place.

    A take that keys the object's transform moves the armature object; the transform from before is
    kept on the object (``momask_object_transform``) when such a take replaces an action that does
    not move it, and put back when an action that does not move it plays again, so switching back
    to the user's action (or a plain take) leaves the rig where the user had it.
    """
    ad = obj.animation_data
    playing = ad.action if ad is not None else None
    was, will = moves_object(obj, playing), moves_object(obj, action, slot)
    if will and not was:
        obj[OBJECT_TRANSFORM] = {prop: list(getattr(obj, prop)) for prop in _OBJECT_CHANNELS}
    assign_action(obj, action, slot)
    saved = obj.get(OBJECT_TRANSFORM)
    if was and not will and saved is not None:
        for prop in _OBJECT_CHANNELS:
            setattr(obj, prop, tuple(saved[prop]))


def apply_take(obj, action) -> None:
    """Play ``action`` on the armature (slot bound), remembering the user's own action first."""
    if not is_take(action) and action != original_action(obj):
        raise MoMaskError(f"'{action.name}' is not a MoMask take.", "Pick a take from the MoMask list.")
    remember_original(obj)
    play(obj, action)
    segments.sync_scene_markers(scene_of(obj), action, obj)   # a composed take's prompts on the timeline


def _compare_track(obj):
    ad = obj.animation_data
    return ad.nla_tracks.get(COMPARE_TRACK) if ad is not None else None


def compare_takes(obj, a, b):
    """Set up an A/B of two takes: ``a`` active, ``b`` on the muted "MoMask compare" NLA track.

    Returns the track. Toggle with :func:`show_compare`, finish with :func:`end_compare`.
    """
    end_compare(obj)
    apply_take(obj, a)
    ad = obj.animation_data
    track = ad.nla_tracks.new()
    track.name = COMPARE_TRACK
    strip = track.strips.new(b.name[:60], int(round(b.frame_range[0])), b)
    slot = object_slot(b, obj)
    if slot is not None and hasattr(strip, "action_slot"):
        strip.action_slot = slot
    track.mute = True
    return track


def show_compare(obj, which: str) -> None:
    """Play take ``"a"`` (the active action) or ``"b"`` (the compare track, soloed)."""
    track = _compare_track(obj)
    if track is None:
        raise MoMaskError("No comparison is set up on this armature.",
                          "Choose two takes and press Compare.")
    show_b = which == "b"
    track.mute = not show_b
    track.is_solo = show_b


@contextlib.contextmanager
def compare_paused(obj):
    """Inside the block the A/B comparison (if any) is muted and not soloed, so the rig plays its
    active action alone (what an operator reads its source from); afterwards it is as it was. An
    operator ends the comparison (:func:`end_compare`) only once its request passed every check, so
    a refused request leaves it."""
    track = _compare_track(obj)
    if track is None:
        yield
        return
    mute, solo = track.mute, track.is_solo
    track.is_solo, track.mute = False, True
    try:
        yield
    finally:
        track = _compare_track(obj)
        if track is not None:
            track.is_solo, track.mute = solo, mute


def end_compare(obj) -> None:
    """Remove the comparison track; the active take stays."""
    track = _compare_track(obj)
    if track is not None:
        obj.animation_data.nla_tracks.remove(track)


def delete_take(obj, action) -> None:
    """Delete a take. If it is playing, fall back to its source, the previous take, or the original."""
    if not is_take(action):
        raise MoMaskError(f"'{action.name}' is not a MoMask take; MoMask only deletes its own takes.",
                          "Delete other actions in Blender's Action editor.")
    track = _compare_track(obj)
    if track is not None and any(strip.action == action for strip in track.strips):
        end_compare(obj)
    ad = obj.animation_data
    if ad is not None and ad.action == action:
        all_takes = list_takes(obj)
        position = all_takes.index(action) if action in all_takes else len(all_takes)
        source = None
        if action.get(PREFIX + "kind") == "inbetween":  # an in-between falls back to what it edited
            source = bpy.data.actions.get(action.get(PREFIX + "source", ""))
        earlier = all_takes[:position]
        fallback = source or (earlier[-1] if earlier else None) or original_action(obj)
        if fallback == action:
            fallback = None
        play(obj, fallback)
        segments.sync_scene_markers(scene_of(obj), fallback, obj)
    bpy.data.actions.remove(action)
