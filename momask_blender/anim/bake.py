"""Control rigs (a generated Rigify rig): the motion is baked onto the controls (docs/retargeting.md §8).

On a generated rig the bones the mapping finds (``DEF-``/``ORG-``) are driven by constraints from the
controls, so keys written to them do nothing. The backend solves for the rig as it is described
(``rig_io.describe_armature``), and here that solution is carried over to the controls:

1. switch every limb to FK (Rigify's ``IK_FK`` = 1 on the limb property bones);
2. a temporary *proxy*: a constraint-free copy of the armature (same bones, rests and hierarchy, so
   the solved keys mean exactly what the solver meant) keyed with :func:`keys.write_take`, plus one
   helper bone per control, parented to the proxy bone that control follows and given the control's
   own rest (the rest offset between, say, ``hand_fk.L`` and ``DEF-hand.L``);
3. on the rig, each control copies its helper's world rotation (the torso its whole transform);
4. per frame, the controls' visual transforms are read back into their own (local) channels — what
   Blender's visual keying does — and written as a new take with :func:`keys.write_take`, with the
   ``IK_FK`` switches keyed at FK;
5. the constraints and the proxy go, whatever happens (``try``/``finally``); on failure the rig keeps
   its previous action, its switches and its pose.

An in-between on a control rig reads the ORG bones as the controls pose them, and bakes only the
regenerated range onto the FK controls, blended into the action (:func:`bake_inbetween`): through the
FK keys where the limbs are in FK, through the IK/FK switch where the animator used IK.

bpy + numpy only.
"""

from __future__ import annotations

import bpy
import numpy as np
from mathutils import Matrix

from ..remote.client import load_backend_module
from . import keys
from .actions import Channels, assign_action, object_slot
from .armature import RigError, require_armature, scene_of
from .rig_io import describe_armature, read_pose

quaternion = load_backend_module("quaternion")  # backend/portable/quaternion.py, loaded by path

__all__ = ["bake_controls", "bake_inbetween", "bake_take", "control_plan", "describe_for_bake",
           "describe_target", "needs_bake", "read_source", "switch_values", "switched_controls",
           "write_generated_take", "write_inbetween_take"]

#: The tag of everything this module adds for the time of a bake.
TAG = "MoMask bake"
HELPER_PREFIX = "MoMask."
#: Rigify's IK/FK switch (on the limb's property bone, e.g. ``upper_arm_parent.L``): 1 = FK.
IK_FK = "IK_FK"
#: The FK controls each switch hands its limb to (the switch bone's name without its side).
SWITCHED_CONTROLS = {"upper_arm_parent": ("upper_arm_fk", "forearm_fk", "hand_fk"),
                     "thigh_parent": ("thigh_fk", "shin_fk", "foot_fk", "toe_fk")}
#: Rigify controls and the bones they follow, best first: the ORG chain (the controls' own copies), then
#: the DEF chain. The torso carries the body, so it copies location too.
_SIDED = (("shoulder", "shoulder"), ("upper_arm_fk", "upper_arm"), ("forearm_fk", "forearm"),
          ("hand_fk", "hand"), ("thigh_fk", "thigh"), ("shin_fk", "shin"), ("foot_fk", "foot"),
          ("toe_fk", "toe"))
_CENTRE = (("torso", "spine"), ("hips", "spine"), ("spine_fk", "spine"), ("spine_fk.001", "spine.001"),
           ("spine_fk.002", "spine.002"), ("spine_fk.003", "spine.003"), ("chest", "spine.003"),
           ("neck", "spine.004"), ("head", "spine.006"))
RIGIFY_CONTROLS: tuple[tuple[str, tuple[str, ...]], ...] = (
    tuple((control, (f"ORG-{bone}", f"DEF-{bone}")) for control, bone in _CENTRE)
    + tuple((f"{control}.{s}", (f"ORG-{bone}.{s}", f"DEF-{bone}.{s}"))
            for s in ("L", "R") for control, bone in _SIDED))
