"""A job's life on Blender's side: submitted by an operator, run by a worker thread, applied on the
main thread.

The worker thread only talks to the backend (``client.BackendClient``) and records progress; it never
touches bpy. Finished jobs wait in a queue until :func:`pump` runs on the main thread, from a
``bpy.app.timers`` callback in the UI, or in a loop in headless code and tests (timers do not fire in
the ``bpy`` module). Applying first checks that the target armature is still the one the job was made
for (same name, same ``session_uid``, same bones); if not, the result is dropped with a message, never
a crash. Keys are written through the ``momask.apply_result`` operator (REGISTER | UNDO), called so
that it pushes its undo step, so one Ctrl+Z removes a whole generation or in-between.

The pump timer is persistent (it survives File > Open/New), and a ``load_post`` handler drops the jobs
meant for the old file's armatures, so opening a file during a job never leaves the panel busy.
"""

from __future__ import annotations

import atexit
import dataclasses
import enum
import itertools
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

import bpy
from bpy.app.handlers import persistent

from ..anim.rig_io import armature_fingerprint
from . import client as client_mod

# The wire schema of docs/protocol.md, loaded by path: a job carries one typed request
# (backend/portable/messages.py) and its kind is that request's type (backend/portable/protocol.py).
protocol = client_mod.load_backend_module("protocol")
messages = client_mod.load_backend_module("messages")

STAGES = {
    "connect": "Starting the backend",
    "start": "Starting",
    "queued": "Waiting for the backend",
    "load": "Loading models",
    "base": "Decoding motion tokens",
    "residual": "Refining (residual layers)",
    "decode": "Decoding motion",
    "retarget": "Retargeting to the rig",
    "done": "Done",
}

#: The jobs that occupy the models lane: one at a time, shown in the panel with progress and Cancel.
#: (``load``, the warm-up, runs in the light lane here: it must never make Generate wait or refuse.)
MODEL_LANE_JOBS = (protocol.GENERATE, protocol.INPAINT, protocol.TARGETS, protocol.COMPOSE)


@dataclasses.dataclass
class Target:
    """The armature a job writes to, identified so that a swap or a rename is noticed."""

    name: str
    uid: int
    fingerprint: str

    @classmethod
    def of(cls, obj) -> Target:
        return cls(obj.name, int(obj.session_uid), armature_fingerprint(obj))

    def resolve(self) -> tuple[Any, str]:
        """(the object, "") if it is still the same armature, else (None, why not)."""
        obj = bpy.data.objects.get(self.name)
        if obj is None:
            renamed = next((o for o in bpy.data.objects if o.session_uid == self.uid), None)
            if renamed is not None:
                return (
                    None,
                    f"The armature '{self.name}' was renamed to '{renamed.name}' while the motion was made.",
                )
            return None, f"The armature '{self.name}' was deleted while the motion was made."
        try:
            if obj.session_uid != self.uid:
                return None, f"'{self.name}' is another object than the one the motion was made for."
            if obj.type != "ARMATURE" or armature_fingerprint(obj) != self.fingerprint:
                return None, f"The bones of '{self.name}' changed while the motion was made."
        except ReferenceError:
            return None, f"The armature '{self.name}' was deleted while the motion was made."
        return obj, ""


@dataclasses.dataclass
class Job:
    request: Any  # the typed request sent (a backend/portable/messages.py Request: GenerateRequest...)
    config: client_mod.BackendConfig
    label: str = ""
    target: Target | None = None
    #: What applying needs besides the reply, typed by the operator that made the job (e.g.
    #: ``operators.GenerateContext``); None for jobs whose appliers need nothing more.
    context: Any = None
    id: int = 0
    request_id: int | None = None
    state: str = "queued"  # queued running done failed cancelled applied dropped
    stage: str = "connect"
    fraction: float = 0.0
    data: dict[str, Any] | None = None
    error: tuple[str, str, str] | None = None  # (code, problem, fix)
    cancel_requested: bool = False
    result_message: str = ""
    stale: str = ""  # why the result is no longer wanted (another file was opened); set on the main thread
    quiet: bool = False  # a background job (the warm-up): its outcome changes nothing the panel shows
    # What applying did, for the panel and the tests: the operator that wrote the keys (one undo
    # step only when it is momask.apply_result), the actions made, and whether the backend settings
    # changed during a generation were left for the next request.
    applied_by: str = ""
    made_actions: list[str] = dataclasses.field(default_factory=list)
    settings_deferred: bool = False

    @property
    def kind(self) -> str:
        """The request's type (``generate``, ``inpaint``, ``map_rig``, ``diagnose``, ``load``)."""
        return str(self.request.TYPE)

    @property
    def finished(self) -> bool:
        return self.state not in ("queued", "running", "done")

    @property
    def stage_text(self) -> str:
        return STAGES.get(self.stage, self.stage.capitalize())


