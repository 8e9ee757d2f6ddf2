"""What every use case of the service shares: its configuration and the models, loaded once."""

from __future__ import annotations

import dataclasses
import gc
import logging
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from backend.inference.pipeline import MoMaskPipeline
from backend.motion import skeleton as sk
from backend.portable.errors import CheckpointError, InputError
from backend.service.jobs import Job, JobProgress, check_cancel

log = logging.getLogger("momask.service")


@dataclasses.dataclass
class ServiceConfig:
    weights: Path | None
    dataset: str = "t2m"
    clip: Path | None = None
    device: str = "auto"
    log_path: Path | None = None
    #: Test hook (``MOMASK_DEBUG_STEP_DELAY``): seconds to sleep after every decoding step.
    step_delay: float = 0.0

    @property
    def fps(self) -> float:
        return sk.FPS[self.dataset]

    @property
    def log_hint(self) -> str:
        """Where an ``internal`` error's traceback went, for its fix."""
        return str(self.log_path or "stderr")


def load_pipeline(config: ServiceConfig) -> Any:
    if config.weights is None:
        raise CheckpointError("No weights folder is configured for the backend.",
                              "Set the weights folder in the add-on preferences (or pass --weights).")
    return MoMaskPipeline.load(config.weights, dataset=config.dataset, clip=config.clip, device=config.device)


def pipeline_info(pipeline: Any) -> dict[str, Any]:
    """The pipeline's ``info()``, or ``{}``: it is for logs and hello, never worth failing a job over."""
    try:
        return dict(pipeline.info())
    except Exception:  # noqa: BLE001 - see the docstring
        return {}


class ServiceState:
    """The configuration and the pipeline, loaded on first use and reloaded when ``load`` changes them.

    Only the model lane touches the pipeline (docs/protocol.md, Requests), so it needs no lock;
    ``hello`` on the light lane only reads whether it is loaded.
    """

    def __init__(self, config: ServiceConfig, pipeline_loader: Callable[[ServiceConfig], Any] | None = None
                 ) -> None:
        self.config = config
        # Looked up when the service starts, not at import, so a test can replace ``load_pipeline``.
        self._load_pipeline = pipeline_loader or load_pipeline
        self.pipeline: Any = None

    @property
    def loaded(self) -> bool:
        return self.pipeline is not None

    def ensure_pipeline(self, progress: JobProgress | None, job: Job) -> Any:
        if self.pipeline is None:
            if progress:
                progress.report("load", progress.done)
            started = time.perf_counter()
            self.pipeline = self._load_pipeline(self.config)
            log.info("models loaded in %.2f s: %s", time.perf_counter() - started,
                     pipeline_info(self.pipeline))
            if progress:
                progress.report("load", progress.done + 1)
        check_cancel(job)
        return self.pipeline

    def reconfigure(self, **changes: Any) -> None:
        """Drop the models (and the CUDA cache) and take new settings; the next job loads again."""
        if changes.get("dataset", self.config.dataset) not in sk.FPS:
            raise InputError(f"Unknown dataset {changes['dataset']!r}.", "Use 't2m' or 'kit'.")
        self.pipeline = None
        gc.collect()
        torch = sys.modules.get("torch")
        if torch is not None and torch.cuda.is_available():
            torch.cuda.empty_cache()
        self.config = dataclasses.replace(self.config, **changes)