ROOT_CONTROL = "torso"
_FOLLOWING = {"COPY_TRANSFORMS", "COPY_ROTATION", "COPY_LOCATION", "STRETCH_TO", "DAMPED_TRACK", "IK",
              "CHILD_OF", "ARMATURE", "TRANSFORM", "LOCKED_TRACK", "TRACK_TO"}


# --------------------------------------------------------------------------------------------
# Detection


def _driven_by_rig(obj, pose_bone) -> bool:
    """The bone's pose is set by the rig (constraints that follow other bones, or drivers)."""
    for constraint in pose_bone.constraints:
        if constraint.type in _FOLLOWING and constraint.enabled and constraint.influence > 0:
            return True
    ad = obj.animation_data
    if ad is not None:
        prefix = f'pose.bones["{bpy.utils.escape_identifier(pose_bone.name)}"].'
        for driver in ad.drivers:
            if driver.data_path.startswith(prefix) and driver.data_path.endswith(
                    ("location", "rotation_quaternion", "rotation_euler", "rotation_axis_angle")):
                return True
    return False


def needs_bake(obj, bones=None) -> bool:
    """True when keys written straight onto the rig's mapped bones would not move it.

    A generated Rigify rig (its armature carries Rigify's ``rig_id``) always; otherwise when most of
    ``bones`` (default: the deform bones) are driven by constraints or drivers (ARP/MHX-style rigs).
    """
    if getattr(obj, "type", None) != "ARMATURE":
        return False
    if obj.data.get("rig_id") is not None:
        return True
    names = list(bones) if bones is not None else [b.name for b in obj.data.bones if b.use_deform]
    pose_bones = [obj.pose.bones.get(n) for n in names]
    pose_bones = [pb for pb in pose_bones if pb is not None]
    if not pose_bones:
        return False
    driven = sum(_driven_by_rig(obj, pb) for pb in pose_bones)
    return driven > 0.5 * len(pose_bones)


def control_plan(obj, description: dict, keyed: set[str]) -> list[tuple[str, str, bool]]:
    """(control, followed bone, with location) for the controls this rig has.

    A control follows the first of its candidate bones (in ``description``, the proxy's skeleton) the
    result keys, else the first one hanging below a keyed bone (it moves rigidly with it on the
    proxy); controls with neither are left alone.
    """
    names, parents = description["bone_names"], description["parents"]
    index = {n: i for i, n in enumerate(names)}

    def below_keyed(i: int) -> bool:
        while i >= 0:
            if names[i] in keyed:
                return True
            i = parents[i]
        return False

    plan = []
    for control, candidates in RIGIFY_CONTROLS:
        if obj.pose.bones.get(control) is None:
            continue
        present = [c for c in candidates if c in index]
        source = next((c for c in present if c in keyed), None) or next(
            (c for c in present if below_keyed(index[c])), None)
        if source is not None:
            plan.append((control, source, control == ROOT_CONTROL))
    return plan


def fk_switches(obj) -> list:
    """Pose bones carrying Rigify's IK/FK switch."""
    return [pb for pb in obj.pose.bones if IK_FK in pb.keys()]  # noqa: SIM118 (ID properties)


# --------------------------------------------------------------------------------------------
# The proxy


def _bake_bones(obj) -> list[str]:
    """The bones the backend solves for on a control rig: Rigify's ORG chain (the metarig's bones as
    the controls move them), else the deform bones."""
    names = [b.name for b in obj.data.bones]
    org = [n for n in names if n.startswith("ORG-")]
    return org if org else [b.name for b in obj.data.bones if b.use_deform]


