"""Time retarget + path steering for 196 frames onto a 64-bone rig (target ≤ 30 ms), and measure how
well the root follows the path (issue 13, docs/retargeting.md §11).

    .venv/bin/python bench/bench_steer.py [--fps 30] [--repeats 20]

The rig is the 64-bone SMPL-layout rig of the solver tests (fingers, twist bones, a root, end bones);
the motion is the real HumanML3D sample 000612 (skipped when it is missing). Timed: ``retarget`` with
a circle path, root motion onto the "Root" bone, foot locking, the ground rule and resampling to
``--fps``. Then, per path (circle, S-curve, polyline with a 90° corner) and timing mode: the mean
horizontal distance of the root (pelvis) to the curve and the foot-skating ratio against the unsteered
take's (targets ≤ 2 cm and ≤ unsteered + 0.01).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
from common import measure  # noqa: E402  (puts the repository on sys.path)

from backend.motion.features import recover_from_ric  # noqa: E402
from backend.retarget import metrics  # noqa: E402
from backend.retarget.mapping import auto_map  # noqa: E402
from backend.retarget.solver import analyse_rig, retarget  # noqa: E402
from backend.retarget.steering import Steering  # noqa: E402
from tests.backend.retarget.test_solver import make_rig, read_back, smpl_rest_joints  # noqa: E402
from tests.backend.retarget.test_steering import PATHS, root_to_path_cm  # noqa: E402
from tests.conftest import SHARED_DATA  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fps", type=float, default=30.0)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    sample = SHARED_DATA / "humanml3d_000612.npy"
    if not sample.is_file():
        print(f"skipped: {sample} is missing (set MOMASK_SHARED_DATA)")
        return
    source = recover_from_ric(np.load(sample)).astype(np.float64)[:196]
    rig = make_rig(smpl_rest_joints(source[0], "A"), roll_seed=0, fingers=True)
    mapping = auto_map(rig)
    setup = analyse_rig(rig, mapping)
    steering = Steering(path=PATHS["circle"](), root_mode="root_bone", root_bone="Root", ground=True)
    timing = measure(lambda: retarget(source, rig, mapping, dst_fps=args.fps, setup=setup, steering=steering),
                     args.repeats)
    plain = measure(lambda: retarget(source, rig, mapping, dst_fps=args.fps, setup=setup), args.repeats)
    print(f"rig: {len(rig.bone_names)} bones; 196 frames 20 → {args.fps:g} fps")
    print(f"retarget + path + root bone + ground: median {timing.median * 1e3:.1f} ms, best "
          f"{timing.best * 1e3:.1f} ms (target ≤ 30 ms); unsteered {plain.median * 1e3:.1f} ms")
    unsteered_take = retarget(source, rig, mapping, setup=setup)
    unsteered = metrics.foot_skating_ratio(read_back(rig, mapping, unsteered_take))
    worst_distance, worst_skate = 0.0, -1.0
    for name, make in PATHS.items():
        for mode in ("keep_speed", "fit_duration"):
            result = retarget(source, rig, mapping, setup=setup, steering=Steering(path=make(), timing=mode))
            back = read_back(rig, mapping, result)
            distance = root_to_path_cm(rig, result, back, make()).mean()
            skate = metrics.foot_skating_ratio(back)
            worst_distance, worst_skate = max(worst_distance, distance), max(worst_skate, skate - unsteered)
            print(f"  {name:<10} {mode:<12} root to curve {distance:.2f} cm, foot skating {skate:.3f} "
                  f"(unsteered {unsteered:.3f}), stride x{result.steering['stride_scale']:.2f}")
    print(f"worst: root to curve {worst_distance:.2f} cm (≤ 2), skating {worst_skate:+.3f} vs unsteered "
          "(≤ +0.01)")


if __name__ == "__main__":
    main()
