"""Sequences, Regenerate Segment, Continue and Lead-in: the ``compose`` request (docs/protocol.md,
"compose"), and applying its takes.

* **Generate Sequence** sends the Sequence box's segments (prompt, seconds) with the transition and
  Loop; the reply is one take, keyed from the current frame, that remembers its segments and tokens
  (``anim/segments.py``), with a prompt marker at each segment's start.
* **Regenerate Segment** sends the playing take's stored tokens and segments with the selected
  segment's prompt and a new seed; the new take is a copy of that take with only the frames of the
  segment and its transitions replaced (``keys.write_inbetween``), so every other key is the old one.
* **Continue** / **Lead-in** send the active action's last (first) seconds, read off the rig as an
  in-between's source is (``bake.read_source``), and make a new take: a copy of that action up to the
  current frame followed by the new frames (from it, preceded by them), blended at the seam.

Exact durations: a segment of S seconds is round(S x fps) frames at the scene's fps; the add-on asks
for exactly those frames (as that many frames' seconds) and keys exactly that many. Every bad input
is refused here, before anything is sent, with the problem and the fix; nothing is written then.
"""

from __future__ import annotations

import dataclasses
import math

import bpy
import numpy as np
from bpy.props import EnumProperty

from ...anim import segments as segments_mod
from ...anim import takes
from ...anim.armature import scene_of
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
)
from .generate import InbetweenContext

#: The model's token: 4 frames at 20 fps. A segment, and the source Continue reads, is at least one.
TOKEN_SECONDS = jobs.messages.UNIT_LENGTH / jobs.messages.DATASET_FPS["t2m"]
#: How much of the action Continue / Lead-in send: the backend keeps the last (first) ≤ 2 s as context.
CONTEXT_SECONDS = 2.0


class InputProblem(Exception):
    """A bad input found before any request: ``problem`` and ``fix`` for the panel."""

    def __init__(self, problem: str, fix: str) -> None:
        super().__init__(problem)
        self.problem, self.fix = problem, fix


def refuse(op, exc: InputProblem) -> set[str]:
    jobs.STATE.error = (exc.problem, exc.fix)
    op.report({"ERROR"}, f"{exc.problem} Fix: {exc.fix}")
    return {"CANCELLED"}


def frames_for(seconds: float, fps: float) -> int:
    """round(seconds x fps), halves up, as the backend rounds (docs/protocol.md, compose): the frames a
    duration is keyed as at the scene's rate (2.5 s at 25 fps: 63). The seconds are taken to 5 decimals
    first: a FloatProperty holds float32, so a typed 1.3 reads 1.2999999523 (32 frames at 25 fps, not 33)."""
    return int(math.floor(round(float(seconds), 5) * fps + 0.5 + 1e-9))


def check_seconds(seconds: float, what: str, fix_hint: str) -> float:
    seconds = float(seconds)
    if not math.isfinite(seconds) or seconds <= 0:
        raise InputProblem(f"{what} lasts {seconds:g} s; a duration must be a positive number of seconds.",
                           fix_hint)
    if seconds < TOKEN_SECONDS - 1e-9:
        raise InputProblem(f"{what} lasts {seconds:g} s, shorter than MoMask's smallest step "
                           f"({TOKEN_SECONDS:g} s, one token).", fix_hint)
    return seconds


