"""The add-on end to end in real Blender against a real backend process with tiny random weights.

Run by tests/momask_blender/test_addon_backend.py: ``<bpy python> addon_backend.py WEIGHTS_DIR OUT.json``.
Every case (``tests/blender/cases.py``) is recorded in OUT.json with its message when it fails. The
cases share one Blender and (mostly) one backend process, because each start costs seconds.
"""

from __future__ import annotations

import os
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
import addon_utils  # noqa: E402
import rigs  # noqa: E402
from cases import ARGS, case, check, finish  # noqa: E402

WEIGHTS = ARGS[0]


# --- setup -------------------------------------------------------------------------------------------------

PREFS = rigs.start_momask(WEIGHTS)
from momask_blender.anim import actions, keys, takes
from momask_blender.remote import client, jobs  # noqa: E402

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
    return list(actions.Channels(action, actions.object_slot(action, obj)).fcurves)


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


KEY_PROPS = ("co", "handle_left", "handle_right", "interpolation", "type", "handle_left_type",
             "handle_right_type", "easing")


def key_snapshot(obj, action) -> dict:
    """Every key of every F-Curve: (frame, {prop: value}) with the values exactly as stored."""
    return {
        (fc.data_path, fc.array_index): [
            (p.co[0], {prop: tuple(getattr(p, prop)) if prop in ("co", "handle_left", "handle_right")
                       else getattr(p, prop) for prop in KEY_PROPS})
            for p in fc.keyframe_points
        ]
        for fc in fcurves(obj, action)
    }


def changed_inside_only(before: dict, after: dict, a: int, b: int) -> set[str]:
    """Check that two :func:`key_snapshot` have the same channels and the same keys outside frames
    a..b; returns the data paths whose keys changed (inside)."""
    check(after.keys() == before.keys(), f"channels added or lost: {set(after) ^ set(before)}")
    changed = set()
    for path, points in before.items():
        outside = [p for p in points if not a <= p[0] <= b]
        check(outside == [p for p in after[path] if not a <= p[0] <= b], f"keys outside {a}-{b}: {path}")
        if points != after[path]:
            changed.add(path[0])
    return changed


def run_inbetween(obj, lo: int, hi: int):
    """The panel's Generate In-between on frames lo..hi of ``obj``'s action: (the new take, the first
    and the last frame it regenerated)."""
    source = obj.animation_data.action
    S.inbetween_custom_range = True
    S.inbetween_start, S.inbetween_end = lo, hi
    check(bpy.ops.momask.generate_inbetween() == {"FINISHED"}, f"no in-between {lo}-{hi}: {jobs.STATE.error}")
    job = jobs.wait(300)
    check(job.state == "applied", f"{lo}-{hi}: {job.state} {job.error} {jobs.STATE.error}")
    take = obj.animation_data.action
    check(take != source and takes.is_take(take), "the in-between is not a new take")
    return take, take["momask_range"][0], take["momask_range"][1] - 1  # per take, inclusive


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
    # What makes a result one step: it was written by a single call of the UNDO operator
    # momask.apply_result (a real undo is exercised in addon_lifecycle.py). No REGISTER: a redo of
    # "Adjust Last Operation" would undo the keys and re-run it after its job is gone.
    job = jobs.STATE.last
    check(
        job.applied_by == "momask.apply_result", f"applied by {job.applied_by}"
    )
    op_type = bpy.types.MOMASK_OT_apply_result
    check("UNDO" in op_type.bl_options and "REGISTER" not in op_type.bl_options, f"{op_type.bl_options}")


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
    actions.assign_action(METARIG, source)
    S.inbetween_prompt = "the person jumps"
    before = key_snapshot(METARIG, source)
    new, a, b = run_inbetween(METARIG, 17, 34)
    check(a <= 17 and b >= 34 and a >= 17 - 4 and b <= 34 + 4, f"regenerated {a}-{b} for 17-34")
    check(changed_inside_only(before, key_snapshot(METARIG, new), a, b), "nothing changed inside the range")
    check(key_snapshot(METARIG, source) == before, "the source take was modified")


