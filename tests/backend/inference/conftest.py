"""Fixtures of the inference tests."""

from __future__ import annotations

import pytest

from backend.inference import fast_transformer


@pytest.fixture()
def windows(monkeypatch, pipeline) -> list[int]:
    """Motion tokens of every transformer pass of ``pipeline`` (the test module's): the sequence minus
    its text token (masked transformer) or its text and layer tokens (residual transformer)."""
    seen: list[int] = []
    original = fast_transformer.encoder_forward
    masked = pipeline.models.mask_transformer.seqTransEncoder

    def recording(encoder, sequence, attention_bias):
        seen.append(int(sequence.shape[1]) - (1 if encoder is masked else 2))
        return original(encoder, sequence, attention_bias)

    monkeypatch.setattr(fast_transformer, "encoder_forward", recording)
    return seen
