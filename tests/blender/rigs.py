"""Test rigs built in real Blender (4.2 / 4.5 / 5.0, the ``bpy`` module), and their description.

Run only inside a Blender interpreter (``tests/conftest.py::run_blender``). Import it from a script in
``tests/blender/`` with ``sys.path.insert(0, os.path.dirname(__file__)); import rigs``.

* :func:`make_rigify_metarig` — the bundled Rigify add-on's human metarig (A-pose arms, rolled bones).
* :func:`import_template_bvh` — the bundled BVH importer on the official 22-joint template.
* :func:`make_mixamo_rig` — a Mixamo-named humanoid: A-pose arms, uneven rolls, object scale 0.01 and
  the FBX-style 90° X rotation, as a Mixamo FBX import looks.
* :func:`make_smpl_rig_from_joints` / :func:`make_smpl_rig_from_sample` — an SMPL-named rig whose rest
  heads are one frame of joints (or of recovered 263-D features).
* :func:`describe_armature` — the ``RigDescription.to_dict()`` shape (``backend/retarget/rig.py``).
* :func:`exit_blender` — end a script with an exit code that survives Blender 4.2's module shutdown.
* :func:`shared_file` — a file of the real test data; without it the script ends as a skipped test.
* :func:`ground_travel` — a ground track's travel (low-passed), what a steering path places.
"""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path
from typing import NoReturn

import bpy
import numpy as np

SHARED_DATA = Path(os.environ.get("MOMASK_SHARED_DATA",
                                  Path(__file__).resolve().parents[3] / "shared" / "data"))
SKIP_EXIT = 75   # tests/conftest.py::run_blender turns this exit code into a skipped test


def missing_shared_data(name: str) -> str | None:
    """Why ``SHARED_DATA / name`` cannot be used (what is missing and where to put it), or None."""
    if (SHARED_DATA / name).is_file():
        return None
    return (f"real test data missing: {name} not in {SHARED_DATA}. Put the HumanML3D clip 000612 "
            "(humanml3d_000612.npy) and the official template.bvh there, or point MOMASK_SHARED_DATA at a "
            "folder that holds them.")


def shared_file(name: str) -> Path:
    """``SHARED_DATA / name``; when it is absent the script ends with ``SKIP_EXIT`` and the reason."""
    reason = missing_shared_data(name)
    if reason is not None:
        print("SKIP: " + reason)
        exit_blender(SKIP_EXIT)
    return SHARED_DATA / name


def reset_scene() -> None:
    """An empty scene (factory settings, no startup cube/camera/light)."""
    bpy.ops.wm.read_factory_settings(use_empty=True)


def exit_blender(code: int = 0) -> NoReturn:
    """Exit the script with ``code``.

    The bpy module of Blender 4.2 segfaults at interpreter exit once Rigify has been imported (a static
    ``SpaceType`` destructor calls into the already finalised interpreter: ``bpy_class_free`` →
    ``PyGILState_Ensure``), which turns a passing script into exit 139. 4.3+ and the Blender application
    itself are not affected. There, everything the script printed is flushed and the process leaves
    with ``os._exit`` before that destructor runs.
    """
    if bpy.app.version >= (4, 3, 0):
        sys.exit(code)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def enable_addon(module: str) -> None:
    """Enable a bundled add-on (Rigify, the BVH importer: not enabled by default in the bpy module)."""
    import addon_utils

    if not addon_utils.check(module)[1]:
        addon_utils.enable(module, default_set=True, handle_error=None)
    if not addon_utils.check(module)[1]:
        raise RuntimeError(f"Could not enable the bundled add-on {module!r}.")


def start_momask(weights: str, *bundled: str):
    """An empty scene with the MoMask add-on enabled (after the ``bundled`` add-ons it needs, e.g. the
    BVH importer: a factory reset switches them off), its backend on the CPU with ``weights``; the
    add-on's preferences."""
    reset_scene()
    for module in bundled:
        enable_addon(module)
    import addon_utils

    addon_utils.enable("momask_blender", default_set=True, handle_error=None)
    prefs = bpy.context.preferences.addons["momask_blender"].preferences
    prefs.weights_dir = weights
    prefs.device = "cpu"
    return prefs


def _select_only(obj: bpy.types.Object) -> None:
    for other in bpy.context.view_layer.objects:
        other.select_set(False)
    obj.select_set(True)
    bpy.context.view_layer.objects.active = obj


def make_rigify_metarig() -> bpy.types.Object:
    """The Rigify human metarig (``Add > Armature > Human (Meta-Rig)``)."""
    enable_addon("rigify")
    bpy.ops.object.armature_human_metarig_add()
    obj = bpy.context.active_object
    obj.name = "metarig"
    return obj


