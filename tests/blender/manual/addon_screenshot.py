# ruff: noqa: E402  (a screenshot tool, not a test: imports follow the sys.path set-up)
"""docs/panel.png: the MoMask sidebar tab as an animator sees it mid-use (real Blender 4.x UI, headless).

A manual probe (tests/blender/README.md): no wrapper, pytest never runs it. It runs in a windowed
Blender 4.2+ under Xvfb: ``xdotool`` drives the mouse, ImageMagick's ``import -window root`` grabs the screen
(``bpy.ops.screen.screenshot`` saves an all-black image under Xvfb + llvmpipe). docs/panel.png was
made with Blender 4.3.2 from Debian trixie, in the chroot set up as ``tests/blender/manual/ui_probe.py``'s
docstring says (its mounts of proc, dev, sys, /root/.pyenv and /work/main; this script needs no
extension zip, weights or background run), plus ``/work/shared`` read-only for the HumanML3D sample::

    T=/work/trixie; mkdir -p $T/work/shared; mount --bind /work/shared $T/work/shared
    mount -o remount,bind,ro $T/work/shared
    chroot $T env HOME=/root BLENDER_USER_RESOURCES=/tmp/momask_shot/user \\
        SHOT_OUT=/tmp/momask_shot/panel.png xvfb-run -a -s "-screen 0 1400x1440x24" \\
        blender --factory-startup --python /work/main/tests/blender/manual/addon_screenshot.py
    cp $T/tmp/momask_shot/panel.png /work/main/docs/panel.png   # after looking at it
    # then unmount as ui_probe.py says, and $T/work/shared; `mount | grep trixie` must print nothing

(about 20 s). Elsewhere, run the same ``xvfb-run ... blender --factory-startup --python
tests/blender/manual/addon_screenshot.py`` from the repository root: without ``SHOT_OUT`` it writes
docs/panel.png. ``SHOT_DEBUG=1`` also saves a grab before each UI step next to it, ``SHOT_FRAME``
picks the frame shown (default 12: mid-stride); ``SHOT ...`` lines on stdout tell what happened. The
image is cropped to the window's left part: top bar, 3D viewport and sidebar, timeline, status bar
(the outliner and the properties editor are left out). The "unregister_class ... missing bl_rna"
traceback at quit comes from Rigify, whose sidebar panels the script unregistered; it is harmless.

What is real and what is staged:

* The add-on is loaded the legacy way (its ``bl_info``) from this checkout and draws its own panels
  unchanged. ``--factory-startup`` keeps the user's preferences and add-ons out; the script turns the
  splash screen off before the window first draws (it would cover the viewport and take the clicks).
* The rig is the Rigify human metarig, selected and active. Its takes are REAL retargets: the
  HumanML3D sample (``shared/data/humanml3d_000612.npy``) recovered to joints, mapped with the
  backend's ``auto_map`` and solved with its ``retarget`` (numpy only, run inside Blender), then
  written by the add-on's ``keys.write_take`` / ``keys.write_inbetween`` (two variations and one
  in-between, GENERATED keyframes as in real use). The Bone Mapping box shows ``auto_map``'s answer
  for this rig.
* Staged: no backend process runs. The job "in progress" is a ``jobs.Job`` set as the active job
  (stage ``base``, 62%) and ``jobs.backend_running`` answers True ("Warm Up While Typing" is off, so
  setting the prompt starts nothing); the takes' prompts and seeds are what such a session would
  produce.
* Screenshot-only display changes: the metarig's face bones are hidden (they clutter the head), the
  view is turned to the rig's front-left whichever way it walks, the other Python sidebar panels are
  unregistered (only the C "Item" tab and MoMask remain), the Bone Mapping sub-panel is registered
  open, the sidebar is opened with N and dragged wider with xdotool (Blender has no Python API for a
  region's width) and switched to the MoMask tab with ``Region.active_panel_category``; a missed drag
  may box-select nothing, so the rig is selected again before the grab.
"""

import contextlib
import os
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

REPO = Path(os.environ.get("MOMASK_REPO", Path(__file__).resolve().parents[3]))
SHARED_DATA = Path(os.environ.get("MOMASK_SHARED_DATA", REPO.parent / "shared" / "data"))
OUT = Path(os.environ.get("SHOT_OUT", REPO / "docs" / "panel.png"))
DEBUG = bool(os.environ.get("SHOT_DEBUG"))
WORK = Path(tempfile.mkdtemp(prefix="momask_shot_"))
os.environ.setdefault("MOMASK_USER_DIR", str(WORK / "user"))  # presets go here, not into the real one

