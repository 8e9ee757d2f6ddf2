"""The residual transformer: predicts quantizer layers 1..5 one after another.

Paper: MoMask (Guo et al., CVPR 2024), Sec. 3.2, the residual transformer. Official module:
``models/mask_transformer/transformer.py::ResidualTransformer`` (docs/model.md §4).

What differs: only the network is here; the official ``generate`` loop is
``backend/inference/sampling.py::residual_generate`` (docs/sampling.md §5). The tied weights are
built by :meth:`ResidualTransformer.tied_weights` and can be passed in, instead of being rebuilt on
every forward, and the model owns no CLIP copy (docs/model.md §6).

Input is the running sum of the embeddings of the layers already known (a continuous (b, n, C)
tensor), a one-hot of the layer to predict and the text condition; output is a C-dim feature per
position that ``output_project`` turns into logits over 513 classes (512 codes + PAD, id 512) with
the classifier of that layer. There is no MASK token.

Weight tying (released checkpoints: ``share_weight=True``, no shared codebook): three raw parameters
``token_embed_weight_`` (1,513,C), ``embed_proj_shared_weight`` (4,513,C), ``output_proj_weight_``
(1,513,C) form the embedding tables E_0..E_4 = [token_embed_weight_; embed_proj_shared_weight] and the
classifiers W_1..W_5 = [embed_proj_shared_weight; output_proj_weight_] (so W_j = E_j for j = 1..4).
:meth:`ResidualTransformer.tied_weights` builds both (5,513,C) stacks; the sampler calls it once per
generation and passes the classifier stack to :meth:`output_project`.

Other official configurations and their keys:
* ``share_weight=False``: ``token_embed_weight`` (5,513,C), ``output_proj_weight`` (5,513,C),
  ``output_proj_bias`` (6,513). The official ``output_project`` adds that bias as
  ``out += out + bias``, i.e. logits are DOUBLED before the bias; we replicate it while
  ``replicate_official_bias_doubling`` is True (the default) so such checkpoints behave as trained.
* ``shared_codebook=True``: the official code keeps its embedding/classifier tensors as plain
  attributes (expanded views), so they are never saved; such a checkpoint cannot be restored
  (``backend.weights.checkpoints`` refuses it). The tensors are still drawn here so the RNG order matches.

Construction order/init follows the official class (docs/model.md §10); no CLIP copy is owned.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .masked_transformer import (
    InputProcess,
    OutputProcess,
    PositionalEncoding,
    init_weights_like_official,
    make_encoder,
)


class ResidualTransformer(nn.Module):
    """Text-conditioned predictor of residual token layers 1..num_quantizers-1.

    Defaults are the released HumanML3D configuration: 13,364,224 parameters plus the ``pe`` buffer.
    """

    def __init__(self, code_dim: int = 512, latent_dim: int = 384, ff_size: int = 1024, num_layers: int = 8,
                 num_heads: int = 6, dropout: float = 0.2, clip_dim: int = 512, num_tokens: int = 512,
                 num_quantizers: int = 6, cond_drop_prob: float = 0.2, shared_codebook: bool = False,
                 share_weight: bool = True) -> None:
        super().__init__()
        self.code_dim, self.latent_dim, self.clip_dim = code_dim, latent_dim, clip_dim
        self.num_tokens, self.num_quantizers = num_tokens, num_quantizers
        self.cond_drop_prob = cond_drop_prob  # training only; kept for information
        self.input_process = InputProcess(code_dim, latent_dim)
        self.position_enc = PositionalEncoding(latent_dim, dropout)
        self.seqTransEncoder = make_encoder(latent_dim, num_heads, ff_size, dropout, num_layers)
        self.quant_emb = nn.Linear(num_quantizers, latent_dim)
        self.cond_emb = nn.Linear(clip_dim, latent_dim)
        vocab = num_tokens + 1  # codes + PAD
        self.pad_id = num_tokens
        self.output_process = OutputProcess(out_feats=code_dim, latent_dim=latent_dim)
        self.shared_codebook, self.share_weight = shared_codebook, share_weight
        self.replicate_official_bias_doubling = True
        self.output_proj_bias: torch.Tensor | None = None

        def draw(*size: int) -> torch.Tensor:  # official: torch.normal(0, 0.02), in this exact order
            return torch.normal(mean=0, std=0.02, size=size)

        if shared_codebook:
            # Official quirk: only expanded views are kept, nothing is registered (see module docstring).
            self._unsaved_token_embed = draw(vocab, code_dim)
            if not share_weight:
                self._unsaved_output_proj = draw(vocab, code_dim)
                self._unsaved_output_bias = torch.zeros(vocab)
        elif share_weight:
            self.embed_proj_shared_weight = nn.Parameter(draw(num_quantizers - 2, vocab, code_dim))
            self.token_embed_weight_ = nn.Parameter(draw(1, vocab, code_dim))
            self.output_proj_weight_ = nn.Parameter(draw(1, vocab, code_dim))
        else:
            self.output_proj_weight = nn.Parameter(draw(num_quantizers - 1, vocab, code_dim))
            self.output_proj_bias = nn.Parameter(torch.zeros(num_quantizers, vocab))
            self.token_embed_weight = nn.Parameter(draw(num_quantizers - 1, vocab, code_dim))
        self.apply(init_weights_like_official)

    def tied_weights(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(token_embed_weight, output_proj_weight), each (num_quantizers-1, 513, C).

        ``token_embed_weight[j]`` embeds layer-j tokens (j = 0..4); ``output_proj_weight[j-1]`` is the
        classifier predicting layer j (j = 1..5). Rebuilt from the parameters on every call.
        """
        layers = self.num_quantizers - 1
        if self.shared_codebook:
            embed = self._unsaved_token_embed.expand(layers, -1, -1)
            proj = embed if self.share_weight else self._unsaved_output_proj.expand(layers, -1, -1)
            return embed, proj
        if self.share_weight:
            embed = torch.cat([self.token_embed_weight_, self.embed_proj_shared_weight], dim=0)
            proj = torch.cat([self.embed_proj_shared_weight, self.output_proj_weight_], dim=0)
            return embed, proj
        return self.token_embed_weight, self.output_proj_weight

    def _bias(self) -> torch.Tensor | None:
        if self.shared_codebook and not self.share_weight:
            return self._unsaved_output_bias.expand(self.num_quantizers - 1, -1)
        return self.output_proj_bias

    def trans_forward(self, codes: torch.Tensor, qids: torch.Tensor, cond: torch.Tensor,
                      padding_mask: torch.Tensor, force_mask: bool = False) -> torch.Tensor:
        """One pass → feature (b, C, n).

        codes (b, n, C) summed embeddings of known layers; qids (b,) int64 layer being predicted;
        cond (b, clip_dim); padding_mask (b, n) bool (True = pad); ``force_mask`` zeroes the condition.
        """
        if force_mask:
            cond = torch.zeros_like(cond)
        x = self.input_process(codes)
        one_hot = F.one_hot(qids, num_classes=self.num_quantizers).float().to(x.device)
        q_emb = self.quant_emb(one_hot).unsqueeze(0)  # (1, b, latent)
        c = self.cond_emb(cond).unsqueeze(0)
        x = self.position_enc(x)
        sequence = torch.cat([c, q_emb, x], dim=0)  # (n+2, b, latent)
        key_padding = torch.cat([torch.zeros_like(padding_mask[:, 0:2]), padding_mask], dim=1)
        output = self.seqTransEncoder(sequence, src_key_padding_mask=key_padding)[2:]
        return self.output_process(output)

    def output_project(self, feature: torch.Tensor, qids_minus_one: torch.Tensor,
                       output_proj_weight: torch.Tensor | None = None) -> torch.Tensor:
        """feature (b, C, n), classifier index per sample (b,) → logits (b, 513, n).

        ``output_proj_weight``: the stack from :meth:`tied_weights` (pass it to avoid rebuilding).
        """
        if output_proj_weight is None:
            output_proj_weight = self.tied_weights()[1]
        out = torch.einsum("bnc,bcs->bns", output_proj_weight[qids_minus_one], feature)
        return self.add_output_bias(out, lambda bias: bias[qids_minus_one].unsqueeze(-1))

    def add_output_bias(self, logits: torch.Tensor, select: Any) -> torch.Tensor:
        """``logits`` plus the classifier bias (``select`` picks the rows of the (layers, 513) bias
        that broadcast onto them), if this checkpoint has one. Official: ``out += out + bias``, which
        doubles the logits (docs/model.md §11), unless ``replicate_official_bias_doubling`` is off."""
        bias = self._bias()
        if bias is None:
            return logits
        bias = select(bias)
        return logits + (logits + bias) if self.replicate_official_bias_doubling else logits + bias

    def forward_with_cond_scale(self, codes: torch.Tensor, q_id: int, cond: torch.Tensor,
                                padding_mask: torch.Tensor, cond_scale: float = 3.0, force_mask: bool = False,
                                output_proj_weight: torch.Tensor | None = None) -> torch.Tensor:
        """CFG logits (b, 513, n) for layer ``q_id``, official flow (two separate passes).

        Conditional logits first; returned as-is when ``cond_scale == 1``; otherwise combined with the
        unconditional ones as ``uncond + (cond − uncond) · cond_scale``. ``force_mask``: uncond only.
        """
        if output_proj_weight is None:
            output_proj_weight = self.tied_weights()[1]
        qids = torch.full((codes.shape[0],), q_id, dtype=torch.long, device=codes.device)

        def logits(uncond: bool) -> torch.Tensor:
            feature = self.trans_forward(codes, qids, cond, padding_mask, force_mask=uncond)
            return self.output_project(feature, qids - 1, output_proj_weight)

        if force_mask:
            return logits(True)
        cond_logits = logits(False)
        if cond_scale == 1:
            return cond_logits
        aux_logits = logits(True)
        return aux_logits + (cond_logits - aux_logits) * cond_scale
