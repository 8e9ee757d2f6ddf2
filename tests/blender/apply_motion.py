"""Apply Motion and Copy Take in real Blender, through the panel's operators, against a real backend.

Run by tests/momask_blender/ui/test_apply_motion.py: ``<bpy python> apply_motion.py WEIGHTS_DIR OUT.json``.
The motion is the official template.bvh (720 frames at 60 fps); the scene runs at 30 fps, so every take
is resampled. Each case measures what Blender then shows: the rig's evaluated pose read back as 22
joints and compared with the BVH's own (mean bone-direction error, backend/retarget/metrics.py), and
what else changed in the file (nothing but the new takes; one undo step removes them).
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
import numpy as np  # noqa: E402
import rigs  # noqa: E402
from cases import ARGS, MADE, case, check, finish, made  # noqa: E402

from backend.retarget import metrics  # noqa: E402
from backend.retarget.inverse import joints_from_pose  # noqa: E402
from backend.retarget.mapping import auto_map  # noqa: E402
from backend.retarget.resample import resample_positions  # noqa: E402
from backend.retarget.rig import RigDescription  # noqa: E402

WEIGHTS = ARGS[0]
TMP = Path(tempfile.mkdtemp(prefix="momask_apply_"))
BVH = rigs.shared_file("template.bvh")
FPS = 30

PREFS = rigs.start_momask(WEIGHTS, "io_anim_bvh", "io_scene_fbx")
from momask_blender.anim import actions, rig_io, takes  # noqa: E402
from momask_blender.remote import jobs  # noqa: E402

bpy.context.scene.render.fps, bpy.context.scene.render.fps_base = FPS, 1.0


def settings():
    """The scene's Apply Motion settings, fetched each time (an undo replaces the scene)."""
    return bpy.context.scene.momask_apply


def activate(obj, *others) -> None:
    for other in bpy.context.view_layer.objects:
        other.select_set(False)
    for other in others:
        other.select_set(True)
    obj.select_set(True)
    bpy.context.view_layer.objects.active = obj


def data_ids() -> dict[str, set[str]]:
    """Every datablock of the kinds an importer makes, by name."""
    names = ("objects", "armatures", "meshes", "materials", "images", "textures", "actions", "collections",
             "curves", "node_groups", "cameras", "lights")
    return {n: {i.name for i in getattr(bpy.data, n)} for n in names}


def scene_state() -> dict:
    scene = bpy.context.scene
    return {"fps": (scene.render.fps, scene.render.fps_base), "range": (scene.frame_start, scene.frame_end),
            "frame": scene.frame_current, "active": bpy.context.view_layer.objects.active.name,
            "mode": bpy.context.view_layer.objects.active.mode,
            "selected": sorted(o.name for o in bpy.context.selected_objects)}


def keys_of(obj, action) -> dict:
    fcurves = actions.Channels(action, actions.object_slot(action, obj)).fcurves
    return {(fc.data_path, fc.array_index): [tuple(p.co) for p in fc.keyframe_points] for fc in fcurves}


def user_action(obj, name: str):
    """An action of the user's own on ``obj``: two keyed poses."""
    bone = obj.pose.bones[0]
    bone.rotation_mode = "QUATERNION"
    for frame, angle in ((1, 0.0), (12, 0.4)):
        bone.rotation_quaternion = (np.cos(angle / 2), np.sin(angle / 2), 0.0, 0.0)
        bone.keyframe_insert("rotation_quaternion", frame=frame)
    obj.animation_data.action.name = name
    return obj.animation_data.action


def the_bvh_motion() -> np.ndarray:
    """template.bvh's armature and its motion as 22 joints, per BVH frame and at the scene's fps, read
    from Blender's own import of it."""
    obj = rigs.import_template_bvh()
    fps = 1.0 / 0.016667
    first, end = 1, 721
    pose = rig_io.read_pose_matrices(obj, first, end)
    rig = RigDescription.from_dict(rig_io.describe_armature(obj))
    joints = joints_from_pose(rig, auto_map(rig), pose, reproportion=False)
    return obj, joints, resample_positions(joints, fps, FPS)