def sequence_plan(rows: list[tuple[str, float]], transition: float, loop: bool, fps: float
                  ) -> list[tuple[str, int]]:
    """The segments as (prompt, frames at ``fps``), or :class:`InputProblem` naming the first bad one."""
    if not rows:
        raise InputProblem("The sequence has no segments.",
                           "Press + in the Sequence box to add a segment (a prompt and its seconds).")
    if len(rows) > properties.MAX_SEGMENTS:
        raise InputProblem(f"The sequence has {len(rows)} segments, more than the {properties.MAX_SEGMENTS} "
                           "of one composed take.", "Merge or remove segments (or compose the rest as a "
                           "second take with Continue).")
    plan = []
    for k, (prompt, seconds) in enumerate(rows):
        if not prompt.strip():
            raise InputProblem(f"Segment {k + 1} has no prompt.",
                               f"Type what happens in segment {k + 1}, e.g. 'a person walks forward'.")
        check_seconds(seconds, f"Segment {k + 1}", f"Give segment {k + 1} at least {TOKEN_SECONDS:g} s.")
        plan.append((" ".join(prompt.split()), frames_for(seconds, fps)))
    total = sum(float(s) for _, s in rows)
    limit = properties.MAX_SEQUENCE_SECONDS
    if total > limit:
        raise InputProblem(f"The sequence lasts {total:g} s, over the {limit:g} s maximum of one composed "
                           "take.",
                           "Shorten or remove segments (or compose the rest as a second take with Continue).")
    transition = float(transition)
    if not math.isfinite(transition) or not 0 < transition <= properties.MAX_TRANSITION_SECONDS:
        raise InputProblem(f"The transition is {transition:g} s.",
                           f"Set a transition between {TOKEN_SECONDS:g} and "
                           f"{properties.MAX_TRANSITION_SECONDS:g} s (0.4 s joins most motions).")
    # The backend's own rule, on the seconds that go on the wire (request_segments: frames / fps).
    short = jobs.messages.segment_length_problem([frames / fps for _, frames in plan], transition, loop,
                                                 jobs.messages.DATASET_FPS["t2m"])
    if short:
        raise InputProblem(*short)
    return plan


def request_segments(plan: list[tuple[str, int]], fps: float, seeds: list[int | None] | None = None):
    """The wire's segments: each one's exact frames at the scene's rate sent as seconds (frames / fps),
    so the backend's round(seconds x fps) is those frames again."""
    seeds = seeds or [None] * len(plan)
    return tuple(jobs.messages.Segment(prompt=prompt, seconds=frames / fps, seed=seed)
                 for (prompt, frames), seed in zip(plan, seeds, strict=True))


def retarget_spec(obj, settings, fps: float, follow_source: bool = False):
    """The rig the take is keyed on; ``follow_source`` (Continue, Lead-in): never in place, the root
    goes on from the source's."""
    return jobs.messages.RetargetSpec(
        rig=rig_spec(describe_target(obj)), overrides=properties.mapping_overrides(obj), dst_fps=fps,
        foot_lock=settings.foot_lock, in_place=settings.in_place and not follow_source)


def playing_action(obj):
    ad = obj.animation_data if obj is not None else None
    return ad.action if ad is not None else None


# --- what applying needs ------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class SequenceContext:
    """Generate Sequence: where the take starts, its segments as asked (prompt, frames), its settings."""

    start_frame: int
    plan: tuple[tuple[str, int], ...]
    transition: float
    loop: bool
    cycles: bool
    seed: int

    @property
    def frames(self) -> int:
        return sum(frames for _, frames in self.plan)


@dataclasses.dataclass(frozen=True)
class RegenerateContext:
    """Regenerate Segment: the take it copies, where that take starts, which segment, the new prompt."""

    source_action: str
    start_frame: int
    frames: int
    index: int
    prompt: str
    seed: int
    transition: float
    loop: bool
    blend_frames: int


@dataclasses.dataclass(frozen=True)
class ExtendContext(InbetweenContext):
    """Continue ("after") / Lead-in ("before"): an in-between's context whose new frames ``first`` ..
    ``last`` lie after (before) the source frames read, ``[span_start, span_end)``."""

    direction: str = "after"


# --- the Sequence list ----------------------------------------------------------------------------------


