"""Install Backend, Repair and Remove from the add-on's preferences: the environment builder
(``install/environment.py``) run on a worker thread (docs/install.md, "Install Backend").

The same shape as ``install/weights.py``: one job at a time, its progress written by the worker and
read by the preferences through :func:`shown` (polled by the UI's timer, ``remote/jobs.py::follow``),
a cancel that kills pip, and every failure turned into (problem, fix). No bpy: the operators pass in
``bpy.app.online_access``, the folders and the preferences. Refusals (online access off, another job
running, a folder that cannot be written) happen on the calling thread before anything starts: no
process, no connection. The NVIDIA driver query (``nvidia-smi``, up to a second) runs once on a
thread of its own; the preferences show the build choice from its cached answer.
"""

from __future__ import annotations

import dataclasses
import os
import platform
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from ..remote import client
from . import environment, torch_build
from .weights import check_writable

OFFLINE_PROBLEM = "Blender's online access is off, so MoMask does not download the backend's packages."
OFFLINE_FIX = ("Enable Allow Online Access in Preferences > System > Network, then press Install Backend; "
               "or set Backend Python to an environment you made yourself (docs/install.md), or use a "
               "Remote Backend.")


@dataclasses.dataclass
class BackendEnvJob:
    """One install, repair or removal, as the preferences show it. The worker writes ``progress``,
    ``choice`` and, last, ``state``; the main thread reads them."""

    action: str  # "install", "repair", "remove"
    env_dir: Path
    log_path: Path
    state: str = "running"  # running, done, failed, cancelled
    progress: environment.Progress = dataclasses.field(default_factory=environment.Progress)
    choice: torch_build.Choice | None = None
    repaired: list[str] = dataclasses.field(default_factory=list)
    error: tuple[str, str] | None = None
    started: float = dataclasses.field(default_factory=time.monotonic)
    seconds: float = 0.0
    builder: environment.Builder | None = None
    cancel_event: threading.Event = dataclasses.field(default_factory=threading.Event)

    @property
    def running(self) -> bool:
        return self.state == "running"

    @property
    def fraction(self) -> float:
        return 1.0 if self.state == "done" else self.progress.fraction

    @property
    def text(self) -> str:
        if self.state == "done":
            if self.action == "remove":
                return f"Removed the backend environment ({self.seconds:.1f} s)."
            if self.action == "repair":
                fixed = ", ".join(self.repaired) or "nothing (every package checked out)"
                return f"Repaired: reinstalled {fixed} in {self.seconds:.1f} s."
            label = self.choice.build.label if self.choice and self.choice.build else "?"
            return f"Installed the backend environment (torch {label}) in {self.seconds:.0f} s."
        if self.state == "cancelled":
            return "Cancelled: nothing was installed (the environment in use, if any, is unchanged)."
        if self.state == "failed":
            return {"install": "The backend was NOT installed.", "repair": "The backend was NOT repaired.",
                    "remove": "The backend environment was NOT removed."}[self.action]
        if self.cancel_event.is_set():
            return "Cancelling..."
        if self.action == "remove":
            return "Removing the backend environment..."
        return self.progress.text

    def cancel(self) -> None:
        self.cancel_event.set()
        builder = self.builder
        if builder is not None:
            builder.cancel()

    def shown(self) -> tuple | None:
        if not self.running:
            return None
        p = self.progress
        return (self.cancel_event.is_set(), p.stage_index, p.packages_done, p.packages_seen,
                round(p.fraction, 3), p.filename, p.installing)


CURRENT: BackendEnvJob | None = None
_lock = threading.Lock()

#: The NVIDIA driver ``nvidia-smi`` reported: unknown (not asked yet), or its answer (None: no driver).
_UNKNOWN = object()
_driver: object = _UNKNOWN
_driver_thread: threading.Thread | None = None


def driver() -> object:
    """The cached NVIDIA driver version (a string, or None without a driver); ``_UNKNOWN`` until the
    query, started here on a thread of its own the first time, has answered."""
    global _driver_thread
    if _driver is _UNKNOWN and _driver_thread is None:
        _driver_thread = threading.Thread(target=_ask_driver, name="momask-nvidia-smi", daemon=True)
        _driver_thread.start()
    return _driver


def _ask_driver() -> None:
    global _driver
    _driver = torch_build.nvidia_driver()