def shown_joints(obj, action) -> np.ndarray:
    """The 22 joints ``obj`` shows playing ``action`` over its frames (Blender's evaluation)."""
    first, last = (int(round(v)) for v in action.frame_range)
    rig = RigDescription.from_dict(rig_io.describe_armature(obj))
    return joints_from_pose(rig, auto_map(rig), rig_io.read_pose_matrices(obj, first, last + 1),
                            reproportion=False)


def run_operator(op, *args) -> jobs.Job | None:
    """Call a panel operator; return the job it submitted (None when it refused), after it is applied."""
    before = list(jobs.STATE.light)
    try:
        result = op(*args)
    except RuntimeError:          # an operator called from Python raises when it reports an error
        result = {"CANCELLED"}
    new = [j for j in jobs.STATE.light if j not in before]
    if result != {"FINISHED"}:
        check(not new, f"{op} refused ({result}) yet submitted a job")
        return None
    check(len(new) == 1, f"{op} submitted {len(new)} jobs")
    MADE["state_while_pending"] = (data_ids(), scene_state())
    jobs.wait(300)
    return new[0]


def compare(source: np.ndarray, shown: np.ndarray) -> float:
    n = min(len(source), len(shown))
    check(abs(len(source) - len(shown)) <= 1, f"{len(shown)} frames shown, the source has {len(source)}")
    return metrics.bone_direction_error(shown[:n], source[:n])


def apply_onto(rig, label: str, mode: str = "OBJECT") -> dict:
    """Apply Motion from the file in ``settings().filepath`` onto ``rig``; check what a user would."""
    own = user_action(rig, f"{label} own")
    own_keys, own_name = keys_of(rig, own), own.name
    activate(rig)
    bpy.ops.object.mode_set(mode=mode)            # the user may be posing the rig: the import must not mind
    ids, state = data_ids(), scene_state()
    bpy.ops.ed.undo_push(message="before Apply Motion")
    job = run_operator(bpy.ops.momask.apply_motion)
    check(job is not None, f"Apply Motion refused: {jobs.STATE.error}")
    pending_ids, pending_state = MADE.pop("state_while_pending")
    check(pending_ids == ids, f"the import left data behind: { {k: pending_ids[k] ^ ids[k] for k in ids} }")
    check(pending_state == state, f"the scene changed: {pending_state} != {state}")
    check(job.state == "applied", f"{job.state}: {job.error} {jobs.STATE.error}")
    check(job.applied_by == "momask.apply_result", f"written by {job.applied_by}, not one undo step")
    take = rig.animation_data.action
    check(takes.is_take(take) and take.name in job.made_actions, f"the rig plays {take}, not the new take")
    after = data_ids()
    check(after["actions"] - ids["actions"] == {take.name} and all(after[k] == ids[k] for k in ids
                                                                   if k != "actions"),
          f"more than the take changed: { {k: after[k] ^ ids[k] for k in ids} }")
    check(scene_state() == state, "the scene settings changed")
    check(keys_of(rig, own) == own_keys, "the user's own action changed")
    error = compare(SOURCE, shown_joints(rig, take))
    name = rig.name
    frames = take.frame_range[1] - take.frame_range[0] + 1
    bpy.ops.ed.undo()                                    # one Ctrl+Z takes the whole take back
    rig = bpy.data.objects[name]
    left = [a for a in job.made_actions if bpy.data.actions.get(a) is not None]
    check(not left, f"one undo left the take {left}")
    playing = rig.animation_data.action
    check(playing is not None and playing.name == own_name, "after undo the rig does not play its own action")
    bpy.ops.ed.redo()
    rig = bpy.data.objects[name]
    check(all(bpy.data.actions.get(a) for a in job.made_actions), "redo did not bring the take back")
    active = bpy.context.view_layer.objects.active
    if active is not None and active.mode != "OBJECT":
        bpy.ops.object.mode_set(mode="OBJECT")
    return {"bone_direction_deg": error, "frames": frames, "source_frames": len(SOURCE)}


