"""Click-to-keys inside real Blender against a warm backend (target ≤ 0.5 s on CPU).

    .venv-bpy45/bin/python bench/bench_click.py --weights DIR [--seconds 9.8] [--repeats 3] [--device cpu]

Sets up the add-on as ``momask_blender/headless.py`` does (Rigify metarig, the panel's Generate
operator), presses Generate once to start the backend and load the models (cold, reported apart),
then presses it again ``--repeats`` times: each is timed from the operator call until the job's keys
are applied on the rig (``jobs.wait``, which polls as often as the add-on's UI timer,
``jobs.POLL_SECONDS``, so the wait for the timer's next tick is counted). Prints the median in milliseconds.
Last, with "Warm Up While Typing": the backend stopped, a new prompt set, the warm-up it starts
timed, then one click.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import bpy  # noqa: E402, I001  (bpy first: it makes addon_utils importable)
import addon_utils  # noqa: E402

from momask_blender import headless  # noqa: E402
from momask_blender.remote import jobs  # noqa: E402


APPLY_TIMES: list[float] = []


def _timed(apply):
    def timed_apply(job) -> None:
        start = time.perf_counter()
        apply(job)
        APPLY_TIMES.append(time.perf_counter() - start)
    return timed_apply


def click(timeout: float) -> tuple[float, dict]:
    """Seconds from pressing Generate to the keys being on the rig, and the backend's own timings."""
    start = time.perf_counter()
    if bpy.ops.momask.generate() != {"FINISHED"}:
        raise SystemExit(f"Generate did not start: {jobs.STATE.error}")
    job = jobs.wait(timeout)
    if job is None or job.state != "applied":
        raise SystemExit(f"the job ended as {getattr(job, 'state', None)}: {jobs.STATE.error}")
    return time.perf_counter() - start, dict((job.data or {}).get("timings", {}))


def main() -> None:
    argv = sys.argv[sys.argv.index("--") + 1:] if "--" in sys.argv else sys.argv[1:]
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", required=True)
    parser.add_argument("--backend-python", default=str(REPO / ".venv" / "bin" / "python"))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seconds", type=float, default=9.8, help="motion length (9.8 s = 196 frames)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=600.0)
    args = parser.parse_args(argv)

    bpy.ops.wm.read_factory_settings(use_empty=True)
    addon_utils.enable(headless.PACKAGE, default_set=True, handle_error=None)
    prefs = bpy.context.preferences.addons[headless.PACKAGE].preferences
    prefs.backend_python = args.backend_python
    prefs.weights_dir = str(Path(args.weights).absolute())
    prefs.device = args.device
    prefs.warm_up = False  # the first click is measured cold: backend start and model load included
    rig = headless.make_rig("metarig")
    headless.activate(rig)
    settings = bpy.context.scene.momask
    settings.prompt = "a person walks forward and then turns around"
    settings.auto_length = False
    settings.seconds = args.seconds
    settings.randomize_seed = False
    jobs._apply = _timed(jobs._apply)  # to split the time: backend vs writing the keys
    try:
        cold, _ = click(args.timeout)
        warm, backend = [], []
        for i in range(args.repeats):
            settings.seed = i + 1
            seconds, timings = click(args.timeout)
            warm.append(seconds)
            backend.append(timings)
        # "Warm Up While Typing": the backend stopped, a new prompt typed; the warm-up (start, load,
        # CLIP) runs in the background, then the first click.
        jobs.stop_backend()
        prefs.warm_up = True
        started = time.perf_counter()
        settings.prompt = "a person jumps over a puddle"
        jobs.wait(args.timeout)
        warm_up = time.perf_counter() - started
        after_warm_up, _ = click(args.timeout)
    finally:
        jobs.stop_backend()
    split = {k: 1000 * statistics.median(t.get(k, float("nan")) for t in backend)
             for k in ("generate", "retarget", "total")}
    print(f"split (medians): backend generate {split['generate']:.0f} ms, "
          f"retarget {split['retarget']:.0f} ms, backend total {split['total']:.0f} ms; "
          f"applying the take in Blender {1000 * statistics.median(APPLY_TIMES[1:]):.0f} ms; "
          "the rest is the add-on's side and transfer")
    print(f"Blender {bpy.app.version_string}, {len(rig.data.bones)}-bone metarig, {args.seconds:g} s motion: "
          f"first click (backend start + load) {cold:.2f} s; warm click-to-keys median "
          f"{1000 * statistics.median(warm):.0f} ms, best {1000 * min(warm):.0f} ms over {len(warm)} "
          "(target <= 500 ms)")
    print(f"with Warm Up While Typing: the warm-up after a prompt edit took {warm_up:.2f} s, then the first "
          f"click {1000 * after_warm_up:.0f} ms")


if __name__ == "__main__":
    main()
