"""Joint positions → pose-bone keys: the position-to-rotation retargeting solver (docs/retargeting.md §3–§5).

For every driven bone ``b`` we build an orthonormal frame ``F_b(t)`` from the source joints (primary
axis: towards the bone's child joint; secondary axis: a twist reference — hip line, collar line or the
limb's hinge) and the *same construction* ``F_rest_b`` on the rig's own rest joint heads. The world
(armature-space) delta is ``D_b = F_b · F_rest_bᵀ`` and the Blender key follows from
``M_b = M_p · L_p⁻¹ · L_b · B_b``::

    B_b = L_bᵀ · D_pᵀ · D_b · L_b          (rotation parts; L = bone.matrix_local, p = parent)

Unmapped bones keep ``B = I`` and so pass their parent's delta on (``D`` is computed top-down). Only
the rig's rest *heads* and ``matrix_local`` are used, never the SMPL rest pose, so the result does not
depend on the rig's rest pose (T or A) or on bone roll. Everything is vectorised over frames.

Output format (:meth:`RetargetResult.to_dict`), which the add-on writes as keys verbatim::

    {"fps": float,                      # frames per second of the values below
     "frame_count": int,                # F
     "bones": [{"name": str,            # pose bone name
                "channel": "rotation_quaternion" | "rotation_euler" | "rotation_axis_angle",
                "values": ndarray (F, 4) | (F, 3) | (F, 4)}, ...],
     "root": {"name": str, "location": ndarray (F, 3)}}

The channel follows the bone's ``rotation_mode``: quaternions are (w, x, y, z) made sign-continuous
along time; Euler values are (x, y, z) radians in the bone's own order, each channel unwrapped along
time; axis-angle values are (angle, x, y, z). ``root.location`` is the pose-bone ``location`` of the
bone mapped to the pelvis. Bones listed are the driven and mapped bones, in the rig's bone order.

Known limits (not observable from 22 joints): head yaw beyond the neck, hand/foot roll, forearm
pronation — those bones keep their parent-relative rest rotation.
"""

from __future__ import annotations

import hashlib

import numpy as np

from backend.motion.skeleton import T2M_BONE_LENGTHS, T2M_JOINT_INDEX
from backend.portable.errors import InputError, RigError
from backend.portable.quaternion import (
    IDENTITY,
    matrix_to_quat,
    qcontinuous,
    qinv,
    qmul,
)
from backend.retarget.channels import BoneChannel, RetargetResult, channel_for, channel_values
from backend.retarget.footlock import held_contacts, plant_feet
from backend.retarget.geometry import cross, dot, frame, limb_frames, rotate, unit
from backend.retarget.resample import resample_quaternions, resample_vectors, sample_times
from backend.retarget.rig_setup import RigSetup, SourceToRig, chain_to, topological_order
from backend.retarget.steering import (
    Steering,
    SteerReport,
    extract_root,
    object_motion,
    root_bone_keys,
)

J = T2M_JOINT_INDEX
#: Source spine polyline pelvis → spine1 → spine2 → spine3 → neck.
SOURCE_SPINE = (J["pelvis"], J["spine1"], J["spine2"], J["spine3"], J["neck"])
#: Joints the solver cannot do without.
REQUIRED_ROLES = ("pelvis", "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle",
                  "right_ankle")
#: Canonical HumanML3D leg length (thigh + shin, mean of both sides), metres.
SOURCE_LEG_LENGTH = float(np.mean([T2M_BONE_LENGTHS[4] + T2M_BONE_LENGTHS[7],
                                   T2M_BONE_LENGTHS[5] + T2M_BONE_LENGTHS[8]]))


# --- one-time rig analysis ---------------------------------------------------------------------------

def _interp_weights(params: np.ndarray, at: np.ndarray) -> np.ndarray:
    """Weights (len(at), len(params)) of piecewise-linear interpolation of a polyline at ``at``."""
    weights = np.zeros((len(at), len(params)))
    for row, u in enumerate(at):
        k = int(np.clip(np.searchsorted(params, u, side="right") - 1, 0, len(params) - 2))
        span = params[k + 1] - params[k]
        t = 0.0 if span <= 0 else float(np.clip((u - params[k]) / span, 0.0, 1.0))
        weights[row, k], weights[row, k + 1] = 1 - t, t
    return weights