class MOMASK_OT_segment_add(bpy.types.Operator):
    """Add a segment after the selected one"""

    bl_idname = "momask.segment_add"
    bl_label = "Add Segment"
    bl_options = {"REGISTER", "UNDO"}

    def execute(self, context):
        seq = context.scene.momask_sequence
        at = min(max(seq.index + 1, 0), len(seq.segments))
        properties.add_segment(seq, "a person walks forward", 3.0)
        seq.segments.move(len(seq.segments) - 1, at)
        seq.index = at
        return {"FINISHED"}


class MOMASK_OT_segment_remove(bpy.types.Operator):
    """Remove the selected segment"""

    bl_idname = "momask.segment_remove"
    bl_label = "Remove Segment"
    bl_options = {"REGISTER", "UNDO"}

    @classmethod
    def poll(cls, context):
        seq = context.scene.momask_sequence
        return 0 <= seq.index < len(seq.segments)

    def execute(self, context):
        seq = context.scene.momask_sequence
        seq.segments.remove(seq.index)
        seq.index = min(seq.index, len(seq.segments) - 1)
        return {"FINISHED"}


class MOMASK_OT_segment_move(bpy.types.Operator):
    """Move the selected segment up or down"""

    bl_idname = "momask.segment_move"
    bl_label = "Move Segment"
    bl_options = {"REGISTER", "UNDO"}

    direction: EnumProperty(items=[("UP", "Up", "Earlier"), ("DOWN", "Down", "Later")])  # type: ignore[valid-type]

    @classmethod
    def poll(cls, context):
        seq = context.scene.momask_sequence
        return 0 <= seq.index < len(seq.segments)

    def execute(self, context):
        seq = context.scene.momask_sequence
        to = seq.index + (-1 if self.direction == "UP" else 1)
        if not 0 <= to < len(seq.segments):
            return {"CANCELLED"}
        seq.segments.move(seq.index, to)
        seq.index = to
        return {"FINISHED"}


class MOMASK_OT_segments_from_take(bpy.types.Operator):
    """Put the playing sequence take's segments (prompts and seconds) into the list, to change one
    and press Regenerate Segment"""

    bl_idname = "momask.segments_from_take"
    bl_label = "Segments From Take"
    bl_options = {"REGISTER", "UNDO"}

    @classmethod
    def poll(cls, context):
        action = playing_action(active_armature(context))
        if action is None or segments_mod.stored_segments(action) is None:
            cls.poll_message_set("Play a take made by Generate Sequence first")
            return False
        return True

    def execute(self, context):
        scene = context.scene
        seq = scene.momask_sequence
        action = playing_action(active_armature(context))
        fps = float(action.get(takes.PREFIX + "fps", scene_fps(scene)))
        index = seq.index
        seq.segments.clear()
        for row in segments_mod.stored_segments(action):
            properties.add_segment(seq, str(row["prompt"]), (int(row["end"]) - int(row["start"])) / fps)
        seq.index = min(max(index, 0), len(seq.segments) - 1)
        if segments_mod.TRANSITION in action:
            seq.transition = float(action[segments_mod.TRANSITION])
        seq.loop = bool(action.get(segments_mod.LOOP, False))
        return {"FINISHED"}


# --- Generate Sequence ------------------------------------------------------------------------------------


class MOMASK_OT_generate_sequence(bpy.types.Operator):
    """Generate the Sequence box's segments as one take, each segment flowing into the next"""

    bl_idname = "momask.generate_sequence"
    bl_label = "Generate Sequence"
    bl_options = {"REGISTER"}

    @classmethod
    def poll(cls, context):
        return busy_poll(cls, context)

    def execute(self, context):
        obj = active_armature(context)
        scene = context.scene
        s, seq = scene.momask, scene.momask_sequence
        fps = scene_fps(scene)
        try:
            plan = sequence_plan([(item.prompt, item.seconds) for item in seq.segments], seq.transition,
                                 seq.loop, fps)
        except InputProblem as exc:
            return refuse(self, exc)
        try:
            seed = next_seed(s)
            request = jobs.messages.ComposeRequest(
                segments=request_segments(plan, fps), transition=float(seq.transition), loop=seq.loop,
                seed=seed, fps=fps, sampling=sampling_options(s), retarget=retarget_spec(obj, s, fps))
        except Exception as exc:  # noqa: BLE001
            return report_error(self, exc)
        job_context = SequenceContext(scene.frame_current, tuple(plan), float(seq.transition), seq.loop,
                                      seq.cycles, seed)
        total = sum(f for _, f in plan)
        return submit_model_job(self, context, request, f"Sequence of {len(plan)}", job_context,
                                f"MoMask: composing {len(plan)} segments, {total} frames (seed {seed})")


