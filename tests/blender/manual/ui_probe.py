"""The add-on in a real, windowed Blender 4.x (not the ``bpy`` module, not --background): a probe.

A manual probe (tests/blender/README.md): no wrapper, pytest never runs it. It drives the scenario
from ``bpy.app.timers`` while the add-on's own persistent timer (``jobs._timer``) applies results,
exactly as in real use:

a. Rigify human metarig, active; the MoMask panel's Generate operator called with a 3D-viewport
   context. Click-to-keys = from the operator call until the probe (polling every 2 ms) sees the
   job applied, i.e. after the add-on's timer wrote the keys and Blender redrew; the record also has
   ``reply_received_s`` (the worker thread had the backend's reply), ``keys_written_s`` and
   ``applying_s`` (``jobs._apply`` is wrapped to time it) and the redraws counted meanwhile. A cold
   click (backend start + model load, "Warm Up While Typing" off) and 3 warm clicks.
a2. "Warm Up While Typing" (if the add-on has that preference): after Free Memory, a prompt edit;
   Generate once the warm-up is done, and 0.3 s after the edit (while it still runs).
b. Undo in the UI: a user edit (the metarig moved, one undo step), a generation, then a real Ctrl+Z
   sent with ``xdotool`` (falls back to ``bpy.ops.ed.undo`` and says so if the key never reaches
   Blender): the take must be gone, the edit kept; Ctrl+Shift+Z must bring the take back.
c. Cancel: a long job (50 steps, 9.8 s, 8 variations) cancelled with ``momask.cancel`` right after
   the click and again mid-decoding; the rig's animation must be untouched and Generate available
   again; a normal generation afterwards must still work.
d. A screenshot of the screen (``import -window root``) with the sidebar on the MoMask tab after
   that real generation. With random test weights the pose is noise, not a motion.

Results in ``$MOMASK_UI_OUT`` (default /tmp/momask_ui): results.json, panel_4x.png, backend.log;
``UIPROBE`` lines on stdout. Exit code 0 when every check passed.

Run it twice: first in the background (``-b``), which installs the extension zip into the throwaway
user config named by BLENDER_USER_RESOURCES, sets its preferences, turns the splash screen off (the
first start's Quick Setup splash covers the viewport and swallows xdotool's keys) and saves them;
then windowed under Xvfb. How it was run (Debian bookworm host, as root, Blender 4.3.2 from Debian
trixie in a chroot; the host's packages are untouched)::

    apt-get install debootstrap
    debootstrap --variant=minbase trixie /work/trixie http://deb.debian.org/debian
    T=/work/trixie; cp /etc/resolv.conf $T/etc/
    mount -t proc proc $T/proc; mount --bind /dev $T/dev; mount --bind /dev/pts $T/dev/pts
    mount -t sysfs sys $T/sys; mount -t tmpfs tmpfs $T/dev/shm
    chroot $T apt-get update
    chroot $T apt-get install -y --no-install-recommends blender xvfb xauth xdotool imagemagick \\
        x11-utils python3-numpy mesa-utils libgl1-mesa-dri
    # the backend's interpreter (.venv -> /root/.pyenv) and this checkout, read-only
    for d in /root/.pyenv /work/main; do mkdir -p $T$d; mount --bind $d $T$d; \\
        mount -o remount,bind,ro $T$d; done
    # tiny random weights and the extension zip, made on the host from the checkout
    cd /work/main && .venv/bin/python -m backend make-test-weights $T/tmp/momask_w --size tiny
    python3 build.py build --out $T/tmp/momask_dist
    # the runs (inside the chroot those are /tmp/momask_w and /tmp/momask_dist/...)
    E="env BLENDER_USER_RESOURCES=/tmp/momask_ui/user HOME=/root"
    chroot $T $E blender -b -P /work/main/tests/blender/manual/ui_probe.py
    chroot $T $E xvfb-run -a -s "-screen 0 1920x1080x24" \\
        blender -P /work/main/tests/blender/manual/ui_probe.py
    # results: $T/tmp/momask_ui/. Afterwards unmount (umount $T/work/main $T/root/.pyenv $T/dev/shm
    # $T/dev/pts $T/dev $T/sys $T/proc) and check that `mount | grep trixie` prints nothing before
    # ever deleting anything under $T.

Environment: MOMASK_UI_ZIP (default /tmp/momask_dist/momask_blender-0.1.0.zip), MOMASK_UI_PYTHON
(default /work/main/.venv/bin/python), MOMASK_UI_WEIGHTS (default /tmp/momask_w), MOMASK_UI_OUT.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
import traceback
from pathlib import Path

import bpy

ZIP = Path(os.environ.get("MOMASK_UI_ZIP", "/tmp/momask_dist/momask_blender-0.1.0.zip"))
BACKEND_PYTHON = os.environ.get("MOMASK_UI_PYTHON", "/work/main/.venv/bin/python")
WEIGHTS = os.environ.get("MOMASK_UI_WEIGHTS", "/tmp/momask_w")
OUT = Path(os.environ.get("MOMASK_UI_OUT", "/tmp/momask_ui"))
PKG = "momask_blender"
MODULE = f"bl_ext.user_default.{PKG}"
POLL = 0.002  # how often the probe looks for the applied take (the add-on's own timer is slower)
RIG = "metarig"

results: dict = {
    "blender": bpy.app.version_string,
    "background": bpy.app.background,
    "checks": {},
}


def log(*parts) -> None:
    print("UIPROBE", *parts, flush=True)


def check(name: str, ok: bool, detail="") -> None:
    results["checks"][name] = {"ok": bool(ok), "detail": detail}
    log("CHECK", "ok  " if ok else "FAIL", name, detail)


# --- context ------------------------------------------------------------------------------------


def window():
    return bpy.context.window_manager.windows[0]


def view3d():
    """(area, its main region, its sidebar region) of the largest 3D viewport."""
    areas = [a for a in window().screen.areas if a.type == "VIEW_3D"]
    area = max(areas, key=lambda a: a.width * a.height)
    main = next(r for r in area.regions if r.type == "WINDOW")
    sidebar = next(r for r in area.regions if r.type == "UI")
    return area, main, sidebar


@contextlib.contextmanager
def viewport():
    """The context of a click in the 3D viewport (where the MoMask panel lives)."""
    area, main, _ = view3d()
    with bpy.context.temp_override(window=window(), screen=window().screen, area=area, region=main):
        yield


def rig():
    """The metarig, looked up again every time (an undo step replaces every ID)."""
    return bpy.data.objects[RIG]


def action_name() -> str | None:
    ad = rig().animation_data
    return ad.action.name if ad is not None and ad.action is not None else None


def take_names() -> list[str]:
    return sorted(a.name for a in bpy.data.actions if a.get("momask_take"))


def addon():
    import importlib

    return importlib.import_module(MODULE), importlib.import_module(MODULE + ".jobs")


# --- set-up -------------------------------------------------------------------------------------


def install_and_configure(warm_up: bool = False) -> None:
    if MODULE not in bpy.context.preferences.addons:
        result = bpy.ops.extensions.package_install_files(
            filepath=str(ZIP), repo="user_default", enable_on_install=True
        )
        log("installed", ZIP, result)
    if MODULE not in bpy.context.preferences.addons:
        raise RuntimeError(f"{MODULE} is not enabled; enabled: {list(bpy.context.preferences.addons.keys())}")
    prefs = bpy.context.preferences.addons[MODULE].preferences
    prefs.backend_python = BACKEND_PYTHON
    prefs.weights_dir = WEIGHTS
    prefs.device = "cpu"
    if hasattr(prefs, "warm_up"):  # "Warm Up While Typing": off for the cold click, on in part a2
        prefs.warm_up = warm_up
    from importlib import import_module

    results["backend_log"] = import_module(MODULE + ".preferences").client_config().log_path
    log("prefs set; backend log:", results["backend_log"])


def make_scene() -> None:
    import addon_utils

    for name in ("Cube",):
        if name in bpy.data.objects:
            bpy.data.objects.remove(bpy.data.objects[name])
    addon_utils.enable("rigify", default_set=True)
    with viewport():
        bpy.ops.object.armature_human_metarig_add()
    obj = bpy.context.view_layer.objects.active
    obj.name = RIG
    for other in bpy.context.view_layer.objects:
        other.select_set(other == obj)
    bpy.context.view_layer.objects.active = obj

    area, _, sidebar = view3d()
    space = area.spaces.active
    space.show_region_ui = True
    space.region_3d.view_rotation = (0.8, 0.45, 0.15, 0.35)  # a three-quarter view
    with viewport():
        bpy.ops.view3d.view_selected()
    s = bpy.context.scene.momask
    s.prompt = "a person walks forward and waves"
    s.auto_length = False
    s.seconds = 4.0
    area.tag_redraw()


def show_momask_tab() -> bool:
    area, _, sidebar = view3d()
    area.spaces.active.show_region_ui = True
    try:
        sidebar.active_panel_category = "MoMask"
    except (AttributeError, TypeError) as exc:
        log("no Region.active_panel_category:", exc)
        return False
    area.tag_redraw()
    return sidebar.active_panel_category == "MoMask"


DRAWS = {"WINDOW": 0, "UI": 0}


def count_draws() -> None:
    """Count the 3D viewport's redraws (main region and sidebar): the add-on tags redraws while a job runs."""
    def counter(region_type):
        def draw():
            DRAWS[region_type] += 1
        return draw

    for region_type in DRAWS:
        bpy.types.SpaceView3D.draw_handler_add(counter(region_type), (), region_type, "POST_PIXEL")


