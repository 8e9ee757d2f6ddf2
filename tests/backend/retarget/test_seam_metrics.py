"""The seam measures (FlowMDM's peak jerk and area under the jerk) and the loop closure, proven on
synthetic motions whose seams are known."""

from __future__ import annotations

import numpy as np

from backend.retarget.metrics import jerk_curve, loop_closure, seam_jerk

FPS = 20.0


def smooth_motion(frames: int = 400) -> np.ndarray:
    t = np.arange(frames)[:, None] / FPS
    phase = np.arange(22)[None, :] * 0.3
    joints = np.zeros((frames, 22, 3))
    joints[..., 0] = 0.1 * np.sin(2 * np.pi * 1.1 * t + phase) + 0.8 * t      # walks along x
    joints[..., 1] = 0.05 * np.cos(2 * np.pi * 0.7 * t + phase) + np.arange(22) * 0.07
    joints[..., 2] = 0.08 * np.sin(2 * np.pi * 0.5 * t + 2 * phase)
    return joints


BOUNDS = [0, 100, 200, 300, 400]


def test_a_smooth_motion_has_no_seams() -> None:
    result = seam_jerk(smooth_motion(), BOUNDS, FPS)
    assert 0.5 < result["peak_jerk_ratio"] < 1.5 and 0.5 < result["auj_ratio"] < 1.5


def test_jumps_at_the_boundaries_are_seams() -> None:
    joints = smooth_motion()
    for b in BOUNDS[1:-1]:
        joints[b:, :, 2] += 0.05                      # 5 cm pops at every boundary
    result = seam_jerk(joints, BOUNDS, FPS)
    assert result["peak_jerk_ratio"] > 10 and result["auj_ratio"] > 3
    # A seam a quarter of the size is measurably smaller: the measure grows with the pop.
    small = smooth_motion()
    for b in BOUNDS[1:-1]:
        small[b:, :, 2] += 0.0125
    assert 1 < seam_jerk(small, BOUNDS, FPS)["peak_jerk_seams"] < result["peak_jerk_seams"]


def test_a_velocity_kink_is_a_seam_too() -> None:
    joints = smooth_motion()
    t = np.arange(400) / FPS
    joints[200:, :, 0] += (t[200:, None] - t[200]) * 1.5       # suddenly 1.5 m/s faster
    result = seam_jerk(joints, BOUNDS, FPS)
    assert result["peak_jerk_ratio"] > 2


def test_jerk_of_a_cubic_is_its_third_derivative() -> None:
    t = np.arange(30) / FPS
    joints = np.zeros((30, 2, 3))
    joints[:, 1, 0] = 2.0 * t**3                               # x''' = 12 m/s³
    np.testing.assert_allclose(jerk_curve(joints, FPS), 12.0, rtol=1e-6)


def periodic_walk(frames: int = 80) -> tuple[np.ndarray, np.ndarray]:
    t = np.arange(frames)[:, None] / frames
    joints = np.zeros((frames, 22, 3))
    joints[..., 1] = 0.1 * np.sin(2 * np.pi * t + np.arange(22) * 0.2) + np.arange(22) * 0.07
    joints[..., 0] = 0.2 * np.cos(2 * np.pi * 2 * t)
    joints[..., 2] = 1.6 * t                                   # 1.6 m per cycle forward
    return joints, np.array([0.0, 0.0, 1.6])


def test_a_periodic_loop_closes_and_a_broken_one_does_not() -> None:
    joints, offset = periodic_walk()
    closed = loop_closure(joints, offset)
    assert closed["within"] and 0.8 < closed["position_ratio"] < 1.2
    # Without the per-cycle offset the root jumps back 1.6 m: the velocity changes at the wrap.
    assert not loop_closure(joints, np.zeros(3))["within"]
    # A pose pop in the last frames.
    broken = joints.copy()
    broken[-5:, 10:, 1] += 0.1
    result = loop_closure(broken, offset)
    assert not result["within"] and result["position_ratio"] > 1.5
