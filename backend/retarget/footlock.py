"""Foot locking during ground contact (docs/retargeting.md §6), closed form and vectorised over frames.

1. Contacts come from the *source*: the ball of the foot is within 5 cm of the floor and moves slower
   than 0.5 m/s horizontally (central differences, 3-tap smoothed); 1-frame gaps are filled and
   1-frame contacts dropped.
2. Per contact run the rig's ball (as forward kinematics puts it) is pinned horizontally to the run's
   mean position; between runs the correction eases from one run's to the next's over the whole gap
   (smoothstep), so the foot never speeds up near the ground to catch up. Heights are left as solved
   (the floor offset already puts the ball at the rig's rest ball height).
3. The foot moves rigidly with its ball, so the ankle target is the FK ankle plus the same shift; a
   two-bone IK (law of cosines, pole = the FK knee) re-solves thigh and shin, and the foot keeps its
   solved direction with the new leg hinge. Unreachable targets are clamped to 0.999 of the leg
   length; with the ground rule (docs/retargeting.md §11.4, :func:`plant_feet`) feet are kept above
   their rest height and the pelvis is lowered instead.
"""

from __future__ import annotations

import numpy as np

from backend.motion.skeleton import T2M_JOINT_INDEX as J
from backend.retarget.geometry import dot, frame, limb_frames, rotate, smoothstep, unit
from backend.retarget.rig_setup import RigSetup, SourceToRig, fk_heads

CONTACT_HEIGHT = 0.05      # m above the source floor
CONTACT_SPEED = 0.5        # m/s horizontal
#: The ground rule lowers the pelvis by at most this share of the leg length (a deep knee bend);
#: a pin further away is clamped as without the rule.
MAX_PELVIS_LOWERING = 0.15


def source_contacts(joints: np.ndarray, source_floor: float, fps: float) -> np.ndarray:
    """Boolean contacts (T, 2) for the left and right ball joints of a source clip."""
    balls = joints[:, [J["left_foot"], J["right_foot"]]]
    horizontal = balls[..., [0, 2]]
    velocity = np.gradient(horizontal, axis=0) * fps
    speed = np.linalg.norm(velocity, axis=-1)
    padded = np.concatenate([speed[:1], speed, speed[-1:]], axis=0)
    speed = (padded[:-2] + padded[1:-1] + padded[2:]) / 3.0
    contact = (balls[..., 1] - source_floor < CONTACT_HEIGHT) & (speed < CONTACT_SPEED)
    padded = np.concatenate([contact[:1], contact, contact[-1:]], axis=0)
    contact = padded[1:-1] | (padded[:-2] & padded[2:])              # fill 1-frame gaps
    padded = np.concatenate([np.zeros_like(contact[:1]), contact, np.zeros_like(contact[:1])], axis=0)
    return contact & (padded[:-2] | padded[2:])                        # drop 1-frame contacts


def held_contacts(joints: np.ndarray, source_floor: float, fps: float, hold: int = 1) -> np.ndarray:
    """:func:`source_contacts` with each run held ``hold`` frames longer at both ends while the ball is
    still within the contact height: a steered take (docs/retargeting.md §11) adds motion that a
    pinned foot would otherwise show all at once in the step it is released."""
    contact = source_contacts(joints, source_floor, fps)
    low = joints[:, [J["left_foot"], J["right_foot"]], 1] - source_floor < CONTACT_HEIGHT
    held = contact.copy()
    for k in range(1, hold + 1):
        held[k:] |= contact[:-k] & low[k:]
        held[:-k] |= contact[k:] & low[:-k]
    return held


