"""Which action an armature plays, and the F-Curves an action holds for it.

Three generations of Blender's action API are handled here and nowhere else:

* 4.2/4.3: classic actions, ``action.fcurves``;
* 4.4/4.5: slotted (layered) actions, ``layer.strips[0].channelbag(slot)``, F-Curve groups made by
  hand (``ActionChannelbagFCurves.new`` has no group argument yet);
* 5.0+: ``Action.fcurves`` is gone; ``bpy_extras.anim_utils.action_ensure_channelbag_for_slot``.

An object only animates from a slotted action when ``animation_data.action_slot`` is bound, so
every assignment here binds the slot explicitly.
"""

from __future__ import annotations

import bpy
from bpy_extras import anim_utils

from .armature import RigError

#: Blender stores key names in 64 bytes (63 + NUL) up to 4.5; keep take names portable.
NAME_LIMIT = 63


def is_slotted(action) -> bool:
    """True on 4.4+ where actions carry slots and channelbags."""
    return hasattr(action, "slots")


def object_slot(action, obj):
    """The slot of ``action`` that animates ``obj`` (None on classic actions or when it has none).

    Prefers the slot the object is bound to, then one named after the object, then the first
    object slot: a take has exactly one, made for the armature it was generated on.
    """
    if not is_slotted(action):
        return None
    ad = obj.animation_data
    if ad is not None and ad.action == action and ad.action_slot is not None:
        return ad.action_slot
    object_slots = [slot for slot in action.slots if slot.target_id_type in {"OBJECT", "UNSPECIFIED"}]
    for slot in object_slots:
        if slot.identifier == "OB" + obj.name:
            return slot
    return object_slots[0] if object_slots else None


def assign_action(obj, action, slot=None) -> None:
    """Make ``action`` the object's active action, bound to ``slot`` (found when not given)."""
    ad = obj.animation_data or obj.animation_data_create()
    if slot is None and action is not None:
        slot = object_slot(action, obj)
    ad.action = action
    if action is not None and is_slotted(action) and slot is not None:
        ad.action_slot = slot


class Channels:
    """The F-Curves one action holds for one object, whichever action API this Blender has."""

    def __init__(self, action, slot=None, ensure: bool = False) -> None:
        self.action = action
        self._groups: dict[str, object] = {}
        if not is_slotted(action):  # 4.2/4.3
            self.bag = None
            self.fcurves = action.fcurves
            return
        if slot is None:
            raise RigError(f"The action '{action.name}' has no slot for this armature.",
                           "Assign the action to the armature once in the Action editor, then retry.")
        if ensure and hasattr(anim_utils, "action_ensure_channelbag_for_slot"):  # 5.0+
            bag = anim_utils.action_ensure_channelbag_for_slot(action, slot)
        else:
            bag = None
            for layer in action.layers:
                for strip in layer.strips:
                    bag = bag or strip.channelbag(slot)
            if bag is None and ensure:  # 4.4/4.5: build the layer and keyframe strip ourselves
                layer = action.layers[0] if action.layers else action.layers.new("Layer")
                strip = layer.strips[0] if layer.strips else layer.strips.new(type="KEYFRAME")
                bag = strip.channelbag(slot, ensure=True)
        self.bag = bag
        self.fcurves = bag.fcurves if bag is not None else ()

    def find(self, data_path: str, index: int):
        if self.bag is None and is_slotted(self.action):
            return None
        return self.fcurves.find(data_path, index=index)

    def new(self, data_path: str, index: int, group: str):
        if self.bag is None:  # classic action
            return self.action.fcurves.new(data_path, index=index, action_group=group)
        try:  # 5.0: groups are made for us
            return self.bag.fcurves.new(data_path, index=index, group_name=group)
        except TypeError:  # 4.4/4.5
            fcurve = self.bag.fcurves.new(data_path, index=index)
            fcurve.group = self._group(group)
            return fcurve

    def _group(self, name: str):
        group = self._groups.get(name)
        if group is None:
            group = self.bag.groups.get(name) or self.bag.groups.new(name)
            self._groups[name] = group
        return group


def new_action(name: str, obj):
    """A new empty action with a unique portable name, and its slot for ``obj`` (None on 4.2/4.3)."""
    action = bpy.data.actions.new(unique_action_name(name))
    slot = None
    if is_slotted(action):
        slot = action.slots.new(id_type="OBJECT", name=obj.name)
    elif "id_root" in action.bl_rna.properties:  # not hasattr: reading the unset enum warns on 4.2
        action.id_root = "OBJECT"  # type: ignore[attr-defined]  # 4.2/4.3 only, not in the 5.x stubs
    return action, slot


def _clip_utf8(text: str, limit: int) -> str:
    data = text.encode("utf-8")[:limit]
    return data.decode("utf-8", errors="ignore").rstrip()


def unique_action_name(name: str) -> str:
    """``name`` with whitespace collapsed, within 63 bytes, not used by another action."""
    base = " ".join(str(name).split()) or "MoMask take"
    candidate = _clip_utf8(base, NAME_LIMIT)
    number = 1
    while bpy.data.actions.get(candidate) is not None:
        number += 1
        suffix = f" ({number})"
        candidate = _clip_utf8(base, NAME_LIMIT - len(suffix)) + suffix
    return candidate
