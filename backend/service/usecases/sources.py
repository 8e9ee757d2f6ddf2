"""Reading a request's source motion (``inpaint``'s ``source``, ``compose``'s ``continue_from``): a
rig's pose, joints or features, brought to the model's fps, with the rig target it implies."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from backend.motion import skeleton as sk
from backend.portable import messages
from backend.portable.errors import InputError
from backend.retarget.inverse import joints_and_transform_from_pose
from backend.retarget.mapping import require_complete
from backend.retarget.resample import resample_positions
from backend.service.jobs import Job, check_cancel
from backend.service.state import ServiceConfig
from backend.service.usecases.fields import float_array
from backend.service.usecases.rig_target import RetargetTarget, mapped_rig, retarget_target


@dataclasses.dataclass
class SourceMotion:
    model_source: np.ndarray        # features (T, D) or joints (T, J, 3) at the model's fps
    src_fps: float
    source_frames: int              # frames at the source's own fps
    target: RetargetTarget | None   # where the answer goes (a pose source: its own rig by default)
    placement: Any = None           # the source → rig transform of a pose source driven on its own rig


def read_source(source: messages.Source, retarget: messages.RetargetSpec | None, config: ServiceConfig,
                job: Job, dst_fps: float | None = None) -> SourceMotion:
    """The source at the model's fps. A pose is read through the source rig's mapping and the answer
    is retargeted onto the same rig (the add-on writes it back there) unless ``retarget`` names
    another; joints are resampled; features must be at the model's fps. ``dst_fps``: the target's
    frame rate when ``retarget`` has none (default: the source's)."""
    model_fps = config.fps
    src_fps = model_fps if source.fps is None else source.fps
    key_fps = src_fps if dst_fps is None else dst_fps
    target: RetargetTarget | None
    placement = None
    source_joints: np.ndarray | None = None
    if isinstance(source, messages.PoseSource):
        source_rig, source_mapping = mapped_rig(source.rig, source.overrides)
        require_complete(source_mapping)
        retarget_spec = retarget or messages.RetargetSpec()
        same_rig = retarget_spec.rig is None
        target = retarget_target(retarget_spec, key_fps,
                                 mapped=(source_rig, source_mapping) if same_rig else None)
        matrices = float_array(source.pose_matrices, "source.pose_matrices",
                               (len(source.rig.bone_names), 4, 4))
        assert target is not None      # (a pose source always has a target: its own rig by default)
        source_joints, read_transform = joints_and_transform_from_pose(
            source_rig, source_mapping, matrices, setup=target.analysis() if same_rig else None)
        # Back onto the same rig through the transform that read it, so retargeting the untouched
        # source reproduces the rig's own motion (height, scale) and the answer joins it seamlessly.
        if same_rig:
            placement = read_transform
        source_frames = int(matrices.shape[0])
    else:
        target = retarget_target(retarget, key_fps)
        if isinstance(source, messages.JointsSource):
            source_joints = float_array(source.data, "source.data", (sk.NUM_JOINTS[config.dataset], 3))
            source_frames = int(source_joints.shape[0])
        else:
            if abs(src_fps - model_fps) > 1e-6:
                raise InputError(f"Feature sources must be at the model's {model_fps:g} fps, "
                                 f"got {src_fps:g}.", "Send joints or a pose; those are resampled.")
            features = float_array(source.data, "source.data", (sk.FEATURE_DIM[config.dataset],))
            source_frames = int(features.shape[0])
    if source_joints is not None:
        check_cancel(job)
        if abs(src_fps - model_fps) > 1e-6:
            source_joints = resample_positions(source_joints, src_fps, model_fps)
        model_source = np.asarray(source_joints, dtype=np.float32)
    else:
        model_source = features
    return SourceMotion(model_source, src_fps, source_frames, target, placement)
