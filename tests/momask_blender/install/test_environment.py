"""The environment builder of Install Backend (momask_blender/install/environment.py) without Blender:
the shipped pins, pip's output read as progress, a half-made environment never used, and the messages
for a full disk, a Python that fails or is too old. The whole install, Cancel, Repair and Remove run
in real Blender (test_install_backend.py)."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import types
from pathlib import Path

import pytest

import build
from tests.momask_blender.install.addon_modules import REPO, load

environment = load("install.environment")
torch_build = load("install.torch_build")
client = load("remote.client")


def plan(tmp_path: Path, python: str = sys.executable):
    return environment.Plan(tmp_path / "user" / environment.ENV_FOLDER, python, torch_build.cpu_build(),
                            environment.read_pins(REPO), tmp_path / "user" / "logs" / "install-backend.log",
                            pypi_index="http://127.0.0.1:9/simple", torch_index="http://127.0.0.1:9/whl/cpu")


def test_the_pins_are_the_shipped_files_pip_first_then_torch():
    pins = environment.read_pins(REPO)
    names = [p.name for p in pins]
    assert names[:2] == ["pip", "torch"]
    assert {"numpy", "scipy", "openai-clip"} <= set(names)
    assert f"torch=={pins[1].version}" == build.DEFAULT_TORCH  # one torch version for setup and the add-on
    shipped = {p.relative_to(REPO).as_posix() for p in build.SHIPPED_REQUIREMENTS}
    assert shipped == set(environment.REQUIREMENT_FILES)


def test_an_unpinned_line_is_refused(tmp_path):
    (tmp_path / "requirements").mkdir()
    (tmp_path / "requirements" / "install.txt").write_text("pip==26.2.1\ntorch>=2\n")
    (tmp_path / "requirements" / "backend.txt").write_text("")
    with pytest.raises(client.BackendError, match="not pinned"):
        environment.read_pins(tmp_path)


# What pip 26 prints for `pip install --progress-bar raw torch==2.13.0` (abridged).
PIP_OUTPUT = """\
Looking in indexes: http://127.0.0.1:9/whl/cpu
Collecting torch==2.13.0
  Downloading http://127.0.0.1:9/files/torch-2.13.0%2Bcpu-cp311-cp311-manylinux_2_28_x86_64.whl (191.8 MB)
Progress 0 of 191794682
Progress 50000000 of 191794682
Progress 191794682 of 191794682
Collecting filelock (from torch==2.13.0)
  Using cached filelock-4.3.2-py3-none-any.whl (244 kB)
Collecting sympy>=1.13.3 (from torch==2.13.0)
  Downloading http://127.0.0.1:9/files/sympy-1.14.0-py3-none-any.whl (6.3 MB)
