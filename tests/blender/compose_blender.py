"""Sequences, Regenerate Segment, Continue, Lead-in and Loop through the add-on's operators, in real
Blender against a real backend process with tiny random weights.

Run by tests/momask_blender/ui/test_compose_blender.py: ``<bpy python> compose_blender.py WEIGHTS OUT.json``.
Every operation is pressed as the panel presses it (``bpy.ops.momask.*``); each result is written by
one ``momask.apply_result`` call (one undo step, undone for real once); the user's action is compared
key by key before and after; markers, stored segments and frame counts are read off the takes.
"""

from __future__ import annotations

import math
import os
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
os.environ.setdefault("MOMASK_USER_DIR", tempfile.mkdtemp(prefix="momask_user_"))

import bpy  # noqa: E402  (bpy first: it puts addon_utils on the path)

# isort: split
import numpy as np  # noqa: E402
import rigs  # noqa: E402
from cases import ARGS, MADE, case, check, finish, made  # noqa: E402

WEIGHTS = ARGS[0]

PREFS = rigs.start_momask(WEIGHTS)
from momask_blender.anim import actions, rig_io, segments, takes  # noqa: E402
from momask_blender.remote import jobs  # noqa: E402
from momask_blender.ui.operators import compose  # noqa: E402

SCENE = bpy.context.scene
S = SCENE.momask
SEQ = SCENE.momask_sequence
S.randomize_seed = False
S.seed = 7
S.steps = 2                     # tiny weights: the motion is noise either way; fewer steps, faster
S.foot_lock = False


def set_fps(fps: int) -> None:
    SCENE.render.fps, SCENE.render.fps_base = fps, 1.0


def activate(obj) -> None:
    for other in bpy.context.view_layer.objects:
        other.select_set(False)
    obj.select_set(True)
    bpy.context.view_layer.objects.active = obj


def fcurves(obj, action):
    return list(actions.Channels(action, actions.object_slot(action, obj)).fcurves)


def key_arrays(obj, action) -> dict:
    """Every key of every curve, exactly as stored: {(path, index): (co, handles, interpolation, type)}."""
    out = {}
    for fc in fcurves(obj, action):
        n = len(fc.keyframe_points)
        arrays = []
        for prop, size, dtype in (("co", 2, np.float32), ("handle_left", 2, np.float32),
                                  ("handle_right", 2, np.float32), ("interpolation", 1, np.int32),
                                  ("type", 1, np.int32)):
            buf = np.empty(n * size, dtype=dtype)
            fc.keyframe_points.foreach_get(prop, buf)
            arrays.append(buf.reshape(n, size))
        out[fc.data_path, fc.array_index] = np.concatenate([a.astype(np.float64) for a in arrays], axis=1)
    return out


