"""A scripted stand-in for ``python -m backend serve``, to test how the add-on's client copes with a
backend that misbehaves. Stdlib only: it also runs as the "backend Python" of real Blender tests.

:func:`install` writes an executable ``python`` (a shell script) that runs this file with a scenario
file; point ``BackendConfig.python`` (or the add-on's 'Backend Python') at it. It ignores the
``-m backend serve ...`` arguments the client passes. The scenario is re-read at every start, so a
test rewrites it (:func:`write_scenario`) to make the next start healthy.

A scenario is a JSON object. ``"startup"`` is a list of actions done before the first request; every
other key is a request type whose actions answer each request of that type. A type without actions
gets a plain answer: ``hello`` a hello result, ``shutdown`` a result and exit 0, anything else
``{"ok": true, "type": <type>}``. Actions (one dict each):

- ``{"line": TEXT}``: TEXT and a newline; ``@ID@`` in TEXT becomes the request's id.
- ``{"reply": {...}}``: that message, with the request's id, as one line (``allow_nan``: NaN stays).
- ``{"result": DATA}``: a result carrying DATA.
- ``{"bytes": BASE64}``: those bytes exactly (no newline added).
- ``{"repeat": N, "line": TEXT}``: the line N times.
- ``{"huge": N}``: N bytes of ``x`` without a newline, written 1 MiB at a time.
- ``{"sleep": SECONDS}``, ``{"exit": CODE}``, ``{"kill": true}`` (SIGKILL itself),
  ``{"close_stdout": true}`` (and live on until stdin closes).
"""

from __future__ import annotations

import base64
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

HELLO = {"protocol": 1, "backend_version": "fake", "device": {"requested": "cpu", "resolved": "cpu"},
         "dataset": "t2m", "fps": 20.0}


def install(folder: Path, scenario: dict[str, Any]) -> Path:
    """Write the scenario and an executable that runs this fake with it; returns the executable."""
    folder.mkdir(parents=True, exist_ok=True)
    write_scenario(folder, scenario)
    exe = folder / "python"
    exe.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{Path(__file__).resolve()}" '
                   f'"{folder / "scenario.json"}" "$@"\n')
    exe.chmod(0o755)
    return exe


def write_scenario(folder: Path, scenario: dict[str, Any]) -> None:
    path = folder / "scenario.json"
    path.with_suffix(".tmp").write_text(json.dumps(scenario))
    path.with_suffix(".tmp").replace(path)  # atomic: a start never reads half a scenario


def _write(data: bytes) -> None:
    out = sys.stdout.buffer
    out.write(data)
    out.flush()


def _act(action: dict[str, Any], request_id: Any) -> None:
    if "repeat" in action:
        line = (str(action["line"]).replace("@ID@", json.dumps(request_id)) + "\n").encode()
        for _ in range(int(action["repeat"])):
            _write(line)
    elif "line" in action:
        _write((str(action["line"]).replace("@ID@", json.dumps(request_id)) + "\n").encode())
    elif "reply" in action:
        _write((json.dumps({**action["reply"], "id": request_id}) + "\n").encode())
    elif "result" in action:
        _write((json.dumps({"id": request_id, "type": "result", "data": action["result"]}) + "\n").encode())
    elif "bytes" in action:
        _write(base64.b64decode(action["bytes"]))
    elif "huge" in action:
        left, chunk = int(action["huge"]), b"x" * (1 << 20)
        while left > 0:
            _write(chunk[:left])
            left -= len(chunk)
    elif "sleep" in action:
        time.sleep(float(action["sleep"]))
    elif "exit" in action:
        sys.stdout.flush()
        os._exit(int(action["exit"]))
    elif action.get("kill"):
        os.kill(os.getpid(), signal.SIGKILL)
    elif action.get("close_stdout"):
        sys.stdout.flush()
        os.close(1)
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 (lives as long as the process)


def _default(message: dict[str, Any]) -> None:
    kind = message.get("type")
    data = HELLO if kind == "hello" else {"bye": True} if kind == "shutdown" else {"ok": True, "type": kind}
    _act({"result": data}, message.get("id"))
    if kind == "shutdown":
        os._exit(0)


def main() -> None:
    scenario = json.loads(Path(sys.argv[1]).read_text())
    try:
        for action in scenario.get("startup", []):
            _act(action, None)
        for line in sys.stdin.buffer:
            message = json.loads(line)
            actions = scenario.get(message.get("type"))
            if not actions:
                _default(message)
                continue
            for action in actions:
                _act(action, message.get("id"))
    except BrokenPipeError:
        pass
    os._exit(0)  # stdin closed: the client went away (like the real backend, leave no orphan)


if __name__ == "__main__":
    main()
