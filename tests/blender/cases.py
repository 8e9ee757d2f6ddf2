"""The results of a Blender test script, written as the JSON its pytest wrapper asserts on.

Not a test (tests/blender/README.md has the convention). A script runs many cases in one Blender
process, because each start costs seconds:

* ``@case`` runs the decorated function at once and records ``{name, passed, values, message,
  traceback, seconds}``; the name is the function's without ``case_``; the function returns its
  measured values (a JSON-able dict: numpy scalars and arrays are converted) or None.
* :func:`check` raises with a message that says what a user would notice.
* :data:`MADE` holds what a case made for the later ones; :func:`made` fetches it, or fails the case
  saying that an earlier case failed.
* :func:`finish` writes ``{"script", "blender", "cases": [...], **extra}`` to the path given as the
  script's last argument (``tests/conftest.py::run_blender`` appends it) and leaves Blender.

The script's own arguments are :data:`ARGS` (what comes before that path; after ``--`` when run by
the Blender application, ``blender -b -P script.py -- ARGS OUT.json``).
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback
from pathlib import Path

_ARGV = sys.argv[sys.argv.index("--") + 1:] if "--" in sys.argv else sys.argv[1:]
if not _ARGV or not _ARGV[-1].endswith(".json"):
    raise SystemExit(f"{Path(sys.argv[0]).name}: no path for the results (got {_ARGV}). Fix: pass the "
                     "JSON file to write as the last argument; tests/conftest.py::run_blender does.")
RESULT_PATH = Path(_ARGV[-1])
ARGS: list[str] = _ARGV[:-1]
CASES: list[dict] = []


class Skip(Exception):
    """Raised by a case that cannot run here (its real test data is absent); the message says why and
    what to do. The case is recorded as skipped, and its wrapper skips (tests/conftest.py::passed_case)."""


def case(func):
    name = func.__name__.removeprefix("case_")
    started = time.monotonic()
    record: dict = {"name": name, "passed": False, "values": {}, "message": "", "traceback": ""}
    try:
        record["values"] = func() or {}
        record["passed"] = True
    except Skip as skip:
        record["passed"], record["skipped"] = True, str(skip)
    except Exception as exc:  # noqa: BLE001  (recorded; the other cases still run)
        record["message"] = f"{type(exc).__name__}: {exc}"
        record["traceback"] = traceback.format_exc()[-3000:]
    record["seconds"] = round(time.monotonic() - started, 2)
    CASES.append(record)
    outcome = "ok" if record["passed"] else f"FAIL {record['message']}\n{record['traceback']}"
    if "skipped" in record:
        outcome = f"SKIP {record['skipped']}"
    print(f"CASE {name} {outcome} ({record['seconds']:.1f} s)", flush=True)
    return func


def check(condition, message: str) -> None:
    if not condition:
        raise AssertionError(message)


MADE: dict = {}


def made(*names: str) -> list:
    """The things earlier cases stored in :data:`MADE` under ``names``, in that order."""
    missing = [n for n in names if n not in MADE]
    check(not missing, f"nothing to work on ({missing}): an earlier case of this script failed")
    return [MADE[n] for n in names]


def _plain(value):
    """numpy scalars and arrays as Python numbers and lists (json cannot write them)."""
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable: {value!r}")


def finish(**extra) -> None:
    """Write the results and leave Blender at once (exit 1 if any case failed): ``os._exit``, so neither
    a lingering client thread nor Blender 4.2's crash at interpreter exit (see ``rigs.exit_blender``)
    can change the outcome. The file appears whole (written aside, then renamed) or not at all."""
    import bpy

    failed = [c["name"] for c in CASES if not c["passed"]]
    doc = {"script": Path(sys.argv[0]).name, "blender": bpy.app.version_string, "cases": CASES, **extra}
    partial = RESULT_PATH.with_name(RESULT_PATH.name + ".partial")
    partial.write_text(json.dumps(doc, indent=1, default=_plain))
    os.replace(partial, RESULT_PATH)
    print(f"SUMMARY {len(CASES) - len(failed)}/{len(CASES)} ok; failed: {failed}; results in {RESULT_PATH}",
          flush=True)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(1 if failed else 0)