def machine_choice(override: str, python: tuple[int, int] | None = None) -> torch_build.Choice | None:
    """The build Install Backend would install on this computer now; None while the driver query
    runs (the preferences then say so)."""
    found = driver()
    if found is _UNKNOWN:
        return None
    return torch_build.choose(platform.system(), platform.machine(), found,  # type: ignore[arg-type]
                              python or sys.version_info[:2], override)


#: How the worker sees the add-on's backend: the client (None: none made yet) and whether a model job
#: (a generation) is running on it. The operators pass ``remote/jobs.py``'s; the default: none.
InUse = Callable[[], "client.BackendClient | None"]
Busy = Callable[[], bool]


def uses_env(backend: client.BackendClient | None, env_dir: Path) -> bool:
    """``backend`` is a local backend process running from the environment in ``env_dir`` (its python
    is inside that folder; not resolved: a venv's python links to the Python it was made from)."""
    if backend is None or not backend.running or backend.remote:
        return False
    python = Path(os.path.abspath(backend.config.python))
    return Path(os.path.abspath(env_dir)) in python.parents


def stop_backend_hook(job: BackendEnvJob, in_use: InUse, busy: Busy,
                      interval: float = 0.2) -> Callable[[], None]:
    """What runs on the worker just before an environment is replaced or removed: wait for a
    generation started meanwhile to finish (Cancel still works), then stop the backend if it runs
    from that environment; the next request starts it from the new one."""
    def before_swap() -> None:
        while busy():
            job.progress.stage = "Waiting for the motion being made to finish"
            if job.cancel_event.is_set():
                raise environment.Cancelled()
            time.sleep(interval)
        backend = in_use()
        if uses_env(backend, job.env_dir):
            backend.stop()  # type: ignore[union-attr]

    return before_swap


def blender_python() -> str:
    """The interpreter Blender runs (``sys.executable``; as the bpy module: the venv's python)."""
    return sys.executable


def start_install(env_dir: Path, root: Path, log_path: Path, online_access: bool, base_python: str = "",
                  override: str = "auto", cache_dir: Path | None = None, in_use: InUse = lambda: None,
                  busy: Busy = lambda: False) -> BackendEnvJob:
    """Build the backend's environment in ``env_dir`` on a worker thread, from ``base_python``
    (empty: Blender's own) with the pins shipped under ``root``. Refused before any connection or
    process when online access is off, another job runs, or the folder cannot be written."""
    if not online_access:
        raise _refused(env_dir, log_path, "install",
                       client.BackendError("offline", OFFLINE_PROBLEM, OFFLINE_FIX))
    try:
        pins = environment.read_pins(root)
    except client.BackendError as err:
        raise _refused(env_dir, log_path, "install", err) from None

    def work(job: BackendEnvJob) -> None:
        python = base_python or blender_python()
        version, _ = environment.probe_python(python)
        found = _driver if _driver is not _UNKNOWN else torch_build.nvidia_driver()
        job.choice = torch_build.choose(platform.system(), platform.machine(), found,  # type: ignore[arg-type]
                                        version[:2], override)
        if job.choice.build is None:
            raise client.BackendError("not_installed", job.choice.reason, job.choice.fix)
        plan = environment.Plan(env_dir, python, job.choice.build, pins, log_path, cache_dir)
        _run_builder(job, plan, "install", stop_backend_hook(job, in_use, busy))

    return _start("install", env_dir, log_path, work)


