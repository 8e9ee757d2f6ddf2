"""The torch build Install Backend picks (momask_blender/install/torch_build.py), over a table of
platforms, processors, NVIDIA drivers, Pythons and overrides: the build, its index, and the reason
the preferences show."""

from __future__ import annotations

import subprocess

import pytest

from tests.momask_blender.install.addon_modules import load

torch_build = load("install.torch_build")
CPU_INDEX = "https://download.pytorch.org/whl/cpu"

# system, machine, driver, python, override -> build key, index, words the reason must contain
TABLE = [
    # Linux x86_64: by driver
    ("Linux", "x86_64", None, (3, 11), "auto", "cpu", CPU_INDEX, ["no NVIDIA driver"]),
    ("Linux", "x86_64", "580.95.05", (3, 11), "auto", "cu130", "https://download.pytorch.org/whl/cu130",
     ["CUDA 13.0", "580.95.5", "580.65.6+"]),
    ("Linux", "x86_64", "575.57.08", (3, 11), "auto", "cu128", "https://download.pytorch.org/whl/cu128",
     ["CUDA 12.8", "575.57.8"]),
    ("Linux", "x86_64", "560.35.03", (3, 12), "auto", "cu126", "https://download.pytorch.org/whl/cu126",
     ["CUDA 12.6"]),
    ("Linux", "x86_64", "535.104.05", (3, 11), "auto", "cpu", CPU_INDEX,
     ["535.104.5 is older than 560.28.3", "CUDA 12.6", "Update the NVIDIA driver"]),
    ("Linux", "x86_64", "470.82.01", (3, 11), "auto", "cpu", CPU_INDEX, ["older than"]),
    ("Linux", "x86_64", "NVIDIA-SMI has failed", (3, 11), "auto", "cpu", CPU_INDEX,
     ["NVIDIA-SMI has failed"]),
    # Windows: its own driver numbering
    ("Windows", "AMD64", None, (3, 11), "auto", "cpu", CPU_INDEX, ["no NVIDIA driver"]),
    ("Windows", "AMD64", "581.57", (3, 11), "auto", "cu130", "https://download.pytorch.org/whl/cu130",
     ["CUDA 13.0"]),
    ("Windows", "AMD64", "570.65", (3, 11), "auto", "cu128", "https://download.pytorch.org/whl/cu128",
     ["CUDA 12.8", "570.65+"]),
    ("Windows", "AMD64", "560.70", (3, 11), "auto", "cpu", CPU_INDEX, ["560.70 is older than 560.76"]),
    # 64-bit ARM Linux: CUDA 12.8+ only (Grace, Jetson Thor), else the CPU build
    ("Linux", "aarch64", None, (3, 11), "auto", "cpu", CPU_INDEX, ["no NVIDIA driver"]),
    ("Linux", "aarch64", "575.57.08", (3, 11), "auto", "cu128", "https://download.pytorch.org/whl/cu128",
     ["CUDA 12.8"]),
    ("Linux", "aarch64", "565.57.01", (3, 11), "auto", "cpu", CPU_INDEX, ["older than 570.26"]),
    # macOS: Apple Silicon gets PyPI's MPS build
    ("Darwin", "arm64", None, (3, 11), "auto", "default", "https://pypi.org/simple", ["MPS"]),
    # overrides
    ("Linux", "x86_64", "580.95.05", (3, 11), "cpu", "cpu", CPU_INDEX, ["chosen in the preferences"]),
    ("Linux", "x86_64", None, (3, 11), "cu126", "cu126", "https://download.pytorch.org/whl/cu126",
     ["chosen in the preferences", "no NVIDIA driver was found"]),
    ("Windows", "AMD64", "581.57", (3, 11), "cu128", "cu128", "https://download.pytorch.org/whl/cu128",
     ["chosen in the preferences"]),
    ("Linux", "x86_64", None, (3, 11), "default", "default", "https://pypi.org/simple", ["PyPI's default"]),
]


@pytest.mark.parametrize("system, machine, driver, python, override, key, index, words", TABLE)
def test_the_build_fits_the_machine(system, machine, driver, python, override, key, index, words):
    choice = torch_build.choose(system, machine, driver, python, override)
    assert choice.build is not None, choice
    assert (choice.build.key, choice.build.index_url) == (key, index), choice
    for word in words:
        assert word in choice.reason, (word, choice.reason)
    assert choice.build.device == {"cpu": "cpu", "default": choice.build.device}.get(key, "cuda")


# no build fits: the problem and the fix
NONE_FITS = [
    ("Darwin", "x86_64", None, (3, 11), "auto", "Intel Macs", "Remote Backend"),
    ("Darwin", "arm64", None, (3, 11), "cu128", "no CUDA builds of torch for macOS", "Auto"),
    ("Linux", "aarch64", "575.57.08", (3, 11), "cu126", "no CUDA 12.6 build", "Auto or CPU"),
    ("Windows", "ARM64", None, (3, 11), "auto", "Windows on ARM64 with Python 3.11", "3.12"),
    ("FreeBSD", "amd64", None, (3, 11), "auto", "no builds for FreeBSD", "Remote Backend"),
    ("Linux", "x86_64", None, (3, 11), "rocm", "Unknown Torch Build", "Auto"),
]


@pytest.mark.parametrize("system, machine, driver, python, override, problem, fix", NONE_FITS)
def test_no_build_gives_the_problem_and_the_fix(system, machine, driver, python, override, problem, fix):
    choice = torch_build.choose(system, machine, driver, python, override)
    assert choice.build is None, choice
    assert problem.lower() in choice.reason.lower(), choice.reason
    assert fix in choice.fix, choice.fix


def test_windows_on_arm_with_python_312_gets_the_cpu_build():
    choice = torch_build.choose("Windows", "ARM64", None, (3, 12), "auto")
    assert choice.build is not None and choice.build.key == "cpu"


def test_every_override_is_a_choice_the_preferences_offer():
    keys = [key for key, _, _ in torch_build.OVERRIDES]
    assert keys[0] == "auto" and len(set(keys)) == len(keys)
    assert {b.tag for b in torch_build.CUDA_BUILDS} <= set(keys)
    for key in keys:  # each one gives a build, or a reason, on Linux with a new driver
        choice = torch_build.choose("Linux", "x86_64", "580.95.05", (3, 11), key)
        assert choice.build is not None, (key, choice)


def completed(code: int, out: str) -> subprocess.CompletedProcess:
    return subprocess.CompletedProcess([], code, stdout=out, stderr="")


def test_the_driver_query_reads_nvidia_smi():
    asked = []

    def run(cmd, **kwargs):
        asked.append(cmd)
        return completed(0, "575.57.08\n575.57.08\n")

    assert torch_build.nvidia_driver(run) == "575.57.08"
    assert asked[0][:2] == ["nvidia-smi", "--query-gpu=driver_version"]


@pytest.mark.parametrize("answer", [
    FileNotFoundError("nvidia-smi"),
    subprocess.TimeoutExpired("nvidia-smi", 10),
    completed(9, "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver."),
    completed(0, ""),
])
def test_no_driver_when_nvidia_smi_is_absent_fails_or_hangs(answer):
    def run(cmd, **kwargs):
        if isinstance(answer, BaseException):
            raise answer
        return answer

    assert torch_build.nvidia_driver(run) is None
