"""The backend service as the add-on sees it: a real ``python -m backend serve`` process with tiny
random weights, driven over its pipes (docs/protocol.md)."""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from backend.motion import skeleton as sk
from backend.motion.features import recover_from_ric
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


@pytest.fixture(scope="module")
def backend(tiny_weights, tmp_path_factory):
    log = tmp_path_factory.mktemp("service") / "logs" / "nested" / "backend.log"
    proc = Backend.serve(tiny_weights, log)
    proc.log_path = log
    yield proc
    proc.close()


@pytest.fixture(scope="module")
def source_features(sample_features):
    return sample_features.astype(np.float32)


def test_hello_answers_before_any_model_is_loaded(backend, tiny_weights):
    data = backend.call("hello", protocol=protocol.PROTOCOL_VERSION, client="tests")
    assert data["protocol"] == protocol.PROTOCOL_VERSION
    assert data["weights"] == {"root": str(tiny_weights), "found": True, "missing": [], "loaded": False}
    assert data["torch"] and data["python"] and data["device"]["resolved"] == "cpu"
    assert data["clip"]["found"] and data["fps"] == 20.0
    mismatch = backend.wait(backend.send("hello", protocol=protocol.PROTOCOL_VERSION + 1))[1]
    assert mismatch["error"]["code"] == "protocol_mismatch"


def test_generate_streams_step_progress_and_returns_every_variation(backend):
    request_id = backend.send("generate", prompts=["a person walks forward"], seconds=[2.1], seed=11,
                              variations=3, steps=6)
    events, final = backend.wait(request_id)
    assert final["type"] == "result", final
    assert_progress_is_a_real_percentage(events)
    stages = [e["stage"] for e in events]
    assert stages.count("base") == 6 and stages.count("residual") == 5 and stages.count("decode") == 1
    load = 1 if "load" in stages else 0
    assert events[-1]["total"] == load + 6 + 5 + 1
    takes = final["data"]["takes"]
    assert len(takes) == 3
    for i, take in enumerate(takes):
        assert take["index"] == i and take["seed"] == 11 and take["prompt"] == "a person walks forward"
        assert take["frames"] == 40                      # 2.1 s → 42 frames → whole tokens
        assert take["joints"].shape == (40, 22, 3) and take["joints"].dtype == np.float32
        assert np.isfinite(take["joints"]).all()
    assert not np.array_equal(takes[0]["joints"], takes[1]["joints"]), "variations must differ"
    assert backend.call("hello")["weights"]["loaded"] is True


def test_load_with_prompts_encodes_them_ahead_for_the_generate_that_follows(backend):
    """The add-on's warm-up: `load` with the prompt being typed puts its CLIP features in the cache the
    fast flow reads, so Generate skips the text tower; prompts already there are not encoded again."""
    first = backend.call("load", prompts=["  a person does a handstand ", "a person does a handstand"])
    assert first["loaded"] is True and first["encoded"] == 1     # stripped, then deduplicated
    assert backend.call("load", prompts=["a person does a handstand"])["encoded"] == 0
    backend.call("generate", prompts=["a person hops on one leg"], frames=[16], seed=1, steps=2)
    assert backend.call("load", prompts=["a person hops on one leg", "a person bows"])["encoded"] == 1
    events, final = backend.wait(backend.send("load", prompts=["fine", 3]))
    assert final["type"] == "error" and final["error"]["code"] == "bad_input"


def test_a_primed_backend_generates_exactly_what_an_unprimed_one_does(backend, tiny_weights, tmp_path):
    """The warm-up's `prime` (a throwaway generation after a fresh load) changes no later result."""
    primed = Backend.serve(tiny_weights, tmp_path / "primed.log")
    try:
        data = primed.call("load", prompts=["a person spins"], prime=True)
        assert data["timings"]["prime"] > 0 and data["encoded"] == 1
        assert primed.call("load", prime=True)["timings"]["prime"] == 0.0  # once, after a fresh load
        request = {"prompts": ["a person spins"], "frames": [24], "seed": 9, "steps": 3}
        after_prime = primed.call("generate", **request)["takes"][0]["joints"]
    finally:
        primed.close()
    assert np.array_equal(after_prime, backend.call("generate", **request)["takes"][0]["joints"])


