"""Install Weights from the add-on's preferences: the backend's installer run on a worker thread.

The installer is ``backend/portable/weights_installer.py`` (stdlib only, loaded by path): official
sources, checksums, resume, each piece verified in a staging folder and renamed into place, so a
failed or cancelled install leaves the weights folder as it was and nothing half-installed is ever
loaded. This module gives it a thread, a cancel flag (polled between chunks; the partial download is
kept and the next install resumes it), the progress the preferences draw, and messages that name the
problem and the fix for what the installer cannot know (a folder it may not write, a full disk,
Blender's online access off). No bpy: the operators pass ``bpy.app.online_access`` in and the
preferences poll :func:`shown` from the UI's timer (``remote/jobs.py::follow``).
"""

from __future__ import annotations

import dataclasses
import errno
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ..remote import client

installer = client.load_backend_module("weights_installer")

#: The dataset the add-on generates with (the HumanML3D models).
DATASET = "t2m"

OFFLINE_PROBLEM = "Blender's online access is off, so MoMask does not download the weights."
OFFLINE_FIX = ("Enable Allow Online Access in Preferences > System, or use From File... with the official "
               "humanml3d_models.zip and ViT-B-32.pt downloaded on any machine.")
#: About the most the official HumanML3D models and CLIP need on disk while installing (the zip and
#: its extracted copy side by side, then CLIP): said when the disk is full.
SPACE_NEEDED_MB = 800


@dataclasses.dataclass
class WeightsInstall:
    """One install (a download, or files the user picked), as the preferences show it. The worker
    thread writes ``step``, ``log`` and, last, ``state``; the main thread reads them."""

    root: Path
    source: str  # "download" or "files"
    state: str = "running"  # running, done, failed, cancelled
    step: Any = None  # the installer's latest Step
    installed: list[Path] = dataclasses.field(default_factory=list)
    log: list[str] = dataclasses.field(default_factory=list)
    error: tuple[str, str] | None = None  # (problem, fix)
    started: float = dataclasses.field(default_factory=time.monotonic)
    seconds: float = 0.0
    cancel_event: threading.Event = dataclasses.field(default_factory=threading.Event)
    furthest: float = 0.0  # the largest fraction shown so far

    @property
    def running(self) -> bool:
        return self.state == "running"

    @property
    def fraction(self) -> float:
        """How far the whole install is, 0..1: the files done, plus the bytes of the one downloading (a
        downloaded file counts whole while it is verified). Never goes back, not even when a server
        that ignores Range makes a resumed file start over."""
        step = self.step
        if self.state == "done":
            return 1.0
        if step is None or not step.files_total:
            return self.furthest
        part = 0.0
        if step.phase == "download" and step.total:
            part = step.done / step.total
        elif step.phase == "verify" and self.source == "download":
            part = 1.0
        self.furthest = max(self.furthest, min(1.0, (step.files_done + part) / step.files_total))
        return self.furthest

    @property
    def text(self) -> str:
        """One line for the preferences: what it is doing, with bytes and file count."""
        step = self.step
        if self.state == "done":
            what = ", ".join(p.name for p in self.installed) or "nothing new (already installed and verified)"
            return f"Installed {what} in {self.seconds:.1f} s."
        if self.state == "cancelled":
            return "Cancelled: nothing was half-installed; Install resumes the partial download."
        if self.state == "failed":
            return "The weights were NOT installed."
        if self.cancel_event.is_set():
            return "Cancelling..."
        if step is None:
            return "Checking what is installed..."
        count = f"(file {step.files_done + 1} of {step.files_total})"
        if step.phase == "download":
            total = f" / {step.total / 1e6:.1f} MB" if step.total else ""
            return f"Downloading {step.filename}: {step.done / 1e6:.1f}{total} MB {count}"
        if step.phase == "verify":
            return f"Verifying and installing {step.filename} {count}"
        return f"Installed {step.filename} ({step.files_done} of {step.files_total})"

    def cancel(self) -> None:
        """Stop at the next chunk (or member, or retry pause)."""
        self.cancel_event.set()

    def shown(self) -> tuple | None:
        """What the preferences show of it (for the timer's redraws); None once it is over."""
        if not self.running:
            return None
        step = self.step
        return (self.state, self.cancel_event.is_set(), None if step is None else
                (step.filename, step.phase, step.files_done, round(self.fraction, 3)))


#: The install running now, or the last one (its outcome stays shown until the next starts).
CURRENT: WeightsInstall | None = None
_lock = threading.Lock()


def start_download(root: Path | str, online_access: bool, clip: bool = True) -> WeightsInstall:
    """Download and install the HumanML3D models (and CLIP) into ``root`` on a worker thread.

    Refused, before any connection is opened, when Blender's online access is off
    (``bpy.app.online_access``) or another install runs; raises :class:`client.BackendError`.
    """
    if not online_access:
        raise _refused(Path(root), "download", client.BackendError("offline", OFFLINE_PROBLEM, OFFLINE_FIX))
    return _start(Path(root), "download", lambda job: installer.install(
        job.root, (DATASET,), clip=clip, archives=installer.ARCHIVES, clip_file=installer.CLIP_VIT_B32,
        progress=None, log=job.log.append, on_step=_recorder(job), cancelled=job.cancel_event.is_set))


