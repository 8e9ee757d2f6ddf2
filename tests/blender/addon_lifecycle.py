"""The add-on's job and process lifecycle in real Blender, against a real backend with tiny weights.

Run by tests/momask_blender/test_addon_lifecycle.py: ``<bpy python> addon_lifecycle.py WEIGHTS_DIR
OUT.json``. Every case (``tests/blender/cases.py``) is recorded in OUT.json with its message when it
fails.

What a user would notice: Ctrl+Z after a generation must not also take back their previous edit;
opening another file during a job must not leave the panel busy forever; changing preferences and
pressing Check Backend / Detect during a generation must not cancel it; quitting while the backend
starts must not freeze Blender; Free Memory and disabling the add-on must leave no backend process.
Background Blender has no undo stack until a script pushes a step (``ed.undo_push`` makes one), and
timers never fire there, so the script pushes a first step and pumps ``jobs.pump()`` itself.
"""

from __future__ import annotations

import os
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
os.environ.setdefault("MOMASK_USER_DIR", tempfile.mkdtemp(prefix="momask_user_"))
# Every decoding step of the backend sleeps this long, so a case can act while a generation runs.
os.environ["MOMASK_DEBUG_STEP_DELAY"] = "0.3"

import bpy  # noqa: E402  (bpy first: it puts addon_utils on the path)

# isort: split
import addon_utils  # noqa: E402
import rigs  # noqa: E402
from cases import ARGS, case, check, finish  # noqa: E402

WEIGHTS = ARGS[0]
TMP = Path(tempfile.mkdtemp(prefix="momask_lifecycle_"))


def pid_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


# --- setup -------------------------------------------------------------------------------------------------

rigs.reset_scene()
EMPTY_FILE = TMP / "other.blend"
bpy.ops.wm.save_as_mainfile(filepath=str(EMPTY_FILE))  # "another file" to open during a job
addon_utils.enable("momask_blender", default_set=True, handle_error=None)
from momask_blender.anim import takes
from momask_blender.remote import client, jobs  # noqa: E402


def prefs():
    return bpy.context.preferences.addons["momask_blender"].preferences


def settings():
    return bpy.context.scene.momask  # (re-read: opening a file replaces the scene)


prefs().weights_dir = WEIGHTS
prefs().device = "cpu"


def new_rig():
    obj = rigs.make_rigify_metarig()
    for other in bpy.context.view_layer.objects:
        other.select_set(False)
    obj.select_set(True)
    bpy.context.view_layer.objects.active = obj
    s = settings()
    s.prompt, s.randomize_seed, s.seconds, s.seed = "a person walks forward", False, 2.0, 3
    return obj


def start_generation() -> jobs.Job:
    check(bpy.ops.momask.generate() == {"FINISHED"}, "Generate did not start")
    job = jobs.STATE.active
    deadline = time.monotonic() + 180
    while job.stage != "base" or job.fraction <= 0.0:  # decoding: the models are loaded and working
        jobs.pump()
        check(job.state in ("queued", "running"), f"the job ended early: {job.state} {job.error}")
        check(time.monotonic() < deadline, f"the job never started decoding (stage {job.stage})")
        time.sleep(0.02)
    return job


def running_backend() -> int:
    """Start the backend (Check Backend) and wait for it; its pid."""
    check(bpy.ops.momask.check_backend() == {"FINISHED"}, "Check Backend did not start")
    jobs.wait(300)
    pid = jobs.get_client().pid
    check(pid is not None and pid_exists(pid), "no backend running after Check Backend")
    return pid


# --- cases -------------------------------------------------------------------------------------------------


