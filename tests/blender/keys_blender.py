"""Inside real Blender: write takes and in-betweens onto a small armature and check every key.

Run by tests/momask_blender/anim/test_keys_blender.py (one Blender process per version): every check
is a case of ``tests/blender/cases.py`` (its JSON results are the wrapper's tests; the numeric checks
also record what they measured).
"""

from __future__ import annotations

import math
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import bpy
import numpy as np
import rigs  # tests/blender/rigs.py
from cases import Skip, case, finish

from momask_blender.anim import actions, armature, keys, rig_io, takes

BONE_MODES = {"hips": "QUATERNION", "spine": "XYZ", 'upper arm.L "x"': "AXIS_ANGLE",
              "forearm.L": "ZXY", "thigh": "QUATERNION"}



# ----------------------------------------------------------------------------------------------
# Fixtures: a rig with awkward names, rolls and all rotation modes; synthetic results


def make_rig(name: str = "Rig"):
    arm = bpy.data.armatures.new(name)
    obj = bpy.data.objects.new(name, arm)
    bpy.context.scene.collection.objects.link(obj)
    bpy.context.view_layer.objects.active = obj
    bpy.ops.object.mode_set(mode="EDIT")
    layout = {  # name: (parent, head, tail, roll)
        "hips": (None, (0, 0, 1), (0, 0.1, 1.15), 0.3),
        "spine": ("hips", (0, 0.02, 1.15), (0.05, 0, 1.45), 0.5),
        'upper arm.L "x"': ("spine", (0.2, 0, 1.4), (0.5, 0.1, 1.3), -0.7),
        "forearm.L": ('upper arm.L "x"', (0.5, 0.1, 1.3), (0.75, 0.05, 1.1), 1.1),
        "thigh": ("hips", (0.1, 0, 0.95), (0.12, 0.02, 0.5), 0.0),
    }
    for bone_name, (parent, head, tail, roll) in layout.items():
        bone = arm.edit_bones.new(bone_name)
        bone.head, bone.tail, bone.roll = head, tail, roll
        if parent:
            bone.parent = arm.edit_bones[parent]
    bpy.ops.object.mode_set(mode="OBJECT")
    for bone_name, mode in BONE_MODES.items():
        obj.pose.bones[bone_name].rotation_mode = mode
    obj.location, obj.rotation_euler, obj.scale = (1, 2, 0), (0, 0, 0.5), (2, 2, 2)
    return obj


def unit(v):
    v = np.asarray(v, dtype=np.float64)
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def synthetic_result(frames: int, fps: float, phase: float = 0.0, offset: float = 0.0) -> dict:
    """Smooth motion on every bone but 'thigh'; ``offset`` adds a constant extra rotation/translation."""
    t = np.arange(frames, dtype=np.float64)
    a = 0.6 * np.sin(0.15 * t + phase) + offset
    axis = unit([0.3, 0.8, 0.5])
    hips_q = np.concatenate([np.cos(a / 2)[:, None], np.sin(a / 2)[:, None] * axis], axis=1)
    spine_e = np.stack([0.4 * np.sin(0.1 * t + phase) + offset, 0.2 * np.cos(0.07 * t), 0.1 + 0 * t], axis=1)
    arm_angle = 0.8 * np.sin(0.05 * t + phase) + 0.9 + offset
    arm_aa = np.stack([arm_angle, 0 * t + 0.2, 0 * t + 0.9, 0 * t - 0.3], axis=1)
    fore_e = np.stack([0.3 + 0 * t, 0.5 * np.sin(0.2 * t + phase) + offset, -0.2 + 0 * t], axis=1)
    root = np.stack([0.01 * t, 0.2 * np.sin(0.1 * t + phase) + offset, 0.05 * np.cos(0.1 * t)], axis=1)
    return {
        "fps": fps, "frame_count": frames,
        "bones": [
            {"name": "hips", "channel": "rotation_quaternion", "values": hips_q},
            {"name": "spine", "channel": "rotation_euler", "values": spine_e},
            {"name": 'upper arm.L "x"', "channel": "rotation_axis_angle", "values": arm_aa},
            {"name": "forearm.L", "channel": "rotation_euler", "values": fore_e},
        ],
        "root": {"name": "hips", "location": root},
    }


def tracks(result):
    out = [(b["name"], b["channel"], np.asarray(b["values"])) for b in result["bones"]]
    return out + [(result["root"]["name"], "location", np.asarray(result["root"]["location"]))]


