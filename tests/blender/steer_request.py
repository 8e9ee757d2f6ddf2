"""Steering through the panel in real Blender: curves, waypoints and root-motion options become the
Generate request's RetargetSpec (docs/protocol.md "Steering"), and bad input is refused before anything
is sent. Against a real backend with tiny random weights.

Run by tests/momask_blender/ui/test_steer_request.py: ``<bpy python> steer_request.py WEIGHTS_DIR OUT.json``.
Each curve case presses Generate with the curve picked and reads the request the job carries: the path
points (world space, on the ground, no step over 2 cm), measured against the curve's exact shape.
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
FPS = 24

PREFS = rigs.start_momask(WEIGHTS)
from momask_blender.anim import actions, keys, takes  # noqa: E402
from momask_blender.remote import jobs  # noqa: E402

SCENE = bpy.context.scene
SCENE.render.fps, SCENE.render.fps_base = FPS, 1.0
SCENE.momask.randomize_seed = False
SCENE.momask.seconds = 2.0
RIG = rigs.make_mixamo_rig(a_pose=True)


def activate(obj) -> None:
    for other in bpy.context.view_layer.objects:
        other.select_set(False)
    obj.select_set(True)
    bpy.context.view_layer.objects.active = obj


def curve(name: str, kind: str, points, cyclic: bool = False, location=(0.0, 0.0, 0.0)):
    data = bpy.data.curves.new(name, type="CURVE")
    data.dimensions = "3D"
    spline = data.splines.new(kind)
    if kind == "BEZIER":
        spline.bezier_points.add(len(points) - 1)
        for bp, co in zip(spline.bezier_points, points, strict=True):
            bp.co = co
            bp.handle_left_type = bp.handle_right_type = "AUTO"
    else:
        spline.points.add(len(points) - 1)
        for p, co in zip(spline.points, points, strict=True):
            p.co = (*co, 1.0)
        if kind == "NURBS":
            spline.use_endpoint_u, spline.order_u = True, 4
    spline.use_cyclic_u = cyclic
    obj = bpy.data.objects.new(name, data)
    SCENE.collection.objects.link(obj)
    obj.location = location
    bpy.context.view_layer.update()
    return obj


def generate():
    """Press Generate on the rig: (the job it started or None, the error the panel shows or None)."""
    activate(RIG)
    jobs.STATE.error = None
    try:
        result = bpy.ops.momask.generate()
    except RuntimeError:        # an operator called from Python raises when it reports an error
        result = {"CANCELLED"}
    job = jobs.STATE.active
    if result != {"FINISHED"}:
        check(job is None, "Generate refused but started a job")
        return None, jobs.STATE.error
    return job, None


def path_request(obj, **steer) -> tuple[np.ndarray, object]:
    """Generate along curve ``obj``: the path points sent and the request; the job runs to the end."""
    settings = SCENE.momask_steer
    settings.use_path, settings.path = True, obj
    for key, value in steer.items():
        setattr(settings, key, value)
    job, error = generate()
    check(job is not None, f"Generate refused the curve {obj.name}: {error}")
    request = job.request
    jobs.wait(300)
    check(job.state == "applied", f"{job.state}: {job.error} {jobs.STATE.error}")
    points = np.asarray(request.retarget.path.points, dtype=np.float64)
    check(points.ndim == 2 and points.shape[1] == 3, f"path points of shape {points.shape}")
    check(np.all(points[:, 2] == 0.0), "the path is not on the ground (z = 0)")
    steps = np.linalg.norm(np.diff(points, axis=0), axis=1)
    check(steps.max() <= 0.02 + 1e-6, f"a step of {steps.max() * 100:.1f} cm between path points")
    settings.use_path = False
    return points, request


def distance_to_polyline(points: np.ndarray, corners: np.ndarray) -> np.ndarray:
    """Each point's horizontal distance to the polyline through ``corners``."""
    best = np.full(len(points), np.inf)
    for a, b in zip(corners[:-1], corners[1:], strict=True):
        ab = b[:2] - a[:2]
        t = np.clip(((points[:, :2] - a[:2]) @ ab) / (ab @ ab), 0.0, 1.0)
        best = np.minimum(best, np.linalg.norm(points[:, :2] - (a[:2] + t[:, None] * ab), axis=1))
    return best


