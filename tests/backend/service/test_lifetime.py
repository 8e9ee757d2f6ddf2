"""The process's lifetime: its log, its clean stdout, shutdown, EOF and a dead parent
(backend/service/lifetime.py, docs/protocol.md, Lifetime and Logging)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from backend.portable import protocol
from tests.backend.service.live import REPO, Backend


def test_the_log_file_is_created_with_its_folders_and_records_requests(backend):
    backend.call("hello")
    text = backend.log_path.read_text()
    assert "request hello" in text and "serving: pid" in text


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
        "from backend.service import lifetime, state\n"
        "real = state.load_pipeline\n"
        "def noisy(config):\n"
        "    print('a stray print')\n"
        "    os.write(1, b'raw bytes on fd 1\\n')\n"
        "    warnings.warn('a stray warning')\n"
        "    return real(config)\n"
        "state.load_pipeline = noisy\n"
        f"lifetime.main(argparse.Namespace(weights={str(tiny_weights)!r}, dataset='t2m', clip=None,"
        f" device='cpu', log={str(log)!r}))\n"
    )
    backend = Backend([sys.executable, "-c", script])
    assert backend.call("load")["loaded"] is True
    backend.send("shutdown")
    assert backend.proc.wait(60) == 0
    backend.close()                     # asserts every stdout line was a protocol reply
    text = log.read_text()
    assert "a stray print" in text and "raw bytes on fd 1" in text and "a stray warning" in text



def _start_logging(log: Path, rename_refused: bool = False) -> subprocess.CompletedProcess:
    """``lifetime.open_log`` in a fresh process (it takes over the process's stderr), which then logs
    one line. ``rename_refused``: renaming the log fails as on Windows while Blender (or the backend's
    own inherited stderr) holds it open."""
    code = (
        "import os, sys\n"
        "from pathlib import Path\n"
        "from backend.service import lifetime\n"
        "if sys.argv[2] == '1':\n"
        "    def refuse(*args, **kwargs):\n"
        "        raise PermissionError(13, 'The file is being used by another process')\n"
        "    os.replace = refuse\n"
        "lifetime.open_log(Path(sys.argv[1]))\n"
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
