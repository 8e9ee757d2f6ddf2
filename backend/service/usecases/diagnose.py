"""``diagnose``: the checks of ``python -m backend doctor`` (backend/doctor.py)."""

from __future__ import annotations

from typing import Any

from backend import doctor
from backend.portable import messages
from backend.service.jobs import Job
from backend.service.state import ServiceState


def run(request: messages.DiagnoseRequest, job: Job, state: ServiceState) -> dict[str, Any]:
    config = state.config
    return doctor.diagnose(config.weights, config.clip, config.device, config.dataset)
