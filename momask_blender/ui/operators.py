"""Operators: Generate, Generate In-between, Cancel, the backend, takes and bone-mapping presets.

Generate and Generate In-between read the armature on the main thread (its description, and for an
in-between its current animation as posed matrices), submit a job (``jobs.submit``) and return at
once; the result is applied later by ``momask.apply_result`` (one undo step). Everything here works
the same from the panel, from a script and headless (``headless.py`` calls these operators).
"""

from __future__ import annotations

import dataclasses
import math
import random

import bpy
import numpy as np
from bpy.props import EnumProperty, IntProperty, StringProperty

from ..anim import presets, takes
from ..anim.bake import describe_target, read_source, write_generated_take, write_inbetween_take
from ..anim.keys import scene_fps
from ..remote import client as client_mod
from ..remote import jobs
from ..user_folder import user_dir
from . import properties
from .preferences import client_config

# Blender names hold 63 BYTES (UTF-8): the prompt gets 44, the rest is for " s<seed> v<n>" (≤ 15 bytes)
# or an in-between's " f<start>-<end>", so a non-ASCII prompt never pushes the suffix out.
NAME_PROMPT_BYTES = 44
#: Context read around an in-between's range, each side: the backend inpaints a window of at most
#: 196 model frames (9.8 s) centred on the range, so ±5 s covers it; the rest is never read.
INBETWEEN_CONTEXT_SECONDS = 5.0


def active_armature(context):
    obj = getattr(context, "active_object", None) or getattr(context, "object", None)
    return obj if obj is not None and obj.type == "ARMATURE" else None


def _report_error(op, exc: BaseException) -> set[str]:
    _, problem, fix = client_mod.describe_error(exc)
    jobs.STATE.error = (problem, fix)
    op.report({"ERROR"}, problem + (f" Fix: {fix}" if fix else ""))
    return {"CANCELLED"}


def sampling_options(settings):
    """The panel's sampler settings as the request's ``SamplingOptions`` (the rest: the backend's)."""
    return jobs.messages.SamplingOptions(steps=settings.steps, cond_scale=settings.cond_scale,
                                         temperature=settings.temperature)


def rig_spec(rig: dict):
    """A rig description (``rig_io.describe_armature`` / ``bake.describe_target``) as the request's
    ``RigSpec``."""
    return jobs.messages.RigSpec(**rig)


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


def next_seed(settings) -> int:
    """The seed for this generation; a new random one when Randomise is on (shown in the panel)."""
    if settings.randomize_seed:
        settings.seed = random.randint(0, properties.SEED_MAX)
    return int(settings.seed)


def _short(prompt: str) -> str:
    """The prompt, whitespace collapsed, within NAME_PROMPT_BYTES UTF-8 bytes ("…" when cut)."""
    short = " ".join(prompt.split())
    if len(short.encode("utf-8")) > NAME_PROMPT_BYTES:
        ellipsis = "…"
        room = NAME_PROMPT_BYTES - len(ellipsis.encode("utf-8"))
        short = short.encode("utf-8")[:room].decode("utf-8", errors="ignore").rstrip() + ellipsis
    return short


def take_name(prompt: str, seed: int, index: int, variations: int) -> str:
    """A take's action name: the prompt (shortened), the seed and the variation, within 63 bytes."""
    name = f"{_short(prompt)} s{seed}"
    return name + (f" v{index + 1}" if variations > 1 else "")


def _submit(op, context, request, label: str, job_context, started: str) -> set[str]:
    """Submit a model job for the active armature (Generate and Generate In-between share this)."""
    try:
        jobs.submit(
            jobs.Job(
                request,
                client_config(context),
                label=label,
                target=jobs.Target.of(active_armature(context)),
                context=job_context,
            )
        )
    except Exception as exc:  # noqa: BLE001
        return _report_error(op, exc)
    op.report({"INFO"}, started)
    return {"FINISHED"}


