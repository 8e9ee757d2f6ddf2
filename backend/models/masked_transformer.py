"""The masked (base-layer) transformer: predicts quantizer layer 0 tokens from text.

Paper: MoMask (Guo et al., CVPR 2024), Sec. 3.2, the masked transformer. Official module:
``models/mask_transformer/transformer.py::MaskTransformer`` with its ``InputProcess``,
``PositionalEncoding`` and ``OutputProcess_Bert`` (here ``OutputProcess``, shared with the residual
transformer: the same layers) (docs/model.md §3).

What differs: only the network is here (``trans_forward``, ``forward_with_cond_scale``); the official
``generate``/``edit`` loops are ``backend/inference/sampling.py`` (docs/sampling.md §2, §6), and the
training-only parts (random condition drop, masking for the loss) are left out.

A BERT-style bidirectional encoder over ``[condition, token_1..token_n]``; masked positions carry the
MASK token (id 512) and the model outputs logits over the 512 real codes at every position. The
sampling loop (confidence-ordered unmasking) lives in ``backend/inference/sampling.py``; this module is only
the network.

Compatibility notes:
* Keys and shapes equal the official ``MaskTransformer`` state_dict minus ``clip_model.*`` (the
  official model owns a CLIP copy that is never saved; ours owns none, the text encoder is shared).
* Stock ``nn.TransformerEncoderLayer`` (sequence-first, post-LN, exact GELU) so numerics match.
* Construction order and init calls follow the official class (docs/model.md §10): input Linear, encoder
  layer (deep-copied, no draws), ``cond_emb``, head, ``token_emb``, then a post-order pass that
  re-draws every Linear/Embedding weight from N(0, 0.02). The official CLIP construction that follows
  is not done here (see ``backend/weights/checkpoints.py``).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class InputProcess(nn.Module):
    """(b, n, code_dim) → (n, b, latent): sequence-first, then a Linear."""

    def __init__(self, input_feats: int, latent_dim: int) -> None:
        super().__init__()
        self.poseEmbedding = nn.Linear(input_feats, latent_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.poseEmbedding(x.permute(1, 0, 2))


class PositionalEncoding(nn.Module):
    """Sinusoidal table ``pe`` (max_len, 1, d), stored as a persistent buffer (it is in the checkpoints)."""

    def __init__(self, d_model: int, dropout: float = 0.1, max_len: int = 5000) -> None:
        super().__init__()
        self.dropout = nn.Dropout(p=dropout)
        # Always computed on the CPU, even when the model is built on the meta device to be loaded
        # (the checkpoint then replaces it): arange on meta would import torch's compiler (seconds).
        cpu = torch.device("cpu")
        pe = torch.zeros(max_len, d_model, device=cpu)
        position = torch.arange(0, max_len, dtype=torch.float, device=cpu).unsqueeze(1)
        div_term = torch.exp(torch.arange(0, d_model, 2, device=cpu).float() * (-math.log(10000.0) / d_model))
        pe[:, 0::2] = torch.sin(position * div_term)
        pe[:, 1::2] = torch.cos(position * div_term)
        self.pe: torch.Tensor
        self.register_buffer("pe", pe.unsqueeze(0).transpose(0, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(x + self.pe[: x.shape[0], :])


class OutputProcess(nn.Module):
    """Head: dense → GELU → LayerNorm(eps 1e-12) → ``poseFinal``; (n, b, latent) → (b, out, n)."""

    def __init__(self, out_feats: int, latent_dim: int) -> None:
        super().__init__()
        self.dense = nn.Linear(latent_dim, latent_dim)
        self.LayerNorm = nn.LayerNorm(latent_dim, eps=1e-12)
        self.poseFinal = nn.Linear(latent_dim, out_feats)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        hidden = self.LayerNorm(F.gelu(self.dense(hidden)))
        return self.poseFinal(hidden).permute(1, 2, 0)


def make_encoder(latent_dim: int, num_heads: int, ff_size: int, dropout: float, num_layers: int) -> nn.Module:
    """The official encoder stack: one stock layer deep-copied ``num_layers`` times, no final norm."""
    layer = nn.TransformerEncoderLayer(d_model=latent_dim, nhead=num_heads, dim_feedforward=ff_size,
                                       dropout=dropout, activation="gelu")
    # The nested-tensor fast path needs batch_first, so it was never used; disabling it only silences
    # the constructor's warning (no parameters, no RNG, same numerics).
    return nn.TransformerEncoder(layer, num_layers=num_layers, enable_nested_tensor=False)


def init_weights_like_official(module: nn.Module) -> None:
    """The official ``__init_weights`` (used with ``Module.apply``, i.e. children first)."""
    if isinstance(module, (nn.Linear, nn.Embedding)):
        module.weight.data.normal_(mean=0.0, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            module.bias.data.zero_()
    elif isinstance(module, nn.LayerNorm):
        module.bias.data.zero_()
        module.weight.data.fill_(1.0)


class MaskTransformer(nn.Module):
    """Text-conditioned masked token model for quantizer layer 0.

    ``mask_id`` = num_tokens (512), ``pad_id`` = num_tokens + 1 (513). Defaults are the released
    HumanML3D configuration: 12,048,768 parameters plus the ``pe`` buffer.
    """

    def __init__(self, code_dim: int = 512, latent_dim: int = 384, ff_size: int = 1024, num_layers: int = 8,
                 num_heads: int = 6, dropout: float = 0.2, clip_dim: int = 512, num_tokens: int = 512,
                 cond_drop_prob: float = 0.1) -> None:
        super().__init__()
        self.code_dim, self.latent_dim, self.clip_dim = code_dim, latent_dim, clip_dim
        self.num_tokens = num_tokens
        self.cond_drop_prob = cond_drop_prob  # training only; kept for information
        self.input_process = InputProcess(code_dim, latent_dim)
        self.position_enc = PositionalEncoding(latent_dim, dropout)
        self.seqTransEncoder = make_encoder(latent_dim, num_heads, ff_size, dropout, num_layers)
        self.cond_emb = nn.Linear(clip_dim, latent_dim)
        self.mask_id = num_tokens
        self.pad_id = num_tokens + 1
        self.output_process = OutputProcess(out_feats=num_tokens, latent_dim=latent_dim)
        self.token_emb = nn.Embedding(num_tokens + 2, code_dim)
        self.apply(init_weights_like_official)

    def trans_forward(self, ids: torch.Tensor, cond_vector: torch.Tensor, padding_mask: torch.Tensor,
                      force_mask: bool = False) -> torch.Tensor:
        """One pass. ids (b, n) int64, cond_vector (b, clip_dim), padding_mask (b, n) bool (True = pad).

        ``force_mask`` replaces the condition by zeros (the unconditional CFG branch).
        Returns logits (b, num_tokens, n).
        """
        if force_mask:
            cond_vector = torch.zeros_like(cond_vector)
        x = self.input_process(self.token_emb(ids))  # (n, b, latent)
        cond = self.cond_emb(cond_vector).unsqueeze(0)  # (1, b, latent)
        x = self.position_enc(x)  # positions only on motion tokens, never on the condition
        sequence = torch.cat([cond, x], dim=0)
        key_padding = torch.cat([torch.zeros_like(padding_mask[:, 0:1]), padding_mask], dim=1)
        output = self.seqTransEncoder(sequence, src_key_padding_mask=key_padding)[1:]
        return self.output_process(output)

    def forward_with_cond_scale(self, ids: torch.Tensor, cond_vector: torch.Tensor,
                                padding_mask: torch.Tensor, cond_scale: float = 3.0,
                                force_mask: bool = False) -> torch.Tensor:
        """Classifier-free guidance, official flow: conditional pass, then a SEPARATE unconditional pass.

        Returns ``uncond + (cond − uncond) · cond_scale`` (b, num_tokens, n); only the conditional
        logits when ``cond_scale == 1``; only the unconditional ones when ``force_mask``.
        """
        if force_mask:
            return self.trans_forward(ids, cond_vector, padding_mask, force_mask=True)
        logits = self.trans_forward(ids, cond_vector, padding_mask)
        if cond_scale == 1:
            return logits
        aux_logits = self.trans_forward(ids, cond_vector, padding_mask, force_mask=True)
        return aux_logits + (logits - aux_logits) * cond_scale