class State:
    """What the panel shows; only the main thread writes the fields it reads, except progress."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """Back to nothing shown (the panel keeps this object: reset it, never replace it)."""
        self.active: Job | None = None  # the model job in flight (one at a time)
        self.last: Job | None = None
        self.light: list[Job] = []  # map_rig / diagnose in flight
        self.message = ""
        self.error: tuple[str, str] | None = None  # (problem, fix) of the last failure
        self.diagnosis: list[dict[str, Any]] = []
        self.checking = False

    @property
    def busy(self) -> bool:
        return self.active is not None


STATE = State()
_finished: queue.Queue[Job] = queue.Queue()
_ids = itertools.count(1)
_jobs: dict[int, Job] = {}
_client: client_mod.BackendClient | None = None
_client_lock = threading.Lock()


class Outcome(enum.Enum):
    """What an applier handles: a job's result, or its failure (for a kind that shows failures its
    own way instead of in the panel's error box)."""

    RESULT = "result"
    FAILURE = "failure"


_APPLIERS: dict[tuple[str, Outcome], tuple[Callable[[Job, Any], str], bool]] = {}


def applier(kind: str, undo: bool = True, outcome: Outcome = Outcome.RESULT):
    """Register the main-thread function that applies a finished ``kind`` job (returns a message)."""

    def register(func: Callable[[Job, Any], str]):
        _APPLIERS[kind, outcome] = (func, undo)
        return func

    return register


# --- the backend process ------------------------------------------------------------------------------


def get_client(config: client_mod.BackendConfig | None = None) -> client_mod.BackendClient:
    """The backend client, made for (or switched to) ``config``, the settings a job carries; without
    one, the client as it is (a job has made it)."""
    global _client
    with _client_lock:
        if _client is None:
            if config is None:
                raise client_mod.BackendError(
                    client_mod.NOT_STARTED, "The backend has not been started in this session.",
                    "Press Check Backend or Generate in the MoMask panel.")
            _client = client_mod.BackendClient(config)
        elif config is not None:
            _client.configure(config)
        return _client


def current_client() -> client_mod.BackendClient | None:
    """The backend client if one was made (running or not), else None; never makes one."""
    return _client


def backend_running() -> bool:
    return _client is not None and _client.running


def backend_hello() -> dict[str, Any] | None:
    """The running backend's hello answer (versions, device, host), or None when none runs."""
    client = _client
    return client.hello if client is not None and client.running else None


def remote_host() -> str | None:
    """The computer a running remote backend answers from (its hello's ``host``); None when the
    backend runs locally or not at all."""
    client = _client
    if client is None or not client.remote or not client.running or client.hello is None:
        return None
    return str(client.hello.get("host") or "the remote computer")


def stop_backend(wait: bool = True) -> None:
    """Cancel what runs and stop the backend process (frees its memory). ``wait=False`` returns at
    once and stops it from a thread, so the UI does not stall."""
    client = _client
    if client is None:
        return
    if wait:
        client.stop()
    else:
        threading.Thread(target=client.stop, name="momask-stop", daemon=True).start()


@atexit.register
def _stop_at_exit() -> None:
    if _client is not None:
        _client.stop(timeout=2.0)


# --- submitting -------------------------------------------------------------------------------------


def submit(job: Job) -> Job:
    """Start ``job`` on a worker thread. Model jobs run one at a time."""
    if job.kind in MODEL_LANE_JOBS:
        if STATE.active is not None:
            raise client_mod.BackendError(
                "busy",
                "MoMask is still working on the previous motion.",
                "Wait for it to finish, or press Cancel.",
            )
        STATE.active = job
        STATE.error = None
        STATE.message = ""
    else:
        STATE.light.append(job)
    job.id = next(_ids)
    _jobs[job.id] = job
    thread = threading.Thread(target=_work, args=(job,), name=f"momask-job-{job.id}", daemon=True)
    thread.start()
    _ensure_timer()
    return job