_mocap, NATIVE, SOURCE = the_bvh_motion()
_mocap.name = "Mocap"
_mocap.location.x = 3.0


def mocap_rig():
    """The BVH's armature, kept in the scene (fetched by name: an undo replaces every object)."""
    return bpy.data.objects["Mocap"]


@case
def case_bvh_onto_rigify_metarig():
    rig = rigs.make_rigify_metarig()
    settings().source, settings().filepath = "FILE", str(BVH)
    MADE["metarig"] = rig.name
    return apply_onto(rig, "metarig")


@case
def case_bvh_onto_mixamo_a_pose():
    rig = rigs.make_mixamo_rig(a_pose=True)
    rig.name = "Mixamo"
    rig.location.x = -2.0
    settings().source, settings().filepath = "FILE", str(BVH)
    MADE["mixamo"] = rig.name
    return apply_onto(rig, "mixamo", mode="POSE")


def skinned_mesh(armature):
    """A mesh with one vertex at each bone's head, skinned to it (vertex group + Armature modifier)."""
    import bmesh

    mesh = bpy.data.meshes.new("Skin")
    bm = bmesh.new()
    for bone in armature.data.bones:
        bm.verts.new(bone.head_local)
    bm.to_mesh(mesh)
    bm.free()
    skin = bpy.data.objects.new("Skin", mesh)
    bpy.context.scene.collection.objects.link(skin)
    for i, bone in enumerate(armature.data.bones):
        skin.vertex_groups.new(name=bone.name).add([i], 1.0, "REPLACE")
    skin.parent = armature
    skin.modifiers.new("Armature", "ARMATURE").object = armature
    return skin


@case
def case_fbx_onto_rigify_metarig():
    # An FBX with the BVH's motion, written by Blender's FBX exporter from the imported BVH rig.
    scene = bpy.context.scene
    path = TMP / "template_motion.fbx"
    saved = scene.render.fps, scene.frame_start, scene.frame_end
    scene.render.fps, scene.frame_start, scene.frame_end = 60, 1, 720
    mocap = mocap_rig()
    location = mocap.location.copy()
    mocap.location = (0.0, 0.0, 0.0)
    skin = skinned_mesh(mocap)          # a character FBX: its skin carries the skeleton's bind pose
    activate(mocap, skin)
    bpy.ops.export_scene.fbx(filepath=str(path), use_selection=True, object_types={"ARMATURE", "MESH"},
                             bake_anim=True, add_leaf_bones=False, bake_anim_use_all_actions=False,
                             bake_anim_use_nla_strips=False, bake_anim_simplify_factor=0.0)
    bpy.data.meshes.remove(skin.data)
    mocap.location = location
    scene.render.fps, scene.frame_start, scene.frame_end = saved
    check(path.is_file(), "the FBX exporter wrote nothing")
    rig = rigs.make_rigify_metarig()
    rig.name = "metarig FBX"
    rig.location.y = 3.0
    settings().source, settings().filepath = "FILE", str(path)
    return apply_onto(rig, "metarig fbx")       # the importer sets 60 fps; the scene must stay at 30


@case
def case_another_armatures_action_onto_mixamo():
    (mixamo,) = made("mixamo")
    rig = bpy.data.objects[mixamo]
    mocap = mocap_rig()
    motion = mocap.animation_data.action
    mocap_keys = keys_of(mocap, motion)
    # The source plays another action of its own; the one applied is picked explicitly.
    idle = motion.copy()
    idle.name = "Mocap idle"
    actions.assign_action(mocap, idle)
    activate(rig)
    settings().source = "ARMATURE"
    settings().armature, settings().action = mocap, motion
    check(settings().armature == mocap, "the source armature cannot be picked")
    count = len(takes.list_takes(rig))
    job = run_operator(bpy.ops.momask.apply_motion)
    check(job is not None and job.state == "applied", f"{job and job.state}: {jobs.STATE.error}")
    check(len(takes.list_takes(rig)) == count + 1, "no new take")
    check(mocap.animation_data.action == idle, "the source armature no longer plays its own action")
    check(keys_of(mocap, motion) == mocap_keys, "the applied action changed")
    take = rig.animation_data.action
    # The action plays one BVH frame per scene frame, so the take has its 720 frames too.
    error = compare(NATIVE, shown_joints(rig, take))
    actions.assign_action(mocap, motion)
    bpy.data.actions.remove(idle)
    return {"bone_direction_deg": error}