def channels_of(obj, action=None):
    action = action or obj.animation_data.action
    return actions.Channels(action, actions.object_slot(action, obj))


def all_fcurves(obj, action):
    return list(channels_of(obj, action).fcurves)


def snapshot(fcurve) -> dict:
    return keys._read_keys(fcurve.keyframe_points)


def evaluated_bone(obj, bone_name, frame):
    bpy.context.scene.frame_set(frame)
    depsgraph = bpy.context.evaluated_depsgraph_get()
    return obj.evaluated_get(depsgraph).pose.bones[bone_name]


# ----------------------------------------------------------------------------------------------
# numpy forward kinematics (independent of Blender's own math)


def quat_matrix(q):
    w, x, y, z = unit(q)
    return np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
                     [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
                     [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)]])


def axis_rotation(axis: str, angle: float):
    c, s = math.cos(angle), math.sin(angle)
    return {"X": np.array([[1, 0, 0], [0, c, -s], [0, s, c]]),
            "Y": np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]]),
            "Z": np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])}[axis]


def rotation_matrix(mode, values):
    if mode == "QUATERNION":
        return quat_matrix(values)
    if mode == "AXIS_ANGLE":
        angle, axis = values[0], unit(values[1:])
        return quat_matrix(np.concatenate([[math.cos(angle / 2)], math.sin(angle / 2) * axis]))
    by_axis = dict(zip("XYZ", values, strict=True))
    matrix = np.eye(3)
    for axis in mode:  # Blender's 'XYZ' applies X first: R = Rz @ Ry @ Rx
        matrix = axis_rotation(axis, by_axis[axis]) @ matrix
    return matrix


def numpy_fk(rig: dict, pose: dict) -> np.ndarray:
    """pose: bone → (location (3,), rotation values); returns armature-space pose matrices (n, 4, 4)."""
    rest = rig["rest_matrices"]
    out = np.zeros_like(rest)
    for i, (bone_name, parent) in enumerate(zip(rig["bone_names"], rig["parents"], strict=True)):
        basis = np.eye(4)
        location, rotation = pose.get(bone_name, (np.zeros(3), None))
        if rotation is not None:
            basis[:3, :3] = rotation_matrix(rig["rotation_modes"][i], rotation)
        basis[:3, 3] = location
        local = rest[i] if parent < 0 else out[parent] @ np.linalg.inv(rest[parent]) @ rest[i]
        out[i] = local @ basis
    return out


# ----------------------------------------------------------------------------------------------
# Checks

scene = bpy.context.scene
RIG = make_rig()


@case
def describe_armature_matches_blender():
    rig = rig_io.describe_armature(RIG)
    assert rig["bone_names"] == [b.name for b in RIG.data.bones]
    assert rig["parents"] == [-1, 0, 1, 2, 0], rig["parents"]
    for i, bone in enumerate(RIG.data.bones):
        assert np.allclose(rig["rest_matrices"][i], np.array(bone.matrix_local), atol=1e-6), bone.name
    assert np.allclose(rig["world_matrix"], np.array(RIG.matrix_world), atol=1e-6)
    assert rig["rotation_modes"] == list(BONE_MODES.values())
    assert np.allclose(rig["lengths"], [b.length for b in RIG.data.bones], atol=1e-6) and rig["name"] == "Rig"
    try:  # the backend accepts it as is
        from backend.retarget.rig import RigDescription
    except ImportError:  # the backend is not importable here; the format is still checked above
        RigDescription = None
    if RigDescription is not None:
        assert RigDescription.from_dict(rig).bone_names == rig["bone_names"]
    other = make_rig("Other")
    assert rig_io.armature_fingerprint(other) == rig_io.armature_fingerprint(RIG)
    bpy.context.view_layer.objects.active = other
    bpy.ops.object.mode_set(mode="EDIT")
    other.data.edit_bones.new("extra").tail = (0, 0, 1)
    bpy.ops.object.mode_set(mode="OBJECT")
    assert rig_io.armature_fingerprint(other) != rig_io.armature_fingerprint(RIG)
    bpy.data.objects.remove(other)
    bpy.context.view_layer.objects.active = RIG