# --- Regenerate Segment -----------------------------------------------------------------------------------


def composed_take(obj):
    """The playing take with stored segments and tokens, or :class:`InputProblem` saying why not."""
    action = playing_action(obj)
    if action is None:
        raise InputProblem(f"'{obj.name}' plays no take.",
                           "Generate a sequence first (Generate Sequence), or apply one from Takes.")
    rows = segments_mod.stored_segments(action)
    if rows is None:
        raise InputProblem(f"The take '{action.name}' has no stored segments (it was not made by "
                           "Generate Sequence).",
                           "Play a take made by Generate Sequence (Takes: Apply), or generate a sequence.")
    if segments_mod.stored_codes(action) is None:
        raise InputProblem(f"The take '{action.name}' stores no motion tokens to regenerate from (Continue "
                           "and Lead-in takes keep your keys, not tokens).",
                           "Play a take made by Generate Sequence (Takes: Apply), or generate a sequence.")
    return action, rows


class MOMASK_OT_regenerate_segment(bpy.types.Operator):
    """Regenerate the selected segment of the playing sequence take (its prompt from the list, a new seed)
    as a new take; every other segment stays as it is"""

    bl_idname = "momask.regenerate_segment"
    bl_label = "Regenerate Segment"
    bl_options = {"REGISTER"}

    @classmethod
    def poll(cls, context):
        return busy_poll(cls, context)

    def execute(self, context):
        obj = active_armature(context)
        scene = context.scene
        s, seq = scene.momask, scene.momask_sequence
        fps = scene_fps(scene)
        try:
            action, rows = composed_take(obj)
            k = int(seq.index)
            if not 0 <= k < len(rows):
                raise InputProblem(f"Segment {k + 1} does not exist: the take '{action.name}' has "
                                   f"{len(rows)} segments.",
                                   f"Select one of its {len(rows)} segments in the Sequence list.")
            prompt = seq.segments[k].prompt if k < len(seq.segments) else rows[k]["prompt"]
            prompt = " ".join(prompt.split())
            if not prompt:
                raise InputProblem(f"Segment {k + 1} has no prompt.",
                                   f"Type what should happen in segment {k + 1}.")
            take_fps = float(action.get(takes.PREFIX + "fps", fps))
            if abs(take_fps - fps) > 1e-6 * fps:
                raise InputProblem(f"The take '{action.name}' was made at {take_fps:g} fps and the scene "
                                   f"runs at {fps:g} fps.", f"Set the scene back to {take_fps:g} fps.")
        except InputProblem as exc:
            return refuse(self, exc)
        transition = float(action.get(segments_mod.TRANSITION, seq.transition))
        loop = bool(action.get(segments_mod.LOOP, False))
        try:
            seed = next_seed(s)
            codes = segments_mod.stored_codes(action)
            previous = tuple(jobs.messages.Segment(prompt=str(r["prompt"]),
                                                   seconds=(int(r["end"]) - int(r["start"])) / fps,
                                                   seed=r.get("seed")) for r in rows)
            changed = tuple(dataclasses.replace(p, prompt=prompt, seed=seed) if i == k else p
                            for i, p in enumerate(previous))
            request = jobs.messages.ComposeRequest(
                segments=changed, transition=transition, loop=loop, seed=seed, fps=fps,
                sampling=sampling_options(s), retarget=retarget_spec(obj, s, fps),
                regenerate=jobs.messages.RegenerateSpec(codes=codes, segments=previous, index=k))
        except Exception as exc:  # noqa: BLE001
            return report_error(self, exc)
        frames = int(rows[-1]["end"])
        job_context = RegenerateContext(action.name, int(action.get(segments_mod.START, 0)), frames, k,
                                        prompt, seed, transition, loop, s.blend_frames)
        return submit_model_job(self, context, request, f"Regenerate segment {k + 1}", job_context,
                                f"MoMask: regenerating segment {k + 1} of '{action.name}' with '{prompt}'")


