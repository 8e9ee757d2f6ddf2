"""Posed rig → 22 HumanML3D joints (docs/retargeting.md §9), and Blender's pose FK in numpy.

:func:`joints_from_pose` reads a rig's animation (``pose_bone.matrix`` per frame, armature space) as
the joints MoMask speaks: mapped bone heads; spine1–3 sampled on the rig's spine polyline at the
source skeleton's arc-length positions; joints the rig lacks (clavicles, toes, head) from the rest
proxies the solver uses, carried by their bone. Positions go back to source space (Y up, metres) with
the inverse of the solver's transform, then — by default — are *re-proportioned*: rebuilt by FK from
the pelvis along the rig's bone directions with the HumanML3D bone lengths (and HumanML3D's own pelvis
and chest shape), and re-floored (lowest joint of the clip at y = 0), which is what the model expects
when it inpaints.

:func:`pose_matrices_from_basis` evaluates ``M_b = M_p · L_p⁻¹ · L_b · B_b`` for all bones — what
Blender shows for keys without constraints — so tests can check a solve without Blender.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from backend.motion.skeleton import T2M_BONE_LENGTHS, T2M_PARENTS
from backend.portable.errors import InputError
from backend.retarget.channels import RetargetResult, channel_to_matrices
from backend.retarget.geometry import frame, rotate, unit
from backend.retarget.rig_setup import RigSetup, SourceToRig, topological_order
from backend.retarget.solver import SOURCE_LEG_LENGTH, SOURCE_SPINE, J, analyse_rig


def pose_matrices_from_basis(rig, result_or_basis) -> np.ndarray:
    """Armature-space pose matrices (T, n, 4, 4) of every bone from keys.

    ``result_or_basis``: a :class:`RetargetResult` (bones not listed stay at rest) or ``matrix_basis``
    per frame and bone, shape (T, n, 4, 4).
    """
    names = list(rig.bone_names)
    rest = np.asarray(rig.rest_matrices, dtype=np.float64)
    parents = np.asarray(rig.parents, dtype=np.int64)
    if isinstance(result_or_basis, RetargetResult):
        result = result_or_basis
        basis = np.tile(np.eye(4), (result.frame_count, len(names), 1, 1))
        index = {name: i for i, name in enumerate(names)}
        modes = list(rig.rotation_modes)
        for bone in result.bones:
            b = index[bone.name]
            basis[:, b, :3, :3] = channel_to_matrices(bone.values, modes[b])
        basis[:, index[result.root_name], :3, 3] = result.root_location
    else:
        basis = np.asarray(result_or_basis, dtype=np.float64)
    pose = np.empty_like(basis)
    rest_inv = np.linalg.inv(rest)
    for b in topological_order(parents):
        p = parents[b]
        if p < 0:
            pose[:, b] = rest[b] @ basis[:, b]
        else:
            pose[:, b] = pose[:, p] @ (rest_inv[p] @ rest[b]) @ basis[:, b]
    return pose


def rig_joints(setup: RigSetup, pose_matrices: np.ndarray) -> np.ndarray:
    """The 22 joints (T, 22, 3) in armature space from posed bone matrices (T, n, 4, 4)."""
    pose = np.asarray(pose_matrices, dtype=np.float64)
    heads = pose[..., :3, 3]
    out = np.zeros((len(pose), 22, 3))
    for j, b in setup.joint_bone.items():
        out[:, j] = heads[:, b]
    points = heads[:, setup.spine_bones + [setup.joint_bone[J["neck"]]]]
    out[:, list(SOURCE_SPINE[1:4])] = np.einsum("sk,tkc->tsc", setup.spine_rig_weights, points)
    for j in range(22):                 # joints with no bone of their own, carried rigidly by one
        if j in setup.joint_carrier or (j not in setup.joint_bone and j not in SOURCE_SPINE[1:4]):
            carrier = setup.joint_carrier.get(j)
            if carrier is None:         # an arm the rig lacks: follow the chest
                carrier = setup.spine_bones[-1]
            delta = pose[:, carrier, :3, :3] @ setup.rest_rot[carrier].T
            offset = setup.rest_joints[j] - setup.rest_head[carrier]
            out[:, j] = heads[:, carrier] + np.einsum("tij,j->ti", delta, offset)
    return out


def default_transform(setup: RigSetup) -> SourceToRig:
    """The solver's transform for a clip with the canonical HumanML3D leg length and floor at 0."""
    return SourceToRig(axes=setup.axes, scale=setup.leg_length / SOURCE_LEG_LENGTH,
                       source_floor=0.0, rig_floor=setup.rig_floor)