def _busy_poll(cls, context) -> bool:
    if jobs.STATE.busy:
        cls.poll_message_set("MoMask is still working; wait or press Cancel")
        return False
    if active_armature(context) is None:
        cls.poll_message_set("Select an armature (the character's rig)")
        return False
    return True


# --- generation -------------------------------------------------------------------------------------------


class MOMASK_OT_generate(bpy.types.Operator):
    """Generate a motion from the prompt onto the active armature, as a new take"""

    bl_idname = "momask.generate"
    bl_label = "Generate"
    bl_options = {"REGISTER"}

    @classmethod
    def poll(cls, context):
        return _busy_poll(cls, context)

    def execute(self, context):
        obj = active_armature(context)
        scene = context.scene
        s = scene.momask
        prompt = s.prompt.strip()
        if not prompt:
            self.report({"ERROR"}, "Type a prompt first, e.g. 'a person walks forward and waves'.")
            return {"CANCELLED"}
        try:
            seed = next_seed(s)
            request = jobs.messages.GenerateRequest(
                prompts=(prompt,),
                seconds=None if s.auto_length else (round(s.seconds, 3),),
                seed=seed,
                variations=s.variations,
                sampling=sampling_options(s),
                retarget=jobs.messages.RetargetSpec(
                    rig=rig_spec(describe_target(obj)),
                    overrides=properties.mapping_overrides(obj),
                    dst_fps=scene_fps(scene),
                    foot_lock=s.foot_lock,
                    in_place=s.in_place,
                ),
            )
        except Exception as exc:  # noqa: BLE001
            return _report_error(self, exc)
        job_context = GenerateContext(scene.frame_current, prompt, seed, s.variations)
        return _submit(self, context, request, f"Generate '{prompt}'", job_context,
                       f"MoMask: generating '{prompt}' (seed {seed})")


class MOMASK_OT_generate_inbetween(bpy.types.Operator):
    """Regenerate the chosen frame range of the armature's animation from the prompt, keeping the rest"""

    bl_idname = "momask.generate_inbetween"
    bl_label = "Generate In-between"
    bl_options = {"REGISTER"}

    @classmethod
    def poll(cls, context):
        if not _busy_poll(cls, context):
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
        if where == "action range" and (last - first) / fps > properties.MAX_SECONDS:
            self.report({"ERROR"}, f"With no preview range the in-between would regenerate the whole action "
                        f"(frames {first}-{last}, {(last - first + 1) / fps:.1f} s), longer than the "
                        f"{properties.MAX_SECONDS:g} s MoMask makes at once. Fix: set a preview range over "
                        "the frames to regenerate (Timeline: View > Set Preview Range) or tick Custom Range.")
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
                retarget=jobs.messages.RetargetSpec(dst_fps=fps, foot_lock=s.foot_lock),
            )
        except Exception as exc:  # noqa: BLE001
            return _report_error(self, exc)
        job_context = InbetweenContext(span_start, span_end, first, last, action.name, (span_start, channels),
                                       prompt, seed, s.blend_frames)
        return _submit(self, context, request, f"In-between '{prompt}'", job_context,
                       f"MoMask: regenerating frames {first}-{last} with '{prompt}'")


class MOMASK_OT_cancel(bpy.types.Operator):
    """Stop the running generation at its next step"""

    bl_idname = "momask.cancel"
    bl_label = "Cancel"
    bl_options = {"REGISTER"}

    @classmethod
    def poll(cls, context):
        return jobs.STATE.busy

    def execute(self, context):
        jobs.cancel_active()
        return {"FINISHED"}


