# ruff: noqa: E402  (a screenshot tool, not a test: imports follow the sys.path set-up)
"""docs/panel.png: the MoMask sidebar tab as an animator sees it mid-use (real Blender UI, headless).

Run from the repository root (Debian's Blender 3.4 under Xvfb; ``xdotool`` drives the mouse):

    xvfb-run -a -s "-screen 0 1600x1440x24" blender --factory-startup \\
        --python tests/blender/addon_screenshot.py

(about 30 s; the UI steps retry until Blender reports a wider sidebar and the MoMask panel drawn).
The "unregister_class ... missing bl_rna" tracebacks at quit come from add-ons whose panels the
script unregistered; they are harmless.

It writes docs/panel.png (``SHOT_OUT=/some/file.png`` writes elsewhere; ``SHOT_DEBUG=1`` also saves
a grab after each UI step next to it) and quits; ``SHOT ...`` lines on stdout tell what happened.

What is real and what is staged:

* The add-on is loaded the legacy way from this checkout and draws its own panels unchanged.
* The rig is the Rigify human metarig, selected and active. Its takes are REAL retargets: the
  HumanML3D sample (``shared/data/humanml3d_000612.npy``) recovered to joints, mapped with the
  backend's ``auto_map`` and solved with its ``retarget`` (numpy only, run inside Blender), then
  written by the add-on's ``keys.write_take`` / ``keys.write_inbetween`` (two variations and one
  in-between). The Bone Mapping box shows ``auto_map``'s answer for this rig.
* Staged: no backend process runs. The job "in progress" is a ``jobs.Job`` set as the active job
  (stage ``base``, 62%) and ``jobs.backend_running`` answers True; the takes' prompts and seeds are
  what such a session would produce. Blender 3.4 has no ``layout.progress`` (4.0+, the bar the panel
  draws): a percentage slider with the same text stands in for it.
* Blender 3.4 has no GENERATED keyframe type (4.2+): the takes' keys are plain keyframes here.
* Blender 3.4's Python has no numpy: the script links the project's ``.venv`` numpy (cp311) into a
  temporary folder on ``sys.path``.
* Screenshot-only UI changes: the other Python sidebar panels are unregistered (only the C "Item"
  tab and MoMask remain), the Bone Mapping sub-panel is registered open, the sidebar is dragged
  wider with xdotool and switched to the MoMask tab by a click on it (3.4 has no Python API
  for either); a missed drag may box-select nothing, so the rig is selected again before the
  grab. The screen is grabbed with Pillow from the ``.venv``.
"""

import contextlib
import os
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

REPO = Path(os.environ.get("MOMASK_REPO", Path(__file__).resolve().parents[2]))
SHARED_DATA = Path(os.environ.get("MOMASK_SHARED_DATA", REPO.parent / "shared" / "data"))
VENV_PYTHON = REPO / ".venv" / "bin" / "python"
OUT = Path(os.environ.get("SHOT_OUT", REPO / "docs" / "panel.png"))
DEBUG = bool(os.environ.get("SHOT_DEBUG"))
WORK = Path(tempfile.mkdtemp(prefix="momask_shot_"))
os.environ.setdefault("MOMASK_USER_DIR", str(WORK / "user"))  # presets go here, not into the real one

MOMASK_DRAWN = [0.0]  # when the MoMask panel last drew
CLICKED = [0.0]  # when the tab was last clicked
PROMPT_NOW = "a person jogs forward, stops and waves with both hands"
PROMPT_TAKES = "a person walks in a circle"
PROMPT_INBETWEEN = "the person jumps"
SEED = 1234
INBETWEEN = (100, 123)  # the preview range the in-between regenerated (scene frames, inclusive)


def log(*args):
    print("SHOT", *args, flush=True)


def link_venv_numpy():
    """Blender 3.4 (Debian) has no numpy; borrow the project's (same Python minor, cp311 wheel)."""
    try:
        import numpy  # noqa: F401
        return
    except ImportError:
        pass
    site = next((REPO / ".venv" / "lib").glob("python3.*/site-packages"))
    shim = WORK / "site"
    shim.mkdir()
    for name in ("numpy", "numpy.libs"):
        if (site / name).exists():
            (shim / name).symlink_to(site / name)
    sys.path.append(str(shim))


sys.path.insert(0, str(REPO))
link_venv_numpy()

