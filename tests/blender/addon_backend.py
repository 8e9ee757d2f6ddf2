"""The add-on end to end in real Blender against a real backend process with tiny random weights.

Run by tests/test_addon_blender.py: ``<bpy python> addon_backend.py WEIGHTS_DIR``. Each case prints
``CASE <name> ok`` or ``CASE <name> FAIL <why>``; the script exits 1 if any case failed. The cases
share one Blender and (mostly) one backend process, because each start costs seconds.
"""

from __future__ import annotations

import os
import signal
import sys
import tempfile
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
os.environ.setdefault("MOMASK_USER_DIR", tempfile.mkdtemp(prefix="momask_user_"))

import bpy  # noqa: E402  (bpy first: it puts addon_utils on the path)

# isort: split
import addon_utils  # noqa: E402
import rigs  # noqa: E402

WEIGHTS = sys.argv[sys.argv.index("--") + 1] if "--" in sys.argv else sys.argv[1]
RESULTS: list[tuple[str, bool, str]] = []


def case(func):
    name = func.__name__.removeprefix("case_")
    started = time.monotonic()
    try:
        func()
    except Exception as exc:  # noqa: BLE001
        RESULTS.append((name, False, f"{type(exc).__name__}: {exc}"))
        print(f"CASE {name} FAIL {type(exc).__name__}: {exc}\n{traceback.format_exc()}", flush=True)
    else:
        RESULTS.append((name, True, ""))
        print(f"CASE {name} ok ({time.monotonic() - started:.1f} s)", flush=True)
    return func


def check(condition, message: str) -> None:
    if not condition:
        raise AssertionError(message)


# --- setup -------------------------------------------------------------------------------------------------

rigs.reset_scene()
addon_utils.enable("momask_blender", default_set=True, handle_error=None)
from momask_blender import client, jobs, keys, takes  # noqa: E402

PREFS = bpy.context.preferences.addons["momask_blender"].preferences
PREFS.weights_dir = WEIGHTS
PREFS.device = "cpu"
S = bpy.context.scene.momask
S.randomize_seed = False
S.seconds = 2.0


def activate(obj) -> None:
    for other in bpy.context.view_layer.objects:
        other.select_set(False)
    obj.select_set(True)
    bpy.context.view_layer.objects.active = obj


def set_fps(fps: int) -> None:
    bpy.context.scene.render.fps = fps
    bpy.context.scene.render.fps_base = 1.0


def generate(obj, **settings) -> jobs.Job:
    activate(obj)
    for key, value in settings.items():
        setattr(S, key, value)
    check(bpy.ops.momask.generate() == {"FINISHED"}, "Generate did not start")
    return jobs.wait(300)


def fcurves(obj, action):
    return list(keys.Channels(action, keys.object_slot(action, obj)).fcurves)


def key_frames(obj, action) -> tuple[float, float]:
    frames = [p.co[0] for fc in fcurves(obj, action) for p in fc.keyframe_points]
    return min(frames), max(frames)


