"""The add-on's side of the backend process: start it, talk NDJSON to it, notice when it dies.

``BackendClient`` starts ``<backend python> -m backend serve ...`` on demand with its working folder
set to the folder that contains ``backend/`` (the extension's own folder when installed, the
repository root in development). Requests go out on stdin under a lock; a reader thread parses the
replies on stdout and routes them, by request id, into one queue per call. stderr and the backend's
logging go to a log file in the add-on's user directory.

If the process exits or the pipe breaks, every call still waiting gets a ``backend_crashed`` error
carrying the last lines of the log, and the next request starts a fresh process. The backend exits by
itself when its stdin closes, so Blender quitting (even by a crash) leaves no orphan.

The reader trusts nothing it reads (docs/protocol.md, "Client"). A line that breaks the framing (not
UTF-8, not JSON, not a protocol message, longer than :data:`MAX_LINE_BYTES`, an error about a request
the backend could not read) means a reply may have been lost, and a lost reply would leave its call
waiting for ever: the process is killed and its calls fail with ``backend_bad_reply``. Noise that
loses nothing is noted and ignored: log lines, blank lines, a reply for a call that is no longer
waiting (a second final reply, a late answer to a cancelled call), text without a ``{`` printed
before the hello answer. Progress numbers are clamped into 0..1 and never go back, and a flood of
progress events is coalesced to the newest, so memory stays bounded whatever the backend prints.

A **remote backend** is a command the user gives instead of a local interpreter (``ssh gpu-box ...
python -m backend serve --weights ...``; :attr:`BackendConfig.remote`): it is split into arguments
(:func:`split_command`, POSIX or Windows rules, never a shell), and the protocol runs over its stdio
unchanged. Its stderr (ssh's messages, and the remote backend's log when it has no ``--log``) goes to
the same log file, whose tail the errors quote. Its failures get their own messages: a program that
is not found, a command that exits before the hello (host unreachable, login refused), text on stdout
that is not the protocol (a remote shell's greeting), and a connection lost mid-job.

No bpy here: this module is plain stdlib (plus the protocol file, loaded by path), so it works the
same from a panel, a worker thread or a headless script. Never import torch or the backend package.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import importlib.util
import io
import itertools
import math
import os
import queue
import shlex
import subprocess
import sys
import threading
import time
import traceback
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

#: What a caller sees when it stops waiting: ``code`` as in docs/protocol.md, plus the add-on's own.
CRASHED = "backend_crashed"
NOT_STARTED = "backend_not_started"
TIMEOUT = "backend_timeout"
BAD_REPLY = "backend_bad_reply"  # the backend broke the protocol: the process is stopped

CLIENT_NAME = "momask_blender"
HELLO_TIMEOUT_S = 180.0  # importing torch on a busy laptop can take a while
SHUTDOWN_TIMEOUT_S = 5.0
LOG_TAIL_LINES = 12
#: The longest reply line read. The biggest real ones (many takes of a long in-between on a big rig)
#: are tens of MB; a backend gone wrong that prints without a newline must not fill Blender's memory.
MAX_LINE_BYTES = 256 << 20
#: Lines of text tolerated before the hello answer (a sitecustomize or a library printing on import,
#: before the backend points its stdout at the log); past that the backend is not speaking the protocol.
MAX_STARTUP_LINES = 200
#: How much of one ignored line is kept for the error message and the console.
NOTE_CHARS = 300
#: How many notes per process are also printed to Blender's console (a flood must not flood it).
PRINTED_NOTES = 10
#: How long ``stop()`` waits for a start in progress to finish spawning before it stops without it.
STOP_LOCK_WAIT_S = 2.0


class BackendError(Exception):
    """A failed request, shaped like the backend's MoMaskError: ``code``, ``problem`` and ``fix``."""

    def __init__(self, code: str, problem: str, fix: str = "") -> None:
        self.code = code
        self.problem = problem.strip()
        self.fix = fix.strip()
        super().__init__(self.problem + (f" Fix: {self.fix}" if self.fix else ""))


# --- where things are -------------------------------------------------------------------------------


def backend_root(package_dir: Path | None = None) -> Path | None:
    """The folder that contains ``backend/``: the extension itself when the backend is bundled in
    it, else the repository the add-on is run from (development). None when neither has it."""
    package_dir = Path(package_dir or Path(__file__).resolve().parents[1])
    for root in (package_dir, package_dir.parent):
        backend = root / "backend"
        if (backend / "__main__.py").is_file() and (backend / "portable" / "protocol.py").is_file():
            return root
    return None


