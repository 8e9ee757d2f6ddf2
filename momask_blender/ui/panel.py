"""The N-panel: 3D viewport sidebar, tab "MoMask".

Main panel: prompt, duration (or auto), seed (+ randomise), variations, Advanced (guidance, steps,
temperature, foot lock, in place), Generate / Cancel, a progress bar with the current stage, and the
last error with its fix. Sub-panels: In-between, Takes, Bone Mapping, Apply Motion, Path & Root
Motion, Sequence (segments, Loop, Regenerate Segment) and Continue / Lead-in. ``draw`` only reads state
(no backend calls, no file system beyond the cached preset list), so it never stalls the UI.
"""

from __future__ import annotations

import bpy

from ..anim import segments, takes
from ..remote import jobs
from . import properties
from .operators.apply_motion import other_selected_armatures
from .operators.common import active_armature
from .operators.compose import frames_for
from .operators.generate import regenerated_note
from .preferences import get_prefs, wrap

WRAP = 46


class MOMASK_UL_takes(bpy.types.UIList):
    """This armature's takes: ``bpy.data.actions`` filtered to actions MoMask made for this rig."""

    def draw_item(self, context, layout, data, item, icon, active_data, active_property, index, flt_flag=0):
        obj = active_armature(context)
        playing = obj is not None and obj.animation_data is not None and obj.animation_data.action == item
        kind = item.get("momask_kind", "generate")
        row = layout.row(align=True)
        row.label(
            text=item.name,
            icon="PLAY" if playing else ("SEQ_STRIP_DUPLICATE" if kind == "inbetween" else "ACTION"),
        )
        # The take's name already carries its seed ("... s1234"); the full width goes to the name.

    def filter_items(self, context, data, propname):
        """This rig's takes (``takes.list_takes``: which and in what order), the other actions hidden."""
        actions = getattr(data, propname)
        obj = active_armature(context)
        position = {action.name: i for i, action in enumerate(takes.list_takes(obj))} if obj else {}
        flags = [self.bitflag_filter_item if a.name in position else 0 for a in actions]
        order = sorted(range(len(actions)), key=lambda i: position.get(actions[i].name, len(position) + i))
        new_order = [0] * len(actions)
        for rank, i in enumerate(order):
            new_order[i] = rank
        return flags, new_order


def _progress(layout, fraction: float, text: str) -> None:
    if hasattr(layout, "progress"):
        layout.progress(factor=max(0.0, min(1.0, fraction)), type="BAR", text=text)
    else:
        layout.label(text=f"{text} ({fraction:.0%})")


def draw_status(layout) -> None:
    """Progress of the running job, the last result message, the last error with its fix."""
    state = jobs.STATE
    job = state.active
    if job is not None:
        col = layout.column(align=True)
        text = f"{job.stage_text}  {job.fraction:.0%}" if job.stage != "cancelling" else "Cancelling..."
        _progress(col, job.fraction, text)
    elif state.message:  # wrapped: a take's name is long, and a cut label hides the part that differs
        col = layout.column(align=True)
        for i, line in enumerate(wrap(state.message, WRAP)[:4]):
            col.label(text=line, icon="INFO" if i == 0 else "BLANK1")
    if state.error is not None:
        box = layout.box()
        problem, fix = state.error
        row = box.row()
        row.label(text="Problem", icon="ERROR")
        row.operator("momask.dismiss_error", text="", icon="X", emboss=False)
        for line in wrap(problem, WRAP):
            box.label(text=line)
        if fix:
            box.label(text="Fix", icon="TOOL_SETTINGS")
            for line in wrap(fix, WRAP)[:14]:
                box.label(text=line)


