"""Quaternion math on numpy arrays, vectorised over any leading axes.

Convention: ``(w, x, y, z)``, Hamilton product, active rotations (``qrot(q, v)`` rotates ``v``).
``qmul(a, b)`` applies ``b`` first, then ``a``.

Every function computes in the floating dtype of its inputs (integers become float64). The official
HumanML3D/MoMask ``*_np`` helpers convert their inputs to float32 torch tensors; code that needs that
rounding for parity (``features.py``) passes float32 arrays in, see :func:`as_f32`.
"""

from __future__ import annotations

import numpy as np

IDENTITY = np.array([1.0, 0.0, 0.0, 0.0])


def _float(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a)
    return a if np.issubdtype(a.dtype, np.floating) else a.astype(np.float64)


def as_f32(a: np.ndarray) -> np.ndarray:
    """What the official ``_np`` helpers do to their inputs (``torch.from_numpy(a).float()``)."""
    return np.asarray(a, dtype=np.float32)


def cross(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cross products of 3-vectors along the last axis; shapes broadcast, the inputs' dtype kept."""
    # Explicit components: np.cross is slow for small trailing axes and promotes mixed dtypes oddly.
    ax, ay, az = a[..., 0], a[..., 1], a[..., 2]
    bx, by, bz = b[..., 0], b[..., 1], b[..., 2]
    return np.stack([ay * bz - az * by, az * bx - ax * bz, ax * by - ay * bx], axis=-1)


def wrap_angle(a):
    """Angles (radians; an array or a float) wrapped to [-π, π)."""
    return (a + np.pi) % (2 * np.pi) - np.pi


def qnormalize(q: np.ndarray) -> np.ndarray:
    """Unit quaternions (no guard against zero: a zero quaternion is a caller bug, like upstream)."""
    q = _float(q)
    return q / np.linalg.norm(q, axis=-1, keepdims=True)


def qinv(q: np.ndarray) -> np.ndarray:
    """Conjugate: the inverse of a UNIT quaternion (no normalisation, as upstream)."""
    q = _float(q)
    return q * np.array([1, -1, -1, -1], dtype=q.dtype)


def qmul(q: np.ndarray, r: np.ndarray) -> np.ndarray:
    """Hamilton product ``q ⊗ r`` (rotation ``r`` then ``q``); shapes broadcast."""
    q, r = _float(q), _float(r)
    q0, q1, q2, q3 = (q[..., i] for i in range(4))
    r0, r1, r2, r3 = (r[..., i] for i in range(4))
    # Same summation order as the upstream outer-product form, so float32 rounding matches.
    w = r0 * q0 - r1 * q1 - r2 * q2 - r3 * q3
    x = r0 * q1 + r1 * q0 - r2 * q3 + r3 * q2
    y = r0 * q2 + r1 * q3 + r2 * q0 - r3 * q1
    z = r0 * q3 - r1 * q2 + r2 * q1 + r3 * q0
    return np.stack([w, x, y, z], axis=-1)


def qrot(q: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Rotate vectors ``v (..., 3)`` by unit quaternions ``q (..., 4)``; shapes broadcast."""
    q, v = _float(q), _float(v)
    u = q[..., 1:]
    uv = cross(u, v)
    uuv = cross(u, uv)
    return v + 2 * (q[..., :1] * uv + uuv)


def qbetween(v0: np.ndarray, v1: np.ndarray) -> np.ndarray:
    """The shortest-arc unit quaternion taking direction ``v0`` to direction ``v1`` (any lengths).

    Opposite directions have no shortest arc; upstream returns NaN there, we turn 180° about an axis
    perpendicular to ``v0`` instead (identical results everywhere else).
    """
    v0, v1 = _float(v0), _float(v1)
    axis = cross(v0, v1)
    lengths = np.sqrt((v0 ** 2).sum(-1, keepdims=True) * (v1 ** 2).sum(-1, keepdims=True))
    q = np.concatenate([lengths + (v0 * v1).sum(-1, keepdims=True), axis], axis=-1)
    norm = np.linalg.norm(q, axis=-1, keepdims=True)
    opposite = norm <= 1e-6 * lengths
    if opposite.any():
        v0b = np.broadcast_to(v0, np.broadcast_shapes(v0.shape, v1.shape))
        least = np.eye(3, dtype=q.dtype)[np.argmin(np.abs(v0b), axis=-1)]   # the axis least along v0
        half_turn = np.concatenate([np.zeros_like(norm), cross(v0b, least)], axis=-1)
        q = np.where(opposite, half_turn, q)
        norm = np.linalg.norm(q, axis=-1, keepdims=True)
    return q / norm


def qfrom_axis_angle(axis: np.ndarray, angle: np.ndarray) -> np.ndarray:
    """Unit quaternion rotating by ``angle`` radians about ``axis`` (normalised here)."""
    axis = _float(axis)
    axis = axis / np.linalg.norm(axis, axis=-1, keepdims=True)
    half = 0.5 * np.asarray(angle, dtype=axis.dtype)[..., None]
    return np.concatenate([np.cos(half), np.sin(half) * axis], axis=-1)


def quat_to_matrix(q: np.ndarray) -> np.ndarray:
    """Rotation matrices ``(..., 3, 3)``; ``q`` need not be unit (scaled by ``2/|q|²`` as upstream)."""
    q = _float(q)
    r, i, j, k = q[..., 0], q[..., 1], q[..., 2], q[..., 3]
    two_s = 2.0 / (q * q).sum(-1)
    m = np.stack([
        1 - two_s * (j * j + k * k), two_s * (i * j - k * r), two_s * (i * k + j * r),
        two_s * (i * j + k * r), 1 - two_s * (i * i + k * k), two_s * (j * k - i * r),
        two_s * (i * k - j * r), two_s * (j * k + i * r), 1 - two_s * (i * i + j * j),
    ], axis=-1)
    return m.reshape(q.shape[:-1] + (3, 3))


def matrix_to_quat(m: np.ndarray) -> np.ndarray:
    """Unit quaternions (w ≥ 0) from rotation matrices ``(..., 3, 3)``.

    Shepperd's method, vectorised: each matrix uses the largest of the four candidate denominators,
    so it stays accurate near 180° turns where the trace formula loses precision.
    """
    m = _float(m)
    m00, m01, m02 = m[..., 0, 0], m[..., 0, 1], m[..., 0, 2]
    m10, m11, m12 = m[..., 1, 0], m[..., 1, 1], m[..., 1, 2]
    m20, m21, m22 = m[..., 2, 0], m[..., 2, 1], m[..., 2, 2]
    four_sq = np.stack([1 + m00 + m11 + m22, 1 + m00 - m11 - m22,
                        1 - m00 + m11 - m22, 1 - m00 - m11 + m22], axis=-1)   # 4w², 4x², 4y², 4z²
    best = np.argmax(four_sq, axis=-1)
    s = np.sqrt(np.maximum(np.take_along_axis(four_sq, best[..., None], -1)[..., 0], 1e-30)) * 2  # 4|c|
    candidates = np.stack([
        np.stack([s / 4, (m21 - m12) / s, (m02 - m20) / s, (m10 - m01) / s], -1),
        np.stack([(m21 - m12) / s, s / 4, (m01 + m10) / s, (m02 + m20) / s], -1),
        np.stack([(m02 - m20) / s, (m01 + m10) / s, s / 4, (m12 + m21) / s], -1),
        np.stack([(m10 - m01) / s, (m02 + m20) / s, (m12 + m21) / s, s / 4], -1),
    ], axis=-2)
    q = np.take_along_axis(candidates, best[..., None, None], -2)[..., 0, :]
    q = np.where(q[..., :1] < 0, -q, q)
    return qnormalize(q)


def quat_to_cont6d(q: np.ndarray) -> np.ndarray:
    """The continuous 6-D rotation: the first two COLUMNS of the matrix, ``[m00,m10,m20,m01,m11,m21]``."""
    m = quat_to_matrix(q)
    return np.concatenate([m[..., 0], m[..., 1]], axis=-1)


def cont6d_to_matrix(d6: np.ndarray) -> np.ndarray:
    """Rotation matrices from 6-D (Gram-Schmidt on the two stored columns)."""
    d6 = _float(d6)
    a, b = d6[..., :3], d6[..., 3:]
    x = a / np.linalg.norm(a, axis=-1, keepdims=True)
    z = cross(x, b)
    z = z / np.linalg.norm(z, axis=-1, keepdims=True)
    y = cross(z, x)
    return np.stack([x, y, z], axis=-1)


def slerp(q0: np.ndarray, q1: np.ndarray, t: np.ndarray | float) -> np.ndarray:
    """Spherical interpolation of unit quaternions along the shorter arc; shapes broadcast.

    ``t`` is broadcast against the leading axes (pass shape ``(..., 1)`` or a scalar). Nearly equal
    quaternions fall back to normalised lerp, where slerp's ``sin`` denominator vanishes.
    """
    q0, q1 = _float(q0), _float(q1)
    t = np.asarray(t, dtype=q0.dtype)
    if t.ndim and t.shape[-1] != 1:
        t = t[..., None]
    dot = (q0 * q1).sum(-1, keepdims=True)
    q1 = np.where(dot < 0, -q1, q1)            # q and -q are the same rotation; take the short way
    dot = np.abs(dot)
    close = dot > 0.9995
    theta = np.arccos(np.clip(dot, -1.0, 1.0))
    sin_theta = np.where(close, 1.0, np.sin(theta))
    w0 = np.where(close, 1 - t, np.sin((1 - t) * theta) / sin_theta)
    w1 = np.where(close, t, np.sin(t * theta) / sin_theta)
    return qnormalize(w0 * q0 + w1 * q1)


# --- added by H4 (retargeting): Euler / axis-angle in Blender's conventions, sign continuity -----------

_AXIS = {"X": 0, "Y": 1, "Z": 2}


def _axis_rotation(axis: int, angle: np.ndarray) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    one, zero = np.ones_like(angle), np.zeros_like(angle)
    rows = {
        0: [[one, zero, zero], [zero, c, -s], [zero, s, c]],
        1: [[c, zero, s], [zero, one, zero], [-s, zero, c]],
        2: [[c, -s, zero], [s, c, zero], [zero, zero, one]],
    }[axis]
    return np.stack([np.stack(r, axis=-1) for r in rows], axis=-2)


def euler_to_matrix(euler: np.ndarray, order: str = "XYZ") -> np.ndarray:
    """Rotation matrices from Blender Euler angles ``(..., 3)`` = (x, y, z) radians.

    Blender's order ``"XYZ"`` applies X first, then Y, then Z: ``R = Rz · Ry · Rx``.
    """
    euler = _float(euler)
    i, j, k = (_AXIS[a] for a in order)
    return _axis_rotation(k, euler[..., k]) @ _axis_rotation(j, euler[..., j]) @ _axis_rotation(
        i, euler[..., i])


def matrix_to_euler(m: np.ndarray, order: str = "XYZ") -> np.ndarray:
    """Blender Euler angles ``(..., 3)`` (x, y, z) of rotation matrices, inverse of :func:`euler_to_matrix`.

    Middle angle in [-90°, 90°]; at gimbal lock the last rotation is set to zero.
    """
    m = _float(m)
    i, j, k = (_AXIS[a] for a in order)
    sign = 1.0 if (j - i) % 3 == 1 else -1.0        # even (cyclic) or odd permutation of XYZ
    cos_mid = np.hypot(m[..., i, i], m[..., j, i])
    locked = cos_mid < 1e-9
    first = np.where(locked, np.arctan2(-sign * m[..., j, k], m[..., j, j]),
                     np.arctan2(sign * m[..., k, j], m[..., k, k]))
    middle = np.arctan2(-sign * m[..., k, i], cos_mid)
    last = np.where(locked, 0.0, np.arctan2(sign * m[..., j, i], m[..., i, i]))
    out = np.empty(m.shape[:-2] + (3,), dtype=m.dtype)
    out[..., i], out[..., j], out[..., k] = first, middle, last
    return out


def quat_to_axis_angle(q: np.ndarray) -> np.ndarray:
    """Blender ``rotation_axis_angle`` values ``(..., 4)`` = (angle, x, y, z) of unit quaternions.

    The angle is in [0, 2π) following the sign of ``w``, so a sign-continuous quaternion sequence gives
    a continuous angle; the identity has axis (0, 1, 0) as in Blender.
    """
    q = _float(q)
    v = q[..., 1:]
    norm = np.linalg.norm(v, axis=-1, keepdims=True)
    angle = 2.0 * np.arctan2(norm[..., 0], q[..., 0])
    axis = np.where(norm > 1e-12, v / np.maximum(norm, 1e-12), np.array([0.0, 1.0, 0.0], dtype=q.dtype))
    return np.concatenate([angle[..., None], axis], axis=-1)


def axis_angle_to_quat(axis_angle: np.ndarray) -> np.ndarray:
    """Unit quaternions from Blender ``rotation_axis_angle`` values (angle, x, y, z).

    A zero axis, which Blender accepts in a key, is taken as Blender's default axis (0, 1, 0) rather
    than giving NaN.
    """
    axis_angle = _float(axis_angle)
    axis = axis_angle[..., 1:]
    zero = np.linalg.norm(axis, axis=-1, keepdims=True) <= 1e-12
    axis = np.where(zero, np.array([0.0, 1.0, 0.0], dtype=axis.dtype), axis)
    return qfrom_axis_angle(axis, axis_angle[..., 0])


def qcontinuous(q: np.ndarray, axis: int = 0) -> np.ndarray:
    """Flip signs along ``axis`` (time) so consecutive quaternions lie in the same hemisphere."""
    q = _float(q)
    q = np.moveaxis(q, axis, 0)
    dots = (q[1:] * q[:-1]).sum(-1)
    flips = np.cumprod(np.where(dots < 0, -1.0, 1.0), axis=0)
    signs = np.concatenate([np.ones_like(flips[:1]), flips], axis=0)
    return np.moveaxis(q * signs[..., None], 0, axis)