class MOMASK_OT_apply_result(bpy.types.Operator):
    """Write a finished MoMask result onto its armature (one undo step)"""

    bl_idname = "momask.apply_result"
    bl_label = "Apply MoMask Result"
    # UNDO without REGISTER: one undo step, but no "Adjust Last Operation" redo, which would undo the
    # keys and run this again after the job is gone (writing nothing).
    bl_options = {"UNDO", "INTERNAL"}

    # A property declaration, not a type (see the mypy section of pyproject.toml), hence the ignore.
    job_id: IntProperty(options={"HIDDEN", "SKIP_SAVE"})  # type: ignore[valid-type]

    def execute(self, context):
        job = jobs.applying(self.job_id)
        if job is None:
            return {"CANCELLED"}
        job.applied_by = self.bl_idname
        ok = jobs.apply_now(job)
        if not ok:
            self.report({"WARNING"}, jobs.STATE.error[0] if jobs.STATE.error else "The result was dropped.")
            return {"CANCELLED"}
        self.report({"INFO"}, job.result_message or "MoMask: done")
        return {"FINISHED"}


class MOMASK_OT_dismiss_error(bpy.types.Operator):
    """Hide the last error"""

    bl_idname = "momask.dismiss_error"
    bl_label = "Dismiss"
    bl_options = {"INTERNAL"}

    def execute(self, context):
        jobs.STATE.error = None
        return {"FINISHED"}


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
    if len(made) == 1:
        length = made[0].frame_range[1] - made[0].frame_range[0] + 1
        return f"MoMask: made take '{made[0].name}' ({length:g} frames)"
    return f"MoMask: made {len(made)} takes; playing '{made[0].name}'"


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
        name=f"{_short(ctx.prompt)} f{start}-{end - 1}",
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


@jobs.applier("map_rig", undo=False)
def apply_map_rig(job: jobs.Job, obj) -> str:
    properties.store_mapping(obj, job.data.get("mapping") or {}, keep_edits=False)
    missing = job.data.get("missing") or (job.data.get("mapping") or {}).get("missing") or []
    if missing:
        return f"MoMask could not map: {', '.join(missing)}"
    return f"MoMask: mapped {len((job.data.get('mapping') or {}).get('bones') or {})} joints"


@jobs.applier("diagnose", undo=False)
def apply_diagnose(job: jobs.Job, obj) -> str:
    jobs.STATE.diagnosis = list(job.data.get("checks") or [])
    jobs.STATE.checking = False
    return "Backend OK" if job.data.get("ok") else "The backend has problems; see the checks"


@jobs.applier("diagnose", undo=False, outcome=jobs.Outcome.FAILURE)
def diagnose_failed(job: jobs.Job, obj) -> str:
    _, problem, fix = job.error or ("", "The backend did not answer.", "")
    jobs.STATE.diagnosis = [{"name": "Backend process", "ok": False, "detail": problem, "fix": fix}]
    jobs.STATE.checking = False
    return problem


# --- the backend ------------------------------------------------------------------------------------------


class MOMASK_OT_check_backend(bpy.types.Operator):
    """Start the backend and check its Python, torch and device, the weights and CLIP"""

    bl_idname = "momask.check_backend"
    bl_label = "Check Backend"

    def execute(self, context):
        jobs.STATE.diagnosis = []
        jobs.STATE.checking = True
        jobs.submit(jobs.Job(jobs.messages.DiagnoseRequest(), client_config(context), label="Check backend"))
        return {"FINISHED"}


class MOMASK_OT_free_memory(bpy.types.Operator):
    """Stop the backend process, freeing the memory its models use (it restarts on the next Generate)"""

    bl_idname = "momask.free_memory"
    bl_label = "Free Memory"

    def execute(self, context):
        jobs.cancel_active()
        jobs.stop_backend(wait=False)
        self.report({"INFO"}, "MoMask: backend stopped")
        return {"FINISHED"}


class MOMASK_OT_open_log(bpy.types.Operator):
    """Open the backend's log file"""

    bl_idname = "momask.open_log"
    bl_label = "Open Log"

    def execute(self, context):
        path = user_dir("logs") / "backend.log"
        if not path.exists():
            self.report({"WARNING"}, f"No backend log yet ({path}).")
            return {"CANCELLED"}
        bpy.ops.wm.path_open(filepath=str(path))
        return {"FINISHED"}


# --- takes ------------------------------------------------------------------------------------------------