@case
def case_circle_bezier_becomes_a_closed_ground_path():
    bpy.ops.curve.primitive_bezier_circle_add(radius=2.0, location=(1.0, -1.0, 0.5))
    circle = bpy.context.active_object
    MADE["circle"] = circle.name
    points, request = path_request(circle, timing="keep_speed", facing="tangent")
    radius = np.linalg.norm(points[:, :2] - np.array([1.0, -1.0]), axis=1)
    length = float(np.linalg.norm(np.diff(points, axis=0), axis=1).sum())
    off = np.abs(radius - 2.0).max()
    check(off <= 0.006, f"points {off * 1000:.1f} mm off the circle")
    check(np.linalg.norm(points[0] - points[-1]) < 1e-6, "the closed circle's path does not end at its start")
    check(abs(length - 4 * math.pi) / (4 * math.pi) < 0.005, f"length {length:.3f} m, the circle is 4π m")
    seconds = request.seconds[0]
    check(abs(seconds - min(length / 1.3, 9.8)) < 0.01, f"keep-speed duration {seconds} s")
    check(request.retarget.path.timing == "keep_speed" and request.retarget.path.facing == "tangent", "")
    return {"points": len(points), "radial_error_mm": float(off * 1000),
            "length_m": length, "seconds": seconds}


def hips_on_ground(obj, action) -> np.ndarray:
    """The hip centre (mean of the thigh heads) in world space, on the ground, on each frame of the
    take as Blender evaluates it (the object's own keys included)."""
    first, last = (int(round(v)) for v in action.frame_range)
    thighs = [obj.pose.bones[n] for n in ("mixamorig:LeftUpLeg", "mixamorig:RightUpLeg")]
    out = []
    for frame in range(first, last + 1):
        SCENE.frame_set(frame)
        world = obj.matrix_world
        out.append(np.mean([np.array(world @ pb.head) for pb in thighs], axis=0))
    SCENE.frame_set(1)
    points = np.array(out)
    points[:, 2] = 0.0
    return points


@case
def case_generation_walks_the_circle():
    # The real backend steers the generated motion onto the picked curve: the take's hips stay on it.
    (name,) = made("circle")
    circle = bpy.data.objects[name]
    SCENE.frame_current = 1
    SCENE.momask.seconds = 9.0            # the whole circle in the take's length, whatever its speed
    points, request = path_request(circle, timing="fit_duration", facing="tangent")
    SCENE.momask.seconds = 2.0
    take = RIG.animation_data.action
    check(takes.is_take(take), "no take")
    hips = hips_on_ground(RIG, take)
    travel = rigs.ground_travel(hips, 0.25 * FPS)
    off = np.abs(np.linalg.norm(travel[:, :2] - np.array([1.0, -1.0]), axis=1) - 2.0)
    raw = np.abs(np.linalg.norm(hips[:, :2] - np.array([1.0, -1.0]), axis=1) - 2.0)
    turned = np.unwrap(np.arctan2(travel[:, 1] + 1.0, travel[:, 0] - 1.0))
    return {"mean_distance_cm": float(off.mean() * 100), "max_distance_cm": float(off.max() * 100),
            "hips_mean_distance_cm": float(raw.mean() * 100),
            "turned_deg": float(np.degrees(turned[-1] - turned[0])),
            "frames": len(hips), "message": jobs.STATE.message}



@case
def case_s_curve_nurbs_keeps_its_ends_and_fits_the_duration():
    s_curve = curve("S", "NURBS", [(0, 0, 0), (1, 1.5, 0), (2, 0, 0), (3, -1.5, 0), (4, 0, 0)],
                    location=(0.0, 2.0, 1.0))
    points, request = path_request(s_curve, timing="fit_duration", facing="keep_relative")
    check(np.linalg.norm(points[0] - (0, 2, 0)) < 1e-4 and np.linalg.norm(points[-1] - (4, 2, 0)) < 1e-4,
          f"the S-curve runs from {points[0]} to {points[-1]}, not (0, 2) to (4, 2)")
    y = points[:, 1] - 2.0
    check(y.max() > 0.3 and y.min() < -0.3, f"no S: y from {y.min():.2f} to {y.max():.2f}")
    check(np.all(np.diff(points[:, 0]) > -1e-9), "the S-curve's points go backwards")
    check(request.seconds == (2.0,), f"fit duration sent {request.seconds}, not the panel's 2 s")
    check(request.retarget.path.timing == "fit_duration" and request.retarget.path.facing == "keep_relative",
          "timing/facing not sent")
    return {"points": len(points), "lateral_m": [float(y.min()), float(y.max())]}


@case
def case_polyline_with_a_right_angle_keeps_the_corner():
    corners = np.array([(0.0, 0.0, 0.0), (3.0, 0.0, 0.0), (3.0, 3.0, 0.0)])
    poly = curve("Corner", "POLY", [tuple(c) for c in corners])
    poly.rotation_euler = (0.0, 0.0, math.radians(90.0))       # world space: the object's turn applies
    bpy.context.view_layer.update()
    world = np.array([(0.0, 0.0, 0.0), (0.0, 3.0, 0.0), (-3.0, 3.0, 0.0)])
    points, _ = path_request(poly, timing="keep_speed")
    off = distance_to_polyline(points, world)
    check(off.max() < 1e-5, f"points {off.max() * 1000:.2f} mm off the polyline")
    check(np.min(np.linalg.norm(points - world[1], axis=1)) < 1e-6, "the 90° corner is not a path point")
    length = float(np.linalg.norm(np.diff(points, axis=0), axis=1).sum())
    check(abs(length - 6.0) < 1e-4, f"length {length}")
    return {"points": len(points), "length_m": length}