APPLIED: dict[int, tuple[float, float]] = {}  # job id -> (perf_counter when applying began, when it ended)


def time_applying() -> None:
    """Wrap ``jobs._apply`` (instrumentation only; the add-on's own timer still calls it) to split a
    click's time: the backend's reply, the keys written (incl. the undo push), the redraw after."""
    _, jobs = addon()
    apply = jobs._apply

    def timed_apply(job) -> None:
        begin = time.perf_counter()
        try:
            apply(job)
        finally:
            APPLIED[job.id] = (begin, time.perf_counter())

    jobs._apply = timed_apply


def draw_cost() -> dict:
    """Milliseconds per redraw (``wm.redraw_timer``): the 3D viewport's main region and the whole window."""
    cost = {}
    for kind in ("DRAW", "DRAW_WIN"):
        with viewport():
            begin = time.perf_counter()
            bpy.ops.wm.redraw_timer(type=kind, iterations=5)
            cost[kind] = round(1000 * (time.perf_counter() - begin) / 5, 1)
    return cost


def user_edit(x: float, message: str) -> None:
    rig().location.x = x
    with bpy.context.temp_override(window=window()):
        bpy.ops.ed.undo_push(message=message)


# --- the scenario (a generator: each yield is the delay before the next step) --------------------


def generate(label: str, timeout: float = 600.0):
    """Press Generate and wait for the take; returns a record (via StopIteration.value)."""
    _, jobs = addon()
    draws = dict(DRAWS)
    start = time.perf_counter()
    with viewport():
        ret = bpy.ops.momask.generate()
    op_seconds = time.perf_counter() - start
    job = jobs.STATE.active
    if ret != {"FINISHED"} or job is None:
        raise RuntimeError(f"{label}: Generate returned {ret}, error {jobs.STATE.error}")
    done_at = None  # when the worker thread had the backend's reply (state "done", not yet applied)
    while not job.finished:
        if done_at is None and job.state == "done":
            done_at = time.perf_counter()
        if time.perf_counter() - start > timeout:
            raise TimeoutError(f"{label}: no result after {timeout} s (stage {job.stage})")
        yield POLL
    seconds = time.perf_counter() - start
    made = job.made_actions
    begin, end = APPLIED.get(job.id, (None, None))
    record = {
        "keys_written_s": round(end - start, 4) if end else None,  # click -> apply_result returned
        "click_to_keys_s": round(seconds, 4),
        "operator_call_s": round(op_seconds, 4),
        "reply_received_s": round(done_at - start, 4) if done_at else None,
        "applying_s": round(end - begin, 4) if end else None,  # momask.apply_result (keys + undo push)
        "viewport_redraws": DRAWS["WINDOW"] - draws["WINDOW"],
        "sidebar_redraws": DRAWS["UI"] - draws["UI"],
        "state": job.state,
        "message": job.result_message,
        "take": made[0] if made else None,
        "rig_action": action_name(),
        "backend_timings": (job.data or {}).get("timings"),
    }
    log(label, json.dumps(record))
    if job.state != "applied" or not made or action_name() != made[0]:
        raise RuntimeError(f"{label}: not applied: {record}; error {jobs.STATE.error}")
    return record


