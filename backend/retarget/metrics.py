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


# --- seams of composed takes and loop closure (docs/compose.md, "Measuring seams") -------------------

def jerk_curve(joints: np.ndarray, fps: float = 20.0) -> np.ndarray:
    """Per-frame jerk: the largest third difference of any joint's position × fps³ (m/s³), one value
    per frame step t → t+3 (T − 3 values), as the seam measures below use it."""
    joints = np.asarray(joints, dtype=np.float64)
    third = np.diff(joints, n=3, axis=0)
    return np.linalg.norm(third, axis=-1).max(axis=-1) * fps**3


def _window_stats(curve: np.ndarray, centre: int, half: int, fps: float) -> tuple[float, float]:
    """(peak, area) of the jerk curve over frames [centre − half, centre + half), the curve value of
    step t sitting at its middle frame t + 1.5."""
    lo, hi = max(0, centre - half - 1), min(len(curve), centre + half - 1)
    part = curve[lo:hi]
    if len(part) == 0:
        return 0.0, 0.0
    return float(part.max()), float(part.sum() / fps)


def seam_jerk(joints: np.ndarray, boundaries: list[int], fps: float = 20.0, window_seconds: float = 0.5
              ) -> dict[str, float]:
    """Peak jerk (PJ, m/s³) and area under the jerk (AUJ, m/s²) around the seams of a composed take
    versus inside its segments, the measures FlowMDM uses for transitions.

    ``boundaries``: the take's segment boundaries in frames, first 0 and last its length; the seams
    are the inner ones. Each seam is measured over a window of ``window_seconds`` centred on it, each
    segment over a window of the same length centred in its middle. Returned: the means of PJ and AUJ
    over the seams and over the segments, and their ratios (seam / inside; ≈ 1: seams are as smooth
    as the motion itself, ≫ 1: visible seams).
    """
    curve = jerk_curve(joints, fps)
    half = max(2, int(round(window_seconds * fps / 2)))
    seams = [_window_stats(curve, b, half, fps) for b in boundaries[1:-1]]
    inside = [_window_stats(curve, (a + b) // 2, half, fps)
              for a, b in zip(boundaries[:-1], boundaries[1:], strict=True)]
    result = {
        "peak_jerk_seams": float(np.mean([s[0] for s in seams])) if seams else 0.0,
        "auj_seams": float(np.mean([s[1] for s in seams])) if seams else 0.0,
        "peak_jerk_inside": float(np.mean([s[0] for s in inside])),
        "auj_inside": float(np.mean([s[1] for s in inside])),
    }
    result["peak_jerk_ratio"] = result["peak_jerk_seams"] / max(result["peak_jerk_inside"], 1e-12)
    result["auj_ratio"] = result["auj_seams"] / max(result["auj_inside"], 1e-12)
    return result


def loop_closure(joints: np.ndarray, offset: np.ndarray | None = None, ratio: float = 1.5
                 ) -> dict[str, float]:
    """How well a loop closes: the step from its last frame to the next cycle's first (the first frame
    moved by the per-cycle root ``offset``), against the take's median per-frame step.

    * position: root-relative joints (each frame minus its root's x, z), mean over joints of the
      step's length, versus the median of the same over the take's own steps;
    * velocity: the change of velocity (all joints, world) at the two steps around the wrap, versus
      the median change of velocity along the take.

    ``within`` is 1.0 when both are at most ``ratio`` times their medians (docs/compose.md, "Loops").
    """
    joints = np.asarray(joints, dtype=np.float64)
    offset = np.zeros(3) if offset is None else np.asarray(offset, dtype=np.float64)
    wrapped = np.concatenate([joints, joints[:2] + offset])          # two frames of the next cycle
    relative = wrapped.copy()
    relative[..., 0] -= wrapped[:, :1, 0]
    relative[..., 2] -= wrapped[:, :1, 2]
    steps = np.linalg.norm(np.diff(relative, axis=0), axis=-1).mean(axis=-1)     # (T + 1,)
    velocity = np.diff(wrapped, axis=0)
    changes = np.linalg.norm(np.diff(velocity, axis=0), axis=-1).mean(axis=-1)   # (T,)
    count = len(joints)
    position_step, position_median = float(steps[count - 1]), float(np.median(steps[: count - 1]))
    velocity_step = float(max(changes[count - 2], changes[count - 1]))
    velocity_median = float(np.median(changes[: count - 2]))
    position_ratio = position_step / max(position_median, 1e-12)
    velocity_ratio = velocity_step / max(velocity_median, 1e-12)
    return {"position_step": position_step, "position_median": position_median,
            "velocity_step": velocity_step, "velocity_median": velocity_median,
            "position_ratio": position_ratio, "velocity_ratio": velocity_ratio,
            "within": float(position_step <= ratio * position_median + 1e-12
                            and velocity_step <= ratio * velocity_median + 1e-12)}