import addon_utils
import bpy
import numpy as np

from backend.motion.features import recover_from_ric
from backend.retarget.mapping import auto_map
from backend.retarget.rig import RigDescription
from backend.retarget.solver import retarget


def build_scene():
    """The metarig with two generated takes and one in-between, the settings of a new generation."""
    addon_utils.enable("momask_blender", default_set=True, handle_error=None)
    addon_utils.enable("rigify", default_set=True, handle_error=None)
    from momask_blender import keys, operators, properties, rig_io

    key_types = bpy.types.Keyframe.bl_rna.properties["type"].enum_items.keys()
    if "GENERATED" not in key_types:  # 3.4 predates the GENERATED key type (4.2+): plain keys here
        keys._set_key_type = lambda points, count: points.foreach_set("type", np.zeros(count, np.int32))
    for obj in list(bpy.data.objects):
        bpy.data.objects.remove(obj)
    scene = bpy.context.scene
    scene.render.fps = 24
    bpy.ops.object.armature_human_metarig_add()
    obj = bpy.context.active_object
    obj.name = "metarig"
    obj.select_set(True)
    bpy.context.view_layer.objects.active = obj

    rig = RigDescription.from_dict(rig_io.describe_armature(obj))
    mapping = auto_map(rig)
    log("mapping", mapping.convention, len(mapping.bones), "missing", mapping.missing)
    joints = recover_from_ric(np.load(SHARED_DATA / "humanml3d_000612.npy")).astype(np.float64)
    fps = 24.0

    def solve(clip):
        return retarget(clip, rig, mapping, src_fps=20.0, dst_fps=fps, foot_lock=True).to_dict()

    # two variations of one prompt (the sample, and the sample from 1.5 s on), then an in-between
    variation_clips = [joints, joints[30:]]
    first = None
    for i, clip in enumerate(variation_clips):
        name = operators.take_name(PROMPT_TAKES, SEED + i, i, len(variation_clips))
        action = keys.write_take(obj, solve(clip), 1, name, prompt=PROMPT_TAKES, seed=SEED + i)
        first = first or action
    from momask_blender import takes

    takes.apply_take(obj, first)
    start, last = INBETWEEN
    # the in-between's "new" motion: the sample shifted by 40 frames, blended into the first take
    shifted = solve(joints[40:])
    inbetween = keys.write_inbetween(
        obj, shifted, start, last + 1, 4, source_action=first, result_start=1,
        name=f"{PROMPT_INBETWEEN} f{start}-{last}", prompt=PROMPT_INBETWEEN, seed=SEED + 7)
    obj.momask_take_index = bpy.data.actions.find(inbetween.name)
    log("takes", [a.name for a in takes.list_takes(obj)])

    properties.store_mapping(obj, mapping.to_dict(), keep_edits=False)
    scene.frame_start, scene.frame_end = 1, int(first.frame_range[1])
    scene.use_preview_range = True
    scene.frame_preview_start, scene.frame_preview_end = start, last
    scene.frame_current = 64

    s = scene.momask
    s.prompt = PROMPT_NOW
    s.seconds = 6.0
    s.seed = SEED + 9
    s.variations = 3
    s.inbetween_prompt = PROMPT_INBETWEEN
    s.show_advanced = False
    # what apply_inpaint records on the take: the frames regenerated, widened to whole tokens
    # (4 model frames), and the range asked for; the panel shows them for the selected take
    inbetween["momask_range"] = [start, last + 4]
    inbetween["momask_requested_range"] = [start, last]
    stage_running_job()
    return obj


def stage_running_job():
    """A generation in flight, as the panel sees one; no backend process runs (staged)."""
    from momask_blender import jobs, panel

    job = jobs.Job("generate", {}, None, label="Generate")
    job.state, job.stage, job.fraction = "running", "base", 0.62
    jobs.STATE.active = job
    if hasattr(jobs, "backend_running"):
        jobs.backend_running = lambda: True
    if not hasattr(bpy.types.UILayout, "progress"):
        # layout.progress (the bar the panel draws on 4.x) is 4.0+; 3.4 would get the add-on's text
        # fallback. Draw the same bar and text with a percentage slider instead.
        bpy.types.WindowManager.momask_shot_progress = bpy.props.FloatProperty(
            subtype="PERCENTAGE", min=0.0, max=100.0, precision=0)

        def progress_bar(layout, fraction, text):
            wm = bpy.context.window_manager
            if abs(wm.momask_shot_progress - fraction * 100) > 1e-3:
                wm.momask_shot_progress = fraction * 100
            layout.prop(wm, "momask_shot_progress", text=text.rsplit("  ", 1)[0], slider=True)

        panel._progress = progress_bar


