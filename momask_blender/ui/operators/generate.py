"""Generate and Generate In-between, and applying their results.

Both read the armature on the main thread (its description, and for an in-between its current
animation as posed matrices), build the typed request, submit a job (``jobs.submit``) and return at once;
the result is applied later by ``momask.apply_result`` (one undo step), through the appliers here.
Everything works the same from the panel, from a script and headless (``headless.py`` calls these).
"""

from __future__ import annotations

import dataclasses
import math

import bpy
import numpy as np

from ...anim import takes
from ...anim.bake import describe_target, read_source, write_generated_take, write_inbetween_take
from ...anim.keys import scene_fps
from ...remote import client as client_mod
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
    take_name,
)
from .steer import generation_steering, steering_note

#: Context read around an in-between's range, each side: the backend inpaints a window of at most
#: 196 model frames (9.8 s) centred on the range, so ±5 s covers it; the rest is never read.
INBETWEEN_CONTEXT_SECONDS = 5.0


@dataclasses.dataclass(frozen=True)
class GenerateContext:
    """What applying a generation needs besides the reply: where its takes start and how to name them."""

    start_frame: int
    prompt: str
    seed: int
    variations: int


@dataclasses.dataclass(frozen=True)
class InbetweenContext:
    """What applying an in-between needs: the scene frames read (``[span_start, span_end)``), the range
    asked for (``first``..``last``), the source action and its channels as read, the blend length."""

    span_start: int
    span_end: int
    first: int
    last: int
    source_action: str
    source_channels: tuple[int, dict]
    prompt: str
    seed: int
    blend_frames: int


class MOMASK_OT_generate(bpy.types.Operator):
    """Generate a motion from the prompt onto the active armature, as a new take"""

    bl_idname = "momask.generate"
    bl_label = "Generate"
    bl_options = {"REGISTER"}

    @classmethod
    def poll(cls, context):
        return busy_poll(cls, context)

    def execute(self, context):
        obj = active_armature(context)
        scene = context.scene
        s = scene.momask
        prompt = s.prompt.strip()
        if not prompt:
            self.report({"ERROR"}, "Type a prompt first, e.g. 'a person walks forward and waves'.")
            return {"CANCELLED"}
        try:
            seconds = None if s.auto_length else round(s.seconds, 3)
            # the path, waypoints, root motion and ground, checked before anything changes (steer.py)
            steering, planned = generation_steering(context, obj, scene.frame_current, seconds)
            seconds = seconds if planned is None else max(planned, properties.MIN_SECONDS)
            seed = next_seed(s)
            request = jobs.messages.GenerateRequest(
                prompts=(prompt,),
                seconds=None if seconds is None else (seconds,),
                seed=seed,
                variations=s.variations,
                sampling=sampling_options(s),
                retarget=jobs.messages.RetargetSpec(
                    rig=rig_spec(describe_target(obj)),
                    overrides=properties.mapping_overrides(obj),
                    dst_fps=scene_fps(scene),
                    foot_lock=s.foot_lock,
                    **steering,
                ),
            )
        except Exception as exc:  # noqa: BLE001
            return report_error(self, exc)
        job_context = GenerateContext(scene.frame_current, prompt, seed, s.variations)
        return submit_model_job(self, context, request, f"Generate '{prompt}'", job_context,
                       f"MoMask: generating '{prompt}' (seed {seed})")


