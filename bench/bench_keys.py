"""Time ``keys.write_take`` for 200 frames × 30 bones inside real Blender (target ≤ 50 ms).

    .venv-bpy50/bin/python bench/bench_keys.py [--frames 200] [--bones 30] [--repeats 5]

Builds a 30-bone chain (quaternion bones, like a retargeted humanoid), writes a smooth synthetic
result as a new take several times, and prints the median and best wall time in milliseconds.
"""

from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bpy  # noqa: E402
import numpy as np  # noqa: E402
from common import measure  # noqa: E402  (stdlib only; puts the repository on sys.path)

from momask_blender.anim import keys  # noqa: E402


def chain_rig(bones: int):
    arm = bpy.data.armatures.new("BenchRig")
    obj = bpy.data.objects.new("BenchRig", arm)
    bpy.context.scene.collection.objects.link(obj)
    bpy.context.view_layer.objects.active = obj
    bpy.ops.object.mode_set(mode="EDIT")
    parent = None
    for i in range(bones):
        bone = arm.edit_bones.new(f"bone_{i:02d}")
        bone.head, bone.tail = (0, 0, 0.1 * i), (0, 0, 0.1 * i + 0.1)
        bone.parent = parent
        parent = bone
    bpy.ops.object.mode_set(mode="OBJECT")
    return obj


def synthetic_result(bones: int, frames: int, fps: float) -> dict:
    t = np.arange(frames)[:, None]
    angle = 0.5 * np.sin(0.1 * t + np.arange(bones)[None, :])  # (F, bones)
    quats = np.stack([np.cos(angle / 2), np.sin(angle / 2), 0 * angle, 0 * angle], axis=-1)
    return {"fps": fps, "frame_count": frames,
            "bones": [{"name": f"bone_{i:02d}", "channel": "rotation_quaternion", "values": quats[:, i]}
                      for i in range(bones)],
            "root": {"name": "bone_00", "location": np.concatenate([0.01 * t, 0 * t, 0 * t], axis=1)}}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--frames", type=int, default=200)
    parser.add_argument("--bones", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(sys.argv[sys.argv.index("--") + 1:] if "--" in sys.argv else sys.argv[1:])
    scene = bpy.context.scene
    scene.render.fps, scene.render.fps_base = 30, 1.0
    obj = chain_rig(args.bones)
    result = synthetic_result(args.bones, args.frames, 30.0)
    takes = itertools.count()
    # (the warm-up call also loads imports and RNA lookups)
    timing = measure(lambda: keys.write_take(obj, result, 1, f"bench take {next(takes)}"), args.repeats)
    curves = args.bones * 4 + 3
    print(f"Blender {bpy.app.version_string}: write_take {args.frames} frames x {args.bones} bones "
          f"({curves} F-Curves, {curves * args.frames} keys): median {timing.median * 1e3:.1f} ms, "
          f"best {timing.best * 1e3:.1f} ms (target <= 50 ms)")


if __name__ == "__main__":
    main()