def keep_only_momask_tab():
    """Unregister every other Python sidebar panel of the 3D view; open Bone Mapping by default."""
    from momask_blender import panel

    for cls in list(bpy.types.Panel.__subclasses__()):
        if getattr(cls, "bl_space_type", "") == "VIEW_3D" and getattr(cls, "bl_region_type", "") == "UI" \
                and not cls.__name__.startswith("MOMASK"):
            with contextlib.suppress(RuntimeError):
                bpy.utils.unregister_class(cls)
    own = [c for c in panel.classes if issubclass(c, bpy.types.Panel)]
    for cls in reversed(own):
        bpy.utils.unregister_class(cls)
    panel.MOMASK_PT_mapping.bl_options = set()  # as after the user opens it once
    draw = panel.MOMASK_PT_main.draw

    def draw_and_note(self, context):  # tells the UI steps whether the MoMask tab is showing
        MOMASK_DRAWN[0] = time.monotonic()
        draw(self, context)

    panel.MOMASK_PT_main.draw = draw_and_note
    for cls in own:
        bpy.utils.register_class(cls)


def xdotool(*args):
    """Start an xdotool sequence and return at once: Blender must keep handling the events as they
    come (its action zones look at where the pointer is now), so the step waits in its timer."""
    subprocess.Popen(["xdotool", *map(str, args)])


def grab(path):
    code = ("import os, sys; from PIL import ImageGrab; "
            "ImageGrab.grab(xdisplay=os.environ['DISPLAY']).save(sys.argv[1])")
    r = subprocess.run([str(VENV_PYTHON), "-c", code, str(path)], capture_output=True, text=True)
    log("grab", path, r.returncode, r.stderr[-300:])


def view3d(win):
    return max((a for a in win.screen.areas if a.type == "VIEW_3D"), key=lambda a: a.width * a.height)


def region(area, kind):
    return next(r for r in area.regions if r.type == kind)


def screen_xy(win, reg, dx, dy):
    """X11 screen coordinates of a point of a region; ``dx``/``dy`` are pixels (int, ``dy`` from the
    region's top) or fractions of its size (float). The window sits at the screen's origin."""
    x = reg.x + (int(reg.width * dx) if isinstance(dx, float) else dx)
    top = win.height - (reg.y + reg.height)
    y = top + (int(reg.height * dy) if isinstance(dy, float) else dy)
    return win.x + x, win.y + y


def frame_rig(area, obj):
    """Look at the rig from the front-left, a little above; centred in the part the sidebar leaves."""
    from mathutils import Euler, Vector

    space = area.spaces[0]
    r3d = space.region_3d
    r3d.view_perspective = "PERSP"
    bpy.context.scene.frame_set(bpy.context.scene.frame_current)
    evaluated = obj.evaluated_get(bpy.context.evaluated_depsgraph_get())
    hips = evaluated.matrix_world @ evaluated.pose.bones["spine"].head
    rotation = Euler((np.radians(80), 0.0, np.radians(-35)), "XYZ").to_quaternion()
    right = rotation @ Vector((1.0, 0.0, 0.0))
    r3d.view_rotation = rotation
    r3d.view_location = Vector((hips.x, hips.y, 0.9)) + VIEW_SHIFT * right
    r3d.view_distance = VIEW_DISTANCE


TARGET_SIDEBAR = 460  # px: wide enough that the panel's labels are not cut
VIEW_SHIFT = 0.9      # m to the right of the rig: it then sits in the middle of the free viewport
VIEW_DISTANCE = 4.3   # m