class MOMASK_OT_generate_inbetween(bpy.types.Operator):
    """Regenerate the chosen frame range of the armature's animation from the prompt, keeping the rest"""

    bl_idname = "momask.generate_inbetween"
    bl_label = "Generate In-between"
    bl_options = {"REGISTER"}

    @classmethod
    def poll(cls, context):
        if not busy_poll(cls, context):
            return False
        obj = active_armature(context)
        if obj.animation_data is None or obj.animation_data.action is None:
            cls.poll_message_set(
                "The armature has no animation to in-between; generate or keyframe one first"
            )
            return False
        return True

    def execute(self, context):
        obj = active_armature(context)
        scene = context.scene
        s = scene.momask
        prompt = s.inbetween_prompt.strip()
        first, last, where = properties.inbetween_frames(scene, obj)
        fps = scene_fps(scene)
        if not prompt:
            self.report({"ERROR"}, "Type what should happen in the range, e.g. 'the person jumps'.")
            return {"CANCELLED"}
        if last < first:
            self.report({"ERROR"}, f"The frame range {first}-{last} is empty; set an end after the start.")
            return {"CANCELLED"}
        animated = obj.animation_data.action
        a0, a1 = int(math.floor(animated.frame_range[0])), int(math.ceil(animated.frame_range[1]))
        if last < a0 or first > a1:  # no motion around the range: it would be inpainted from a frozen pose
            self.report({"ERROR"}, f"The frames {first}-{last} do not overlap the animation of "
                        f"'{animated.name}' (frames {a0}-{a1}). Fix: pick a range inside "
                        f"frames {a0}-{a1}, or add motion {'after' if first > a1 else 'before'} it with "
                        f"{'Continue' if first > a1 else 'Lead-in'} (MoMask panel, Continue box).")
            return {"CANCELLED"}
        if where == "action range" and (last - first) / fps > properties.MAX_SECONDS:
            self.report({"ERROR"}, f"With no preview range the in-between would regenerate the whole action "
                        f"(frames {first}-{last}, {(last - first + 1) / fps:.1f} s, over "
                        f"{properties.MAX_SECONDS:g} s), which is rarely meant. Fix: set a preview range "
                        "over the frames to regenerate (Timeline: View > Set Preview Range), or tick Custom "
                        "Range and give the whole action's frames to regenerate all of it.")
            return {"CANCELLED"}
        ad = obj.animation_data
        if ad.use_tweak_mode:
            self.report({"ERROR"}, "The armature's NLA is in tweak mode. Fix: leave tweak mode (Tab in the "
                        "NLA editor), then generate the in-between.")
            return {"CANCELLED"}
        # The in-between edits a copy of the active action, so its source is that action alone: stop
        # an A/B comparison (whose soloed track would be read instead) and read with the NLA off.
        takes.end_compare(obj)
        action = ad.action
        # Only the range and the context the backend can use (its window is centred on the range),
        # clipped to the action; never the whole action, frame by frame on the main thread.
        a0, a1 = action.frame_range
        context_frames = int(round(INBETWEEN_CONTEXT_SECONDS * fps))
        span_start = min(first, max(int(math.floor(a0)), first - context_frames))
        span_end = max(last, min(int(math.ceil(a1)), last + context_frames)) + 1  # exclusive
        try:
            seed = next_seed(s)
            rig, pose, channels = read_source(obj, span_start, span_end)
            request = jobs.messages.InpaintRequest(
                prompt=prompt,
                start=first - span_start,
                end=last + 1 - span_start,
                seed=seed,
                sampling=sampling_options(s),
                source=jobs.messages.PoseSource(
                    rig=rig_spec(rig),
                    pose_matrices=pose.astype(np.float32),
                    fps=fps,
                    overrides=properties.mapping_overrides(obj),
                ),
                # no in_place: the root follows the source around the range (the backend ignores it)
                retarget=jobs.messages.RetargetSpec(dst_fps=fps, foot_lock=s.foot_lock,
                                                    ground=scene.momask_steer.ground),
            )
        except Exception as exc:  # noqa: BLE001
            return report_error(self, exc)
        job_context = InbetweenContext(span_start, span_end, first, last, action.name, (span_start, channels),
                                       prompt, seed, s.blend_frames)
        return submit_model_job(self, context, request, f"In-between '{prompt}'", job_context,
                       f"MoMask: regenerating frames {first}-{last} with '{prompt}'")


