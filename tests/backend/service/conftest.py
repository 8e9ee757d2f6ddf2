"""The live services the service tests share: started once per session, tiny random weights."""

from __future__ import annotations

import numpy as np
import pytest

from tests.backend.service.live import Backend


@pytest.fixture(scope="session")
def backend(tiny_weights, tmp_path_factory):
    log = tmp_path_factory.mktemp("service") / "logs" / "nested" / "backend.log"
    proc = Backend.serve(tiny_weights, log)
    proc.log_path = log
    yield proc
    proc.close()


@pytest.fixture(scope="session")
def source_features(sample_features):
    return sample_features.astype(np.float32)


@pytest.fixture(scope="session")
def slow_backend(tiny_weights, tmp_path_factory):
    """Sleeps 0.25 s after every decoding step, so a cancel can land mid-generation."""
    proc = Backend.serve(tiny_weights, tmp_path_factory.mktemp("slow") / "backend.log",
                         env={"MOMASK_DEBUG_STEP_DELAY": "0.25"})
    proc.call("load")
    yield proc
    proc.close()