def selected_take(context):
    obj = active_armature(context)
    return (None, None) if obj is None else (obj, takes.selected_take(obj))


class _TakeOperator(bpy.types.Operator):
    """What the take operators share (never registered itself: it has no ``bl_idname``)."""

    bl_options = {"REGISTER", "UNDO"}

    @classmethod
    def poll(cls, context):
        return selected_take(context)[1] is not None


class MOMASK_OT_take_apply(_TakeOperator):
    """Play the selected take on the armature"""

    bl_idname = "momask.take_apply"
    bl_label = "Apply Take"

    def execute(self, context):
        obj, action = selected_take(context)
        try:
            takes.end_compare(obj)
            takes.apply_take(obj, action)
        except Exception as exc:  # noqa: BLE001
            return _report_error(self, exc)
        return {"FINISHED"}


class MOMASK_OT_take_compare(_TakeOperator):
    """Compare the playing take (A) with the selected one (B) on the same rig"""

    bl_idname = "momask.take_compare"
    bl_label = "Compare"

    def execute(self, context):
        obj, b = selected_take(context)
        a = obj.animation_data.action if obj.animation_data else None
        if a is None or a == b:
            self.report({"WARNING"}, "Play another take first (Apply), then select the take to compare with.")
            return {"CANCELLED"}
        try:
            takes.compare_takes(obj, a, b)
            takes.show_compare(obj, "b")
        except Exception as exc:  # noqa: BLE001
            return _report_error(self, exc)
        return {"FINISHED"}


class MOMASK_OT_take_show(bpy.types.Operator):
    """Switch the comparison between take A and take B"""

    bl_idname = "momask.take_show"
    bl_label = "Show"
    bl_options = {"REGISTER", "UNDO"}

    which: EnumProperty(  # type: ignore[valid-type]
        items=[("a", "A", "The playing take"), ("b", "B", "The compared take")]
    )

    def execute(self, context):
        obj = active_armature(context)
        try:
            takes.show_compare(obj, self.which)
        except Exception as exc:  # noqa: BLE001
            return _report_error(self, exc)
        return {"FINISHED"}


class MOMASK_OT_take_compare_end(bpy.types.Operator):
    """Stop comparing; the playing take stays"""

    bl_idname = "momask.take_compare_end"
    bl_label = "End Compare"
    bl_options = {"REGISTER", "UNDO"}

    def execute(self, context):
        obj = active_armature(context)
        if obj is not None:
            takes.end_compare(obj)
        return {"FINISHED"}


class MOMASK_OT_take_delete(_TakeOperator):
    """Delete the selected take (its action)"""

    bl_idname = "momask.take_delete"
    bl_label = "Delete Take"

    def execute(self, context):
        obj, action = selected_take(context)
        name = action.name
        try:
            takes.delete_take(obj, action)
        except Exception as exc:  # noqa: BLE001
            return _report_error(self, exc)
        obj.momask_take_index = min(obj.momask_take_index, len(bpy.data.actions) - 1)
        self.report({"INFO"}, f"Deleted take '{name}'")
        return {"FINISHED"}


# --- bone mapping -----------------------------------------------------------------------------------------


class MOMASK_OT_detect_mapping(bpy.types.Operator):
    """Map MoMask's 22 joints to this armature's bones by their names (your edits are replaced)"""

    bl_idname = "momask.detect_mapping"
    bl_label = "Detect"

    @classmethod
    def poll(cls, context):
        return active_armature(context) is not None

    def execute(self, context):
        obj = active_armature(context)
        try:
            jobs.submit(
                jobs.Job(
                    jobs.messages.MapRigRequest(rig=rig_spec(describe_target(obj))),
                    client_config(context),
                    label="Detect mapping",
                    target=jobs.Target.of(obj),
                )
            )
        except Exception as exc:  # noqa: BLE001
            return _report_error(self, exc)
        return {"FINISHED"}


_preset_items_cache: list[tuple[str, str, str]] = []


