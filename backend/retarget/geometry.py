"""Vector geometry the solver and foot locking share: unit vectors, orthonormal frames, swings and
twists, and the three frames of a two-bone limb. numpy, vectorised over leading axes.
"""

from __future__ import annotations

import numpy as np

from backend.portable.quaternion import cross, wrap_angle

# --- small vector helpers (vectorised over leading axes) ---------------------------------------------

def unit(v: np.ndarray) -> np.ndarray:
    return v / np.maximum(np.sqrt((v * v).sum(-1, keepdims=True)), 1e-12)


def norm(v: np.ndarray) -> np.ndarray:
    return np.sqrt((v * v).sum(-1))


def dot(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(-1)


def smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


def frame(primary: np.ndarray, secondary: np.ndarray) -> np.ndarray:
    """Orthonormal frames ``[e1 e2 e3]`` (columns): e1 along ``primary``, e2 towards ``secondary``."""
    e1 = unit(primary)
    e2 = secondary - dot(secondary, e1)[..., None] * e1
    degenerate = norm(e2)[..., None] < 1e-9                  # secondary along primary
    if degenerate.any():
        helper = np.where(np.abs(e1[..., :1]) < 0.9, np.array([1.0, 0.0, 0.0]), np.array([0.0, 1.0, 0.0]))
        e2 = np.where(degenerate, cross(e1, helper), e2)
    e2 = unit(e2)
    out = np.empty(e1.shape + (3,))
    out[..., 0], out[..., 1], out[..., 2] = e1, e2, cross(e1, e2)
    return out


def rotate(rot: np.ndarray, v: np.ndarray) -> np.ndarray:
    """``rot (..., 3, 3) · v (..., 3)``."""
    return np.einsum("...ij,...j->...i", rot, v)


#: Bend (degrees) from which a limb's plane is trusted outright: elbows and knees do not hyper-extend
#: this far, so ``u × l`` then IS the hinge, whatever the anatomical fallback says.
SURE_BEND_DEG = 20.0
#: Bends below this (degrees) carry no usable plane (noise); the propagated twist is used alone.
PLANE_FADE_DEG = (3.0, 15.0)


def swing(v_from: np.ndarray, v_to: np.ndarray, x: np.ndarray) -> np.ndarray:
    """``x`` turned by the shortest rotation taking unit ``v_from`` to unit ``v_to`` (singular only when
    they are opposite)."""
    c = dot(v_from, v_to)[..., None]
    k = cross(v_from, v_to)
    return c * x + cross(k, x) + dot(k, x)[..., None] * k / np.maximum(1 + c, 1e-6)


def twist_about(axis: np.ndarray, x: np.ndarray, angle: np.ndarray) -> np.ndarray:
    """``x`` (perpendicular to unit ``axis``) turned by ``angle`` about ``axis``."""
    return np.cos(angle)[..., None] * x + np.sin(angle)[..., None] * cross(axis, x)


def propagate_twist(angle: np.ndarray, sure: np.ndarray) -> np.ndarray:
    """``angle (T, ...)`` known where ``sure``: unwrapped across the sure frames (the shortest way) and
    linearly interpolated through the others along time (held before the first / after the last).

    Zero everywhere in a series without one sure frame. Loops over the trailing series (the limbs of
    one solve), never over frames.
    """
    flat_angle = angle.reshape(len(angle), -1)
    flat_sure = sure.reshape(len(sure), -1)
    out = np.zeros_like(flat_angle)
    time = np.arange(len(angle), dtype=np.float64)
    for k in range(flat_angle.shape[1]):
        at = flat_sure[:, k]
        if at.any():
            out[:, k] = np.interp(time, time[at], np.unwrap(flat_angle[at, k]))
    return out.reshape(angle.shape)


def limb_frames(a: np.ndarray, b: np.ndarray, c: np.ndarray, flex: np.ndarray, reference: np.ndarray
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Upper and lower frames of a two-bone limb a→b→c sharing one hinge axis, and that hinge.

    Arrays are (T, ..., 3) with time first. ``reference`` is a direction the upper bone can point to
    whose hinge is ``reference × flex`` (``flex``: where the lower bone swings when the joint flexes,
    e.g. body-forward for elbows with arms hanging, body-back for knees). Carried to the upper bone's
    actual direction by the shortest swing, that gives the zero-twist hinge: smooth everywhere except
    where the bone points exactly away from ``reference`` (chosen where a limb cannot point).

    The hinge is then that zero-twist hinge turned about the upper bone by a twist angle:

    * where the limb is clearly bent (≥ ``SURE_BEND_DEG``), the limb plane ``u × l`` fixes it — a joint
      that bends this far is flexing, never hyper-extending, so its sign is trusted;
    * through straight and slightly bent frames the twist is interpolated in time from the clearly
      bent ones (held at the clip's ends, zero if the limb is never bent), so the upper bone never
      spins about itself while the plane is unobservable;
    * a slight bend (3°–15°) pulls towards its own plane, unless that plane is opposite the
      propagated one: then it is a hyper-extension (or noise) and counts with its sign flipped.

    Every step is continuous in time, so the upper bone never turns 180° about itself between frames.
    """
    u, low = b - a, c - b
    u_hat, ref_hat = unit(u), unit(reference)
    zero = swing(ref_hat, u_hat, unit(cross(ref_hat, flex)))
    zero = unit(zero - dot(zero, u_hat)[..., None] * u_hat)
    plane = cross(u_hat, low)
    bend = np.degrees(np.arctan2(norm(plane), dot(u_hat, low)))
    plane = unit(plane)
    observed = np.arctan2(dot(u_hat, cross(zero, plane)), dot(zero, plane))
    sure = bend >= SURE_BEND_DEG
    propagated = propagate_twist(observed, sure)
    offset = wrap_angle(observed - propagated)
    offset = np.where(np.abs(offset) > np.pi / 2, wrap_angle(offset + np.pi), offset)   # hyper-extension
    weight = smoothstep((bend - PLANE_FADE_DEG[0]) / (PLANE_FADE_DEG[1] - PLANE_FADE_DEG[0]))
    weight = np.where(sure, 1.0, weight * np.cos(offset))      # fades out as the guard's choice turns over
    hinge = twist_about(u_hat, zero, propagated + weight * offset)
    return frame(u, hinge), frame(low, hinge), hinge