def _plain_parents(obj, names: list[str]) -> list[int]:
    """A plain hierarchy over ``names``: the nearest ancestor among them, else the one whose tail meets
    the bone's head (Rigify hangs ORG-spine.001 from a tweak bone; its metarig parent is ORG-spine)."""
    index = {n: i for i, n in enumerate(names)}
    bones = obj.data.bones
    tails = np.array([tuple(bones[n].tail_local) for n in names])
    scale = max(float(np.ptp(tails, axis=0).max()), 1e-6) if len(names) else 1.0
    parents = []
    for i, name in enumerate(names):
        bone, parent = bones[name].parent, -1
        while bone is not None and parent < 0:
            parent = index.get(bone.name, -1)
            bone = bone.parent
        if parent < 0:
            gaps = np.linalg.norm(tails - np.array(tuple(bones[name].head_local)), axis=-1)
            gaps[i] = np.inf
            below = {j for j, n in enumerate(names) if _is_below(bones[n], bones[name])}
            for j in below:
                gaps[j] = np.inf
            best = int(np.argmin(gaps)) if len(names) > 1 else -1
            if best >= 0 and gaps[best] < 1e-3 * scale:
                parent = best
        parents.append(parent)
    return parents


def _is_below(bone, ancestor) -> bool:
    while bone is not None:
        if bone == ancestor:
            return True
        bone = bone.parent
    return False


def describe_for_bake(obj) -> dict:
    """What the backend should solve for on a control rig (``needs_bake``), as ``RigDescription.to_dict()``.

    Only the bones that follow the controls (Rigify's ORG bones, else the deform bones), in a plain
    hierarchy with their real rests: the proxy :func:`bake_take` builds is exactly this skeleton, so the
    solved keys mean on it what the solver meant.
    """
    names = _bake_bones(obj)
    if not names:
        raise RigError(f"'{obj.name}' has no deform bones to retarget onto.",
                       "Select the character's armature (the one that deforms the mesh).")
    whole = describe_armature(obj)
    rows = [obj.data.bones.find(name) for name in names]
    return {**whole, "bone_names": names, "parents": _plain_parents(obj, names),
            "rest_matrices": whole["rest_matrices"][rows], "lengths": whole["lengths"][rows],
            "rotation_modes": [whole["rotation_modes"][row] for row in rows]}


def _context_override(obj):
    """A context where ``obj`` is the active object, for the mode switches building the proxy."""
    window = bpy.context.window or (bpy.context.window_manager.windows[0]
                                    if bpy.context.window_manager.windows else None)
    override = {"active_object": obj, "object": obj, "selected_objects": [obj],
                "selected_editable_objects": [obj]}
    if window is not None:
        override["window"] = window
    return bpy.context.temp_override(**override)


def make_proxy(obj, description: dict, plan, scene):
    """A plain armature: the skeleton of ``description`` plus one helper bone per control (the control's
    rest, parented to the bone it follows). Linked to ``scene`` so it evaluates with it."""
    data = bpy.data.armatures.new(f"{TAG} {obj.data.name}")
    proxy = bpy.data.objects.new(f"{TAG} {obj.name}", data)
    scene.collection.objects.link(proxy)
    proxy.matrix_world = obj.matrix_world.copy()
    names = description["bone_names"]
    view_layer = bpy.context.view_layer
    previous_active = view_layer.objects.active
    view_layer.objects.active = proxy
    try:
        with _context_override(proxy):
            bpy.ops.object.mode_set(mode="EDIT")
            edit = data.edit_bones

            def add(name: str, bone):
                eb = edit.new(name)
                eb.head, eb.tail = (0.0, 0.0, 0.0), (0.0, 1.0, 0.0)
                eb.matrix = Matrix(bone.matrix_local)
                eb.length = max(bone.length, 1e-4)
                eb.use_deform = False
                return eb

            made = [add(name, obj.data.bones[name]) for name in names]
            for eb, parent in zip(made, description["parents"], strict=True):
                if parent >= 0:
                    eb.parent = made[parent]
            for control, source, _ in plan:
                helper = add(HELPER_PREFIX + control, obj.data.bones[control])
                helper.parent = edit[source]
            bpy.ops.object.mode_set(mode="OBJECT")
    finally:
        view_layer.objects.active = previous_active
    for name, mode in zip(names, description["rotation_modes"], strict=True):
        proxy.pose.bones[name].rotation_mode = mode       # keys are checked against the rotation modes
    return proxy