def same_keys(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


def keyed_frames(obj, action) -> list[float]:
    frames = sorted({float(p.co[0]) for fc in fcurves(obj, action) for p in fc.keyframe_points})
    return frames


def press(op, **props) -> jobs.Job:
    """Press an operator that submits a model job, wait for it and check it was applied in one step."""
    before = jobs.STATE.last
    result = op(**props)
    check(result == {"FINISHED"}, f"{op.idname()} did not start: {jobs.STATE.error}")
    job = jobs.wait(600)
    check(job is not before and job.state == "applied", f"{job.state}: {job.error} {jobs.STATE.error}")
    check(job.applied_by == "momask.apply_result", f"applied by {job.applied_by!r}, not one undo step")
    return job


def refused(op, words: tuple[str, ...], **props) -> str:
    """Press ``op``: it must refuse at once (nothing sent, nothing written) with a problem naming
    ``words`` and a fix."""
    actions_before = {a.name for a in bpy.data.actions}
    markers_before = [(m.name, m.frame) for m in SCENE.timeline_markers]
    jobs.STATE.error = None
    try:
        result = op(**props)
    except RuntimeError as exc:          # an operator's ERROR report raises when called from Python
        result = {"CANCELLED"} if "Fix:" in str(exc) else {"RAISED": str(exc)}
    check(result == {"CANCELLED"}, f"{op.idname()} accepted bad input ({props}): {result}")
    check(jobs.STATE.active is None, "a request was sent")
    problem, fix = jobs.STATE.error or ("", "")
    check(all(w.lower() in problem.lower() for w in words), f"the problem {problem!r} does not name {words}")
    check(bool(fix), f"no fix given for {problem!r}")
    check({a.name for a in bpy.data.actions} == actions_before, "an action was made or removed")
    check([(m.name, m.frame) for m in SCENE.timeline_markers] == markers_before, "markers changed")
    return problem


def set_segments(rows) -> None:
    SEQ.segments.clear()
    for prompt, seconds in rows:
        item = SEQ.segments.add()
        item.prompt, item.seconds = prompt, seconds
    SEQ.index = 0


def hand_keyed_action(obj, first: int, last: int):
    """The user's own action on ``obj``: a few bones keyed every 6 frames (Bezier) on first..last."""
    obj.animation_data_create()
    obj.animation_data.action = None
    pose = obj.pose.bones
    names = [n for n in ("spine", "spine.001", "upper_arm.L", "thigh.R", "shin.L") if pose.get(n)]
    for frame in [*range(first, last, 6), last]:
        t = frame / 10.0
        pose["spine"].location = (0.0, 0.02 * math.sin(t), 0.0)
        pose["spine"].keyframe_insert("location", frame=frame)
        for k, name in enumerate(names):
            pb = pose[name]
            pb.rotation_mode = "QUATERNION"
            angle = 0.3 * math.sin(t + k)
            pb.rotation_quaternion = (math.cos(angle / 2), math.sin(angle / 2), 0.0, 0.0)
            pb.keyframe_insert("rotation_quaternion", frame=frame)
    action = obj.animation_data.action
    action.name = "my walk"
    return action


# --- cases -------------------------------------------------------------------------------------------------

set_fps(24)
RIG = rigs.make_rigify_metarig()
activate(RIG)
SCENE.timeline_markers.new("my marker", frame=3)        # the user's own marker: never touched


@case
def case_bad_sequences_refused_before_sending():
    set_segments([])
    problems = [refused(bpy.ops.momask.generate_sequence, ("no segments",))]
    set_segments([("a person walks", 2.0), ("   ", 2.0)])
    problems.append(refused(bpy.ops.momask.generate_sequence, ("segment 2", "no prompt")))
    set_segments([("a person walks", 2.0), ("a person jumps", 0.0)])
    problems.append(refused(bpy.ops.momask.generate_sequence, ("segment 2", "0 s")))
    set_segments([("a person walks", 250.0), ("a person jumps", 100.0)])
    problems.append(refused(bpy.ops.momask.generate_sequence, ("350 s", "300 s maximum")))
    set_segments([("a person walks", 2.0), ("a person jumps", 0.5)])
    SEQ.transition = 0.8
    problems.append(refused(bpy.ops.momask.generate_sequence, ("transition", "segment 2")))
    SEQ.transition = 0.4
    # a segment the two 0.4 s transitions would swallow whole (the backend's rule, shared)
    set_segments([("a person walks", 3.0), ("a person jumps", 0.4), ("a person walks", 3.0)])
    problems.append(refused(bpy.ops.momask.generate_sequence, ("segment 2", "0.8 s (4 tokens)")))
    # NaN cannot be typed into the panel; a script's NaN is caught by the same check
    try:
        compose.sequence_plan([("a person walks", float("nan"))], 0.4, False, 24.0)
        nan_refused = False
    except compose.InputProblem as exc:
        nan_refused = "segment 1" in exc.problem.lower() and bool(exc.fix)
    check(nan_refused, "a NaN duration was accepted")
    return {"problems": problems}


@case
def case_generate_sequence_24fps_markers_and_exact_frames():
    set_fps(24)
    SCENE.frame_current = 10
    set_segments([("a person walks forward", 1.5), ("a person waves", 2.0), ("a person sits down", 1.25)])
    SEQ.transition, SEQ.loop = 0.4, False
    job = press(bpy.ops.momask.generate_sequence)
    take = RIG.animation_data.action
    check(takes.is_take(take) and job.made_actions == [take.name], f"no take made: {job.made_actions}")
    frames = keyed_frames(RIG, take)
    expected = 36 + 48 + 30                      # round(1.5*24) + round(2*24) + round(1.25*24)
    check(frames == [float(f) for f in range(10, 10 + expected)], f"keyed {len(frames)} frames "
          f"{frames[:1]}..{frames[-1:]}, expected {expected} from frame 10")
    rows = segments.stored_segments(take)
    check([(r["start"], r["end"]) for r in rows] == [(0, 36), (36, 84), (84, 114)], f"segments {rows}")
    codes = segments.stored_codes(take)
    check(codes is not None and codes.shape[1] == 6,
          f"stored tokens {None if codes is None else codes.shape}")
    scene_markers = {(m.name, m.frame) for m in SCENE.timeline_markers}
    wanted = {("1: a person walks forward", 10), ("2: a person waves", 46), ("3: a person sits down", 94)}
    check(wanted <= scene_markers, f"timeline markers {sorted(scene_markers)}")
    check(("my marker", 3) in scene_markers, "the user's marker was removed")
    pose_markers = {(m.name, m.frame) for m in take.pose_markers}
    check(pose_markers == wanted, f"the take's pose markers {sorted(pose_markers)}")
    MADE["sequence"] = take.name
    return {"frames": len(frames), "tokens": len(codes)}


@case
def case_exact_frame_counts_at_24_25_30_60_fps():
    counts = {}
    for fps in (25, 30, 60):
        set_fps(fps)
        SCENE.frame_current = 1
        set_segments([("a person walks forward", 2.5), ("a person turns around", 1.3)])
        press(bpy.ops.momask.generate_sequence)
        take = RIG.animation_data.action
        frames = keyed_frames(RIG, take)
        expected = compose.frames_for(2.5, fps) + compose.frames_for(1.3, fps)
        check(len(frames) == expected and frames[0] == 1.0 and frames[-1] == float(expected),
              f"{fps} fps: {len(frames)} frames, expected {expected}")
        counts[fps] = len(frames)
        takes.delete_take(RIG, take)
    single = {}                        # and Generate's one prompt: 2.5 s is round(2.5 x fps) frames too
    for fps in (24, 25, 30, 60):
        set_fps(fps)
        S.auto_length, S.seconds, S.variations = False, 2.5, 1
        press(bpy.ops.momask.generate)
        take = RIG.animation_data.action
        single[fps] = len(keyed_frames(RIG, take))
        check(single[fps] == compose.frames_for(2.5, fps),
              f"Generate 2.5 s at {fps} fps keyed {single[fps]} frames")
        takes.delete_take(RIG, take)
    set_fps(24)
    return {"frames": counts, "generate_frames": single}


@case
def case_applying_another_take_replaces_only_momask_markers():
    sequence = bpy.data.actions[made("sequence")[0]]
    plain = next(a for a in takes.list_takes(RIG) if segments.stored_segments(a) is None) \
        if any(segments.stored_segments(a) is None for a in takes.list_takes(RIG)) else None
    if plain is None:                                   # a one-prompt take to switch to
        S.seconds = 1.0
        check(bpy.ops.momask.generate() == {"FINISHED"}, "Generate did not start")
        check(jobs.wait(600).state == "applied", f"{jobs.STATE.error}")
        plain = RIG.animation_data.action
    actions.assign_action(RIG, sequence)
    RIG.momask_take_index = bpy.data.actions.find(plain.name)
    check(bpy.ops.momask.take_apply() == {"FINISHED"}, "Apply failed")
    names = [m.name for m in SCENE.timeline_markers]
    check(names == ["my marker"], f"markers after playing a plain take: {names}")
    RIG.momask_take_index = bpy.data.actions.find(sequence.name)
    check(bpy.ops.momask.take_apply() == {"FINISHED"}, "Apply failed")
    names = sorted(m.name for m in SCENE.timeline_markers)
    check(len(names) == 4 and "my marker" in names, f"markers after playing the sequence again: {names}")


@case
def case_regenerate_segment_changes_only_that_segment():
    """A 20 s take (9 s, 2 s, 9 s): regenerating the middle segment replaces the frames the backend
    says changed (its tokens and the decoder's reach, 7.6 s at most each side) and nothing else."""
    set_fps(24)
    activate(RIG)
    SCENE.frame_current = 1
    set_segments([("a person walks forward", 9.0), ("a person waves", 2.0), ("a person sits down", 9.0)])
    SEQ.transition = 0.4
    S.seed = 7
    press(bpy.ops.momask.generate_sequence)
    old = RIG.animation_data.action
    before = key_arrays(RIG, old)
    old_codes = segments.stored_codes(old)
    SEQ.segments.clear()
    SEQ.index = 1
    check(bpy.ops.momask.segments_from_take() == {"FINISHED"}, "Segments From Take failed")
    listed = [(item.prompt, round(item.seconds * 24)) for item in SEQ.segments]
    check(listed == [("a person walks forward", 216), ("a person waves", 48), ("a person sits down", 216)],
          f"the list shows {listed}")
    SEQ.segments[1].prompt = "a person jumps high"
    S.seed = 99
    job = press(bpy.ops.momask.regenerate_segment)
    new = RIG.animation_data.action
    check(new != old and job.made_actions == [new.name], "no new take")
    check(same_keys(key_arrays(RIG, old), before), "the old take was modified")
    said = job.data["takes"][0]["range"]
    lo, hi = new["momask_range"]                  # the frames replaced (scene frames, end exclusive)
    check((lo, hi) == (1 + said["start"], 1 + said["end"]), f"replaced {lo}-{hi}, the backend changed {said}")
    check(1 < lo <= 1 + 216 and 1 + 264 <= hi < 1 + 480, f"replaced {lo}-{hi} for segment 2 (frames 217-264)")
    after = key_arrays(RIG, new)
    check(after.keys() == before.keys(), "channels changed")
    changed_inside = 0
    for key, rows in before.items():
        outside = (rows[:, 0] < lo) | (rows[:, 0] >= hi)
        new_rows = after[key]
        check(np.array_equal(rows[outside], new_rows[(new_rows[:, 0] < lo) | (new_rows[:, 0] >= hi)]),
              f"keys outside {lo}-{hi} changed on {key}")
        inside_old, inside_new = rows[~outside], new_rows[(new_rows[:, 0] >= lo) & (new_rows[:, 0] < hi)]
        changed_inside += int(not np.array_equal(inside_old[:, 1], inside_new[:, 1]))
    check(changed_inside > 0, "nothing changed inside segment 2")
    new_codes = segments.stored_codes(new)
    moved = np.flatnonzero((new_codes != old_codes).any(axis=1))
    # segment 2 is model frames 180-220 (tokens 45-55); each transition adds up to 2 tokens (+1 rounding)
    check(len(moved) and moved.min() >= 45 - 3 and moved.max() <= 55 + 3, f"tokens {moved} changed")
    names = {(m.name, m.frame) for m in SCENE.timeline_markers}
    check(("2: a person jumps high", 217) in names and ("1: a person walks forward", 1) in names,
          f"segment markers after regenerating: {sorted(names)}")
    return {"replaced": [lo, hi], "curves_changed": changed_inside, "tokens_changed": moved}


@case
def case_regenerate_segment_bad_inputs():
    sequence = bpy.data.actions[made("sequence")[0]]
    actions.assign_action(RIG, sequence)
    SEQ.index = 5
    refused(bpy.ops.momask.regenerate_segment, ("segment 6", "3 segments"))
    SEQ.index = 1
    plain = next((a for a in takes.list_takes(RIG) if segments.stored_segments(a) is None), None)
    check(plain is not None, "no plain take to try on")
    actions.assign_action(RIG, plain)
    refused(bpy.ops.momask.regenerate_segment, ("no stored segments",))
    actions.assign_action(RIG, sequence)


@case
def case_continue_and_lead_in_keep_the_users_action():
    set_fps(30)
    rig = rigs.make_rigify_metarig()
    rig.name = "user rig"
    activate(rig)
    mine = hand_keyed_action(rig, 1, 60)
    before = key_arrays(rig, mine)
    yours = rig_io.read_pose_matrices(rig, 1, 61)         # your pose on frames 1..60
    values = {}
    for direction, frame in (("after", 40), ("before", 20)):
        actions.assign_action(rig, mine)
        SCENE.frame_current = frame
        SEQ.continue_prompt, SEQ.continue_seconds, SEQ.continue_blend = "a person runs", 1.3, 4
        job = press(bpy.ops.momask.extend_motion, direction=direction)
        take = rig.animation_data.action
        check(take != mine and takes.is_take(take) and job.made_actions == [take.name], "no new take")
        check(same_keys(key_arrays(rig, mine), before), f"{direction}: the user's action was modified")
        n = round(1.3 * 30)
        after = key_arrays(rig, take)
        for key, rows in before.items():      # your keys before (after) the current frame, exactly
            mine_side = rows[:, 0] < frame if direction == "after" else rows[:, 0] > frame
            take_side = after[key][:, 0] < frame if direction == "after" else after[key][:, 0] > frame
            check(np.array_equal(rows[mine_side], after[key][take_side]), f"{direction}: your keys changed "
                  f"on {key}")
        # the current frame keeps your pose: the new motion blends out of (into) it
        seam_gap = float(np.abs(rig_io.read_pose_matrices(rig, frame, frame + 1) - yours[frame - 1]).max())
        check(seam_gap < 1e-5, f"{direction}: the pose on frame {frame} moved by {seam_gap}")
        new_frames = sorted({float(f) for rows in after.values() for f in rows[:, 0]
                             if (f > frame if direction == "after" else f < frame)})
        expected = (list(range(frame + 1, frame + 1 + n)) if direction == "after"
                    else list(range(frame - n, frame)))
        check(new_frames == [float(f) for f in expected], f"{direction}: new frames {new_frames[:2]}.."
              f"{new_frames[-2:]}, expected {n} frames {expected[0]}-{expected[-1]}")
        marker = (segments.marker_name(0, "a person runs"), expected[0])
        check(marker in {(m.name, m.frame) for m in SCENE.timeline_markers},
              f"{direction}: no marker at {marker}")
        values[direction] = len(new_frames)
    MADE["user_rig"], MADE["user_action"] = rig.name, mine.name
    return {"new_frames": values}


@case
def case_continue_bad_inputs():
    rig = bpy.data.objects[made("user_rig")[0]]
    mine = bpy.data.actions[made("user_action")[0]]
    activate(rig)
    actions.assign_action(rig, mine)
    SEQ.continue_prompt, SEQ.continue_seconds = "", 1.0
    SCENE.frame_current = 40
    refused(bpy.ops.momask.extend_motion, ("no prompt",), direction="after")
    SEQ.continue_prompt, SEQ.continue_seconds = "a person runs", 0.0
    refused(bpy.ops.momask.extend_motion, ("0 s",), direction="after")
    SEQ.continue_seconds = 1.0
    SCENE.frame_current = 1                      # one frame of the action up to here: under a token
    refused(bpy.ops.momask.extend_motion, ("shorter than one momask token",), direction="after")
    SCENE.frame_current = 60
    refused(bpy.ops.momask.extend_motion, ("shorter than one momask token",), direction="before")
    broken = mine.copy()
    broken.name = "broken walk"
    actions.assign_action(rig, broken)
    fc = fcurves(rig, broken)[0]
    fc.keyframe_points[len(fc.keyframe_points) // 2].co[1] = float("nan")
    fc.update()
    before = key_arrays(rig, broken)
    SCENE.frame_current = 50
    problem = refused(bpy.ops.momask.extend_motion, ("not a number",), direction="after")
    after = key_arrays(rig, broken)
    check(after.keys() == before.keys() and all(np.array_equal(after[k], before[k], equal_nan=True)
                                                for k in before), "the broken action changed")
    actions.assign_action(rig, mine)
    return {"nan_problem": problem}


@case
def case_inbetween_outside_the_action_is_refused_and_continue_offered():
    rig = bpy.data.objects[made("user_rig")[0]]
    activate(rig)
    actions.assign_action(rig, bpy.data.actions[made("user_action")[0]])
    S.inbetween_custom_range, S.inbetween_start, S.inbetween_end = True, 80, 100
    before = {a.name for a in bpy.data.actions}
    try:
        result, message = bpy.ops.momask.generate_inbetween(), ""
    except RuntimeError as exc:
        result, message = {"CANCELLED"}, str(exc)
    check(result == {"CANCELLED"} and jobs.STATE.active is None, f"accepted: {result}")
    check("1-60" in message and "Continue" in message and "80-100" in message,
          f"the refusal does not name the action's frames and Continue: {message!r}")
    check({a.name for a in bpy.data.actions} == before, "an action was made")
    S.inbetween_custom_range = False
    return {"message": message}


@case
def case_long_inbetween_over_196_model_frames_keeps_keys_outside():
    """An in-between of 10.7 s (321 frames at 30 fps, past one 9.8 s model window) in a 400-frame
    action: the backend fills it window by window; every key outside the regenerated frames stays."""
    set_fps(30)
    rig = bpy.data.objects[made("user_rig")[0]]
    activate(rig)
    long_walk = hand_keyed_action(rig, 1, 400)
    long_walk.name = "my long walk"
    before = key_arrays(rig, long_walk)
    S.inbetween_custom_range, S.inbetween_start, S.inbetween_end = True, 50, 370
    S.inbetween_prompt = "a person dances"
    job = press(bpy.ops.momask.generate_inbetween)
    take = rig.animation_data.action
    check(take != long_walk and job.made_actions == [take.name], "no in-between take")
    check(same_keys(key_arrays(rig, long_walk), before), "the user's action was modified")
    lo, hi = take["momask_range"]
    check(lo <= 50 and hi >= 371 and lo >= 50 - 8 and hi <= 371 + 8, f"regenerated {lo}-{hi} for 50-370")
    after = key_arrays(rig, take)
    for key, rows in before.items():
        outside = (rows[:, 0] < lo) | (rows[:, 0] >= hi)
        got = after[key][(after[key][:, 0] < lo) | (after[key][:, 0] >= hi)]
        check(np.array_equal(rows[outside], got), f"keys outside {lo}-{hi} changed on {key}")
    S.inbetween_custom_range = False
    set_fps(24)
    return {"regenerated": [lo, hi]}


@case
def case_loop_cyclic_keys_and_cycles_modifier():
    set_fps(24)
    activate(RIG)
    SCENE.frame_current = 1
    set_segments([("a person walks in a circle", 2.0)])
    SEQ.loop, SEQ.cycles = True, True
    press(bpy.ops.momask.generate_sequence)
    take = RIG.animation_data.action
    n = 48
    curves = fcurves(RIG, take)
    open_curves = []
    by_bone: dict[str, list] = {}
    for fc in curves:
        by_bone.setdefault(fc.data_path, []).append(fc)
        frames = [p.co[0] for p in fc.keyframe_points]
        check(frames[0] == 1 and frames[-1] == 1 + n and len(frames) == n + 1,
              f"{fc.data_path}: keys {frames[0]}..{frames[-1]} ({len(frames)})")
        check(any(m.type == "CYCLES" for m in fc.modifiers), f"{fc.data_path} has no Cycles modifier")
    for path, fcs in by_bone.items():
        first = np.array([fc.keyframe_points[0].co[1] for fc in fcs])
        last = np.array([fc.keyframe_points[-1].co[1] for fc in fcs])
        if path.endswith("rotation_quaternion"):
            same = min(np.abs(first - last).max(), np.abs(first + last).max()) == 0.0
        elif path.endswith("location"):
            same = True                          # may close with its per-cycle offset
        else:                                    # an Euler angle may close by whole turns
            turns = (last - first) / (2 * math.pi)
            same = bool(np.abs(turns - np.round(turns)).max() < 1e-5)
        if not same:
            open_curves.append(path)
    check(not open_curves, f"the last key differs from the first on {open_curves[:4]}")
    check(take.use_cyclic and tuple(take.frame_range) == (1.0, 1.0 + n),
          f"cycle range {tuple(take.frame_range)}")
    # the Cycles modifier really repeats the take: one period later the pose is the same
    poses = rig_io.read_pose_matrices(RIG, 5, 6)
    again = rig_io.read_pose_matrices(RIG, 5 + n, 6 + n)
    rotation_gap = float(np.abs(poses[:, :, :3, :3] - again[:, :, :3, :3]).max())
    check(rotation_gap < 1e-4, f"frame {5 + n} is not frame 5 again: {rotation_gap}")
    check(bpy.ops.momask.take_cycles() == {"FINISHED"}, "Cycles toggle failed")
    check(not any(m.type == "CYCLES" for fc in fcurves(RIG, take) for m in fc.modifiers), "Cycles still on")
    SEQ.loop = False
    return {"curves": len(curves), "rotation_gap": rotation_gap}


class Layout:
    """Records what a panel's draw shows (labels, properties, buttons) and checks each property and
    operator it names exists, as Blender would when drawing it."""

    def __init__(self, shown: list[str]) -> None:
        self.shown = shown
        self.enabled, self.scale_y, self.ui_units_x, self.alert = True, 1.0, 0, False

    def row(self, align: bool = False) -> Layout:
        return self

    column = box = row

    def separator(self) -> None:
        pass

    def label(self, text: str = "", icon: str = "NONE") -> None:
        self.shown.append(f"[{icon}] {text}")

    def prop(self, data, name: str, **options) -> None:
        check(name in data.bl_rna.properties, f"the panel shows a property {name!r} that {data} lacks")
        self.shown.append(f"({name})")

    def template_list(self, listtype, list_id, data, propname, active_data, active_propname, **options):
        check(hasattr(bpy.types, listtype), f"no UIList {listtype}")
        check(propname in data.bl_rna.properties and active_propname in active_data.bl_rna.properties,
              f"the list draws {propname}/{active_propname}, which do not exist")
        self.shown.append(f"[LIST {listtype}] {len(getattr(data, propname))} rows")

    def operator(self, idname: str, text: str = "", icon: str = "NONE", **options):
        group, name = idname.split(".")
        op = getattr(getattr(bpy.ops, group), name)
        op.get_rna_type()                          # raises when no such operator is registered
        self.shown.append(f"<{idname}> {text}")
        return type("Props", (), {})()             # the button's properties (direction=...)


def drawn(panel: str) -> str:
    shown: list[str] = []
    getattr(bpy.types, panel).draw(type("Panel", (), {"layout": Layout(shown)})(), bpy.context)
    return "\n".join(shown)


@case
def case_sequence_and_continue_panels_show_their_buttons():
    activate(RIG)
    take = RIG.animation_data.action                # the looped sequence take of the case before
    check(take.get("momask_loop"), "the playing take is not the looped one")
    set_segments([("a person walks forward", 2.0), ("a person waves", 1.0)])
    sequence, extend = drawn("MOMASK_PT_sequence"), drawn("MOMASK_PT_continue")
    for shown in ("[LIST MOMASK_UL_segments] 2 rows", "<momask.generate_sequence>", "(transition)",
                  "(loop)", "(cycles)", "<momask.segment_add>", "<momask.segment_move>",
                  "<momask.regenerate_segment> Regenerate Segment 1 of 1", "<momask.take_cycles>",
                  "<momask.segments_from_take>", "2 segments, 72 frames (3.0 s)"):
        check(shown in sequence, f"the Sequence box does not show {shown!r}:\n{sequence}")
    for shown in ("<momask.extend_motion> Continue", "<momask.extend_motion> Lead-in", "(continue_prompt)",
                  "(continue_seconds)", f"'{take.name}' at frame {SCENE.frame_current}"):
        check(shown in extend, f"the Continue box does not show {shown!r}:\n{extend}")
    return {"sequence": sequence.splitlines(), "continue": extend.splitlines()}


@case
def case_one_real_undo_removes_a_sequence_take_and_a_continue_take():
    set_fps(24)
    activate(RIG)
    bpy.ops.ed.undo_push(message="before")          # background Blender has no undo stack until one
    SCENE.frame_end = 321
    bpy.ops.ed.undo_push(message="user edit")
    name = RIG.name
    count = len(takes.list_takes(RIG))
    markers = sorted(m.name for m in SCENE.timeline_markers)
    set_segments([("a person walks forward", 1.0), ("a person waves", 1.0)])
    press(bpy.ops.momask.generate_sequence)
    check(len(takes.list_takes(bpy.data.objects[name])) == count + 1, "no take made")
    bpy.ops.ed.undo()
    check(len(takes.list_takes(bpy.data.objects[name])) == count, "one undo did not remove the take")
    check(sorted(m.name for m in bpy.context.scene.timeline_markers) == markers,
          "the undo did not take the sequence's markers back")
    # Continue on the user's action, then one Ctrl+Z: the take is gone, the action as it was
    rig_name, action_name = made("user_rig", "user_action")
    activate(bpy.data.objects[rig_name])
    actions.assign_action(bpy.data.objects[rig_name], bpy.data.actions[action_name])
    bpy.ops.ed.undo_push(message="playing my walk")
    mine = key_arrays(bpy.data.objects[rig_name], bpy.data.actions[action_name])
    actions_before = {a.name for a in bpy.data.actions}
    scene = bpy.context.scene                      # (the undo replaced the scene the globals held)
    scene.momask_sequence.continue_prompt, scene.momask_sequence.continue_seconds = "a person runs", 1.0
    scene.frame_current = 30
    press(bpy.ops.momask.extend_motion, direction="after")
    check({a.name for a in bpy.data.actions} != actions_before, "Continue made no take")
    bpy.ops.ed.undo()
    rig = bpy.data.objects[rig_name]
    check({a.name for a in bpy.data.actions} == actions_before, "one undo did not remove the Continue take")
    check(rig.animation_data.action.name == action_name, "the undo did not play your action again")
    check(same_keys(key_arrays(rig, bpy.data.actions[action_name]), mine), "your action changed")
    check(bpy.context.scene.frame_end == 321, "one undo also took back the edit before")


finish()