def warm_up(prompts: list[str], config: client_mod.BackendConfig) -> Job | None:
    """Start the backend and load the models in the background, and have it encode ``prompts`` (the
    prompt just typed) and prime the models with a throwaway step (``load``'s ``prime``), so that the
    Generate that follows starts at once and runs at warm speed. Quiet: it shows nothing and
    reports no error (a failure here is the one the Generate will report). Nothing is sent while a
    model job runs, or while a warm-up is on its way."""
    if STATE.active is not None or warming_up():
        return None
    prompts = [p.strip() for p in prompts if p.strip()]
    request = messages.LoadRequest(prompts=tuple(prompts), prime=True)
    return submit(Job(request, config, label="warm-up", quiet=True))


def warming_up() -> bool:
    return any(job.kind == protocol.LOAD for job in STATE.light)


def _client_for(job: Job) -> client_mod.BackendClient:
    """The client for ``job``, switched to ``job.config`` (the preferences when it was submitted),
    unless switching would restart the backend under a running generation: preferences changed
    during a generation, then Check Backend or Detect pressed. Restarting would end that generation
    as "Cancelled". Detect then runs on the backend as it is (a bone mapping does not depend on those
    settings) and the new settings take effect with the first request after the generation (every
    job carries them); Check Backend is refused, since it would check the old settings."""
    with _client_lock:
        current = _client
    running = STATE.active
    if current is None or current.config == job.config or running is None or running is job:
        return get_client(job.config)
    if job.kind == protocol.DIAGNOSE:
        raise client_mod.BackendError(
            "busy",
            "The backend settings changed while MoMask is making a motion; checking them now would "
            "restart the backend and stop that motion.",
            "Press Check Backend again when the motion is done.",
        )
    job.settings_deferred = True
    return current


def _work(job: Job) -> None:
    """The worker thread: one request to the backend, with progress; never touches bpy."""

    def on_progress(reply: dict[str, Any]) -> None:
        job.stage = str(reply.get("stage", job.stage))
        if reply.get("stage") != "queued":
            job.fraction = float(reply.get("fraction", job.fraction))

    def on_submit(call: client_mod.Call) -> None:
        job.request_id = call.id
        job.stage = "start"
        if job.cancel_requested:
            get_client().cancel(call.id)

    job.state = "running"
    try:
        client = _client_for(job)
        if job.cancel_requested:
            raise client_mod.BackendError("cancelled", "Cancelled by the user.")
        job.data = client.call(job.kind, on_progress=on_progress, on_submit=on_submit,
                               **job.request.wire_fields())
        job.state = "done"
        job.fraction = 1.0
    except Exception as exc:  # noqa: BLE001 (every failure becomes a message in the panel)
        job.error = client_mod.describe_error(exc)
        job.state = "cancelled" if job.error[0] == "cancelled" or job.cancel_requested else "failed"
    _finished.put(job)


def cancel_active() -> bool:
    """Ask the running model job to stop at its next step."""
    job = STATE.active
    if job is None:
        return False
    job.cancel_requested = True
    job.stage = "cancelling"
    if job.request_id is not None and _client is not None:
        _client.cancel(job.request_id)
    return True


# --- the main thread ----------------------------------------------------------------------------------


def pump() -> bool:
    """Apply every finished job and poll the work being followed (main thread only). Returns True
    while jobs are still running or work is followed."""
    while True:
        try:
            job = _finished.get_nowait()
        except queue.Empty:
            break
        _finish(job)
    for follow in list(_followed):
        shown = follow()
        if shown is None:
            del _followed[follow]
        else:
            _followed[follow] = shown
    return STATE.active is not None or bool(STATE.light) or bool(_followed)


#: Work other than backend jobs that the timer follows (the installs in the preferences), each with
#: what the UI showed of it at the last poll.
_followed: dict[Callable[[], Any], Any] = {}