#: The backend's stdlib-only modules the add-on shares (loaded by file path, never as ``backend``), each
#: with the shared modules it imports: those are loaded first, under the same ``_momask_blender_backend_``
#: names, where the module's own fallback import finds them (backend/portable/messages.py).
SHARED_BACKEND_MODULES: dict[str, tuple[str, ...]] = {
    "protocol": (), "messages": ("protocol",), "errors": (), "logfile": (), "quaternion": (),
    "weights_installer": ("errors",),
}


def load_backend_module(name: str, root: Path | None = None) -> types.ModuleType:
    """``backend/portable/<name>.py`` loaded by file path, for the stdlib-only modules the add-on shares with
    the backend (:data:`SHARED_BACKEND_MODULES`). Importing the ``backend`` package itself would be
    wrong twice over: an installed extension cannot import it by that name, and it must never pull
    in torch inside Blender."""
    if name not in SHARED_BACKEND_MODULES:
        raise ValueError(f"backend/portable/{name}.py is not shared with the add-on")
    module_name = f"_momask_blender_backend_{name}"
    cached = sys.modules.get(module_name)
    if cached is not None:
        return cached
    root = root or backend_root()
    if root is None:
        raise BackendError(
            NOT_STARTED,
            "The MoMask backend is not next to the add-on (no backend/ folder).",
            "Reinstall the MoMask extension from its release zip, which bundles the backend.",
        )
    for dependency in SHARED_BACKEND_MODULES[name]:
        load_backend_module(dependency, root)
    spec = importlib.util.spec_from_file_location(module_name, root / "backend" / "portable" / f"{name}.py")
    assert spec is not None and spec.loader is not None  # always, for a path ending in .py
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[module_name]
        raise
    return module


def default_backend_python(root: Path | None, user_dir: Path | None = None,
                           installed: Path | None = None) -> str:
    """The interpreter to run the backend with when the preferences leave it empty.

    ``$MOMASK_BACKEND_PYTHON`` first (an explicit choice: tests and scripts pick the interpreter with
    it), then ``installed``, the environment Install Backend finished (``install/environment.py``:
    only a complete one is passed), then the environment ``python build.py setup`` makes (``.venv``
    next to ``backend/``), then one in the user directory. Blender's own Python is never used: it has
    no torch.
    """
    candidates = []
    if os.environ.get("MOMASK_BACKEND_PYTHON"):
        candidates.append(Path(os.environ["MOMASK_BACKEND_PYTHON"]))
    if installed is not None:
        candidates.append(installed)
    for base in (root, user_dir):
        if base is not None:
            candidates += [
                base / ".venv" / "bin" / "python",
                base / ".venv" / "Scripts" / "python.exe",
                base / "venv" / "bin" / "python",
                base / "venv" / "Scripts" / "python.exe",
            ]
    for path in candidates:
        if path.is_file():
            return str(path)
    return ""


# --- configuration ----------------------------------------------------------------------------------


FIX_COMMAND = (
    "Run the command in a terminal to see what it needs, then fix 'Backend Command' in the MoMask add-on "
    "preferences (or clear it to run the backend on this computer). For ssh: logging in must work "
    "without a password prompt (a key: ssh-copy-id, or an agent), the host must be known (connect once "
    "from a terminal), and the remote command must start `python -m backend serve`."
)


def split_command(text: str, posix: bool | None = None) -> list[str]:
    """The user's backend command as program + arguments, split the way its platform's own tools
    would: ``shlex`` (POSIX shell quoting) on Linux and macOS, the Microsoft C runtime's rules on
    Windows (:func:`split_windows_command`). Never run through a shell: what the user typed is
    what runs, with no expansion. Raises :class:`BackendError` for unbalanced quotes or nothing."""
    posix = os.name != "nt" if posix is None else posix
    try:
        args = shlex.split(text) if posix else split_windows_command(text)
    except ValueError as exc:
        raise BackendError(
            NOT_STARTED, f"The backend command cannot be read ({exc}): {text}",
            "Fix the quotes in 'Backend Command' in the MoMask add-on preferences: every opening quote "
            "needs its closing one.",
        ) from None
    if not args:
        raise BackendError(NOT_STARTED, "The backend command is empty.",
                           "Type a command in 'Backend Command', or clear it to use a local backend.")
    return args