def analyse_rig(rig, mapping) -> RigSetup:
    """Map the rig once: rest joints, rig frame, spine parameterisation, rest frames of driven bones."""
    names = list(rig.bone_names)
    index = {name: i for i, name in enumerate(names)}
    parents = np.asarray(rig.parents, dtype=np.int64)
    rest = np.asarray(rig.rest_matrices, dtype=np.float64)
    rest_rot, rest_head = rest[:, :3, :3], rest[:, :3, 3]
    joint_bone = {J[role]: index[bone] for role, bone in mapping.bones.items()
                  if role in J and bone in index}
    missing = [role for role in REQUIRED_ROLES if J[role] not in joint_bone]
    if missing:
        raise RigError(f"The armature has no bones mapped to {', '.join(missing)}, which retargeting needs.",
                       "Map those joints to bones in the MoMask panel's bone mapping (or pick a preset).")
    head = {j: rest_head[b] for j, b in joint_bone.items()}

    world = np.asarray(rig.world_matrix, dtype=np.float64)[:3, :3]
    up = unit(np.linalg.solve(world, np.array([0.0, 0.0, 1.0])))
    left = head[J["left_hip"]] - head[J["right_hip"]]
    left = unit(left - dot(left, up) * up)
    axes = np.stack([left, up, cross(left, up)], axis=-1)
    fwd = axes[:, 2]
    leg_length = float(np.mean([
        np.linalg.norm(head[J[f"{s}_knee"]] - head[J[f"{s}_hip"]])
        + np.linalg.norm(head[J[f"{s}_ankle"]] - head[J[f"{s}_knee"]]) for s in ("left", "right")]))

    # Spine: the pelvis bone, then the chain up to the neck (or the head when there is no neck bone).
    pelvis = joint_bone[J["pelvis"]]
    if J["neck"] not in joint_bone and J["head"] in joint_bone:
        joint_bone[J["neck"]] = joint_bone.pop(J["head"])      # the head bone plays the neck
    if J["neck"] not in joint_bone:
        raise RigError("The armature has no neck or head bone mapped.",
                       "Map the neck (or head) in the MoMask panel's bone mapping.")
    neck = joint_bone[J["neck"]]
    chain = [index[name] for name in getattr(mapping, "spine_chain", []) or [] if name in index]
    chain = [b for b in chain if b not in (pelvis, neck)]
    if not chain or chain_to(parents, pelvis, neck) is None:
        chain = [b for b in (chain_to(parents, pelvis, neck) or []) if b != neck]
    spine_bones = [pelvis] + chain
    points = rest_head[spine_bones + [neck]]
    seg = np.linalg.norm(np.diff(points, axis=0), axis=-1)
    rig_params = np.concatenate([[0.0], np.cumsum(seg)]) / max(seg.sum(), 1e-12)
    src_len = T2M_BONE_LENGTHS[list(SOURCE_SPINE[1:])]
    src_params = np.concatenate([[0.0], np.cumsum(src_len)]) / src_len.sum()
    # Spine bones the mapping names spine1..3 anchor the correspondence (their heads ARE those joints);
    # in between, normalised arc length is matched piecewise linearly (UE5's 5 bones, VRM's 2...).
    anchor_rig, anchor_src = [0.0], [0.0]
    for k, role in enumerate(("spine1", "spine2", "spine3"), start=1):
        bone = index.get(mapping.bones.get(role, ""), -1)
        if bone in spine_bones[1:]:
            u = rig_params[spine_bones.index(bone)]
            if u > anchor_rig[-1] + 1e-9 and src_params[k] > anchor_src[-1]:
                anchor_rig.append(float(u))
                anchor_src.append(float(src_params[k]))
    anchor_rig.append(1.0)
    anchor_src.append(1.0)
    spine_source_weights = _interp_weights(src_params, np.interp(rig_params, anchor_rig, anchor_src))
    spine_rig_weights = _interp_weights(rig_params, np.interp(src_params[1:4], anchor_src, anchor_rig))
    mids = 0.5 * (rig_params[:-1] + rig_params[1:])
    k = len(spine_bones)
    spine_twist = np.zeros(k) if k == 1 else (mids - mids[0]) / max(mids[-1] - mids[0], 1e-12)

    rest_joints = np.zeros((22, 3))
    for j, b in joint_bone.items():
        rest_joints[j] = rest_head[b]
    spine_joints = spine_rig_weights @ points
    for row, j in enumerate(SOURCE_SPINE[1:4]):
        rest_joints[j] = spine_joints[row]
    carrier: dict[int, int] = {}
    chest = spine_bones[-1]
    for side in ("left", "right"):
        collar, shoulder = J[f"{side}_collar"], J[f"{side}_shoulder"]
        if collar not in joint_bone:
            anchor = rest_joints[shoulder] if shoulder in joint_bone else rest_joints[J["neck"]]
            rest_joints[collar] = rest_joints[J["spine3"]] + 0.5 * (anchor - rest_joints[J["spine3"]])
            carrier[collar] = chest
        ankle, ball = J[f"{side}_ankle"], J[f"{side}_foot"]
        if ball not in joint_bone:
            foot = joint_bone[ankle]
            along = rest_rot[foot][:, 1]
            direction = along if dot(along, fwd) > 0.3 else unit(fwd - 0.5 * up)
            shin = np.linalg.norm(rest_joints[ankle] - rest_joints[J[f"{side}_knee"]])
            rest_joints[ball] = rest_joints[ankle] + direction * shin * (
                T2M_BONE_LENGTHS[ball] / T2M_BONE_LENGTHS[ankle])
            carrier[ball] = foot
    if J["head"] not in joint_bone:
        along = rest_rot[neck][:, 1]
        rest_joints[J["head"]] = rest_joints[J["neck"]] + along * leg_length * (
            T2M_BONE_LENGTHS[J["head"]] / SOURCE_LEG_LENGTH)
        carrier[J["head"]] = neck
    for side in ("left", "right"):                  # arms: optional, but all or nothing per side
        arm = [J[f"{side}_shoulder"], J[f"{side}_elbow"], J[f"{side}_wrist"]]
        if not all(j in joint_bone for j in arm):
            for j in arm:
                joint_bone.pop(j, None)
    rig_floor = float(np.mean([dot(rest_joints[J["left_foot"]], up), dot(rest_joints[J["right_foot"]], up)]))

    setup = RigSetup(
        names=names, parents=parents, rest_rot=rest_rot, rest_quats=matrix_to_quat(rest_rot),
        rest_head=rest_head,
        rotation_modes=list(rig.rotation_modes), joint_bone=joint_bone, rest_joints=rest_joints,
        joint_carrier=carrier, axes=axes, leg_length=leg_length, rig_floor=rig_floor,
        spine_bones=spine_bones, spine_source_weights=spine_source_weights,
        spine_rig_weights=spine_rig_weights, spine_twist=spine_twist)

    rest_frames = bone_frames(setup, rest_joints[None])
    setup.rest_frames = {b: f[0] for b, f in rest_frames.items()}
    setup.driven = sorted(setup.rest_frames)
    mapped = set(joint_bone.values()) | set(spine_bones)
    setup.output_bones = sorted(mapped | set(setup.driven))
    eff = np.full(len(names), -1, dtype=np.int64)
    slot = {b: i for i, b in enumerate(setup.driven)}
    for b in topological_order(parents):
        eff[b] = slot[b] if b in slot else (eff[parents[b]] if parents[b] >= 0 else -1)
    setup.eff_driver = eff
    return setup