@case
def case_waypoints_and_root_motion_are_sent_in_take_frames():
    settings = SCENE.momask_steer
    SCENE.frame_current = 10
    empties = []
    for frame, where in ((20, (1.0, 0.0, 0.7)), (40, (2.0, 1.0, 0.0))):
        empty = bpy.data.objects.new(f"wp{frame}", None)
        SCENE.collection.objects.link(empty)
        empty.location = where
        activate(empty)
        SCENE.frame_current = frame
        check(bpy.ops.momask.waypoint_add() == {"FINISHED"}, "Add Waypoint failed")
        empties.append(empty)
    SCENE.frame_current = 10
    listed = [(w.target, w.frame) for w in settings.waypoints]
    check(listed == [(empties[0], 20), (empties[1], 40)], "the waypoints are not the empties at their frames")
    settings.root_motion, settings.root_bone, settings.heading, settings.ground = "object", "", False, True
    job, error = generate()
    check(job is not None, f"refused: {error}")
    spec = job.request.retarget
    jobs.wait(300)
    check(job.state == "applied", f"{job.state}: {job.error} {jobs.STATE.error}")
    sent = [(w.position, w.frame) for w in spec.waypoints]
    check(sent == [((1.0, 0.0, 0.0), 10.0), ((2.0, 1.0, 0.0), 30.0)], f"waypoints sent {sent}")
    check(spec.root_motion.mode == "object" and not spec.root_motion.heading and spec.ground, f"{spec}")
    # What the backend made of it: the armature object carries the travel and passes each waypoint.
    take = RIG.animation_data.action
    fcurves = actions.Channels(take, actions.object_slot(take, RIG)).fcurves
    check({fc.data_path for fc in fcurves} >= {"location"}, "the object's travel was not keyed")
    missed = []
    for empty, frame in ((empties[0], 20), (empties[1], 40)):
        SCENE.frame_set(frame)
        missed.append(float(np.linalg.norm(np.array(RIG.matrix_world.translation)[:2] - empty.location[:2])))
    SCENE.frame_set(10)
    settings.root_motion, settings.ground = "none", False
    actions.assign_action(RIG, None)
    RIG.location, RIG.rotation_euler = (0.0, 0.0, 0.0), (math.radians(90.0), 0.0, 0.0)
    return {"waypoints": sent, "object_waypoint_distance_cm": [m * 100 for m in missed]}


@case
def case_bad_steering_is_refused_before_sending():
    settings = SCENE.momask_steer
    seed = SCENE.momask.seed
    SCENE.frame_current = 10                  # the take starts here; the waypoints are at 20 and 40
    problems = {}

    def refused(label: str, wanted: str) -> None:
        count = len(takes.list_takes(RIG))
        job, error = generate()
        check(job is None and error is not None, f"{label}: Generate was not refused")
        check(wanted in error[0] and error[1], f"{label}: {error}")
        check(len(takes.list_takes(RIG)) == count and SCENE.momask.seed == seed, f"{label}: changed")
        problems[label] = error[0] + " Fix: " + error[1]

    settings.use_path = True
    settings.path = curve("Dot", "POLY", [(1.0, 1.0, 0.0)])
    refused("one point", "one point")
    settings.path = curve("Same", "POLY", [(1.0, 1.0, 0.0), (1.0, 1.0, 0.0)])
    refused("zero length", "one point")
    settings.path = curve("Up", "POLY", [(1.0, 1.0, 0.0), (1.0, 1.0, 2.0)])
    refused("vertical", "long on the ground")
    two = curve("Two", "POLY", [(0.0, 0.0, 0.0), (1.0, 0.0, 0.0)])
    extra = two.data.splines.new("POLY")
    extra.points.add(1)
    extra.points[0].co, extra.points[1].co = (0, 2, 0, 1), (1, 2, 0, 1)
    bpy.context.view_layer.update()
    settings.path = two
    refused("two splines", "separate parts")
    settings.path = None
    refused("no curve", "No path curve")
    settings.use_path = False
    settings.waypoints[1].frame = 15                                  # before the first (20)
    refused("out of order", "not after")
    settings.waypoints[1].frame = 200                                 # past the 2 s take from frame 10
    refused("after the end", "after the take ends")
    settings.waypoints[1].frame = 5
    settings.waypoints[0].frame = 5
    refused("before the start", "before the take starts")
    settings.waypoints.clear()
    settings.root_motion = "root_bone"
    SCENE.momask.in_place = True
    refused("in place and root bone", "In Place")
    SCENE.momask.in_place = False
    settings.root_bone = "no such bone"
    refused("missing root bone", "no bone 'no such bone'")
    settings.root_motion, settings.root_bone = "none", ""
    return {"problems": problems}


