"""A real OpenSSH server on 127.0.0.1 for the remote-backend tests, started and stopped by the test.

:func:`start` runs Debian's ``/usr/sbin/sshd`` as the current user, in the foreground, on a free
loopback port, with a throwaway host key and client key made in a temp folder: nothing of the
machine's own ssh setup is read or changed (only ``/run/sshd``, the privilege-separation folder sshd
requires when run as root, is made if missing). :meth:`Sshd.command` gives the ``Backend Command`` a
user would type, pointed at it. Tests that need it skip, with the fix, when sshd is absent
(``python build.py setup`` installs it on Debian/Ubuntu as root).
"""

from __future__ import annotations

import contextlib
import getpass
import os
import shlex
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

SSHD = Path(os.environ.get("MOMASK_SSHD", "/usr/sbin/sshd"))
SSH = shutil.which("ssh") or "/usr/bin/ssh"
REPO = Path(__file__).resolve().parents[3]
START_TIMEOUT_S = 10.0

MISSING = (f"no OpenSSH server at {SSHD} (or no ssh client): run `python3 build.py setup`, which installs "
           "openssh-server on Debian/Ubuntu when run as root, or `apt-get install -y openssh-server`")


def missing() -> str | None:
    """Why the sshd tests cannot run here, or None."""
    if not SSHD.is_file() or not Path(SSH).is_file() or not shutil.which("ssh-keygen"):
        return MISSING
    return None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Sshd:
    """One running sshd (its process, port and keys)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port = free_port()
        self.key = folder / "client_key"
        self.user = getpass.getuser()
        self.log = folder / "sshd.log"
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        keygen = ["ssh-keygen", "-q", "-t", "ed25519", "-N", ""]
        subprocess.run([*keygen, "-f", str(self.folder / "host_key")], check=True, timeout=30)
        subprocess.run([*keygen, "-f", str(self.key)], check=True, timeout=30)
        (self.folder / "authorized_keys").write_text((self.folder / "client_key.pub").read_text())
        config = self.folder / "sshd_config"
        config.write_text("\n".join([
            "ListenAddress 127.0.0.1",
            f"Port {self.port}",
            f"HostKey {self.folder / 'host_key'}",
            f"PidFile {self.folder / 'sshd.pid'}",
            f"AuthorizedKeysFile {self.folder / 'authorized_keys'}",
            "StrictModes no",  # the temp folder's permissions are the test's, not a home's
            "UsePAM no",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "PubkeyAuthentication yes",
            "PermitRootLogin prohibit-password",
            "PrintMotd no",
            "LogLevel VERBOSE",
            "",
        ]))
        if os.geteuid() == 0:
            Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen([str(SSHD), "-D", "-e", "-f", str(config)],
                                            stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"sshd exited at once ({self.process.returncode}): {self.log.read_text()}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), 0.5):
                return
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"sshd did not listen on {self.port} within {START_TIMEOUT_S:g} s")

    def ssh_args(self, key: Path | None = None, port: int | None = None) -> list[str]:
        """ssh to this server, non-interactively (a test must never wait on a prompt)."""
        return [SSH, "-p", str(port or self.port), "-i", str(key or self.key),
                "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
                "-o", "BatchMode=yes", "-o", "ConnectTimeout=5", "-o", "LogLevel=ERROR",
                f"{self.user}@127.0.0.1"]

    def command(self, remote: str, **overrides) -> str:
        """A Backend Command running the shell command ``remote`` on this server, as one string."""
        return shlex.join([*self.ssh_args(**overrides), remote])

    def backend_command(self, weights: Path | str, step_delay: float = 0.0, marker: str = "",
                        before: str = "") -> str:
        """This repository's backend served over ssh with ``weights`` on CPU; ``step_delay`` slows each
        step (MOMASK_DEBUG_STEP_DELAY), ``marker`` tags its environment (:func:`processes_marked`),
        ``before`` is shell run first (a greeting, say)."""
        python = REPO / ".venv" / "bin" / "python"
        env = f"MOMASK_DEBUG_STEP_DELAY={step_delay} MOMASK_TEST_MARKER={shlex.quote(marker or 'none')}"
        serve = (f"cd {shlex.quote(str(REPO))} && {before}{env} exec {shlex.quote(str(python))} -m backend "
                 f"serve --weights {shlex.quote(str(weights))} --device cpu")
        return self.command(serve)

    def sessions(self) -> list[int]:
        """The pids of the sshd processes serving a connection (children of the listener)."""
        return children(self.process.pid) if self.process is not None else []

    def stop(self) -> None:
        if self.process is None:
            return
        for pid in self.sessions():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.process.terminate()
        try:
            self.process.wait(5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)
        self.process = None


def children(pid: int) -> list[int]:
    """The direct children of ``pid`` (from /proc: the tests run on Linux)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError):
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    found.append(int(entry.name))
    return found


def processes_marked(marker: str) -> list[int]:
    """Live processes whose environment holds ``MOMASK_TEST_MARKER=<marker>`` (a remote backend)."""
    tag = f"MOMASK_TEST_MARKER={marker}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if tag in (entry / "environ").read_bytes().split(b"\0"):
                    stat = (entry / "stat").read_text()
                    if stat.rsplit(")", 1)[1].split()[0] != "Z":
                        found.append(int(entry.name))
    return found


@contextlib.contextmanager
def running(folder: Path) -> Iterator[Sshd]:
    """A started sshd, always stopped (its sessions too) when the block ends."""
    folder.mkdir(parents=True, exist_ok=True)
    server = Sshd(folder)
    try:
        server.start()
        yield server
    finally:
        server.stop()