def test_bad_settings_and_lengths_are_refused_before_the_models_load(tiny_weights, tmp_path):
    """A first request with a wrong setting answers at once: no seconds of loading first."""
    fresh = Backend.serve(tiny_weights, tmp_path / "fresh.log")
    try:
        for bad in ({"steps": 0}, {"topk": 1.5}, {"flow": "turbo"}, {"frames": [400]}):
            request = {"prompts": ["a person waves"], "frames": [40], **bad}
            events, final = fresh.wait(fresh.send("generate", **request))
            assert final["type"] == "error" and final["error"]["code"] == "bad_input", (bad, final)
            assert not any(e["stage"] == "load" for e in events), bad
        assert fresh.call("hello")["weights"]["loaded"] is False
    finally:
        fresh.close()


def test_the_same_seed_gives_the_same_take_and_no_seed_reports_the_one_drawn(backend):
    first = backend.call("generate", prompts=["a person jumps"], frames=[32], seed=5, steps=3)["takes"][0]
    again = backend.call("generate", prompts=["a person jumps"], frames=[32], seed=5, steps=3)["takes"][0]
    assert np.array_equal(first["joints"], again["joints"])
    drawn = backend.call("generate", prompts=["a person jumps"], frames=32, steps=3)["takes"][0]
    redo = backend.call("generate", prompts=["a person jumps"], frames=32, steps=3,
                        seed=drawn["seed"])["takes"][0]
    assert 0 <= drawn["seed"] < 2**31 and np.array_equal(drawn["joints"], redo["joints"])


def test_malformed_requests_get_errors_and_the_process_keeps_serving(backend):
    lines = (b"this is not json\n", b"[1, 2, 3]\n", b'{"type": "generate"}\n',
             b'{"id": null, "type": "hello"}\n')
    for line in lines:
        before = len(backend.replies(None))
        backend.send_raw(line)
        deadline = time.monotonic() + 30
        while len(backend.replies(None)) == before:
            assert time.monotonic() < deadline, f"no error reply to {line!r}"
            time.sleep(0.02)
        assert backend.replies(None)[-1]["error"]["code"] == "bad_request"
    backend.send_raw(b'{"id": "x-1", "type": "teleport"}\n')
    error = backend.wait("x-1")[1]["error"]
    assert error["code"] == "bad_request" and "teleport" in error["problem"] and error["fix"]
    backend.send_raw(b'{"id": "x-2"}\n')
    assert "no \"type\"" in backend.wait("x-2")[1]["error"]["problem"]

    bad = [dict(prompts=[]), dict(prompts=["walk"], frames=["long"]), dict(prompts=["walk"], frames=[1000]),
           dict(prompts=["walk"], frames=[40], steps=0), dict(prompts=["walk"], frames=[40], seconds=[2]),
           dict(prompts=["walk"], frames=[40], seed=-3), dict(prompts=["walk"], frames=[40], topk="all")]
    for fields in bad:
        error = backend.wait(backend.send("generate", **fields))[1]
        assert error["type"] == "error" and error["error"]["code"] == "bad_input", (fields, error)
        assert error["error"]["problem"] and error["error"]["fix"]
    after = backend.call("generate", prompts=["a person waves"], frames=[16], steps=2)
    assert after["takes"][0]["frames"] == 16


def test_map_rig_works_without_models_and_names_missing_roles(backend):
    data = backend.call("map_rig", rig=smpl_rig())
    assert data["complete"] and data["missing"] == []
    assert data["mapping"]["bones"]["left_wrist"] == "left_wrist" and "pelvis" in data["report"]
    partial = backend.call("map_rig", rig=STUB_RIG)
    assert not partial["complete"] and "left_wrist" in partial["missing"]