def _remove_proxy(proxy) -> None:
    data = proxy.data
    ad = proxy.animation_data
    actions = [ad.action] if ad is not None and ad.action is not None else []
    bpy.data.objects.remove(proxy)
    if data.users == 0:
        bpy.data.armatures.remove(data)
    for action in actions:
        if action.users <= (1 if action.use_fake_user else 0):
            bpy.data.actions.remove(action)


# --------------------------------------------------------------------------------------------
# The bake


def _visual_channels(obj, plan, frames) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per control: (rotation values in its own channel (F, 3|4), location (F, 3)) as Blender shows it.
    Euler and axis-angle values stay continuous from frame to frame (``keys``' conversions)."""
    scene = scene_of(obj)
    pose_bones = [obj.pose.bones[control] for control, _, _ in plan]
    quats: dict[str, list] = {pb.name: [] for pb in pose_bones}
    locations: dict[str, list] = {pb.name: [] for pb in pose_bones}
    for frame in frames:
        whole = int(np.floor(frame))
        scene.frame_set(whole, subframe=float(frame - whole))
        for pb in pose_bones:
            basis = obj.convert_space(pose_bone=pb, matrix=pb.matrix, from_space="POSE", to_space="LOCAL")
            loc, quat, _ = basis.decompose()
            quats[pb.name].append(tuple(quat))
            locations[pb.name].append(tuple(loc))
    out = {}
    for pb in pose_bones:
        q = np.array(quats[pb.name], np.float64).reshape(-1, 4)
        mode = pb.rotation_mode
        if mode == "QUATERNION":
            rotation = quaternion.qcontinuous(q)
        elif mode == "AXIS_ANGLE":
            rotation = keys.quats_to_axis_angle(q, np.empty((0, 4)))
        else:
            rotation = keys.quats_to_euler(q, np.empty((0, 3)), mode)
        out[pb.name] = (rotation, np.array(locations[pb.name], np.float64).reshape(-1, 3))
    return out


def _key_switches(obj, action, switches, start_frame: float) -> None:
    """Key every IK/FK switch at FK on the take's first frame (constant)."""
    channels = Channels(action, object_slot(action, obj), ensure=True)
    for pb in switches:
        path = _switch_path(pb.name)
        fcurve = channels.find(path, 0) or channels.new(path, 0, pb.name)
        keys.write_curve(fcurve, np.array([float(start_frame)]), np.array([1.0]))


def bake_controls(obj, result: dict, start_frame: float) -> dict:
    """The control channels that reproduce ``result`` on ``obj``, as a result of their own.

    ``result`` is the backend's retarget of the rig as described by :func:`describe_for_bake` (keyed
    on its ORG/DEF bones) whose frame 0 is scene frame ``start_frame``. The returned dict has the
    same form (``fps``, ``frame_count``, ``bones``, ``root``) but keys the rig's FK controls and the
    torso, so :func:`keys.write_take` and :func:`keys.write_inbetween` write it like any other
    result. The rig is left as it was: its action, IK/FK switches and pose; no proxy, no constraint.
    """
    require_armature(obj)
    keyed = {b["name"] for b in result.get("bones", [])}
    root = result.get("root") or {}
    if root.get("name"):
        keyed.add(root["name"])
    description = describe_for_bake(obj)
    plan = control_plan(obj, description, keyed)
    if not plan:
        raise RigError(f"'{obj.name}' is driven by a control rig MoMask does not know (no Rigify FK "
                       "controls found).", "Generate onto its deform armature (or a Rigify rig), or "
                       "map the controls as bones in the MoMask panel's Bone Mapping box.")
    scene = scene_of(obj)
    fps_now = keys.scene_fps(scene)
    frame_count = int(result["frame_count"])
    frames = keys.key_frames(start_frame, frame_count, float(result["fps"]), fps_now)
    ad = obj.animation_data or obj.animation_data_create()
    previous = (ad.action, getattr(ad, "action_slot", None))
    current_frame, subframe = scene.frame_current, scene.frame_subframe
    saved_switches = [(pb, pb[IK_FK]) for pb in fk_switches(obj)]
    saved_pose = [(pb, pb.matrix_basis.copy()) for pb in obj.pose.bones]
    added = []
    proxy = None
    try:
        proxy = make_proxy(obj, description, plan, scene)
        keys.write_take(proxy, result, start_frame, f"{TAG} proxy")
        assign_action(obj, None)              # the user's action must not fight the bake
        for pb, _ in saved_switches:
            pb[IK_FK] = 1.0
        for control, _, with_location in plan:
            constraint = obj.pose.bones[control].constraints.new(
                "COPY_TRANSFORMS" if with_location else "COPY_ROTATION")
            constraint.name = TAG
            added.append((obj.pose.bones[control], constraint))
            constraint.target, constraint.subtarget = proxy, HELPER_PREFIX + control
            constraint.owner_space = constraint.target_space = "WORLD"
        baked = _visual_channels(obj, plan, frames)
    finally:
        for pose_bone, constraint in reversed(added):
            pose_bone.constraints.remove(constraint)
        if proxy is not None:
            _remove_proxy(proxy)
        for pb, value in saved_switches:
            pb[IK_FK] = value
        for pb, basis in saved_pose:
            pb.matrix_basis = basis
        assign_action(obj, *previous)
        scene.frame_set(current_frame, subframe=subframe)
    controls = [{"name": control, "channel": keys.channel_for_mode(obj.pose.bones[control].rotation_mode),
                 "values": baked[control][0]} for control, _, _ in plan]
    root_control = next((control for control, _, loc in plan if loc), None)
    return {"fps": float(result["fps"]), "frame_count": frame_count, "bones": controls,
            "root": {"name": root_control, "location": baked[root_control][1]} if root_control else None}


def bake_take(obj, result: dict, start_frame: float, name: str, *, prompt: str | None = None,
              seed: int | None = None, kind: str = "generate"):
    """Like :func:`keys.write_take`, for a control rig: the take keys the rig's controls (FK), and its
    IK/FK switches at FK. ``result`` as for :func:`bake_controls`. Returns the new take's action,
    assigned to ``obj``; on failure the rig is left as it was."""
    take = bake_controls(obj, result, start_frame)
    action = keys.write_take(obj, take, start_frame, name, prompt=prompt, seed=seed, kind=kind)
    switches = fk_switches(obj)
    for pb in switches:
        pb[IK_FK] = 1.0
    _key_switches(obj, action, switches, start_frame)
    return action


def switch_values(obj, action, frames: np.ndarray) -> dict[str, np.ndarray]:
    """Per IK/FK switch bone: what ``action`` sets the switch to on ``frames`` (1 = FK), or its
    current value where the action does not key it."""
    channels = Channels(action, object_slot(action, obj))
    values = {}
    for pb in fk_switches(obj):
        fcurve = channels.find(_switch_path(pb.name), 0)
        values[pb.name] = (keys.evaluate(fcurve, frames) if fcurve is not None
                           else np.full(len(frames), float(pb[IK_FK])))
    return values


def _switch_path(switch: str) -> str:
    return f'pose.bones["{bpy.utils.escape_identifier(switch)}"]["{IK_FK}"]'


def switched_controls(obj, switch: str) -> list[str]:
    """The FK controls of the limb whose IK/FK switch is the bone ``switch`` (``thigh_parent.L`` →
    ``thigh_fk.L``, ``shin_fk.L``, ...)."""
    base, dot, side = switch.rpartition(".")
    base, side = (base, dot + side) if dot else (switch, "")
    chain = SWITCHED_CONTROLS.get(base, ())
    return [f"{control}{side}" for control in chain if obj.pose.bones.get(f"{control}{side}") is not None]


def bake_inbetween(obj, result: dict, range_start: int, range_end: int, blend_frames: int = 4,
                   source_action=None, *, result_start: int, **options):
    """Like :func:`keys.write_inbetween`, for a control rig: the regenerated range is baked onto the
    FK controls (:func:`bake_controls`, the range only) and blended into the action.

    A limb the action keeps in FK around the range blends its FK keys like any channel. A limb it
    moves with IK (its switch below 1 anywhere in the range) takes the new FK motion inside the
    range, and its switch ramps from the action's value to FK over the blend frames and back, so the
    limb crosses from the animator's IK pose to the new motion. Keys outside the range stay as
    they are, the switches' and the IK controls' among them.
    """
    window = slice(range_start - result_start, range_end - result_start)
    root = result.get("root") or None
    part = {**result, "frame_count": range_end - range_start,
            "bones": [{**bone, "values": np.asarray(bone["values"])[window]} for bone in result["bones"]],
            "root": {**root, "location": np.asarray(root["location"])[window]} if root else None}
    take = bake_controls(obj, part, range_start)
    action = source_action if source_action is not None else obj.animation_data.action
    frames = np.arange(range_start, range_end, dtype=np.float64)
    weight = keys.blend_weights(range_start, range_end, blend_frames, options.get("extend"))
    baked = {bone["name"] for bone in take["bones"]}
    unblended: set[str] = set()
    ramps = []
    for switch, values in switch_values(obj, action, frames).items():
        controls = [c for c in switched_controls(obj, switch) if c in baked]
        if values.min() >= 0.999 or not controls:
            continue
        unblended.update(controls)
        ramps.append((_switch_path(switch), 0, switch, values + weight * (1.0 - values)))
    return keys.write_inbetween(obj, take, range_start, range_end, blend_frames, source_action,
                                result_start=range_start, unblended=frozenset(unblended),
                                extra_curves=tuple(ramps), **options)


# --- what the operators call: one branch for describing, reading and writing ---------------------------


def describe_target(obj) -> dict:
    """The rig description the backend retargets onto: for a control rig the plain skeleton that
    :func:`bake_take` carries over to the controls, else the armature itself. The write must take the
    same branch (:func:`write_generated_take`, :func:`write_inbetween_take`)."""
    return describe_for_bake(obj) if needs_bake(obj) else describe_armature(obj)


def read_source(obj, frame_start: int, frame_end: int) -> tuple[dict, np.ndarray, dict]:
    """What an in-between is made from: (:func:`describe_target`, the posed matrices of its bones on
    scene frames ``[frame_start, frame_end)``, every pose bone's evaluated channels, as
    ``rig_io.read_pose`` gives them)."""
    control_rig = needs_bake(obj)
    rig = describe_for_bake(obj) if control_rig else describe_armature(obj)
    pose, channels = read_pose(obj, frame_start, frame_end)
    if control_rig:                        # the described bones only, in their order
        pose = pose[:, [obj.pose.bones.find(name) for name in rig["bone_names"]]]
    return rig, pose, channels


def write_generated_take(obj, result: dict, start_frame: float, name: str, **meta):
    """A generated take: baked onto the controls of a control rig, keyed directly otherwise."""
    write = bake_take if needs_bake(obj) else keys.write_take
    return write(obj, result, start_frame, name, **meta)


def write_inbetween_take(obj, result: dict, range_start: int, range_end: int, blend_frames: int,
                         source_action, **options):
    """An in-between take: baked onto the controls of a control rig, keyed directly otherwise."""
    write = bake_inbetween if needs_bake(obj) else keys.write_inbetween
    return write(obj, result, range_start, range_end, blend_frames, source_action, **options)
