"""``hello``: versions, device, weights and CLIP status, answered without loading the models."""

from __future__ import annotations

import os
import platform
import sys
from typing import Any

from backend import __version__, doctor
from backend.portable import messages, protocol
from backend.portable.errors import MoMaskError
from backend.service.jobs import Job
from backend.service.state import ServiceState, pipeline_info


class ProtocolMismatch(MoMaskError):
    """The add-on and the backend come from releases that speak different protocol versions."""

    code = protocol.PROTOCOL_MISMATCH


def run(request: messages.HelloRequest, job: Job, state: ServiceState) -> dict[str, Any]:
    config = state.config
    client_protocol = request.protocol
    if client_protocol is not None and client_protocol != protocol.PROTOCOL_VERSION:
        raise ProtocolMismatch(f"The add-on speaks protocol {client_protocol}, the backend "
                               f"{protocol.PROTOCOL_VERSION} (backend {__version__}).",
                               "Install the add-on and the backend from the same release.")
    weights = doctor.weights_status(config.weights, config.dataset)
    pipeline = state.pipeline           # read once: the model lane may replace it meanwhile
    return {
        "protocol": protocol.PROTOCOL_VERSION,
        "backend_version": __version__,
        "python": platform.python_version(),
        "executable": sys.executable,
        "torch": doctor.torch_version(),
        "device": {"requested": config.device,
                   "resolved": (pipeline_info(pipeline).get("device") if pipeline is not None else None)
                   or doctor.resolve_device(config.device)},
        "dataset": config.dataset,
        "fps": config.fps,
        "weights": {"root": str(config.weights) if config.weights else None,
                    "found": weights["found"], "missing": weights["missing"], "loaded": pipeline is not None},
        "clip": doctor.clip_status(config.clip, config.weights),
        "host": platform.node(),  # which computer answers: the panel names it for a remote backend
        "pid": os.getpid(),
        "log": str(config.log_path) if config.log_path else None,
        "capabilities": list(messages.COMPOSE_CAPABILITIES),     # what ``compose`` can do (protocol.md)
    }