def follow(shown: Callable[[], Any]) -> None:
    """Have the timer poll ``shown()`` (on the main thread, where it may finish its work) and redraw the
    UI when its value changes, until it returns None. One timer for everything the UI waits on."""
    _followed.setdefault(shown, ())
    _ensure_timer()


def wait(timeout: float = 600.0, interval: float | None = None) -> Job | None:
    """Pump until nothing runs (headless code and tests); returns the last model job. By default it
    polls as often as the UI's timer does, so that headless timings include the same wait."""
    interval = POLL_SECONDS if interval is None else interval
    deadline = time.monotonic() + timeout
    while pump():
        if time.monotonic() > deadline:
            raise TimeoutError(f"MoMask jobs still running after {timeout:g} s.")
        time.sleep(interval)
    return STATE.last


def _finish(job: Job) -> None:
    if STATE.active is job:
        STATE.active = None
        STATE.last = job
    if job in STATE.light:
        STATE.light.remove(job)
    if job.quiet:  # the panel is not told; a failure goes to the console (the next Generate reports it)
        if job.state != "done":
            print(f"MoMask: {job.kind} in the background did not finish: {job.error}")
        job.state = "applied" if job.state == "done" else job.state
        _jobs.pop(job.id, None)
        return
    if job.stale:  # its file was closed; the drop was reported then, and the panel may show newer news
        job.state = "dropped"
        job.result_message = job.stale
        _jobs.pop(job.id, None)
        return
    try:
        if job.state == "done":
            _apply(job)
            if job.settings_deferred and job.state == "applied":
                STATE.message = (
                    f"{STATE.message} The new backend settings take effect after the motion in progress."
                ).strip()
        elif job.state == "cancelled":
            STATE.message = "Cancelled."
            job.result_message = STATE.message
        else:
            _fail(job, *job.error[1:] if job.error else ("Unknown error.", ""))
    finally:
        _jobs.pop(job.id, None)
        _redraw()


def _fail(job: Job, problem: str, fix: str) -> None:
    job.state = "failed" if job.state != "dropped" else "dropped"
    job.result_message = problem
    handler = _APPLIERS.get((job.kind, Outcome.FAILURE))
    if handler is not None:
        handler[0](job, None)
        return
    STATE.error = (problem, fix)
    STATE.message = ""


def _apply(job: Job) -> None:
    entry = _APPLIERS.get((job.kind, Outcome.RESULT))
    if entry is None:
        job.state = "applied"
        return
    _, undo = entry
    if undo:
        # Through an UNDO operator, so the whole result is one undo step. Called from Python, an
        # operator pushes its undo step only when asked by the positional `undo` argument (True):
        # without it the keys would join the next undo step, and one Ctrl+Z would also take back the
        # user's edit before. Blender names the step after the operator ("Apply MoMask Result").
        # Background Blender has no undo stack unless a script made one: then nothing is pushed.
        # (The stubs know neither this add-on's operators nor that `poll` is bound: they model each
        # operator as a class.)
        _applying[job.id] = job
        try:
            if bpy.ops.momask.apply_result.poll():  # type: ignore[attr-defined]
                bpy.ops.momask.apply_result("EXEC_DEFAULT", True, job_id=job.id)  # type: ignore[attr-defined]
            else:  # no context for operators: apply directly, then push the undo step by hand
                if apply_now(job) and bpy.ops.ed.undo_push.poll():  # type: ignore[call-arg]
                    bpy.ops.ed.undo_push(message=f"MoMask: {job.label or job.kind}")
        except Exception as exc:  # noqa: BLE001
            if job.state == "done":
                _fail(job, *client_mod.describe_error(exc)[1:])
        finally:
            _applying.pop(job.id, None)
    else:
        apply_now(job)


_applying: dict[int, Job] = {}


def applying(job_id: int) -> Job | None:
    return _applying.get(job_id)


def apply_now(job: Job) -> bool:
    """Check the target and apply ``job``'s result; False (and a message) when it was dropped or failed."""
    func, _ = _APPLIERS[job.kind, Outcome.RESULT]
    obj = None
    if job.target is not None:
        obj, why = job.target.resolve()
        if obj is None:
            job.state = "dropped"
            STATE.error = (f"{why} The result was dropped.", "Select the armature and generate again.")
            job.result_message = STATE.error[0]
            return False
    try:
        message = func(job, obj)
    except Exception as exc:  # noqa: BLE001 (a failed apply is a message, never a crash)
        job.state = "failed"
        _, problem, fix = client_mod.describe_error(exc)
        STATE.error = (problem, fix)
        job.result_message = problem
        return False
    job.state = "applied"
    job.result_message = message or ""
    STATE.message = job.result_message
    return True