def check_written(obj, action, result, frames):
    """Every driven channel keyed on the right path, frames, values, type, interpolation and group."""
    chans = channels_of(obj, action)
    for bone_name, prop, values in tracks(result):
        path = keys.bone_path(bone_name, prop)
        for i in range(values.shape[1]):
            fcurve = chans.find(path, i)
            assert fcurve is not None, f"no curve {path}[{i}]"
            data = snapshot(fcurve)
            assert np.array_equal(data["co"][:, 0], frames.astype(np.float32)), (path, data["co"][:3, 0])
            if prop == "rotation_quaternion":
                got = data["co"][:, 1]
                assert np.allclose(np.abs(got), np.abs(values[:, i]), atol=1e-6), path
            else:
                assert np.allclose(data["co"][:, 1], values[:, i], atol=1e-6), path
            assert {p.type for p in fcurve.keyframe_points} == {"GENERATED"}, path
            assert {p.interpolation for p in fcurve.keyframe_points} == {"LINEAR"}, path
            assert fcurve.group is not None and fcurve.group.name == bone_name, path
    keyed = {fc.data_path for fc in chans.fcurves}
    assert not any('"thigh"' in p for p in keyed), "a bone outside the result was keyed"


@case
def write_take_keys_at_scene_fps():
    for fps in (24, 30):
        scene.render.fps, scene.render.fps_base = fps, 1.0
        result = synthetic_result(40, float(fps))
        action = keys.write_take(RIG, result, 10, f"walk at {fps}")
        ad = RIG.animation_data
        assert ad.action == action, "take not assigned"
        if actions.is_slotted(action):
            assert ad.action_slot is not None and ad.action_slot == action.slots[0], "slot not bound"
            assert not hasattr(action, "fcurves") or bpy.app.version < (5, 0, 0)
        check_written(RIG, action, result, 10 + np.arange(40))
        bone = evaluated_bone(RIG, "hips", 10 + 7)  # the rig really moves by the keys
        q = np.array(bone.rotation_quaternion)
        assert np.allclose(np.abs(q), np.abs(result["bones"][0]["values"][7]), atol=1e-5), q
        assert takes.take_info(action)["fps"] == fps
    # the scene changed fps while the job ran: keys land at the same times, not the same frames
    scene.render.fps = 24
    action = keys.write_take(RIG, synthetic_result(10, 30.0), 0, "changed fps")
    check_written(RIG, action, synthetic_result(10, 30.0), np.arange(10) * 0.8)


@case
def take_names_are_unique_and_short():
    prompt = "a person walks forward slowly, then turns around and waves with both hands — très énergique "
    prompt *= 2
    first = keys.write_take(RIG, synthetic_result(5, 24.0), 1, prompt)
    second = keys.write_take(RIG, synthetic_result(5, 24.0), 1, prompt)
    for action in (first, second):
        assert len(action.name.encode("utf-8")) <= 63, action.name
        assert action.name.startswith("a person walks forward"), action.name
    assert first.name != second.name, (first.name, second.name)
    assert takes.take_info(first)["prompt"] == prompt


@case
def read_pose_matrices_matches_numpy_fk():
    scene.render.fps = 24
    result = synthetic_result(30, 24.0)
    keys.write_take(RIG, result, 5, "fk check")
    scene.frame_set(3)
    matrices = rig_io.read_pose_matrices(RIG, 5, 35)
    assert matrices.shape == (30, 5, 4, 4), matrices.shape
    assert scene.frame_current == 3, "current frame not restored"
    rig = rig_io.describe_armature(RIG)
    by_bone = {name: values for name, _, values in tracks(result) if name}
    errors = []
    for t in range(30):
        pose = {name: (np.zeros(3), by_bone[name][t]) for name in by_bone if name != "hips"}
        pose["hips"] = (result["root"]["location"][t], result["bones"][0]["values"][t])
        expected = numpy_fk(rig, pose)
        errors.append(float(np.abs(matrices[t] - expected).max()))
        assert errors[-1] < 1e-5, f"frame {t}: {errors[-1]}"
    return {"max_error": max(errors)}


