"""The rig a request drives: its mapping and the ``retarget`` settings (docs/protocol.md, generate)."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from backend.portable.errors import InputError
from backend.retarget.mapping import auto_map, require_complete
from backend.retarget.rig import RigDescription
from backend.retarget.solver import analyse_rig, retarget
from backend.service.usecases.fields import field


@dataclasses.dataclass
class RetargetTarget:
    rig: Any
    mapping: Any
    dst_fps: float
    foot_lock: bool
    in_place: bool

    setup: Any = None        # the rig analysis, done once and reused for every take

    def analysis(self) -> Any:
        """The rig analysis (``solver.analyse_rig``), made on first use."""
        if self.setup is None:
            self.setup = analyse_rig(self.rig, self.mapping)
        return self.setup

    def run(self, joints: Any, src_fps: float, transform: Any = None, frame_count: int | None = None
            ) -> dict[str, Any]:
        """Retarget ``joints``; ``transform`` and ``frame_count`` as in ``solver.retarget``."""
        result = retarget(joints, self.rig, self.mapping, src_fps=src_fps, dst_fps=self.dst_fps,
                          foot_lock=self.foot_lock, in_place=self.in_place, setup=self.analysis(),
                          transform=transform, frame_count=frame_count)
        return result.to_dict()


def mapped_rig(spec: dict[str, Any]) -> tuple[Any, Any]:
    """The ``rig`` (a RigDescription dict) and its automatic mapping with ``overrides`` applied."""
    rig_dict = spec.get("rig")
    if not isinstance(rig_dict, dict):
        raise InputError("The request has no 'rig'.",
                         "Send the armature as a RigDescription dict (the add-on's rig_io does this).")
    overrides = spec.get("overrides") or None
    if overrides is not None and not isinstance(overrides, dict):
        raise InputError("'overrides' must map roles to bone names.", "Send {\"pelvis\": \"Hips\", ...}.")
    rig = RigDescription.from_dict(rig_dict)
    return rig, auto_map(rig, overrides)


def retarget_target(spec: dict[str, Any] | None, default_fps: float,
                    mapped: tuple[Any, Any] | None = None) -> RetargetTarget | None:
    """Parse a ``retarget`` section; fails before any generation if the rig cannot be driven.
    ``mapped``: the rig and its complete mapping, when the caller has them already."""
    if spec is None:
        return None
    if not isinstance(spec, dict):
        raise InputError("'retarget' must be an object with a 'rig'.", "See docs/protocol.md, generate.")
    if mapped is None:
        mapped = mapped_rig(spec)
        require_complete(mapped[1])
    rig, mapping = mapped
    dst_fps = field(spec, "dst_fps", float, default_fps)
    if not (dst_fps > 0 and math.isfinite(dst_fps)):
        raise InputError(f"dst_fps must be positive, got {dst_fps}.", "Send the scene's frame rate.")
    return RetargetTarget(rig, mapping, dst_fps, bool(field(spec, "foot_lock", bool, True)),
                          bool(field(spec, "in_place", bool, False)))