def xdotool(*keys: str) -> bool:
    """Point at the 3D viewport and press ``keys`` with the X test extension (a real key event)."""
    area, main, _ = view3d()
    win = window()
    x = win.x + main.x + main.width // 2
    y = win.height - (main.y + main.height // 2) + win.y
    try:
        # No window manager under Xvfb: the keyboard focus follows the pointer (windowfocus would hang).
        cmd = ["xdotool", "mousemove", str(x), str(y), "sleep", "0.2", "key", "--clearmodifiers", *keys]
        subprocess.Popen(cmd)  # not waited on here: Blender must keep running its event loop
        return True
    except (OSError, subprocess.SubprocessError) as exc:
        log("xdotool failed:", exc)
        return False


def press(keys: str, op: str, done, label: str):
    """Send ``keys`` for real; if Blender has not reacted after 5 s, call ``ed.<op>`` instead."""
    start = time.perf_counter()
    method = "xdotool"
    xdotool(keys)
    while not done():
        if time.perf_counter() - start > 5.0:
            method = f"bpy.ops.ed.{op} (xdotool key not seen)"
            with bpy.context.temp_override(window=window()):
                getattr(bpy.ops.ed, op)()
            break
        yield 0.02
    results.setdefault("undo_method", {})[label] = method
    log(label, "by", method, f"{time.perf_counter() - start:.3f} s")


def scenario():
    yield 1.0  # the window is up and drawn
    install_and_configure(warm_up=False)
    time_applying()
    count_draws()
    make_scene()
    yield 0.5
    check("momask_tab_shown", show_momask_tab())
    try:
        import gpu

        platform = gpu.platform
        results["gpu"] = f"{platform.vendor_get()} / {platform.renderer_get()} / {platform.version_get()}"
    except Exception as exc:  # noqa: BLE001
        results["gpu"] = repr(exc)
    with bpy.context.temp_override(window=window()):
        bpy.ops.ed.undo_push(message="probe set-up")
    yield 0.5
    results["redraw_ms"] = draw_cost()
    log("redraw ms", results["redraw_ms"])

    # a. click-to-keys: cold, then warm
    clicks = [(yield from generate("cold"))]
    for i in range(3):
        yield 0.3
        clicks.append((yield from generate(f"warm{i + 1}")))
    results["clicks"] = clicks
    warm = sorted(c["click_to_keys_s"] for c in clicks[1:])
    results["click_to_keys"] = {"cold_s": clicks[0]["click_to_keys_s"],
                                "warm_s": [c["click_to_keys_s"] for c in clicks[1:]],
                                "warm_median_s": warm[len(warm) // 2],
                                "keys_written_warm_s": [c["keys_written_s"] for c in clicks[1:]]}

    # a2. "Warm Up While Typing" (when the add-on has it): Free Memory, then a prompt edit starts the
    # backend in the background; Generate pressed once the warm-up is done, and again (after another
    # Free Memory) 0.3 s after the edit, while the warm-up still runs.
    _, jobs = addon()
    prefs = bpy.context.preferences.addons[MODULE].preferences
    if hasattr(prefs, "warm_up"):
        prefs.warm_up = True
        s = bpy.context.scene.momask
        for i, (label, delay) in enumerate((("after_warm_up", None), ("during_warm_up", 0.3))):
            with viewport():
                bpy.ops.momask.free_memory()
            while jobs.backend_running():
                yield 0.05
            yield 0.3
            typed = time.perf_counter()
            # as when Enter confirms the prompt field: the property's update callback runs
            s.prompt = ("a person jogs forward", "a person jumps twice")[i]
            started = jobs.warming_up()
            if delay is None:
                while jobs.warming_up():
                    yield POLL
                warm_s = time.perf_counter() - typed
            else:
                yield delay
                warm_s = None
            record = yield from generate(label)
            record.update(warm_up_started=started, warm_up_s=round(warm_s, 3) if warm_s else None)
            results.setdefault("warm_up_while_typing", {})[label] = record
            check(f"warm_up_{label}", started and record["state"] == "applied", record)
        prefs.warm_up = False
        s.prompt = "a person walks forward and waves"

    # b. undo / redo with real keys
    yield 0.3
    before_action = action_name()
    user_edit(0.25, "user edit: move the metarig")
    yield 0.2
    record = yield from generate("undo-gen")
    take = record["take"]
    check("take_applied", action_name() == take and take in bpy.data.actions and rig().location.x == 0.25,
          f"action {action_name()}")
    yield 0.5
    yield from press("ctrl+z", "undo", lambda: take not in bpy.data.actions, "ctrl+z")
    yield 0.3
    after_undo = {"action": action_name(), "take_exists": take in bpy.data.actions,
                  "location_x": round(rig().location.x, 4), "takes": len(take_names())}
    results["after_undo"] = after_undo
    check("undo_removes_take_only",
          not after_undo["take_exists"] and after_undo["action"] == before_action
          and after_undo["location_x"] == 0.25,
          after_undo)
    yield from press("ctrl+shift+z", "redo", lambda: take in bpy.data.actions, "ctrl+shift+z")
    yield 0.3
    after_redo = {"action": action_name(), "take_exists": take in bpy.data.actions,
                  "location_x": round(rig().location.x, 4), "takes": len(take_names())}
    results["after_redo"] = after_redo
    check("redo_restores_take", after_redo["take_exists"] and after_redo["action"] == take
          and after_redo["location_x"] == 0.25, after_redo)

    # c. cancel a long job: at once, and mid-decoding
    _, jobs = addon()
    s = bpy.context.scene.momask
    s.steps, s.seconds, s.variations = 50, 9.8, 8
    for when in ("at_once", "mid_decoding"):
        yield 0.3
        before = {"action": action_name(), "actions": sorted(a.name for a in bpy.data.actions)}
        start = time.perf_counter()
        with viewport():
            bpy.ops.momask.generate()
        job = jobs.STATE.active
        if when == "mid_decoding":
            while not job.finished and job.stage not in ("base", "residual", "decode", "retarget"):
                yield 0.001
        stage_at_cancel = job.stage
        cancel_at = time.perf_counter()
        with viewport():
            cancel_poll = bpy.ops.momask.cancel.poll()
            ret = bpy.ops.momask.cancel() if cancel_poll else None
        while not job.finished:
            yield POLL
        freed = time.perf_counter()
        yield 0.3
        with viewport():
            generate_poll = bpy.ops.momask.generate.poll()
        after = {"action": action_name(), "actions": sorted(a.name for a in bpy.data.actions)}
        rec = {"stage_at_cancel": stage_at_cancel, "click_to_cancel_s": round(cancel_at - start, 4),
               "cancel_to_free_s": round(freed - cancel_at, 4), "cancel_returned": str(ret),
               "job_state": job.state, "panel_message": jobs.STATE.message, "panel_error": jobs.STATE.error,
               "generate_available": generate_poll, "animation_untouched": before == after}
        results.setdefault("cancel", {})[when] = rec
        log("cancel", when, json.dumps(rec, default=str))
        check(f"cancel_{when}", job.state == "cancelled" and before == after and generate_poll
              and not jobs.STATE.busy, rec)
    s.steps, s.seconds, s.variations = 10, 4.0, 1
    yield 0.3
    results["after_cancel"] = yield from generate("after-cancel")

    # d. the screenshot, after that real generation
    scene = bpy.context.scene
    scene.frame_set(scene.frame_current + 30)
    check("momask_tab_shown_before_shot", show_momask_tab())
    with viewport():
        bpy.ops.view3d.view_selected()
        bpy.ops.view3d.zoom(delta=-1)
    yield 1.5
    OUT.mkdir(parents=True, exist_ok=True)
    shot = OUT / "panel_4x.png"
    grab = subprocess.run(["import", "-window", "root", str(shot)],
                          capture_output=True, text=True, timeout=60)
    check("screenshot_import", grab.returncode == 0 and shot.is_file(), grab.stderr.strip()[-300:])
    # (bpy.ops.screen.screenshot is no use here: under Xvfb + llvmpipe it saves an all-black image)
    _, _, sidebar = view3d()
    results["sidebar"] = {"category": getattr(sidebar, "active_panel_category", None), "width": sidebar.width}


def finish(code: int) -> None:
    with contextlib.suppress(Exception):
        log_path = results.get("backend_log")
        if log_path and Path(log_path).is_file():
            shutil.copy(log_path, OUT / "backend.log")
    results["ok"] = code == 0 and all(c["ok"] for c in results["checks"].values())
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "results.json").write_text(json.dumps(results, indent=1, default=str))
    log("RESULTS", json.dumps(results, default=str))
    sys.stdout.flush()
    if results["ok"]:  # the real quit path (unregisters the add-on, stops the backend); exits 0
        with contextlib.suppress(Exception), bpy.context.temp_override(window=window()):
            bpy.ops.wm.quit_blender()
            return
    with contextlib.suppress(Exception):
        addon()[1].stop_backend()
    os._exit(0 if results["ok"] else 1)


def prepare_user_config() -> None:
    """``blender -b -P ui_probe.py``: install the extension into BLENDER_USER_RESOURCES, set its
    preferences, turn the splash off (a first start shows the Quick Setup splash, which covers the
    viewport and swallows the xdotool keys) and save the preferences; then run it windowed."""
    install_and_configure()
    bpy.context.preferences.view.show_splash = False
    bpy.ops.wm.save_userpref()
    log("user config ready:", bpy.utils.resource_path("USER"), list(bpy.context.preferences.addons.keys()))


if bpy.app.background:
    prepare_user_config()
    sys.exit(0)

STEPS = scenario()


def tick() -> float | None:
    try:
        return next(STEPS)
    except StopIteration:
        finish(0)
    except Exception:  # noqa: BLE001
        results["error"] = traceback.format_exc()
        log("ERROR", results["error"])
        finish(1)
    return None


bpy.app.timers.register(tick, first_interval=1.0)
