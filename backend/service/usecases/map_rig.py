"""``map_rig``: the automatic bone mapping of an armature, without any model."""

from __future__ import annotations

from backend.portable import messages
from backend.service.jobs import Job
from backend.service.state import ServiceState
from backend.service.usecases.rig_target import mapped_rig


def run(request: messages.MapRigRequest, job: Job, state: ServiceState) -> messages.MapRigResult:
    _rig, mapping = mapped_rig(request.rig, request.overrides)
    return messages.MapRigResult(mapping=mapping.to_dict(), report=mapping.report(),
                                 missing=tuple(mapping.missing))
