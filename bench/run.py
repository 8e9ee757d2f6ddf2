"""The benchmark: every speed target of the project measured in one run, written to docs/performance.md.

    .venv/bin/python bench/run.py [--quick] [--device cpu|cuda] [--threads 1 2] [--out docs/performance.md]

At full size (random weights from `make-test-weights --size full`, made once and cached in
$MOMASK_BENCH_CACHE or the temp folder), 196 frames, 10 steps:

* text → joints per sample, warm (warm-up, then the median of N runs), batch 1 and batch 32 (64 on a
  GPU): fast flow fp32, fast flow bf16 (where the CPU has native bf16, or on a GPU), and the reference
  flow (the official algorithm) in the same run, with the ratio;
* token agreement of the fast flows with the reference flow (same weights, same seeds);
* backend cold start (spawn `python -m backend serve` → first 196-frame result) and its peak memory;
* retarget + resample onto a 64-bone rig (bench/bench_retarget.py), key writing in Blender 4.5
  (bench/bench_keys.py), and click-to-keys in Blender when the add-on's headless path exists.

On a CPU, batch-1 rows are measured for each thread count in ``--threads`` (default: 1 and the physical
core count), because on a shared machine the thread count decides more than any code change.
"""

from __future__ import annotations

import argparse
import math
import re
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
from common import REPO, cpu_has_native_bf16, full_weights, load_average, machine, physical_cores  # noqa: E402

import bench_model  # noqa: E402
import bench_service  # noqa: E402

BPY45 = REPO / ".venv-bpy45" / "bin" / "python"
NOT_HERE = "not measured here"


class Table:
    """Rows of (what, measured, target, verdict, notes) → markdown."""

    def __init__(self) -> None:
        self.rows: list[tuple[str, str, str, str, str]] = []

    def add(self, what: str, measured: str, target: str = "—", ok: bool | None = None, notes: str = "") -> None:
        verdict = "—" if ok is None else ("met" if ok else "**missed**")
        self.rows.append((what, measured, target, verdict, notes))
        print(f"  {what}: {measured}  [target {target}: {verdict}] {notes}", flush=True)

    def markdown(self) -> str:
        lines = ["| measurement | measured | target | | notes |", "|---|---|---|---|---|"]
        lines += ["| " + " | ".join(cell.replace("|", "/") for cell in row) + " |" for row in self.rows]
        return "\n".join(lines)


def seconds(t: float) -> str:
    return f"{t * 1000:.1f} ms" if t < 1 else f"{t:.2f} s"


def run_script(command: list[str], pattern: str, timeout: float = 600) -> tuple[float | None, str]:
    """Run a benchmark script; the first number matching ``pattern`` in its output, and the output."""
    try:
        done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return None, str(exc)
    output = done.stdout + done.stderr
    match = re.search(pattern, output)
    return (float(match.group(1)) if match else None), output.strip()


