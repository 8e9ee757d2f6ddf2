"""``python -m backend serve``: the persistent backend process the Blender add-on talks to.

One process, the models loaded once, newline-delimited JSON on stdin/stdout (docs/protocol.md).

Threads:

* the reader (the main thread) reads stdin line by line and never does real work, so a ``cancel``
  is seen while a generation runs; ``cancel`` and ``shutdown`` are answered right there;
* the model worker runs the jobs that need the models (``load``, ``generate``, ``inpaint``) one at a
  time, in arrival order;
* the light worker runs the rest (``hello``, ``diagnose``, ``map_rig``, ``retarget``), so mapping a rig
  or checking the install never waits behind a generation;
* a watchdog exits when the parent process is gone and keeps the log file small.

stdout carries protocol messages only: :func:`main` moves file descriptor 1 onto the log, so a stray
``print`` or a C library's chatter can never corrupt the stream.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import platform
import queue
import random
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

from backend import __version__
from backend.inference.sampling import job_units
from backend.motion import skeleton as sk
from backend.portable import protocol
from backend.portable.errors import CancelledError, InputError, MoMaskError
from backend.portable.logfile import rotate_log

log = logging.getLogger("momask.service")

#: The log is truncated while running when it grows past this size (its rotation at start:
#: backend/portable/logfile.py).
LOG_TRUNCATE_BYTES = 50 * 1024 * 1024
WATCHDOG_PERIOD_S = 1.0
#: Seconds a shutdown waits for a cancelled job to reach its next step before exiting anyway.
SHUTDOWN_GRACE_S = 10.0
#: Test hook: seconds to sleep after every decoding step, so a test can cancel mid-generation.
STEP_DELAY_ENV = "MOMASK_DEBUG_STEP_DELAY"
MAX_SEED = 2**31 - 1        # Blender's IntProperty is 32-bit signed

MODEL_JOBS = (protocol.LOAD, protocol.GENERATE, protocol.INPAINT)
LIGHT_JOBS = (protocol.HELLO, protocol.DIAGNOSE, protocol.MAP_RIG, protocol.RETARGET)


@dataclasses.dataclass
class ServiceConfig:
    weights: Path | None
    dataset: str = "t2m"
    clip: Path | None = None
    device: str = "auto"
    log_path: Path | None = None

    @property
    def fps(self) -> float:
        return sk.FPS[self.dataset]


class ProtocolMismatch(MoMaskError):
    """The add-on and the backend come from releases that speak different protocol versions."""

    code = protocol.PROTOCOL_MISMATCH


# --- output ----------------------------------------------------------------------------------------

class Writer:
    """Serialises messages from every thread onto the protocol stream, one whole line at a time."""

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream
        self._lock = threading.Lock()
        self.broken = threading.Event()      # the parent stopped reading: time to go

    def send(self, message: dict[str, Any]) -> None:
        line = protocol.encode_message(message)
        with self._lock:
            if self.broken.is_set():
                return
            try:
                self._stream.write(line)
                self._stream.flush()
            except (OSError, ValueError):
                self.broken.set()


# --- jobs and progress -----------------------------------------------------------------------------

@dataclasses.dataclass
class Job:
    id: Any
    type: str
    message: dict[str, Any]
    cancel: threading.Event = dataclasses.field(default_factory=threading.Event)
    state: str = "queued"        # queued -> running -> done | cancelled


class JobProgress:
    """The job's progress as one monotone counter over all its work units, so a panel can draw a real
    percentage: [load] + base steps + residual layers + decode + [retarget]. The pipeline reports its
    own (stage, done, total); this adds the units around it and never lets ``done`` go backwards.
    """

    def __init__(self, writer: Writer, job: Job, total: int, step_delay: float = 0.0) -> None:
        self._writer, self._job = writer, job
        self.total, self.done = max(1, total), 0
        self._step_delay = step_delay

    def report(self, stage: str, done: int, **extra: Any) -> None:
        self.done = min(max(self.done, done), self.total)
        self._writer.send(protocol.progress(self._job.id, stage, self.done, self.total, **extra))

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


def check_cancel(job: Job) -> None:
    if job.cancel.is_set():
        raise CancelledError()


# --- request fields --------------------------------------------------------------------------------

def field(message: dict[str, Any], name: str, kind: type | tuple[type, ...], default: Any = None,
          required: bool = False) -> Any:
    """``message[name]`` checked against ``kind`` (ints are accepted where floats are wanted)."""
    value = message.get(name)
    if value is None:
        if required:
            raise InputError(f"The {message.get('type', 'request')!r} request needs {name!r}.",
                             f"Add \"{name}\" to the request (docs/protocol.md).")
        return default
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if float in kinds and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
        names = " or ".join(k.__name__ for k in kinds)
        raise InputError(f"{name!r} must be {names}, got {value!r}.",
                         f"Send {name!r} as {names} (docs/protocol.md).")
    return value


SETTING_FIELDS: dict[str, type] = {
    "steps": int, "cond_scale": float, "res_cond_scale": float, "temperature": float, "topk": float,
    "flow": str, "precision": str,
}


def sampling_settings(message: dict[str, Any], seed: int) -> Any:
    from backend.inference.pipeline import SamplingSettings

    values = {name: field(message, name, kind) for name, kind in SETTING_FIELDS.items()}
    return SamplingSettings(seed=seed, **{k: v for k, v in values.items() if v is not None})


def pick_seed(message: dict[str, Any]) -> int:
    """The request's seed, or a fresh one (reported back so the take can be reproduced)."""
    seed = field(message, "seed", int)
    if seed is None:
        return random.randint(0, MAX_SEED)
    if seed < 0:
        raise InputError(f"The seed must be 0 or more, got {seed}.", "Use a seed between 0 and 2147483647.")
    return seed