@case
def failure_mid_write_keeps_previous_action():
    before_action = RIG.animation_data.action
    before_slot = RIG.animation_data.action_slot if actions.is_slotted(before_action) else None
    names = {a.name for a in bpy.data.actions}
    real = keys._write_track
    calls = []

    def failing(*args):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("disk full (simulated)")
        return real(*args)

    keys._write_track = failing
    try:
        keys.write_take(RIG, synthetic_result(20, 24.0), 1, "doomed take")
        raise AssertionError("write_take did not raise")
    except RuntimeError as err:
        assert "simulated" in str(err)
    finally:
        keys._write_track = real
    assert len(calls) == 3
    assert RIG.animation_data.action == before_action
    if before_slot is not None:
        assert RIG.animation_data.action_slot == before_slot
    assert {a.name for a in bpy.data.actions} == names, "an orphan action was left behind"
    bad = synthetic_result(20, 24.0)
    bad["bones"][1]["name"] = "no such bone"
    try:
        keys.write_take(RIG, bad, 1, "bad rig")
        raise AssertionError("a missing bone was not reported")
    except armature.RigError as err:
        assert "no such bone" in str(err) and "Fix:" in str(err)
    assert {a.name for a in bpy.data.actions} == names
    RIG.pose.bones["spine"].rotation_mode = "QUATERNION"  # the user changed the rig during the job
    try:
        keys.write_take(RIG, synthetic_result(20, 24.0), 1, "stale rig")
        raise AssertionError("a changed rotation mode was not reported")
    except armature.RigError as err:
        assert "spine" in str(err)
    finally:
        RIG.pose.bones["spine"].rotation_mode = "XYZ"
    assert {a.name for a in bpy.data.actions} == names and RIG.animation_data.action == before_action
    gone = make_rig("Deleted")
    bpy.data.objects.remove(gone)  # the user deleted the armature while the job ran
    bpy.context.view_layer.objects.active = RIG
    try:
        keys.write_take(gone, synthetic_result(20, 24.0), 1, "orphan")
        raise AssertionError("writing onto a deleted armature did not raise")
    except armature.MoMaskError as err:
        assert "deleted" in str(err)
    assert {a.name for a in bpy.data.actions} == names


def evaluated_value(obj, key, frames):
    path, index = key
    bone_name = path.split('"]')[0].split('["')[1].replace('\\"', '"')
    prop = path.rsplit(".", 1)[1]
    return np.array([getattr(evaluated_bone(obj, bone_name, f), prop)[index] for f in frames])


def evaluated_quaternion(obj, frame):
    return np.array(evaluated_bone(obj, "hips", frame).rotation_quaternion)


def result_value(result, key, frame):
    path, index = key
    for bone_name, prop, values in tracks(result):
        if keys.bone_path(bone_name, prop) == path:
            return values[frame, index]
    raise KeyError(path)


def user_action(obj):
    """A hand-keyed action: sparse Bezier keys on driven and undriven channels, like an animator's."""
    obj.animation_data_clear()
    pose = obj.pose.bones
    for frame in range(0, 61, 5):
        s = math.sin(frame * 0.1)
        pose["hips"].rotation_quaternion = tuple(unit([1.0, 0.2 * s, 0.1, 0.3 * s]))
        pose["hips"].location = (0.01 * frame, 0.1 * s, 0.0)
        pose["spine"].rotation_euler = (0.3 * s, 0.1, -0.2 * s)
        pose["thigh"].rotation_quaternion = tuple(unit([1.0, 0.4 * s, 0.0, 0.0]))
        for bone_name, prop in (("hips", "rotation_quaternion"), ("hips", "location"),
                                ("spine", "rotation_euler"), ("thigh", "rotation_quaternion")):
            pose[bone_name].keyframe_insert(prop, frame=frame, group=bone_name)
    action = obj.animation_data.action
    action.name = "My hand-made walk"
    chans = channels_of(obj, action)
    chans.fcurves[0].keyframe_points[2].handle_left_type = "FREE"  # an animator's tweak
    chans.fcurves[0].keyframe_points[2].handle_left = (7.0, 0.5)
    pose['upper arm.L "x"'].rotation_axis_angle = (0.4, 0.0, 1.0, 0.0)  # posed, not animated
    return action


def angle_between(q0, q1):
    return 2 * math.acos(min(1.0, abs(float(np.dot(unit(q0), unit(q1))))))


