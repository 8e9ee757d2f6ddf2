"""Foot locking during ground contact (retargeting.md §4.5), closed form and vectorised over frames.

1. Contacts come from the *source*: the ball of the foot is within 5 cm of the floor and moves slower
   than 0.5 m/s horizontally (central differences, 3-tap smoothed); 1-frame gaps are filled and
   1-frame contacts dropped.
2. Per contact run the rig's ball (as forward kinematics puts it) is pinned horizontally to the run's
   mean position; the pin fades in and out over a few frames with smoothstep weights. Heights are
   left as solved (the floor offset already puts the ball at the rig's rest ball height).
3. The foot moves rigidly with its ball, so the ankle target is the FK ankle plus the same shift; a
   two-bone IK (law of cosines, pole = the FK knee) re-solves thigh and shin, and the foot keeps its
   solved direction with the new leg hinge. Unreachable targets are clamped to 0.999 of the leg
   length (no pelvis lowering).
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import binary_closing, binary_opening, distance_transform_edt

from backend.retarget.solver import (
    J,
    RigSetup,
    SourceToRig,
    dot,
    fk_heads,
    frame,
    limb_frames,
    rotate,
    smoothstep,
    unit,
)

CONTACT_HEIGHT = 0.05      # m above the source floor
CONTACT_SPEED = 0.5        # m/s horizontal
BLEND_FRAMES = 4           # fade in/out length at 20 fps


def source_contacts(joints: np.ndarray, source_floor: float, fps: float) -> np.ndarray:
    """Boolean contacts (T, 2) for the left and right ball joints of a source clip."""
    balls = joints[:, [J["left_foot"], J["right_foot"]]]
    horizontal = balls[..., [0, 2]]
    velocity = np.gradient(horizontal, axis=0) * fps
    speed = np.linalg.norm(velocity, axis=-1)
    padded = np.concatenate([speed[:1], speed, speed[-1:]], axis=0)
    speed = (padded[:-2] + padded[1:-1] + padded[2:]) / 3.0
    contact = (balls[..., 1] - source_floor < CONTACT_HEIGHT) & (speed < CONTACT_SPEED)
    structure = np.ones((3, 1), bool)
    contact = binary_closing(np.pad(contact, ((1, 1), (0, 0)), mode="edge"), structure)[1:-1]
    return binary_opening(contact, np.ones((2, 1), bool)) & contact


def pin_weights(contact: np.ndarray, blend: int) -> tuple[np.ndarray, np.ndarray]:
    """For one foot: the blend weight per frame and the index of the nearest contact frame."""
    if not contact.any():
        return np.zeros(len(contact)), np.zeros(len(contact), dtype=np.int64)
    distance, nearest = distance_transform_edt(~contact, return_indices=True)
    weight = smoothstep(1.0 - distance / (blend + 1))
    return weight, nearest[0]


def run_means(contact: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Per frame, the mean of ``values`` over the contact run the frame belongs to (0 outside runs)."""
    starts = np.flatnonzero(np.diff(np.concatenate([[0], contact.astype(np.int8)])) == 1)
    run_id = np.cumsum(np.diff(np.concatenate([[0], contact.astype(np.int8)])) == 1) - 1
    if len(starts) == 0:
        return np.zeros_like(values)
    order = np.flatnonzero(contact)
    ids = run_id[order]
    sums = np.zeros((len(starts),) + values.shape[1:])
    np.add.at(sums, ids, values[order])
    counts = np.bincount(ids, minlength=len(starts))[:, None]
    means = sums / counts
    return np.where(contact[:, None], means[np.clip(run_id, 0, None)], 0.0)


def two_bone_ik(hip: np.ndarray, target: np.ndarray, pole_knee: np.ndarray, upper: float, lower: float
                ) -> tuple[np.ndarray, np.ndarray]:
    """Knee positions reaching ``target`` from ``hip`` in the plane of ``pole_knee``; and the reached end."""
    to_target = target - hip
    reach = np.linalg.norm(to_target, axis=-1)
    distance = np.clip(reach, abs(upper - lower) + 1e-6, 0.999 * (upper + lower))
    along = unit(to_target)
    cos_a = (upper ** 2 + distance ** 2 - lower ** 2) / (2 * upper * distance)
    sin_a = np.sqrt(np.clip(1 - cos_a ** 2, 0.0, 1.0))
    pole = pole_knee - 0.5 * (hip + target)
    side = unit(pole - dot(pole, along)[..., None] * along)
    knee = hip + upper * (cos_a[..., None] * along + sin_a[..., None] * side)
    return knee, hip + distance[..., None] * along


def lock_feet(setup: RigSetup, joints: np.ndarray, transform: SourceToRig, d: np.ndarray,
              root: np.ndarray, fps: float) -> np.ndarray:
    """Deltas ``d`` (K, T, 3, 3) with thighs, shins and feet re-solved so contact feet stay put."""
    contacts = source_contacts(joints, transform.source_floor, fps)
    blend = max(1, int(round(BLEND_FRAMES * fps / 20.0)))
    slot = {b: i for i, b in enumerate(setup.driven)}
    jb = setup.joint_bone
    up = setup.up
    d = d.copy()
    pelvis_delta = d[slot[setup.pelvis]]
    for side_index, side in enumerate(("left", "right")):
        contact = contacts[:, side_index]
        if not contact.any():
            continue
        hip_b, knee_b, ankle_b = (jb[J[f"{side}_{n}"]] for n in ("hip", "knee", "ankle"))
        heads = fk_heads(setup, d, root, [hip_b, knee_b, ankle_b])
        hip, knee, ankle = heads[hip_b], heads[knee_b], heads[ankle_b]
        rest = setup.rest_joints
        ball_offset = rest[J[f"{side}_foot"]] - rest[J[f"{side}_ankle"]]
        ball = ankle + rotate(d[slot[ankle_b]], ball_offset)

        weight, nearest = pin_weights(contact, blend)
        pins = run_means(contact, ball)[nearest]
        shift = weight[:, None] * (pins - ball)
        shift -= dot(shift, up)[:, None] * up                     # horizontal pin only
        active = weight > 0
        upper = float(np.linalg.norm(setup.rest_head[knee_b] - setup.rest_head[hip_b]))
        lower = float(np.linalg.norm(setup.rest_head[ankle_b] - setup.rest_head[knee_b]))
        new_knee, new_ankle = two_bone_ik(hip, ankle + shift, knee, upper, lower)
        flex, flex_alt = rotate(pelvis_delta, -setup.forward), rotate(pelvis_delta, -up)
        thigh, shin, hinge = limb_frames(hip, new_knee, new_ankle, flex, flex_alt)
        foot = frame(ball - ankle, hinge)
        for bone, f in ((hip_b, thigh), (knee_b, shin), (ankle_b, foot)):
            solved = f @ setup.rest_frames[bone].T
            d[slot[bone]] = np.where(active[:, None, None], solved, d[slot[bone]])
    return d