class MOMASK_PT_main(bpy.types.Panel):
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "MoMask"
    bl_label = "MoMask Text to Motion"

    def draw(self, context):
        layout = self.layout
        s = context.scene.momask
        obj = active_armature(context)
        if obj is None:
            layout.label(text="Select an armature", icon="ARMATURE_DATA")
        else:
            layout.label(text=obj.name, icon="ARMATURE_DATA")
        layout.prop(s, "prompt", text="")
        row = layout.row(align=True)
        row.prop(s, "auto_length", text="Auto", toggle=True)
        sub = row.row(align=True)
        sub.enabled = not s.auto_length
        sub.prop(s, "seconds")
        row = layout.row(align=True)
        row.prop(s, "seed")
        row.prop(s, "randomize_seed", text="", icon="FILE_REFRESH", toggle=True)
        layout.prop(s, "variations")
        box = layout.box()
        box.prop(s, "show_advanced", icon="TRIA_DOWN" if s.show_advanced else "TRIA_RIGHT", emboss=False)
        if s.show_advanced:
            col = box.column(align=True)
            col.prop(s, "cond_scale")
            col.prop(s, "steps")
            col.prop(s, "temperature")
            row = box.row()
            row.prop(s, "foot_lock")
            row.prop(s, "in_place")
        row = layout.row(align=True)
        row.scale_y = 1.4
        row.operator("momask.generate", icon="PLAY")
        if jobs.STATE.busy:
            row.operator("momask.cancel", icon="CANCEL")
        fps = context.scene.render.fps / context.scene.render.fps_base
        layout.label(text=f"Starts at frame {context.scene.frame_current}, {fps:g} fps", icon="TIME")
        draw_status(layout)
        row = layout.row(align=True)
        if jobs.warming_up():
            row.label(text="Loading the models in the background...", icon="SORTTIME")
        elif jobs.backend_running():
            host = jobs.remote_host()
            row.label(text=f"Remote backend on {host}" if host else "Backend running, models loaded",
                      icon="URL" if host else "LINKED")
            row.operator("momask.free_memory", text="", icon="X")
        else:
            prefs = get_prefs(context)
            remote = prefs is not None and prefs.backend_command.strip()
            row.label(text="Remote backend connects on Generate" if remote else "Backend starts on Generate",
                      icon="UNLINKED")


class _SubPanel(bpy.types.Panel):
    """Where the sub-panels live (never registered itself: it has no ``bl_label``)."""

    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "MoMask"
    bl_parent_id = "MOMASK_PT_main"


class _ArmaturePanel(_SubPanel):
    """A sub-panel about the active armature: hidden when there is none."""

    @classmethod
    def poll(cls, context):
        return active_armature(context) is not None


class MOMASK_PT_inbetween(_SubPanel):
    bl_label = "In-between"

    def draw(self, context):
        layout = self.layout
        scene = context.scene
        s = scene.momask
        obj = active_armature(context)
        first, last, source = properties.inbetween_frames(scene, obj)
        layout.prop(s, "inbetween_custom_range")
        if s.inbetween_custom_range:
            row = layout.row(align=True)
            row.prop(s, "inbetween_start")
            row.prop(s, "inbetween_end")
        else:
            layout.label(text=f"Frames {first}-{last} ({source})", icon="PREVIEW_RANGE")
        layout.prop(s, "inbetween_prompt", text="")
        layout.prop(s, "blend_frames")
        layout.operator("momask.generate_inbetween", icon="SEQ_SEQUENCER")
        # Through keyed poses: the same range and prompt, a new take hitting the listed keys
        row = layout.row(align=True)
        row.prop(s, "pose_targets", text="Poses")
        row.operator("momask.pose_targets_from_keys", text="", icon="KEYFRAME")
        layout.operator("momask.generate_through_poses", icon="KEYFRAME_HLT")
        take = regenerated_take(obj)
        if take is not None:  # per take: the selected in-between, else the playing one
            a, b = take["momask_range"]
            layout.label(text=f"Regenerated frames {a}-{b - 1}{regenerated_note(take)}", icon="CHECKMARK")


def regenerated_take(obj):
    """The in-between take whose regenerated frames the panel shows: the selected take if it is one,
    else the playing action if it is one, else None."""
    if obj is None:
        return None
    selected = takes.selected_take(obj)
    playing = obj.animation_data.action if obj.animation_data else None
    for action in (selected, playing):
        if action is not None and action.get("momask_kind") == "inbetween" and "momask_range" in action:
            return action
    return None


