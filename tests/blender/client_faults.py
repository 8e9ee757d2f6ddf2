"""A misbehaving backend seen through the real panel, in real Blender.

Run by tests/momask_blender/remote/test_client_faults.py:
``<bpy python> client_faults.py WEIGHTS_DIR RESULTS_JSON``. The add-on's 'Backend Python' points at
the scripted fake backend (tests/momask_blender/remote/fake_backend.py), which answers ``hello`` and
then sends garbage, or dies in the middle of its reply, on ``generate``. Each time Generate is
pressed through ``bpy.ops.momask.generate``; the script records what the panel shows
(``jobs.STATE.error``) and whether any action or key changed. Then 'Backend Python' is cleared (the
real backend, with the tiny random weights) and Generate must work. The pytest side asserts on the
JSON written to RESULTS_JSON.
"""

from __future__ import annotations

import base64
import json
import os
import sys
import tempfile
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "momask_blender" / "remote"))  # fake_backend
os.environ.setdefault("MOMASK_USER_DIR", tempfile.mkdtemp(prefix="momask_user_"))

import bpy  # noqa: E402  (bpy first: it puts addon_utils on the path)

# isort: split
import addon_utils  # noqa: E402
import fake_backend  # noqa: E402
import rigs  # noqa: E402

WEIGHTS, RESULTS = sys.argv[-2], sys.argv[-1]
FAKE_DIR = Path(tempfile.mkdtemp(prefix="momask_fake_backend_"))
FAULTS = {
    "garbage": [{"line": "Segmentation fault (core dumped) -- not a protocol line"}],
    "dies_mid_reply": [
        {"line": '{"id": @ID@, "type": "progress", "stage": "base", "done": 1, "total": 17}'},
        {"bytes": base64.b64encode(b'{"id": 0, "type": "result", "data": {"takes": [{"jo').decode()},
        {"kill": True},
    ],
}


def snapshot(obj) -> dict:
    """Every action, the one the armature plays, and every key of every F-Curve of every action."""
    from momask_blender.anim import keys

    curves = {}
    for action in bpy.data.actions:
        slot = keys.object_slot(action, obj)
        for fc in keys.Channels(action, slot).fcurves:
            points = [tuple(p.co) for p in fc.keyframe_points]
            curves[f"{action.name}:{fc.data_path}[{fc.array_index}]"] = points
    playing = obj.animation_data.action if obj.animation_data else None
    return {"actions": sorted(a.name for a in bpy.data.actions), "playing": playing.name if playing else None,
            "keys": curves}


def press_generate(obj) -> dict:
    from momask_blender.remote import jobs

    bpy.context.view_layer.objects.active = obj
    obj.select_set(True)
    before = snapshot(obj)
    started = bpy.ops.momask.generate()
    job = jobs.wait(120)
    return {
        "started": sorted(started),
        "state": job.state if job else None,
        "code": job.error[0] if job and job.error else None,
        "panel_error": list(jobs.STATE.error) if jobs.STATE.error else None,
        "panel_message": jobs.STATE.message,
        "unchanged": snapshot(obj) == before,
        "actions_added": sorted(set(snapshot(obj)["actions"]) - set(before["actions"])),
        "pid": jobs.get_client().pid,
    }


def main() -> dict:
    rigs.reset_scene()
    addon_utils.enable("momask_blender", default_set=True, handle_error=None)
    prefs = bpy.context.preferences.addons["momask_blender"].preferences
    prefs.weights_dir = WEIGHTS
    prefs.device = "cpu"
    prefs.warm_up = False
    settings = bpy.context.scene.momask
    settings.randomize_seed = False
    settings.seconds = 2.0
    settings.prompt = "a person walks forward"
    rig = rigs.make_rigify_metarig()
    bone = rig.pose.bones[0]
    bone.location = (0.0, 0.1, 0.0)
    bone.keyframe_insert("location", frame=1)  # the user's own keys, which a failure must not touch

    results: dict = {"faults": {}}
    exe = fake_backend.install(FAKE_DIR, {})
    prefs.backend_python = str(exe)
    for name, actions in FAULTS.items():
        fake_backend.write_scenario(FAKE_DIR, {"generate": actions})
        results["faults"][name] = press_generate(rig)
    prefs.backend_python = ""  # the real backend: $MOMASK_BACKEND_PYTHON, which the test runner sets
    results["healthy"] = press_generate(rig)
    return results


if __name__ == "__main__":
    try:
        outcome = main()
    except Exception:  # noqa: BLE001 (the pytest side shows it)
        outcome = {"exception": traceback.format_exc()}
    Path(RESULTS).write_text(json.dumps(outcome, indent=1))
    rigs.exit_blender(0)