def pin_shift(contact: np.ndarray, ball: np.ndarray) -> np.ndarray:
    """Per frame, how far to move one foot's ball (T, 3): onto its run's mean position during contact;
    between two runs the correction eases (smoothstep) from the one run's to the next's across the whole
    gap, so the catch-up is spread over the swing instead of speeding the foot up near the ground;
    before the first and after the last run the nearest correction is held."""
    shift = np.where(contact[:, None], run_means(contact, ball) - ball, 0.0)
    frames = np.arange(len(contact))
    first, final = np.flatnonzero(contact)[[0, -1]]
    last = np.maximum.accumulate(np.where(contact, frames, first))                     # previous contact
    following = np.minimum.accumulate(np.where(contact, frames, final)[::-1])[::-1]    # next contact
    span = np.maximum(following - last, 1)
    ease = smoothstep(np.where(following > last, (frames - last) / span, 0.0))[:, None]
    gap = (1 - ease) * shift[last] + ease * shift[following]
    return np.where(contact[:, None], shift, gap)


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


def two_bone_ik(hip: np.ndarray, target: np.ndarray, pole_knee: np.ndarray, upper, lower
                ) -> tuple[np.ndarray, np.ndarray]:
    """Knee positions reaching ``target`` from ``hip`` in the plane of ``pole_knee``; and the reached end.

    ``upper``/``lower``: bone lengths, scalars or arrays broadcasting against the positions' leading axes.
    """
    upper, lower = np.asarray(upper, float), np.asarray(lower, float)
    to_target = target - hip
    reach = np.linalg.norm(to_target, axis=-1)
    distance = np.clip(reach, abs(upper - lower) + 1e-6, 0.999 * (upper + lower))
    along = unit(to_target)
    cos_a = (upper ** 2 + distance ** 2 - lower ** 2) / (2 * upper * distance)
    sin_a = np.sqrt(np.clip(1 - cos_a ** 2, 0.0, 1.0))
    pole = pole_knee - 0.5 * (hip + target)
    side = unit(pole - dot(pole, along)[..., None] * along)
    knee = hip + upper[..., None] * (cos_a[..., None] * along + sin_a[..., None] * side)
    return knee, hip + distance[..., None] * along


def lowering_for_reach(hip: np.ndarray, target: np.ndarray, reach: np.ndarray, up: np.ndarray) -> np.ndarray:
    """How far (T, ...) the hip must go down along ``up`` for ``target`` to lie within ``reach``:
    the smallest δ ≥ 0 with ``|target − (hip − δ·up)| ≤ reach``; 0 where no lowering reaches (the
    target is more than a leg's length away sideways: the leg is clamped, as without the rule)."""
    v = target - hip
    along = dot(v, up)
    excess = (v * v).sum(-1) - reach ** 2
    disc = along ** 2 - excess
    delta = -along - np.sqrt(np.maximum(disc, 0.0))
    return np.where((excess > 0) & (disc >= 0), np.maximum(delta, 0.0), 0.0)


def hold_and_ease(x: np.ndarray, radius: int) -> np.ndarray:
    """A smooth envelope ≥ ``x`` (T,): the running maximum over ±radius, then its ±radius mean (each
    mean's window lies inside every maximum's window it averages, so it never drops below ``x``)."""
    if radius <= 0 or not x.any():
        return x
    padded = np.concatenate([np.zeros(radius), x, np.zeros(radius)])
    windows = np.lib.stride_tricks.sliding_window_view(padded, 2 * radius + 1)
    held = windows.max(axis=1)
    padded = np.concatenate([np.zeros(radius), held, np.zeros(radius)])
    return np.lib.stride_tricks.sliding_window_view(padded, 2 * radius + 1).mean(axis=1)


def lock_feet(setup: RigSetup, joints: np.ndarray, transform: SourceToRig, d: np.ndarray,
              root: np.ndarray, fps: float) -> np.ndarray:
    """Deltas ``d`` (K, T, 3, 3) with thighs, shins and feet re-solved so contact feet stay put."""
    return plant_feet(setup, joints, transform, d, root, fps)[0]