#: HumanML3D's rigid torso parts in their own frames (columns of :func:`frame`): the pelvis frame
#: (e1 = pelvis→spine1, e2 towards the hip line) holds the hips and spine1; the chest frame (e1 =
#: spine3→neck, e2 towards the collar line) holds the neck and collars. Measured on sample 000612 (they
#: are constant over its frames to 1e-7 m; every clip shares the dataset skeleton).
PELVIS_GROUP = ((1, 2, 3), np.array([[-0.071883, 0.064691, 0.035666],
                                     [-0.084965, -0.05986, 0.035666],
                                     [0.131568, 0.0, 0.0]]))
CHEST_GROUP = ((12, 13, 14), np.array([[0.21936, 0.0, 0.0],
                                       [0.112026, 0.079702, -0.000521],
                                       [0.121281, -0.07648, -0.000521]]))


def reproportioned(joints: np.ndarray, lengths: np.ndarray = T2M_BONE_LENGTHS) -> np.ndarray:
    """The same pose on the HumanML3D skeleton: FK from the pelvis along the joints' bone directions
    with HumanML3D bone lengths, except the rigid torso parts (hips/spine1 on the pelvis, neck/collars
    on the chest), which take HumanML3D's own shape oriented by the rig's pelvis and chest — a rig
    whose thighs start above its pelvis bone head (Rigify) must not lift the legs."""
    out = np.empty_like(joints)
    pelvis_frame = frame(joints[:, 3] - joints[:, 0], joints[:, 1] - joints[:, 2])
    # The pelvis joint from the rig's hips (not its pelvis bone head, whose place varies by rig).
    hip_offset = PELVIS_GROUP[1][:2].mean(0)
    out[:, 0] = joints[:, [1, 2]].mean(1) - rotate(pelvis_frame, hip_offset)
    chest_frame = frame(joints[:, 12] - joints[:, 9], joints[:, 13] - joints[:, 14])
    for j in range(1, 22):            # parents precede children in the HumanML3D order
        p = T2M_PARENTS[j]
        if j in PELVIS_GROUP[0] or j in CHEST_GROUP[0]:
            group, rot = (PELVIS_GROUP, pelvis_frame) if j in PELVIS_GROUP[0] else (CHEST_GROUP, chest_frame)
            offset = group[1][group[0].index(j)]
            out[:, j] = out[:, p] + rotate(rot, offset)
        else:
            out[:, j] = out[:, p] + lengths[j] * unit(joints[:, j] - joints[:, p])
    return out


def joints_from_pose(rig, mapping, pose_matrices: np.ndarray, reproportion: bool = True,
                     transform: SourceToRig | None = None, setup: RigSetup | None = None) -> np.ndarray:
    """22 joints (T, 22, 3), Y up, metres, from ``pose_bone.matrix`` per frame (T, n, 4, 4).

    ``reproportion`` (default True): HumanML3D bone lengths, floored so the clip's lowest joint is
    at y = 0. ``transform``: the :class:`SourceToRig` of a previous solve (``result.transform``) to
    land exactly in that clip's space; by default the canonical leg length and floor are assumed.
    """
    return joints_and_transform_from_pose(rig, mapping, pose_matrices, reproportion, transform, setup)[0]


def joints_and_transform_from_pose(rig, mapping, pose_matrices: np.ndarray, reproportion: bool = True,
                                   transform: SourceToRig | None = None, setup: RigSetup | None = None
                                   ) -> tuple[np.ndarray, SourceToRig]:
    """:func:`joints_from_pose` and the :class:`SourceToRig` that maps those joints back onto the rig.

    The re-flooring shift is folded into the returned transform's ``source_floor``, so
    ``retarget(joints, ..., transform=it)`` puts the clip back where the rig's own animation is — a
    character on a platform or mid-jump keeps its height — instead of re-estimating a floor from the
    joints, which would drop an in-between to the rig's rest floor and pop at the seams.
    """
    pose = np.asarray(pose_matrices, dtype=np.float64)
    if pose.ndim != 4 or pose.shape[-2:] != (4, 4) or pose.shape[1] != len(rig.bone_names):
        raise InputError(f"Pose matrices of shape {pose.shape} do not match the rig's "
                         f"{len(rig.bone_names)} bones.",
                         "Read pose_bone.matrix for every bone of the armature, every frame.")
    setup = setup or analyse_rig(rig, mapping)
    transform = transform or default_transform(setup)
    joints = transform.to_source(rig_joints(setup, pose))
    if reproportion:
        joints = reproportioned(joints)
        floor = float(joints[..., 1].min())
        joints[..., 1] -= floor
        # to_source(p) − floor·ŷ is to_source with source_floor lowered by the same amount
        transform = dataclasses.replace(transform, source_floor=transform.source_floor - floor)
    return joints, transform