@case
def case_stop_during_start_does_not_wait_for_hello():
    # A backend that never says hello (as when torch takes minutes to import). Quitting Blender or
    # disabling the add-on then calls stop() on the main thread: it must kill the starting process
    # at once, not wait HELLO_TIMEOUT_S for the start lock. A second request during the start waits
    # for that start instead of spawning another process. The log, over the rotation size, is
    # rotated before the process starts (on Windows nothing can rename it once the backend runs).
    root = TMP / "silent_backend"
    (root / "backend").mkdir(parents=True)
    (root / "backend" / "__init__.py").write_text("")
    (root / "backend" / "__main__.py").write_text("import time\ntime.sleep(600)\n")
    repo_backend = Path(client.backend_root()) / "backend"
    (root / "backend" / "portable").mkdir()
    (root / "backend" / "portable" / "protocol.py").write_text(
        (repo_backend / "portable" / "protocol.py").read_text())
    log = TMP / "silent" / "backend.log"
    log.parent.mkdir()
    rotate_bytes = client.load_backend_module("logfile").LOG_ROTATE_BYTES
    log.write_bytes(b"x" * (rotate_bytes + 10))
    python = client.default_backend_python(None)  # $MOMASK_BACKEND_PYTHON
    check(python, "no backend python ($MOMASK_BACKEND_PYTHON)")
    config = client.BackendConfig(python=python, weights=WEIGHTS, root=str(root), log_path=str(log))
    silent = client.BackendClient(config)
    errors: list[BaseException] = []

    def start():
        try:
            silent.ensure_started()
        except client.BackendError as exc:
            errors.append(exc)

    starters = [threading.Thread(target=start, daemon=True) for _ in range(2)]
    starters[0].start()
    check(client.wait_for(lambda: silent._process is not None, 30), "the silent backend did not spawn")
    starters[1].start()
    process = silent._process
    check((log.parent / "backend.log.1").stat().st_size == rotate_bytes + 10,
          "the big log was not rotated to backend.log.1 before the start")
    check(log.stat().st_size < rotate_bytes, "the log still holds the old megabytes")
    time.sleep(0.5)
    stopper = threading.Thread(target=silent.stop, daemon=True)
    stopper.start()
    stopper.join(30)  # before the fix: blocked ~180 s on the start lock held during the hello wait
    check(not stopper.is_alive(), "stop() waited for the starting backend's hello")
    check(process.poll() is not None, "the starting backend process is still alive after stop()")
    for thread in starters:
        thread.join(30)
    check(len(errors) == 2, f"both waiting requests should fail once the start is stopped: {errors}")
    check(silent.restarts == 1, f"{silent.restarts} processes spawned for one start")


@case
def case_one_undo_step_per_generation_keeps_previous_edit():
    obj = new_rig()
    name = obj.name
    bpy.ops.ed.undo_push(message="before the test")  # makes the undo stack (background has none)
    bpy.context.scene.frame_end = 123  # the user's own edit, its own undo step
    bpy.ops.ed.undo_push(message="user edit")
    count = len(takes.list_takes(obj))
    start_generation()
    job = jobs.wait(300)
    check(job.state == "applied", f"job {job.state}: {job.error} {jobs.STATE.error}")
    check(len(takes.list_takes(bpy.data.objects[name])) == count + 1, "no take was made")
    bpy.ops.ed.undo()  # one Ctrl+Z
    obj = bpy.data.objects[name]
    check(len(takes.list_takes(obj)) == count, "one undo did not remove the generation")
    check(bpy.context.scene.frame_end == 123, "one undo also took back the user's edit before the generation")
    bpy.ops.ed.undo()
    check(bpy.context.scene.frame_end != 123, "the user's edit was not its own undo step")


@case
def case_file_open_during_job_drops_it_and_frees_the_panel():
    new_rig()
    job = start_generation()
    check(bpy.app.timers.is_registered(jobs._timer), "no pump timer while a job runs")
    bpy.ops.wm.open_mainfile(filepath=str(EMPTY_FILE))  # File > Open while the job runs
    check(bpy.app.timers.is_registered(jobs._timer), "opening a file removed the pump timer")
    check(not jobs.STATE.busy, "the panel is still busy with the old file's job")
    check(jobs.STATE.error and "Another file was opened" in jobs.STATE.error[0], f"{jobs.STATE.error}")
    check(client.wait_for(lambda: job.state not in ("queued", "running"), 60), "the old job never ended")
    jobs.pump()
    check(job.state == "dropped", f"the old file's job ended as {job.state}")
    check(not [a for a in bpy.data.actions if takes.is_take(a)], "a take was written into the new file")
    # the panel is free: the next generation in the new file works, and the drop message goes away
    obj = new_rig()
    start_generation()
    job = jobs.wait(300)
    check(job.state == "applied", f"the next job: {job.state} {job.error}")
    check(len(takes.list_takes(obj)) == 1, "no take in the new file")
    check(jobs.STATE.error is None, f"an error is shown after success: {jobs.STATE.error}")


