"""A lean forward of the official encoder stack and output head, for the fast flow only.

The masked and residual transformers are stock ``nn.TransformerEncoder`` stacks (sequence-first,
post-LN, exact GELU, key padding mask). Run as modules, every layer re-canonicalises the padding
mask into an additive float mask, splits the packed QKV projection with a copy, and reshapes between
the sequence-first layout and attention's (batch, heads, seq, dim). This module computes the same
layers with the SAME parameter tensors (no copies), in a batch-first layout:

* one packed QKV matrix product per layer, split by views straight into attention's layout;
* ``scaled_dot_product_attention`` with an additive key mask made once per job — or no mask at all
  when no key is hidden (every row at full length, the usual single-prompt case, on a CPU);
* residual additions in place; ``F.layer_norm`` and exact ``F.gelu`` as the stock layer calls them.

The arithmetic is the stock layer's; only the order of a few float roundings may differ. The
reference flow keeps calling the modules (it mirrors the official code); this is for
``backend.inference.sampling.fast_flow``. Layers of another kind (norm first, another activation, separate
Q/K/V weights) are run by the stock module.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from backend.models.masked_transformer import OutputProcess


def attention_bias(key_padding: Tensor, dtype: torch.dtype = torch.float32) -> Tensor | None:
    """(rows, seq) bool, True = hidden key → additive mask (rows, 1, 1, seq): 0 or −inf.

    None when no key is hidden and the device is a CPU (attention without a mask is faster). On other
    devices the mask is always made: checking would wait for the device (and a CUDA-graph capture
    forbids it), and a later job can reuse the same captured pass with padding.
    """
    if key_padding.device.type == "cpu" and not bool(key_padding.any()):
        return None
    bias = torch.zeros(key_padding.shape, dtype=dtype, device=key_padding.device)
    return bias.masked_fill_(key_padding, float("-inf"))[:, None, None, :]


def _is_lean(layer: nn.Module) -> bool:
    """True when ``layer`` is a post-LN, exact-GELU stock encoder layer with packed Q/K/V."""
    attention = getattr(layer, "self_attn", None)
    return (isinstance(layer, nn.TransformerEncoderLayer) and not layer.norm_first
            and layer.activation_relu_or_gelu == 2 and isinstance(attention, nn.MultiheadAttention)
            and attention._qkv_same_embed_dim and attention.in_proj_bias is not None
            and attention.bias_k is None and not attention.add_zero_attn)


def _add_residual(branch: Tensor, residual: Tensor) -> Tensor:
    """``residual + branch``, in place when the dtypes allow (under autocast they may differ)."""
    return branch.add_(residual) if branch.dtype == residual.dtype else residual + branch


def encoder_layer(layer: nn.TransformerEncoderLayer, x: Tensor, bias: Tensor | None) -> Tensor:
    """One post-LN encoder layer on batch-first ``x`` (rows, seq, width), eval mode (no dropout)."""
    attention = layer.self_attn
    rows, seq, width = x.shape
    heads = attention.num_heads
    qkv = F.linear(x, attention.in_proj_weight, attention.in_proj_bias)       # (rows, seq, 3·width)
    q, k, v = qkv.view(rows, seq, 3, heads, width // heads).permute(2, 0, 3, 1, 4)   # (rows, heads, seq, d)
    context = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
    context = context.transpose(1, 2).reshape(rows, seq, width)
    h = _add_residual(F.linear(context, attention.out_proj.weight, attention.out_proj.bias), x)
    x = F.layer_norm(h, (width,), layer.norm1.weight, layer.norm1.bias, layer.norm1.eps)
    h = F.gelu(F.linear(x, layer.linear1.weight, layer.linear1.bias))
    h = _add_residual(F.linear(h, layer.linear2.weight, layer.linear2.bias), x)
    return F.layer_norm(h, (width,), layer.norm2.weight, layer.norm2.bias, layer.norm2.eps)


def encoder_forward(encoder: nn.TransformerEncoder, x: Tensor, bias: Tensor | None) -> Tensor:
    """``encoder`` (the official stack) on batch-first ``x`` (rows, seq, width) → (rows, seq, width).

    ``bias``: from :func:`attention_bias` (None = every key visible).
    """
    for layer in encoder.layers:
        if _is_lean(layer):
            x = encoder_layer(layer, x, bias)
        else:  # an unusual layer: the stock module, sequence-first, with a boolean key mask
            padding = None if bias is None else torch.isinf(bias[:, 0, 0, :])
            x = layer(x.transpose(0, 1), src_key_padding_mask=padding).transpose(0, 1)
    if encoder.norm is not None:
        x = encoder.norm(x)
    return x


def head_forward(head: OutputProcess, hidden: Tensor) -> Tensor:
    """The official ``OutputProcess`` (dense → GELU → LayerNorm → poseFinal) on batch-first hidden
    states (rows, n, latent) → (rows, n, out), i.e. without its final permute.

    A sliced ``hidden`` (the condition tokens dropped) is made contiguous first: one matrix product
    instead of a batched one, as the stock sequence-first slice gets.
    """
    return head.poseFinal(head.LayerNorm(F.gelu(head.dense(hidden.contiguous()))))