_SETUP_CACHE: dict[bytes, RigSetup] = {}


def cached_setup(rig, mapping) -> RigSetup:
    """:func:`analyse_rig`, remembered per rig geometry + mapping (the add-on re-solves the same rig)."""
    key = hashlib.sha1(b"|".join([
        np.ascontiguousarray(rig.rest_matrices, dtype=np.float64).tobytes(),
        np.ascontiguousarray(rig.world_matrix, dtype=np.float64).tobytes(),
        repr((list(rig.bone_names), list(rig.parents), list(rig.rotation_modes),
              sorted(mapping.bones.items()), list(getattr(mapping, "spine_chain", []) or []))).encode(),
    ])).digest()
    if key not in _SETUP_CACHE:
        if len(_SETUP_CACHE) > 16:
            _SETUP_CACHE.clear()
        _SETUP_CACHE[key] = analyse_rig(rig, mapping)
    return _SETUP_CACHE[key]


# --- per-frame frames --------------------------------------------------------------------------------

def bone_frames(setup: RigSetup, p: np.ndarray, rest_frames: dict[int, np.ndarray] | None = None
                ) -> dict[int, np.ndarray]:
    """Frames ``F_b (T, 3, 3)`` of the driven bones from joints ``p (T, 22, 3)`` in armature space.

    With ``rest_frames=None`` this is the rest construction (every parent delta is the identity).
    """
    frames: dict[int, np.ndarray] = {}
    jb = setup.joint_bone

    def delta(bone: int) -> np.ndarray | None:
        if rest_frames is None:
            return None
        return frames[bone] @ np.swapaxes(rest_frames[bone], -1, -2)

    def moved(bone: int, v: np.ndarray) -> np.ndarray:
        d = delta(bone)
        return np.broadcast_to(v, p.shape[:-2] + (3,)) if d is None else rotate(d, v)

    hip_line = p[:, J["left_hip"]] - p[:, J["right_hip"]]
    collar_line = p[:, J["left_collar"]] - p[:, J["right_collar"]]
    # Spine: each rig spine bone aims along the source polyline between its own arc-length ends, and
    # twists by a blend of the hip line (pelvis bone) and the collar line (chest bone).
    spine_points = np.einsum("kj,tjc->tkc", setup.spine_source_weights, p[:, list(SOURCE_SPINE)])
    w = setup.spine_twist[:, None]
    spine = frame(np.diff(spine_points, axis=1),
                  (1 - w) * unit(hip_line)[:, None] + w * unit(collar_line)[:, None])
    for i, bone in enumerate(setup.spine_bones):
        frames[bone] = spine[:, i]
    chest = setup.spine_bones[-1]
    frames[jb[J["neck"]]] = frame(p[:, J["head"]] - p[:, J["neck"]], collar_line)
    chest_up = p[:, J["neck"]] - p[:, J["spine3"]]
    fwd, up = setup.forward, setup.up
    sides = ("left", "right")

    def joints_of(name: str, which=sides) -> list[int]:
        return [J[f"{side}_{name}"] for side in which]

    # Clavicles, then arms (their zero-twist hinge follows the clavicle or chest), both sides at once.
    collared = [s for s in sides if J[f"{s}_collar"] in jb and J[f"{s}_shoulder"] in jb]
    if collared:
        clav = frame(p[:, joints_of("shoulder", collared)] - p[:, joints_of("collar", collared)],
                     chest_up[:, None])
        for i, j in enumerate(joints_of("collar", collared)):
            frames[jb[j]] = clav[:, i]
    armed = [s for s in sides if J[f"{s}_shoulder"] in jb]
    if armed:
        parents = [jb[J[f"{s}_collar"]] if s in collared else chest for s in armed]
        flex = np.stack([moved(b, fwd) for b in parents], axis=1)
        # Zero-twist reference: the arm 45° down-out in the frontal plane (forearm flexing forward);
        # it points away from there only when reaching up and across the head — out of a humerus' reach.
        lateral = {"left": setup.axes[:, 0], "right": -setup.axes[:, 0]}
        reference = np.stack([moved(b, lateral[s] - up) for b, s in zip(parents, armed, strict=True)], axis=1)
        upper, lower, _ = limb_frames(p[:, joints_of("shoulder", armed)], p[:, joints_of("elbow", armed)],
                                      p[:, joints_of("wrist", armed)], flex, reference)
        for i, side in enumerate(armed):
            frames[jb[J[f"{side}_shoulder"]]], frames[jb[J[f"{side}_elbow"]]] = upper[:, i], lower[:, i]
    # Legs: thigh and shin share the knee hinge (zero twist: the leg straight down, the shin flexing
    # back; singular only for a thigh pointing straight up); the foot aims at the ball and keeps it.
    pelvis = setup.pelvis
    thigh, shin, hinge = limb_frames(p[:, joints_of("hip")], p[:, joints_of("knee")],
                                     p[:, joints_of("ankle")], moved(pelvis, -fwd)[:, None],
                                     moved(pelvis, -up)[:, None])
    foot = frame(p[:, joints_of("foot")] - p[:, joints_of("ankle")], hinge)
    for i, side in enumerate(sides):
        for role, f in (("hip", thigh), ("knee", shin), ("ankle", foot)):
            frames[jb[J[f"{side}_{role}"]]] = f[:, i]
    return frames