# --- Continue and Lead-in ---------------------------------------------------------------------------------


def extend_plan(action, frame: int, seconds: float, direction: str, fps: float) -> tuple[int, int, int, int]:
    """(span_start, span_end, range_start, range_end): the frames of ``action`` read as the source and
    the new frames, for Continue ("after") from ``frame`` or Lead-in ("before") up to it."""
    verb = "Continue" if direction == "after" else "Lead-in"
    check_seconds(seconds, f"The {verb}", f"Give the {verb} at least {TOKEN_SECONDS:g} s.")
    n = frames_for(seconds, fps)
    a0, a1 = action.frame_range
    first, last = int(math.floor(a0)), int(math.ceil(a1))
    context = frames_for(CONTEXT_SECONDS, fps)
    token = int(math.ceil(TOKEN_SECONDS * fps - 1e-9))
    if direction == "after":
        if frame < first:
            raise InputProblem(f"Frame {frame} is before the animation of '{action.name}' (frames "
                               f"{first}-{last}); Continue adds motion after the current frame.",
                               f"Set the current frame inside frames {first}-{last} (or use Lead-in).")
        end = min(frame, last) + 1
        span = (max(first, end - context), end)
        new = (end, end + n)
    else:
        if frame > last:
            raise InputProblem(f"Frame {frame} is after the animation of '{action.name}' (frames "
                               f"{first}-{last}); Lead-in adds motion before the current frame.",
                               f"Set the current frame inside frames {first}-{last} (or use Continue).")
        start = max(frame, first)
        span = (start, min(last + 1, start + context))
        new = (start - n, start)
    if span[1] - span[0] < token:
        side, lies = ("up to", "before") if direction == "after" else ("from", "after")
        raise InputProblem(f"'{action.name}' has {span[1] - span[0]} frames {side} frame {frame}, shorter "
                           f"than one MoMask token ({token} frames at {fps:g} fps) to {verb.lower()} from.",
                           f"Move the current frame so that at least {TOKEN_SECONDS:g} s of your animation "
                           f"lies {lies} it.")
    return span[0], span[1], new[0], new[1]


