"""The rig a request drives: its mapping and the ``retarget`` settings (docs/protocol.md, generate)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import numpy as np

from backend.portable import messages
from backend.retarget.inverse import default_transform
from backend.retarget.mapping import auto_map, require_complete
from backend.retarget.rig import RigDescription
from backend.retarget.solver import analyse_rig, retarget
from backend.retarget.steering import Steering


@dataclasses.dataclass
class RetargetTarget:
    rig: Any
    mapping: Any
    dst_fps: float
    foot_lock: bool
    in_place: bool
    steering: Steering | None = None     # path, waypoints, root motion, ground (docs/protocol.md)

    setup: Any = None        # the rig analysis, done once and reused for every take

    def analysis(self) -> Any:
        """The rig analysis (``solver.analyse_rig``), made on first use."""
        if self.setup is None:
            self.setup = analyse_rig(self.rig, self.mapping)
        return self.setup

    def run(self, joints: Any, src_fps: float, transform: Any = None, frame_count: int | None = None
            ) -> dict[str, Any]:
        """Retarget ``joints``; ``transform`` and ``frame_count`` as in ``solver.retarget``."""
        steering = self.steering
        if steering is not None:
            mode = steering.root_mode
            if mode == "in_place" and not self.in_place:        # (an in-between turns In Place off)
                mode = "none"
            steering = dataclasses.replace(steering, root_mode="in_place" if self.in_place else mode)
        result = retarget(joints, self.rig, self.mapping, src_fps=src_fps, dst_fps=self.dst_fps,
                          foot_lock=self.foot_lock, in_place=self.in_place, setup=self.analysis(),
                          transform=transform, frame_count=frame_count, steering=steering)
        return result.to_dict()

    def check_steering(self, frames: int | None = None, src_fps: float | None = None) -> None:
        """Refuse a path, waypoints or root bone this rig cannot follow, before any generation
        (``frames``: the take's length in frames at ``src_fps``, when known)."""
        if self.steering is not None:
            fps = self.dst_fps if src_fps is None else src_fps
            self.steering.check(self.analysis(), default_transform(self.analysis()), self.rig.world_matrix,
                                fps, self.dst_fps, frames)


def mapped_rig(rig: messages.RigSpec, overrides: Mapping[str, str]) -> tuple[Any, Any]:
    """The rig and its automatic mapping with ``overrides`` applied."""
    description = RigDescription.from_dict(rig.to_dict())
    return description, auto_map(description, dict(overrides) or None)


def retarget_target(spec: messages.RetargetSpec | None, default_fps: float,
                    mapped: tuple[Any, Any] | None = None) -> RetargetTarget | None:
    """The target of a ``retarget`` section; fails before any generation if the rig cannot be driven.
    ``mapped``: the rig and its complete mapping, when the caller has them already."""
    if spec is None:
        return None
    if mapped is None:
        assert spec.rig is not None          # (parse_request requires it where no rig is implied)
        mapped = mapped_rig(spec.rig, spec.overrides)
        require_complete(mapped[1])
    rig, mapping = mapped
    dst_fps = default_fps if spec.dst_fps is None else spec.dst_fps
    target = RetargetTarget(rig, mapping, dst_fps, spec.foot_lock, spec.root_mode == "in_place",
                            steering=steering_of(spec))
    target.check_steering()
    return target


def steering_of(spec: messages.RetargetSpec) -> Steering | None:
    """The solver's steering options for a ``retarget`` section, or None when it asks for none."""
    if not spec.steered:
        return None
    path = spec.path
    waypoints = spec.waypoints
    root = spec.root_motion
    return Steering(
        path=None if path is None else np.asarray(path.points, np.float64),
        timing="keep_speed" if path is None else path.timing,
        facing="tangent" if path is None else path.facing,
        waypoint_positions=np.array([w.position for w in waypoints], np.float64) if waypoints else None,
        waypoint_frames=np.array([w.frame for w in waypoints], np.float64) if waypoints else None,
        root_mode=spec.root_mode, root_bone="" if root is None else root.bone,
        heading=True if root is None else root.heading, ground=spec.ground)
