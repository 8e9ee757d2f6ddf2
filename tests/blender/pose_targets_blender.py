"""Generate Through Keyed Poses in real Blender, against a real backend process on tiny random weights.

Run by tests/momask_blender/ui/test_pose_targets_blender.py: ``<bpy python> pose_targets_blender.py
WEIGHTS_DIR OUT.json``. On the Rigify human metarig (quaternion bones) and a Mixamo-named A-pose rig
(Euler XYZ bones, an FBX-style object transform) the user keys three poses of the real HumanML3D
sample 000612 at frames 1, 30 and 60 (24 fps). Per rig:

* ``through_keyed_poses_*``: From Keys lists the keyed frames; the operator makes a new take over
  frames 1-60 in one undo step, the user's action keeps every key; at each target frame every bone
  the take keys has the user's rotation as Blender evaluates both (the error in degrees is the
  ``max_error_deg`` value); the seam figures of the tiny random model's motion are recorded as they
  are (its motion is noise: nothing is asserted on them).
* ``real_motion_pinned_*``: the same pinning (backend/retarget/pose_targets.py) applied to the
  sample's own motion solved onto the rig, written as a take and evaluated by Blender: the keys are
  hit and the seam step (mean bone step into and out of each target and at its blend window's ends)
  against the take's median step is the ``seam_ratio`` value.

``bad_input_*``: a target outside the range, two targets inside one token, a range without keys and
a range longer than MoMask makes: each one message with its fix, and nothing of the user's changed.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
os.environ.setdefault("MOMASK_USER_DIR", tempfile.mkdtemp(prefix="momask_user_"))

import bpy  # noqa: E402  (bpy first: it puts addon_utils on the path)

# isort: split
import addon_utils  # noqa: E402
import numpy as np  # noqa: E402
import rigs  # noqa: E402
from cases import ARGS, MADE, case, check, finish, made  # noqa: E402

from backend.motion.features import recover_from_ric  # noqa: E402
from backend.portable.quaternion import qinv, qmul  # noqa: E402
from backend.retarget.mapping import auto_map  # noqa: E402
from backend.retarget.pose_targets import pin_to_keys, seam_ratio  # noqa: E402
from backend.retarget.rig import RigDescription  # noqa: E402
from backend.retarget.solver import retarget  # noqa: E402

WEIGHTS = ARGS[0]
SAMPLE = np.load(rigs.shared_file("humanml3d_000612.npy")).astype(np.float32)
JOINTS = recover_from_ric(SAMPLE)
FPS = 24
TARGETS = (1, 30, 60)                    # scene frames of the user's keyed poses
POSED_FROM = (24, 120, 216)              # the sample's frames (at 24 fps) those poses come from

PREFS = rigs.start_momask(WEIGHTS)
from momask_blender.anim import actions, keys, rig_io, takes  # noqa: E402
from momask_blender.remote import jobs  # noqa: E402

S = bpy.context.scene.momask
S.randomize_seed = False
S.seed = 5
S.steps = 4
bpy.context.scene.render.fps, bpy.context.scene.render.fps_base = FPS, 1.0


def activate(obj) -> None:
    for other in bpy.context.view_layer.objects:
        other.select_set(False)
    obj.select_set(True)
    bpy.context.view_layer.objects.active = obj


def solve(obj, joints, frame_count=None):
    """The solver's keys for ``obj`` (as the add-on describes it) from joints at 20 fps, at 24 fps."""
    rig = RigDescription.from_dict(rig_io.describe_armature(obj))
    return rig, retarget(joints, rig, auto_map(rig), src_fps=20, dst_fps=FPS, frame_count=frame_count)


def key_user_poses(obj):
    """The user's animation: every solved bone (and the root's location) keyed at TARGETS with the
    sample's poses at POSED_FROM, Bezier keys as the animator's own."""
    _, whole = solve(obj, JOINTS)
    for frame, row in zip(TARGETS, POSED_FROM, strict=True):
        for bone in whole.bones:
            pose_bone = obj.pose.bones[bone.name]
            setattr(pose_bone, bone.channel, tuple(float(v) for v in bone.values[row]))
            pose_bone.keyframe_insert(bone.channel, frame=frame)
        root = obj.pose.bones[whole.root_name]
        root.location = tuple(float(v) for v in whole.root_location[row])
        root.keyframe_insert("location", frame=frame)
    action = obj.animation_data.action
    action.name = f"{obj.name} keyed poses"
    return action


