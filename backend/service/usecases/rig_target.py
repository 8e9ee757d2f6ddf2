"""The rig a request drives: its mapping and the ``retarget`` settings (docs/protocol.md, generate)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from backend.portable import messages
from backend.retarget.mapping import auto_map, require_complete
from backend.retarget.rig import RigDescription
from backend.retarget.solver import analyse_rig, retarget


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
    return RetargetTarget(rig, mapping, dst_fps, spec.foot_lock, spec.in_place)