def expand_per_prompt(value: Any, name: str, count: int, variations: int) -> list[Any]:
    """A scalar, ``None`` or one value per prompt, repeated for each variation."""
    if not isinstance(value, list):
        return [value] * (count * variations)
    if len(value) != count:
        raise InputError(f"{name!r} has {len(value)} values for {count} prompts.",
                         f"Give one {name!r} per prompt, a single value, or null for automatic.")
    return [v for v in value for _ in range(variations)]


def frames_from_request(message: dict[str, Any], prompt_count: int, variations: int,
                        fps: float) -> list[int | None]:
    """``frames`` (model frames) or ``seconds``; ``null`` lets the length estimator choose."""
    if message.get("frames") is not None and message.get("seconds") is not None:
        raise InputError("The request gives both 'frames' and 'seconds'.", "Send one of the two.")
    if message.get("seconds") is not None:
        seconds = expand_per_prompt(message["seconds"], "seconds", prompt_count, variations)
        out: list[int | None] = []
        for s in seconds:
            if s is not None and (isinstance(s, bool) or not isinstance(s, (int, float)) or s <= 0):
                raise InputError(f"A duration must be a positive number of seconds, got {s!r}.",
                                 "Send seconds > 0, or null for an automatic length.")
            out.append(None if s is None else max(1, int(round(s * fps))))
        return out
    frames = expand_per_prompt(message.get("frames"), "frames", prompt_count, variations)
    for f in frames:
        if f is not None and (isinstance(f, bool) or not isinstance(f, int) or f <= 0):
            raise InputError(f"A length must be a positive whole number of frames, got {f!r}.",
                             "Send frames > 0, or null for an automatic length.")
    return frames


def prompts_from_request(message: dict[str, Any]) -> list[str]:
    from backend.inference.pipeline import check_prompts

    prompts = message.get("prompts")
    if prompts is None and message.get("prompt") is not None:
        prompts = [message["prompt"]]
    if not isinstance(prompts, list) or not prompts:
        raise InputError("The request has no prompt.", "Send \"prompts\": [\"a person walks forward\"].")
    return check_prompts(prompts)


def check_before_loading(settings: Any, frames: list[int | None] = ()) -> None:
    """Refuse bad sampling settings and lengths before the models are loaded (seconds, on a first
    request); the pipeline checks them again, cheaply."""
    from backend.inference.pipeline import frames_to_tokens

    settings.validate()
    for frame_count in frames:
        if frame_count is not None:
            frames_to_tokens(frame_count)


