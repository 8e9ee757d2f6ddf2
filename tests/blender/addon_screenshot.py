# ruff: noqa  (a one-off screenshot tool, kept for reproducibility)
"""Screenshot of the MoMask panel for docs/panel.png (not a test): Debian Blender 3.4 under Xvfb.

    blender -b --factory-startup --python-expr "import bpy; bpy.ops.wm.save_as_mainfile(filepath='/tmp/start.blend')"
    SHOT_NOACTIVE=1 xvfb-run -a -s "-screen 0 1400x1000x24" blender --factory-startup /tmp/start.blend \
        --python tests/blender/addon_screenshot.py

The sidebar cannot be switched to a tab from Python in 3.4, so the script unregisters the other
Python sidebar panels and clears the active object (which hides the C "Item" tab): MoMask is then
the only tab. The progress bar is a fake running job. Edit OUT and the paths before use.
"""
import os, sys, time, traceback
sys.path.insert(0, os.environ.get("MOMASK_REPO", "/work/main"))
os.environ["MOMASK_USER_DIR"] = "/tmp/h6a/shot/user"
import bpy, addon_utils
OUT = "/tmp/h6a/shot/panel.png"
def log(*a):
    print("SHOT", *a, flush=True)
try:
    addon_utils.enable("momask_blender", default_set=True, handle_error=None)
    from momask_blender import jobs, properties
    for o in list(bpy.data.objects): bpy.data.objects.remove(o)
    if os.environ.get("SHOT_RIG") == "metarig":
        addon_utils.enable("rigify", default_set=True)
        bpy.ops.object.armature_human_metarig_add()
    else:
        bpy.ops.object.armature_add()
    obj = bpy.context.active_object; obj.name = "metarig"
    s = bpy.context.scene.momask
    s.prompt = "a person walks forward, turns around and waves"
    s.seconds = 4.0; s.seed = 1234; s.variations = 3; s.show_advanced = True
    # a running job, to show the progress bar with its stage
    job = jobs.Job("generate", {}, None, label="Generate")
    job.state = "running"; job.stage = "base"; job.fraction = 0.47
    jobs.STATE.active = job
    jobs.STATE.regenerated = (14, 38)
    if os.environ.get("SHOT_NOACTIVE"):
        obj.select_set(False)
        bpy.context.view_layer.objects.active = None
    properties.store_mapping(obj, {"bones": {"pelvis": "spine", "left_hip": "thigh.L", "right_hip": "thigh.R",
        "spine1": "spine.001", "head": "Bone"}, "missing": []})
except Exception:
    traceback.print_exc()
for cls in list(bpy.types.Panel.__subclasses__()):
    if getattr(cls, "bl_space_type", "") == "VIEW_3D" and getattr(cls, "bl_region_type", "") == "UI" \
            and not cls.__name__.startswith("MOMASK"):
        try:
            bpy.utils.unregister_class(cls)
        except Exception:
            pass
from momask_blender import panel as _panel
_pcls = [c for c in _panel.classes if issubclass(c, bpy.types.Panel)]
for c in reversed(_pcls):
    bpy.utils.unregister_class(c)
_panel.MOMASK_PT_main.bl_order = -100   # screenshot only: make MoMask the first (active) sidebar tab
for c in _pcls:
    bpy.utils.register_class(c)
state = {"n": 0}
def step():
    state["n"] += 1
    try:
        win = bpy.context.window_manager.windows[0]
        scr = win.screen
        area = max((a for a in scr.areas if a.type == "VIEW_3D"), key=lambda a: a.width * a.height)
        if state["n"] == 1:
            area.spaces[0].show_region_ui = True
            log("step1")
            if os.environ.get("SHOT_FULL"):
                with bpy.context.temp_override(window=win, area=area):
                    bpy.ops.screen.screen_full_area()
            return 0.5
        if state["n"] == 2:
            scr = win.screen
            area = max((a for a in scr.areas if a.type == "VIEW_3D"), key=lambda a: a.width * a.height)
            area.spaces[0].show_region_ui = True
            for region in area.regions:
                if region.type == "UI":
                    log("region", region.width, hasattr(region, "active_panel_category"))
                    if hasattr(region, "active_panel_category"):
                        region.active_panel_category = "MoMask"
            return 1.0
        if state["n"] == 3:
            import subprocess
            r = subprocess.run(["xdotool", "mousemove", "1130", "150", "sleep", "0.3", "mousemove", "1141", "157", "sleep", "0.3", "sleep", "0", "sleep", "0.1", "mouseup", "1", "sleep", "0.3", "mousemove", "700", "500"], capture_output=True, text=True)
            log("click", r.returncode, r.stderr)
            return 1.0
        if state["n"] == 4:
            import subprocess
            r = subprocess.run(["/work/main/.venv/bin/python", "-c",
                "import os,sys; from PIL import ImageGrab; im = ImageGrab.grab(xdisplay=os.environ['DISPLAY']); im.save(sys.argv[1]); print(im.size)", OUT],
                capture_output=True, text=True)
            log("grab", r.returncode, r.stdout, r.stderr[-500:])
            return 0.5
    except Exception:
        traceback.print_exc()
    jobs.STATE.active = None
    bpy.ops.wm.quit_blender()
    return None
bpy.app.timers.register(step, first_interval=2.0)