def model_rows(table: Table, pipe, args, device: str) -> None:
    gpu = device.startswith("cuda")
    big = 64 if gpu else 32
    repeats = 3 if args.quick else 7
    big_repeats = 1 if args.quick else 3
    bf16 = gpu or cpu_has_native_bf16()
    threads = [None] if gpu else args.threads

    best_threads, best_fast = None, math.inf
    ref_at: dict = {}
    for n in threads:
        if n is not None:
            torch.set_num_threads(n)
        label = f", {n} thread{'s' if n != 1 else ''}" if n is not None else ""
        fast = bench_model.time_text_to_motion(pipe, 1, "fast", "fp32", repeats=repeats)
        table.add(f"text → joints, batch 1, fast fp32{label}", f"{seconds(fast.median)} / sample",
                  "≤ 5 ms (H200)" if gpu else "≤ 0.20 s", fast.median <= (0.005 if gpu else 0.20), fast.spread())
        if fast.median < best_fast:
            best_threads, best_fast = n, fast.median
        ref = bench_model.time_text_to_motion(pipe, 1, "reference", "fp32", repeats=repeats)
        ref_at[n] = ref
        table.add(f"text → joints, batch 1, reference flow{label}", f"{seconds(ref.median)} / sample",
                  "—", None, f"fast is {ref.median / fast.median:.2f}× faster; {ref.spread()}")
        if bf16:
            low = bench_model.time_text_to_motion(pipe, 1, "fast", "bf16", repeats=repeats)
            table.add(f"text → joints, batch 1, fast bf16{label}", f"{seconds(low.median)} / sample",
                      "—" if gpu else "≤ 0.12 s", None if gpu else low.median <= 0.12, low.spread())
    if not bf16:
        table.add("text → joints, batch 1, fast bf16", "not run", "≤ 0.12 s", None,
                  "this CPU has no native bf16 (no AVX512-BF16/AMX): torch emulates it, ~10× slower GEMMs")

    if best_threads is not None:
        torch.set_num_threads(best_threads)
    label = f" ({best_threads} thread{'s' if best_threads != 1 else ''})" if best_threads is not None else ""
    fast = bench_model.time_text_to_motion(pipe, big, "fast", "fp32", repeats=big_repeats)
    table.add(f"text → joints, batch {big}, fast fp32{label}",
              f"{seconds(fast.median)} / sample = {1 / fast.median:.1f} samples/s",
              "≥ 8,000 samples/s (H200)" if gpu else "—", (1 / fast.median >= 8000) if gpu else None,
              fast.spread())
    if not args.quick or gpu:
        ref = bench_model.time_text_to_motion(pipe, big, "reference", "fp32", repeats=big_repeats)
        table.add(f"text → joints, batch {big}, reference flow{label}", f"{seconds(ref.median)} / sample", "—",
                  None, f"fast is {ref.median / fast.median:.2f}× faster; {ref.spread()}")
    if bf16:
        low = bench_model.time_text_to_motion(pipe, big, "fast", "bf16", repeats=big_repeats)
        table.add(f"text → joints, batch {big}, fast bf16{label}",
                  f"{seconds(low.median)} / sample = {1 / low.median:.1f} samples/s", "—", None, low.spread())

    count = 3 if args.quick else 8
    cache: dict = {}
    for precision in ("fp32", "bf16"):
        result = bench_model.agreement(pipe, bench_model.prompts(count), precision, reference_cache=cache)
        exact = precision == "fp32"
        ok = result.tokens_equal >= 0.99 and not (result.max_mm > 1.0) if exact else None
        table.add(f"fast {precision} vs reference, same seed", f"{100 * result.tokens_equal:.2f} % tokens equal",
                  "≥ 99 %, ≤ 1 mm" if exact else "reported", ok, result.line())


def service_rows(table: Table, weights: Path, device: str, args) -> None:
    try:
        t = bench_service.measure_service(weights, device, warm=2 if args.quick else 3)
    except RuntimeError as exc:
        table.add("backend cold start", "failed", "≤ 6 s", False, str(exc))
        return
    table.add("backend cold start (spawn → first 196-frame result)", seconds(t.first_result_s), "≤ 6 s",
              t.first_result_s <= 6.0, f"hello answered after {seconds(t.hello_s)}; torch's default threads")
    table.add("backend peak resident memory", f"{t.peak_rss_mb:.0f} MB", "≤ 1200 MB", t.peak_rss_mb <= 1200,
              f"VmHWM after {1 + len(t.warm_s)} generations (VmRSS {t.rss_mb:.0f} MB)")
    table.add("warm backend: generate request round trip, batch 1", seconds(t.warm_median), "—", None,
              f"median of {len(t.warm_s)}; backend's own generate time "
              f"{seconds(min(t.warm_generate_s))}–{seconds(max(t.warm_generate_s))}")