@case
def inbetween_keeps_outside_keys_and_blends():
    scene.render.fps = 24
    source = user_action(RIG)
    original = {(fc.data_path, fc.array_index): snapshot(fc) for fc in all_fcurves(RIG, source)}
    before = {key: evaluated_value(RIG, key, range(0, 61)) for key in original}
    # the backend's in-between: the same kind of motion, visibly different inside the range
    result = synthetic_result(61, 24.0, phase=0.0, offset=0.5)
    lo, hi = 20, 40
    take = keys.write_inbetween(RIG, result, lo, hi, blend_frames=4, result_start=0, prompt="jump")
    assert take != source and RIG.animation_data.action == take
    assert bpy.data.actions.get(source.name) == source and source.use_fake_user
    info = takes.take_info(take)
    assert info["kind"] == "inbetween" and info["source"] == source.name and info["range"] == [lo, hi]
    # the source action is untouched, bit for bit
    for fcurve in all_fcurves(RIG, source):
        now = snapshot(fcurve)
        for prop, array in original[(fcurve.data_path, fcurve.array_index)].items():
            assert np.array_equal(now[prop], array), ("source changed", fcurve.data_path, prop)
    # in the take: keys outside [lo, hi) bit-identical, keys inside on every frame
    new_curves = {(fc.data_path, fc.array_index): fc for fc in all_fcurves(RIG, take)}
    for key, old in original.items():
        now = snapshot(new_curves[key])
        outside_old = (old["co"][:, 0] < lo) | (old["co"][:, 0] >= hi)
        outside_new = (now["co"][:, 0] < lo) | (now["co"][:, 0] >= hi)
        for prop in old:
            same = np.array_equal(now[prop][outside_new], old[prop][outside_old])
            assert same, ("changed outside", key, prop)
        driven = '"thigh"' not in key[0]
        inside = now["co"][~outside_new, 0]
        if driven:
            assert np.array_equal(inside, np.arange(lo, hi, dtype=np.float32)), (key, inside)
        else:
            assert np.array_equal(now["co"], old["co"]), ("undriven channel changed", key)
    # frames far from the seams carry the new motion exactly
    spine = new_curves[(keys.bone_path("spine", "rotation_euler"), 0)]
    assert abs(spine.evaluate(30) - result["bones"][1]["values"][30, 0]) < 1e-5
    # a channel that was only posed gets held at its pose outside the range
    arm_angle = new_curves[(keys.bone_path('upper arm.L "x"', "rotation_axis_angle"), 0)]
    assert abs(arm_angle.evaluate(5) - 0.4) < 1e-6 and abs(arm_angle.evaluate(55) - 0.4) < 1e-6
    # seams: the step across each boundary is close to the motion's own per-frame change
    after = {key: evaluated_value(RIG, key, range(0, 61)) for key in original}
    for key in original:
        if '"thigh"' in key[0]:
            continue
        old, new = before[key], after[key]
        assert np.array_equal(old[:lo], new[:lo]) and np.array_equal(old[hi:], new[hi:]), key
        natural = np.abs(np.diff(old)).max()
        for seam in (lo, lo + 1, hi - 1, hi):
            near = range(seam - 2, seam + 2)  # without blending the step would be up to this
            unblended_jump = max(abs(result_value(result, key, f) - old[f]) for f in near)
            step = abs(new[seam] - new[seam - 1])
            assert step <= natural + 0.15 * unblended_jump + 1e-4, (key, seam, step, natural, unblended_jump)
    q = {f: evaluated_quaternion(RIG, f) for f in (lo - 1, lo, lo + 1, hi - 2, hi - 1, hi)}
    for f in (lo, lo + 1, hi - 1, hi):
        assert angle_between(q[f - 1], q[f]) < 0.12, ("hips rotation jumps at a seam", f)
    assert angle_between(q[lo], q[lo + 1]) > 0 and angle_between(evaluated_quaternion(RIG, 30),
                                                                  evaluated_quaternion(RIG, 31)) > 0
    # the original stays selectable: re-applying it restores the hand-made motion
    takes.apply_take(RIG, source)
    assert RIG.animation_data.action == source


@case
def inbetween_on_a_generated_take():
    """The usual flow: generate, then regenerate a middle range of that take."""
    scene.render.fps = 30
    base = keys.write_take(RIG, synthetic_result(60, 30.0), 0, "walk")
    before = {(fc.data_path, fc.array_index): snapshot(fc) for fc in all_fcurves(RIG, base)}
    values_before = {key: evaluated_value(RIG, key, range(60)) for key in before}
    lo, hi = 22, 37
    take = keys.write_inbetween(RIG, synthetic_result(hi - lo, 30.0, offset=0.4), lo, hi, prompt="wave")
    assert RIG.animation_data.action == take and takes.list_takes(RIG)[-1] == take
    for fcurve in all_fcurves(RIG, base):  # the base take is untouched
        assert np.array_equal(snapshot(fcurve)["co"], before[(fcurve.data_path, fcurve.array_index)]["co"])
    for key in before:
        now = evaluated_value(RIG, key, range(60))
        assert np.array_equal(now[:lo], values_before[key][:lo]), ("motion changed before the range", key)
        assert np.array_equal(now[hi:], values_before[key][hi:]), ("motion changed after the range", key)
    # deleting the in-between falls back to the take it edited
    takes.delete_take(RIG, take)
    assert RIG.animation_data.action == base


