"""Time a take through pose targets after generation: retarget + resample + pinning the keys, 196 model
frames onto a 64-bone rig (the issue's budget for retarget + path + targets: ≤ 30 ms).

    .venv/bin/python bench/bench_targets.py [--fps 30] [--targets 3] [--repeats 20]

The rig is the solver tests' SMPL-layout rig with fingers, twist bones, a root and end bones (64
bones, random rolls); the motion is the real HumanML3D sample 000612 (196 frames), and the keys are
poses of that sample at other moments, on ``--targets`` frames spread over the take. Timed: what
``backend/service/usecases/targets.py`` does after the model (retarget with foot locking and
resampling to ``--fps``, then ``pose_targets.pin_to_keys``); the placement on the targets is
included. Prints the median and best wall time in milliseconds, and the pinning alone.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
from common import measure  # noqa: E402  (puts the repository on sys.path)

from backend.motion.features import recover_from_ric  # noqa: E402
from backend.retarget.inverse import joints_and_transform_from_pose, pose_matrices_from_basis  # noqa: E402
from backend.retarget.mapping import auto_map  # noqa: E402
from backend.retarget.pose_targets import pin_to_keys  # noqa: E402
from backend.retarget.solver import analyse_rig, retarget  # noqa: E402
from backend.retarget.steering import Steering  # noqa: E402
from backend.service.usecases.targets import place_on_targets  # noqa: E402
from tests.backend.retarget.test_solver import make_rig, smpl_rest_joints  # noqa: E402
from tests.backend.retarget.test_steering import PATHS  # noqa: E402
from tests.conftest import SHARED_DATA  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fps", type=float, default=30.0)
    parser.add_argument("--targets", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()

    sample = recover_from_ric(np.load(SHARED_DATA / "humanml3d_000612.npy")).astype(np.float64)
    motion = sample[:196]
    rig = make_rig(smpl_rest_joints(sample[0], "A"), roll_seed=0, fingers=True)
    mapping = auto_map(rig)
    setup = analyse_rig(rig, mapping)
    take_frames = int(round(195 * args.fps / 20)) + 1
    frames = np.linspace(0, take_frames - 1, args.targets).round().astype(int).tolist()
    keyed = pose_matrices_from_basis(rig, retarget(sample[::-1].copy(), rig, mapping, dst_fps=args.fps))
    poses = keyed[np.linspace(0, len(keyed) - 1, args.targets).round().astype(int)]
    print(f"rig: {len(rig.bone_names)} bones, {len(mapping.bones)} mapped; 196 model frames → {take_frames} "
          f"frames at {args.fps:g} fps; targets on {frames}")
    target_joints, placement = joints_and_transform_from_pose(rig, mapping, poses, setup=setup)
    anchors = np.array([round(f * 20 / args.fps) for f in frames])

    def after_the_model():
        placed = place_on_targets(motion.astype(np.float32), target_joints, anchors, "t2m")
        solved = retarget(placed, rig, mapping, dst_fps=args.fps, setup=setup, transform=placement,
                          frame_count=take_frames)
        return pin_to_keys(solved, rig, frames, poses)

    timing = measure(after_the_model, args.repeats)
    print(f"retarget + targets: median {timing.median * 1e3:.1f} ms, best {timing.best * 1e3:.1f} ms "
          "(target ≤ 30 ms)")
    # The whole budget: the same take also following a path (a circle, ground rule on) before
    # its keys are pinned; a steered take re-places the body, so the pinning has more to blend.
    steering = Steering(path=PATHS["circle"](), ground=True)

    def with_a_path():
        placed = place_on_targets(motion.astype(np.float32), target_joints, anchors, "t2m")
        solved = retarget(placed, rig, mapping, dst_fps=args.fps, setup=setup, transform=placement,
                          frame_count=take_frames, steering=steering)
        return pin_to_keys(solved, rig, frames, poses)

    steered = measure(with_a_path, args.repeats)
    print(f"retarget + path + targets: median {steered.median * 1e3:.1f} ms, "
          f"best {steered.best * 1e3:.1f} ms (target ≤ 30 ms)")
    solved = retarget(motion, rig, mapping, dst_fps=args.fps, setup=setup, frame_count=take_frames)
    pin = measure(lambda: pin_to_keys(solved, rig, frames, poses), args.repeats)
    print(f"  pinning alone: median {pin.median * 1e3:.2f} ms, best {pin.best * 1e3:.2f} ms")


if __name__ == "__main__":
    main()
