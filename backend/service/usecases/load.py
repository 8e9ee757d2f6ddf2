"""``load``: load the models now (or reload them with new settings) and encode prompts ahead."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from backend.portable import messages
from backend.service.jobs import Job, JobProgress
from backend.service.state import ServiceState, pipeline_info


def run(request: messages.LoadRequest, job: Job, state: ServiceState) -> dict[str, Any]:
    """Load the models now (or reload them when weights, dataset, CLIP or device change)."""
    config = state.config
    changes: dict[str, Any] = {}
    for name in ("weights", "clip"):
        value = getattr(request, name)
        if value is not None and Path(value) != getattr(config, name):
            changes[name] = Path(value)
    for name in ("dataset", "device"):
        value = getattr(request, name)
        if value is not None and value != getattr(config, name):
            changes[name] = value
    prompts, prime = request.prompts, request.prime
    if changes:
        state.reconfigure(**changes)
    progress = JobProgress(job, total=1)
    started = time.perf_counter()
    was_loaded = state.loaded
    pipeline = state.ensure_pipeline(progress, job)
    loaded = time.perf_counter()
    # Prompts typed but not yet generated: their CLIP features go into the encoder's cache, so
    # the Generate that follows skips the text tower (the fast flow reads that cache).
    encoder = pipeline.models.text_encoder
    fresh = list(dict.fromkeys(p.strip() for p in prompts if p.strip() and not encoder.cached(p.strip())))
    if fresh:
        encoder.encode(fresh)
    encoded = time.perf_counter()
    primed = 0.0
    if prime and not was_loaded:   # once per fresh load: later jobs run warm anyway
        pipeline.prime()
        primed = time.perf_counter() - encoded
    progress.finish("load")
    return {"loaded": True, "already_loaded": was_loaded, "encoded": len(fresh),
            "info": pipeline_info(pipeline),
            "timings": {"load": round(loaded - started, 4), "encode": round(encoded - loaded, 4),
                        "prime": round(primed, 4)}}