# --- the solve -------------------------------------------------------------------------------------

def source_transform(setup: RigSetup, joints: np.ndarray) -> SourceToRig:
    """Scale by leg length, axes by the rig frame, floor to the rig's rest ball height."""
    legs = [np.linalg.norm(joints[:, J[f"{s}_knee"]] - joints[:, J[f"{s}_hip"]], axis=-1)
            + np.linalg.norm(joints[:, J[f"{s}_ankle"]] - joints[:, J[f"{s}_knee"]], axis=-1)
            for s in ("left", "right")]
    source_leg = float(np.median(np.mean(legs, axis=0)))
    balls = joints[:, [J["left_foot"], J["right_foot"]], 1].min(axis=1)
    return SourceToRig(axes=setup.axes, scale=setup.leg_length / max(source_leg, 1e-6),
                       source_floor=float(np.percentile(balls, 25)), rig_floor=setup.rig_floor)


def deltas(setup: RigSetup, frames: dict[int, np.ndarray]) -> np.ndarray:
    """World deltas of the driven bones ``(K, T, 3, 3)`` in ``setup.driven`` order."""
    f = np.stack([frames[b] for b in setup.driven])
    rest = np.stack([setup.rest_frames[b] for b in setup.driven])
    return f @ np.swapaxes(rest, -1, -2)[:, None]