def test_retarget_drives_the_rig_at_the_scene_fps(backend, source_features):
    joints = recover_from_ric(source_features[:60]).astype(np.float32)
    data = backend.call("retarget", joints=joints, fps=20, rig=smpl_rig(), dst_fps=30, foot_lock=True)
    out = data["retarget"]
    assert out["fps"] == 30.0 and abs(out["frame_count"] - 59 * 1.5 - 1) <= 1
    channels = {b["name"]: b for b in out["bones"]}
    assert channels["left_knee"]["channel"] == "rotation_quaternion"
    assert channels["right_wrist"]["channel"] == "rotation_euler"      # the rig's XYZ bone
    assert channels["left_knee"]["values"].shape == (out["frame_count"], 4)
    assert out["root"]["name"] == "pelvis" and out["root"]["location"].shape == (out["frame_count"], 3)


def test_generate_can_retarget_and_refuses_an_unmappable_rig_before_generating(backend):
    data = backend.call("generate", prompts=["a person runs"], frames=[40], seed=1, steps=3,
                        retarget={"rig": smpl_rig(), "dst_fps": 24})
    take = data["takes"][0]
    assert take["retarget"]["fps"] == 24.0 and take["retarget"]["frame_count"] in (47, 48)
    assert take["mapping"]["convention"] == "smplx"
    events, final = backend.wait(backend.send("generate", prompts=["a person runs"], frames=[40],
                                              retarget={"rig": STUB_RIG}))
    assert final["error"]["code"] == "bad_rig" and "left_wrist" in final["error"]["problem"]
    assert not [e for e in events if e["stage"] in ("base", "residual")], "generated before checking the rig"


def test_inpaint_a_feature_source_reports_the_widened_range_and_keeps_the_rest(backend, source_features):
    source = source_features[:120]
    request_id = backend.send("inpaint", prompt="a person jumps", start=42, end=77, seed=3, steps=4,
                              source={"kind": "features", "data": source, "fps": 20})
    events, final = backend.wait(request_id)
    assert final["type"] == "result", final
    assert_progress_is_a_real_percentage(events)
    take = final["data"]["takes"][0]
    assert take["range"]["start"] == 40 and take["range"]["end"] == 80
    assert take["source_range"] == {"start": 40, "end": 80, "fps": 20.0}
    assert take["frames"] == 120 and take["joints"].shape == (120, 22, 3)
    source_joints = recover_from_ric(source)
    outside = np.r_[0:40, 80:120]
    assert np.allclose(take["joints"][outside], source_joints[outside], atol=1e-5)
    assert not np.allclose(take["joints"][40:80], source_joints[40:80], atol=1e-3)


def test_inpaint_a_long_joint_source_through_a_window_around_the_range(backend, source_features):
    walk = recover_from_ric(source_features)
    long = np.concatenate([walk, walk[::-1]])                 # 398 frames: twice what the model takes
    data = backend.call("inpaint", prompt="a person kicks", start=250, end=290, seed=4, steps=3,
                        source={"kind": "joints", "data": long, "fps": 20})
    take = data["takes"][0]
    window, done = take["window"], take["range"]
    assert take["frames"] == len(long) and take["joints"].shape == long.shape
    assert window["end"] - window["start"] == 196 and window["start"] <= 250 and window["end"] >= 290
    assert done["start"] <= 250 and done["end"] >= 290 and done["end"] - done["start"] < 50
    outside = np.r_[0:done["start"], done["end"]:len(long)]
    assert np.allclose(take["joints"][outside], long[outside], atol=1e-5)
    assert not np.allclose(take["joints"][250:290], long[250:290], atol=1e-3)
    error = backend.wait(backend.send("inpaint", prompt="a person kicks", start=10, end=390,
                                      source={"kind": "joints", "data": long, "fps": 20}))[1]["error"]
    assert error["code"] == "bad_input" and "shorter range" in error["fix"]