class MOMASK_OT_extend_motion(bpy.types.Operator):
    """Generate motion after the current frame (Continue) or before it (Lead-in), blended into the
    active action, as a new take; the action itself is never changed"""

    bl_idname = "momask.extend_motion"
    bl_label = "Continue"
    bl_options = {"REGISTER"}

    direction: EnumProperty(  # type: ignore[valid-type]
        items=[("after", "Continue", "Add motion after the current frame"),
               ("before", "Lead-in", "Add motion before the current frame, ending in its pose")])

    @classmethod
    def description(cls, context, properties):
        return ("Add motion before the current frame that ends in its pose, as a new take"
                if properties.direction == "before" else
                "Add motion after the current frame that starts from its pose, as a new take")

    @classmethod
    def poll(cls, context):
        if not busy_poll(cls, context):
            return False
        if playing_action(active_armature(context)) is None:
            cls.poll_message_set("The armature has no animation to continue; generate or keyframe one first")
            return False
        return True

    def execute(self, context):
        obj = active_armature(context)
        scene = context.scene
        s, seq = scene.momask, scene.momask_sequence
        fps = scene_fps(scene)
        direction = self.direction
        action = playing_action(obj)
        verb = "Continue" if direction == "after" else "Lead-in"
        try:
            prompt = " ".join(seq.continue_prompt.split())
            if not prompt:
                raise InputProblem(f"The {verb} has no prompt.",
                                   "Type what happens in the added motion, e.g. 'the person keeps walking'.")
            if obj.animation_data.use_tweak_mode:
                raise InputProblem("The armature's NLA is in tweak mode.",
                                   f"Leave tweak mode (Tab in the NLA editor), then press {verb}.")
            span_start, span_end, lo, hi = extend_plan(action, scene.frame_current, seq.continue_seconds,
                                                       direction, fps)
            with takes.compare_paused(obj):       # ended once the request is made (below)
                rig, pose, channels = read_source(obj, span_start, span_end)
            if not np.isfinite(pose).all():
                bad = np.flatnonzero(~np.isfinite(pose).reshape(len(pose), -1).all(axis=1)) + span_start
                raise InputProblem(f"The animation of '{action.name}' is not a number (NaN or infinite) on "
                                   f"frame {int(bad[0])}{' and others' if len(bad) > 1 else ''}.",
                                   "Fix or delete the broken keys there (Graph editor), then press "
                                   f"{verb} again.")
        except InputProblem as exc:
            return refuse(self, exc)
        try:
            seed = next_seed(s)
            request = jobs.messages.ComposeRequest(
                segments=request_segments([(prompt, hi - lo)], fps, [seed]), seed=seed, fps=fps,
                sampling=sampling_options(s),
                continue_from=jobs.messages.PoseSource(
                    rig=rig_spec(rig), pose_matrices=pose.astype(np.float32), fps=fps,
                    overrides=properties.mapping_overrides(obj)),
                direction=direction, retarget=retarget_spec(obj, s, fps, follow_source=True))
        except Exception as exc:  # noqa: BLE001
            return report_error(self, exc)
        takes.end_compare(obj)                    # every check passed: the comparison goes now
        job_context = ExtendContext(span_start, span_end, lo, hi - 1, action.name, (span_start, channels),
                                    prompt, seed, seq.continue_blend, direction)
        return submit_model_job(self, context, request, f"{verb} '{prompt}'", job_context,
                                f"MoMask: {verb} of '{action.name}', frames {lo}-{hi - 1}, '{prompt}'")


# --- Cycles on a take ---------------------------------------------------------------------------------


class MOMASK_OT_take_cycles(bpy.types.Operator):
    """Add or remove a Cycles modifier on the playing looped take's curves"""

    bl_idname = "momask.take_cycles"
    bl_label = "Cycles"
    bl_options = {"REGISTER", "UNDO"}

    @classmethod
    def poll(cls, context):
        action = playing_action(active_armature(context))
        if action is None or not action.get(segments_mod.LOOP):
            cls.poll_message_set("Play a looped take first (Generate Sequence with Loop on)")
            return False
        return True

    def execute(self, context):
        obj = active_armature(context)
        action = playing_action(obj)
        on = not bool(action.get(segments_mod.CYCLES, False))
        count = segments_mod.set_cycles(obj, action, on)
        self.report({"INFO"}, f"Cycles {'on' if on else 'off'} for '{action.name}' ({count} curves)")
        return {"FINISHED"}


# --- applying results (main thread, called by jobs.apply_now) ---------------------------------------


def trimmed(result: dict, frames: int) -> dict:
    """``result`` (a retarget dict) cut to its first ``frames`` frames; fewer frames than asked for is
    a malformed reply."""
    count = int(result["frame_count"])
    if count < frames:
        raise client_mod.BackendError(
            client_mod.BAD_REPLY, f"The backend returned {count} frames where {frames} were asked for.",
            "Update the add-on and the backend to the same version.")
    if count == frames:
        return result
    root = result.get("root")
    return {**result, "frame_count": frames,
            "bones": [{**b, "values": np.asarray(b["values"])[:frames]} for b in result.get("bones", [])],
            "root": {**root, "location": np.asarray(root["location"])[:frames]} if root else root}


