"""Generate Through Keyed Poses: a take from the prompt that passes through the poses keyed on the rig.

The take covers the In-between box's frames (custom range, else the preview range, else the action's
range); the pose targets are the frames listed in the box (``MoMaskSettings.pose_targets``), which
**From Keys** fills with the frames where the mapped bones have keys inside that range. The operator
reads the rig's pose at each target frame, checks the targets (``messages.pose_target_problem``:
inside the take, in order, at least one token apart), sends a ``targets`` request and returns; the
applier writes the answer as a NEW take starting on the range's first frame (the user's action is left
as it is), in one undo step (``momask.apply_result``). How the backend hits the keys:
docs/retargeting.md §12.
"""

from __future__ import annotations

import dataclasses
import re

import bpy
import numpy as np

from ...anim import takes
from ...anim.actions import Channels, object_slot
from ...anim.armature import MoMaskError
from ...anim.bake import read_source, write_generated_take
from ...anim.keys import scene_fps
from ...remote import jobs
from .. import properties
from .common import (
    active_armature,
    busy_poll,
    next_seed,
    report_error,
    rig_spec,
    sampling_options,
    short_prompt,
    submit_model_job,
)

#: The model's frame rate the add-on checks target spacing with before sending (HumanML3D's 20 fps;
#: the backend checks again with the loaded dataset's).
MODEL_FPS = jobs.messages.DATASET_FPS["t2m"]
_BONE_PATH = re.compile(r'^pose\.bones\["((?:[^"\\]|\\.)*)"\]\.')


@dataclasses.dataclass(frozen=True)
class TargetsContext:
    """What applying a take through pose targets needs: its first and last scene frame, the target
    frames, the action the poses were read from, the prompt and the seed."""

    first: int
    last: int
    frames: tuple[int, ...]
    source_action: str
    prompt: str
    seed: int


def keyed_frames(obj, action, first: int, last: int) -> list[int]:
    """Whole scene frames in ``first..last`` where ``action`` keys a bone of the mapping (every pose
    bone while no mapping has been detected yet)."""
    mapped = {item.bone for item in obj.momask_mapping if item.bone}
    frames: set[int] = set()
    for fcurve in Channels(action, object_slot(action, obj)).fcurves:
        match = _BONE_PATH.match(fcurve.data_path)
        if match is None:
            continue
        bone = match.group(1).replace('\\"', '"').replace("\\\\", "\\")
        if mapped and bone not in mapped:
            continue
        count = len(fcurve.keyframe_points)
        co = np.empty(2 * count, dtype=np.float32)
        fcurve.keyframe_points.foreach_get("co", co)
        frames.update(int(round(f)) for f in co[0::2] if first - 1e-3 <= f <= last + 1e-3)
    return sorted(frames)


def parse_frames(text: str) -> list[int]:
    """The frames typed in the box ("1, 30, 60" or "1 30 60"), sorted; a word that is not a whole
    number is refused by name."""
    frames = []
    for word in re.split(r"[,;\s]+", text.strip()):
        if not word:
            continue
        try:
            frames.append(int(word))
        except ValueError:
            raise MoMaskError(f"'{word}' in the pose target list is not a frame number.",
                              "List whole frame numbers separated by commas, e.g. 1, 30, 60.") from None
    return sorted(set(frames))


def check_targets(frames: list[int], first: int, last: int, fps: float, source: str) -> None:
    """Refuse, with one message and its fix, targets the backend could not hit (nothing is sent)."""
    if last <= first:
        raise MoMaskError(f"The take's frames {first}-{last} ({source}) hold no motion.",
                          "Set an end after the start (Custom Range or the preview range).")
    take_frames = last - first + 1
    longest = jobs.messages.MAX_MOTION_FRAMES
    if jobs.messages.take_model_frames(take_frames, fps, MODEL_FPS) > longest:
        seconds = (take_frames - 1) / fps
        raise MoMaskError(f"The take's frames {first}-{last} ({source}) last {seconds:.1f} s, "
                          f"longer than the {(longest - 1) / MODEL_FPS:.1f} s MoMask makes at once.",
                          "Shorten the range (Custom Range or the preview range) to the frames between "
                          "the keys to hit.")
    if not frames:
        raise MoMaskError(f"No pose targets: the mapped bones have no keys in frames {first}-{last} "
                          f"({source}).",
                          "Key the poses to hit inside the range, or type their frames in the list.")
    problem = jobs.messages.pose_target_problem([f - first for f in frames], take_frames, fps, MODEL_FPS,
                                                first=first)
    if problem is not None:
        raise MoMaskError(*problem)