def start_from_files(root: Path | str, files: Sequence[Path | str]) -> WeightsInstall:
    """Install files the user already has (the official zip, ``ViT-B-32.pt``) into ``root``; no network."""
    paths = [Path(f) for f in files]
    if not paths:
        raise _refused(Path(root), "files", client.BackendError(
            "bad_input", "No file was chosen.",
            "Pick humanml3d_models.zip or ViT-B-32.pt in the file browser."))
    return _start(Path(root), "files", lambda job: installer.install_from_files(
        job.root, paths, archives=installer.ARCHIVES, clip_file=installer.CLIP_VIT_B32, log=job.log.append,
        on_step=_recorder(job), cancelled=job.cancel_event.is_set))


def cancel() -> bool:
    """Ask the running install to stop; False when none runs."""
    job = CURRENT
    if job is None or not job.running:
        return False
    job.cancel()
    return True


def shown() -> tuple | None:
    """What the preferences show of the running install; None when none runs (for ``jobs.follow``)."""
    job = CURRENT
    return None if job is None else job.shown()


def missing(root: Path | str, clip_file: Path | str | None = None) -> dict[str, list[str]]:
    """The files the backend needs that ``root`` lacks, by piece (the installer's own check, which the
    backend's ``doctor`` agrees with): ``{"MoMask HumanML3D models": [...], "CLIP ViT-B/32": [...]}``.
    A CLIP file set in the preferences counts for CLIP when it exists."""
    root = Path(root)
    models = installer.missing_files(root, DATASET, clip=False)
    clip = [] if clip_file and Path(clip_file).is_file() else \
        [m for m in installer.missing_files(root, DATASET) if m not in models]
    return {installer.ARCHIVES[DATASET].description: models, installer.CLIP_VIT_B32.description: clip}


def _recorder(job: WeightsInstall) -> Callable[[Any], None]:
    def record(step: Any) -> None:
        job.step = step

    return record


def _start(root: Path, source: str, work: Callable[[WeightsInstall], list[Path]]) -> WeightsInstall:
    global CURRENT
    with _lock:
        if CURRENT is not None and CURRENT.running:
            raise client.BackendError("busy", "The weights are already being installed.",
                                      "Wait for that install to finish, or press Cancel.")
        try:
            check_writable(root)
        except client.BackendError as err:
            raise _refused(root, source, err) from None
        job = CURRENT = WeightsInstall(root, source)
    threading.Thread(target=_run, args=(job, work), name="momask-weights", daemon=True).start()
    return job


def _refused(root: Path, source: str, err: client.BackendError) -> client.BackendError:
    """Record a refusal as the last install, so that the preferences show why and the fix; returns ``err``
    for raising (the operator reports it too)."""
    global CURRENT
    if CURRENT is None or not CURRENT.running:
        CURRENT = WeightsInstall(root, source, state="failed", error=(err.problem, err.fix))
    return err


def _run(job: WeightsInstall, work: Callable[[WeightsInstall], list[Path]]) -> None:
    """The worker thread: never touches bpy; sets ``state`` last, after everything else."""
    try:
        job.installed = list(work(job))
        state = "done"
    except installer.Cancelled:
        state = "cancelled"
    except OSError as err:
        job.error = describe_os_error(err, job.root)
        state = "failed"
    except Exception as err:  # noqa: BLE001 (every failure becomes a message in the preferences)
        _, problem, fix = client.describe_error(err)
        job.error = (problem, fix)
        state = "failed"
    job.seconds = time.monotonic() - job.started
    for line in job.log:
        print(f"MoMask weights: {line.strip()}")
    if job.error:
        print(f"MoMask weights: NOT installed. {job.error[0]} Fix: {job.error[1]}")
    job.state = state


def check_writable(root: Path, describe: Callable[[OSError, Path], tuple[str, str]] | None = None) -> None:
    """Fail at once, on the main thread, for a folder an install could never write (a quick probe);
    ``describe`` gives the (problem, fix) of the failure (default: the weights folder's)."""
    probe = root / f".momask-write-test-{uuid.uuid4().hex[:8]}"
    try:
        root.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as err:
        problem, fix = (describe or describe_os_error)(err, root)
        raise client.BackendError("not_writable", problem, fix) from err


def describe_os_error(err: OSError, root: Path) -> tuple[str, str]:
    """(problem, fix) for a file-system failure while installing into ``root``."""
    if err.errno in (errno.EACCES, errno.EPERM, errno.EROFS) or isinstance(err, PermissionError):
        return (f"MoMask cannot write to the weights folder {root} ({err.strerror or err}).",
                "Choose a Weights Folder you can write to in the add-on preferences (or clear the field to "
                "use the add-on's own folder), then press Install Weights again.")
    if err.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
        return (f"The disk holding {root} is full ({err.strerror or err}).",
                f"Free about {SPACE_NEEDED_MB} MB there, or choose a Weights Folder on another disk, then "
                "press Install Weights again (a partial download resumes).")
    return (f"Installing the weights into {root} failed: {err}.",
            "Check that the folder and its disk are usable, then press Install Weights again (a partial "
            "download resumes).")
