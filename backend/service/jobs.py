"""One request being worked on (:class:`Job`) and its progress as one monotone counter."""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable
from typing import Any

from backend.portable import protocol
from backend.portable.errors import CancelledError


@dataclasses.dataclass
class Job:
    id: Any
    type: str
    request: Any                                  # the parsed request (messages.parse_request)
    send: Callable[[dict[str, Any]], None]        # the service's writer, for progress events
    cancel: threading.Event = dataclasses.field(default_factory=threading.Event)
    state: str = "queued"        # queued -> running -> done | cancelled


def check_cancel(job: Job) -> None:
    if job.cancel.is_set():
        raise CancelledError()


class JobProgress:
    """The job's progress as one monotone counter over all its work units, so a panel can draw a real
    percentage: [load] + base steps + residual layers + decode + [retarget] (docs/protocol.md,
    Progress semantics). The pipeline reports its own (stage, done, total); this adds the units around
    it and never lets ``done`` go backwards.
    """

    def __init__(self, job: Job, total: int, step_delay: float = 0.0) -> None:
        self._job = job
        self.total, self.done = max(1, total), 0
        self._step_delay = step_delay

    def report(self, stage: str, done: int, **extra: Any) -> None:
        self.done = min(max(self.done, done), self.total)
        self._job.send(protocol.progress(self._job.id, stage, self.done, self.total, **extra))

    def pipeline_callback(self, offset: int, tail: int) -> Callable[[str, int, int], None]:
        """A pipeline ``progress(stage, done, total)`` placed after ``offset`` units, ``tail`` before
        the end; the job's total follows the pipeline's own count."""
        def callback(stage: str, done: int, total: int) -> None:
            self.total = max(self.total, offset + int(total) + tail, self.done)
            self.report(stage, offset + int(done))
            if self._step_delay:
                time.sleep(self._step_delay)
            if self._job.cancel.is_set():       # pipelines check too; this makes it step-exact
                raise CancelledError()
        return callback

    def finish(self, stage: str = "done") -> None:
        if self.done < self.total:
            self.report(stage, self.total)