def split_windows_command(text: str) -> list[str]:
    """``text`` split into arguments by the rules a Windows program's C runtime applies to its command
    line (the inverse of ``subprocess.list2cmdline``): whitespace separates arguments outside double
    quotes; 2n backslashes before a quote give n backslashes and the quote opens or closes quoting;
    2n+1 give n backslashes and a literal quote; ``""`` inside quotes is a literal quote; other
    backslashes are literal (``C:\\Program Files\\...`` stays as typed)."""
    args: list[str] = []
    current: list[str] = []
    in_arg = quoted = False
    i, n = 0, len(text)
    while i < n:
        char = text[i]
        if char == "\\":
            run = 1
            while i + run < n and text[i + run] == "\\":
                run += 1
            if i + run < n and text[i + run] == '"':
                current.append("\\" * (run // 2))
                if run % 2:
                    current.append('"')
                    i += run + 1
                else:
                    i += run  # the quote is handled below
            else:
                current.append("\\" * run)
                i += run
            in_arg = True
            continue
        if char == '"':
            if quoted and i + 1 < n and text[i + 1] == '"':
                current.append('"')
                i += 2
            else:
                quoted = not quoted
                i += 1
            in_arg = True
            continue
        if char in " \t" and not quoted:
            if in_arg:
                args.append("".join(current))
                current, in_arg = [], False
        else:
            current.append(char)
            in_arg = True
        i += 1
    if quoted:
        raise ValueError("a double quote is not closed")
    if in_arg:
        args.append("".join(current))
    return args


@dataclasses.dataclass(frozen=True)
class BackendConfig:
    """Everything that decides which process runs; a different config means a restart."""

    python: str
    weights: str
    clip: str = ""
    device: str = "auto"
    dataset: str = "t2m"
    root: str = ""  # the folder that contains backend/ (its protocol file is read, even for a remote)
    log_path: str = ""
    #: A command that runs the backend elsewhere (e.g. over ssh) instead of ``python``; its weights,
    #: CLIP file and device are the remote's (part of the command), so ``weights``/``clip``/``device``
    #: are not used then.
    remote: str = ""
    #: ``bpy.app.online_access``: a remote command connects over the network, so it is refused when off.
    online_access: bool = True

    def command(self) -> list[str]:
        if self.remote:
            return split_command(self.remote)
        cmd = [
            self.python,
            "-m",
            "backend",
            "serve",
            "--weights",
            self.weights,
            "--dataset",
            self.dataset,
            "--device",
            self.device,
        ]
        if self.clip:
            cmd += ["--clip", self.clip]
        if self.log_path:
            cmd += ["--log", self.log_path]
        return cmd


def _tail(path: str, lines: int = LOG_TAIL_LINES, start: int = 0) -> str:
    """The last ``lines`` of the log, from byte ``start`` on (what one process wrote)."""
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, start if start <= size else 0, size - 16384))
            text = handle.read().decode("utf-8", "replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


# --- one request ------------------------------------------------------------------------------------


#: Put in a call's queue when a progress event is waiting in :meth:`Call.take_progress`.
_PROGRESS_WAITING: dict[str, Any] = {"type": "progress"}


class Call:
    """One request in flight: its id, the process it was sent to, and the queue its replies arrive in.

    Progress is coalesced: the queue holds at most one marker, and :meth:`take_progress` returns the
    newest event, so a backend that floods progress cannot grow the queue."""

    def __init__(self, request_id: int, message_type: str, process: subprocess.Popen | None = None) -> None:
        self.id = request_id
        self.type = message_type
        self.process = process
        self.replies: queue.Queue[dict[str, Any]] = queue.Queue()
        self.fraction = 0.0  # the highest progress reported so far (the panel's bar never goes back)
        self._progress: dict[str, Any] | None = None
        self._progress_lock = threading.Lock()

    def post_progress(self, reply: dict[str, Any]) -> None:
        """(reader thread) Record a progress event, its numbers made sane: ``fraction`` in 0..1 and
        never below an earlier one, ``stage`` a short string (or absent)."""
        event = dict(reply)
        self.fraction = max(self.fraction, _fraction(reply, self.fraction))
        event["fraction"] = self.fraction
        stage = reply.get("stage")
        if isinstance(stage, str) and stage.strip():
            event["stage"] = stage[:40]
        else:
            event.pop("stage", None)
        with self._progress_lock:
            waiting = self._progress is not None
            self._progress = event
        if not waiting:
            self.replies.put(_PROGRESS_WAITING)

    def take_progress(self) -> dict[str, Any] | None:
        with self._progress_lock:
            event, self._progress = self._progress, None
        return event


def _number(value: Any) -> float | None:
    """``value`` as a finite float, or None (not a number, a bool, NaN, infinite, too big)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


def _fraction(reply: dict[str, Any], previous: float) -> float:
    """A progress event's fraction in 0..1: its ``fraction``, else ``done / total``, else ``previous``."""
    value = _number(reply.get("fraction"))
    if value is None:
        done, total = _number(reply.get("done")), _number(reply.get("total"))
        value = done / total if done is not None and total is not None and total > 0 else previous
    return min(1.0, max(0.0, value))


class _Stream:
    """What the reader knows about one process's stdout."""

    def __init__(self) -> None:
        self.greeted = False  # the hello was answered: from now on stdout carries protocol lines only
        self.startup_lines = 0
        self.cut_off = False  # it ended in the middle of a line
        self.notes = 0


class _Start:
    """One start of the backend: its process, its hello call, and the outcome other threads wait for."""

    def __init__(self, process: subprocess.Popen | None, call: Call) -> None:
        self.process = process
        self.call = call
        self.done = threading.Event()
        self.hello: dict[str, Any] | None = None
        self.error: BackendError | None = None


class BackendClient:
    """The backend process and the requests in flight to it. Thread-safe."""

    max_line_bytes = MAX_LINE_BYTES  # (tests lower it on an instance)

    def __init__(self, config: BackendConfig) -> None:
        self.config = config
        self.hello: dict[str, Any] | None = None
        self._process: subprocess.Popen | None = None
        self._send_lock = threading.Lock()
        self._start_lock = threading.RLock()  # held while spawning, never while waiting for hello
        self._start: _Start | None = None  # the start in progress (or the last one)
        self._pending: dict[int, Call] = {}
        self._pending_lock = threading.Lock()
        self._ids = itertools.count(1)
        self._protocol: types.ModuleType | None = None  # backend/portable/protocol.py, loaded on start
        self._reader: threading.Thread | None = None
        self._recent_logs: collections.deque[str] = collections.deque(maxlen=20)
        #: ids of the requests whose answers nobody waits for (cancel, shutdown): not worth a note
        self._unawaited: collections.deque[int] = collections.deque(maxlen=64)
        self.restarts = 0
        self._log_start = 0  # where the log stood when the current process started

    # --- lifetime -------------------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self.running else None

    def configure(self, config: BackendConfig) -> None:
        """Use ``config`` from now on; a running process with other settings is stopped (it restarts
        with the new ones on the next request). ``jobs`` never calls this while a generation runs."""
        if config != self.config:
            self.stop()
            self.config = config

    def _check_config(self) -> None:
        cfg = self.config
        if cfg.remote:
            self._check_remote_config()
            return
        fix_python = (
            "Press Install Backend in the MoMask add-on preferences (it makes the backend's environment), "
            "or set 'Backend Python' there to the python of an environment you made (e.g. by "
            "`python build.py setup`)."
        )
        if not cfg.python:
            raise BackendError(NOT_STARTED, "No Python for the MoMask backend is set or found.", fix_python)
        if not Path(cfg.python).is_file():
            raise BackendError(NOT_STARTED, f"The backend Python {cfg.python} does not exist.", fix_python)
        if not cfg.root or not (Path(cfg.root) / "backend" / "__main__.py").is_file():
            raise BackendError(
                NOT_STARTED,
                "The MoMask backend is not next to the add-on (no backend/ folder).",
                "Reinstall the MoMask extension from its release zip, which bundles the backend.",
            )

    def _check_remote_config(self) -> None:
        cfg = self.config
        if not cfg.online_access:
            raise BackendError(
                NOT_STARTED,
                "Online access is off in Blender, and the backend command connects to another computer.",
                "Turn on Preferences > System > Network > Allow Online Access, or clear 'Backend Command' "
                "in the MoMask add-on preferences to run the backend on this computer.",
            )
        cfg.command()  # its quotes are readable (raises with the fix)
        if not cfg.root or not (Path(cfg.root) / "backend" / "portable" / "protocol.py").is_file():
            raise BackendError(
                NOT_STARTED,
                "The add-on's copy of the backend protocol is missing (no backend/ folder next to it).",
                "Reinstall the MoMask extension from its release zip, which bundles it.",
            )

    @property
    def remote(self) -> bool:
        """The backend runs through the user's command (maybe on another computer), not locally."""
        return bool(self.config.remote)

    def ensure_started(self) -> dict[str, Any]:
        """Start the process if it is not running and say hello; returns the hello data.

        The start lock covers spawning only. The hello (up to HELLO_TIMEOUT_S while torch imports) is
        awaited outside it, so ``stop()`` (unregister, Blender quitting) never waits for a start:
        it kills the starting process, which fails the hello. Threads that arrive during a start
        wait for that start's outcome instead of spawning a second process.
        """
        with self._start_lock:
            if self.running and self.hello is not None:
                return self.hello
            start = self._start
            owner = start is None or start.done.is_set()
            if owner:
                self._stop_process(graceful=False)
                self._check_config()
                self._protocol = load_backend_module("protocol", Path(self.config.root))
                self._spawn()
                call = self._submit(
                    "hello", {"protocol": self._protocol.PROTOCOL_VERSION, "client": f"{CLIENT_NAME}"}
                )
                start = self._start = _Start(self._process, call)
        assert start is not None
        if not owner:
            start.done.wait()
            if start.error is not None:
                raise start.error
            return start.hello or {}
        try:
            hello = self._wait(start.call, timeout=HELLO_TIMEOUT_S)
            with self._start_lock:
                if self._process is not start.process:  # stopped (or replaced) while saying hello
                    raise BackendError("cancelled", "The backend was stopped while it was starting.")
                self.hello = start.hello = hello
            return hello
        except BaseException as exc:
            start.error = exc if isinstance(exc, BackendError) else BackendError(
                NOT_STARTED, f"The MoMask backend did not start ({exc}).", "See the backend log."
            )
            raise
        finally:
            start.done.set()

    def _spawn(self) -> None:
        cfg = self.config
        env = dict(os.environ)
        # Blender's own interpreter settings must not leak into the backend's Python.
        for name in ("PYTHONHOME", "PYTHONPATH", "PYTHONSTARTUP"):
            env.pop(name, None)
        env["PYTHONUNBUFFERED"] = "1"
        env["PYTHONIOENCODING"] = "utf-8"
        env["PYTHONUTF8"] = "1"
        stderr: Any = subprocess.DEVNULL
        if cfg.log_path:
            Path(cfg.log_path).parent.mkdir(parents=True, exist_ok=True)
            # now: once the backend runs, Windows cannot rename it
            load_backend_module("logfile", Path(cfg.root)).rotate_log(Path(cfg.log_path))
            # the backend points its stderr at --log itself; this catches what happens before that
            stderr = open(cfg.log_path, "ab")  # noqa: SIM115 (closed below, once the child has its copy)
            stderr.seek(0, os.SEEK_END)
            self._log_start = stderr.tell()  # a remote command's errors quote its own stderr only
        flags = getattr(subprocess, "CREATE_NO_WINDOW", 0) if os.name == "nt" else 0
        command = cfg.command()
        try:
            self._process = subprocess.Popen(
                command,
                cwd=cfg.root,
                env=env,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=stderr,
                bufsize=0,
                creationflags=flags,
                # A remote command runs without Blender's terminal: ssh cannot then ask for a password
                # or a host key on it, unseen, while the panel waits; it fails, and says why on stderr.
                start_new_session=bool(cfg.remote) and os.name != "nt",
            )
        except OSError as exc:
            if cfg.remote:
                raise self._spawn_error(command[0], exc) from exc
            raise BackendError(
                NOT_STARTED,
                f"Could not start the MoMask backend with {cfg.python} ({exc}).",
                "Check 'Backend Python' in the MoMask add-on preferences.",
            ) from exc
        finally:
            # The child inherited its own handle; Blender keeping one open would only stop the next
            # start from rotating the log on Windows.
            if stderr is not subprocess.DEVNULL:
                stderr.close()
        self.restarts += 1
        self._reader = threading.Thread(
            target=self._read, args=(self._process,), name="momask-backend-reader", daemon=True
        )
        self._reader.start()

    @staticmethod
    def _spawn_error(program: str, exc: OSError) -> BackendError:
        """Why the backend command could not even start: its program is missing or not runnable."""
        if isinstance(exc, FileNotFoundError):
            problem = f"The backend command's program '{program}' was not found."
            fix = ("Install it (for ssh: the OpenSSH client) or give its full path at the start of "
                   "'Backend Command' in the MoMask add-on preferences; Blender started from a desktop "
                   "icon may not search the PATH your terminal has. Or clear 'Backend Command' to run "
                   "the backend on this computer.")
        else:
            problem = f"The backend command's program '{program}' could not be started ({exc})."
            fix = (f"Check that '{program}' is a program you may run, in 'Backend Command' in the MoMask "
                   f"add-on preferences.")
        return BackendError(NOT_STARTED, problem, fix)

    def stop(self, timeout: float = SHUTDOWN_TIMEOUT_S) -> None:
        """Ask the backend to shut down; terminate, then kill it, if it does not exit in time.

        Called on the main thread (unregister, Blender quitting): it must never wait for a start.
        The start lock is held only while spawning, so it is normally free at once; if not, the
        process is stopped without it (stopping twice, or a process that is gone, is harmless).
        """
        locked = self._start_lock.acquire(timeout=STOP_LOCK_WAIT_S)
        try:
            self._stop_process(graceful=True, timeout=timeout)
        finally:
            if locked:
                self._start_lock.release()

    def _stop_process(self, graceful: bool, timeout: float = SHUTDOWN_TIMEOUT_S) -> None:
        process = self._process
        if process is None:
            return
        exited = process.poll() is not None  # by itself: its calls failed, they were not cancelled
        if self.hello is None:  # still starting: nothing to shut down gracefully, and no time to wait
            graceful = False
        if process.poll() is None and graceful:
            try:
                self._send_unawaited({"type": "shutdown"})
                process.stdin.close()
            except (OSError, ValueError, BackendError):
                pass
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout)
        for kill in (process.terminate, process.kill):
            if process.poll() is not None:
                break
            kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(2.0)
        for stream in (process.stdin, process.stdout):
            with contextlib.suppress(OSError, ValueError):
                stream.close()
        if self._reader is not None and self._reader is not threading.current_thread():
            self._reader.join(2.0)  # it fails the calls of a process that died by itself, with the reason
        if self._process is process:  # (stop() may run without the start lock: keep a newer process)
            self._process = None
            self.hello = None
        self._fail_pending(process, self._crash_error(process) if exited else BackendError(
            "cancelled", "The backend was stopped."))

    # --- talking ----------------------------------------------------------------------------------------

    def _send(self, message: dict[str, Any]) -> None:
        process = self._process
        if process is None or process.poll() is not None:
            raise self._crash_error(process)
        line = self._protocol.encode_message(message)
        with self._send_lock:
            try:
                process.stdin.write(line)
                process.stdin.flush()
            except (BrokenPipeError, OSError, ValueError) as exc:
                raise self._crash_error(process) from exc

    def _send_unawaited(self, message: dict[str, Any]) -> None:
        request_id = next(self._ids)
        self._unawaited.append(request_id)
        self._send({"id": request_id, **message})

    def _submit(self, message_type: str, fields: dict[str, Any]) -> Call:
        call = Call(next(self._ids), message_type, self._process)
        with self._pending_lock:
            self._pending[call.id] = call
        try:
            self._send({"id": call.id, "type": message_type, **fields})
        except BackendError:
            with self._pending_lock:
                self._pending.pop(call.id, None)
            raise
        return call

    def submit(self, message_type: str, **fields: Any) -> Call:
        """Send a request (starting the backend if needed); read its replies from ``call.replies``.

        A process that died since the last request (its pipe breaks on this write) is restarted once:
        the request never reached it, so sending it again is safe.
        """
        self.ensure_started()
        try:
            return self._submit(message_type, fields)
        except BackendError as exc:
            if exc.code != CRASHED:
                raise
        with self._start_lock:
            self._stop_process(graceful=False)
        self.ensure_started()
        return self._submit(message_type, fields)

    def call(
        self,
        message_type: str,
        *,
        timeout: float | None = None,
        on_progress: Callable[[dict[str, Any]], None] | None = None,
        on_submit: Callable[[Call], None] | None = None,
        **fields: Any,
    ) -> dict[str, Any]:
        """Send a request and wait for its result (``data``); raises :class:`BackendError` on an
        error reply, a crash of the backend, or ``timeout`` seconds without any reply."""
        call = self.submit(message_type, **fields)
        if on_submit is not None:
            on_submit(call)
        return self._wait(call, timeout, on_progress)

    def _wait(
        self, call: Call, timeout: float | None, on_progress: Callable[[dict[str, Any]], None] | None = None
    ) -> dict[str, Any]:
        try:
            while True:
                try:
                    reply = call.replies.get(timeout=timeout)
                except queue.Empty:
                    self.cancel(call.id)
                    raise BackendError(
                        TIMEOUT,
                        f"The backend did not answer '{call.type}' within {timeout:g} s.",
                        f"Press 'Free memory' to restart it, or check its log: {self.config.log_path}",
                    ) from None
                if reply is _PROGRESS_WAITING:
                    event = call.take_progress()
                    if on_progress is not None and event is not None:
                        on_progress(event)
                    continue
                if reply.get("type") == "result":
                    return reply["data"]  # a dict: the reader checked
                err = reply["error"]
                raise BackendError(err["code"], err["problem"], err["fix"])
        finally:
            with self._pending_lock:
                self._pending.pop(call.id, None)

    def cancel(self, request_id: int | None) -> None:
        """Ask the backend to stop a job at its next step (``None``: every job). Never raises."""
        if not self.running:
            return
        with contextlib.suppress(BackendError):
            self._send_unawaited({"type": "cancel", "target": request_id})

    # --- the reader thread --------------------------------------------------------------------------------

    def _read(self, process: subprocess.Popen) -> None:
        """Read ``process``'s stdout until it ends or breaks the protocol, then fail its calls still
        waiting. Nothing may end this thread early: a dead reader is a deaf client, whose calls would
        wait for ever."""
        # The pipe is unbuffered (bufsize=0): readline() on it would read ONE byte per system call,
        # ~170 ms for a 190 KB result line. A buffered reader on top reads it in 64 KB chunks.
        stream = io.BufferedReader(process.stdout, 1 << 16)  # type: ignore[type-var]
        state = _Stream()
        failure: BackendError | None = None
        try:
            while failure is None:
                try:
                    # Bounded: a line is never held in memory past max_line_bytes.
                    raw = stream.readline(self.max_line_bytes)
                except (OSError, ValueError):
                    break  # stop() closed the pipe
                if not raw:
                    break
                if not raw.endswith(b"\n"):
                    if len(raw) < self.max_line_bytes:  # the end of the stream, mid-line: it died writing
                        state.cut_off = True
                        self._note(state, f"a reply cut off after {len(raw)} bytes")
                        break
                    failure = self._bad_reply(f"a line longer than {self.max_line_bytes >> 20} MB")
                    break
                failure = self._dispatch(raw, state)
        except Exception as exc:  # noqa: BLE001 (a bug here must fail the calls, not hang them)
            failure = BackendError(
                BAD_REPLY,
                f"The add-on could not handle a reply of the MoMask backend ({type(exc).__name__}: {exc}).",
                "This is a bug in the MoMask add-on; the backend restarts on the next request. The "
                "details are in Blender's console.",
            )
            traceback.print_exc()
        if failure is not None:
            with contextlib.suppress(OSError):
                process.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(2.0)
        if process.poll() is None:  # it closed its stdout but lives on: it can never answer again
            with contextlib.suppress(OSError):
                process.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(2.0)
        self._fail_pending(process, failure or self._crash_error(process, cut_off=state.cut_off,
                                                                 greeted=state.greeted))

    def _dispatch(self, raw: bytes, state: _Stream) -> BackendError | None:
        """Route one complete line; a BackendError when it breaks the protocol (see the module doc)."""
        if not raw.strip():
            return None
        try:
            reply = self._protocol.decode_message(raw, kind="reply", arrays=False)
        except ValueError as exc:  # ProtocolError: not UTF-8, not JSON, not a reply
            problem = str(getattr(exc, "problem", exc)).rstrip(".")
            # Before the hello answer, text without a brace is start-up output; with one, it may hold
            # a reply glued to output that had no newline (the hello would then wait for ever).
            chatter = not state.greeted and b"{" not in raw
            if chatter and state.startup_lines < MAX_STARTUP_LINES:
                state.startup_lines += 1
                self._note(state, f"start-up output: {raw.decode('utf-8', 'replace').strip()}")
                return None
            if self.config.remote and not state.greeted:
                return self._remote_chatter_error(raw)
            return self._bad_reply(f"a line that is not a protocol message ({problem})")
        kind = reply["type"]
        request_id = reply.get("id")
        if kind == "log":
            message = str(reply.get("message", ""))[:NOTE_CHARS]
            self._recent_logs.append(f"{reply.get('level', 'info')}: {message}")
            return None
        with self._pending_lock:
            call = self._pending.get(request_id)
            if call is not None and kind != "progress":
                del self._pending[request_id]  # answered: a second final reply finds nobody waiting
        if call is None:
            if kind == "error" and request_id is None:  # our request was lost: whose call waits now?
                error = reply.get("error")
                said = str(error.get("problem") if isinstance(error, dict) else error)[:NOTE_CHARS]
                return self._bad_reply(f"an error about a request it could not read ({said})")
            if request_id not in self._unawaited:
                self._note(state, f"ignored a '{kind}' for request {request_id!r}, which nothing waits for")
            return None
        if kind == "progress":
            call.post_progress(reply)
            return None
        if call.type == "hello":
            state.greeted = True
        call.replies.put(self._final(call, reply))
        return None

    def _final(self, call: Call, reply: dict[str, Any]) -> dict[str, Any]:
        """The result or error for ``call``, checked: ``data`` an object with readable arrays, ``error``
        three strings. A malformed one fails this call only: the stream itself is still in step."""
        if reply["type"] == "result":
            data = reply.get("data")
            try:
                if not isinstance(data, dict):
                    raise self._protocol.ProtocolError(f"its data is {type(data).__name__}, not an object")
                data = self._protocol.from_wire(data)
            except ValueError as exc:
                why = str(getattr(exc, "problem", exc)).rstrip(".")
                return self._error_reply(call, self._bad_reply(
                    f"an unreadable answer to '{call.type}' ({why})", stopped=False))
            return {"id": call.id, "type": "result", "data": data}
        error = reply.get("error")
        error = error if isinstance(error, dict) else {}
        code, problem, fix = (error.get(key) for key in ("code", "problem", "fix"))
        return self._error_reply(call, BackendError(
            code if isinstance(code, str) and code else "error",
            problem if isinstance(problem, str) and problem.strip() else
            f"The backend failed '{call.type}' without saying why.",
            fix if isinstance(fix, str) else "",
        ))

    @staticmethod
    def _error_reply(call: Call, error: BackendError) -> dict[str, Any]:
        return {"id": call.id, "type": "error",
                "error": {"code": error.code, "problem": error.problem, "fix": error.fix}}

    def _note(self, state: _Stream, text: str) -> None:
        """Remember something the reader ignored (it shows in a later crash's message); the first
        few of each process also go to Blender's console."""
        text = text[:NOTE_CHARS]
        self._recent_logs.append(f"add-on: {text}")
        state.notes += 1
        if state.notes <= PRINTED_NOTES:
            print(f"MoMask backend client: {text}", file=sys.stderr)

    def _remote_chatter_error(self, raw: bytes) -> BackendError:
        """A remote command whose stdout carries text that is not the protocol before its hello: a
        remote shell greeting on stdout, a program that echoes, a command that is not the backend."""
        text = raw.decode("utf-8", "replace").strip()[:120]
        return BackendError(
            BAD_REPLY,
            f"The backend command printed text that is not the MoMask protocol on its standard output: "
            f"'{text}'. It was stopped.",
            "Its standard output must carry the backend's replies only: make the remote shell's start-up "
            "files (~/.bashrc, a login message script) print nothing, or print to stderr, and check that "
            "'Backend Command' runs `python -m backend serve` (and nothing else that prints).",
        )

    def _log_hint(self) -> str:
        return f"its log: {self.config.log_path}" if self.config.log_path else "Blender's console"

    def _bad_reply(self, what: str, stopped: bool = True) -> BackendError:
        """The error for a backend that broke the protocol (``stopped``: the process is killed for it)."""
        consequence = (" It was stopped, since its answers could no longer be matched to requests."
                       if stopped else "")
        return BackendError(
            BAD_REPLY,
            f"The MoMask backend sent {what}.{consequence}",
            f"It restarts on the next request. If this repeats, press 'Check backend' in the add-on "
            f"preferences and look at {self._log_hint()}.",
        )

    def _crash_error(self, process: subprocess.Popen | None, cut_off: bool = False,
                     greeted: bool | None = None) -> BackendError:
        code = process.poll() if process is not None else None
        status = f" (exit code {code})" if code is not None else ""
        tail = _tail(self.config.log_path) if self.config.log_path else ""
        tail = tail or "\n".join(self._recent_logs)
        where = f" Log: {self.config.log_path}." if self.config.log_path else ""
        last = f"\nLast log lines:\n{tail}" if tail else ""
        middle = " in the middle of a reply" if cut_off else ""
        if self.config.remote:
            tail = _tail(self.config.log_path, start=self._log_start) if self.config.log_path else ""
            return self._remote_crash_error(status, tail, where,
                                            self.hello is not None if greeted is None else greeted)
        return BackendError(
            CRASHED,
            f"The MoMask backend stopped unexpectedly{status}{middle}.",
            f"It restarts on the next request; if this repeats, press 'Check backend' in the "
            f"add-on preferences.{where}{last}",
        )

    def _remote_crash_error(self, status: str, tail: str, where: str, greeted: bool) -> BackendError:
        """A remote command that ended: before its hello it never worked (unreachable host, refused
        login, a wrong remote path: its stderr says which); after, the connection was lost."""
        printed = [line[len("add-on: start-up output: "):] for line in self._recent_logs
                   if line.startswith("add-on: start-up output: ")]
        said = f"\nIt printed:\n{chr(10).join(printed[-4:])}" if printed and not greeted else ""
        last = f"\nIts last messages (stderr):\n{tail}" if tail else ""
        if not greeted:
            return BackendError(
                NOT_STARTED,
                f"The backend command exited before the backend answered{status}: "
                f"{self.config.remote}{said}{last}",
                FIX_COMMAND + where,
            )
        return BackendError(
            CRASHED,
            f"The connection to the backend was lost{status}. Nothing was written to the scene.",
            f"Press Generate again: it reconnects. If this repeats, check the network and that the remote "
            f"computer is up (and the remote backend's log).{where}{last}",
        )

    def _fail_pending(self, process: subprocess.Popen | None, error: BackendError) -> None:
        """Fail every call still waiting on ``process`` with ``error`` (the calls of a newer process
        are not its business)."""
        with self._pending_lock:
            calls = [call for call in self._pending.values() if call.process is process]
            for call in calls:
                del self._pending[call.id]
        for call in calls:
            call.replies.put(self._error_reply(call, error))


def describe_error(exc: BaseException) -> tuple[str, str, str]:
    """(code, problem, fix) of any exception, the way the panel shows it."""
    if hasattr(exc, "problem"):
        return (str(getattr(exc, "code", "error")), str(exc.problem), str(getattr(exc, "fix", "")))
    return (
        "internal",
        f"{type(exc).__name__}: {exc}",
        "This is a bug in the MoMask add-on; the details are in Blender's console.",
    )


def wait_for(predicate: Callable[[], bool], timeout: float, interval: float = 0.05) -> bool:
    """Poll ``predicate`` until it holds or ``timeout`` passes (tests and headless runs)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()