MOMASK_DRAWN = [0.0]  # when the MoMask panel last drew
SWITCHED = [0.0]  # when the sidebar was last switched to the MoMask tab
PROMPT_NOW = "a person jogs forward, stops and waves with both hands"
PROMPT_TAKES = "a person walks in a circle"
PROMPT_INBETWEEN = "the person jumps"
SEED = 1234
INBETWEEN = (100, 123)  # the preview range the in-between regenerated (scene frames, inclusive)
FRAME = int(os.environ.get("SHOT_FRAME", 12))  # the current frame: mid-stride

sys.path.insert(0, str(REPO))

import addon_utils
import bpy
import numpy as np

from backend.motion.features import recover_from_ric
from backend.retarget.mapping import auto_map
from backend.retarget.rig import RigDescription
from backend.retarget.solver import retarget

# The (first start's) splash would cover the viewport and swallow the mouse and keys sent below.
bpy.context.preferences.view.show_splash = False


def log(*args):
    print("SHOT", *args, flush=True)


def build_scene():
    """The metarig with two generated takes and one in-between, the settings of a new generation."""
    addon_utils.enable("momask_blender", default_set=True, handle_error=None)
    prefs = bpy.context.preferences.addons["momask_blender"].preferences
    if hasattr(prefs, "warm_up"):  # no backend start when the prompt is set below
        prefs.warm_up = False
    addon_utils.enable("rigify", default_set=True, handle_error=None)
    from momask_blender.anim import keys, rig_io, takes
    from momask_blender.ui import properties
    from momask_blender.ui.operators.common import take_name

    for obj in list(bpy.data.objects):
        bpy.data.objects.remove(obj)
    scene = bpy.context.scene
    scene.render.fps = 24
    bpy.ops.object.armature_human_metarig_add()
    obj = bpy.context.active_object
    obj.name = "metarig"
    obj.select_set(True)
    bpy.context.view_layer.objects.active = obj
    for collection in obj.data.collections_all:  # the face's many small bones would clutter the head
        if collection.name.startswith("Face"):
            collection.is_visible = False

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
        name = take_name(PROMPT_TAKES, SEED + i, i, len(variation_clips))
        action = keys.write_take(obj, solve(clip), 1, name, prompt=PROMPT_TAKES, seed=SEED + i)
        first = first or action
    takes.apply_take(obj, first)
    start, last = INBETWEEN
    # the in-between's "new" motion: the sample shifted by 40 frames, blended into the first take
    shifted = solve(joints[40:])
    inbetween = keys.write_inbetween(
        obj, shifted, start, last + 1, 4, source_action=first, result_start=1,
        name=f"{PROMPT_INBETWEEN} f{start}-{last}", prompt=PROMPT_INBETWEEN, seed=SEED + 7)
    obj.momask_take_index = bpy.data.actions.find(inbetween.name)
    log("takes", [a.name for a in takes.list_takes(obj)], "rig plays", obj.animation_data.action.name)

    properties.store_mapping(obj, mapping.to_dict(), keep_edits=False)
    scene.frame_start, scene.frame_end = 1, int(first.frame_range[1])
    scene.use_preview_range = True
    scene.frame_preview_start, scene.frame_preview_end = start, last
    scene.frame_current = FRAME

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
    from momask_blender.remote import jobs

    job = jobs.Job(jobs.messages.GenerateRequest(prompts=("a person walks",)), None, label="Generate")
    job.state, job.stage, job.fraction = "running", "base", 0.62
    jobs.STATE.active = job
    jobs.backend_running = lambda: True


def keep_only_momask_tab():
    """Unregister every other Python sidebar panel of the 3D view; open Bone Mapping by default."""
    from momask_blender.ui import panel

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


def grab(path, crop=None):
    """The X screen with ImageMagick; ``crop`` = (width, height, x, y) in screen pixels."""
    path.parent.mkdir(parents=True, exist_ok=True)
    cmd = ["import", "-window", "root"]
    if crop is not None:
        cmd += ["-crop", "{}x{}+{}+{}".format(*crop), "+repage"]
    r = subprocess.run([*cmd, str(path)], capture_output=True, text=True, timeout=60)
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
    """Look at the rig from its front-left, a little above (whichever way it faces at this frame);
    centred in the part of the viewport the sidebar leaves."""
    from mathutils import Euler, Vector

    space = area.spaces[0]
    r3d = space.region_3d
    r3d.view_perspective = "PERSP"
    bpy.context.scene.frame_set(bpy.context.scene.frame_current)
    evaluated = obj.evaluated_get(bpy.context.evaluated_depsgraph_get())
    bones, world = evaluated.pose.bones, evaluated.matrix_world
    hips = world @ bones["spine"].head
    left = world @ bones["thigh.L"].head - world @ bones["thigh.R"].head
    forward = left.cross(Vector((0.0, 0.0, 1.0)))  # the metarig faces -Y at rest, its left is +X
    facing = np.arctan2(forward.x, -forward.y)  # the view's Z angle that looks at its face
    rotation = Euler((np.radians(80), 0.0, facing + np.radians(VIEW_AZIMUTH)), "XYZ").to_quaternion()
    right = rotation @ Vector((1.0, 0.0, 0.0))
    r3d.view_rotation = rotation
    r3d.view_location = Vector((hips.x, hips.y, 0.9)) + VIEW_SHIFT * right
    r3d.view_distance = VIEW_DISTANCE


