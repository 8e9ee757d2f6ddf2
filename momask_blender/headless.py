"""The main job without a UI: prompt → rig → ``.blend`` + ``.bvh``, through the panel's own operators.

Run with a Blender Python (the ``bpy`` module) from the folder that contains ``momask_blender/``::

    python -m momask_blender.headless --prompt "a person walks forward and waves" --seconds 4 \\
        --rig metarig --backend-python .venv/bin/python --weights weights --device cpu \\
        --out-blend out/demo.blend --out-bvh out/demo.bvh

It enables the add-on (so its preferences exist), builds or imports the rig, presses Generate the
way the panel does, pumps the job until it is applied, saves the ``.blend``, exports the armature's
animation with Blender's BVH exporter and reads that file back with Blender's importer as a check.
Any failure prints the problem and its fix and exits non-zero (2: the backend refused, e.g. no weights).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import bpy

PACKAGE = __package__ or "momask_blender"


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m momask_blender.headless",
        description="Generate a MoMask motion onto a rig without Blender's UI.",
    )
    parser.add_argument("--prompt", required=True)
    parser.add_argument("--seconds", type=float, default=None, help="duration (default: auto length)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--variations", type=int, default=1)
    parser.add_argument("--steps", type=int, default=None, help="decoding steps (default: the paper's 10)")
    parser.add_argument("--fps", type=int, default=None, help="scene frame rate (default: Blender's 24)")
    parser.add_argument(
        "--rig",
        default="metarig",
        help="metarig | bvh (the official template) | mixamo | PATH.blend | PATH.fbx | PATH.bvh",
    )
    parser.add_argument("--backend-python", required=True)
    parser.add_argument("--weights", required=True)
    parser.add_argument("--clip", default="")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda", "mps"))
    parser.add_argument("--out-blend", required=True, type=Path)
    parser.add_argument("--out-bvh", required=True, type=Path)
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds to wait for the backend")
    return parser.parse_args(argv)


class Failure(Exception):
    def __init__(self, problem: str, fix: str = "", code: int = 1) -> None:
        super().__init__(problem)
        self.problem, self.fix, self.code = problem, fix, code


def enable_bundled(module: str) -> None:
    import addon_utils

    if not addon_utils.check(module)[1]:
        addon_utils.enable(module, default_set=True, handle_error=None)
    if not addon_utils.check(module)[1]:
        raise Failure(
            f"Blender's bundled add-on {module!r} could not be enabled.",
            "Use a full Blender build (the bpy module from PyPI includes it).",
        )


def _repo_root() -> Path:
    return Path(__file__).resolve().parents[1]


def template_bvh() -> Path:
    """The official 22-joint template (shared test data in development)."""
    candidates = (
        [Path(os.environ["MOMASK_SHARED_DATA"]) / "template.bvh"]
        if os.environ.get("MOMASK_SHARED_DATA")
        else []
    )
    root = _repo_root()
    candidates += [
        root / "backend" / "data" / "template.bvh",
        root.parent / "shared" / "data" / "template.bvh",
    ]
    for path in candidates:
        if path.is_file():
            return path
    raise Failure(
        "The MoMask template.bvh was not found.", "Pass --rig PATH.bvh with a BVH file of your own."
    )


def _armature_after(before: set[str], what: str):
    new = [o for o in bpy.data.objects if o.name not in before and o.type == "ARMATURE"]
    if not new:
        raise Failure(f"{what} contains no armature.", "Pass a file with a character rig (an armature).")
    return new[0]


def make_rig(spec: str):
    before = {o.name for o in bpy.data.objects}
    if spec == "metarig":
        enable_bundled("rigify")
        bpy.ops.object.armature_human_metarig_add()  # type: ignore[attr-defined]  # Rigify's operator
        obj = bpy.context.active_object
        obj.name = "metarig"
        return obj
    if spec == "mixamo":
        tests_dir = _repo_root() / "tests" / "blender"
        if not (tests_dir / "rigs.py").is_file():
            raise Failure(
                "The Mixamo test rig needs the repository's tests/blender/rigs.py.",
                "Pass --rig PATH.fbx with a Mixamo FBX instead.",
            )
        sys.path.insert(0, str(tests_dir))
        import rigs  # type: ignore[import-not-found]

        return rigs.make_mixamo_rig()
    path = template_bvh() if spec == "bvh" else Path(spec)
    if not path.is_file():
        raise Failure(
            f"The rig file {path} does not exist.", "Pass metarig, bvh, mixamo or an existing file."
        )
    suffix = path.suffix.lower()
    if suffix == ".bvh":
        enable_bundled("io_anim_bvh")
        bpy.ops.import_anim.bvh(filepath=str(path), axis_forward="-Z", axis_up="Y", rotate_mode="NATIVE")
    elif suffix == ".fbx":
        enable_bundled("io_scene_fbx")
        bpy.ops.import_scene.fbx(filepath=str(path))
    elif suffix == ".blend":
        # The stubs type load() as returning None; it returns a context manager (the libraries' data).
        with bpy.data.libraries.load(str(path)) as (src, dst):  # type: ignore[func-returns-value,attr-defined]
            dst.objects = list(src.objects)
        for obj in dst.objects:
            if obj is not None:
                bpy.context.scene.collection.objects.link(obj)
    else:
        raise Failure(f"Cannot read a rig from {path.name}.", "Use a .blend, .fbx or .bvh file.")
    obj = _armature_after(before, str(path))
    if obj.animation_data is not None:
        obj.animation_data.action = None  # an imported BVH carries its own motion; start clean
    return obj


def activate(obj) -> None:
    if bpy.context.object is not None and bpy.context.object.mode != "OBJECT":
        bpy.ops.object.mode_set(mode="OBJECT")
    for other in bpy.context.view_layer.objects:
        other.select_set(False)
    obj.select_set(True)
    bpy.context.view_layer.objects.active = obj


def run(args: argparse.Namespace) -> dict:
    import addon_utils

    bpy.ops.wm.read_factory_settings(use_empty=True)
    addon_utils.enable(PACKAGE, default_set=True, handle_error=None)
    if not addon_utils.check(PACKAGE)[1]:
        raise Failure(
            "The MoMask add-on could not be enabled.", "Run from the folder that contains momask_blender/."
        )
    from .anim import takes
    from .remote import jobs

    prefs = bpy.context.preferences.addons[PACKAGE].preferences
    prefs.backend_python = str(Path(args.backend_python).absolute())
    prefs.weights_dir = str(Path(args.weights).absolute())
    prefs.clip_file = str(Path(args.clip).absolute()) if args.clip else ""
    prefs.device = args.device

    scene = bpy.context.scene
    if args.fps:
        scene.render.fps, scene.render.fps_base = args.fps, 1.0
    scene.frame_current = 1
    obj = make_rig(args.rig)
    activate(obj)
    s = scene.momask
    s.prompt = args.prompt
    s.auto_length = args.seconds is None
    if args.seconds is not None:
        s.seconds = args.seconds
    s.randomize_seed = False
    s.seed = args.seed
    s.variations = args.variations
    if args.steps:
        s.steps = args.steps

    if bpy.ops.momask.generate() != {"FINISHED"}:  # type: ignore[attr-defined]  # the add-on's own operator
        problem, fix = jobs.STATE.error or ("Generate did not start.", "")
        raise Failure(problem, fix, 2)
    job = jobs.wait(args.timeout)
    if job is None or job.state != "applied":
        problem, fix = jobs.STATE.error or (f"The job ended as {getattr(job, 'state', 'nothing')}.", "")
        raise Failure(problem, fix, 2)

    action = obj.animation_data.action
    first, last = (int(round(f)) for f in action.frame_range)
    scene.frame_start, scene.frame_end = first, last
    args.out_blend.parent.mkdir(parents=True, exist_ok=True)
    args.out_bvh.parent.mkdir(parents=True, exist_ok=True)
    jobs.stop_backend()
    bpy.ops.wm.save_as_mainfile(filepath=str(args.out_blend.absolute()), check_existing=False)

    enable_bundled("io_anim_bvh")
    activate(obj)
    bpy.ops.export_anim.bvh(
        filepath=str(args.out_bvh.absolute()),
        check_existing=False,
        frame_start=first,
        frame_end=last,
        rotate_mode="NATIVE",
        root_transform_only=False,
    )
    # Read it back with Blender's own importer: the file must be a valid BVH with the same bones and frames.
    before = {o.name for o in bpy.data.objects}
    bpy.ops.import_anim.bvh(
        filepath=str(args.out_bvh.absolute()), update_scene_fps=False, update_scene_duration=False
    )
    back = _armature_after(before, str(args.out_bvh))
    back_range = (
        back.animation_data.action.frame_range
        if back.animation_data and back.animation_data.action
        else (0, -1)
    )
    back_frames = int(round(back_range[1] - back_range[0])) + 1
    if len(back.data.bones) != len(obj.data.bones) or back_frames != last - first + 1:
        raise Failure(
            f"The exported BVH reads back as {len(back.data.bones)} bones and {back_frames} frames, "
            f"expected {len(obj.data.bones)} and {last - first + 1}.",
            "This is a bug; please report it.",
        )
    return {
        "rig": obj.name,
        "bones": len(obj.data.bones),
        "take": action.name,
        "takes": [a.name for a in takes.list_takes(obj)],
        "frames": [first, last],
        "fps": scene.render.fps / scene.render.fps_base,
        "seed": int(action.get("momask_seed", -1)),
        "blend": str(args.out_blend),
        "bvh": str(args.out_bvh),
        "bvh_frames": back_frames,
        "message": job.result_message,
    }


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--" in argv:
        argv = argv[argv.index("--") + 1 :]
    args = parse_args(argv)
    try:
        summary = run(args)
    except Failure as exc:
        print(f"MoMask: {exc.problem}", file=sys.stderr)
        if exc.fix:
            print(f"Fix: {exc.fix}", file=sys.stderr)
        return exc.code
    finally:
        try:
            from .remote import jobs

            jobs.stop_backend()
        except Exception:  # noqa: BLE001 (nothing to stop)
            pass
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # skip bpy's slow (and sometimes hanging) interpreter teardown
