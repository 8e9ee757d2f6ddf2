"""Quality measures of a retargeted motion, on 22-joint positions (Y up, metres, 20 fps).

Definitions of docs/retargeting.md §10 (numpy only, so Blender's Python can use them too):

* :func:`bone_direction_error` — mean angle (degrees) between corresponding segments, over segments
  and frames; proportion-free, so it compares a motion on any rig with its source.
* :func:`mpjpe_mm` — mean per-joint position error in millimetres (optionally root-relative).
* :func:`foot_skating_ratio` — the GMD/OmniControl ratio: share of frame steps where a foot (ball
  joint 10 or 11) below 5 cm moves faster than 0.5 m/s, both raw and 5-frame averaged. The floor is
  taken at y = 0 as in the original (no per-clip re-flooring).
* :func:`jitter` — mean third difference of positions × fps³ (m/s³).
"""

from __future__ import annotations

import numpy as np

#: (parent joint, child joint) segments compared by :func:`bone_direction_error`: legs, feet, spine,
#: neck→head, clavicles, arms.
DIRECTION_SEGMENTS: tuple[tuple[int, int], ...] = (
    (1, 4), (4, 7), (7, 10), (2, 5), (5, 8), (8, 11),          # thighs, shins, feet
    (0, 3), (3, 6), (6, 9), (9, 12), (12, 15),                  # spine, neck
    (13, 16), (14, 17),                                          # clavicles
    (16, 18), (18, 20), (17, 19), (19, 21),                      # upper arms, forearms
)

FOOT_JOINTS = (10, 11)


def moving_average(x: np.ndarray, window: int) -> np.ndarray:
    """Centred moving average along axis 0 with zeros outside (scipy ``uniform_filter1d``, mode constant)."""
    before = window // 2
    tail = (window - 1 - before,) + x.shape[1:]
    padded = np.concatenate([np.zeros((before,) + x.shape[1:]), x, np.zeros(tail)])
    sums = np.cumsum(np.concatenate([np.zeros((1,) + x.shape[1:]), padded]), axis=0)
    return (sums[window:] - sums[:-window]) / window


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-12)


def segment_angles(pred: np.ndarray, ref: np.ndarray,
                   segments: tuple[tuple[int, int], ...] = DIRECTION_SEGMENTS) -> np.ndarray:
    """Angles (degrees, shape (T, S)) between the segments of ``pred`` and ``ref`` (T, J, 3)."""
    pred, ref = np.asarray(pred, np.float64), np.asarray(ref, np.float64)
    a, b = np.array(segments).T
    cos = (_unit(pred[:, b] - pred[:, a]) * _unit(ref[:, b] - ref[:, a])).sum(-1)
    return np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))


def bone_direction_error(pred: np.ndarray, ref: np.ndarray,
                         segments: tuple[tuple[int, int], ...] = DIRECTION_SEGMENTS) -> float:
    """``mean_t,b arccos(û_tb · u_tb)`` in degrees."""
    return float(segment_angles(pred, ref, segments).mean())


def mpjpe_mm(pred: np.ndarray, ref: np.ndarray, root_relative: bool = False) -> float:
    """Mean per-joint position error in millimetres; ``root_relative`` subtracts joint 0 first."""
    pred, ref = np.asarray(pred, np.float64), np.asarray(ref, np.float64)
    if root_relative:
        pred, ref = pred - pred[:, :1], ref - ref[:, :1]
    return float(np.linalg.norm(pred - ref, axis=-1).mean() * 1000.0)


def foot_skating_ratio(joints: np.ndarray, fps: float = 20.0, feet: tuple[int, int] = FOOT_JOINTS,
                       height: float = 0.05, velocity: float = 0.5, window: int = 5) -> float:
    """Share of the T−1 frame steps in which either foot skates (GMD definition, floor at y = 0)."""
    feet_pos = np.asarray(joints, np.float64)[:, list(feet)]               # (T, 2, 3)
    speed = np.linalg.norm(np.diff(feet_pos[..., [0, 2]], axis=0), axis=-1) * fps   # (T-1, 2)
    mean_speed = moving_average(speed, window)
    low = feet_pos[..., 1] < height
    contact = low[:-1] & low[1:]
    skating = contact & (speed > velocity) & (mean_speed > velocity)
    return float(skating.any(axis=1).sum() / max(len(speed), 1))


def contact_speed(joints: np.ndarray, contact: np.ndarray, fps: float = 20.0,
                  feet: tuple[int, int] = FOOT_JOINTS) -> float:
    """Mean horizontal ball speed (m/s) over the frame steps labelled ``contact`` (T−1, 2)."""
    feet_pos = np.asarray(joints, np.float64)[:, list(feet)]
    speed = np.linalg.norm(np.diff(feet_pos[..., [0, 2]], axis=0), axis=-1) * fps
    contact = np.asarray(contact, bool)
    return float(speed[contact].mean()) if contact.any() else 0.0


def jitter(joints: np.ndarray, fps: float = 20.0) -> float:
    """``mean_t,j ‖x_{t+3} − 3x_{t+2} + 3x_{t+1} − x_t‖ · fps³`` in m/s³."""
    x = np.asarray(joints, np.float64)
    if len(x) < 4:
        return 0.0
    third = x[3:] - 3 * x[2:-1] + 3 * x[1:-2] - x[:-3]
    return float(np.linalg.norm(third, axis=-1).mean() * fps ** 3)
