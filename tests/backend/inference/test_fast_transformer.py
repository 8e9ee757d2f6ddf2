"""The fast flow's lean encoder forward computes what the stock (official) encoder modules compute."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from backend.inference import fast_transformer
from backend.models.masked_transformer import make_encoder


@pytest.fixture(scope="module")
def encoder() -> nn.TransformerEncoder:
    torch.manual_seed(0)
    return make_encoder(latent_dim=32, num_heads=4, ff_size=64, dropout=0.2, num_layers=3).eval()


def stock(encoder: nn.TransformerEncoder, x: torch.Tensor, padding: torch.Tensor) -> torch.Tensor:
    """The official call: sequence-first, boolean key padding mask."""
    return encoder(x.transpose(0, 1), src_key_padding_mask=padding).transpose(0, 1)


def test_matches_the_stock_encoder_when_nothing_is_padded(encoder) -> None:
    x = torch.randn(2, 7, 32, generator=torch.Generator().manual_seed(1))
    padding = torch.zeros(2, 7, dtype=torch.bool)
    with torch.inference_mode():
        bias = fast_transformer.attention_bias(padding)
        assert bias is None  # no key hidden: attention runs without a mask
        lean = fast_transformer.encoder_forward(encoder, x, bias)
        torch.testing.assert_close(lean, stock(encoder, x, padding), rtol=1e-5, atol=1e-5)


def test_hidden_keys_are_ignored_like_the_stock_encoder(encoder) -> None:
    x = torch.randn(3, 9, 32, generator=torch.Generator().manual_seed(2))
    padding = torch.zeros(3, 9, dtype=torch.bool)
    padding[0, 5:] = True
    padding[2, 2:] = True
    with torch.inference_mode():
        lean = fast_transformer.encoder_forward(encoder, x, fast_transformer.attention_bias(padding))
        visible = ~padding
        torch.testing.assert_close(lean[visible], stock(encoder, x, padding)[visible], rtol=1e-5, atol=1e-5)
        # what sits in a hidden position must not change what the visible ones get
        changed = x.clone()
        changed[padding] = 100.0
        again = fast_transformer.encoder_forward(encoder, changed, fast_transformer.attention_bias(padding))
        torch.testing.assert_close(again[visible], lean[visible], rtol=1e-5, atol=1e-5)


def test_other_layer_kinds_fall_back_to_the_stock_module() -> None:
    torch.manual_seed(3)
    layer = nn.TransformerEncoderLayer(d_model=16, nhead=2, dim_feedforward=32, activation="relu",
                                       norm_first=True)
    encoder = nn.TransformerEncoder(layer, num_layers=2, enable_nested_tensor=False).eval()
    x = torch.randn(2, 5, 16)
    padding = torch.zeros(2, 5, dtype=torch.bool)
    padding[1, 3:] = True
    with torch.inference_mode():
        lean = fast_transformer.encoder_forward(encoder, x, fast_transformer.attention_bias(padding))
        visible = ~padding
        torch.testing.assert_close(lean[visible], stock(encoder, x, padding)[visible], rtol=1e-5, atol=1e-5)
