"""The CUDA fast path's CPU-testable half: padding jobs to static shapes must not change any token.

The graphs themselves need a GPU; here the same padded passes run eagerly (``capture=False``).
"""

from __future__ import annotations

import pytest
import torch
from sampler_support import sample_tokens as tokens

from backend.inference import cuda_graphs as accel
from backend.inference import sampling


@pytest.mark.parametrize("lengths", [[12], [12, 9, 4], [5, 16, 16, 3, 8]], ids=["b1", "b3", "b5"])
def test_padding_to_static_shapes_keeps_every_token(small_transformers, lengths) -> None:
    eager = tokens(small_transformers, sampling.fast_flow(), lengths, seed=3)
    static = accel.StaticPasses(tokens=16, buckets=(1, 2, 4, 8), capture=False)
    padded = tokens(small_transformers, static.wrap(sampling.fast_flow()), lengths, seed=3)
    assert torch.equal(eager, padded)


def test_one_static_pass_serves_jobs_of_other_sizes_in_its_bucket(small_transformers) -> None:
    """Later jobs reuse the buffers of earlier ones (stale rows and positions must stay hidden)."""
    static = accel.StaticPasses(tokens=16, buckets=(4,), capture=False)
    flow = static.wrap(sampling.fast_flow())
    for lengths in ([16, 16, 16, 16], [3, 7], [10]):
        eager = tokens(small_transformers, sampling.fast_flow(), lengths, seed=1)
        assert torch.equal(tokens(small_transformers, flow, lengths, seed=1), eager)


def test_unguided_passes_and_jobs_too_big_for_the_buckets(small_transformers) -> None:
    static = accel.StaticPasses(tokens=8, buckets=(1, 2), capture=False)
    flow = static.wrap(sampling.fast_flow())
    too_long, too_many = [12], [4, 4, 4]          # eager fallback
    for lengths, scale in ((too_long, 4.0), (too_many, 4.0), ([6, 8], 1.0)):
        assert torch.equal(tokens(small_transformers, flow, lengths, cond_scale=scale),
                           tokens(small_transformers, sampling.fast_flow(), lengths, cond_scale=scale))


def test_buckets() -> None:
    assert [accel.bucket(b) for b in (1, 2, 3, 5, 33, 64)] == [1, 2, 4, 8, 64, 64]
    assert accel.bucket(65) is None


def test_it_never_activates_off_cuda(monkeypatch) -> None:
    monkeypatch.setenv(accel.ENV, "graphs")
    assert accel.from_environment(torch.device("cpu")) is None
    monkeypatch.setenv(accel.ENV, "off")
    assert accel.from_environment("cuda") is None
    monkeypatch.setenv(accel.ENV, "warp-speed")
    assert accel.from_environment("cuda") is None