def key_snapshot(obj, action) -> dict:
    return {(fc.data_path, fc.array_index): [(tuple(p.co), tuple(p.handle_left), tuple(p.handle_right),
                                              p.interpolation) for p in fc.keyframe_points]
            for fc in actions.Channels(action, actions.object_slot(action, obj)).fcurves}


def keyed_bones(obj, action) -> list[str]:
    names = set()
    for fc in actions.Channels(action, actions.object_slot(action, obj)).fcurves:
        if fc.data_path.startswith('pose.bones["') and not fc.data_path.endswith("location"):
            names.add(fc.data_path.split('"')[1])
    return sorted(names)


def local_rotations(obj, action, frames, bones) -> np.ndarray:
    """Each bone's local rotation (matrix_basis) as Blender evaluates ``action``: (bones, frames, 4)."""
    actions.assign_action(obj, action)
    scene = bpy.context.scene
    out = np.empty((len(bones), len(frames), 4))
    for t, frame in enumerate(frames):
        scene.frame_set(int(frame))
        for b, name in enumerate(bones):
            out[b, t] = tuple(obj.pose.bones[name].matrix_basis.to_quaternion().normalized())
    return out


def max_angle_deg(q0: np.ndarray, q1: np.ndarray) -> float:
    """Largest rotation between ``q0`` and ``q1`` (degrees), from the relative quaternion's vector part
    (an arccos of their dot would read float32 rounding near 1 as 0.02°)."""
    relative = qmul(qinv(q0), q1)
    return float(np.degrees(2 * np.arctan2(np.linalg.norm(relative[..., 1:], axis=-1),
                                           np.abs(relative[..., 0]))).max())


def rotation_error(obj, take, user, bones) -> float:
    """Largest angle between the take's and the user's local rotations of ``bones`` at TARGETS."""
    taken = local_rotations(obj, take, TARGETS, bones)
    return max_angle_deg(taken, local_rotations(obj, user, TARGETS, bones))


def seam_figures(obj, take, bones, windows) -> dict:
    frames = range(TARGETS[0], TARGETS[-1] + 1)
    quats = local_rotations(obj, take, frames, bones)
    seam, median = seam_ratio(quats, [f - TARGETS[0] for f in TARGETS], windows)
    return {"seam_step_deg": seam, "median_step_deg": median, "seam_ratio": seam / median}


def make_rig(kind: str):
    if kind == "metarig":
        obj = rigs.make_rigify_metarig()
    else:
        obj = rigs.make_mixamo_rig(a_pose=True)
        for pose_bone in obj.pose.bones:
            pose_bone.rotation_mode = "XYZ"     # FBX imports key Euler
    bpy.ops.object.mode_set(mode="OBJECT")
    activate(obj)
    return obj


