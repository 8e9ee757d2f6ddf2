"""The Blender tests' naming convention (tests/blender/README.md) holds: every script in tests/blender/
that is not a helper is run by the one wrapper named after it, and every wrapper runs only its own
script, so a reader finds one from the other by name."""

from __future__ import annotations

import re

from tests.conftest import REPO

TESTS = REPO / "tests"
HELPERS = {"cases", "rigs"}                  # imported by the scripts; not tests themselves
RUNS = re.compile(r'run_blender\(\s*[^,()]+,\s*"([^"]+)\.py"')


def wrappers() -> dict[str, list[str]]:
    """Test file → the tests/blender scripts it runs."""
    found = {}
    for path in [*TESTS.glob("test_*.py"), *(TESTS / "momask_blender").rglob("test_*.py")]:
        scripts = RUNS.findall(path.read_text())
        if scripts:
            found[path.relative_to(REPO).as_posix()] = scripts
    return found


def test_each_wrapper_runs_the_script_of_its_own_name():
    runs = wrappers()
    assert runs, "no wrapper calls run_blender"
    for wrapper, scripts in runs.items():
        name = wrapper.rsplit("/", 1)[1].removeprefix("test_").removesuffix(".py")
        assert set(scripts) == {name}, f"{wrapper} runs {sorted(set(scripts))}; it may only run {name}.py"


def test_each_script_has_its_wrapper():
    run = {script for scripts in wrappers().values() for script in scripts}
    scripts = {p.stem for p in (TESTS / "blender").glob("*.py")} - HELPERS
    assert scripts - run == set(), (f"tests/blender scripts that no wrapper runs: {sorted(scripts - run)}; "
                                    "add tests/momask_blender/<pkg>/test_<name>.py, or move a manual probe "
                                    "to tests/blender/manual/")
    assert run - scripts == set(), f"wrappers run scripts that do not exist: {sorted(run - scripts)}"
