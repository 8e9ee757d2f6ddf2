"""A tiny harness for Blender scripts that run many cases in one Blender process (each start costs
seconds): ``@case`` runs a function at once and prints ``CASE <name> ok|FAIL <why>``; ``finish()``
prints the summary line the pytest side parses and exits with the right code."""

from __future__ import annotations

import os
import sys
import time
import traceback

RESULTS: list[tuple[str, bool, str]] = []


def case(func):
    name = func.__name__.removeprefix("case_")
    started = time.monotonic()
    try:
        func()
    except Exception as exc:  # noqa: BLE001
        RESULTS.append((name, False, f"{type(exc).__name__}: {exc}"))
        print(f"CASE {name} FAIL {type(exc).__name__}: {exc}\n{traceback.format_exc()}", flush=True)
    else:
        RESULTS.append((name, True, ""))
        print(f"CASE {name} ok ({time.monotonic() - started:.1f} s)", flush=True)
    return func


def check(condition, message: str) -> None:
    if not condition:
        raise AssertionError(message)


def finish() -> None:
    """Print the summary and leave Blender at once (exit 1 if any case failed): ``os._exit``, so
    neither a lingering client thread nor Blender 4.2's crash at interpreter exit (see
    ``rigs.exit_blender``) can change the outcome."""
    failed = [name for name, ok, _ in RESULTS if not ok]
    print(f"SUMMARY {len(RESULTS) - len(failed)}/{len(RESULTS)} ok; failed: {failed}", flush=True)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(1 if failed else 0)