def wait_for_stage(job: jobs.Job, stages: set[str], timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while job.stage not in stages or job.fraction <= 0.0:
        jobs.pump()
        check(time.monotonic() < deadline, f"the job never reached {stages} (stage {job.stage}, {job.state})")
        check(job.state in ("queued", "running"), f"the job ended early: {job.state} {job.error}")
        time.sleep(0.02)


def take_count(obj) -> int:
    return len(takes.list_takes(obj))


# --- cases -------------------------------------------------------------------------------------------------

METARIG = None


@case
def case_generate_metarig_variations_24fps():
    global METARIG
    set_fps(24)
    bpy.context.scene.frame_current = 5
    METARIG = rigs.make_rigify_metarig()
    job = generate(METARIG, prompt="a person walks forward and waves", variations=2, seed=11)
    check(job.state == "applied", f"job {job.state}: {job.error} {jobs.STATE.error}")
    made = takes.list_takes(METARIG)
    check(len(made) == 2, f"expected 2 takes (variations), got {[a.name for a in made]}")
    check(all(len(a.name.encode()) <= 63 for a in made), "take names exceed Blender's 63 bytes")
    check(METARIG.animation_data.action == made[0], "the first variation is not the playing take")
    first, last = key_frames(METARIG, made[0])
    expected = 2.0 * 24
    check(first == 5, f"keys start at {first}, not at the current frame 5")
    check(
        abs((last - first + 1) - expected) <= 3, f"{last - first + 1} frames at 24 fps, expected ~{expected}"
    )
    types = {p.type for fc in fcurves(METARIG, made[0]) for p in fc.keyframe_points}
    check(types == {"GENERATED"}, f"key types {types}")
    # the two variations are different rows of one batch: different motions
    a0 = [p.co[1] for fc in fcurves(METARIG, made[0]) for p in fc.keyframe_points]
    a1 = [p.co[1] for fc in fcurves(METARIG, made[1]) for p in fc.keyframe_points]
    check(a0 != a1, "the two variations are identical")
    # the mapping the backend used is shown on the armature
    roles = {item.name: item.bone for item in METARIG.momask_mapping}
    check(roles.get("pelvis") and roles.get("head"), f"mapping not shown: {roles}")
    check("Generate" not in (jobs.STATE.error or ("",))[0], "an error is shown after success")


@case
def case_one_undo_step_per_generation():
    # Background Blender has no undo stack (ed.undo cannot run there), so check what makes a result
    # one step: it was written by a single call of the REGISTER|UNDO operator momask.apply_result.
    job = jobs.STATE.last
    check(
        job.context.get("applied_by") == "momask.apply_result", f"applied by {job.context.get('applied_by')}"
    )
    op_type = bpy.types.MOMASK_OT_apply_result
    check({"UNDO", "REGISTER"} <= set(op_type.bl_options), f"{op_type.bl_options}")


@case
def case_same_seed_same_motion():
    def one(seed):
        before = set(takes.list_takes(METARIG))
        job = generate(METARIG, variations=1, seed=seed)
        check(job.state == "applied", f"{job.state} {job.error}")
        new = [a for a in takes.list_takes(METARIG) if a not in before]
        check(len(new) == 1, f"expected one new take, got {len(new)}")
        return new[0], {
            (fc.data_path, fc.array_index): [tuple(p.co) for p in fc.keyframe_points]
            for fc in fcurves(METARIG, new[0])
        }

    take_a, first = one(21)
    take_b, second = one(21)
    check(first == second, "seed 21 made another motion the second time")
    for action in (take_a, take_b):
        takes.delete_take(METARIG, action)
    S.seed = 12


@case
def case_takes_apply_compare_delete():
    made = takes.list_takes(METARIG)
    activate(METARIG)
    METARIG.momask_take_index = bpy.data.actions.find(made[1].name)
    check(bpy.ops.momask.take_apply() == {"FINISHED"}, "apply failed")
    check(METARIG.animation_data.action == made[1], "apply did not play the take")
    METARIG.momask_take_index = bpy.data.actions.find(made[0].name)
    check(bpy.ops.momask.take_compare() == {"FINISHED"}, "compare failed")
    check(METARIG.animation_data.nla_tracks.get(takes.COMPARE_TRACK) is not None, "no compare track")
    bpy.ops.momask.take_show(which="a")
    bpy.ops.momask.take_compare_end()
    check(METARIG.animation_data.nla_tracks.get(takes.COMPARE_TRACK) is None, "compare track left")
    victim = made[-1]
    METARIG.momask_take_index = bpy.data.actions.find(victim.name)
    name = victim.name
    check(bpy.ops.momask.take_delete() == {"FINISHED"}, "delete failed")
    check(bpy.data.actions.get(name) is None, "the deleted take still exists")
    check(take_count(METARIG) == len(made) - 1, "take list did not shrink")


@case
def case_inbetween_keeps_keys_outside_range():
    activate(METARIG)
    source = takes.list_takes(METARIG)[0]
    keys.assign_action(METARIG, source)
    S.inbetween_custom_range = True
    S.inbetween_start, S.inbetween_end = 17, 34
    S.inbetween_prompt = "the person jumps"
    before = {
        (fc.data_path, fc.array_index): [
            (tuple(p.co), tuple(p.handle_left), tuple(p.handle_right)) for p in fc.keyframe_points
        ]
        for fc in fcurves(METARIG, source)
    }
    check(bpy.ops.momask.generate_inbetween() == {"FINISHED"}, "in-between did not start")
    job = jobs.wait(300)
    check(job.state == "applied", f"{job.state} {job.error} {jobs.STATE.error}")
    a, b = jobs.STATE.regenerated
    check(a <= 17 and b >= 34 and a >= 17 - 4 and b <= 34 + 4, f"regenerated {a}-{b} for 17-34")
    new = METARIG.animation_data.action
    check(new != source and takes.is_take(new), "the in-between is not a new take")
    after = {
        (fc.data_path, fc.array_index): [
            (tuple(p.co), tuple(p.handle_left), tuple(p.handle_right)) for p in fc.keyframe_points
        ]
        for fc in fcurves(METARIG, new)
    }
    changed_inside = False
    for path, points in before.items():
        out_before = [p for p in points if not a <= p[0][0] <= b]
        out_after = [p for p in after[path] if not a <= p[0][0] <= b]
        check(out_before == out_after, f"keys outside {a}-{b} changed on {path}")
        changed_inside |= [p for p in points if a < p[0][0] < b] != [
            p for p in after[path] if a < p[0][0] < b
        ]
    check(changed_inside, "nothing changed inside the range")
    check(
        before
        == {
            (fc.data_path, fc.array_index): [
                (tuple(p.co), tuple(p.handle_left), tuple(p.handle_right)) for p in fc.keyframe_points
            ]
            for fc in fcurves(METARIG, source)
        },
        "the source take was modified",
    )


@case
def case_generate_bvh_rig_30fps():
    set_fps(30)
    bpy.context.scene.frame_current = 1
    obj = rigs.import_template_bvh()
    job = generate(obj, variations=1, seconds=2.0)
    check(job.state == "applied", f"{job.state} {job.error} {jobs.STATE.error}")
    made = takes.list_takes(obj)
    check(len(made) == 1, f"{len(made)} takes")
    first, last = key_frames(obj, made[0])
    check(first == 1 and abs((last - first + 1) - 60) <= 3, f"keys {first}-{last} at 30 fps, expected ~60")
    set_fps(24)


@case
def case_generate_mixamo_rig():
    obj = rigs.make_mixamo_rig()
    job = generate(obj, variations=1)
    check(job.state == "applied", f"{job.state} {job.error} {jobs.STATE.error}")
    check(take_count(obj) == 1, "no take on the Mixamo rig")
    roles = {item.name: item.bone for item in obj.momask_mapping}
    check(roles.get("pelvis", "").endswith("Hips"), f"Mixamo pelvis mapped to {roles.get('pelvis')}")


@case
def case_unmappable_rig_names_missing_roles():
    arm = bpy.data.armatures.new("Stick")
    obj = bpy.data.objects.new("Stick", arm)
    bpy.context.scene.collection.objects.link(obj)
    activate(obj)
    bpy.ops.object.mode_set(mode="EDIT")
    for name, head, tail in (("root", (0, 0, 0), (0, 0, 1)), ("tip", (0, 0, 1), (0, 0, 2))):
        bone = arm.edit_bones.new(name)
        bone.head, bone.tail = head, tail
    bpy.ops.object.mode_set(mode="OBJECT")
    job = generate(obj)
    check(job.state == "failed", f"state {job.state}")
    check(job.error[0] == "bad_rig", f"code {job.error}")
    problem, fix = jobs.STATE.error
    check("wrist" in problem or "knee" in problem or "head" in problem, f"missing roles not named: {problem}")
    check(fix, "no fix shown")
    check(bpy.ops.momask.detect_mapping() == {"FINISHED"}, "detect failed")
    jobs.wait(60)
    check(len(obj.get("momask_missing_roles", [])) > 0, "the mapping box does not list missing roles")
    bpy.data.objects.remove(obj)


@case
def case_armature_deleted_mid_job_drops_result():
    obj = rigs.make_mixamo_rig()
    obj.name = "Doomed"
    activate(obj)
    actions_before = len(bpy.data.actions)
    check(bpy.ops.momask.generate() == {"FINISHED"}, "did not start")
    bpy.data.objects.remove(obj)
    job = jobs.wait(300)
    check(job.state == "dropped", f"state {job.state}")
    check("deleted" in jobs.STATE.error[0], f"message {jobs.STATE.error}")
    check(len(bpy.data.actions) == actions_before, "a take was made for a deleted armature")


@case
def case_cancel_mid_generation():
    jobs.stop_backend()
    os.environ["MOMASK_DEBUG_STEP_DELAY"] = "0.4"
    count = take_count(METARIG)
    activate(METARIG)
    check(bpy.ops.momask.generate() == {"FINISHED"}, "did not start")
    job = jobs.STATE.active
    wait_for_stage(job, {"base"})
    pid = jobs.get_client().pid
    check(bpy.ops.momask.cancel() == {"FINISHED"}, "cancel failed")
    jobs.wait(60)
    check(job.state == "cancelled", f"state {job.state} {job.error}")
    check(job.fraction < 1.0, "the job ran to the end")
    check(jobs.STATE.error is None, f"cancel shown as an error: {jobs.STATE.error}")
    check(take_count(METARIG) == count, "a cancelled job made a take")
    check(jobs.get_client().pid == pid, "the backend restarted after a cancel")


@case
def case_backend_killed_mid_job_then_next_works():
    activate(METARIG)
    check(bpy.ops.momask.generate() == {"FINISHED"}, "did not start")
    job = jobs.STATE.active
    wait_for_stage(job, {"base"})
    pid = jobs.get_client().pid
    os.kill(pid, signal.SIGKILL)
    jobs.wait(60)
    check(job.state == "failed", f"state {job.state}")
    check(job.error[0] == client.CRASHED, f"code {job.error}")
    problem, fix = jobs.STATE.error
    check("stopped unexpectedly" in problem and "backend.log" in fix, f"{problem} / {fix}")
    os.environ.pop("MOMASK_DEBUG_STEP_DELAY")
    jobs.stop_backend()
    count = take_count(METARIG)
    job = generate(METARIG)
    check(job.state == "applied", f"next request failed: {job.state} {job.error}")
    check(jobs.get_client().pid not in (None, pid), "no new backend process")
    check(take_count(METARIG) == count + 1, "no take after the restart")


@case
def case_missing_weights_tells_how_to_get_them():
    empty = tempfile.mkdtemp(prefix="no_weights_")
    PREFS.weights_dir = empty
    job = generate(METARIG)
    PREFS.weights_dir = WEIGHTS
    check(job.state == "failed" and job.error[0] == "bad_weights", f"{job.state} {job.error}")
    check("weights" in jobs.STATE.error[1], f"the fix does not say how to get weights: {jobs.STATE.error}")


@case
def case_free_memory_stops_backend():
    client_ = jobs.get_client()
    check(client_.running, "backend not running before Free Memory")
    process = client_._process
    jobs.stop_backend()
    check(process.poll() is not None, "the backend process is still alive")


addon_utils.disable("momask_blender", default_set=True)
failed = [name for name, ok, _ in RESULTS if not ok]
print(f"SUMMARY {len(RESULTS) - len(failed)}/{len(RESULTS)} ok; failed: {failed}", flush=True)
sys.stdout.flush()
os._exit(1 if failed else 0)