def float_array(value: Any, name: str, trailing: tuple[int, ...]) -> Any:
    """``value`` (a decoded array or nested lists) as float32 numpy with the given trailing shape."""
    import numpy as np

    try:
        array = np.asarray(value, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{name!r} is not a numeric array ({exc}).", "Send it as an encoded array.") from exc
    if array.ndim != len(trailing) + 1 or tuple(array.shape[1:]) != trailing or array.shape[0] < 1:
        want = "(frames, " + ", ".join(map(str, trailing)) + ")"
        raise InputError(f"{name!r} has shape {tuple(array.shape)}, expected {want}.",
                         f"Send {name!r} with shape {want}.")
    if not np.isfinite(array).all():
        raise InputError(f"{name!r} contains NaN or infinite values.", "Check the source animation.")
    return array


# --- retargeting requests ---------------------------------------------------------------------------

@dataclasses.dataclass
class RetargetTarget:
    rig: Any
    mapping: Any
    dst_fps: float
    foot_lock: bool
    in_place: bool

    setup: Any = None        # the rig analysis, done once and reused for every take

    def analysis(self) -> Any:
        """The rig analysis (``solver.analyse_rig``), made on first use."""
        from backend.retarget.solver import analyse_rig

        if self.setup is None:
            self.setup = analyse_rig(self.rig, self.mapping)
        return self.setup

    def run(self, joints: Any, src_fps: float, transform: Any = None, frame_count: int | None = None
            ) -> dict[str, Any]:
        """Retarget ``joints``; ``transform`` and ``frame_count`` as in ``solver.retarget``."""
        from backend.retarget.solver import retarget

        result = retarget(joints, self.rig, self.mapping, src_fps=src_fps, dst_fps=self.dst_fps,
                          foot_lock=self.foot_lock, in_place=self.in_place, setup=self.analysis(),
                          transform=transform, frame_count=frame_count)
        return result.to_dict()


def map_rig(spec: dict[str, Any]) -> tuple[Any, Any]:
    """The ``rig`` (a RigDescription dict) and its automatic mapping with ``overrides`` applied."""
    from backend.retarget.mapping import auto_map
    from backend.retarget.rig import RigDescription

    rig_dict = spec.get("rig")
    if not isinstance(rig_dict, dict):
        raise InputError("The request has no 'rig'.",
                         "Send the armature as a RigDescription dict (the add-on's rig_io does this).")
    overrides = spec.get("overrides") or None
    if overrides is not None and not isinstance(overrides, dict):
        raise InputError("'overrides' must map roles to bone names.", "Send {\"pelvis\": \"Hips\", ...}.")
    rig = RigDescription.from_dict(rig_dict)
    return rig, auto_map(rig, overrides)


def retarget_target(spec: dict[str, Any] | None, default_fps: float,
                    mapped: tuple[Any, Any] | None = None) -> RetargetTarget | None:
    """Parse a ``retarget`` section; fails before any generation if the rig cannot be driven.
    ``mapped``: the rig and its complete mapping, when the caller has them already."""
    if spec is None:
        return None
    if not isinstance(spec, dict):
        raise InputError("'retarget' must be an object with a 'rig'.", "See docs/protocol.md, generate.")
    from backend.retarget.mapping import require_complete

    if mapped is None:
        mapped = map_rig(spec)
        require_complete(mapped[1])
    rig, mapping = mapped
    dst_fps = field(spec, "dst_fps", float, default_fps)
    if not (dst_fps > 0 and math.isfinite(dst_fps)):
        raise InputError(f"dst_fps must be positive, got {dst_fps}.", "Send the scene's frame rate.")
    return RetargetTarget(rig, mapping, dst_fps, bool(field(spec, "foot_lock", bool, True)),
                          bool(field(spec, "in_place", bool, False)))


# --- the service -----------------------------------------------------------------------------------

class Service:
    """Everything between the lines read and the lines written; :func:`serve` drives it."""

    def __init__(self, config: ServiceConfig, writer: Writer,
                 pipeline_loader: Callable[[ServiceConfig], Any] | None = None) -> None:
        self.config = config
        self.writer = writer
        self._load_pipeline = pipeline_loader or load_pipeline
        self.pipeline: Any = None
        self.step_delay = float(os.environ.get(STEP_DELAY_ENV) or 0.0)
        self._lock = threading.Lock()              # guards jobs and their states
        self._jobs: dict[Any, Job] = {}
        self._queues: dict[str, queue.Queue[Job | None]] = {"model": queue.Queue(), "light": queue.Queue()}
        self._threads = [threading.Thread(target=self._work, args=(name,), name=f"momask-{name}", daemon=True)
                         for name in self._queues]
        self.stopping = threading.Event()
        self.shutdown_id: Any = None                # the id of the shutdown request, answered last
        self.handlers: dict[str, Callable[[Job], dict[str, Any]]] = {
            protocol.HELLO: self.hello, protocol.DIAGNOSE: self.diagnose, protocol.LOAD: self.load,
            protocol.GENERATE: self.generate, protocol.INPAINT: self.inpaint,
            protocol.MAP_RIG: self.map_rig, protocol.RETARGET: self.retarget,
        }

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    # ---- the reader side --------------------------------------------------------------------------

    def handle_line(self, line: bytes) -> None:
        """Route one input line; a bad line gets an error reply and changes nothing else."""
        if not line.strip():
            return
        try:
            message = protocol.decode_message(line, kind="request")
        except protocol.ProtocolError as exc:
            log.warning("bad request line: %s", exc.problem)
            self.writer.send(protocol.error_from_exception(exc.request_id, exc))
            return
        job = Job(message["id"], message["type"], message)
        log.info("request %s id=%r", job.type, job.id)
        if job.type == protocol.CANCEL:
            self.writer.send(protocol.result(job.id, self.cancel(message.get("target"))))
        elif job.type == protocol.SHUTDOWN:
            self.shutdown_id = job.id
            self.stopping.set()
        else:
            self.submit(job)

    def submit(self, job: Job) -> None:
        with self._lock:
            if job.id in self._jobs:
                self.writer.send(protocol.error(job.id, protocol.BAD_REQUEST,
                                                f"A job with id {job.id!r} is already queued or running.",
                                                "Give every request a unique id."))
                return
            self._jobs[job.id] = job
            lane = "model" if job.type in MODEL_JOBS else "light"
            waiting = sum(1 for j in self._jobs.values() if j.type in MODEL_JOBS and j is not job) \
                if lane == "model" else 0
        if waiting:
            self.writer.send(protocol.progress(job.id, "queued", 0, 1, waiting=waiting))
        self._queues[lane].put(job)

    def cancel(self, target: Any) -> dict[str, Any]:
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
            return {"target": target, "was": state, "cancelled": state in ("queued", "running")}
        return {"target": None, "jobs": list(states), "cancelled": bool(states)}

    # ---- the worker side --------------------------------------------------------------------------

    def _work(self, lane: str) -> None:
        jobs: queue.Queue = self._queues[lane]
        while True:
            job = jobs.get()
            if job is None:
                return
            with self._lock:
                if job.state == "cancelled":
                    continue
                job.state = "running"
            started = time.perf_counter()
            try:
                check_cancel(job)
                reply = protocol.result(job.id, self.handlers[job.type](job))
            except CancelledError as exc:
                log.info("job %r cancelled", job.id)
                reply = protocol.error_from_exception(job.id, exc)
            except MoMaskError as exc:
                log.warning("job %r failed: %s", job.id, exc)
                reply = protocol.error_from_exception(job.id, exc)
            except Exception as exc:  # noqa: BLE001 - a bug must not kill the service; the log has it
                log.exception("job %r crashed", job.id)
                reply = protocol.error_from_exception(job.id, exc, str(self.config.log_path or "stderr"))
            with self._lock:
                job.state = "done"
                self._jobs.pop(job.id, None)
            try:
                self.writer.send(reply)
            except (TypeError, ValueError) as exc:    # a result that cannot be encoded is a bug
                log.exception("job %r: unsendable result", job.id)
                self.writer.send(protocol.error_from_exception(job.id, exc))
            log.info("job %s %r finished in %.3f s", job.type, job.id, time.perf_counter() - started)

    def stop(self, grace: float = SHUTDOWN_GRACE_S) -> bool:
        """Cancel everything and stop the workers; True when they all stopped within ``grace``."""
        self.cancel(None)
        for jobs in self._queues.values():
            jobs.put(None)
        deadline = time.monotonic() + grace
        for thread in self._threads:
            if thread.is_alive():
                thread.join(max(0.0, deadline - time.monotonic()))
        return not any(t.is_alive() for t in self._threads)

    # ---- models -----------------------------------------------------------------------------------

    def ensure_pipeline(self, progress: JobProgress | None, job: Job) -> Any:
        if self.pipeline is None:
            if progress:
                progress.report("load", progress.done)
            started = time.perf_counter()
            self.pipeline = self._load_pipeline(self.config)
            log.info("models loaded in %.2f s: %s", time.perf_counter() - started, _safe_info(self.pipeline))
            if progress:
                progress.report("load", progress.done + 1)
        check_cancel(job)
        return self.pipeline

    def free_pipeline(self) -> None:
        self.pipeline = None
        import gc

        gc.collect()
        torch = sys.modules.get("torch")
        if torch is not None and torch.cuda.is_available():
            torch.cuda.empty_cache()

    # ---- handlers (each returns the result's ``data``) -------------------------------------------

    def hello(self, job: Job) -> dict[str, Any]:
        from backend import doctor

        client_protocol = job.message.get("protocol")
        if client_protocol is not None and client_protocol != protocol.PROTOCOL_VERSION:
            raise ProtocolMismatch(f"The add-on speaks protocol {client_protocol}, the backend "
                              f"{protocol.PROTOCOL_VERSION} (backend {__version__}).",
                              "Install the add-on and the backend from the same release.")
        weights = doctor.weights_status(self.config.weights, self.config.dataset)
        loaded = self.pipeline is not None
        return {
            "protocol": protocol.PROTOCOL_VERSION,
            "backend_version": __version__,
            "python": platform.python_version(),
            "executable": sys.executable,
            "torch": doctor.torch_version(),
            "device": {"requested": self.config.device,
                       "resolved": (_safe_info(self.pipeline).get("device") if loaded else None)
                       or doctor.resolve_device(self.config.device)},
            "dataset": self.config.dataset,
            "fps": self.config.fps,
            "weights": {"root": str(self.config.weights) if self.config.weights else None,
                        "found": weights["found"], "missing": weights["missing"], "loaded": loaded},
            "clip": doctor.clip_status(self.config.clip, self.config.weights),
            "pid": os.getpid(),
            "log": str(self.config.log_path) if self.config.log_path else None,
        }

    def diagnose(self, job: Job) -> dict[str, Any]:
        from backend import doctor

        return doctor.diagnose(self.config.weights, self.config.clip, self.config.device, self.config.dataset)

    def load(self, job: Job) -> dict[str, Any]:
        """Load the models now (or reload them when weights, dataset, CLIP or device change)."""
        changes: dict[str, Any] = {}
        for name in ("weights", "clip"):
            value = field(job.message, name, str)
            if value is not None and Path(value) != getattr(self.config, name):
                changes[name] = Path(value)
        for name in ("dataset", "device"):
            value = field(job.message, name, str)
            if value is not None and value != getattr(self.config, name):
                changes[name] = value
        if changes.get("dataset", self.config.dataset) not in sk.FPS:
            raise InputError(f"Unknown dataset {changes['dataset']!r}.", "Use 't2m' or 'kit'.")
        if changes:
            self.free_pipeline()
            self.config = dataclasses.replace(self.config, **changes)
        prompts = field(job.message, "prompts", list, [])
        prime = field(job.message, "prime", bool, False)
        if not all(isinstance(p, str) for p in prompts):
            raise InputError("prompts must be a list of strings.", "Send the prompts as text.")
        progress = JobProgress(self.writer, job, total=1)
        started = time.perf_counter()
        was_loaded = self.pipeline is not None
        pipeline = self.ensure_pipeline(progress, job)
        loaded = time.perf_counter()
        # Prompts typed but not yet generated: their CLIP features go into the encoder's cache, so
        # the Generate that follows skips the text tower (the fast flow reads that cache).
        encoder = pipeline.models.text_encoder
        fresh = list(dict.fromkeys(p.strip() for p in prompts if p.strip() and not encoder.cached(p.strip())))
        if fresh:
            encoder.encode(fresh)
        encoded = time.perf_counter()
        primed = 0.0
        if prime and not was_loaded:   # once per fresh load: later jobs run warm anyway
            pipeline.prime()
            primed = time.perf_counter() - encoded
        progress.finish("load")
        return {"loaded": True, "already_loaded": was_loaded, "encoded": len(fresh),
                "info": _safe_info(pipeline),
                "timings": {"load": round(loaded - started, 4), "encode": round(encoded - loaded, 4),
                            "prime": round(primed, 4)}}

    def generate(self, job: Job) -> dict[str, Any]:
        message = job.message
        started = time.perf_counter()
        base_prompts = prompts_from_request(message)
        variations = field(message, "variations", int, 1)
        if variations < 1:
            raise InputError(f"variations must be 1 or more, got {variations}.", "Ask for at least one take.")
        frames = frames_from_request(message, len(base_prompts), variations, self.config.fps)
        prompts = [p for p in base_prompts for _ in range(variations)]
        seed = pick_seed(message)
        settings = sampling_settings(message, seed)
        check_before_loading(settings, frames)
        target = retarget_target(message.get("retarget"), self.config.fps)

        load_units = 0 if self.pipeline is not None else 1
        tail = len(prompts) if target else 0
        total = load_units + job_units(settings.steps) + tail
        progress = JobProgress(self.writer, job, total, self.step_delay)
        progress.report("start", 0)
        pipeline = self.ensure_pipeline(progress, job)
        loaded = time.perf_counter()
        batch = pipeline.text_to_motion(prompts, frames, settings, cancel=job.cancel,
                                        progress=progress.pipeline_callback(load_units, tail))
        generated = time.perf_counter()
        takes = []
        for i, prompt in enumerate(prompts):
            length = int(batch.lengths[i])
            joints = batch.joints[i, :length]
            take: dict[str, Any] = {"prompt": prompt, "seed": seed, "index": i, "frames": length,
                                    "fps": float(batch.fps), "joints": joints}
            if target:
                check_cancel(job)
                take["retarget"] = target.run(joints, float(batch.fps))
                take["mapping"] = target.mapping.to_dict()
                progress.report("retarget", progress.done + 1)
            takes.append(take)
        progress.finish()
        done = time.perf_counter()
        return {"takes": takes, "timings": {
            "load": round(loaded - started, 4) if load_units else 0.0,
            "generate": round(generated - loaded, 4), "retarget": round(done - generated, 4),
            "total": round(done - started, 4)}}

    def inpaint(self, job: Job) -> dict[str, Any]:
        """Regenerate ``[start, end)`` of a source motion given in its own fps (features, joints or a
        rig's posed bone matrices); the answer covers the whole source span."""
        import numpy as np

        message = job.message
        started = time.perf_counter()
        source = message.get("source")
        if not isinstance(source, dict):
            raise InputError("The inpaint request has no 'source'.",
                             "Send \"source\": {\"kind\": \"pose\"|\"joints\"|\"features\", ...}.")
        prompt = prompts_from_request({"prompt": message.get("prompt"), "prompts": message.get("prompts")})[0]
        model_fps = self.config.fps
        src_fps = field(source, "fps", float, model_fps)
        if not (src_fps > 0 and math.isfinite(src_fps)):
            raise InputError(f"The source fps must be positive, got {src_fps}.",
                             "Send the scene's frame rate.")
        kind = field(source, "kind", str, required=True)
        joint_count = sk.NUM_JOINTS[self.config.dataset]
        target: RetargetTarget | None
        placement = None      # the source → rig transform of a pose source retargeted onto its own rig
        if kind == "pose":
            # The pose is read through the source rig's mapping; the answer is retargeted onto the same
            # rig (the add-on writes it back there) unless the retarget section names another one.
            from backend.retarget.inverse import joints_and_transform_from_pose
            from backend.retarget.mapping import require_complete

            source_rig, source_mapping = map_rig(source)
            require_complete(source_mapping)
            retarget_spec = dict(message.get("retarget") or {})
            same_rig = retarget_spec.get("rig") is None
            target = retarget_target(retarget_spec, src_fps,
                                     mapped=(source_rig, source_mapping) if same_rig else None)
            matrices = np.asarray(field(source, "pose_matrices", object, required=True), dtype=np.float32)
            if matrices.ndim != 4 or matrices.shape[2:] != (4, 4) or matrices.shape[0] < 2:
                raise InputError(f"pose_matrices has shape {matrices.shape}, expected (frames, bones, 4, 4).",
                                 "Send every bone's posed matrix for every source frame.")
            assert target is not None      # (a pose source always has a target: its own rig by default)
            source_joints, read_transform = joints_and_transform_from_pose(
                source_rig, source_mapping, matrices, setup=target.analysis() if same_rig else None)
            # Back onto the same rig through the transform that read it, so retargeting the untouched
            # source reproduces the rig's own motion (height, scale) and the range joins it seamlessly.
            if same_rig:
                placement = read_transform
            source_frames = int(matrices.shape[0])
        else:
            target = retarget_target(message.get("retarget"), src_fps)
            if kind == "joints":
                source_joints = float_array(field(source, "data", object, required=True), "source.data",
                                            (joint_count, 3))
                source_frames = int(source_joints.shape[0])
            elif kind == "features":
                if abs(src_fps - model_fps) > 1e-6:
                    raise InputError(f"Feature sources must be at the model's {model_fps:g} fps, "
                                     f"got {src_fps:g}.", "Send joints or a pose; those are resampled.")
                source_joints = None
                features = float_array(field(source, "data", object, required=True), "source.data",
                                       (sk.FEATURE_DIM[self.config.dataset],))
                source_frames = int(features.shape[0])
            else:
                raise InputError(f"Unknown source kind {kind!r}.", "Use 'pose', 'joints' or 'features'.")

        start = field(message, "start", (int, float), required=True)
        end = field(message, "end", (int, float), required=True)
        if not 0 <= start < end <= source_frames:
            raise InputError(f"The range [{start}, {end}) is not inside the source's {source_frames} frames.",
                             "Choose a range with start < end inside the animation.")
        if source_joints is not None:
            check_cancel(job)
            if abs(src_fps - model_fps) > 1e-6:
                from backend.retarget.resample import resample_positions

                source_joints = resample_positions(source_joints, src_fps, model_fps)
            model_source = np.asarray(source_joints, dtype=np.float32)
        else:
            model_source = features
        model_frames = int(model_source.shape[0])
        scale = model_fps / src_fps
        start_m = max(0, min(model_frames - 1, math.floor(start * scale)))
        end_m = max(start_m + 1, min(model_frames, math.ceil(end * scale)))

        seed = pick_seed(message)
        settings = sampling_settings(message, seed)
        if message.get("res_cond_scale") is None:  # the official edit script's residual guidance
            from backend.inference.pipeline import INPAINT_RES_COND_SCALE

            settings.res_cond_scale = INPAINT_RES_COND_SCALE
        check_before_loading(settings)
        load_units = 0 if self.pipeline is not None else 1
        tail = 1 if target else 0
        total = load_units + job_units(settings.steps) + tail
        progress = JobProgress(self.writer, job, total, self.step_delay)
        progress.report("start", 0)
        pipeline = self.ensure_pipeline(progress, job)
        loaded = time.perf_counter()
        # A source longer than the 196 frames the models know is inpainted inside a token-aligned window
        # around the range; the pipeline does that and reports the range in the whole source's frames.
        from backend.inference.pipeline import inpaint_window

        window = inpaint_window(start_m, end_m, model_frames)
        window = (0, model_frames) if window is None else (window, window + sk.MAX_MOTION_FRAMES)
        batch = pipeline.inpaint(model_source, start_m, end_m, prompt, settings, cancel=job.cancel,
                                 regen_residual_everywhere=bool(field(message, "regen_residual_everywhere",
                                                                      bool, False)),
                                 progress=progress.pipeline_callback(load_units, tail))
        generated = time.perf_counter()
        joints = batch.joints[0, :int(batch.lengths[0])]
        assert batch.start is not None and batch.end is not None
        widened = (int(batch.start), int(batch.end))
        length = int(joints.shape[0])
        back = src_fps / model_fps
        take: dict[str, Any] = {
            "prompt": prompt, "seed": seed, "index": 0, "frames": length, "fps": float(batch.fps),
            "joints": joints,
            "range": {"start": widened[0], "end": widened[1], "fps": float(batch.fps)},
            "requested_range": {"start": start_m, "end": end_m, "fps": float(batch.fps)},
            "window": {"start": window[0], "end": window[1], "fps": float(batch.fps)},
            "source_range": {"start": max(0, math.floor(widened[0] * back)),
                             "end": min(source_frames, math.ceil(widened[1] * back)), "fps": src_fps},
            "source_frames": source_frames,
        }
        if target:
            check_cancel(job)
            # The answer equals the source outside the range, so the root must follow the source
            # there: "in place" would move the whole clip (the add-on never sends it for inpaint).
            target.in_place = False
            # Exactly the source's frame count when keyed at its rate, so the whole range gets keys.
            same_rate = abs(target.dst_fps - src_fps) <= 1e-6 * src_fps
            take["retarget"] = target.run(joints, float(batch.fps), transform=placement,
                                          frame_count=source_frames if same_rate else None)
            take["mapping"] = target.mapping.to_dict()
            progress.report("retarget", progress.done + 1)
        progress.finish()
        done = time.perf_counter()
        return {"takes": [take], "timings": {
            "load": round(loaded - started, 4) if load_units else 0.0,
            "generate": round(generated - loaded, 4), "retarget": round(done - generated, 4),
            "total": round(done - started, 4)}}

    def map_rig(self, job: Job) -> dict[str, Any]:
        _rig, mapping = map_rig(job.message)
        return {"mapping": mapping.to_dict(), "report": mapping.report(), "missing": list(mapping.missing),
                "complete": not mapping.missing}

    def retarget(self, job: Job) -> dict[str, Any]:
        message = job.message
        src_fps = field(message, "fps", float, self.config.fps)
        joints = float_array(field(message, "joints", object, required=True), "joints",
                             (sk.NUM_JOINTS[self.config.dataset], 3))
        target = retarget_target(message, src_fps)
        assert target is not None
        started = time.perf_counter()
        out = target.run(joints, src_fps)
        return {"retarget": out, "mapping": target.mapping.to_dict(),
                "timings": {"retarget": round(time.perf_counter() - started, 4)}}


def _safe_info(pipeline: Any) -> dict[str, Any]:
    try:
        return dict(pipeline.info())
    except Exception:  # noqa: BLE001 - info is for logs and hello; never fail a job over it
        return {}


def load_pipeline(config: ServiceConfig) -> Any:
    from backend.inference.pipeline import MoMaskPipeline
    from backend.portable.errors import CheckpointError

    if config.weights is None:
        raise CheckpointError("No weights folder is configured for the backend.",
                              "Set the weights folder in the add-on preferences (or pass --weights).")
    return MoMaskPipeline.load(config.weights, dataset=config.dataset, clip=config.clip, device=config.device)


# --- process lifetime ------------------------------------------------------------------------------

def parent_alive(parent: int) -> bool:
    """Whether the process that started us still runs. POSIX re-parents an orphan, so its parent id
    changes; Windows keeps the dead parent's id, so there the process handle is asked instead."""
    if sys.platform != "win32":
        return os.getppid() == parent
    import ctypes

    kernel32 = ctypes.windll.kernel32
    handle = kernel32.OpenProcess(0x00100000, False, parent)       # SYNCHRONIZE
    if not handle:
        return False
    try:
        return kernel32.WaitForSingleObject(handle, 0) != 0        # 0 = WAIT_OBJECT_0: it has exited
    finally:
        kernel32.CloseHandle(handle)


def _watch_parent(service: Service, parent: int, log_fd: int | None) -> None:
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
                           Path(log_path) if log_path else None)
    stdin = stdin if stdin is not None else sys.stdin.buffer
    writer = Writer(stdout if stdout is not None else sys.stdout.buffer)
    service = Service(config, writer, pipeline_loader)
    service.start()
    threading.Thread(target=_watch_parent, args=(service, os.getppid(), log_fd), name="momask-watchdog",
                     daemon=True).start()
    log.info("serving: pid %d, backend %s, protocol %d, weights %s, dataset %s, device %s",
             os.getpid(), __version__, protocol.PROTOCOL_VERSION, config.weights, dataset, device)
    reader = threading.Thread(target=_read_lines, args=(service, stdin), name="momask-reader", daemon=True)
    reader.start()
    service.stopping.wait()
    shutdown_id = service.shutdown_id
    clean = service.stop()
    if shutdown_id is not None:
        writer.send(protocol.result(shutdown_id, {"bye": True, "clean": clean}))
    log.info("stopped (%s)", "shutdown request" if shutdown_id is not None else "input closed")
    if not clean:
        log.warning("a job did not stop within %.0f s; exiting anyway", SHUTDOWN_GRACE_S)
    return 0


def _read_lines(service: Service, stdin: BinaryIO) -> None:
    """The reader: one line at a time until EOF (the parent closed the pipe or died) or shutdown."""
    try:
        while not service.stopping.is_set():
            line = stdin.readline()
            if not line:
                log.info("stdin closed")
                break
            service.handle_line(line)
    except (OSError, ValueError):
        log.exception("reading stdin failed")
    finally:
        service.stopping.set()


# --- entry point -----------------------------------------------------------------------------------

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