def with_seam_row(result: dict, after: bool) -> dict:
    """``result`` with one more frame before (``after``) or after its frames: the seam frame, whose
    blend weight is 0 (the action's own pose), so its values are never used."""
    def pad(values):
        values = np.asarray(values)
        return np.concatenate([values[:1], values] if after else [values, values[-1:]])

    root = result.get("root")
    return {**result, "frame_count": int(result["frame_count"]) + 1,
            "bones": [{**b, "values": pad(b["values"])} for b in result.get("bones", [])],
            "root": {**root, "location": pad(root["location"])} if root else root}


def reply_segments(take: dict, fallback: list[dict]) -> list[dict]:
    rows = take.get("segments")
    return [dict(r) for r in rows] if rows else fallback


def _finish_take(obj, action, job: jobs.Job) -> None:
    segments_mod.write_segment_markers(action)
    segments_mod.sync_scene_markers(scene_of(obj), action, obj)
    obj.momask_take_index = bpy.data.actions.find(action.name)
    job.made_actions = [action.name]


def apply_sequence(job: jobs.Job, obj, ctx: SequenceContext) -> str:
    take = job.data["takes"][0]
    result = trimmed(take["retarget"], ctx.frames)
    starts = np.cumsum([0] + [f for _, f in ctx.plan])
    asked = [{"prompt": p, "seed": None, "start": int(starts[i]), "end": int(starts[i + 1])}
             for i, (p, _) in enumerate(ctx.plan)]
    name = f"{short_prompt(ctx.plan[0][0])} +{len(ctx.plan) - 1} s{ctx.seed}"
    action = write_generated_take(obj, result, ctx.start_frame, name,
                                  prompt=" | ".join(p for p, _ in ctx.plan), seed=ctx.seed, kind="compose")
    try:
        segments_mod.store_composition(action, reply_segments(take, asked), take.get("codes"),
                                       ctx.start_frame, kind="sequence", transition=ctx.transition,
                                       loop=ctx.loop)
        if ctx.loop:
            segments_mod.close_loop(obj, action, ctx.start_frame, ctx.frames)
            if ctx.cycles:
                segments_mod.set_cycles(obj, action, True)
        _finish_take(obj, action, job)
    except BaseException:
        takes.delete_take(obj, action)
        raise
    if take.get("mapping"):
        properties.store_mapping(obj, take["mapping"])
    return (f"MoMask: made sequence take '{action.name}' ({ctx.frames} frames, {len(ctx.plan)} segments"
            f"{', looped' if ctx.loop else ''})")


def _source(name: str, what: str):
    source = bpy.data.actions.get(name)
    if source is None:
        raise client_mod.BackendError(
            "dropped", f"The action '{name}' was deleted while the {what} was made; the result was dropped.",
            "Generate it again.")
    return source


def apply_regenerate(job: jobs.Job, obj, ctx: RegenerateContext) -> str:
    source = _source(ctx.source_action, "segment")
    take = job.data["takes"][0]
    result = trimmed(take["retarget"], ctx.frames)
    old = segments_mod.stored_segments(source) or []
    rows = reply_segments(take, [{**r, **({"prompt": ctx.prompt, "seed": ctx.seed} if i == ctx.index else {})}
                                 for i, r in enumerate(old)])
    lo, hi = changed_frames(take, rows, ctx)
    action = write_inbetween_take(
        obj, result, ctx.start_frame + lo, ctx.start_frame + hi, ctx.blend_frames, source_action=source,
        result_start=ctx.start_frame, name=f"{short_prompt(ctx.prompt)} seg{ctx.index + 1} s{ctx.seed}",
        prompt=ctx.prompt, seed=ctx.seed)
    try:
        segments_mod.store_composition(action, rows, take.get("codes"), ctx.start_frame, kind="regenerate",
                                       transition=ctx.transition, loop=ctx.loop)
        _finish_take(obj, action, job)
    except BaseException:
        takes.delete_take(obj, action)
        raise
    return (f"MoMask: regenerated segment {ctx.index + 1} (frames {ctx.start_frame + lo}-"
            f"{ctx.start_frame + hi - 1}) into '{action.name}'")