Progress 6299353 of 6299353
Installing collected packages: mpmath, sympy, filelock, torch
Successfully installed filelock-4.3.2 mpmath-1.3.0 sympy-1.14.0 torch-2.13.0+cpu
"""


def test_pip_output_becomes_progress_that_never_goes_back(tmp_path):
    builder = environment.Builder(plan(tmp_path))
    seen = []
    builder.on_progress = lambda p: seen.append((p.fraction, p.text))
    builder._stages(environment.INSTALL_STAGES)
    builder._stage(2)
    builder._expect = 1
    for line in PIP_OUTPUT.splitlines():
        builder._parse(line)
    fractions = [f for f, _ in seen]
    assert fractions == sorted(fractions)
    texts = [t for _, t in seen]
    assert any("50.0 MB / 191.8 MB" in t and "Installing torch (step 3 of 5)" in t for t in texts), texts
    assert "unpacking 4 packages" in texts[-1]
    start = sum(w for _, w in environment.INSTALL_STAGES[:2])
    assert start < fractions[-1] < start + environment.INSTALL_STAGES[2][1]


def test_an_unfinished_environment_is_never_used(tmp_path):
    env = tmp_path / environment.ENV_FOLDER
    python = environment.env_python(env)
    python.parent.mkdir(parents=True)
    shutil.copy(sys.executable, python)
    assert environment.installed_python(env) is None  # no marker: an install that did not finish
    (env / environment.MARKER).write_text('{"build": "cpu"}')
    assert environment.installed_python(env) == python
    assert environment.installed_python(environment.staging_dir(env)) is None
    installed = environment.installed_python(env)
    assert client.default_backend_python(None, None, installed) in (str(python), os.environ.get(
        "MOMASK_BACKEND_PYTHON"))


def fake_python(folder: Path, script: str) -> Path:
    """An executable that plays a Python: ``script`` is its shell body."""
    path = folder / "python3"
    path.write_text("#!/bin/sh\n" + script)
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return path


@pytest.mark.skipif(os.name == "nt", reason="a shell script plays the Python")
def test_a_full_disk_names_the_disk_and_leaves_nothing(tmp_path):
    python = fake_python(tmp_path, 'echo "Error: [Errno 28] No space left on device: \'lib/python3.11\'"\n'
                                   "exit 1\n")
    builder = environment.Builder(plan(tmp_path, str(python)))
    environment.SPACE_NEEDED_MB, saved = {"cpu": 1}, environment.SPACE_NEEDED_MB
    try:
        with pytest.raises(client.BackendError) as err:
            builder.install()
    finally:
        environment.SPACE_NEEDED_MB = saved
    assert "is full" in err.value.problem and "Free about" in err.value.fix, err.value
    env = builder.plan.env_dir
    assert not env.exists() and not environment.staging_dir(env).exists()
    assert "No space left" in builder.plan.log_path.read_text()


@pytest.mark.skipif(os.name == "nt", reason="a shell script plays the Python")
def test_a_python_that_is_too_old_or_cannot_make_environments(tmp_path):
    old = fake_python(tmp_path, 'echo "MOMASK-PROBE 3.10.13 linux"\n')
    with pytest.raises(client.BackendError) as err:
        environment.probe_python(old)
    assert "version 3.10.13" in err.value.problem and "3.11 to 3.13" in err.value.problem
    assert "Install With Python" in err.value.fix
    no_venv = tmp_path / "no_venv"
    no_venv.mkdir()
    broken = fake_python(no_venv, 'echo "ModuleNotFoundError: No module named \'ensurepip\'" >&2\nexit 1\n')
    with pytest.raises(client.BackendError, match="cannot make a virtual environment.*ensurepip"):
        environment.probe_python(broken)
    with pytest.raises(client.BackendError, match="does not exist"):
        environment.probe_python(tmp_path / "nowhere" / "python")


def test_blenders_own_python_can_make_the_environment():
    version, platform = environment.probe_python(sys.executable)
    assert version[:2] == sys.version_info[:2] and platform == sys.platform


def test_pip_runs_without_the_users_pip_settings(monkeypatch):
    monkeypatch.setenv("PIP_INDEX_URL", "http://example.invalid/simple")
    monkeypatch.setenv("PYTHONPATH", "/somewhere/blender")
    env = environment.clean_env()
    assert "PIP_INDEX_URL" not in env and "PYTHONPATH" not in env
    assert env["PIP_CONFIG_FILE"] == os.devnull
    out = subprocess.run([sys.executable, "-m", "pip", "config", "list"], env=env, capture_output=True,
                         text=True)
    assert "index-url" not in out.stdout and "find-links" not in out.stdout, out.stdout


backend_env = load("install.backend_env")


def made_env(env: Path, base_python: str = sys.executable, tag: str = "old") -> Path:
    """A finished environment in ``env``: its python (a copy of this one), the marker, a file ``tag``."""
    python = environment.env_python(env)
    python.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(sys.executable, python)
    (env / environment.MARKER).write_text(f'{{"build": "cpu", "base_python": "{base_python}"}}')
    (env / "tag").write_text(tag)
    return python


class FakeBackend:
    """What the worker reads of the add-on's backend client: a local process from ``python``."""

    def __init__(self, python: Path, remote: str = "") -> None:
        self.config = types.SimpleNamespace(python=str(python))
        self.remote, self.running, self.stops = remote, True, 0

    def stop(self) -> None:
        self.stops += 1
        self.running = False


def test_the_backend_of_the_installed_environment_is_stopped_just_before_the_swap(tmp_path):
    builder = environment.Builder(plan(tmp_path))
    env = builder.plan.env_dir
    python = made_env(env)
    made_env(environment.staging_dir(env), tag="new")
    running = FakeBackend(python)
    elsewhere = FakeBackend(tmp_path / "own-venv" / "bin" / "python")
    remote = FakeBackend(python, remote="ssh gpu-box python -m backend serve")
    seen = []
    job = backend_env.BackendEnvJob("install", env, builder.plan.log_path)
    hook = backend_env.stop_backend_hook(job, lambda: running, lambda: False)
    builder.before_swap = lambda: (seen.append((env / "tag").read_text()), hook())
    builder._finish(environment.staging_dir(env))
    assert seen == ["old"] and running.stops == 1  # stopped while the old environment was still in place
    assert (env / "tag").read_text() == "new"
    for other in (elsewhere, remote):  # a backend not running from this environment keeps running
        backend_env.stop_backend_hook(job, lambda o=other: o, lambda: False)()
        assert other.stops == 0 and other.running


