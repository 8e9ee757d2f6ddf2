"""``retarget``: drive a rig from joints the client already has."""

from __future__ import annotations

import time

from backend.motion import skeleton as sk
from backend.portable import messages
from backend.service.jobs import Job
from backend.service.state import ServiceState
from backend.service.usecases.fields import float_array
from backend.service.usecases.rig_target import retarget_target


def run(request: messages.RetargetRequest, job: Job, state: ServiceState) -> messages.RetargetResult:
    src_fps = state.config.fps if request.fps is None else request.fps
    joints = float_array(request.joints, "joints", (sk.NUM_JOINTS[state.config.dataset], 3))
    target = retarget_target(request.target, src_fps)
    assert target is not None
    started = time.perf_counter()
    out = target.run(joints, src_fps)
    return messages.RetargetResult(retarget=out, mapping=target.mapping.to_dict(),
                                   timings={"retarget": round(time.perf_counter() - started, 4)})
