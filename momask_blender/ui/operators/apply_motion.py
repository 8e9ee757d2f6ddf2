"""Apply Motion and Copy Take: an existing motion onto rigs, through the backend's retarget solver.

Apply Motion reads a motion (a BVH or FBX file through Blender's importers, imported only while it is
read; or another armature's action or take: ``anim/sources.py``) as posed bone matrices and sends it
as the pose ``source`` of a ``retarget`` request onto the active armature, keyed at the scene's fps
(docs/protocol.md, retarget). Copy Take sends the active armature's take the same way onto every other
selected armature, in one request. The answer is written by ``momask.apply_result``: one undo step
for all the takes one click makes, all or nothing. Nothing is changed before the answer comes.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import bpy

from ...anim import sources, takes
from ...anim.armature import MoMaskError
from ...anim.bake import describe_target, write_generated_take
from ...anim.keys import scene_fps
from ...remote import client as client_mod
from ...remote import jobs
from .. import properties
from ..preferences import client_config
from .common import active_armature, report_error, rig_spec
from .steer import generation_steering


@dataclasses.dataclass(frozen=True)
class RetargetContext:
    """What writing the answer needs: the rigs in the request's order, where the takes start, their
    name, what they are (``apply`` / ``copy``) and the source's label."""

    targets: tuple[jobs.Target, ...]
    start_frame: int
    name: str
    kind: str
    label: str


def other_selected_armatures(context) -> list:
    active = active_armature(context)
    return [o for o in context.selected_objects if o.type == "ARMATURE" and o != active]


def _pose_source(motion: sources.MotionSource, overrides: dict[str, str]):
    return jobs.messages.PoseSource(rig=rig_spec(motion.rig), pose_matrices=motion.pose.astype("float32"),
                                    fps=motion.fps, overrides=overrides)


def _target_spec(obj, scene, steering: dict):
    s = scene.momask
    fields = {"foot_lock": s.foot_lock, "in_place": s.in_place, **steering}
    return jobs.messages.RetargetSpec(rig=rig_spec(describe_target(obj)),
                                      overrides=properties.mapping_overrides(obj), dst_fps=scene_fps(scene),
                                      **fields)


def submit_retarget(op, context, motion, overrides, rigs, *, start_frame: int, name: str,
                    kind: str, steering: dict | None = None) -> set[str]:
    """Send ``motion`` to be retargeted onto ``rigs`` (one request) and return at once; ``steering``:
    the panel's path, waypoints, root motion and ground (``steer.generation_steering``)."""
    scene = context.scene
    specs = [_target_spec(obj, scene, steering or {}) for obj in rigs]
    request = jobs.messages.RetargetRequest(source=_pose_source(motion, overrides), target=specs[0],
                                            targets=tuple(specs[1:]))
    targets = tuple(jobs.Target.of(obj) for obj in rigs)
    job = jobs.Job(request, client_config(context), label=f"{kind.capitalize()} '{motion.label}'",
                   target=targets[0], context=RetargetContext(targets, start_frame, name, kind, motion.label))
    jobs.submit(job)
    onto = rigs[0].name if len(rigs) == 1 else f"{len(rigs)} rigs"
    jobs.STATE.message = f"MoMask: retargeting '{motion.label}' onto {onto}..."
    jobs.STATE.error = None
    op.report({"INFO"}, jobs.STATE.message)
    return {"FINISHED"}


