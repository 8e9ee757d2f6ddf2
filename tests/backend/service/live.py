"""A live ``python -m backend serve`` process driven over its pipes, as the add-on drives it, and the
rigs and checks the service tests share (docs/protocol.md)."""


from __future__ import annotations

import itertools
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

from backend.motion import skeleton as sk
from backend.portable import protocol

REPO = Path(__file__).resolve().parents[3]


TIMEOUT = 120.0


class Backend:
    """A backend process and a reader thread that checks every stdout line is a protocol reply."""

    def __init__(self, cmd: list[str], env: dict[str, str] | None = None, **popen) -> None:
        full_env = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
        self.proc = subprocess.Popen(cmd, cwd=REPO, env=full_env, stdout=subprocess.PIPE,
                                     **{"stdin": subprocess.PIPE, **popen})
        self.messages: list[dict] = []
        self.bad_lines: list[bytes] = []
        self.eof = threading.Event()
        self._cond = threading.Condition()
        self._ids = itertools.count(1)
        threading.Thread(target=self._read, daemon=True).start()

    @classmethod
    def serve(cls, weights: Path, log: Path, env: dict[str, str] | None = None) -> Backend:
        return cls([sys.executable, "-m", "backend", "serve", "--weights", str(weights), "--device", "cpu",
                    "--log", str(log)], env)

    def _read(self) -> None:
        for line in self.proc.stdout:
            try:
                message = protocol.decode_message(line, kind="reply")
            except protocol.ProtocolError:
                self.bad_lines.append(line)
                continue
            with self._cond:
                self.messages.append(message)
                self._cond.notify_all()
        self.eof.set()
        with self._cond:
            self._cond.notify_all()

    def send(self, message_type: str, **fields) -> int:
        request_id = next(self._ids)
        self.send_raw(protocol.encode_message(protocol.request(message_type, request_id, **fields)))
        return request_id

    def send_raw(self, line: bytes) -> None:
        self.proc.stdin.write(line)
        self.proc.stdin.flush()

    def replies(self, request_id) -> list[dict]:
        with self._cond:
            return [m for m in self.messages if m["id"] == request_id]

    def wait(self, request_id, timeout: float = TIMEOUT) -> tuple[list[dict], dict]:
        """(progress events, final result or error) of one request."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                mine = [m for m in self.messages if m["id"] == request_id]
                final = [m for m in mine if m["type"] in ("result", "error")]
                if final:
                    assert len(final) == 1, f"request {request_id} got {len(final)} final replies"
                    return [m for m in mine if m["type"] == "progress"], final[0]
                left = deadline - time.monotonic()
                assert left > 0 and not self.eof.is_set(), \
                    f"no reply to {request_id}; backend exit code {self.proc.poll()}"
                self._cond.wait(min(left, 1.0))

    def call(self, message_type: str, **fields) -> dict:
        """Send a request and return the ``data`` of its result (failing on an error reply)."""
        events, final = self.wait(self.send(message_type, **fields))
        assert final["type"] == "result", final
        return final["data"]

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        assert not self.bad_lines, f"non-protocol lines on stdout: {self.bad_lines[:3]}"


def smpl_rig() -> dict:
    """An armature description in the SMPL layout (SMPL-X names), Blender-style: Z up, facing −Y."""
    to_blender = np.array([[1, 0, 0], [0, 0, -1], [0, 1, 0]], dtype=np.float64)
    n = len(sk.T2M_JOINT_NAMES)
    heads = np.zeros((n, 3))
    for i, parent in enumerate(sk.T2M_PARENTS):
        if parent >= 0:
            heads[i] = heads[parent] + to_blender @ sk.T2M_TARGET_OFFSETS[i]
    heads[:, 2] += 0.95
    rest = np.tile(np.eye(4), (n, 1, 1))
    for i in range(n):
        children = [j for j, p in enumerate(sk.T2M_PARENTS) if p == i]
        child = 3 if i == 0 else (children[0] if children else None)
        y = heads[child] - heads[i] if child is not None else heads[i] - heads[sk.T2M_PARENTS[i]]
        y /= np.linalg.norm(y)
        helper = np.array([0.0, 0.0, 1.0]) if abs(y[2]) < 0.9 else np.array([0.0, -1.0, 0.0])
        x = np.cross(y, helper)
        x /= np.linalg.norm(x)
        rest[i, :3, 0], rest[i, :3, 1], rest[i, :3, 2], rest[i, :3, 3] = x, y, np.cross(x, y), heads[i]
    return {"bone_names": list(sk.T2M_JOINT_NAMES), "parents": list(sk.T2M_PARENTS),
            "rest_matrices": rest.astype(np.float32), "world_matrix": np.eye(4, dtype=np.float32),
            "rotation_modes": ["QUATERNION"] * (n - 1) + ["XYZ"], "name": "smpl_test"}


#: A two-bone armature: nothing of a humanoid can be mapped onto it.
STUB_RIG = {"bone_names": ["root", "tail"], "parents": [-1, 0],
            "rest_matrices": np.tile(np.eye(4), (2, 1, 1))}


def assert_progress_is_a_real_percentage(events: list[dict]) -> None:
    assert events, "no progress events"
    done = [e["done"] for e in events]
    assert done == sorted(done), f"progress went backwards: {done}"
    assert len({e["total"] for e in events}) == 1, "the total changed mid-job"
    assert events[-1]["done"] == events[-1]["total"] and events[-1]["fraction"] == 1.0
    assert all(0.0 <= e["fraction"] <= 1.0 for e in events)
