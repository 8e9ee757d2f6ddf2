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
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
from common import measure  # noqa: E402  (puts the repository on sys.path)

from backend.motion.features import recover_from_ric  # noqa: E402
from backend.retarget.mapping import auto_map  # noqa: E402
from backend.retarget.resample import resample_result  # noqa: E402
from backend.retarget.solver import analyse_rig, retarget  # noqa: E402
from tests.backend.retarget.test_solver import make_rig, smpl_rest_joints  # noqa: E402
from tests.conftest import SHARED_DATA  # noqa: E402


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

    timing = measure(lambda: retarget(joints, rig, mapping, dst_fps=args.fps), args.repeats)  # warm-up first
    print(f"solve + foot lock + resample: median {timing.median * 1e3:.1f} ms, "
          f"best {timing.best * 1e3:.1f} ms (target ≤ 20 ms)")

    setup = analyse_rig(rig, mapping)
    stages = {
        "rig analysis": lambda: analyse_rig(rig, mapping),
        "solve (no foot lock)": lambda: retarget(joints, rig, mapping, foot_lock=False, setup=setup),
        "solve + foot lock": lambda: retarget(joints, rig, mapping, setup=setup),
    }
    result = retarget(joints, rig, mapping, setup=setup)
    stages["resample"] = lambda: resample_result(result, args.fps)
    for name, fn in stages.items():
        timing = measure(fn, args.repeats)
        print(f"  {name:<22} median {timing.median * 1e3:6.2f} ms  best {timing.best * 1e3:6.2f} ms")


if __name__ == "__main__":
    main()
