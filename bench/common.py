"""Shared pieces of the benchmarks: the cached full-size random weights, timing, the machine's facts.

Timing rule for every number in ``docs/performance.md``: warm up first, then repeat and report the
median (with the best and the worst run, because development machines are shared and noisy).
"""

from __future__ import annotations

import datetime
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

#: Where the full-size random weights are kept between runs (≈ 480 MB); override with this variable.
CACHE_ENV = "MOMASK_BENCH_CACHE"

#: Prompts for timing and agreement runs: varied lengths, as an animator would type them.
PROMPTS = [
    "a person walks forward and then turns around",
    "a man jumps up and down twice",
    "someone waves with the right hand",
    "a person crouches down, picks something up from the floor and stands back up",
    "the person runs in a circle",
    "a figure does a cartwheel",
    "a person sits down on a chair",
    "a person kicks with the left leg",
    "a man is dancing happily",
    "a woman throws a ball overhand with her right arm",
    "a person walks backwards slowly",
    "someone climbs up a ladder",
]


def prompts(count: int, offset: int = 0) -> list[str]:
    """``count`` distinct prompts (numbered past the fixed list, so none repeats)."""
    out = []
    for i in range(offset, offset + count):
        base = PROMPTS[i % len(PROMPTS)]
        out.append(base if i < len(PROMPTS) else f"{base}, take {i // len(PROMPTS) + 1}")
    return out


def cache_root() -> Path:
    return Path(os.environ.get(CACHE_ENV) or Path(tempfile.gettempdir()) / "momask_bench")


def full_weights(seed: int = 0) -> Path:
    """Full-size random checkpoints in the official layout, made once and reused (`make-test-weights`)."""
    from backend.weights.random_weights import make_test_weights

    root = cache_root() / f"full-seed{seed}"
    marker = root / ".complete"
    if not marker.is_file():
        print(f"making full-size random weights in {root} (once) ...", flush=True)
        make_test_weights(root, size="full", seed=seed)
        marker.write_text("made by bench/common.py\n", encoding="utf-8")
    return root


@dataclass
class Timing:
    """Wall-clock seconds of repeated runs of one thing (warm-up runs excluded)."""

    runs: list[float] = field(default_factory=list)
    per: int = 1              # divide by this to get seconds per sample

    @property
    def median(self) -> float:
        return statistics.median(self.runs) / self.per

    @property
    def best(self) -> float:
        return min(self.runs) / self.per

    @property
    def worst(self) -> float:
        return max(self.runs) / self.per

    def spread(self) -> str:
        """The noise, as the worst run relative to the best."""
        return f"{len(self.runs)} runs, best {self.best:.3g} s, worst {self.worst:.3g} s"


def measure(fn: Callable[[], object], repeats: int, warmup: int = 1, per: int = 1,
            before: Callable[[], object] | None = None) -> Timing:
    """Run ``fn`` ``warmup`` times untimed, then ``repeats`` times timed (``before`` runs untimed first)."""
    for _ in range(warmup):
        if before:
            before()
        fn()
    timing = Timing(per=per)
    for _ in range(repeats):
        if before:
            before()
        start = time.perf_counter()
        fn()
        timing.runs.append(time.perf_counter() - start)
    return timing


def _cpuinfo() -> dict[str, str]:
    facts: dict[str, str] = {}
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return facts
    cores = set()
    physical = None
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key, value = key.strip(), value.strip()
        if key == "physical id":
            physical = value
        elif key == "core id":
            cores.add((physical, value))
        elif key in ("model name", "flags") and key not in facts:
            facts[key] = value
    if cores:
        facts["physical cores"] = str(len(cores))
    return facts


def physical_cores() -> int:
    info = _cpuinfo()
    return int(info.get("physical cores") or os.cpu_count() or 1)


def cpu_has_native_bf16() -> bool:
    """True where bf16 matrix maths runs in hardware (AVX512-BF16 or AMX); elsewhere torch emulates it."""
    flags = set(_cpuinfo().get("flags", "").split())
    return bool(flags & {"avx512_bf16", "amx_bf16"})


def machine() -> dict[str, str]:
    import torch

    info = _cpuinfo()
    cpu = info.get("model name") or platform.processor() or "unknown CPU"
    try:
        capability = torch.backends.cpu.get_cpu_capability()
    except AttributeError:
        capability = "?"
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    facts = {
        "cpu": cpu,
        "cores": f"{physical_cores()} physical / {os.cpu_count()} logical",
        "cpu capability": f"{capability}; native bf16: {'yes' if cpu_has_native_bf16() else 'no'}",
        "torch": f"{torch.__version__} ({torch.get_num_threads()} threads by default)",
        "python": platform.python_version(),
        "os": f"{platform.system()} {platform.release()}",
        "date": datetime.datetime.now().strftime("%Y-%m-%d %H:%M"),
        "load average at start": " / ".join(f"{x:.1f}" for x in load),
    }
    if torch.cuda.is_available():
        facts["gpu"] = torch.cuda.get_device_name(0)
    return facts


def load_average() -> float:
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