@case
def case_copy_take_to_selected():
    (metarig, mixamo) = made("metarig", "mixamo")
    source = bpy.data.objects[metarig]
    others = [bpy.data.objects[mixamo], rigs.make_mixamo_rig(a_pose=False, prefix="", seed=3)]
    others[1].name = "T-pose"
    others[1].location.y = -3.0
    take = takes.list_takes(source)[0]
    source.momask_take_index = bpy.data.actions.find(take.name)
    source_keys = keys_of(source, take)
    counts = [len(takes.list_takes(o)) for o in others]
    activate(source, *others)
    bpy.ops.ed.undo_push(message="before Copy Take")
    names = [o.name for o in others]
    job = run_operator(bpy.ops.momask.copy_take)
    check(job is not None and job.state == "applied", f"{job and job.state}: {jobs.STATE.error}")
    check(job.applied_by == "momask.apply_result", f"written by {job.applied_by}")
    errors = {}
    shown_source = shown_joints(source, take)
    for obj, count in zip(others, counts, strict=True):
        new = [a for a in takes.list_takes(obj)]
        check(len(new) == count + 1, f"{obj.name}: {len(new) - count} new takes")
        copy = obj.animation_data.action
        check(copy.frame_range[:] == take.frame_range[:], f"{obj.name}: the copy is on frames "
              f"{copy.frame_range[:]}, the take on {take.frame_range[:]}")
        errors[obj.name] = compare(shown_source, shown_joints(obj, copy))
        errors[obj.name + " vs bvh"] = compare(SOURCE, shown_joints(obj, copy))
    check(keys_of(source, take) == source_keys, "the copied take changed")
    bpy.ops.ed.undo()                                      # one step for both copies
    for name, count in zip(names, counts, strict=True):
        check(len(takes.list_takes(bpy.data.objects[name])) == count, f"one undo left the copy on {name}")
    return {"bone_direction_deg": errors}


def hips_track(obj, action) -> np.ndarray:
    """The hip centre's ground position (world, x y) on each frame of ``action``, as Blender shows it."""
    first, last = (int(round(v)) for v in action.frame_range)
    names = [n for n in ("mixamorig:LeftUpLeg", "mixamorig:RightUpLeg")]
    out = []
    for frame in range(first, last + 1):
        bpy.context.scene.frame_set(frame)
        out.append(np.mean([np.array(obj.matrix_world @ obj.pose.bones[n].head)[:2] for n in names], axis=0))
    bpy.context.scene.frame_set(1)
    return np.array(out)


