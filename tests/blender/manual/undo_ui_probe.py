"""Probe of the undo mechanism in Blender with a UI (a manual probe, tests/blender/README.md: no
wrapper, pytest never runs it).

``jobs._apply`` calls ``bpy.ops.momask.apply_result("EXEC_DEFAULT", True, job_id=...)`` from a timer.
This checks, in a real windowed Blender, that an UNDO operator called from a timer pushes its undo
step only when given the positional ``undo=True`` argument: without it one Ctrl+Z also takes back
the user's previous edit. (The bpy module has no UI; tests/blender/addon_lifecycle.py checks the same
there after making an undo stack with ``ed.undo_push``.) It registers a dummy operator, not the
add-on, so it runs on any Blender with ``temp_override`` (3.2+), e.g. Debian's 3.4:

    xvfb-run -a blender --factory-startup -P tests/blender/manual/undo_ui_probe.py -- OUT.json

OUT.json gets the frame numbers seen; expected: A_after_bump 11, A_after_one_undo 1 (no undo
argument: the user's edit A is lost too), B_after_bump 21, B_after_one_undo 20, B_after_redo 21.
Exit code 0 when the fix's behaviour is seen, 1 otherwise.
"""

from __future__ import annotations

import json
import os
import sys

import bpy

OUT = sys.argv[sys.argv.index("--") + 1] if "--" in sys.argv else "undo_ui_probe.json"
results: dict[str, object] = {"version": bpy.app.version_string, "background": bpy.app.background}


class TEST_OT_bump(bpy.types.Operator):
    bl_idname = "test.bump"
    bl_label = "Bump"
    bl_options = {"REGISTER", "UNDO"}

    def execute(self, context):
        context.scene.frame_start += 1
        return {"FINISHED"}


bpy.utils.register_class(TEST_OT_bump)


def frame() -> int:
    return bpy.data.scenes[0].frame_start


def user_edit(window, value: int, name: str) -> None:
    with bpy.context.temp_override(window=window):
        bpy.data.scenes[0].frame_start = value
        bpy.ops.ed.undo_push(message=name)


def undo(window, op: str = "undo") -> None:
    with bpy.context.temp_override(window=window):
        getattr(bpy.ops.ed, op)()


def step():
    window = bpy.context.window_manager.windows[0]
    try:
        user_edit(window, 10, "user edit A")
        bpy.ops.test.bump()  # from a timer, without the undo argument (the old jobs.py)
        results["A_after_bump"] = frame()
        undo(window)
        results["A_after_one_undo"] = frame()
        user_edit(window, 20, "user edit B")
        bpy.ops.test.bump("EXEC_DEFAULT", True)  # as jobs.py calls momask.apply_result now
        results["B_after_bump"] = frame()
        undo(window)
        results["B_after_one_undo"] = frame()
        undo(window, "redo")
        results["B_after_redo"] = frame()
    except Exception as exc:  # noqa: BLE001
        results["error"] = f"{type(exc).__name__}: {exc}"
    seen = tuple(results.get(key) for key in ("B_after_bump", "B_after_one_undo", "B_after_redo"))
    ok = seen == (21, 20, 21)
    results["ok"] = ok
    with open(OUT, "w") as handle:
        json.dump(results, handle, indent=1)
    print("UNDO PROBE", json.dumps(results), flush=True)
    os._exit(0 if ok else 1)


bpy.app.timers.register(step, first_interval=1.0)