def test_inpaint_a_posed_rig_at_24_fps(backend, source_features):
    from backend.retarget.inverse import pose_matrices_from_basis
    from backend.retarget.mapping import auto_map
    from backend.retarget.rig import RigDescription
    from backend.retarget.solver import retarget

    rig_dict = smpl_rig()
    rig = RigDescription.from_dict(rig_dict)
    keys = retarget(recover_from_ric(source_features[:100]), rig, auto_map(rig), src_fps=20, dst_fps=24)
    pose = pose_matrices_from_basis(rig, keys).astype(np.float32)
    frames_24 = pose.shape[0]
    data = backend.call("inpaint", prompt="a person turns around", start=30, end=61, seed=2, steps=3,
                        source={"kind": "pose", "fps": 24, "rig": rig_dict, "pose_matrices": pose},
                        retarget={"foot_lock": False})
    take = data["takes"][0]
    assert take["source_frames"] == frames_24
    assert take["range"]["start"] % 4 == 0 and take["range"]["end"] % 4 == 0
    assert take["source_range"]["start"] <= 30 and take["source_range"]["end"] >= 61
    assert take["source_range"]["fps"] == 24.0
    assert take["retarget"]["fps"] == 24.0 and abs(take["retarget"]["frame_count"] - frames_24) <= 1
    assert {b["name"] for b in take["retarget"]["bones"]} <= set(rig_dict["bone_names"])


def test_diagnose_lists_every_check_and_a_fix_for_each_failure(backend, tiny_weights, tmp_path):
    data = backend.call("diagnose")
    names = [c["name"] for c in data["checks"]]
    assert data["ok"] is True, [c for c in data["checks"] if not c["ok"]]
    for name in ("Python", "PyTorch", "Device", "NumPy", "SciPy", "CLIP package", "CLIP weights"):
        assert name in names
    assert sum(n.startswith("Weights: ") for n in names) == 8       # every official file, one by one

    from backend import doctor

    empty = tmp_path / "empty"
    (empty / "t2m").mkdir(parents=True)
    report = doctor.diagnose(empty, clip=tmp_path / "nowhere.pt", device="cuda:7")
    failed = {c["name"]: c for c in report["checks"] if not c["ok"] and not c["optional"]}
    assert not report["ok"]
    assert "Device" in failed and "CLIP weights" in failed
    assert sum(n.startswith("Weights: ") for n in failed) == 8
    assert all(c["fix"] for c in failed.values())
    assert "FAIL" in doctor.format_report(report) and "Fix:" in doctor.format_report(report)


def test_the_log_file_is_created_with_its_folders_and_records_requests(backend):
    backend.call("hello")
    text = backend.log_path.read_text()
    assert "request hello" in text and "serving: pid" in text


# --- cancel --------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def slow_backend(tiny_weights, tmp_path_factory):
    """Sleeps 0.25 s after every decoding step, so a cancel can land mid-generation."""
    proc = Backend.serve(tiny_weights, tmp_path_factory.mktemp("slow") / "backend.log",
                         env={"MOMASK_DEBUG_STEP_DELAY": "0.25"})
    proc.call("load")
    yield proc
    proc.close()


def test_cancel_stops_a_running_generation_at_the_next_step_and_the_next_job_works(slow_backend):
    backend = slow_backend
    job = backend.send("generate", prompts=["a person dances"], frames=[40], steps=10, seed=0)
    deadline = time.monotonic() + TIMEOUT
    while not any(m["type"] == "progress" and m["stage"] == "base" for m in backend.replies(job)):
        assert time.monotonic() < deadline
        time.sleep(0.01)
    cancel = backend.send("cancel", target=job)
    events, final = backend.wait(job)
    assert final["type"] == "error" and final["error"]["code"] == "cancelled"
    assert events[-1]["done"] < events[-1]["total"]
    assert not [e for e in events if e["stage"] in ("residual", "decode")], "it ran on after the cancel"
    assert backend.wait(cancel)[1]["data"] == {"target": job, "was": "running", "cancelled": True}

    after = backend.call("generate", prompts=["a person dances"], frames=[24], steps=2, seed=0)
    assert after["takes"][0]["joints"].shape == (24, 22, 3)


def test_cancel_a_queued_job_answers_at_once_and_unknown_targets_are_fine(slow_backend):
    backend = slow_backend
    first = backend.send("generate", prompts=["a person sits down"], frames=[16], steps=4)
    second = backend.send("generate", prompts=["a person stands up"], frames=[16], steps=4)
    cancel = backend.send("cancel", target=second)
    _, cancelled = backend.wait(second)
    assert cancelled["error"]["code"] == "cancelled"
    assert backend.wait(cancel)[1]["data"]["was"] == "queued"
    assert not [m for m in backend.replies(first) if m["type"] in ("result", "error")], \
        "the queued job should be answered before the running one finishes"
    assert backend.wait(first)[1]["type"] == "result"
    assert backend.wait(second)[0] == [] or all(e["stage"] == "queued" for e in backend.wait(second)[0])
    unknown = backend.call("cancel", target="nobody")
    assert unknown == {"target": "nobody", "was": "unknown", "cancelled": False}