@case
def case_real_walk_applied_along_a_circle():
    """The real HumanML3D walk (sample 000612) as another rig's take, applied along a circle: its
    travel stays on the circle and the feet skate no more than without the path."""
    from backend.motion.features import recover_from_ric
    from backend.retarget.solver import retarget
    from momask_blender.anim import keys

    sample = recover_from_ric(np.load(rigs.shared_file("humanml3d_000612.npy"))).astype(np.float64)
    smpl = rigs.make_smpl_rig_from_sample(sample, name="Walk source")
    smpl.location.x = 6.0
    rig = RigDescription.from_dict(rig_io.describe_armature(smpl))
    solved = retarget(sample, rig, auto_map(rig), src_fps=20.0, dst_fps=FPS).to_dict()
    walk = keys.write_take(smpl, solved, 1, "walk 000612")
    walker = rigs.make_mixamo_rig(a_pose=True, prefix="mixamorig:", seed=5)
    walker.name = "Walker"
    bpy.ops.curve.primitive_bezier_circle_add(radius=2.0, location=(0.0, 2.0, 0.0))
    circle = bpy.context.active_object
    steer = bpy.context.scene.momask_steer
    results = {}
    for label, on_path in (("free", False), ("circle", True)):
        activate(walker)
        bpy.context.scene.frame_current = 1
        settings().source = "ARMATURE"
        settings().armature, settings().action = smpl, walk
        steer.use_path, steer.path, steer.timing, steer.facing = on_path, circle, "keep_speed", "tangent"
        job = run_operator(bpy.ops.momask.apply_motion)
        check(job is not None and job.state == "applied", f"{label}: {job and job.state} {jobs.STATE.error}")
        take = walker.animation_data.action
        track = hips_track(walker, take)
        shown = shown_joints(walker, take)
        results[label] = (track, metrics.foot_skating_ratio(shown, fps=FPS), jobs.STATE.message)
    steer.use_path = False
    MADE["walk"] = (smpl.name, walk.name)
    track, skating, message = results["circle"]
    travel = rigs.ground_travel(track, 0.25 * FPS)
    off = np.abs(np.linalg.norm(travel - np.array([0.0, 2.0]), axis=1) - 2.0)
    travelled = float(np.linalg.norm(np.diff(travel, axis=0), axis=1).sum())
    return {"mean_distance_cm": float(off.mean() * 100), "max_distance_cm": float(off.max() * 100),
            "travelled_m": travelled, "skating": skating, "free_skating": results["free"][1],
            "message": message}


def with_root_bone(obj):
    """Give a Mixamo-named rig a UE-style ``root`` bone at its origin, the hips' parent."""
    activate(obj)
    bpy.ops.object.mode_set(mode="EDIT")
    edit = obj.data.edit_bones
    root = edit.new("root")
    root.head, root.tail = (0.0, 0.0, 0.0), (0.0, 0.0, 20.0)       # (the rig's data is Y up, centimetres)
    edit["mixamorig:Hips"].parent = root
    bpy.ops.object.mode_set(mode="OBJECT")
    return obj


@case
def case_real_walk_onto_a_root_bone():
    """Root motion for engines: the walk applied with Root Motion 'Root Bone' (empty: the rig's own
    ``root``) travels on the root bone, which stays on the ground, while the hips follow the walk."""
    ((smpl_name, walk_name),) = made("walk")
    rig = with_root_bone(rigs.make_mixamo_rig(a_pose=True, seed=7))
    rig.name = "UE-like"
    steer = bpy.context.scene.momask_steer
    steer.use_path, steer.root_motion, steer.root_bone, steer.heading = False, "root_bone", "", True
    activate(rig)
    settings().source = "ARMATURE"
    settings().armature, settings().action = bpy.data.objects[smpl_name], bpy.data.actions[walk_name]
    job = run_operator(bpy.ops.momask.apply_motion)
    steer.root_motion = "none"
    check(job is not None and job.state == "applied", f"{job and job.state} {jobs.STATE.error}")
    take = rig.animation_data.action
    fcurves = actions.Channels(take, actions.object_slot(take, rig)).fcurves
    keyed = {(fc.data_path, fc.array_index) for fc in fcurves}
    check(('pose.bones["root"].location', 0) in keyed, "the root bone's travel was not keyed")
    first, last = (int(round(v)) for v in take.frame_range)
    roots, hips = [], []
    for frame in range(first, last + 1):
        bpy.context.scene.frame_set(frame)
        roots.append(np.array(rig.matrix_world @ rig.pose.bones["root"].head))
        hips.append(np.array(rig.matrix_world @ rig.pose.bones["mixamorig:Hips"].head))
    roots, hips = np.array(roots), np.array(hips)
    root_travel = float(np.linalg.norm(roots[-1, :2] - roots[0, :2]))
    hip_travel = float(np.linalg.norm(hips[-1, :2] - hips[0, :2]))
    height = float(np.abs(roots[:, 2]).max())
    check(root_travel > 1.0 and abs(root_travel - hip_travel) < 0.25, f"root travelled {root_travel:.2f} m, "
          f"the hips {hip_travel:.2f} m")
    check(height < 1e-4, f"the root bone leaves the ground by {height * 100:.2f} cm")
    return {"root_travel_m": root_travel, "hip_travel_m": hip_travel, "root_height_cm": height * 100}