def evaluated_pose(obj, action, first: int, last: int):
    """pose_bone.matrix of every bone on frames first..last with ``action`` playing (T, n, 4, 4)."""
    from momask_blender.anim import rig_io

    actions.assign_action(obj, action)
    return rig_io.read_pose_matrices(obj, first, last + 1)


def hand_keyed_bvh_rig(last_frame: int, lift: float):
    """The template BVH's armature (Euler ZYX bones) with a hand-made animation: a few bones keyed
    every 5 frames (Bezier) on frames 1..last_frame, the hips lifted by ``lift`` × the rig's height
    (a platform) and their Euler Y wound past 180° (a full turn earlier, as BVH imports have)."""
    import math

    import numpy as np
    from mathutils import Vector

    obj = rigs.import_template_bvh()
    obj.animation_data.action = None
    height = float(np.ptp([b.head_local[2] for b in obj.data.bones]))
    pose = obj.pose.bones
    hips = pose["Hips"]
    up = hips.bone.matrix_local.to_3x3().inverted() @ Vector((0.0, 0.0, lift * height))
    for frame in [*range(1, last_frame, 5), last_frame]:
        t = frame / 30.0
        hips.location = tuple(up * (1.0 + 0.05 * math.sin(t)))
        hips.rotation_euler = (0.1 * math.sin(2 * t), 2 * math.pi + 0.4 * math.sin(t), 0.05)
        hips.keyframe_insert("location", frame=frame)
        hips.keyframe_insert("rotation_euler", frame=frame)
        for name, amp in (("Spine", 0.2), ("LeftArm", 0.8), ("RightUpLeg", 0.5), ("LeftLeg", 0.6)):
            pose[name].rotation_euler = (amp * math.sin(3 * t), 0.3 * amp * math.cos(2 * t), 0.0)
            pose[name].keyframe_insert("rotation_euler", frame=frame)
    action = obj.animation_data.action
    span = tuple(action.frame_range)
    check(span == (1.0, float(last_frame)), f"hand keys span {span}")
    return obj, action, height


def largest_step(poses) -> float:
    """Largest frame-to-frame change of any bone's posed matrix (rotation entries; heads scaled to
    the rig's size), over consecutive frames of ``poses`` (T, n, 4, 4)."""
    import numpy as np

    size = float(np.ptp(poses[..., :3, 3], axis=(0, 1)).max()) or 1.0
    rot = np.abs(np.diff(poses[:, :, :3, :3], axis=0)).max(axis=(1, 2, 3))
    loc = np.abs(np.diff(poses[:, :, :3, 3], axis=0)).max(axis=(1, 2)) / size
    return np.maximum(rot, loc)