# --- applying results (main thread, called by jobs.apply_now) ---------------------------------------


@jobs.applier("generate")
def apply_generate(job: jobs.Job, obj) -> str:
    assert job.data is not None, "appliers only see finished jobs, which carry the backend's reply"
    ctx: GenerateContext = job.context
    made = []
    try:
        for take in job.data["takes"]:
            seed, index = int(take["seed"]), int(take["index"])
            name = take_name(take.get("prompt", ctx.prompt), seed, index, ctx.variations)
            made.append(
                write_generated_take(
                    obj,
                    take["retarget"],
                    ctx.start_frame,
                    name,
                    prompt=take.get("prompt"),
                    seed=seed,
                )
            )
    except BaseException:
        for action in made:  # all or nothing: one generation is one undo step
            takes.delete_take(obj, action)
        raise
    if len(made) > 1:
        takes.apply_take(obj, made[0])
    mapping = job.data["takes"][0].get("mapping") if job.data["takes"] else None
    if mapping:
        properties.store_mapping(obj, mapping)
    obj.momask_take_index = bpy.data.actions.find(made[0].name) if made else -1
    job.made_actions = [a.name for a in made]
    note = steering_note(job.data["takes"][0].get("retarget") or {}) if job.data["takes"] else ""
    if len(made) == 1:
        length = made[0].frame_range[1] - made[0].frame_range[0] + 1
        return f"MoMask: made take '{made[0].name}' ({length:g} frames){note}"
    return f"MoMask: made {len(made)} takes; playing '{made[0].name}'{note}"


@jobs.applier("inpaint")
def apply_inpaint(job: jobs.Job, obj) -> str:
    ctx: InbetweenContext = job.context
    source = bpy.data.actions.get(ctx.source_action)
    if source is None:
        raise client_mod.BackendError(
            "dropped",
            f"The action '{ctx.source_action}' was deleted while the in-between was made; the result was "
            "dropped.",
            "Generate it again.",
        )
    take = job.data["takes"][0]
    frame_count = int(take["retarget"]["frame_count"])
    asked = {"start": ctx.first - ctx.span_start, "end": ctx.last + 1 - ctx.span_start}
    regen = take.get("source_range") or asked
    start = ctx.span_start + max(0, int(regen["start"]))
    # The backend keys exactly the source's frames, so this only guards a malformed reply.
    end = ctx.span_start + min(frame_count, int(regen["end"]))
    action = write_inbetween_take(
        obj,
        take["retarget"],
        start,
        end,
        ctx.blend_frames,
        source_action=source,
        result_start=ctx.span_start,
        name=f"{short_prompt(ctx.prompt)} f{start}-{end - 1}",
        prompt=ctx.prompt,
        seed=int(take.get("seed", ctx.seed)),
        source_channels=ctx.source_channels,
    )
    # The panel shows a take's regenerated frames from the take itself (momask_range), next to the
    # range the user asked for, so the note never goes stale when another take is selected.
    action[takes.PREFIX + "requested_range"] = [ctx.first, ctx.last]
    obj.momask_take_index = bpy.data.actions.find(action.name)
    job.made_actions = [action.name]
    return f"MoMask: regenerated frames {start}-{end - 1}{regenerated_note(action)} into '{action.name}'"


def regenerated_note(action) -> str:
    """" (widened to whole tokens)" when a take's regenerated frames differ from the range asked for."""
    done, asked = action.get(takes.PREFIX + "range"), action.get(takes.PREFIX + "requested_range")
    if done is None or asked is None or (int(done[0]), int(done[1]) - 1) == (int(asked[0]), int(asked[1])):
        return ""
    widened = int(done[0]) <= int(asked[0]) and int(done[1]) - 1 >= int(asked[1])
    return " (widened to whole tokens)" if widened else " (adjusted to whole tokens)"


classes = (
    MOMASK_OT_generate,
    MOMASK_OT_generate_inbetween,
)