# --- timers (UI only) -----------------------------------------------------------------------------------


#: How often the UI's timer collects finished jobs while any runs. A finished motion waits on
#: average half of this before its keys are written, so it is short; a tick that finds nothing new
#: costs a queue check and redraws nothing (see :func:`_progress_shown`).
POLL_SECONDS = 0.02

_shown: tuple = ()


def _progress_shown() -> tuple:
    """What the panel shows of the jobs in flight; the timer redraws only when this changes (a
    redraw of the 3D viewport, at 50 Hz, would cost more than the polling)."""
    job = STATE.active
    active = () if job is None else (job.id, job.stage, round(job.fraction, 2))
    return active, tuple(j.id for j in STATE.light), STATE.checking, tuple(_followed.values())


def _timer() -> float | None:
    global _shown
    running = pump()
    shown = _progress_shown()
    if shown != _shown:
        _shown = shown
        _redraw(panel_only=True)
    return POLL_SECONDS if running else None


def _ensure_timer() -> None:
    try:
        if not bpy.app.timers.is_registered(_timer):
            # persistent: Blender removes other timers when a file is opened, which would leave a job
            # that is in flight then never collected, and the panel busy for good.
            bpy.app.timers.register(_timer, first_interval=POLL_SECONDS, persistent=True)
    except (AttributeError, ValueError):
        pass


@persistent
def _on_load_post(*_args) -> None:
    """Another file was opened (or File > New): the armatures that jobs in flight were made for
    belong to the old file, so those jobs are dropped now, with a message, and the panel is free at
    once. The backend is told to stop the generation; its result is thrown away when it arrives."""
    dropped = [job for job in _jobs.values() if job.target is not None and not job.finished and not job.stale]
    for job in dropped:
        assert job.target is not None
        job.stale = f"Another file was opened while MoMask worked on '{job.target.name}'."
        if STATE.active is job:
            cancel_active()
            STATE.active = None
            STATE.last = job
        if job in STATE.light:
            STATE.light.remove(job)
    if dropped:
        STATE.message = ""
        STATE.error = (f"{dropped[0].stale} The result was dropped.", "Generate again in this file.")
    if _jobs:
        _ensure_timer()  # (persistent already; this covers a timer registered by an older version)


def _redraw(panel_only: bool = False) -> None:
    """Redraw where MoMask shows its state. ``panel_only`` (progress): the 3D viewports' sidebars, not
    their main regions, whose redraw (a heavy scene, software OpenGL) would compete with the
    backend for the CPU; a finished job redraws the whole viewport, which shows its keys."""
    wm = getattr(bpy.context, "window_manager", None)
    if wm is None:
        return
    for window in wm.windows:
        screen = window.screen
        if screen is None:
            continue
        for area in screen.areas:
            if area.type == "VIEW_3D" and panel_only:
                for region in area.regions:
                    if region.type == "UI":
                        region.tag_redraw()
            elif area.type in {"VIEW_3D", "PREFERENCES"}:
                area.tag_redraw()


def register() -> None:
    if _on_load_post not in bpy.app.handlers.load_post:
        bpy.app.handlers.load_post.append(_on_load_post)


def unregister() -> None:
    """Cancel and forget every job, stop the backend, and remove the timer and the file handler."""
    if bpy.app.timers.is_registered(_timer):
        bpy.app.timers.unregister(_timer)
    for handler in list(bpy.app.handlers.load_post):  # (also one left by an older copy of this module)
        if getattr(handler, "__name__", "") == _on_load_post.__name__ and handler.__module__ == __name__:
            bpy.app.handlers.load_post.remove(handler)
    if STATE.active is not None:
        cancel_active()
    global _client
    if _client is not None:
        _client.stop()
        _client = None
    while not _finished.empty():
        _finished.get_nowait()
    _jobs.clear()
    _followed.clear()
    STATE.reset()