class MOMASK_PT_takes(_ArmaturePanel):
    bl_label = "Takes"

    def draw(self, context):
        layout = self.layout
        obj = active_armature(context)
        layout.template_list("MOMASK_UL_takes", "", bpy.data, "actions", obj, "momask_take_index", rows=4)
        row = layout.row(align=True)
        row.operator("momask.take_apply", text="Apply", icon="PLAY")
        row.operator("momask.take_compare", text="Compare", icon="ARROW_LEFTRIGHT")
        row.operator("momask.take_delete", text="", icon="TRASH")
        track = obj.animation_data.nla_tracks.get(takes.COMPARE_TRACK) if obj.animation_data else None
        if track is not None:
            row = layout.row(align=True)
            row.label(text="Showing:")
            row.operator("momask.take_show", text="A", depress=track.mute).which = "a"
            row.operator("momask.take_show", text="B", depress=not track.mute).which = "b"
            row.operator("momask.take_compare_end", text="", icon="X")


class MOMASK_PT_mapping(_ArmaturePanel):
    bl_label = "Bone Mapping"
    bl_options = {"DEFAULT_CLOSED"}

    def draw(self, context):
        layout = self.layout
        obj = active_armature(context)
        row = layout.row(align=True)
        row.operator("momask.detect_mapping", icon="VIEWZOOM")
        row.operator("momask.mapping_preset_load", text="Load", icon="IMPORT")
        row.operator("momask.mapping_preset_save", text="Save", icon="EXPORT")
        if not obj.momask_mapping:
            layout.label(text="Not detected yet: press Detect (or Generate).", icon="INFO")
            return
        missing = list(obj.get("momask_missing_roles", []))
        if missing:
            box = layout.box()
            box.label(text="These joints have no bone:", icon="ERROR")
            for line in wrap(", ".join(missing), WRAP):
                box.label(text=line)
            box.label(text="Pick a bone for each below, then Generate.")
        col = layout.column(align=True)
        for item in obj.momask_mapping:
            row = col.row(align=True)
            row.alert = not item.bone
            row.prop_search(item, "bone", obj.data, "bones", text=item.name.replace("_", " "))


class MOMASK_PT_apply_motion(_ArmaturePanel):
    """Apply Motion (a file's or another armature's motion onto this rig) and Copy Take."""

    bl_label = "Apply Motion"
    bl_options = {"DEFAULT_CLOSED"}

    def draw(self, context):
        layout = self.layout
        a = context.scene.momask_apply
        layout.row().prop(a, "source", expand=True)
        if a.source == "FILE":
            layout.prop(a, "filepath", text="")
        else:
            layout.prop(a, "armature")
            layout.prop(a, "action")
        layout.operator("momask.apply_motion", icon="IMPORT")
        others = other_selected_armatures(context)
        row = layout.row()
        row.operator("momask.copy_take", icon="DUPLICATE",
                     text=f"Copy Take to {len(others)} Selected" if others else "Copy Take to Selected")


class MOMASK_UL_waypoints(bpy.types.UIList):
    """The waypoints: an empty and the scene frame the root passes it."""

    def draw_item(self, context, layout, data, item, icon, active_data, active_property, index, flt_flag=0):
        row = layout.row(align=True)
        row.prop(item, "target", text="", icon="EMPTY_AXIS")
        row.prop(item, "frame", text="")


class MOMASK_PT_steer(_ArmaturePanel):
    """Path, waypoints, root motion and ground for Generate (docs/protocol.md "Steering")."""

    bl_label = "Path & Root Motion"
    bl_options = {"DEFAULT_CLOSED"}

    def draw(self, context):
        layout = self.layout
        steer = context.scene.momask_steer
        obj = active_armature(context)
        layout.prop(steer, "use_path")
        if steer.use_path:
            col = layout.column()
            col.prop(steer, "path")
            col.row().prop(steer, "timing", expand=True)
            if steer.timing == "fit_duration":
                col.prop(context.scene.momask, "seconds")
            col.prop(steer, "facing")
        layout.label(text="Waypoints (empties at frames)")
        row = layout.row()
        row.template_list("MOMASK_UL_waypoints", "", steer, "waypoints", steer, "waypoint_index", rows=3)
        col = row.column(align=True)
        col.operator("momask.waypoint_add", text="", icon="ADD")
        col.operator("momask.waypoint_remove", text="", icon="REMOVE")
        layout.prop(steer, "root_motion")
        if steer.root_motion == "root_bone":
            layout.prop_search(steer, "root_bone", obj.data, "bones", text="Bone")
            if not steer.root_bone:
                found = next((b.name for b in obj.data.bones if b.name.lower() == "root"), None)
                layout.label(text=f"Bone: {found} (found)" if found else "No 'root' bone: the object moves",
                             icon="INFO")
        if steer.root_motion != "none":
            layout.prop(steer, "heading")
        layout.prop(steer, "ground")


