"""``map_rig``: the automatic bone mapping of an armature, without any model."""

from __future__ import annotations

from typing import Any

from backend.service.jobs import Job
from backend.service.state import ServiceState
from backend.service.usecases.rig_target import mapped_rig


def run(request: dict[str, Any], job: Job, state: ServiceState) -> dict[str, Any]:
    _rig, mapping = mapped_rig(request)
    return {"mapping": mapping.to_dict(), "report": mapping.report(), "missing": list(mapping.missing),
            "complete": not mapping.missing}