@case
def takes_apply_compare_delete():
    scene.render.fps = 24
    for action in list(bpy.data.actions):
        bpy.data.actions.remove(action)
    RIG.animation_data_clear()
    mine = user_action(RIG)
    a = keys.write_take(RIG, synthetic_result(20, 24.0, phase=0.0), 1, "take A", seed=7)
    b = keys.write_take(RIG, synthetic_result(20, 24.0, phase=1.5), 1, "take B", seed=8)
    assert takes.list_takes(RIG) == [a, b], [t.name for t in takes.list_takes(RIG)]
    assert takes.original_action(RIG) == mine and mine.use_fake_user
    assert a.use_fake_user and b.use_fake_user
    info = takes.take_info(a)
    assert info["seed"] == 7 and info["kind"] == "generate" and info["frames"] == 20 and info["created"]
    qa = synthetic_result(20, 24.0, phase=0.0)["bones"][0]["values"][9]
    qb = synthetic_result(20, 24.0, phase=1.5)["bones"][0]["values"][9]

    def hips_now():
        return np.array(evaluated_bone(RIG, "hips", 10).rotation_quaternion)

    takes.apply_take(RIG, a)
    assert RIG.animation_data.action == a and np.allclose(np.abs(hips_now()), np.abs(qa), atol=1e-5)
    track = takes.compare_takes(RIG, a, b)
    assert track.mute and RIG.animation_data.action == a
    assert np.allclose(np.abs(hips_now()), np.abs(qa), atol=1e-5), "A/B: A not shown"
    takes.show_compare(RIG, "b")
    assert np.allclose(np.abs(hips_now()), np.abs(qb), atol=1e-5), "A/B: B not shown"
    takes.show_compare(RIG, "a")
    assert np.allclose(np.abs(hips_now()), np.abs(qa), atol=1e-5), "A/B: back to A failed"
    takes.end_compare(RIG)
    assert len(RIG.animation_data.nla_tracks) == 0
    takes.apply_take(RIG, b)
    takes.delete_take(RIG, b)  # active: falls back to the previous take
    assert bpy.data.actions.get("take B") is None and RIG.animation_data.action == a
    takes.delete_take(RIG, a)  # the last take: back to the user's own action
    assert RIG.animation_data.action == mine and takes.list_takes(RIG) == []
    try:
        takes.delete_take(RIG, mine)
        raise AssertionError("deleted the user's own action")
    except armature.MoMaskError:
        pass
    assert bpy.data.actions.get(mine.name) == mine


def pose_values(obj) -> dict:
    """Every pose bone's channels and the object's transform, as plain lists (what a user set)."""
    out = {f"{b.name}.{prop}": [round(v, 6) for v in getattr(b, prop)] for b in obj.pose.bones
           for prop in ("location", "rotation_quaternion", "rotation_euler", "rotation_axis_angle", "scale")}
    out.update({f"object.{prop}": [round(v, 6) for v in getattr(obj, prop)]
                for prop in ("location", "rotation_euler", "scale")})
    return out


def hand_pose(obj) -> None:
    """A hand-made pose on the channels a take keys and on ones nothing keys."""
    pose = obj.pose.bones
    pose["spine"].rotation_euler = (0.2, -0.1, 0.3)
    pose['upper arm.L "x"'].rotation_axis_angle = (0.5, 1.0, 0.0, 0.0)
    pose["forearm.L"].rotation_euler = (-0.4, 0.2, 0.1)
    pose["forearm.L"].scale = (1.1, 0.9, 1.0)
    pose["thigh"].rotation_quaternion = tuple(unit([1.0, 0.0, 0.3, 0.0]))