classes = (MOMASK_UL_takes, MOMASK_PT_main, MOMASK_PT_inbetween, MOMASK_PT_takes, MOMASK_PT_mapping,
           MOMASK_PT_apply_motion, MOMASK_UL_waypoints, MOMASK_PT_steer)


# --- Sequence and Continue (ui/operators/compose.py) ----------------------------------------------------


class MOMASK_UL_segments(bpy.types.UIList):
    """The Sequence box's segments: prompt and seconds, in order."""

    def draw_item(self, context, layout, data, item, icon, active_data, active_property, index, flt_flag=0):
        row = layout.row(align=True)
        row.label(text=f"{index + 1}")
        row.prop(item, "prompt", text="", emboss=False)
        sub = row.row(align=True)
        sub.ui_units_x = 3.5
        sub.prop(item, "seconds", text="")


class MOMASK_PT_sequence(_ArmaturePanel):
    """Prompt segments composed into one take; Regenerate Segment on the playing sequence take."""

    bl_label = "Sequence"
    bl_options = {"DEFAULT_CLOSED"}

    def draw(self, context):
        layout = self.layout
        seq = context.scene.momask_sequence
        row = layout.row()
        row.template_list("MOMASK_UL_segments", "", seq, "segments", seq, "index", rows=4)
        col = row.column(align=True)
        col.operator("momask.segment_add", text="", icon="ADD")
        col.operator("momask.segment_remove", text="", icon="REMOVE")
        col.separator()
        col.operator("momask.segment_move", text="", icon="TRIA_UP").direction = "UP"
        col.operator("momask.segment_move", text="", icon="TRIA_DOWN").direction = "DOWN"
        fps = context.scene.render.fps / context.scene.render.fps_base
        total = sum(frames_for(item.seconds, fps) for item in seq.segments)
        layout.label(text=f"{len(seq.segments)} segments, {total} frames ({total / fps:.1f} s)", icon="TIME")
        layout.prop(seq, "transition")
        row = layout.row(align=True)
        row.prop(seq, "loop", toggle=True, icon="FILE_REFRESH")
        sub = row.row(align=True)
        sub.enabled = seq.loop
        sub.prop(seq, "cycles", toggle=True)
        row = layout.row(align=True)
        row.scale_y = 1.2
        row.operator("momask.generate_sequence", icon="SEQ_SEQUENCER")
        obj = active_armature(context)
        playing = obj.animation_data.action if obj.animation_data else None
        rows = segments.stored_segments(playing) if playing is not None else None
        if rows and segments.stored_codes(playing) is not None:
            row = layout.row(align=True)
            row.operator("momask.regenerate_segment", icon="FILE_REFRESH",
                         text=f"Regenerate Segment {seq.index + 1} of {len(rows)}")
            row.operator("momask.segments_from_take", text="", icon="IMPORT")
        if playing is not None and playing.get(segments.LOOP):
            on = bool(playing.get(segments.CYCLES))
            layout.operator("momask.take_cycles", text="Cycles Modifier", icon="MOD_WAVE", depress=on)


class MOMASK_PT_continue(_ArmaturePanel):
    """Continue the active action after the current frame, or lead into it before."""

    bl_label = "Continue / Lead-in"
    bl_options = {"DEFAULT_CLOSED"}

    def draw(self, context):
        layout = self.layout
        seq = context.scene.momask_sequence
        obj = active_armature(context)
        action = obj.animation_data.action if obj.animation_data else None
        if action is None:
            layout.label(text="Generate or keyframe an animation first", icon="INFO")
        else:
            layout.label(text=f"'{action.name}' at frame {context.scene.frame_current}", icon="ACTION")
        layout.prop(seq, "continue_prompt", text="")
        row = layout.row(align=True)
        row.prop(seq, "continue_seconds")
        row.prop(seq, "continue_blend")
        row = layout.row(align=True)
        row.operator("momask.extend_motion", text="Lead-in", icon="TRIA_LEFT").direction = "before"
        row.operator("momask.extend_motion", text="Continue", icon="TRIA_RIGHT").direction = "after"


classes = (*classes, MOMASK_UL_segments, MOMASK_PT_sequence, MOMASK_PT_continue)