def make_generated_rigify_rig() -> tuple[bpy.types.Object, bpy.types.Object]:
    """(metarig, rig): a Rigify control rig generated from the human metarig, as users animate it."""
    metarig = make_rigify_metarig()
    bpy.ops.object.mode_set(mode="OBJECT")
    _select_only(metarig)
    existing = set(bpy.data.objects)
    bpy.ops.pose.rigify_generate()
    rig = next(o for o in bpy.data.objects if o.type == "ARMATURE" and o not in existing)
    return metarig, rig


def import_template_bvh(path: str | Path | None = None) -> bpy.types.Object:
    """The armature the bundled BVH importer makes from the official template (Y-up BVH → Z-up)."""
    enable_addon("io_anim_bvh")
    path = Path(path) if path else shared_file("template.bvh")
    bpy.ops.import_anim.bvh(filepath=str(path), axis_forward="-Z", axis_up="Y", rotate_mode="NATIVE")
    obj = bpy.context.active_object
    if obj is None or obj.type != "ARMATURE":
        raise RuntimeError(f"The BVH importer made no armature from {path}.")
    return obj


# Mixamo-named humanoid in Mixamo's own FBX frame: Y up, facing +Z, the character's left = +X, centimetres.
_MIXAMO_SPINE = [("Hips", None, (0, 100, 0)), ("Spine", "Hips", (0, 110, 1)),
                 ("Spine1", "Spine", (0, 122, 1)), ("Spine2", "Spine1", (0, 135, 0)),
                 ("Neck", "Spine2", (0, 150, -1)), ("Head", "Neck", (0, 160, 1)),
                 ("HeadTop_End", "Head", (0, 180, 1))]


def _mixamo_side(side: str, sign: float, a_pose: bool) -> list[tuple[str, str, tuple[float, float, float]]]:
    drop = math.radians(45.0) if a_pose else 0.0          # arms ~45° below horizontal in an A-pose
    shoulder = np.array([sign * 18.0, 145.0, 0.0])

    def along(dist: float) -> tuple[float, float, float]:
        p = shoulder + dist * np.array([sign * math.cos(drop), -math.sin(drop), 0.0])
        return tuple(float(v) for v in p)

    s = side
    return [
        (f"{s}UpLeg", "Hips", (sign * 9, 95, 0)), (f"{s}Leg", f"{s}UpLeg", (sign * 9, 52, 1)),
        (f"{s}Foot", f"{s}Leg", (sign * 9, 9, -2)), (f"{s}ToeBase", f"{s}Foot", (sign * 9, 2, 10)),
        (f"{s}Toe_End", f"{s}ToeBase", (sign * 9, 2, 18)),
        (f"{s}Shoulder", "Spine2", (sign * 4, 143, 0)),
        (f"{s}Arm", f"{s}Shoulder", tuple(float(v) for v in shoulder)),
        (f"{s}ForeArm", f"{s}Arm", along(28)), (f"{s}Hand", f"{s}ForeArm", along(54)),
        (f"{s}HandIndex1", f"{s}Hand", along(63)), (f"{s}HandIndex2", f"{s}HandIndex1", along(67)),
        (f"{s}HandThumb1", f"{s}Hand", along(57)),
    ]


def make_mixamo_rig(a_pose: bool = True, scale: float = 0.01, rotate_x90: bool = True,
                    prefix: str = "mixamorig:", seed: int = 0) -> bpy.types.Object:
    """A Mixamo-named humanoid as a Mixamo FBX import looks (Y-up data, object scale and X rotation)."""
    rng = np.random.default_rng(seed)
    bones = _MIXAMO_SPINE + _mixamo_side("Left", 1.0, a_pose) + _mixamo_side("Right", -1.0, a_pose)
    heads = {name: np.array(pos, dtype=float) for name, _, pos in bones}
    children: dict[str, list[str]] = {}
    for name, parent, _ in bones:
        if parent:
            children.setdefault(parent, []).append(name)

    data = bpy.data.armatures.new("MixamoArmature")
    obj = bpy.data.objects.new("Armature", data)
    bpy.context.scene.collection.objects.link(obj)
    _select_only(obj)
    bpy.ops.object.mode_set(mode="EDIT")
    edit = {}
    for name, parent, _ in bones:
        eb = data.edit_bones.new(prefix + name)
        head = heads[name]
        kids = children.get(name)
        if kids:
            tail = heads[kids[0]]
        else:                                     # leaves continue their parent's direction
            tail = head + (head - heads[parent]) * 0.5
        if np.linalg.norm(tail - head) < 1e-3:
            tail = head + np.array([0.0, 5.0, 0.0])
        eb.head, eb.tail = head.tolist(), tail.tolist()
        eb.roll = float(rng.uniform(-math.pi, math.pi))      # "random-ish" rolls
        if parent:
            eb.parent = edit[parent]
            eb.use_connect = False
        edit[name] = eb
    bpy.ops.object.mode_set(mode="OBJECT")
    obj.scale = (scale, scale, scale)
    if rotate_x90:
        obj.rotation_euler = (math.radians(90.0), 0.0, 0.0)
    bpy.context.view_layer.update()
    return obj


