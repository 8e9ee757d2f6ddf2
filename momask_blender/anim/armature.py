"""The armature MoMask writes to: the error types its checks raise, the check that an object is
still an armature, the scene it is in, and the pose channels a bone can be keyed on.

The lowest of the ``anim`` modules: reading (``rig_io``), takes and writing keys all start here.
"""

from __future__ import annotations

import bpy

from ..remote.client import load_backend_module

# The backend's own error types (backend/portable/errors.py, stdlib only, loaded by path like the protocol),
# so a message reads the same in the panel whether the backend or the add-on found the problem.
_errors = load_backend_module("errors")
MoMaskError = _errors.MoMaskError
RigError = _errors.RigError

#: Components per keyed property.
CHANNEL_SIZES = {"rotation_quaternion": 4, "rotation_euler": 3, "rotation_axis_angle": 4, "location": 3}


def require_armature(obj) -> None:
    """Raise a :class:`MoMaskError` saying what to do unless ``obj`` is (still) an armature."""
    try:
        kind = getattr(obj, "type", None)
    except ReferenceError:  # deleted (or undone) while a job ran
        raise MoMaskError("The armature was deleted while the motion was being made.",
                          "Select an armature and generate again.") from None
    if kind != "ARMATURE":
        name = getattr(obj, "name", "nothing")
        raise MoMaskError(f"'{name}' is not an armature.", "Select the character's armature and try again.")


def scene_of(obj):
    """The scene ``obj`` is in (its first), else the context's: whose frame rate and frames count."""
    return obj.users_scene[0] if obj.users_scene else bpy.context.scene
