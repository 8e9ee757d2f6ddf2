"""``MoMaskPipeline.regenerate_tokens`` on tiny random weights: kept tokens come back bit-identical on
all six layers wherever they are, the others are regenerated from the prompt."""

from __future__ import annotations

import numpy as np
import pytest

from backend.inference.pipeline import MoMaskPipeline, SamplingSettings
from backend.portable.errors import InputError


@pytest.fixture(scope="module")
def pipeline(tiny_weights) -> MoMaskPipeline:
    return MoMaskPipeline.load(tiny_weights, device="cpu")


def test_scattered_kept_tokens_stay_bit_identical_on_every_layer(pipeline, sample_features) -> None:
    source = pipeline.encode(sample_features[:120])                 # 30 tokens
    keep = np.zeros(len(source), dtype=bool)
    keep[[0, 7, 8, 19, 29]] = True                                  # start, a pair, middle, end
    batch = pipeline.regenerate_tokens(source, keep, "a person jumps", SamplingSettings(seed=3, steps=4))
    tokens = batch.tokens[0]
    assert tokens.shape == (30, 6) and batch.joints.shape == (1, 120, 22, 3)
    assert np.array_equal(tokens[keep], source[keep])
    changed = (tokens[~keep] != source[~keep]).any(axis=1)
    assert changed.mean() > 0.5, "the tokens between the kept ones were not regenerated"
    again = pipeline.regenerate_tokens(source, keep, "a person jumps", SamplingSettings(seed=3, steps=4))
    assert np.array_equal(again.tokens, batch.tokens)


def test_nothing_to_regenerate_is_refused(pipeline, sample_features) -> None:
    source = pipeline.encode(sample_features[:40])
    with pytest.raises(InputError, match="at least one not kept"):
        pipeline.regenerate_tokens(source, np.ones(len(source), dtype=bool), "a person walks")
    with pytest.raises(InputError, match="keep mask"):
        pipeline.regenerate_tokens(source, np.ones(3, dtype=bool), "a person walks")