SMPL_NAMES = ("Pelvis", "L_Hip", "R_Hip", "Spine1", "L_Knee", "R_Knee", "Spine2", "L_Ankle", "R_Ankle",
              "Spine3", "L_Foot", "R_Foot", "Neck", "L_Collar", "R_Collar", "Head", "L_Shoulder",
              "R_Shoulder", "L_Elbow", "R_Elbow", "L_Wrist", "R_Wrist")
SMPL_PARENTS = (-1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19)


def make_smpl_rig_from_joints(joints: np.ndarray, name: str = "SMPL") -> bpy.types.Object:
    """An SMPL-named rig whose rest heads are ``joints (22, 3)`` (Y up, metres), turned Z up.

    Each bone points at its first child; leaves continue their parent's direction.
    """
    joints = np.asarray(joints, dtype=float)
    zup = np.stack([joints[:, 0], -joints[:, 2], joints[:, 1]], axis=-1)     # Y-up → Z-up, +Z → -Y
    data = bpy.data.armatures.new(name)
    obj = bpy.data.objects.new(name, data)
    bpy.context.scene.collection.objects.link(obj)
    _select_only(obj)
    bpy.ops.object.mode_set(mode="EDIT")
    edit = []
    for i, bone in enumerate(SMPL_NAMES):
        eb = data.edit_bones.new(bone)
        kids = [c for c, p in enumerate(SMPL_PARENTS) if p == i]
        head = zup[i]
        tail = zup[kids[0]] if kids else head + (head - zup[SMPL_PARENTS[i]]) * 0.5
        eb.head, eb.tail = head.tolist(), tail.tolist()
        if SMPL_PARENTS[i] >= 0:
            eb.parent = edit[SMPL_PARENTS[i]]
        edit.append(eb)
    bpy.ops.object.mode_set(mode="OBJECT")
    return obj


def make_smpl_rig_from_sample(features_or_joints: np.ndarray, frame: int = 0,
                              name: str = "SMPL") -> bpy.types.Object:
    """An SMPL rig posed like ``frame`` of a clip: 263-D features ``(T, 263)`` or joints ``(T, 22, 3)``."""
    data = np.asarray(features_or_joints, dtype=float)
    if data.ndim == 2 and data.shape[-1] >= 67:
        from backend.motion.features import recover_from_ric  # numpy only here (no scipy in Blender)

        data = recover_from_ric(data)
    joints = data[frame] if data.ndim == 3 else data
    return make_smpl_rig_from_joints(joints, name=name)


def describe_armature(obj: bpy.types.Object) -> dict:
    """The armature as ``RigDescription.to_dict()``, written independently of the add-on's
    ``momask_blender/rig_io.describe_armature`` so that keys_blender.py can cross-check the two; every
    other test uses the add-on's."""
    bones = obj.data.bones
    n = len(bones)
    flat = np.empty(n * 16, dtype=np.float32)
    bones.foreach_get("matrix_local", flat)
    rest = flat.reshape(n, 4, 4).transpose(0, 2, 1).astype(np.float64)   # column-major → row-major
    lengths = np.empty(n, dtype=np.float32)
    bones.foreach_get("length", lengths)
    names = [b.name for b in bones]
    index = {name: i for i, name in enumerate(names)}
    return {
        "bone_names": names,
        "parents": [index[b.parent.name] if b.parent else -1 for b in bones],
        "rest_matrices": rest,
        "world_matrix": np.array(obj.matrix_world, dtype=np.float64),
        "rotation_modes": [obj.pose.bones[name].rotation_mode for name in names],
        "lengths": lengths.astype(np.float64),
        "name": obj.name,
    }



def ground_travel(track: np.ndarray, sigma_frames: float) -> np.ndarray:
    """A ground track (T, k) low-passed with a Gaussian of ``sigma_frames`` (ends reflected): its travel,
    which a steering path places (docs/retargeting.md §11.1, σ = 0.25 s); the sway about it is the body's."""
    radius = int(3 * sigma_frames)
    kernel = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma_frames) ** 2)
    kernel /= kernel.sum()
    padded = np.concatenate([2 * track[:1] - track[radius:0:-1], track,
                             2 * track[-1:] - track[-2:-radius - 2:-1]])
    return np.stack([np.convolve(padded[:, k], kernel, mode="valid") for k in range(track.shape[1])], axis=1)
