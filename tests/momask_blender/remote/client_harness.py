"""What the client tests share: the add-on's client module without Blender, a :class:`BackendClient`
pointed at the scripted fake backend (fake_backend.py), and the check that it leaves no reader
thread behind."""

from __future__ import annotations

import importlib.util
import sys
import threading
from pathlib import Path
from typing import Any

import fake_backend

REPO = Path(__file__).resolve().parents[3]


def _load_client():
    """momask_blender/remote/client.py by path: it needs no bpy, but the add-on package it sits in
    imports bpy (which plain Python has not), so it cannot be imported as ``momask_blender...``."""
    name = "_momask_client_under_test"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, REPO / "momask_blender" / "remote" / "client.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


client = _load_client()


def fake_client(folder: Path, scenario: dict[str, Any]):
    """A client whose backend is the fake playing ``scenario`` (rewrite it with ``fake_backend.
    write_scenario(folder, ...)``; it is read at every start)."""
    python = fake_backend.install(folder, scenario)
    return client.BackendClient(client.BackendConfig(
        python=str(python), weights=str(folder / "no_weights"), device="cpu", root=str(REPO),
        log_path=str(folder / "logs" / "backend.log"),
    ))


def reader_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "momask-backend-reader" and t.is_alive()]


def stop_and_check_no_leak(backend) -> None:
    """Stop the client; its process is gone and no reader thread outlives it."""
    process = backend._process
    backend.stop(timeout=2.0)
    assert process is None or process.poll() is not None, "the fake backend outlived stop()"
    assert client.wait_for(lambda: not reader_threads(), 5.0), f"reader threads leaked: {reader_threads()}"