def rig_rows(table: Table, args) -> None:
    value, output = run_script([sys.executable, "bench/bench_retarget.py", "--repeats", "10" if args.quick else "30"],
                               r"solve \+ foot lock \+ resample: median ([\d.]+) ms")
    table.add("retarget + resample, 196 frames, 64-bone rig", f"{value:.1f} ms" if value is not None else "failed",
              "≤ 20 ms", None if value is None else value <= 20, "bench/bench_retarget.py, median"
              if value is not None else output[-200:])
    if not BPY45.is_file():
        table.add("key writing, 200 frames × 30 bones (Blender 4.5)", "not run", "≤ 50 ms", None, "no .venv-bpy45")
    else:
        value, output = run_script([str(BPY45), "bench/bench_keys.py", "--repeats", "5" if args.quick else "10"],
                                   r"median ([\d.]+) ms")
        table.add("key writing, 200 frames × 30 bones (Blender 4.5)",
                  f"{value:.1f} ms" if value is not None else "failed", "≤ 50 ms",
                  None if value is None else value <= 50,
                  "bench/bench_keys.py, median" if value is not None else output[-200:])
    headless = REPO / "momask_blender" / "headless.py"
    jobs = REPO / "momask_blender" / "jobs.py"
    if not (headless.is_file() and jobs.is_file()):
        table.add("click-to-keys in Blender, warm backend", NOT_HERE, "≤ 0.5 s", None,
                  "the add-on's job path (momask_blender/headless.py, jobs.py) does not exist yet")
    else:
        table.add("click-to-keys in Blender, warm backend", NOT_HERE, "≤ 0.5 s", None,
                  "the add-on exists but bench/run.py has no driver for it yet")


def write_report(path: Path, facts: dict, table: Table, args, device: str, started: float, loads: list[float]) -> None:
    gpu_line = ("" if device.startswith("cuda") else
                "\n**GPU rows (one H200: batch 1 ≤ 5 ms, batch 64 ≥ 8,000 samples/s): not measured here** — no GPU "
                "was available to this run. `backend/accel.py` (CUDA graphs with fixed 49-token padding) is "
                "written but unmeasured; run `bench/run.py --device cuda` on a GPU machine.\n")
    text = f"""# Performance (measured)

Written by `{' '.join(['.venv/bin/python', 'bench/run.py', *sys.argv[1:]])}` — rerun it to refresh this page. Model
rows use full-size **random** weights (`make-test-weights --size full`: speed depends on shapes only),
196 frames, 10 steps, guidance 4 / 5, warm (one warm-up run, then the median), CLIP cache cleared
before each run. Targets are those of issue 6. The analysis behind them is `../shared/docs/performance.md`.

| machine | |
|---|---|
""" + "\n".join(f"| {k} | {v} |" for k, v in facts.items()) + f"""
| device used | {device} |
| load average during the run | {min(loads):.1f} – {max(loads):.1f} (the machine is shared; see noise) |
| run time | {time.perf_counter() - started:.0f} s{' (--quick)' if args.quick else ''} |

{table.markdown()}
{gpu_line}
"""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_file():
        old = path.read_text(encoding="utf-8")
        marker = "\n## Notes"
        if marker in old:
            text += old[old.index(marker):]
    path.write_text(text, encoding="utf-8")
    print(f"wrote {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats, fewer prompts, no batch reference")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--threads", type=int, nargs="+", default=None,
                        help="CPU thread counts for the batch-1 rows (default: 1 and the physical cores)")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "performance.md")
    parser.add_argument("--skip", nargs="*", default=[], choices=["model", "service", "rig"])
    args = parser.parse_args()
    if args.threads is None:
        args.threads = sorted({1, physical_cores()})
    started = time.perf_counter()
    loads = [load_average()]
    facts = machine()
    print("\n".join(f"{k}: {v}" for k, v in facts.items()), flush=True)
    weights = full_weights()
    table = Table()
    default_threads = torch.get_num_threads()
    if "model" not in args.skip:
        pipe = bench_model.load_pipeline(weights, args.device)
        model_rows(table, pipe, args, str(pipe.device))
        del pipe
        torch.set_num_threads(default_threads)
        loads.append(load_average())
    if "service" not in args.skip:
        service_rows(table, weights, args.device, args)
        loads.append(load_average())
    if "rig" not in args.skip:
        rig_rows(table, args)
        loads.append(load_average())
    write_report(args.out, facts, table, args, args.device, started, loads)


if __name__ == "__main__":
    main()
