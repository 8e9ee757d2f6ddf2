"""``retarget``: drive a rig from joints the client already has."""

from __future__ import annotations

import time
from typing import Any

from backend.motion import skeleton as sk
from backend.service.jobs import Job
from backend.service.state import ServiceState
from backend.service.usecases.fields import field, float_array
from backend.service.usecases.rig_target import retarget_target


def run(request: dict[str, Any], job: Job, state: ServiceState) -> dict[str, Any]:
    src_fps = field(request, "fps", float, state.config.fps)
    joints = float_array(field(request, "joints", object, required=True), "joints",
                         (sk.NUM_JOINTS[state.config.dataset], 3))
    target = retarget_target(request, src_fps)
    assert target is not None
    started = time.perf_counter()
    out = target.run(joints, src_fps)
    return {"retarget": out, "mapping": target.mapping.to_dict(),
            "timings": {"retarget": round(time.perf_counter() - started, 4)}}