TARGET_SIDEBAR = 460  # px: wide enough that the panel's labels are not cut
VIEW_SHIFT = 0.9      # m to the right of the rig: it then sits in the middle of the free viewport
VIEW_DISTANCE = 3.6   # m
VIEW_AZIMUTH = 40     # degrees from straight in front, towards the rig's left


def open_sidebar_and_frame(win, obj):
    # N over the viewport opens the sidebar, as a user does.
    area = view3d(win)
    x, y = screen_xy(win, region(area, "WINDOW"), 0.3, 0.5)
    if not area.spaces[0].show_region_ui:
        xdotool("mousemove", x, y, "sleep", 0.3, "key", "n")
    frame_rig(area, obj)
    return 2.0


def widen_sidebar(win, obj, attempt=[0]):  # noqa: B006 (the attempt counter)
    """Drag the sidebar's left edge with the mouse (Blender has no Python API for a region's width)."""
    area = view3d(win)
    if not area.spaces[0].show_region_ui:  # the N key did not arrive: open it from Python
        log("sidebar not open after N; opening it from Python")
        area.spaces[0].show_region_ui = True
        PENDING.insert(0, widen_sidebar)
        return 1.0
    ui = region(area, "UI")
    log("sidebar width", ui.width, "attempt", attempt[0])
    if ui.width >= TARGET_SIDEBAR - 10 or attempt[0] >= 10:
        frame_rig(area, obj)
        return 0.5
    PENDING.insert(0, widen_sidebar)  # check (and retry from another offset) once Blender redrew
    # The resize zone is a narrow strip just inside the region's left edge, and only beside panels:
    # near the top, beside the Item tab's Transform panel.
    x, y = screen_xy(win, ui, (5, 6, 4, 7, 3)[attempt[0] % 5], (0.08, 0.12, 0.05)[attempt[0] % 3])
    attempt[0] += 1
    dx = TARGET_SIDEBAR - ui.width
    xdotool("mousemove", x - 30, y, "sleep", 0.2, "mousemove", x - 3, y, "sleep", 0.2,
            "mousemove", x, y, "sleep", 0.4, "mousedown", 1, "sleep", 0.3, "mousemove", x - 10, y,
            "sleep", 0.2, "mousemove", x - dx // 2, y, "sleep", 0.2, "mousemove", x - dx, y,
            "sleep", 0.3, "mouseup", 1, "sleep", 0.2)
    return 2.5


def switch_to_momask_tab(win, obj, attempt=[0]):  # noqa: B006 (the attempt counter)
    """Show the MoMask tab (``Region.active_panel_category``, 4.2+); retried until its panel draws."""
    area = view3d(win)
    ui = region(area, "UI")
    if MOMASK_DRAWN[0] > SWITCHED[0] > 0 or attempt[0] >= 5:
        log("MoMask tab", "showing" if MOMASK_DRAWN[0] > SWITCHED[0] else "NOT showing", "after", attempt[0],
            "tries; category", ui.active_panel_category)
        return 0.1
    PENDING.insert(0, switch_to_momask_tab)
    attempt[0] += 1
    SWITCHED[0] = time.monotonic()
    ui.active_panel_category = "MoMask"
    area.tag_redraw()
    # the pointer out of the way (not over a button, whose tooltip would show)
    xdotool("mousemove", *screen_xy(win, region(area, "WINDOW"), 0.05, 0.93))
    return 1.5


def reselect(win, obj):
    """A missed drag above may have box-selected nothing in the viewport: select the rig again."""
    for other in bpy.context.view_layer.objects:
        other.select_set(other == obj)
    bpy.context.view_layer.objects.active = obj
    frame_rig(view3d(win), obj)
    return 1.5


def take_screenshot(win, obj):
    """The window's left part: top bar, 3D viewport and sidebar, timeline, status bar."""
    area = view3d(win)
    grab(OUT, crop=(area.x + area.width, win.height, win.x, win.y))
    return None


PENDING = [open_sidebar_and_frame, widen_sidebar, switch_to_momask_tab, reselect, take_screenshot]


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
            from momask_blender.remote import jobs

            jobs.STATE.active = None
            with bpy.context.temp_override(window=bpy.context.window_manager.windows[0]):
                bpy.ops.wm.quit_blender()
            return None
        return wait

    bpy.app.timers.register(tick, first_interval=2.0)


main()