def plant_feet(setup: RigSetup, joints: np.ndarray, transform: SourceToRig, d: np.ndarray,
               root: np.ndarray, fps: float, pin: bool = True, ground: bool = False,
               contacts: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, float]:
    """Foot locking and the ground rule (docs/retargeting.md §6, §11.4) in one two-bone IK pass.

    ``pin``: contact feet pinned horizontally (``contacts`` (T, 2), else found on ``joints``).
    ``ground``: no ankle or ball below its rest height along up (the foot is lifted rigidly), and
    where a pinned or lifted foot is out of the leg's reach the pelvis is lowered (a smooth envelope of
    the lowering each frame needs) instead of the leg being clamped. Returns the deltas, the pelvis
    head (T, 3) and the most it was lowered (armature units).
    """
    if pin and contacts is None:
        contacts = source_contacts(joints, transform.source_floor, fps)
    pinning = pin and contacts is not None and bool(contacts.any())
    if not pinning and not ground:
        return d, root, 0.0
    slot = {b: i for i, b in enumerate(setup.driven)}
    jb, up, rest = setup.joint_bone, setup.up, setup.rest_joints
    sides = ("left", "right")
    legs = np.array([[jb[J[f"{side}_{n}"]] for n in ("hip", "knee", "ankle")] for side in sides])  # (2, 3)
    heads = fk_heads(setup, d, root, list(legs.ravel()))
    hip, knee, ankle = (np.stack([heads[b] for b in legs[:, k]], axis=1) for k in range(3))  # (T, 2, 3)
    foot_delta = d[[slot[b] for b in legs[:, 2]]].swapaxes(0, 1)                              # (T, 2, 3, 3)
    balls, ankles = [J["left_foot"], J["right_foot"]], [J["left_ankle"], J["right_ankle"]]
    ball_offset = rest[balls] - rest[ankles]
    ball = ankle + rotate(foot_delta, ball_offset)

    shift = np.zeros_like(ball)
    if pinning:
        assert contacts is not None
        for i in range(2):                       # per foot: contact runs → pinned ball positions
            if contacts[:, i].any():             # a foot that never touches the floor stays as it is
                shift[:, i] = pin_shift(contacts[:, i], ball[:, i])
        shift -= dot(shift, up)[..., None] * up  # horizontal pin only
    active = np.abs(shift).sum(-1) > 0           # (T, 2)
    upper = np.linalg.norm(setup.rest_head[legs[:, 1]] - setup.rest_head[legs[:, 0]], axis=-1)
    lower = np.linalg.norm(setup.rest_head[legs[:, 2]] - setup.rest_head[legs[:, 1]], axis=-1)
    target = ankle + shift
    lowered = 0.0
    if ground:
        lift = np.maximum(dot(rest[ankles], up) - dot(ankle, up), dot(rest[balls], up) - dot(ball, up))
        lift = np.maximum(lift, 0.0)                                                          # (T, 2)
        target = target + lift[..., None] * up
        ball = ball + lift[..., None] * up
        need = lowering_for_reach(hip, target, 0.995 * (upper + lower), up).max(axis=1)       # (T,)
        need = np.minimum(need, MAX_PELVIS_LOWERING * setup.leg_length)
        drop = hold_and_ease(need, max(int(round(0.15 * fps)), 1))
        root = root - drop[:, None] * up
        hip = hip - drop[:, None, None] * up
        lowered = float(drop.max(initial=0.0))
        active = active | (lift > 0) | (drop[:, None] > 0)
    if not active.any():
        return d, root, lowered
    ball = ball + shift
    new_knee, new_ankle = two_bone_ik(hip, target, knee, upper, lower)
    pelvis_delta = d[slot[setup.pelvis]][:, None]
    thigh, shin, hinge = limb_frames(hip, new_knee, new_ankle, rotate(pelvis_delta, -setup.forward),
                                     rotate(pelvis_delta, -up))
    foot = frame(ball - target, hinge)
    d = d.copy()
    for i in range(2):
        for bone, f in zip(legs[i], (thigh, shin, foot), strict=True):
            solved = f[:, i] @ setup.rest_frames[bone].T
            d[slot[bone]] = np.where(active[:, i, None, None], solved, d[slot[bone]])
    return d, root, lowered