def test_the_swap_waits_for_a_motion_being_made_and_cancel_still_stops_it(tmp_path):
    env = tmp_path / environment.ENV_FOLDER
    running = FakeBackend(made_env(env))
    job = backend_env.BackendEnvJob("repair", env, tmp_path / "log")
    answers = iter([True, True, False])
    backend_env.stop_backend_hook(job, lambda: running, lambda: next(answers), interval=0.01)()
    assert running.stops == 1 and next(answers, "asked after") == "asked after"
    job.cancel_event.set()
    with pytest.raises(environment.Cancelled):
        backend_env.stop_backend_hook(job, lambda: running, lambda: True, interval=0.01)()


def test_a_swap_that_fails_halfway_puts_the_installed_environment_back(tmp_path, monkeypatch):
    builder = environment.Builder(plan(tmp_path))
    env = builder.plan.env_dir
    made_env(env)
    made_env(environment.staging_dir(env), tag="new")
    real_replace, calls = os.replace, []

    def replace(src, dst):
        calls.append((Path(src).name, Path(dst).name))
        if len(calls) == 2:  # the new environment cannot be renamed into place
            raise PermissionError(13, "Access is denied", str(src))
        real_replace(src, dst)

    monkeypatch.setattr(environment.os, "replace", replace)
    with pytest.raises(client.BackendError, match="cannot write"):
        builder._finish(environment.staging_dir(env))
    monkeypatch.setattr(environment.os, "replace", real_replace)
    assert calls[:2] == [("backend-env", "backend-env.old"), ("backend-env.staging", "backend-env")]
    assert (env / "tag").read_text() == "old" and environment.installed_python(env) is not None
    assert not environment.old_dir(env).exists()


def test_an_old_environment_left_without_one_in_place_is_restored_not_deleted(tmp_path):
    builder = environment.Builder(plan(tmp_path))
    env = builder.plan.env_dir
    made_env(environment.old_dir(env))  # Blender was killed between the swap's two renames
    builder.remove_leftovers()
    assert (env / "tag").read_text() == "old" and not environment.old_dir(env).exists()
    made_env(environment.old_dir(env), tag="older")  # with an environment in place: a leftover
    builder.remove_leftovers()
    assert (env / "tag").read_text() == "old" and not environment.old_dir(env).exists()


def test_an_environment_whose_python_is_gone_or_not_executable_is_not_used(tmp_path, monkeypatch):
    base = tmp_path / "blender-4.2" / "python3.11"
    base.parent.mkdir()
    shutil.copy(sys.executable, base)
    env = tmp_path / environment.ENV_FOLDER
    python = made_env(env, base_python=str(base))
    assert environment.installed_python(env) == python and environment.gone_base_python(env) is None
    base.unlink()  # Blender moved or upgraded
    assert environment.installed_python(env) is None
    assert environment.gone_base_python(env) == str(base)
    monkeypatch.setattr(backend_env, "CURRENT", None)
    with pytest.raises(client.BackendError, match="made from a Python that is gone") as err:
        backend_env.start_repair(env, REPO, tmp_path / "log", True)
    assert str(base) in err.value.problem and "Install Backend" in err.value.fix
    assert not backend_env.CURRENT.running  # refused: nothing started
    if os.name != "nt":
        shutil.copy(sys.executable, base)
        python.chmod(0o644)
        assert environment.installed_python(env) is None


def test_folders_remove_did_not_finish_deleting_are_deleted_by_the_next_install(tmp_path):
    builder = environment.Builder(plan(tmp_path))
    env = builder.plan.env_dir
    made_env(env)
    halves = [env.with_name(f"backend-env{environment.REMOVING_INFIX}4242"),
              env.with_name(f"backend-env.old{environment.REMOVING_INFIX}77")]
    for half in halves:
        made_env(half)
    unrelated = env.with_name("weights")
    unrelated.mkdir()
    builder.remove_leftovers()
    assert not any(half.exists() for half in halves)
    assert (env / "tag").read_text() == "old" and unrelated.is_dir()
