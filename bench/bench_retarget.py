"""Time the retargeting solve + resample for 196 frames onto a 64-bone rig (target ≤ 20 ms).

    .venv/bin/python bench/bench_retarget.py [--frames 196] [--fps 30] [--repeats 20]

The rig is the SMPL-layout rig of the solver tests with fingers, twist bones, a root and end bones
(64 bones, random rolls), built from the real HumanML3D sample; the motion is that sample. Timed:
``retarget`` with its rig analysis, foot locking and resampling to ``--fps``. Prints the median and
best wall time in milliseconds, and the stage split of one run.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402

from backend.motion.features import recover_from_ric  # noqa: E402
from backend.retarget.mapping import auto_map  # noqa: E402
from backend.retarget.resample import resample_result  # noqa: E402
from backend.retarget.solver import analyse_rig, retarget  # noqa: E402
from tests.conftest import SHARED_DATA  # noqa: E402
from tests.test_retarget_solver import make_rig, smpl_rest_joints  # noqa: E402


def timed(fn, repeats: int) -> tuple[float, float]:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times) * 1e3), float(np.min(times) * 1e3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=196)
    parser.add_argument("--fps", type=float, default=30.0)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()

    source = recover_from_ric(np.load(SHARED_DATA / "humanml3d_000612.npy")).astype(np.float64)
    joints = np.concatenate([source] * (args.frames // len(source) + 1))[:args.frames]
    rig = make_rig(smpl_rest_joints(source[0], "A"), roll_seed=0, fingers=True)
    mapping = auto_map(rig)
    print(f"rig: {len(rig.bone_names)} bones, {len(mapping.bones)} mapped; {args.frames} frames "
          f"20 → {args.fps:g} fps")

    retarget(joints, rig, mapping, dst_fps=args.fps)          # warm-up (imports, caches)
    median, best = timed(lambda: retarget(joints, rig, mapping, dst_fps=args.fps), args.repeats)
    print(f"solve + foot lock + resample: median {median:.1f} ms, best {best:.1f} ms (target ≤ 20 ms)")

    setup = analyse_rig(rig, mapping)
    stages = {
        "rig analysis": lambda: analyse_rig(rig, mapping),
        "solve (no foot lock)": lambda: retarget(joints, rig, mapping, foot_lock=False, setup=setup),
        "solve + foot lock": lambda: retarget(joints, rig, mapping, setup=setup),
    }
    result = retarget(joints, rig, mapping, setup=setup)
    stages["resample"] = lambda: resample_result(result, args.fps)
    for name, fn in stages.items():
        median, best = timed(fn, args.repeats)
        print(f"  {name:<22} median {median:6.2f} ms  best {best:6.2f} ms")


if __name__ == "__main__":
    main()