def basis_quaternions(setup: RigSetup, d: np.ndarray) -> np.ndarray:
    """The keys of ``setup.output_bones`` as quaternions (K, T, 4), sign-continuous along time:
    ``B = Lᵀ · D_pᵀ · D · L`` composed as quaternions (one matrix conversion per driven bone instead
    of three batched 3×3 products and a conversion per output bone)."""
    bones = setup.output_bones
    d_quats = np.concatenate([matrix_to_quat(d), np.broadcast_to(IDENTITY, (1,) + d.shape[1:2] + (4,))])
    own = setup.eff_driver[bones]
    parent = np.array([setup.eff_driver[p] if p >= 0 else -1 for p in setup.parents[bones]])
    rest = setup.rest_quats[bones][:, None]
    q = qmul(qinv(rest), qmul(qinv(d_quats[parent]), qmul(d_quats[own], rest)))
    return qcontinuous(q, axis=1)


def check_joints(joints: np.ndarray) -> np.ndarray:
    joints = np.asarray(joints, dtype=np.float64)
    if joints.ndim != 3 or joints.shape[1:] != (22, 3) or len(joints) < 1:
        raise InputError(f"Joint positions of shape {joints.shape} are not a HumanML3D clip.",
                         "Pass (frames, 22, 3) positions in the HumanML3D joint order (Y up, metres).")
    if not np.isfinite(joints).all():
        raise InputError("The joint positions contain NaN or infinite values.",
                         "Regenerate the motion or check the source animation.")
    return joints