class MOMASK_OT_apply_motion(bpy.types.Operator):
    """Make a take on the active armature from a BVH or FBX file's motion, or from another armature's
    action, retargeted by MoMask's solver"""

    bl_idname = "momask.apply_motion"
    bl_label = "Apply Motion"
    bl_options = {"REGISTER"}

    @classmethod
    def poll(cls, context):
        if active_armature(context) is None:
            cls.poll_message_set("Select the armature (the character's rig) to apply the motion to")
            return False
        return True

    def execute(self, context):
        obj = active_armature(context)
        start = context.scene.frame_current
        try:
            # The Path & Root Motion panel steers an applied motion too (its duration is the source's):
            # what it checks without the duration is checked before the (possibly long) import and read.
            generation_steering(context, obj, start, None)
            motion, overrides, name = self.read(context, obj)
            steering, _ = generation_steering(context, obj, start, (motion.frames - 1) / motion.fps)
            return submit_retarget(self, context, motion, overrides, [obj], start_frame=start, name=name,
                                   kind="apply", steering=steering)
        except Exception as exc:  # noqa: BLE001
            return report_error(self, exc)

    @staticmethod
    def read(context, obj) -> tuple[sources.MotionSource, dict[str, str], str]:
        """The motion the panel names, its source mapping overrides and the take's name."""
        settings = context.scene.momask_apply
        if settings.source == "FILE":
            if not settings.filepath.strip():
                raise MoMaskError("No motion file is picked.",
                                  "Pick a BVH or FBX file (the folder button next to the file field).")
            motion = sources.read_file(context, settings.filepath)
            return motion, {}, Path(bpy.path.abspath(settings.filepath)).stem
        source = settings.armature
        if source is None or source.type != "ARMATURE":
            raise MoMaskError("No source armature is picked.",
                              "Pick the armature whose animation to apply in the Armature field.")
        if source == obj:
            raise MoMaskError(f"'{obj.name}' is the armature the motion goes to, not a source.",
                              "Pick another armature as the source; to play one of this rig's own takes, "
                              "use Takes > Apply.")
        motion = sources.read_action(source, settings.action)
        name = (settings.action or source.animation_data.action).name
        return motion, properties.mapping_overrides(source), name


class MOMASK_OT_copy_take(bpy.types.Operator):
    """Copy the active armature's take (the one selected in Takes, else the one it plays) to every other
    selected armature, retargeted onto each"""

    bl_idname = "momask.copy_take"
    bl_label = "Copy Take to Selected"
    bl_options = {"REGISTER"}

    @classmethod
    def poll(cls, context):
        obj = active_armature(context)
        if obj is None:
            cls.poll_message_set("Make the armature whose take to copy the active object")
            return False
        if sources.selected_take_or_action(obj) is None:
            cls.poll_message_set("The active armature plays no take; generate or apply one first")
            return False
        if not other_selected_armatures(context):
            cls.poll_message_set("Also select the armatures to copy the take to (Ctrl+click them)")
            return False
        return True

    def execute(self, context):
        obj = active_armature(context)
        action = sources.selected_take_or_action(obj)
        rigs = other_selected_armatures(context)
        try:
            motion = sources.read_action(obj, action)
            return submit_retarget(self, context, motion, properties.mapping_overrides(obj), rigs,
                                   start_frame=sources.action_frames(action)[0], name=action.name,
                                   kind="copy")
        except Exception as exc:  # noqa: BLE001
            return report_error(self, exc)


@jobs.applier("retarget")
def apply_retarget(job: jobs.Job, obj) -> str:
    """Write one take per rig of the request (all or nothing: one undo step)."""
    assert job.data is not None
    ctx: RetargetContext = job.context
    answers = [job.data, *(job.data.get("targets") or [])]
    rigs = []
    for target in ctx.targets:
        rig, why = target.resolve()
        if rig is None:
            raise client_mod.BackendError("dropped", f"{why} The motion was not applied.",
                                          "Select the armatures and apply the motion again.")
        rigs.append(rig)
    made: list = []
    try:
        for rig, answer in zip(rigs, answers, strict=True):
            made.append((rig, write_generated_take(rig, answer["retarget"], ctx.start_frame, ctx.name,
                                                   prompt=ctx.label, seed=None, kind=ctx.kind)))
    except BaseException:
        for rig, action in made:
            takes.delete_take(rig, action)
        raise
    for (rig, action), answer in zip(made, answers, strict=True):
        if answer.get("mapping"):
            properties.store_mapping(rig, answer["mapping"])
        rig.momask_take_index = bpy.data.actions.find(action.name)
    job.made_actions = [action.name for _, action in made]
    if len(made) == 1:
        rig, action = made[0]
        length = action.frame_range[1] - action.frame_range[0] + 1
        return f"MoMask: applied '{ctx.label}' to '{rig.name}' as take '{action.name}' ({length:g} frames)"
    return f"MoMask: copied '{ctx.label}' to {len(made)} armatures"


classes = (MOMASK_OT_apply_motion, MOMASK_OT_copy_take)