def changed_frames(take: dict, rows: list[dict], ctx: RegenerateContext) -> tuple[int, int]:
    """The take frames ``[lo, hi)`` Regenerate Segment replaces: the reply's ``range`` (the frames that
    changed) when it has one, else segment k widened by the transition on each side and by one token
    for the decoder's reach, within the take. On a loop the first and the last segment share the
    wrap-around transition, so regenerating either (or a range that wraps) replaces the whole take,
    whose first and last frames keep their values (the closing key stays equal to the first)."""
    changed = take.get("range")
    wraps = ctx.loop and ctx.index in (0, len(rows) - 1)
    fps = float(take["retarget"]["fps"])
    if changed and float(changed["start"]) < float(changed["end"]):
        scale = fps / float(changed.get("fps") or fps)      # a range at the model's rate, in take frames
        lo = int(math.floor(float(changed["start"]) * scale))
        hi = int(math.ceil(float(changed["end"]) * scale))
    elif changed or wraps:
        lo, hi = 0, ctx.frames
    else:
        pad = int(math.ceil((ctx.transition + TOKEN_SECONDS) * fps))
        lo, hi = int(rows[ctx.index]["start"]) - pad, int(rows[ctx.index]["end"]) + pad
    return max(0, lo), min(ctx.frames, hi)


def apply_extend(job: jobs.Job, obj, ctx: ExtendContext) -> str:
    verb = "Continue" if ctx.direction == "after" else "Lead-in"
    source = _source(ctx.source_action, verb)
    take = job.data["takes"][0]
    n = ctx.last + 1 - ctx.first
    # The take holds only the new frames, placed in the source's world (docs/protocol.md, compose).
    # The range written also holds the seam, the current frame, which keeps the action's pose.
    after = ctx.direction == "after"
    result = with_seam_row(trimmed(take["retarget"], n), after)
    lo, hi = (ctx.first - 1, ctx.last + 1) if after else (ctx.first, ctx.last + 2)
    action = write_inbetween_take(
        obj, result, lo, hi, ctx.blend_frames, source_action=source, result_start=lo,
        name=f"{short_prompt(ctx.prompt)} {'+' if ctx.direction == 'after' else '-'}{n}f s{ctx.seed}",
        prompt=ctx.prompt, seed=ctx.seed, source_channels=ctx.source_channels,
        extend=ctx.direction)
    try:
        segments_mod.store_composition(
            action, [{"prompt": ctx.prompt, "seed": ctx.seed, "start": 0, "end": n}], None, ctx.first,
            kind="continue" if ctx.direction == "after" else "leadin")
        _finish_take(obj, action, job)
    except BaseException:
        takes.delete_take(obj, action)
        raise
    return f"MoMask: {verb} made '{action.name}' (new frames {ctx.first}-{ctx.last})"


@jobs.applier("compose")
def apply_compose(job: jobs.Job, obj) -> str:
    assert job.data is not None, "appliers only see finished jobs, which carry the backend's reply"
    ctx = job.context
    if isinstance(ctx, SequenceContext):
        return apply_sequence(job, obj, ctx)
    if isinstance(ctx, RegenerateContext):
        return apply_regenerate(job, obj, ctx)
    return apply_extend(job, obj, ctx)


classes = (
    MOMASK_OT_segment_add,
    MOMASK_OT_segment_remove,
    MOMASK_OT_segment_move,
    MOMASK_OT_segments_from_take,
    MOMASK_OT_generate_sequence,
    MOMASK_OT_regenerate_segment,
    MOMASK_OT_extend_motion,
    MOMASK_OT_take_cycles,
)
