"""The ``python -m backend serve`` process: its log, its private stdout, the watchdog and ``main``.

stdout carries protocol messages only: :func:`main` moves file descriptor 1 onto the log, so a stray
``print`` or a C library's chatter can never corrupt the stream (docs/protocol.md, Framing and Lifetime).
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

from backend import __version__
from backend.motion import skeleton as sk
from backend.portable import messages, protocol
from backend.portable.errors import InputError, MoMaskError
from backend.portable.logfile import rotate_log
from backend.service.state import ServiceConfig
from backend.service.transport import SHUTDOWN_GRACE_S, Service, Writer, read_lines

log = logging.getLogger("momask.service")

#: The log is truncated while running when it grows past this size (its rotation at start:
#: backend/portable/logfile.py).
LOG_TRUNCATE_BYTES = 50 * 1024 * 1024
WATCHDOG_PERIOD_S = 1.0
#: Test hook: seconds to sleep after every decoding step, so a test can cancel mid-generation.
STEP_DELAY_ENV = "MOMASK_DEBUG_STEP_DELAY"


def parent_alive(parent: int) -> bool:
    """Whether the process that started us still runs. POSIX re-parents an orphan, so its parent id
    changes; Windows keeps the dead parent's id, so there the process handle is asked instead."""
    if sys.platform != "win32":
        return os.getppid() == parent
    import ctypes  # Windows only

    kernel32 = ctypes.windll.kernel32
    handle = kernel32.OpenProcess(0x00100000, False, parent)       # SYNCHRONIZE
    if not handle:
        return False
    try:
        return kernel32.WaitForSingleObject(handle, 0) != 0        # 0 = WAIT_OBJECT_0: it has exited
    finally:
        kernel32.CloseHandle(handle)


def watch_parent(service: Service, parent: int, log_fd: int | None) -> None:
    """Exit when the parent is gone (stdin EOF normally tells us first) and keep the log bounded."""
    while not service.stopping.wait(WATCHDOG_PERIOD_S):
        if parent > 1 and not parent_alive(parent):
            log.warning("parent process %d is gone; exiting", parent)
            service.stop(grace=2.0)
            logging.shutdown()
            os._exit(0)
        if service.writer.broken.is_set():
            log.warning("the protocol stream is closed; exiting")
            service.stopping.set()
        if log_fd is not None:
            try:
                if os.fstat(log_fd).st_size > LOG_TRUNCATE_BYTES:
                    os.ftruncate(log_fd, 0)
                    log.warning("log truncated at %d bytes", LOG_TRUNCATE_BYTES)
            except OSError:
                pass


def serve(weights: Path | str | None, dataset: str = "t2m", clip: Path | str | None = None,
          device: str = "auto", log_path: Path | str | None = None, stdin: BinaryIO | None = None,
          stdout: BinaryIO | None = None,
          pipeline_loader: Callable[[ServiceConfig], Any] | None = None, log_fd: int | None = None) -> int:
    """Serve requests from ``stdin`` until EOF, ``shutdown`` or the parent's death; returns the exit code."""
    if dataset not in sk.FPS:
        raise InputError(f"Unknown dataset {dataset!r}.", "Use --dataset t2m or --dataset kit.")
    config = ServiceConfig(Path(weights) if weights else None, dataset, Path(clip) if clip else None, device,
                           Path(log_path) if log_path else None,
                           step_delay=float(os.environ.get(STEP_DELAY_ENV) or 0.0))
    stdin = stdin if stdin is not None else sys.stdin.buffer
    writer = Writer(stdout if stdout is not None else sys.stdout.buffer, config.log_hint)
    service = Service(config, writer, pipeline_loader)
    service.start()
    threading.Thread(target=watch_parent, args=(service, os.getppid(), log_fd), name="momask-watchdog",
                     daemon=True).start()
    log.info("serving: pid %d, backend %s, protocol %d, weights %s, dataset %s, device %s",
             os.getpid(), __version__, protocol.PROTOCOL_VERSION, config.weights, dataset, device)
    reader = threading.Thread(target=read_lines, args=(service, stdin), name="momask-reader", daemon=True)
    reader.start()
    service.stopping.wait()
    shutdown_id = service.shutdown_id
    clean = service.stop()
    if shutdown_id is not None:
        writer.send(protocol.result(shutdown_id, messages.ShutdownResult(clean=clean)))
    log.info("stopped (%s)", "shutdown request" if shutdown_id is not None else "input closed")
    if not clean:
        log.warning("a job did not stop within %.0f s; exiting anyway", SHUTDOWN_GRACE_S)
    return 0


def open_log(path: Path) -> int:
    """Point file descriptor 2 (stderr, including C libraries and warnings) at ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rotate_log(path)   # as the add-on does before it starts us (a backend started by hand)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 2)
    os.close(fd)
    # Lives as long as the process (it is the process's stderr), hence no context manager.
    sys.stderr = open(2, "w", buffering=1, encoding="utf-8", errors="replace", closefd=False)  # noqa: SIM115
    return 2


def reserve_stdout() -> BinaryIO:
    """A private handle on the real stdout for protocol lines; fd 1 and ``sys.stdout`` then point at
    stderr (the log), so nothing else can write into the protocol stream."""
    sys.stdout.flush()
    protocol_stream = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return protocol_stream


def main(args: Any) -> int:
    """``python -m backend serve`` (args: weights, dataset, clip, device, log)."""
    log_path = Path(args.log).expanduser() if getattr(args, "log", None) else None
    log_fd = open_log(log_path) if log_path else None
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, force=True,
                        format="%(asctime)s %(levelname)s %(threadName)s %(name)s: %(message)s")
    logging.captureWarnings(True)
    protocol_stream = reserve_stdout()
    try:
        code = serve(getattr(args, "weights", None), getattr(args, "dataset", None) or "t2m",
                     getattr(args, "clip", None), getattr(args, "device", None) or "auto", log_path,
                     sys.stdin.buffer, protocol_stream, log_fd=log_fd)
    except MoMaskError as exc:
        log.error("cannot serve: %s", exc)
        Writer(protocol_stream).send(protocol.error_from_exception(None, exc))
        code = 2
    logging.shutdown()
    protocol_stream.flush()
    sys.stderr.flush()
    # Worker threads are daemons; a job stuck inside a model call must not keep the process alive.
    os._exit(code)
