"""Masked regeneration of a token window with an arbitrary keep mask, and the windowed decoder."""

from __future__ import annotations

import numpy as np
import pytest

from backend.inference import sampling
from backend.inference.pipeline import (
    DECODE_CHUNK_TOKENS,
    DECODER_RECEPTIVE_TOKENS,
    MAX_TOKENS,
    MoMaskPipeline,
    SamplingSettings,
    decode_chunks,
)
from backend.portable.errors import InputError


@pytest.fixture(scope="module")
def pipeline(tiny_weights) -> MoMaskPipeline:
    return MoMaskPipeline.load(tiny_weights, device="cpu")


def _take(pipeline: MoMaskPipeline, frames: int = 196, seed: int = 3) -> np.ndarray:
    settings = SamplingSettings(seed=seed, steps=4)
    return pipeline.text_to_motion(["a person walks"], [frames], settings).tokens[0]


def test_kept_tokens_stay_on_all_layers_and_the_rest_is_regenerated(pipeline, windows) -> None:
    codes = _take(pipeline)
    keep = np.random.default_rng(0).random(len(codes)) < 0.5
    keep[:3] = True
    settings = SamplingSettings(seed=5, steps=4)
    out = pipeline.regenerate(codes, keep, "a person jumps", settings)
    assert out.shape == codes.shape and out.dtype == np.int64
    np.testing.assert_array_equal(out[keep], codes[keep])          # every layer, bit for bit
    assert (out[~keep, 0] >= 0).all()
    assert not np.array_equal(out[~keep], codes[~keep])             # something new was made
    assert windows and max(windows) <= MAX_TOKENS
    # Same seed, same tokens; another seed, others.
    np.testing.assert_array_equal(out, pipeline.regenerate(codes, keep, "a person jumps", settings))
    other = pipeline.regenerate(codes, keep, "a person jumps", SamplingSettings(seed=6, steps=4))
    assert not np.array_equal(other, out)


def test_unknown_tokens_can_be_filled_and_transitions_between_kept_sides(pipeline) -> None:
    codes = _take(pipeline, 120)
    holes = codes.copy()
    holes[10:20] = -1                                              # unknown on every layer
    keep = np.ones(len(codes), dtype=bool)
    keep[10:20] = False
    out = pipeline.regenerate(holes, keep, "a person turns around", SamplingSettings(seed=1, steps=3))
    np.testing.assert_array_equal(out[keep], codes[keep])
    assert (out[10:20, 0] >= 0).all()


def test_progress_counts_steps_and_residual_layers(pipeline) -> None:
    codes = _take(pipeline, 40)
    seen: list[tuple[str, int, int]] = []
    keep = np.zeros(len(codes), dtype=bool)
    pipeline.regenerate(codes, keep, "a person waves", SamplingSettings(steps=3),
                        progress=lambda *event: seen.append(event))
    assert [d for _, d, _ in seen] == list(range(1, 9)) and {t for _, _, t in seen} == {8}


@pytest.mark.parametrize("codes, keep, words", [
    (np.zeros((50, 6), dtype=np.int64), np.zeros(50, bool), "50 tokens"),
    (np.full((8, 6), -1), np.ones(8, bool), "no base-layer code"),
    (np.full((8, 6), 600), np.zeros(8, bool), "outside -1..511"),
    (np.zeros((8, 5), dtype=np.int64), np.zeros(8, bool), "one window"),
])
def test_bad_windows_are_refused(pipeline, codes, keep, words) -> None:
    with pytest.raises(InputError, match=words):
        pipeline.regenerate(codes, keep, "a person walks", SamplingSettings(steps=1))


def test_decoder_receptive_field_is_22_tokens(pipeline) -> None:
    """One token changed in the middle of a long sequence moves frames up to 87 frames away (21.75
    tokens) on each side, never more: the constant the windowed decoder's margin relies on."""
    import torch

    rng = np.random.default_rng(2)
    codes = rng.integers(0, 512, size=(120, 6))
    changed = codes.copy()
    changed[60] = (changed[60] + 1) % 512
    with torch.inference_mode():
        a = pipeline._decode(torch.from_numpy(codes)[None])[0]
        b = pipeline._decode(torch.from_numpy(changed)[None])[0]
    moved = np.nonzero(np.abs(a - b).max(axis=1) > 0)[0]
    reach = DECODER_RECEPTIVE_TOKENS * 4
    assert 240 - moved.min() <= reach and moved.max() - 243 <= reach
    assert 240 - moved.min() > (DECODER_RECEPTIVE_TOKENS - 1) * 4      # the bound is tight


def test_windowed_decode_matches_one_decode_and_is_local(pipeline) -> None:
    import torch

    rng = np.random.default_rng(4)
    codes = rng.integers(0, 512, size=(130, 6))
    windowed = pipeline.decode_tokens(codes)
    with torch.inference_mode():
        whole = pipeline._decode(torch.from_numpy(codes)[None])[0]
    assert windowed.shape == whole.shape
    assert np.abs(windowed - whole).max() < 1e-4 * max(1.0, float(np.abs(whole).max()))
    # Change tokens 70..79: every frame whose chunk window misses them is bit-identical.
    changed = codes.copy()
    changed[70:80] = rng.integers(0, 512, size=(10, 6))
    again = pipeline.decode_tokens(changed)
    for start, stop, lo, hi in decode_chunks(len(codes)):
        frames = slice(start * 4, stop * 4)
        if hi <= 70 or lo >= 80:
            np.testing.assert_array_equal(again[frames], windowed[frames])
    far = DECODE_CHUNK_TOKENS + DECODER_RECEPTIVE_TOKENS
    np.testing.assert_array_equal(again[: (70 - far) * 4], windowed[: (70 - far) * 4])
    np.testing.assert_array_equal(again[(80 + far) * 4:], windowed[(80 + far) * 4:])


def test_inpaint_still_keeps_the_source_outside(pipeline) -> None:
    codes = _take(pipeline, 120)
    features = pipeline.decode_tokens(codes)
    batch = pipeline.inpaint(features, 40, 80, "a person kicks", SamplingSettings(steps=3))
    keep = np.ones(30, dtype=bool)
    keep[10:20] = False
    source = pipeline.encode(features)
    np.testing.assert_array_equal(batch.tokens[0][keep], source[keep])


def test_sampling_masked_edit_never_touches_kept_positions() -> None:
    import torch

    generator = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, 512, (2, 30))
    edit = torch.rand(2, 30, generator=generator) < 0.4
    logits = lambda ids: torch.randn(ids.shape[0], ids.shape[1], 512, generator=generator)  # noqa: E731
    out = sampling.masked_edit(logits, tokens, edit, torch.tensor([30, 30]), 5, generator=generator)
    assert torch.equal(out[~edit], tokens[~edit])
