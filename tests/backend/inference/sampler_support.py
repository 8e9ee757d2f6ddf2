"""Helpers the sampler tests share (not fixtures, so they live outside conftest.py: a test module
that imported them from ``conftest`` got whichever conftest pytest had loaded first)."""

from __future__ import annotations

import pytest


def sample_tokens(small_transformers, flow, lengths: list[int], seed: int = 0, steps: int = 10,
                  gumbel: bool = False, reporter=None, cond_scale: float = 4.0):
    """Base then residual tokens (b, n, 6) for random text features, the way the pipeline runs the
    samplers (shared by the sampler and accelerator tests). ``flow`` is a ``sampling.Flow``."""
    import torch

    from backend.inference import sampling

    mask, residual = small_transformers
    cond = torch.randn(len(lengths), 512, generator=torch.Generator().manual_seed(123))
    lens = torch.tensor(lengths)
    seq_len = max(lengths)
    padding = sampling.padding_mask_for(lens, seq_len)
    generator = torch.Generator().manual_seed(seed)
    with torch.inference_mode():
        base_logits = flow.base_logits(mask, cond, padding, cond_scale)
        base = sampling.masked_generate(base_logits, lens, seq_len, steps, generator=generator, gumbel=gumbel,
                                        reporter=reporter)
        embed, proj = residual.tied_weights()
        residual_logits = flow.residual_logits(residual, cond, padding, 5.0, proj)
        return sampling.residual_generate(residual_logits, embed, base, lens, generator=generator,
                                          reporter=reporter)


class DrawRecorder:
    """Records every torch.multinomial and Tensor.uniform_ call (kind, shape), in order."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        import torch

        self.calls: list[tuple[str, tuple[int, ...]]] = []
        multinomial, uniform = torch.multinomial, torch.Tensor.uniform_

        def record_multinomial(probs, *args, **kwargs):
            self.calls.append(("multinomial", tuple(probs.shape)))
            return multinomial(probs, *args, **kwargs)

        def record_uniform(tensor, *args, **kwargs):
            self.calls.append(("uniform_", tuple(tensor.shape)))
            return uniform(tensor, *args, **kwargs)

        monkeypatch.setattr(torch, "multinomial", record_multinomial)
        monkeypatch.setattr(torch.Tensor, "uniform_", record_uniform)