@case
def case_settings_change_during_generation_is_deferred():
    new_rig()
    job = start_generation()
    pid = jobs.get_client().pid
    prefs().device = "auto"  # a preferences change: a different backend config
    check(bpy.ops.momask.detect_mapping() == {"FINISHED"}, "Detect did not start")
    check(bpy.ops.momask.check_backend() == {"FINISHED"}, "Check Backend did not start")
    light = list(jobs.STATE.light)
    deadline = time.monotonic() + 60
    while jobs.STATE.light:
        jobs.pump()
        check(time.monotonic() < deadline, "Detect / Check Backend never finished")
        time.sleep(0.02)
    check(job.state == "running", f"the generation was interrupted: {job.state} {job.error}")
    check(jobs.get_client().pid == pid, "the backend restarted under the running generation")
    mapping = next(j for j in light if j.kind == "map_rig")
    check(mapping.state == "applied" and mapping.settings_deferred, f"Detect: {mapping.state}")
    fixes = " ".join(str(line.get("fix", "")) for line in jobs.STATE.diagnosis)
    check("Check Backend again" in fixes, f"Check Backend was not refused with a fix: {jobs.STATE.diagnosis}")
    job = jobs.wait(300)
    check(job.state == "applied", f"the generation ended as {job.state} {job.error}")
    # after the generation the new settings apply: the next request restarts the backend with them
    check(bpy.ops.momask.check_backend() == {"FINISHED"}, "Check Backend did not start")
    jobs.wait(300)
    check(jobs.get_client().config.device == "auto", "the new settings never took effect")
    check(jobs.get_client().pid not in (None, pid), "the backend did not restart with the new settings")
    prefs().device = "cpu"


@case
def case_free_memory_operator_stops_backend():
    pid = running_backend()
    check(bpy.ops.momask.free_memory() == {"FINISHED"}, "Free Memory failed")
    check(client.wait_for(lambda: not pid_exists(pid), 30), f"backend pid {pid} outlived Free Memory")
    check(not jobs.backend_running(), "the add-on still reports a running backend")


@case
def case_disable_during_start_stops_backend():
    global jobs
    check(bpy.ops.momask.check_backend() == {"FINISHED"}, "Check Backend did not start")
    check(client.wait_for(lambda: jobs._client is not None and jobs._client._process is not None, 30),
          "the backend did not start")
    process = jobs._client._process
    addon_utils.disable("momask_blender", default_set=True)  # as quitting Blender during a start
    check(client.wait_for(lambda: not pid_exists(process.pid), 10), "the starting backend outlived disabling")
    addon_utils.enable("momask_blender", default_set=True, handle_error=None)
    jobs = sys.modules["momask_blender.remote.jobs"]  # (the same module unless re-enabling reloaded it)
    prefs().weights_dir = WEIGHTS
    prefs().device = "cpu"


@case
def case_disable_stops_backend_and_removes_handlers():
    pid = running_backend()
    ours = [h for h in bpy.app.handlers.load_post if getattr(h, "__name__", "") == "_on_load_post"]
    check(len(ours) == 1, f"{len(ours)} load_post handlers of the add-on after enabling twice")
    addon_utils.disable("momask_blender", default_set=True)
    check(not pid_exists(pid), f"backend pid {pid} still exists after disabling the add-on")
    left = [h for h in bpy.app.handlers.load_post if getattr(h, "__name__", "") == "_on_load_post"]
    check(not left, "the load_post handler outlived unregister")
    check(not bpy.app.timers.is_registered(jobs._timer), "the pump timer outlived unregister")


finish()
