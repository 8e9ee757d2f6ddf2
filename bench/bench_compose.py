"""Composed takes (docs/compose.md): what a long take costs next to one clip, on full-size random weights.

    .venv/bin/python bench/bench_compose.py [--repeats 3] [--threads 1] [--skip-memory]

* cost per second of motion: one 9.8 s clip (text_to_motion, 196 frames, 10 steps) vs a 60 s,
  6-segment timeline (compose, 10 s segments, default 0.4 s transitions), warm, runs interleaved,
  median of ``--repeats`` each in CPU seconds of the process (use ``--threads 1``: then CPU time is
  the work, whatever the neighbours on a shared machine do), the CLIP prompt cache cleared before
  each run (target: ≤ 1.3×);
* peak resident memory (VmHWM, Linux) of a process that loads the models and makes one clip vs one
  that makes a 5-minute single-prompt take (target: within 10 %), each in its own process;
* the seam measures of the timeline (metrics.seam_jerk; random weights: see docs/compose.md).

Prints the rows as a markdown table for docs/performance.md ("Composed takes").
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import REPO, Timing, full_weights, load_average, measure  # noqa: E402

CLIP_SECONDS = 196 / 20
TIMELINE = ["a person walks forward", "a person stops and waves with the right hand", "a person jumps twice",
            "a person turns around and walks back", "a person sits down on a chair",
            "a person stands up and stretches"]


def _pipeline(threads: int | None):
    import torch

    from backend.inference.pipeline import MoMaskPipeline

    if threads:
        torch.set_num_threads(threads)
    return MoMaskPipeline.load(full_weights(), device="cpu")


def cost_rows(repeats: int, threads: int | None) -> list[tuple[str, str, str, str, str]]:
    from backend.inference.compose import SegmentSpec, compose
    from backend.inference.pipeline import SamplingSettings
    from backend.retarget.metrics import seam_jerk

    pipe = _pipeline(threads)
    settings = SamplingSettings(seed=1)
    clear = pipe.models.text_encoder.clear_cache
    segments = [SegmentSpec(prompt, 10.0) for prompt in TIMELINE]
    takes = []
    # Interleaved (clip, timeline, clip, timeline, ...) and timed in CPU seconds of this process: on a
    # shared machine the wall clock measures the neighbours (with one thread, CPU time is the work).
    clip, timeline = Timing(), Timing()
    measure(lambda: pipe.text_to_motion([TIMELINE[0]], [196], settings), 0, warmup=1, before=clear)

    def cpu_seconds(fn) -> float:
        clear()
        started = time.process_time()
        fn()
        return time.process_time() - started

    for _ in range(repeats):
        clip.runs.append(cpu_seconds(lambda: pipe.text_to_motion([TIMELINE[0]], [196], settings)))
        timeline.runs.append(cpu_seconds(lambda: takes.append(compose(pipe, segments, settings))))
    take = takes[-1]
    label = f", {threads} thread{'s' if threads != 1 else ''}" if threads else ""
    per_clip = clip.median / CLIP_SECONDS
    per_timeline = timeline.median / 60.0
    ratio = per_timeline / per_clip
    best_ratio = (timeline.best / 60.0) / (clip.best / CLIP_SECONDS)
    bounds = [s["start"] for s in take.segments] + [take.frames]
    seams = seam_jerk(take.joints, bounds, fps=take.fps)
    return [
        (f"one 9.8 s clip, CPU cost per second of motion{label}", f"{per_clip * 1000:.1f} ms/s", "—", "—",
         f"{clip.median:.2f} CPU s per clip; {clip.spread()}"),
        (f"60 s, 6-segment timeline, CPU cost per second of motion{label}", f"{per_timeline * 1000:.1f} ms/s",
         "≤ 1.3× the clip's", "met" if ratio <= 1.3 else "**missed**",
         f"{ratio:.2f}× the clip's (best run vs best run {best_ratio:.2f}×); {timeline.median:.1f} s per "
         f"take, {take.windows} windows (6 cores, 5 transitions); {timeline.spread()}"),
        ("seams of that timeline (random weights)", f"PJ ratio {seams['peak_jerk_ratio']:.2f}, "
         f"AUJ ratio {seams['auj_ratio']:.2f}", "reported", "—",
         "seam / inside-segment peak jerk and area under jerk over 0.5 s windows (metrics.seam_jerk); random "
         "weights make noise-like motion, so ≈ 1 says the recipe adds no discontinuity of its own"),
    ]


def child(kind: str, threads: int | None) -> None:
    """One process: load, make the clip or the 5-minute take, print the peak memory as JSON."""

    from backend.inference.compose import SegmentSpec, compose
    from backend.inference.pipeline import SamplingSettings

    pipe = _pipeline(threads)
    started = time.perf_counter()
    if kind == "clip":
        pipe.text_to_motion([TIMELINE[0]], [196], SamplingSettings(seed=1))
        frames = 196
    else:
        frames = compose(pipe, [SegmentSpec(TIMELINE[0], 300.0)], SamplingSettings(seed=1)).frames
    took = time.perf_counter() - started
    values = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmHWM", "VmRSS"):
            values[key] = int(value.split()[0]) / 1024.0
    print(json.dumps({"kind": kind, "frames": frames, "seconds": took, **values}))


def memory_rows(threads: int | None) -> list[tuple[str, str, str, str, str]]:
    results = {}
    for kind in ("clip", "long"):
        command = [sys.executable, str(Path(__file__).resolve()), "--child", kind]
        if threads:
            command += ["--threads", str(threads)]
        done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=3600)
        if done.returncode != 0:
            raise SystemExit(done.stderr[-3000:])
        results[kind] = json.loads(done.stdout.strip().splitlines()[-1])
    clip, long = results["clip"], results["long"]
    growth = long["VmHWM"] / clip["VmHWM"] - 1
    return [
        ("peak memory, one 9.8 s clip (own process)", f"{clip['VmHWM']:.0f} MB", "—", "—",
         f"VmHWM after loading and one clip ({clip['seconds']:.2f} s)"),
        ("peak memory, 5-minute single-prompt take (own process)", f"{long['VmHWM']:.0f} MB",
         "within 10 % of the clip's", "met" if growth <= 0.10 else "**missed**",
         f"{growth * 100:+.1f} % vs the clip; {long['frames']} frames at 20 fps in {long['seconds']:.1f} s "
         "(60 windows of ≤ 49 tokens)"),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--child", choices=("clip", "long"), default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.threads)
        return
    start_load = load_average()
    rows = cost_rows(args.repeats, args.threads)
    if not args.skip_memory:
        rows += memory_rows(args.threads)
    print(f"\nload average at start {start_load}, at end {load_average()}")
    print("| measurement | measured | target | | notes |\n|---|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(cell.replace("|", "/") for cell in row) + " |")


if __name__ == "__main__":
    main()