# --- lifetime --------------------------------------------------------------------------------------------

def test_shutdown_answers_last_and_exits_with_code_0(tiny_weights, tmp_path):
    backend = Backend.serve(tiny_weights, tmp_path / "backend.log")
    backend.call("hello")
    bye = backend.send("shutdown")
    assert backend.proc.wait(60) == 0
    assert backend.eof.wait(10)
    assert backend.messages[-1] == {"id": bye, "type": "result", "data": {"bye": True, "clean": True}}
    backend.close()


def test_closing_stdin_ends_the_process_even_mid_job(tiny_weights, tmp_path):
    backend = Backend.serve(tiny_weights, tmp_path / "backend.log", env={"MOMASK_DEBUG_STEP_DELAY": "0.5"})
    job = backend.send("generate", prompts=["a person walks"], frames=[40], steps=10)
    backend.wait(backend.send("hello"))
    backend.proc.stdin.close()
    assert backend.proc.wait(60) == 0
    assert backend.eof.wait(10)
    assert backend.replies(job)[-1]["error"]["code"] == "cancelled"     # answered before exiting
    backend.close()


def test_the_service_exits_when_its_parent_dies_even_if_stdin_stays_open(tiny_weights, tmp_path):
    """A parent that is killed (no clean EOF because someone else still holds the pipe) must not
    leave an orphan holding memory: the watchdog sees the parent id change."""
    read_end, write_end = os.pipe()
    launcher = (
        "import subprocess, sys, time\n"
        "child = subprocess.Popen([sys.executable, '-m', 'backend', 'serve', "
        f"'--weights', {str(tiny_weights)!r}, '--device', 'cpu',"
        f" '--log', {str(tmp_path / 'backend.log')!r}])\n"
        "time.sleep(600)\n"
    )
    parent = Backend([sys.executable, "-c", launcher], stdin=read_end)
    os.close(read_end)
    try:
        os.write(write_end, protocol.encode_message(protocol.request("hello", 1)))
        assert parent.wait(1)[1]["type"] == "result"        # the grandchild is serving
        os.kill(parent.proc.pid, signal.SIGKILL)
        parent.proc.wait(10)
        assert parent.eof.wait(30), "the service outlived its parent"   # its stdout closed: it exited
    finally:
        os.close(write_end)
        parent.close()


def test_stray_prints_and_warnings_go_to_the_log_never_to_stdout(tiny_weights, tmp_path):
    log = tmp_path / "backend.log"
    script = (
        "import argparse, os, warnings\n"
        "from backend.service import transport as service\n"
        "real = service.load_pipeline\n"
        "def noisy(config):\n"
        "    print('a stray print')\n"
        "    os.write(1, b'raw bytes on fd 1\\n')\n"
        "    warnings.warn('a stray warning')\n"
        "    return real(config)\n"
        "service.load_pipeline = noisy\n"
        f"service.main(argparse.Namespace(weights={str(tiny_weights)!r}, dataset='t2m', clip=None,"
        f" device='cpu', log={str(log)!r}))\n"
    )
    backend = Backend([sys.executable, "-c", script])
    assert backend.call("load")["loaded"] is True
    backend.send("shutdown")
    assert backend.proc.wait(60) == 0
    backend.close()                     # asserts every stdout line was a protocol reply
    text = log.read_text()
    assert "a stray print" in text and "raw bytes on fd 1" in text and "a stray warning" in text


