"""The transport of ``python -m backend serve``: lines in, jobs on two lanes, lines out (docs/protocol.md).

Threads:

* the reader reads stdin line by line and never does real work, so a ``cancel`` is seen while a
  generation runs; ``cancel`` and ``shutdown`` are answered right there;
* the model lane runs the jobs that need the models (``load``, ``generate``, ``inpaint``,
  ``compose``) one at a time, in arrival order;
* the light lane runs the rest (``hello``, ``diagnose``, ``map_rig``, ``retarget``), so mapping a rig
  or checking the install never waits behind a generation.

The boundary: whatever a line holds, it gets exactly one final reply (``result`` or ``error``) and no
thread dies. Decoding, parsing, queueing, working and encoding the reply each sit inside a guard that
turns any exception into an error reply for that request; the id is ``null`` only when it could not
be read. Each request's work lives in its own module under ``backend/service/usecases``.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any, BinaryIO

from backend.portable import messages, protocol
from backend.portable.errors import CancelledError, MoMaskError
from backend.service.jobs import Job, check_cancel
from backend.service.state import ServiceConfig, ServiceState
from backend.service.usecases import compose as compose_usecase
from backend.service.usecases import diagnose, generate, hello, inpaint, load, map_rig, retarget

log = logging.getLogger("momask.service")

#: Seconds a shutdown waits for a cancelled job to reach its next step before exiting anyway.
SHUTDOWN_GRACE_S = 10.0

UseCase = Callable[[Any, Job, ServiceState], Any]      # returns the result's data (a typed result)
USE_CASES: dict[str, UseCase] = {
    protocol.HELLO: hello.run, protocol.DIAGNOSE: diagnose.run, protocol.LOAD: load.run,
    protocol.GENERATE: generate.run, protocol.INPAINT: inpaint.run,
    protocol.MAP_RIG: map_rig.run, protocol.RETARGET: retarget.run,
    protocol.COMPOSE: compose_usecase.run,
}
#: The request types that need the models, run one at a time on the model lane; the rest go to the
#: light lane.
MODEL_LANE_TYPES = frozenset({protocol.LOAD, protocol.GENERATE, protocol.INPAINT, protocol.COMPOSE})
FINAL_TYPES = (protocol.RESULT, protocol.ERROR)


# --- output ----------------------------------------------------------------------------------------

class Writer:
    """Serialises messages from every thread onto the protocol stream, one whole line at a time.

    :meth:`send` never raises: a final reply that cannot be encoded is replaced by an ``internal``
    error for the same request, so the client is never left waiting; a progress event that cannot be
    encoded is dropped (the job's own final reply still comes).
    """

    def __init__(self, stream: BinaryIO, log_hint: str = "stderr") -> None:
        self._stream = stream
        self._log_hint = log_hint
        self._lock = threading.Lock()
        self.broken = threading.Event()      # the parent stopped reading: time to go

    def send(self, message: dict[str, Any]) -> None:
        if message.get("type") in FINAL_TYPES:
            line = protocol.encode_reply(message, self._log_hint)
        else:
            try:
                line = protocol.encode_message(message)
            except Exception:  # noqa: BLE001 - an unencodable event is a bug, never a dead thread
                log.exception("unencodable %s event dropped (id=%r)", message.get("type"),
                              message.get("id"))
                return
        with self._lock:
            if self.broken.is_set():
                return
            try:
                self._stream.write(line)
                self._stream.flush()
            except (OSError, ValueError):
                self.broken.set()


# --- the service -----------------------------------------------------------------------------------

class Service:
    """Everything between the lines read and the lines written; :func:`serve` drives it."""

    def __init__(self, config: ServiceConfig, writer: Writer,
                 pipeline_loader: Callable[[ServiceConfig], Any] | None = None) -> None:
        self.state = ServiceState(config, pipeline_loader)
        self.writer = writer
        self._lock = threading.Lock()              # guards jobs and their states
        self._jobs: dict[Any, Job] = {}
        self._lanes: dict[str, queue.Queue[Job | None]] = {"model": queue.Queue(), "light": queue.Queue()}
        self._threads = [threading.Thread(target=self._work, args=(name,), name=f"momask-{name}", daemon=True)
                         for name in self._lanes]
        self.stopping = threading.Event()
        self.shutdown_id: Any = None                # the id of the shutdown request, answered last

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    # ---- the reader side --------------------------------------------------------------------------

    def handle_line(self, line: bytes) -> None:
        """Route one input line. Whatever it holds, a bad line gets one error reply (with its id when
        the id was readable) and changes nothing else."""
        if not line.strip():
            return
        request_id = None
        try:
            message = protocol.decode_message(line, kind="request")
            request_id = protocol.readable_id(message)
            request = messages.parse_request(message)
            self.route(Job(request.id, request.TYPE, request, self.writer.send))
        except (protocol.ProtocolError, MoMaskError) as exc:
            if isinstance(exc, protocol.ProtocolError) and exc.request_id is not None:
                request_id = exc.request_id
            log.warning("bad request line (id=%r): %s", request_id, exc.problem)
            self.writer.send(protocol.error_from_exception(request_id, exc))
        except BaseException as exc:  # noqa: BLE001 - nothing a client sends may end the reader
            # (No SystemExit is raised on purpose here: shutdown is the ``stopping`` event.)
            log.exception("request line crashed the reader's parsing (id=%r)", request_id)
            self.writer.send(protocol.error_from_exception(request_id, exc, self.state.config.log_hint))

    def route(self, job: Job) -> None:
        log.info("request %s id=%r", job.type, job.id)
        if job.type == protocol.CANCEL:
            self.writer.send(protocol.result(job.id, self.cancel(job.request.target)))
        elif job.type == protocol.SHUTDOWN:
            self.shutdown_id = job.id
            self.stopping.set()
        else:
            self.submit(job)

    def submit(self, job: Job) -> None:
        lane = "model" if job.type in MODEL_LANE_TYPES else "light"
        with self._lock:
            if job.id in self._jobs:
                raise protocol.ProtocolError(f"A job with id {job.id!r} is already queued or running.",
                                             "Give every request a unique id.", request_id=job.id)
            waiting = sum(1 for j in self._jobs.values() if j.type in MODEL_LANE_TYPES) \
                if lane == "model" else 0
            self._jobs[job.id] = job
        if waiting:
            self.writer.send(protocol.progress(job.id, "queued", 0, 1, waiting=waiting))
        self._lanes[lane].put(job)

    def cancel(self, target: Any) -> messages.CancelResult:
        """Cancel job ``target`` (``null``: every job). A queued job is answered ``cancelled`` at once;
        a running one stops at its next step and answers ``cancelled`` itself."""
        with self._lock:
            jobs = list(self._jobs.values()) if target is None else \
                [j for j in (self._jobs.get(target),) if j is not None]
            states = {}
            for job in jobs:
                states[job.id] = job.state
                job.cancel.set()
                if job.state == "queued":
                    job.state = "cancelled"
                    del self._jobs[job.id]
                    self.writer.send(protocol.error_from_exception(job.id, CancelledError()))
        if target is not None:
            state = states.get(target, "unknown")
            return messages.CancelResult(target=target, was=state, cancelled=state in ("queued", "running"))
        return messages.CancelResult(target=None, jobs=tuple(states), cancelled=bool(states))

    # ---- the worker side --------------------------------------------------------------------------

    def _work(self, lane: str) -> None:
        jobs = self._lanes[lane]
        while True:
            job = jobs.get()
            if job is None:
                return
            try:
                self._run(job)
            except BaseException:  # noqa: BLE001 - _run answers the job itself; the lane lives on
                log.exception("job %r: the lane's own bookkeeping failed", job.id)

    def _run(self, job: Job) -> None:
        with self._lock:
            if job.state == "cancelled":
                return
            job.state = "running"
        started = time.perf_counter()
        try:
            check_cancel(job)
            reply = protocol.result(job.id, USE_CASES[job.type](job.request, job, self.state))
        except CancelledError as exc:
            log.info("job %r cancelled", job.id)
            reply = protocol.error_from_exception(job.id, exc)
        except (MoMaskError, protocol.ProtocolError) as exc:
            log.warning("job %r failed: %s", job.id, exc)
            reply = protocol.error_from_exception(job.id, exc)
        except BaseException as exc:  # noqa: BLE001 - a bug must not kill the lane; the log has it
            log.exception("job %r crashed", job.id)
            reply = protocol.error_from_exception(job.id, exc, self.state.config.log_hint)
        finally:
            with self._lock:
                job.state = "done"
                self._jobs.pop(job.id, None)
        self.writer.send(reply)
        log.info("job %s %r finished in %.3f s", job.type, job.id, time.perf_counter() - started)

    def stop(self, grace: float = SHUTDOWN_GRACE_S) -> bool:
        """Cancel everything and stop the workers; True when they all stopped within ``grace``."""
        self.cancel(None)
        for jobs in self._lanes.values():
            jobs.put(None)
        deadline = time.monotonic() + grace
        for thread in self._threads:
            if thread.is_alive():
                thread.join(max(0.0, deadline - time.monotonic()))
        return not any(t.is_alive() for t in self._threads)


def read_lines(service: Service, stdin: BinaryIO) -> None:
    """The reader: one line at a time until EOF (the parent closed the pipe or died) or shutdown."""
    try:
        while not service.stopping.is_set():
            line = stdin.readline(protocol.MAX_LINE_BYTES + 1)
            if not line:
                log.info("stdin closed")
                break
            if len(line) > protocol.MAX_LINE_BYTES and not line.endswith(b"\n"):
                skip_rest_of_line(stdin)
                service.writer.send(protocol.error(
                    None, protocol.BAD_REQUEST,
                    f"A line longer than {protocol.MAX_LINE_BYTES:,} bytes was skipped.",
                    "Send smaller requests: shorter motions or fewer bones at once."))
                continue
            service.handle_line(line)
    except (OSError, ValueError):
        log.exception("reading stdin failed")
    finally:
        service.stopping.set()


def skip_rest_of_line(stdin: BinaryIO) -> None:
    while True:
        chunk = stdin.readline(1024 * 1024)
        if not chunk or chunk.endswith(b"\n"):
            return
