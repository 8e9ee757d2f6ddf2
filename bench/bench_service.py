"""Backend cold start and peak memory: spawn `python -m backend serve`, hello, generate, first result.

    .venv/bin/python bench/bench_service.py [--device cpu] [--warm 3]

Times, from the moment the process is spawned: the ``hello`` answer (imports done, no models yet) and
the first ``generate`` result (one 196-frame sample, models loaded on demand). Then a few warm
``generate`` requests on the same process (the add-on's situation after the first click), and the
process's peak resident memory (``VmHWM`` in ``/proc/<pid>/status``, Linux only).
"""

from __future__ import annotations

import argparse
import json
import os
import select
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import REPO, full_weights, prompts  # noqa: E402

FRAMES = 196


@dataclass
class ServiceTimes:
    hello_s: float = float("nan")            # spawn → hello result
    first_result_s: float = float("nan")     # spawn → first generate result
    warm_s: list[float] = field(default_factory=list)   # round trip of later generates (client side)
    warm_generate_s: list[float] = field(default_factory=list)  # the backend's own "generate" timing
    peak_rss_mb: float = float("nan")
    rss_mb: float = float("nan")

    @property
    def warm_median(self) -> float:
        return statistics.median(self.warm_s) if self.warm_s else float("nan")


class Backend:
    """A `serve` process and a blocking NDJSON reader with a deadline."""

    def __init__(self, weights: Path, device: str, python: str = sys.executable,
                 env: dict[str, str] | None = None) -> None:
        self.log = Path(tempfile.mkdtemp(prefix="momask_bench_")) / "backend.log"
        self.started = time.perf_counter()
        self.proc = subprocess.Popen(
            [python, "-m", "backend", "serve", "--weights", str(weights), "--device", device,
             "--log", str(self.log)],
            cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})})
        self._buffer = b""

    def send(self, message: dict) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write((json.dumps(message) + "\n").encode("utf-8"))
        self.proc.stdin.flush()

    def reply(self, request_id: object, timeout: float = 600.0) -> dict:
        """The ``result`` or ``error`` for ``request_id`` (progress lines are skipped)."""
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + timeout
        while True:
            while b"\n" in self._buffer:
                line, self._buffer = self._buffer.split(b"\n", 1)
                message = json.loads(line)
                if message.get("id") == request_id and message.get("type") in ("result", "error"):
                    if message["type"] == "error":
                        raise RuntimeError(f"backend error: {message['error']} (log: {self.log})")
                    return message["data"]
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self.proc.poll() is not None:
                raise RuntimeError(f"no reply to {request_id!r} (log: {self.log})")
            ready, _, _ = select.select([fd], [], [], remaining)
            if ready:
                chunk = os.read(fd, 1 << 20)
                if not chunk:
                    raise RuntimeError(f"backend closed its output (log: {self.log})")
                self._buffer += chunk

    def memory_mb(self) -> tuple[float, float]:
        """(peak resident, current resident) in MB from /proc, NaN where unavailable."""
        values = {}
        try:
            for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
                key, _, value = line.partition(":")
                if key in ("VmHWM", "VmRSS"):
                    values[key] = int(value.split()[0]) / 1024.0
        except OSError:
            pass
        return values.get("VmHWM", float("nan")), values.get("VmRSS", float("nan"))

    def close(self) -> None:
        try:
            self.send({"id": "bye", "type": "shutdown"})
            self.proc.wait(timeout=20)
        except (OSError, subprocess.TimeoutExpired):
            self.proc.kill()
            self.proc.wait()


def generate_request(request_id: object, prompt: str) -> dict:
    return {"id": request_id, "type": "generate", "prompts": [prompt], "frames": FRAMES, "seed": 0}


def measure_service(weights: Path, device: str = "cpu", warm: int = 3,
                    env: dict[str, str] | None = None) -> ServiceTimes:
    """Cold start, warm requests and peak memory of one fresh backend (``env``: extra variables)."""
    times = ServiceTimes()
    backend = Backend(weights, device, env=env)
    try:
        backend.send({"id": "hello", "type": "hello", "protocol": 1, "client": "bench"})
        backend.send(generate_request("first", prompts(1)[0]))
        backend.reply("hello")
        times.hello_s = time.perf_counter() - backend.started
        backend.reply("first")
        times.first_result_s = time.perf_counter() - backend.started
        for i, prompt in enumerate(prompts(warm, offset=1)):
            start = time.perf_counter()
            backend.send(generate_request(f"warm{i}", prompt))
            data = backend.reply(f"warm{i}")
            times.warm_s.append(time.perf_counter() - start)
            times.warm_generate_s.append(float(data["timings"]["generate"]))
        times.peak_rss_mb, times.rss_mb = backend.memory_mb()
    finally:
        backend.close()
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--warm", type=int, default=3)
    args = parser.parse_args()
    t = measure_service(full_weights(), args.device, args.warm)
    print(f"hello after {t.hello_s:.2f} s; first 196-frame result after {t.first_result_s:.2f} s "
          "(target ≤ 6 s)")
    print(f"warm generate round trip: median {t.warm_median:.3f} s over {len(t.warm_s)}")
    print(f"peak resident memory {t.peak_rss_mb:.0f} MB (now {t.rss_mb:.0f} MB; target ≤ 1200 MB)")


if __name__ == "__main__":
    main()