def stick_bvh(path: Path) -> None:
    """A BVH whose skeleton is no humanoid: three bones named a, b, c."""
    path.write_text("HIERARCHY\nROOT a\n{\n OFFSET 0 0 0\n CHANNELS 6 Xposition Yposition Zposition "
                    "Zrotation Xrotation Yrotation\n JOINT b\n {\n  OFFSET 0 1 0\n  CHANNELS 3 Zrotation "
                    "Xrotation Yrotation\n  JOINT c\n  {\n   OFFSET 0 1 0\n   CHANNELS 3 Zrotation Xrotation "
                    "Yrotation\n   End Site\n   {\n    OFFSET 0 1 0\n   }\n  }\n }\n}\nMOTION\nFrames: 3\n"
                    "Frame Time: 0.033333\n" + "0 0 0 0 0 0 0 0 0 0 0 0\n" * 3)


@case
def case_bad_sources_change_nothing():
    (mixamo,) = made("mixamo")
    rig = bpy.data.objects[mixamo]
    count = len(takes.list_takes(rig))
    messages = {}
    stick = TMP / "stick.bvh"
    stick_bvh(stick)
    garbage = TMP / "broken.bvh"
    garbage.write_text("this is not a motion file\n")
    text = TMP / "notes.txt"
    text.write_text("hello")
    cube = TMP / "cube.fbx"
    bpy.ops.mesh.primitive_cube_add()
    activate(bpy.context.active_object)
    bpy.ops.export_scene.fbx(filepath=str(cube), use_selection=True)
    bpy.data.objects.remove(bpy.context.active_object)
    bpy.data.meshes.remove(bpy.data.meshes["Cube"])
    activate(rig)
    ids, state = data_ids(), scene_state()
    for label, path, wanted in (("broken", garbage, "could not read 'broken.bvh': Exception: This is not"),
                                ("text", text, "not a BVH or FBX"),
                                ("missing", TMP / "gone.fbx", "does not exist"),
                                ("mesh only", cube, "no armature")):
        settings().source, settings().filepath = "FILE", str(path)
        jobs.STATE.error = None
        job = run_operator(bpy.ops.momask.apply_motion)
        check(job is None, f"{label}: a job was sent")
        problem, fix = jobs.STATE.error or ("", "")
        check(wanted in problem and fix, f"{label}: {problem!r} / {fix!r}")
        messages[label] = problem
    settings().source, settings().filepath = "FILE", str(stick)
    job = run_operator(bpy.ops.momask.apply_motion)
    check(job is not None and job.state == "failed", f"the stick skeleton: {job and job.state}")
    problem, fix = jobs.STATE.error
    check("stick.bvh" in problem and "left_knee" in problem and fix, f"missing roles not named: {problem}")
    messages["stick"] = problem
    for label, armature, wanted in (("no armature", None, "No source armature"),
                                    ("itself", rig, "not a source")):
        settings().source, settings().armature = "ARMATURE", armature
        check(run_operator(bpy.ops.momask.apply_motion) is None, f"{label}: a job was sent")
        check(wanted in jobs.STATE.error[0], f"{label}: {jobs.STATE.error}")
        messages[label] = jobs.STATE.error[0]
    check(data_ids() == ids, f"data changed: { {k: data_ids()[k] ^ ids[k] for k in ids} }")
    check(scene_state() == state, "the scene changed")
    check(len(takes.list_takes(rig)) == count, "a take was made")
    return {"messages": messages}


finish()
