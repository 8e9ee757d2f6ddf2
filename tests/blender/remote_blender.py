"""The add-on with a remote backend (its 'Backend Command' an ssh command to a throwaway sshd on
127.0.0.1 that the wrapper started), in real Blender, through the real Generate button.

Run by tests/momask_blender/remote/test_remote_blender.py:
``<bpy python> remote_blender.py WEIGHTS_DIR COMMANDS_JSON OUT.json``. COMMANDS_JSON maps a name to
a Backend Command: ``backend`` (this repository's backend over ssh), ``slow`` (the same with
MOMASK_DEBUG_STEP_DELAY), ``not_found``, ``unreachable`` (a closed port), ``chatter`` (prints text
that is not the protocol on stdout). The rig description and the keys stay in Blender: the keys of a
remote generation must equal those of a local backend with the same seed.
"""

from __future__ import annotations

import json
import os
import platform
import signal
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
os.environ.setdefault("MOMASK_USER_DIR", tempfile.mkdtemp(prefix="momask_user_"))

import bpy  # noqa: E402  (bpy first: it puts addon_utils on the path)

# isort: split
import rigs  # noqa: E402
from cases import ARGS, case, check, finish  # noqa: E402

WEIGHTS = ARGS[0]
COMMANDS = json.loads(ARGS[1])

PREFS = rigs.start_momask(WEIGHTS)
from momask_blender.anim import actions, takes  # noqa: E402
from momask_blender.remote import client, jobs  # noqa: E402

PREFS.warm_up = False  # each case starts its own connection
bpy.context.preferences.system.use_online_access = True  # (off by default in the bpy module)
S = bpy.context.scene.momask
S.randomize_seed = False
S.seconds = 2.0
S.prompt = "a person walks forward"
S.seed = 7
RIG = rigs.make_rigify_metarig()


def keys_of(action) -> list:
    return [(fc.data_path, fc.array_index, [tuple(p.co) for p in fc.keyframe_points])
            for fc in actions.Channels(action, actions.object_slot(action, RIG)).fcurves]


def scene_state() -> tuple:
    """Every action, the one playing, and every key of the rig's action: what a failed job must not touch."""
    playing = RIG.animation_data.action if RIG.animation_data else None
    return (sorted(a.name for a in bpy.data.actions), playing.name if playing else None,
            keys_of(playing) if playing else None)


def press_generate(command: str) -> jobs.Job:
    PREFS.backend_command = command
    jobs.STATE.error = None
    check(bpy.ops.momask.generate() == {"FINISHED"}, f"Generate did not start: {jobs.STATE.error}")
    return jobs.STATE.active


def generate(command: str, timeout: float = 300) -> tuple[jobs.Job, float]:
    started = time.monotonic()
    job = press_generate(command)
    jobs.wait(timeout)
    return job, time.monotonic() - started