class MOMASK_OT_pose_targets_from_keys(bpy.types.Operator):
    """List the frames where the mapped bones have keys inside the In-between range as pose targets"""

    bl_idname = "momask.pose_targets_from_keys"
    bl_label = "From Keys"
    bl_options = {"REGISTER", "UNDO"}

    @classmethod
    def poll(cls, context):
        obj = active_armature(context)
        if obj is None or obj.animation_data is None or obj.animation_data.action is None:
            cls.poll_message_set("The armature has no keyed animation to take pose targets from")
            return False
        return True

    def execute(self, context):
        obj = active_armature(context)
        first, last, source = properties.inbetween_frames(context.scene, obj)
        frames = keyed_frames(obj, obj.animation_data.action, first, last)
        if not frames:
            self.report({"ERROR"}, f"The mapped bones have no keys in frames {first}-{last} ({source}). "
                        "Fix: key the poses to hit inside the range, or widen the range.")
            return {"CANCELLED"}
        context.scene.momask.pose_targets = ", ".join(str(f) for f in frames)
        self.report({"INFO"}, f"MoMask: {len(frames)} pose targets from the keys")
        return {"FINISHED"}


class MOMASK_OT_generate_through_poses(bpy.types.Operator):
    """Generate a new take over the In-between range from its prompt that passes exactly through the
    poses keyed on the listed frames (two keyed poses: an in-between of the keys)"""

    bl_idname = "momask.generate_through_poses"
    bl_label = "Generate Through Keyed Poses"
    bl_options = {"REGISTER"}

    @classmethod
    def poll(cls, context):
        if not busy_poll(cls, context):
            return False
        obj = active_armature(context)
        if obj.animation_data is None or obj.animation_data.action is None:
            cls.poll_message_set("The armature has no keyed poses; key the poses to pass through first")
            return False
        return True

    def execute(self, context):
        obj = active_armature(context)
        scene = context.scene
        s = scene.momask
        prompt = s.inbetween_prompt.strip()
        if not prompt:
            self.report({"ERROR"}, "Type what should happen between the poses, e.g. 'a person walks'.")
            return {"CANCELLED"}
        ad = obj.animation_data
        if ad.use_tweak_mode:
            self.report({"ERROR"}, "The armature's NLA is in tweak mode. Fix: leave tweak mode (Tab in the "
                        "NLA editor), then generate.")
            return {"CANCELLED"}
        first, last, source = properties.inbetween_frames(scene, obj)
        fps = scene_fps(scene)
        action = ad.action
        try:
            typed = s.pose_targets.strip()
            frames = parse_frames(typed) if typed else keyed_frames(obj, action, first, last)
            check_targets(frames, first, last, fps, source)
            seed = next_seed(s)
            rig = None
            poses = []
            with takes.compare_paused(obj):         # read the active action alone (as In-between does)
                for frame in frames:
                    rig, pose, _ = read_source(obj, frame, frame + 1)
                    poses.append(pose[0])
            assert rig is not None
            request = jobs.messages.TargetsRequest(
                prompt=prompt,
                source=jobs.messages.PoseSource(
                    rig=rig_spec(rig),
                    pose_matrices=np.stack(poses).astype(np.float32),
                    fps=fps,
                    overrides=properties.mapping_overrides(obj),
                ),
                target_frames=tuple(float(f - first) for f in frames),
                take_frames=last - first + 1,
                seed=seed,
                sampling=sampling_options(s),
                blend_frames=s.blend_frames,
                retarget=jobs.messages.RetargetSpec(dst_fps=fps, foot_lock=s.foot_lock),
            )
        except Exception as exc:  # noqa: BLE001
            return report_error(self, exc)
        takes.end_compare(obj)                      # every check passed: the comparison goes now
        if not typed:                               # show the targets that were used
            s.pose_targets = ", ".join(str(f) for f in frames)
        job_context = TargetsContext(first, last, tuple(frames), action.name, prompt, seed)
        return submit_model_job(self, context, request, f"Through keyed poses '{prompt}'", job_context,
                                f"MoMask: generating frames {first}-{last} through the poses on "
                                f"{', '.join(map(str, frames))}")


@jobs.applier("targets")
def apply_targets(job: jobs.Job, obj) -> str:
    assert job.data is not None, "appliers only see finished jobs, which carry the backend's reply"
    ctx: TargetsContext = job.context
    take = job.data["takes"][0]
    action = write_generated_take(obj, take["retarget"], ctx.first,
                                  f"{short_prompt(ctx.prompt)} keyed f{ctx.first}-{ctx.last}",
                                  prompt=ctx.prompt, seed=int(take.get("seed", ctx.seed)), kind="targets")
    action[takes.PREFIX + "targets"] = list(ctx.frames)
    action[takes.PREFIX + "source"] = ctx.source_action
    mapping = take.get("mapping")
    if mapping:
        properties.store_mapping(obj, mapping)
    obj.momask_take_index = bpy.data.actions.find(action.name)
    job.made_actions = [action.name]
    return (f"MoMask: made take '{action.name}' through the poses on frames "
            f"{', '.join(map(str, ctx.frames))}")


classes = (MOMASK_OT_pose_targets_from_keys, MOMASK_OT_generate_through_poses)