@case
def reading_another_action_keeps_the_rigs_pose():
    """Copy Take / Apply Motion read an action the rig does not play (``sources.read_action``): the
    rig's pose and transform are as before, on a rig whose own action keys only some bones and on one
    with no action but a hand-set pose."""
    from momask_blender.anim import sources

    bpy.context.scene.render.fps = 24
    bpy.context.scene.frame_set(3)
    changed = {}
    for label in ("own action", "no action"):
        obj = make_rig(f"Keeper {label}")
        take = keys.write_take(obj, synthetic_result(20, 24.0, phase=0.7), 1, f"take for {label}")
        if label == "own action":
            mine = user_action(obj)        # keys hips and spine only; the arm is posed, not keyed
            assert obj.animation_data.action == mine
        else:
            obj.animation_data_clear()
        hand_pose(obj)
        if label == "own action":
            bpy.context.scene.frame_set(3)  # what the rig shows now: its action on the keyed channels
        before = pose_values(obj)
        motion = sources.read_action(obj, take)
        assert motion.frames == 20, motion.frames
        after = pose_values(obj)
        changed[label] = sorted(k for k in before if not np.allclose(before[k], after[k], atol=1e-5))
        playing = obj.animation_data.action if obj.animation_data else None
        assert playing == (mine if label == "own action" else None), playing
    assert not any(changed.values()), f"the pose changed: {changed}"
    return {"changed": changed}


def object_place(obj) -> np.ndarray:
    return np.concatenate([obj.location, obj.rotation_euler, obj.scale])


@case
def object_root_motion_take_leaves_the_object_in_place():
    """A Root Motion "Object" take moves the armature object; applying the user's action again,
    deleting the take, or applying a plain take puts the object back where the user had it."""
    scene = bpy.context.scene
    scene.render.fps = 24
    obj = make_rig("Traveller")
    mine = user_action(obj)
    place = object_place(obj)
    frames = 20
    t = np.arange(frames, dtype=np.float64)
    travel = synthetic_result(frames, 24.0)
    travel["root_motion"] = {"mode": "object",
                             "location": np.stack([0.1 * t, 0.05 * t, 0 * t], axis=1),
                             "rotation_quaternion": np.stack([np.cos(0.02 * t), 0 * t, 0 * t,
                                                              np.sin(0.02 * t)], axis=1)}
    moved = keys.write_take(obj, travel, 1, "travel")
    plain = keys.write_take(obj, synthetic_result(frames, 24.0, phase=0.4), 1, "plain")
    def keys_object(action):
        return any(fc.data_path == "location" for fc in all_fcurves(obj, action))

    assert keys_object(moved) and not keys_object(plain)
    off = {}
    for label, back in (("original", lambda: takes.apply_take(obj, mine)),
                        ("plain take", lambda: takes.apply_take(obj, plain)),
                        ("delete", lambda: takes.delete_take(obj, moved))):
        takes.apply_take(obj, moved)
        scene.frame_set(15)
        assert np.abs(object_place(obj) - place).max() > 0.5, "the take did not move the object"
        back()
        scene.frame_set(15)
        off[label] = float(np.abs(object_place(obj) - place).max())
    assert bpy.data.actions.get("travel") is None and not keys_object(obj.animation_data.action)
    assert max(off.values()) < 1e-5, f"the object stayed moved: {off}"
    return {"offset": off}


@case
def prompt_markers_are_kept_per_armature():
    """Two armatures play composed takes: applying a take on rig B replaces B's prompt markers on the
    timeline only; rig A's and the user's own stay."""
    from momask_blender.anim import segments

    scene = bpy.context.scene
    scene.render.fps = 24
    scene.timeline_markers.clear()
    scene.timeline_markers.new("my marker").frame = 5
    composed = {}
    for label, prompts in (("A", ("a person waves", "a person sits")), ("B", ("a person jumps",))):
        obj = make_rig(f"Marker rig {label}")
        plain = keys.write_take(obj, synthetic_result(20, 24.0), 1, f"plain {label}")
        take = keys.write_take(obj, synthetic_result(20, 24.0, phase=0.3), 1, f"composed {label}")
        rows = [{"prompt": p, "seed": 1, "start": 10 * i, "end": 10 * (i + 1)} for i, p in enumerate(prompts)]
        segments.store_composition(take, rows, None, 1, kind="sequence")
        segments.write_segment_markers(take)
        takes.apply_take(obj, take)
        composed[label] = (obj, take, plain)

    def shown():
        return sorted((m.name, int(m.frame)) for m in scene.timeline_markers)

    both = shown()
    assert both == [("1: a person jumps", 1), ("1: a person waves", 1), ("2: a person sits", 11),
                    ("my marker", 5)], both
    obj_b, take_b, plain_b = composed["B"]
    takes.apply_take(obj_b, plain_b)               # rig B plays a take without prompts
    after_b = shown()
    assert after_b == [("1: a person waves", 1), ("2: a person sits", 11), ("my marker", 5)], after_b
    takes.apply_take(obj_b, take_b)
    assert shown() == both, shown()
    obj_a, _, plain_a = composed["A"]
    takes.apply_take(obj_a, plain_a)
    after_a = shown()
    assert after_a == [("1: a person jumps", 1), ("my marker", 5)], after_a
    return {"markers": after_a}