def through_keyed_poses(kind: str) -> dict:
    obj = make_rig(kind)
    user = key_user_poses(obj)
    before = key_snapshot(obj, user)
    S.inbetween_custom_range = True
    S.inbetween_start, S.inbetween_end = TARGETS[0], TARGETS[-1]
    S.inbetween_prompt = "a person walks forward"
    S.blend_frames = 4
    S.pose_targets = ""
    check(bpy.ops.momask.pose_targets_from_keys() == {"FINISHED"}, "From Keys failed")
    check(S.pose_targets == "1, 30, 60", f"From Keys listed '{S.pose_targets}'")
    actions_before = set(bpy.data.actions)
    check(bpy.ops.momask.generate_through_poses() == {"FINISHED"}, f"did not start: {jobs.STATE.error}")
    job = jobs.wait(300)
    check(job.state == "applied", f"job {job.state}: {job.error} {jobs.STATE.error}")
    check(job.applied_by == "momask.apply_result", f"applied by {job.applied_by}, not as one undo step")
    take = obj.animation_data.action
    check(take != user and takes.is_take(take) and take.get("momask_kind") == "targets", "no new take")
    check(set(bpy.data.actions) - actions_before == {take}, "more than one action was made")
    check(list(take["momask_targets"]) == list(TARGETS), f"targets recorded {list(take['momask_targets'])}")
    check(key_snapshot(obj, user) == before, "the user's action was changed")
    first, last = take.frame_range
    check((first, last) == (TARGETS[0], TARGETS[-1]), f"the take spans {first}-{last}")
    bones = keyed_bones(obj, take)
    check(len(bones) >= 18, f"the take keys only {bones}")
    error = rotation_error(obj, take, user, bones)
    report = job.data["takes"][0]["targets"]
    MADE[kind] = (obj, user)
    return {"max_error_deg": error, "bones": len(bones), "tokens": report["tokens"],
            "windows": report["windows"], **{f"tiny_model_{k}": v for k, v in
                                              seam_figures(obj, take, bones, report["windows"]).items()}}


def real_motion_pinned(kind: str) -> dict:
    (obj, user), = made(kind)
    rig, generated = solve(obj, JOINTS[:50], frame_count=TARGETS[-1] - TARGETS[0] + 1)
    poses = np.stack([rig_io.read_pose_matrices(obj, f, f + 1)[0] for f in TARGETS])
    actions.assign_action(obj, user)
    pinned = pin_to_keys(generated, rig, [f - TARGETS[0] for f in TARGETS], poses)
    take = keys.write_take(obj, pinned.result.to_dict(), TARGETS[0], f"{kind} real motion pinned")
    bones = sorted(b.name for b in pinned.result.bones)
    error = rotation_error(obj, take, user, bones)
    figures = seam_figures(obj, take, bones, pinned.windows)
    actions.assign_action(obj, user)
    return {"max_error_deg": error, "windows": list(pinned.windows), **figures}


def refused(words: str) -> str:
    """Run the operator, which must refuse with a message holding ``words``; returns the message."""
    try:
        result = bpy.ops.momask.generate_through_poses()
    except RuntimeError as err:
        message = str(err)
    else:
        raise AssertionError(f"the operator did not refuse ({result})")
    check(words in message and "Fix:" in message, f"message without '{words}' or a fix: {message}")
    return message


def bad_input(kind: str) -> dict:
    (obj, user), = made(kind)
    activate(obj)
    actions.assign_action(obj, user)
    before, names = key_snapshot(obj, user), set(bpy.data.actions)
    messages = {}
    S.inbetween_custom_range = True
    S.inbetween_start, S.inbetween_end = 1, 60
    S.pose_targets = "1, 30, 70"
    messages["outside"] = refused("outside the take's frames 1-60")
    S.pose_targets = "1, 4, 60"
    messages["one_token"] = refused("at least 5 frames apart")
    S.pose_targets = ""
    S.inbetween_start, S.inbetween_end = 100, 140
    messages["no_keys"] = refused("no keys in frames 100-140")
    S.inbetween_start, S.inbetween_end = 1, 300
    messages["too_long"] = refused("longer than")
    check(set(bpy.data.actions) == names, "a refusal made an action")
    check(obj.animation_data.action == user and key_snapshot(obj, user) == before,
          "a refusal changed the keys")
    S.inbetween_start, S.inbetween_end = 1, 60
    return messages


@case
def case_through_keyed_poses_metarig():
    return through_keyed_poses("metarig")


@case
def case_real_motion_pinned_metarig():
    return real_motion_pinned("metarig")


@case
def case_bad_input_metarig():
    return bad_input("metarig")


@case
def case_through_keyed_poses_mixamo():
    return through_keyed_poses("mixamo")


@case
def case_real_motion_pinned_mixamo():
    return real_motion_pinned("mixamo")


@case
def case_bad_input_mixamo():
    return bad_input("mixamo")


addon_utils.disable("momask_blender", default_set=True)
finish()