def start_repair(env_dir: Path, root: Path, log_path: Path, online_access: bool,
                 cache_dir: Path | None = None, in_use: InUse = lambda: None,
                 busy: Busy = lambda: False) -> BackendEnvJob:
    """Check the installed environment and reinstall what fails, on a worker thread."""
    if not online_access:
        raise _refused(env_dir, log_path, "repair", client.BackendError(
            "offline", OFFLINE_PROBLEM.replace("download", "repair"), OFFLINE_FIX))
    marker = environment.read_marker(env_dir)
    if marker is None:
        raise _refused(env_dir, log_path, "repair", client.BackendError(
            "not_installed", f"There is no backend environment in {env_dir} to repair.",
            "Press Install Backend."))
    gone = environment.gone_base_python(env_dir)
    if gone is not None:  # (its python cannot run: there is nothing to repair it with)
        raise _refused(env_dir, log_path, "repair", client.BackendError(
            "not_installed", f"The backend environment in {env_dir} was made from a Python that is gone "
            f"({gone}).", "Press Install Backend to make it again."))
    try:
        pins = environment.read_pins(root)
    except client.BackendError as err:
        raise _refused(env_dir, log_path, "repair", err) from None
    build = torch_build.TorchBuild(str(marker.get("build", "cpu")), str(marker.get("label", "?")),
                                   str(marker.get("index", "")), str(marker.get("device", "cpu")))

    def work(job: BackendEnvJob) -> None:
        job.choice = torch_build.Choice(build, "as installed")
        pypi, _ = environment.index_urls(build)
        plan = environment.Plan(env_dir, str(marker.get("base_python", "")), build, pins, log_path, cache_dir,
                                pypi_index=pypi, torch_index=build.index_url or pypi)
        _run_builder(job, plan, "repair", stop_backend_hook(job, in_use, busy))

    return _start("repair", env_dir, log_path, work)


def start_remove(env_dir: Path, log_path: Path, also: Sequence[Path] = (), in_use: InUse = lambda: None,
                 busy: Busy = lambda: False) -> BackendEnvJob:
    """Remove the environment (renamed aside, then deleted) and the folders ``also`` (pip's download
    cache), on a worker thread; a backend running from it is stopped first."""
    def work(job: BackendEnvJob) -> None:
        stop_backend_hook(job, in_use, busy)()
        environment.remove(env_dir)
        for folder in also:
            if folder.exists():
                environment.remove_tree(folder)

    return _start("remove", env_dir, log_path, work)


def cancel() -> bool:
    job = CURRENT
    if job is None or not job.running:
        return False
    job.cancel()
    return True


def shown() -> tuple | None:
    job = CURRENT
    return None if job is None else job.shown()


def _run_builder(job: BackendEnvJob, plan: environment.Plan, action: str,
                 before_swap: Callable[[], None] = lambda: None) -> None:
    builder = environment.Builder(plan, on_progress=lambda p: None, before_swap=before_swap)
    job.progress = builder.progress
    job.builder = builder
    if job.cancel_event.is_set():
        builder.cancel()
    if action == "install":
        builder.install()
    else:
        job.repaired = builder.repair()


def _start(action: str, env_dir: Path, log_path: Path,
           work: Callable[[BackendEnvJob], None]) -> BackendEnvJob:
    global CURRENT
    with _lock:
        if CURRENT is not None and CURRENT.running:
            raise client.BackendError("busy", f"The backend environment is being {_doing(CURRENT.action)}.",
                                      "Wait for it to finish, or press Cancel.")
        try:
            check_writable(env_dir.parent, _describe)
        except client.BackendError as err:
            raise _refused(env_dir, log_path, action, err) from None
        job = CURRENT = BackendEnvJob(action, env_dir, log_path)
    threading.Thread(target=_run, args=(job, work), name=f"momask-backend-{action}", daemon=True).start()
    return job


def _doing(action: str) -> str:
    return {"install": "installed", "repair": "repaired", "remove": "removed"}[action]


def _refused(env_dir: Path, log_path: Path, action: str, err: client.BackendError) -> client.BackendError:
    global CURRENT
    if CURRENT is None or not CURRENT.running:
        CURRENT = BackendEnvJob(action, env_dir, log_path, state="failed", error=(err.problem, err.fix))
    return err


def _run(job: BackendEnvJob, work: Callable[[BackendEnvJob], None]) -> None:
    """The worker thread: never touches bpy; sets ``state`` last."""
    try:
        work(job)
        state = "done"
    except environment.Cancelled:
        state = "cancelled"
    except client.BackendError as err:
        job.error = (err.problem, err.fix)
        state = "failed"
    except Exception as err:  # noqa: BLE001 (every failure becomes a message in the preferences)
        _, problem, fix = client.describe_error(err)
        job.error = (problem, fix or f"See the install log ({job.log_path}).")
        state = "failed"
    job.seconds = time.monotonic() - job.started
    if job.error:
        print(f"MoMask backend {job.action}: failed. {job.error[0]} Fix: {job.error[1]}")
    job.state = state


def _describe(err: OSError, folder: Path) -> tuple[str, str]:
    refusal = environment.os_error(err, folder)
    return refusal.problem, refusal.fix