@case
def too_long_a_source_is_refused_before_reading():
    """An action longer than sources.MAX_SOURCE_SECONDS is refused at once, naming the fix (a Manual
    Frame Range), without stepping through its frames."""
    import time

    from momask_blender.anim import sources

    scene = bpy.context.scene
    scene.render.fps, scene.render.fps_base = 24, 1.0
    scene.frame_set(7)
    obj = make_rig("Long source")
    obj.animation_data_clear()
    hips = obj.pose.bones["hips"]
    longest = int(sources.MAX_SOURCE_SECONDS * 24)
    for frame, angle in ((1, 0.0), (longest + 10, 0.5)):
        hips.rotation_quaternion = (math.cos(angle), math.sin(angle), 0.0, 0.0)
        hips.keyframe_insert("rotation_quaternion", frame=frame)
    action = obj.animation_data.action
    stepped = []

    def step(scene, *_):                  # (a handler must be a Python function)
        stepped.append(scene.frame_current)

    bpy.app.handlers.frame_change_pre.append(step)
    began = time.perf_counter()
    try:
        sources.read_action(obj, action)
        raise AssertionError(f"a {longest + 10}-frame source was read")
    except armature.MoMaskError as exc:
        message, fix = exc.problem, exc.fix
    finally:
        bpy.app.handlers.frame_change_pre.remove(step)
    seconds = time.perf_counter() - began
    assert f"{sources.MAX_SOURCE_SECONDS:g} s" in message and "Manual Frame Range" in fix, (message, fix)
    assert not stepped and scene.frame_current == 7, f"{len(stepped)} frames stepped before refusing"
    return {"message": message, "fix": fix, "seconds": seconds, "frames_stepped": len(stepped)}


@case
def real_retarget_result_on_real_rigs():
    """The backend's own RetargetResult (real clip, 30 fps) written onto the rigs users have."""

    from backend.motion.features import recover_from_ric
    from backend.retarget.inverse import pose_matrices_from_basis
    from backend.retarget.mapping import auto_map
    from backend.retarget.rig import RigDescription
    from backend.retarget.solver import retarget

    for name in ("humanml3d_000612.npy", "template.bvh"):
        if (reason := rigs.missing_shared_data(name)) is not None:
            raise Skip(reason)
    joints = recover_from_ric(np.load(rigs.shared_file("humanml3d_000612.npy"))).astype(np.float64)[:60]
    builders = {"rigify_metarig": rigs.make_rigify_metarig,
                "template_bvh": rigs.import_template_bvh,
                "mixamo": lambda: rigs.make_mixamo_rig(a_pose=True)}
    errors = {}
    for name, build in builders.items():
        bpy.ops.wm.read_factory_settings(use_empty=True)
        bpy.context.scene.render.fps = 30
        obj = build()
        described = rig_io.describe_armature(obj)
        twin = rigs.describe_armature(obj)
        assert described["bone_names"] == twin["bone_names"] and described["parents"] == twin["parents"]
        assert np.allclose(described["rest_matrices"], twin["rest_matrices"], atol=1e-5), name
        rig = RigDescription.from_dict(described)
        result = retarget(joints, rig, auto_map(rig), dst_fps=30.0, foot_lock=False)  # no scipy in bpy
        action = keys.write_take(obj, result.to_dict(), 1, f"real clip on {name}")
        assert obj.animation_data.action == action
        posed = rig_io.read_pose_matrices(obj, 1, 1 + result.frame_count)
        expected = pose_matrices_from_basis(rig, result)
        size = np.abs(rig.rest_matrices[:, :3, 3]).max() + 1.0  # armature units (cm on Mixamo)
        errors[name] = float(np.abs(posed - expected).max() / size)
        assert errors[name] < 1e-5, (name, errors[name])
    return {"relative_error": errors}


finish()