def retarget(joints: np.ndarray, rig, mapping, src_fps: float = 20.0, dst_fps: float | None = None,
             foot_lock: bool = True, in_place: bool = False, setup: RigSetup | None = None,
             transform: SourceToRig | None = None, frame_count: int | None = None,
             steering: Steering | None = None) -> RetargetResult:
    """Pose-bone keys for ``rig`` that reproduce ``joints (T, 22, 3)`` (Y up, metres, ``src_fps``).

    ``dst_fps`` resamples the keys (slerp) to the scene rate; ``foot_lock`` pins feet during ground
    contact (two-bone IK); ``in_place`` keeps the pelvis over its rest position horizontally (and skips
    foot locking, which would fight the missing travel). ``setup`` reuses :func:`analyse_rig`.
    ``transform``: source → rig placement to use instead of estimating one from ``joints`` (an
    in-between passes the one that read the rig's own animation, so the regenerated range lands at
    the source's height and scale). ``frame_count``: exactly this many keys at ``dst_fps`` (the
    source's frame count, which a 24 → 20 → 24 fps round trip could otherwise shorten by one; the
    last key past the motion's end holds its last pose). ``steering``: a path or waypoints the root
    follows, root-motion extraction and the ground rule (docs/retargeting.md §11; its
    ``root_mode`` "in_place" is ``in_place``).
    """
    joints = check_joints(joints)
    setup = setup or cached_setup(rig, mapping)
    estimated = source_transform(setup, joints)
    transform = transform or estimated
    fps = float(src_fps)
    out_fps = fps if dst_fps is None else float(dst_fps)
    steering = steering or Steering(root_mode="in_place" if in_place else "none")
    in_place = steering.root_mode == "in_place"
    report = SteerReport(root_motion=steering.root_mode) if (steering.warps or steering.ground
                                                             or steering.extracts) else None
    contacts = None
    if steering.warps:
        assert report is not None
        # Contacts come from the unwarped clip (the warp changes no heights, and a scaled speed
        # would otherwise hide a planted foot from the speed test), each held a frame longer.
        contacts = held_contacts(joints, estimated.source_floor, fps)
        joints = steering.warp(joints, fps, out_fps, transform, rig.world_matrix, report)
    p = transform.to_rig(joints)
    frames = bone_frames(setup, p, setup.rest_frames)
    d = deltas(setup, frames)
    # The pelvis bone's head goes where it puts the rig's hip centre on the source's: rigs differ in
    # where that head sits relative to the thighs (Rigify's is 7 cm below them, SMPL's 8 cm above).
    hips = [J["left_hip"], J["right_hip"]]
    rest_offset = setup.rest_joints[hips].mean(0) - setup.rest_head[setup.pelvis]
    root = p[:, hips].mean(1) - rotate(d[setup.driven.index(setup.pelvis)], rest_offset)
    if in_place:
        rest_pelvis = setup.rest_head[setup.pelvis]
        horizontal = (root - rest_pelvis) - dot(root - rest_pelvis, setup.up)[:, None] * setup.up
        root = root - horizontal
    pin = foot_lock and not in_place and len(joints) > 2
    if pin or steering.ground:
        # Contacts are found against the clip's own floor (the estimate), wherever the transform puts
        # that floor on the rig; the pins are horizontal, so the placement itself does not matter here.
        d, root, lowered = plant_feet(setup, joints, estimated, d, root, fps, pin=pin,
                                      ground=steering.ground, contacts=contacts)
        if report is not None:
            report.pelvis_lowered = lowered * float(np.linalg.norm(np.asarray(rig.world_matrix)[:3, 0]))
    extracted = None
    if steering.extracts:
        d, root, extracted = extract_root(setup, d, root, steering.root_mode, steering.root_bone,
                                          steering.heading, fps)
        assert report is not None
        if steering.root_mode == "root_bone" and extracted.mode == "object":
            report.warnings.append("The rig has no bone named 'root' above the hips: the root motion went "
                                   "onto the armature object instead.")
        report.root_motion = extracted.mode

    quats = basis_quaternions(setup, d)
    pelvis = setup.pelvis
    location = (root - setup.rest_head[pelvis]) @ setup.rest_rot[pelvis]      # L.rotᵀ · (h − L.head)
    extra_bones: list[tuple[int, np.ndarray]] = []
    root_motion: dict | None = None
    if extracted is not None and extracted.mode == "root_bone":
        root_location, root_quats = root_bone_keys(setup, extracted)
        extra_bones.append((int(extracted.bone), root_quats))
        root_motion = {"mode": "root_bone", "name": setup.names[int(extracted.bone)],
                       "location": root_location}
    elif extracted is not None:
        object_location, object_quats = object_motion(rig.world_matrix, extracted)
        root_motion = {"mode": "object", "location": object_location, "rotation_quaternion": object_quats}
    if abs(out_fps - fps) > 1e-9 or frame_count not in (None, len(location)):
        before, frac = sample_times(len(location), fps, out_fps, count=frame_count)
        quats = np.swapaxes(resample_quaternions(np.swapaxes(quats, 0, 1), before, frac), 0, 1)
        location, fps = resample_vectors(location, before, frac), out_fps
        extra_bones = [(b, resample_quaternions(q, before, frac)) for b, q in extra_bones]
        if root_motion is not None:
            root_motion["location"] = resample_vectors(root_motion["location"], before, frac)
            if "rotation_quaternion" in root_motion:
                root_motion["rotation_quaternion"] = resample_quaternions(
                    root_motion["rotation_quaternion"], before, frac)
    if root_motion is not None and "rotation_quaternion" in root_motion:
        root_motion["rotation_euler"] = channel_values(root_motion["rotation_quaternion"], "XYZ")
    bones = []
    for k, b in enumerate(setup.output_bones):
        mode = setup.rotation_modes[b]
        bones.append(BoneChannel(setup.names[b], channel_for(mode), channel_values(quats[k], mode), mode))
    for b, q in extra_bones:
        mode = setup.rotation_modes[b]
        bones.append(BoneChannel(setup.names[b], channel_for(mode), channel_values(q, mode), mode))
    return RetargetResult(fps=fps, bones=bones, root_name=setup.names[pelvis], root_location=location,
                          transform=transform, steering=None if report is None else report.to_dict(),
                          root_motion=root_motion)


__all__ = ["analyse_rig", "cached_setup", "retarget"]