def test_inpaint_keeps_an_elevated_pose_source_at_its_height_and_ignores_in_place(backend, source_features):
    """A rig animated 0.5 m up (a platform): the answer is placed with the transform that read it, so
    the untouched frames reproduce the rig's own root and the regenerated range stays 0.5 m up;
    ``in_place`` is ignored (the root must follow the source around the range); keys cover the
    source's frames exactly, up to a range ending on the last frame."""
    from backend.retarget.inverse import pose_matrices_from_basis
    from backend.retarget.mapping import auto_map
    from backend.retarget.rig import RigDescription
    from backend.retarget.solver import retarget

    rig_dict = smpl_rig()                                    # Z up
    rig = RigDescription.from_dict(rig_dict)
    keys = retarget(recover_from_ric(source_features[:101]), rig, auto_map(rig), src_fps=20, dst_fps=24)
    # 120 frames at 24 fps are 100 model frames, whole tokens: the range can end on the last frame,
    # which a 24 → 20 → 24 fps round trip (119 keys) used to drop.
    grounded = pose_matrices_from_basis(rig, keys)[:120]
    raised = grounded.copy()
    raised[:, :, 2, 3] += 0.5                                # the whole character, 0.5 m up
    pelvis = rig_dict["bone_names"].index("pelvis")
    rest = rig.rest_matrices[pelvis]

    def inpaint(pose):
        take = backend.call("inpaint", prompt="a person jumps", start=30, end=len(pose), seed=5, steps=3,
                            source={"kind": "pose", "fps": 24, "rig": rig_dict,
                                    "pose_matrices": pose.astype(np.float32)},
                            retarget={"foot_lock": True, "in_place": True})["takes"][0]
        out = take["retarget"]
        assert out["frame_count"] == len(pose) and take["source_range"]["end"] == len(pose)
        assert out["root"]["name"] == "pelvis"
        return take["source_range"]["start"], out["root"]["location"] @ rest[:3, :3].T + rest[:3, 3]

    a, up_heads = inpaint(raised)
    a_grounded, heads = inpaint(grounded)
    assert a == a_grounded
    # outside the range: the rig's own root (its horizontal travel and its height)
    assert np.abs(up_heads[:a] - raised[:a, pelvis, :3, 3]).max() < 0.02
    # the model sees the same grounded clip either way; the answer goes back where each source was
    assert np.allclose(up_heads - heads, [0.0, 0.0, 0.5], atol=1e-4)


# --- the log at start-up ------------------------------------------------------------------------------


def _start_logging(log: Path, rename_refused: bool = False) -> subprocess.CompletedProcess:
    """``service.open_log`` in a fresh process (it takes over the process's stderr), which then logs
    one line. ``rename_refused``: renaming the log fails as on Windows while Blender (or the backend's
    own inherited stderr) holds it open."""
    code = (
        "import os, sys\n"
        "from pathlib import Path\n"
        "from backend.service import transport as service\n"
        "if sys.argv[2] == '1':\n"
        "    def refuse(*args, **kwargs):\n"
        "        raise PermissionError(13, 'The file is being used by another process')\n"
        "    os.replace = refuse\n"
        "service.open_log(Path(sys.argv[1]))\n"
        "print('backend started', file=sys.stderr, flush=True)\n"
    )
    return subprocess.run([sys.executable, "-c", code, str(log), "1" if rename_refused else "0"], cwd=REPO,
                          env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True,
                          timeout=120)


def test_a_big_log_is_rotated_at_start(tmp_path) -> None:
    from backend.portable.logfile import LOG_ROTATE_BYTES

    log = tmp_path / "backend.log"
    log.write_bytes(b"old line\n" * (LOG_ROTATE_BYTES // 9 + 1))
    proc = _start_logging(log)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "backend.log.1").stat().st_size > LOG_ROTATE_BYTES      # the old log, kept once
    assert log.read_text() == "backend started\n"


def test_a_big_log_that_cannot_be_renamed_does_not_stop_the_backend(tmp_path) -> None:
    from backend.portable.logfile import LOG_ROTATE_BYTES

    log = tmp_path / "backend.log"
    log.write_bytes(b"old line\n" * (LOG_ROTATE_BYTES // 9 + 1))
    proc = _start_logging(log, rename_refused=True)
    assert proc.returncode == 0, proc.stderr                                  # it starts (and logs)
    assert log.read_text() == "backend started\n"                              # emptied instead of renamed
    assert not (tmp_path / "backend.log.1").exists()