def wait_for_stage(job: jobs.Job, stage: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while job.stage != stage:
        jobs.pump()
        check(time.monotonic() < deadline, f"the job never reached {stage} (stage {job.stage}, {job.state})")
        check(job.state in ("queued", "running"), f"the job ended early: {job.state} {job.error}")
        time.sleep(0.02)


def fails(command: str) -> tuple[str, str, float, tuple]:
    """Generate with ``command``, which must fail: (problem, fix, seconds, whether the scene changed)."""
    before = scene_state()
    job, seconds = generate(command, timeout=60)
    check(job.state == "failed", f"{job.state} {job.error}")
    check(jobs.STATE.error is not None, "the panel shows no error")
    check(scene_state() == before, "a failed remote job changed the scene")
    check(not jobs.backend_running(), "a broken remote command is still running")
    problem, fix = jobs.STATE.error
    return problem, fix, seconds, job.error[0]


@case
def case_generate_over_ssh_writes_the_keys_a_local_backend_writes():
    job, seconds = generate(COMMANDS["backend"])
    check(job.state == "applied", f"{job.state} {job.error} {jobs.STATE.error}")
    check(jobs.remote_host() == platform.node(), f"the panel's host: {jobs.remote_host()}")
    remote_take = RIG.animation_data.action
    check(takes.is_take(remote_take) and keys_of(remote_take), "no take with keys")
    jobs.stop_backend()
    local_job, _ = generate("")  # cleared: the local backend with the same weights and seed
    check(local_job.state == "applied", f"local: {local_job.state} {local_job.error}")
    check(jobs.remote_host() is None, "a local backend is shown as remote")
    local_take = RIG.animation_data.action
    check(local_take != remote_take, "no second take")
    check(keys_of(remote_take) == keys_of(local_take), "the remote backend's keys differ from a local one's")
    jobs.stop_backend()
    return {"first_generation_s": seconds, "channels": len(keys_of(remote_take))}


@case
def case_connection_killed_mid_job_writes_nothing_and_next_generate_reconnects():
    before = scene_state()
    job = press_generate(COMMANDS["slow"])
    wait_for_stage(job, "base")
    pid = jobs.get_client().pid
    check(pid is not None, "no ssh process")
    os.kill(pid, signal.SIGKILL)
    killed = time.monotonic()
    jobs.wait(60)
    noticed_s = time.monotonic() - killed
    check(job.state == "failed" and job.error[0] == client.CRASHED, f"{job.state} {job.error}")
    problem, fix = jobs.STATE.error
    check("connection to the backend was lost" in problem and "Nothing was written" in problem, problem)
    check("reconnects" in fix, fix)
    check(scene_state() == before, "the lost job changed the scene")
    job, seconds = generate(COMMANDS["slow"])
    check(job.state == "applied", f"the next Generate did not reconnect: {job.state} {job.error}")
    check(jobs.get_client().pid not in (None, pid), "no new connection")
    return {"noticed_s": noticed_s, "reconnected_generation_s": seconds}


@case
def case_cancel_works_remotely():
    before = scene_state()
    job = press_generate(COMMANDS["slow"])
    wait_for_stage(job, "base")
    check(bpy.ops.momask.cancel() == {"FINISHED"}, "Cancel did not run")
    jobs.wait(60)
    check(job.state == "cancelled" and jobs.STATE.error is None,
          f"{job.state} {job.error} {jobs.STATE.error}")
    check(scene_state() == before, "a cancelled job changed the scene")
    check(jobs.backend_running(), "Cancel stopped the remote backend")
    check(bpy.ops.momask.free_memory() == {"FINISHED"}, "Free Memory did not run")
    check(client.wait_for(lambda: not jobs.backend_running(), 10.0),
          "Free Memory left the remote backend running")


@case
def case_online_access_off_refuses_and_starts_nothing():
    bpy.context.preferences.system.use_online_access = False
    try:
        restarts = jobs.get_client().restarts
        problem, fix, _, _ = fails(COMMANDS["backend"])
        check("Online access is off" in problem and "Allow Online Access" in fix, f"{problem} / {fix}")
        check(jobs.get_client().restarts == restarts, "a process was started")
    finally:
        bpy.context.preferences.system.use_online_access = True


@case
def case_a_program_that_is_not_found():
    problem, fix, seconds, code = fails(COMMANDS["not_found"])
    check(code == client.NOT_STARTED and "was not found" in problem and "full path" in fix,
          f"{problem} / {fix}")
    return {"seconds": seconds}


@case
def case_a_command_that_exits_at_once_shows_ssh_stderr():
    problem, fix, seconds, _ = fails(COMMANDS["unreachable"])
    check("exited before the backend answered" in problem and "Connection refused" in problem, problem)
    check("without a password prompt" in fix, fix)
    return {"seconds": seconds}


@case
def case_non_protocol_text_on_stdout_is_a_clear_error():
    problem, fix, seconds, code = fails(COMMANDS["chatter"])
    check(code == client.BAD_REPLY and "not the MoMask protocol" in problem and "~/.bashrc" in fix,
          f"{problem} / {fix}")
    return {"seconds": seconds}


PREFS.backend_command = ""
jobs.stop_backend()
finish()
