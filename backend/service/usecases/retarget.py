"""``retarget``: drive one or more rigs from joints the client already has, or from another rig's
animation (a pose source: Apply Motion and Copy Take in the add-on, docs/protocol.md "retarget")."""

from __future__ import annotations

import time

import numpy as np

from backend.motion import skeleton as sk
from backend.portable import messages
from backend.portable.errors import RigError
from backend.retarget.inverse import joints_from_pose
from backend.retarget.mapping import auto_map
from backend.retarget.rig import RigDescription
from backend.service.jobs import Job, check_cancel
from backend.service.state import ServiceState
from backend.service.usecases.fields import float_array
from backend.service.usecases.rig_target import retarget_target


def source_joints(source: messages.PoseSource) -> tuple[np.ndarray, dict]:
    """The 22 joints (Y up, metres) a pose source shows, in its own proportions (no model reads them,
    so they are not re-proportioned to HumanML3D: docs/retargeting.md §9), and its mapping."""
    rig = RigDescription.from_dict(source.rig.to_dict())
    mapping = auto_map(rig, dict(source.overrides) or None)
    if mapping.missing:
        name = rig.name or "the source armature"
        raise RigError(f"The motion's armature '{name}' has no bone for: {', '.join(mapping.missing)}; "
                       "MoMask cannot read its motion.",
                       "Use a humanoid skeleton whose bones are named by a common convention (Mixamo, "
                       "Rigify, UE, SMPL...), or open the source armature in Blender, map it in the MoMask "
                       "panel's Bone Mapping box and apply its action from there.")
    matrices = float_array(source.pose_matrices, "source.pose_matrices", (len(rig.bone_names), 4, 4))
    return joints_from_pose(rig, mapping, matrices, reproportion=False), mapping.to_dict()


def run(request: messages.RetargetRequest, job: Job, state: ServiceState) -> messages.RetargetResult:
    source_mapping = None
    if request.source is not None:
        src_fps = request.source.fps or request.fps or state.config.fps
        joints, source_mapping = source_joints(request.source)
    else:
        src_fps = state.config.fps if request.fps is None else request.fps
        joints = float_array(request.joints, "joints", (sk.NUM_JOINTS[state.config.dataset], 3))
    # Every rig is checked (mapped completely) before any is solved, so a bad one fails the request at once.
    targets = [_checked_target(spec, src_fps, several=bool(request.targets))
               for spec in (request.target, *request.targets)]
    started = time.perf_counter()
    driven = []
    for target in targets:
        assert target is not None
        check_cancel(job)
        driven.append({"retarget": target.run(joints, src_fps), "mapping": target.mapping.to_dict()})
    first, *more = driven
    return messages.RetargetResult(retarget=first["retarget"], mapping=first["mapping"],
                                   targets=tuple(more) if request.targets else None,
                                   source_mapping=source_mapping,
                                   timings={"retarget": round(time.perf_counter() - started, 4)})


def _checked_target(spec: messages.RetargetSpec, src_fps: float, several: bool):
    """``retarget_target``; with several rigs in the request, a rig that cannot be mapped is named."""
    try:
        return retarget_target(spec, src_fps)
    except RigError as exc:
        if not several or spec.rig is None or not spec.rig.name:
            raise
        raise RigError(f"'{spec.rig.name}': {exc.problem}", exc.fix) from exc
