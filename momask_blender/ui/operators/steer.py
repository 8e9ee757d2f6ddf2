"""Steering a generation from the panel: the path curve, the waypoints, root motion and ground, as the
request's ``RetargetSpec`` fields (docs/protocol.md "Steering"), checked before anything is sent; and
the waypoint list's operators.

``generation_steering`` is what Generate calls: the steering fields and, for a "keep speed" path, the
duration the path plans (``messages.path_seconds``). Bad input (a curve of one point or no length, a
curve that is not one line, waypoints out of frame order, before the take or after its end, a
waypoint without its empty, In Place together with a root-motion mode) raises a ``MoMaskError`` with
the fix; the operator reports it and sends nothing.
"""

from __future__ import annotations

import bpy
from bpy.props import IntProperty

from ...anim.armature import MoMaskError
from ...anim.keys import scene_fps
from ...anim.paths import ground_path
from ...remote import jobs
from .common import report_error


def waypoint_specs(steer, start_frame: int, fps: float, seconds: float | None) -> tuple:
    """The waypoints as ``messages.Waypoint``: frames counted in keys from the take's first key
    (``start_frame``), in increasing order, inside the take (when its length is known)."""
    out, previous = [], None
    for i, item in enumerate(steer.waypoints, start=1):
        label = f"Waypoint {i}" + (f" ({item.target.name})" if item.target else "")
        if item.target is None:
            raise MoMaskError(f"{label} has no empty.", "Pick an empty for it in the Waypoints list, or "
                              "remove it (-).")
        if item.frame < start_frame:
            raise MoMaskError(f"{label} is at frame {item.frame}, before the take starts (frame "
                              f"{start_frame}).", "Set its frame after the start frame, or move the "
                              "current frame (where the take starts) back.")
        if previous is not None and item.frame <= previous[1]:
            raise MoMaskError(f"{label} is at frame {item.frame}, not after {previous[0]} (frame "
                              f"{previous[1]}); the root passes the waypoints in the list's order.",
                              "Give each waypoint a later frame than the one above it (or reorder them).")
        if seconds is not None and (item.frame - start_frame) / fps > seconds + 1e-6:
            raise MoMaskError(f"{label} is at frame {item.frame}, after the take ends (frame "
                              f"{start_frame + int(seconds * fps)}).",
                              "Set its frame inside the take, or make the take longer (Seconds).")
        where = item.target.matrix_world.translation
        out.append(jobs.messages.Waypoint(position=(float(where.x), float(where.y), 0.0),
                                          frame=float(item.frame - start_frame)))
        previous = (label, item.frame)
    return tuple(out)


def generation_steering(context, obj, start_frame: int, seconds: float | None) -> tuple[dict, float | None]:
    """(the ``RetargetSpec`` steering fields, the planned duration or None) for Generate on ``obj``.
    ``seconds``: the duration asked for (None: automatic)."""
    scene = context.scene
    s, steer = scene.momask, scene.momask_steer
    fields: dict = {"in_place": s.in_place, "ground": steer.ground}
    planned = None
    if steer.use_path:
        points = ground_path(steer.path)
        fields["path"] = jobs.messages.PathSpec(points=points.astype("float32"), timing=steer.timing,
                                                facing=steer.facing)
        if steer.timing == "keep_speed":
            planned = round(jobs.messages.path_seconds(points), 3)
    if steer.root_motion != "none":
        if s.in_place:
            raise MoMaskError(f"In Place and Root Motion '{steer.root_motion}' are both set; the travel "
                              "cannot be dropped and extracted at once.",
                              "Untick In Place (Advanced), or set Root Motion to 'On the Hips'.")
        bone = steer.root_bone.strip()
        if bone and obj.data.bones.get(bone) is None:
            raise MoMaskError(f"'{obj.name}' has no bone '{bone}' for the root motion.",
                              "Pick one of its bones (a root above the hips), or leave it empty for 'root'.")
        fields["root_motion"] = jobs.messages.RootMotionSpec(mode=steer.root_motion, bone=bone,
                                                             heading=steer.heading)
    if steer.waypoints:
        fields["waypoints"] = waypoint_specs(steer, start_frame, scene_fps(scene),
                                             planned if planned is not None else seconds)
    return fields, planned


def steering_note(result: dict) -> str:
    """What the take's steering report says a user should know (stride change, warnings), or ""."""
    report = result.get("steering") if isinstance(result, dict) else None
    if not report:
        return ""
    parts = []
    stride = float(report.get("stride_scale", 1.0) or 1.0)
    if abs(stride - 1.0) > 0.02:
        parts.append(f"strides x{stride:.2f}")
    parts.extend(str(w) for w in report.get("warnings") or [])
    return (" Path: " + "; ".join(parts)) if parts else ""


class MOMASK_OT_waypoint_add(bpy.types.Operator):
    """Add a waypoint: the selected empty (else a new one at the 3D cursor) at the current frame"""

    bl_idname = "momask.waypoint_add"
    bl_label = "Add Waypoint"
    bl_options = {"REGISTER", "UNDO"}

    def execute(self, context):
        scene = context.scene
        empty = next((o for o in context.selected_objects if o.type == "EMPTY"
                      and all(w.target != o for w in scene.momask_steer.waypoints)), None)
        try:
            if empty is None:
                empty = bpy.data.objects.new(f"Waypoint {len(scene.momask_steer.waypoints) + 1}", None)
                empty.empty_display_type = "SINGLE_ARROW"
                empty.location = scene.cursor.location
                (context.collection or scene.collection).objects.link(empty)
            item = scene.momask_steer.waypoints.add()
            item.target, item.frame = empty, scene.frame_current
        except Exception as exc:  # noqa: BLE001
            return report_error(self, exc)
        scene.momask_steer.waypoint_index = len(scene.momask_steer.waypoints) - 1
        return {"FINISHED"}


class MOMASK_OT_waypoint_remove(bpy.types.Operator):
    """Remove the selected waypoint from the list (its empty stays)"""

    bl_idname = "momask.waypoint_remove"
    bl_label = "Remove Waypoint"
    bl_options = {"REGISTER", "UNDO"}

    index: IntProperty(default=-1, options={"SKIP_SAVE"})  # type: ignore[valid-type]

    @classmethod
    def poll(cls, context):
        return len(context.scene.momask_steer.waypoints) > 0

    def execute(self, context):
        steer = context.scene.momask_steer
        index = self.index if self.index >= 0 else steer.waypoint_index
        if 0 <= index < len(steer.waypoints):
            steer.waypoints.remove(index)
            steer.waypoint_index = min(index, len(steer.waypoints) - 1)
        return {"FINISHED"}


classes = (MOMASK_OT_waypoint_add, MOMASK_OT_waypoint_remove)
