"""What the operators share: the active armature, error reporting, submitting a model job, take names,
and the panel's settings as the request's typed parts (backend/portable/messages.py)."""

from __future__ import annotations

import random

import bpy

from ...remote import client as client_mod
from ...remote import jobs
from .. import properties
from ..preferences import client_config

# Blender names hold 63 BYTES (UTF-8): the prompt gets 44, the rest is for " s<seed> v<n>" (≤ 15 bytes)
# or an in-between's " f<start>-<end>", so a non-ASCII prompt never pushes the suffix out.
NAME_PROMPT_BYTES = 44


def active_armature(context):
    obj = getattr(context, "active_object", None) or getattr(context, "object", None)
    return obj if obj is not None and obj.type == "ARMATURE" else None


def report_error(op, exc: BaseException) -> set[str]:
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


def next_seed(settings) -> int:
    """The seed for this generation; a new random one when Randomise is on (shown in the panel)."""
    if settings.randomize_seed:
        settings.seed = random.randint(0, properties.SEED_MAX)
    return int(settings.seed)


def short_prompt(prompt: str) -> str:
    """The prompt, whitespace collapsed, within NAME_PROMPT_BYTES UTF-8 bytes ("…" when cut)."""
    short = " ".join(prompt.split())
    if len(short.encode("utf-8")) > NAME_PROMPT_BYTES:
        ellipsis = "…"
        room = NAME_PROMPT_BYTES - len(ellipsis.encode("utf-8"))
        short = short.encode("utf-8")[:room].decode("utf-8", errors="ignore").rstrip() + ellipsis
    return short


def take_name(prompt: str, seed: int, index: int, variations: int) -> str:
    """A take's action name: the prompt (shortened), the seed and the variation, within 63 bytes."""
    name = f"{short_prompt(prompt)} s{seed}"
    return name + (f" v{index + 1}" if variations > 1 else "")


def submit_model_job(op, context, request, label: str, job_context, started: str) -> set[str]:
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
        return report_error(op, exc)
    op.report({"INFO"}, started)
    return {"FINISHED"}


def open_path(op, path, missing: str) -> set[str]:
    """Open a file or folder in the system's viewer, or warn with ``missing`` when it is not there."""
    if not path.exists():
        op.report({"WARNING"}, missing)
        return {"CANCELLED"}
    bpy.ops.wm.path_open(filepath=str(path))
    return {"FINISHED"}


def busy_poll(cls, context) -> bool:
    if jobs.STATE.busy:
        cls.poll_message_set("MoMask is still working; wait or press Cancel")
        return False
    if active_armature(context) is None:
        cls.poll_message_set("Select an armature (the character's rig)")
        return False
    return True