def _preset_items(self, context):
    # Blender keeps only pointers to these strings: the list must outlive the call.
    _preset_items_cache[:] = [(name, name, "") for name in presets.list_presets()] or [
        ("", "(no presets)", "")
    ]
    return _preset_items_cache


class MOMASK_OT_mapping_preset_save(bpy.types.Operator):
    """Save this armature's bone mapping as a preset in your user folder"""

    bl_idname = "momask.mapping_preset_save"
    bl_label = "Save Mapping Preset"

    name: StringProperty(name="Name", default="My rig")  # type: ignore[valid-type]

    @classmethod
    def poll(cls, context):
        obj = active_armature(context)
        return obj is not None and len(obj.momask_mapping) > 0

    def invoke(self, context, event):
        self.name = active_armature(context).name
        return context.window_manager.invoke_props_dialog(self)

    def execute(self, context):
        obj = active_armature(context)
        bones = {item.name: item.bone for item in obj.momask_mapping if item.bone}
        path = presets.save_preset(self.name, bones)
        self.report({"INFO"}, f"Saved bone mapping '{self.name}' ({path})")
        return {"FINISHED"}


class MOMASK_OT_mapping_preset_load(bpy.types.Operator):
    """Use a saved bone-mapping preset on this armature"""

    bl_idname = "momask.mapping_preset_load"
    bl_label = "Load Mapping Preset"
    bl_property = "preset"
    bl_options = {"REGISTER", "UNDO"}

    preset: EnumProperty(name="Preset", items=_preset_items)  # type: ignore[valid-type]

    @classmethod
    def poll(cls, context):
        return active_armature(context) is not None

    def invoke(self, context, event):
        context.window_manager.invoke_search_popup(self)
        return {"RUNNING_MODAL"}

    def execute(self, context):
        obj = active_armature(context)
        try:
            bones = presets.load_preset(self.preset)
        except (KeyError, OSError, ValueError) as exc:
            self.report({"ERROR"}, str(exc).strip("'\""))
            return {"CANCELLED"}
        known = {item.name: item for item in obj.momask_mapping}
        absent = [bone for bone in bones.values() if bone not in obj.data.bones]
        for role, bone in bones.items():
            item = known.get(role)
            if item is None:
                item = obj.momask_mapping.add()
                item.name = role
            item.bone = bone if bone in obj.data.bones else ""
        obj["momask_missing_roles"] = [i.name for i in obj.momask_mapping if not i.bone]
        if absent:
            self.report(
                {"WARNING"}, f"This armature has no bone(s) {', '.join(absent)}; those roles are empty."
            )
        return {"FINISHED"}


class MOMASK_OT_mapping_preset_delete(bpy.types.Operator):
    """Delete a saved bone-mapping preset"""

    bl_idname = "momask.mapping_preset_delete"
    bl_label = "Delete Mapping Preset"
    bl_property = "preset"

    preset: EnumProperty(name="Preset", items=_preset_items)  # type: ignore[valid-type]

    def invoke(self, context, event):
        context.window_manager.invoke_search_popup(self)
        return {"RUNNING_MODAL"}

    def execute(self, context):
        name = self.preset
        if presets.delete_preset(name):
            self.report({"INFO"}, f"Deleted preset '{name}'")
        return {"FINISHED"}


classes = (
    MOMASK_OT_generate,
    MOMASK_OT_generate_inbetween,
    MOMASK_OT_cancel,
    MOMASK_OT_apply_result,
    MOMASK_OT_dismiss_error,
    MOMASK_OT_check_backend,
    MOMASK_OT_free_memory,
    MOMASK_OT_open_log,
    MOMASK_OT_take_apply,
    MOMASK_OT_take_compare,
    MOMASK_OT_take_show,
    MOMASK_OT_take_compare_end,
    MOMASK_OT_take_delete,
    MOMASK_OT_detect_mapping,
    MOMASK_OT_mapping_preset_save,
    MOMASK_OT_mapping_preset_load,
    MOMASK_OT_mapping_preset_delete,
)
