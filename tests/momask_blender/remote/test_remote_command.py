"""The Backend Command a user types becomes exactly the program and arguments that run (no shell):
POSIX quoting on Linux/macOS, the Windows C runtime's rules on Windows; a local config is unchanged."""

from __future__ import annotations

import subprocess

import pytest
from client_harness import REPO, client

SSH_EXAMPLE = ('ssh -p 2222 gpu-box "cd /opt/momask && .venv/bin/python -m backend serve '
               '--weights \'/opt/mo mask/weights\'"')


def test_posix_quoting_keeps_the_remote_command_one_argument() -> None:
    assert client.split_command(SSH_EXAMPLE, posix=True) == [
        "ssh", "-p", "2222", "gpu-box",
        "cd /opt/momask && .venv/bin/python -m backend serve --weights '/opt/mo mask/weights'",
    ]
    # no shell: nothing is expanded
    assert client.split_command("ssh $HOST ~/x *.py", posix=True) == ["ssh", "$HOST", "~/x", "*.py"]


@pytest.mark.parametrize("text, expected", [
    (r'"C:\Program Files\OpenSSH\ssh.exe" gpu-box', [r"C:\Program Files\OpenSSH\ssh.exe", "gpu-box"]),
    (r"C:\Windows\System32\OpenSSH\ssh.exe -i C:\keys\id  box",
     [r"C:\Windows\System32\OpenSSH\ssh.exe", "-i", r"C:\keys\id", "box"]),
    (r'a\\"b c" d', [r"a\b c", "d"]),          # 2n backslashes + quote: n backslashes, quoting toggles
    (r'a\"b', ['a"b']),                          # 2n+1: n backslashes and a literal quote
    ('"say ""hi""" x', ['say "hi"', "x"]),       # "" inside quotes: a literal quote
    ('"" x', ["", "x"]),                         # an empty quoted argument is kept
    ("  ssh\tbox  ", ["ssh", "box"]),
])
def test_windows_rules(text: str, expected: list[str]) -> None:
    assert client.split_command(text, posix=False) == expected


@pytest.mark.parametrize("args", [
    ["ssh", "gpu box", 'say "hi"', "trail\\", 'back\\"slash', "", "C:\\dir with space\\"],
    ["C:\\Program Files\\OpenSSH\\ssh.exe", "-o", "ProxyCommand=x \"y\"", "a\\\\\"b"],
])
def test_windows_rules_read_back_what_windows_quoting_writes(args: list[str]) -> None:
    """The inverse of subprocess.list2cmdline, which quotes for the same C runtime rules."""
    assert client.split_command(subprocess.list2cmdline(args), posix=False) == args


@pytest.mark.parametrize("posix", [True, False])
@pytest.mark.parametrize("text", ['ssh box "python -m backend serve', "   "])
def test_an_unreadable_or_empty_command_says_how_to_fix_it(text: str, posix: bool) -> None:
    with pytest.raises(client.BackendError) as err:
        client.split_command(text, posix=posix)
    assert err.value.code == client.NOT_STARTED and "Backend Command" in err.value.fix


def test_a_remote_config_runs_the_command_and_a_local_one_the_python() -> None:
    remote = client.BackendConfig(python="", weights="", remote="ssh box serve", root=str(REPO))
    assert remote.command() == ["ssh", "box", "serve"]
    local = client.BackendConfig(python="/env/bin/python", weights="/w", device="cpu", root=str(REPO))
    assert local.command()[:4] == ["/env/bin/python", "-m", "backend", "serve"]


def test_a_remote_command_is_refused_while_online_access_is_off(tmp_path) -> None:
    backend = client.BackendClient(client.BackendConfig(
        python="", weights="", remote="ssh gpu-box serve", online_access=False, root=str(REPO),
        log_path=str(tmp_path / "backend.log")))
    with pytest.raises(client.BackendError) as err:
        backend.ensure_started()
    assert "Online access is off" in err.value.problem and "Allow Online Access" in err.value.fix
    assert backend.restarts == 0 and not backend.running, "a process was started"