@case
def case_object_root_motion_is_keyed_on_the_object():
    # What the add-on writes for a result whose travel went onto the object (docs/protocol.md
    # "Steering"): the object's own location and rotation keys in the same take, in its rotation mode.
    frames = 5
    quats = np.array([[math.cos(a / 2), 0.0, 0.0, math.sin(a / 2)] for a in np.linspace(0, 1.0, frames)])
    result = {"fps": float(FPS), "frame_count": frames, "bones": [],
              "root": {"name": "mixamorig:Hips", "location": np.zeros((frames, 3))},
              "root_motion": {"mode": "object", "location": np.linspace((0, 0, 0), (2, 1, 0), frames),
                              "rotation_quaternion": quats}}
    RIG.rotation_mode = "XZY"
    action = keys.write_take(RIG, result, 1, "object root motion")
    fcurves = actions.Channels(action, actions.object_slot(action, RIG)).fcurves
    paths = {(fc.data_path, fc.array_index) for fc in fcurves}
    wanted = {("location", i) for i in range(3)} | {("rotation_euler", i) for i in range(3)}
    check(wanted <= paths, f"{paths}")
    SCENE.frame_set(frames)
    check(np.allclose(RIG.matrix_world.translation, (2, 1, 0), atol=1e-5), f"{RIG.matrix_world.translation}")
    yaw = RIG.matrix_world.to_euler("XYZ").z
    check(abs(yaw - 1.0) < 1e-4, f"the object turned {yaw:.4f} rad, not 1")
    takes.delete_take(RIG, action)
    # A parented armature: its keys are local, so that its world transform is the one the backend gave.
    holder = bpy.data.objects.new("Holder", None)
    SCENE.collection.objects.link(holder)
    holder.location, holder.rotation_euler = (5.0, -2.0, 1.0), (0.0, 0.0, 0.7)
    bpy.context.view_layer.update()
    RIG.parent = holder
    RIG.rotation_mode = "QUATERNION"
    action = keys.write_take(RIG, result, 1, "parented root motion")
    SCENE.frame_set(frames)
    world_yaw = RIG.matrix_world.to_euler("XYZ").z
    check(np.allclose(RIG.matrix_world.translation, (2, 1, 0), atol=1e-5) and abs(world_yaw - 1.0) < 1e-4,
          f"the parented armature is at {RIG.matrix_world.translation}, turned {world_yaw:.4f}")
    takes.delete_take(RIG, action)
    RIG.parent = None
    return {"keyed": sorted(p for p, _ in paths if "pose" not in p)}


class Layout:
    """Stands in for a panel's layout (background Blender draws no UI): records every call, checks each
    property and operator drawn exists, and returns itself for rows, columns and boxes."""

    def __init__(self, drawn: list) -> None:
        self.drawn = drawn

    def __getattr__(self, name):
        def call(*args, **kwargs):
            if name in ("prop", "prop_search"):
                data, prop = args[0], args[1]
                check(prop in data.bl_rna.properties, f"the panel draws {prop!r}, which {data} has not")
                self.drawn.append(prop)
            elif name == "operator":
                module, op = args[0].split(".")
                check(hasattr(bpy.types, f"{module.upper()}_OT_{op}"), f"no operator for {args[0]}")
                self.drawn.append(args[0])
            elif name == "template_list":
                check(args[3] in args[2].bl_rna.properties, f"template_list of {args[3]!r}")
            return self
        return call


@case
def case_the_panels_draw_their_settings():
    import types

    from momask_blender.ui import panel

    activate(RIG)
    drawn: list = []
    steer = SCENE.momask_steer
    states = ((False, "none", "FILE"), (True, "root_bone", "ARMATURE"), (True, "object", "FILE"))
    for use_path, mode, source in states:
        steer.use_path, steer.root_motion, steer.timing = use_path, mode, "fit_duration"
        SCENE.momask_apply.source = source
        for cls in (panel.MOMASK_PT_steer, panel.MOMASK_PT_apply_motion):
            cls.draw(types.SimpleNamespace(layout=Layout(drawn)), bpy.context)
    steer.use_path, steer.root_motion = False, "none"
    wanted = {"use_path", "path", "timing", "facing", "seconds", "root_motion", "root_bone", "heading",
              "ground", "source", "filepath", "armature", "action", "momask.apply_motion", "momask.copy_take",
              "momask.waypoint_add", "momask.waypoint_remove"}
    check(wanted <= set(drawn), f"not drawn: {wanted - set(drawn)}")
    return {"drawn": sorted(set(drawn))}


finish()