@case
def case_inbetween_hand_keyed_euler_bvh_rig_30fps():
    """A hand-keyed, elevated Euler rig at 30 fps, two in-betweens: a middle range and one ending on
    the last frame. Keys strictly outside the regenerated frames stay bit-identical (co, handles,
    interpolation, type), the seam frames keep the source's evaluated pose, and the pose changes
    across the seams no more than the source's own largest frame-to-frame change allows."""
    import numpy as np

    set_fps(30)
    # 150 frames at 30 fps are 100 model frames (whole tokens): a range can end on the last frame
    obj, source, rig_height = hand_keyed_bvh_rig(150, lift=0.3)    # ~0.5 m up on a 1.7 m character
    activate(obj)
    S.blend_frames = 4
    S.foot_lock = True
    S.in_place = True                  # ignored by in-betweens: the root follows the source
    S.inbetween_prompt = "the person jumps"
    S.inbetween_custom_range = True
    first_frame, last_frame = 1, int(source.frame_range[1])
    before = key_snapshot(obj, source)
    source_poses = evaluated_pose(obj, source, first_frame, last_frame)
    natural = float(largest_step(source_poses).max())
    euler_y = (keys.bone_path("Hips", "rotation_euler"), 1)
    for lo, hi in ((40, 70), (100, last_frame)):
        actions.assign_action(obj, source)
        take, a, b = run_inbetween(obj, lo, hi)
        check(a <= lo and lo - a <= 5 and (b == hi if hi == last_frame else hi <= b <= hi + 5),
              f"regenerated {a}-{b} for {lo}-{hi}")
        after = key_snapshot(obj, take)
        for path, points in before.items():
            outside_before = [p for p in points if not a <= p[0] <= b]
            outside_after = [p for p in after[path] if not a <= p[0] <= b]
            check(outside_before == outside_after, f"{lo}-{hi}: keys outside {a}-{b} changed on {path}")
            inside = [p[0] for p in after[path] if a <= p[0] <= b]
            check(inside == [float(f) for f in range(a, b + 1)], f"{lo}-{hi}: frames not all keyed: {path}")
        check(key_snapshot(obj, source) == before, "the source action was modified")
        poses = evaluated_pose(obj, take, first_frame, last_frame)
        for seam in (a, b):
            turned = float(np.abs(poses[seam - 1, :, :3, :3] - source_poses[seam - 1, :, :3, :3]).max())
            moved = float(np.abs(poses[seam - 1, :, :3, 3] - source_poses[seam - 1, :, :3, 3]).max())
            check(turned < 1e-5 and moved < 1e-5 * max(1.0, rig_height),
                  f"{lo}-{hi}: seam frame {seam} changed by {turned} (rotation), {moved} (position)")
        steps = largest_step(poses)     # steps[f - 1] is the change from frame f to f + 1
        for f in (a - 1, b):            # across start-1/start and end/end+1 (the random tiny model's
            if first_frame <= f < last_frame:   # own motion inside the range may be anything)
                check(steps[f - 1] <= 1.5 * natural, f"{lo}-{hi}: jump {steps[f - 1]:.3f} from frame {f} "
                      f"(the source's largest step is {natural:.3f})")
        # Euler keys continue the animator's winding (2π + …) into and out of the range: the blend
        # frames stay within a half turn of the existing keys instead of spinning back through 0
        wound = [p[1]["co"][1] for p in after[euler_y] if a <= p[0] <= b]
        blend = wound[:6] + wound[-6:]
        check(min(blend) > np.pi and max(blend) < 3 * np.pi, f"{lo}-{hi}: hips Euler unwound: {blend}")
        # the whole requested range has keys, up to the last frame
        check(max(p[0] for p in after[euler_y]) == last_frame, "the last frame lost its key")
    for take in takes.list_takes(obj):   # the next case imports the same BVH rig and counts its takes
        takes.delete_take(obj, take)
    bpy.data.objects.remove(obj)
    set_fps(24)


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
def case_generate_onto_a_generated_rigify_control_rig():
    metarig, rig = rigs.make_generated_rigify_rig()
    metarig.hide_set(True)
    activate(rig)
    job = generate(rig, variations=1, seconds=2.0)
    check(job.state == "applied", f"{job.state} {job.error} {jobs.STATE.error}")
    made = takes.list_takes(rig)
    check(len(made) == 1, f"{[a.name for a in made]} takes on the control rig")
    paths = {fc.data_path for fc in fcurves(rig, made[0])}
    check(any('"upper_arm_fk.L"' in p for p in paths) and any('"thigh_fk.R"' in p for p in paths),
          f"the take keys no FK controls: {sorted(paths)[:8]}")
    check(not any('"DEF-' in p for p in paths), "the take keys DEF bones, which constraints override")
    leftovers = [o.name for o in bpy.data.objects if o not in (metarig, rig) and o.type == "ARMATURE"
                 and "proxy" in o.name.lower()]
    check(not leftovers, f"bake proxies left behind: {leftovers}")
    # An in-between on the take: baked onto the FK controls inside the range, every key outside it
    # (the IK/FK switches' too) exactly as it was, and the source take untouched.
    source = made[0]
    before = key_snapshot(rig, source)
    S.inbetween_prompt = "the person jumps"
    new, a, b = run_inbetween(rig, 12, 30)
    check(a <= 12 and b >= 30, f"regenerated {a}-{b} for 12-30")
    changed = changed_inside_only(before, key_snapshot(rig, new), a, b)
    check(any('"thigh_fk.L"' in p for p in changed) and any('"torso"' in p for p in changed),
          f"the FK controls did not change inside the range: {sorted(changed)[:6]}")
    check(not any("IK_FK" in p for p in changed), "the in-between changed the IK/FK switches")
    check(key_snapshot(rig, source) == before, "the source take was modified")
    check(not [o.name for o in bpy.data.objects if o.type == "ARMATURE" and "proxy" in o.name.lower()],
          "bake proxies left behind")
    # The left leg animated with IK: inside the range its FK controls take the new motion and its
    # IK/FK switch ramps to FK and back; outside, every key (IK controls, switch) is as it was.
    import numpy as np

    from momask_blender.anim import rig_io

    actions.assign_action(rig, source)
    ik_source = source.copy()
    actions.assign_action(rig, ik_source)
    rig.pose.bones["thigh_parent.L"]["IK_FK"] = 0.0
    for frame in (1, 20):      # (the take keys the switch at FK on its first frame)
        rig.keyframe_insert('pose.bones["thigh_parent.L"]["IK_FK"]', frame=frame)
    before = key_snapshot(rig, ik_source)
    new, a, b = run_inbetween(rig, 12, 30)
    changed_inside_only(before, key_snapshot(rig, new), a, b)
    channels = actions.Channels(new, actions.object_slot(new, rig))
    switch = channels.find('pose.bones["thigh_parent.L"]["IK_FK"]', 0)
    mid = (a + b) // 2
    ramp = [switch.evaluate(f) for f in (a - 1, a, mid, b, b + 1)]
    check(np.allclose(ramp, [0, 0, 1, 0, 0]), f"the switch does not ramp IK → FK → IK: {ramp}")
    names = [pb.name for pb in rig.pose.bones]
    org, fk = names.index("ORG-thigh.L"), names.index("thigh_fk.L")
    inside = rig_io.read_pose_matrices(rig, mid, mid + 1)[0]
    check(np.abs(inside[org, :3, :3] - inside[fk, :3, :3]).max() < 1e-4,
          "inside the range the left thigh does not follow its FK control")
    check(key_snapshot(rig, ik_source) == before, "the IK source was modified")
    jobs.STATE.error = None
    S.inbetween_custom_range = False
    for obj in (rig, metarig):
        bpy.data.objects.remove(obj)


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
def case_editing_the_prompt_warms_the_backend_up_quietly():
    jobs.stop_backend()
    PREFS.warm_up = False
    S.prompt = "a person stretches both arms"
    check(not jobs.STATE.light and not jobs.backend_running(), "a warm-up ran although it is switched off")
    PREFS.warm_up = True
    message = jobs.STATE.message
    S.prompt = "a person stretches both arms up"
    check([job.kind for job in jobs.STATE.light] == ["load"], f"no warm-up: {jobs.STATE.light}")
    jobs.wait(300)
    check(jobs.backend_running(), "the warm-up did not start the backend")
    check(jobs.STATE.message == message and jobs.STATE.error is None, "the warm-up changed the panel's news")
    job = generate(METARIG)
    check(job.state == "applied", f"{job.state} {job.error}")
    check(job.data["timings"]["load"] == 0.0, f"Generate loaded the models again: {job.data['timings']}")
    # A warm-up that fails says nothing; the Generate after it reports the problem.
    jobs.stop_backend()
    PREFS.weights_dir = tempfile.mkdtemp(prefix="no_weights_")
    S.prompt = "a person sits down"
    jobs.wait(300)
    check(jobs.STATE.error is None, f"a failed warm-up showed an error: {jobs.STATE.error}")
    job = generate(METARIG)
    PREFS.weights_dir = WEIGHTS
    check(job.state == "failed" and job.error[0] == "bad_weights", f"{job.state} {job.error}")


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
finish()