def close_splash_and_frame(win, obj):
    # The first-run Quick Setup splash (factory settings) would swallow the input below; a click on
    # the empty status bar, at the bottom of the window, closes it and does nothing else.
    # Then N over the viewport opens the sidebar (opened from Python, its edge would not resize).
    area = view3d(win)
    x, y = screen_xy(win, region(area, "WINDOW"), 0.3, 0.5)
    toggle = () if area.spaces[0].show_region_ui else ("mousemove", x, y, "sleep", 0.3, "key", "n")
    xdotool("mousemove", win.width // 2, win.height - 6, "sleep", 0.3, "click", 1, "sleep", 0.5, *toggle)
    frame_rig(area, obj)
    return 2.0


def widen_sidebar(win, obj, attempt=[0]):  # noqa: B006 (the attempt counter)
    """Drag the sidebar's left edge with the mouse (3.4 has no Python API for a region's width)."""
    ui = region(view3d(win), "UI")
    log("sidebar width", ui.width, "attempt", attempt[0])
    if ui.width >= TARGET_SIDEBAR - 10 or attempt[0] >= 10:
        frame_rig(view3d(win), obj)
        return 0.5
    PENDING.insert(0, widen_sidebar)  # check (and retry from another offset) once Blender redrew
    # The resize zone is a narrow strip 5 px inside the region's left edge (panels start 17 px in),
    # and only beside panels: near the top, beside the Item tab's Transform panel.
    x, y = screen_xy(win, ui, (5, 6, 4, 7, 3)[attempt[0] % 5], 0.3)
    attempt[0] += 1
    dx = TARGET_SIDEBAR - ui.width
    xdotool("mousemove", x - 30, y, "sleep", 0.2, "mousemove", x - 3, y, "sleep", 0.2,
            "mousemove", x, y, "sleep", 0.4, "mousedown", 1, "sleep", 0.3, "mousemove", x - 10, y,
            "sleep", 0.2, "mousemove", x - dx // 2, y, "sleep", 0.2, "mousemove", x - dx, y,
            "sleep", 0.3, "mouseup", 1, "sleep", 0.2)
    return 2.5


def switch_to_momask_tab(win, obj, attempt=[0]):  # noqa: B006 (the attempt counter)
    """Click the MoMask tab: the second of the vertical tabs on the sidebar's right edge, under
    "Item" (the C panels' tab, the only other one left); retried until the MoMask panel draws."""
    area = view3d(win)
    ui = region(area, "UI")
    if MOMASK_DRAWN[0] > CLICKED[0] > 0 or attempt[0] >= 10:
        log("MoMask tab", "showing" if MOMASK_DRAWN[0] > CLICKED[0] else "NOT showing", "after", attempt[0],
            "clicks")
        return 0.1
    PENDING.insert(0, switch_to_momask_tab)
    x, y = screen_xy(win, ui, ui.width - 11, (64, 70, 58, 76, 52)[attempt[0] % 5])
    attempt[0] += 1
    CLICKED[0] = time.monotonic()
    xdotool("mousemove", x - 3, y - 3, "sleep", 0.2, "mousemove", x, y, "sleep", 0.3, "click", 1,
            "sleep", 0.3, "mousemove", *screen_xy(win, region(area, "WINDOW"), 0.05, 0.93))
    return 2.0


def reselect(win, obj):
    """A missed drag above may have box-selected nothing in the viewport: select the rig again."""
    for other in bpy.context.view_layer.objects:
        other.select_set(other == obj)
    bpy.context.view_layer.objects.active = obj
    frame_rig(view3d(win), obj)
    return 1.5


def take_screenshot(win, obj):
    OUT.parent.mkdir(parents=True, exist_ok=True)
    grab(OUT)
    return None


PENDING = [close_splash_and_frame, widen_sidebar, switch_to_momask_tab, reselect, take_screenshot]


def main():
    try:
        obj = build_scene()
        keep_only_momask_tab()
    except Exception:
        traceback.print_exc()
        bpy.ops.wm.quit_blender()
        return
    grabs = [0]

    def tick():
        """Run the next UI step; it returns the seconds to wait before the next one (None: the end)."""
        fn = PENDING.pop(0)
        wait = None
        try:
            win = bpy.context.window_manager.windows[0]
            log("step", fn.__name__)
            if DEBUG:  # what the previous step led to
                grabs[0] += 1
                grab(OUT.with_name(f"{OUT.stem}_{grabs[0]}_before_{fn.__name__}.png"))
            wait = fn(win, obj)
            if os.environ.get("SHOT_HOLD") == fn.__name__:
                return None
        except Exception:
            traceback.print_exc()
        if wait is None or not PENDING:
            from momask_blender import jobs

            jobs.STATE.active = None
            bpy.ops.wm.quit_blender()
            return None
        return wait

    bpy.app.timers.register(tick, first_interval=2.0)


main()
