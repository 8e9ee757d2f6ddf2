"""The RVQ-VAE: 1-D conv encoder, 6-layer residual vector quantizer, 1-D conv decoder.

Paper: MoMask (Guo et al., CVPR 2024), Sec. 3.1, the residual VQ-VAE that turns motion into six
layers of tokens. Official modules: ``models/vq/model.py::RVQVAE``, ``models/vq/encdec.py::Encoder``
/ ``Decoder``, ``models/vq/resnet.py::Resnet1D`` / ``ResConv1DBlock``,
``models/vq/residual_vq.py::ResidualVQ`` and ``models/vq/quantizer.py::QuantizeEMAReset``
(docs/model.md §2).

What differs: inference only. The quantizer keeps just the codebook buffers and the nearest-code
lookup (no EMA statistics, code reset, quantize dropout or Gumbel training branch), decoding takes
indices with −1 for "no code" directly, and one lookup per codebook replaces stacking the six.

Module names, creation order and initialisation match the official ``RVQVAE`` so that
(a) the official ``net_best_fid.tar`` state_dict loads strictly and (b) constructing the model on CPU
advances torch's RNG exactly as the official code does (stock ``nn.Conv1d`` default init, created in
the same order; codebooks are zero buffers and draw nothing).

Float details kept on purpose (bit parity with the official outputs): the nearest-neighbour distance
is the literal ``‖x‖² − 2·x·cᵀ + ‖c‖²`` expansion, the quantized value is the straight-through
``x + (c − x)``, the residual update is out of place, and decoding sums the six per-layer vectors
with a single reduction.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

NUM_QUANTIZERS = 6


class _SiLUAsOfficial(nn.Module):
    """``x · sigmoid(x)`` as two ops, like the official ``nonlinearity``: ``nn.SiLU``'s fused kernel
    can round differently in the last bit (no parameters, so the state_dict is unchanged)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(x)


def _activation(name: str) -> nn.Module:
    if name == "relu":
        return nn.ReLU()
    if name == "silu":
        return _SiLUAsOfficial()
    if name == "gelu":
        return nn.GELU()
    raise ValueError(f"unknown VQ activation {name!r}")


def _norm(name: str | None, channels: int) -> nn.Module:
    # Only the exact strings select a norm; the opt.txt value 'None' (a string) gives Identity.
    if name == "LN":
        return nn.LayerNorm(channels)
    if name == "GN":
        return nn.GroupNorm(num_groups=32, num_channels=channels, eps=1e-6, affine=True)
    if name == "BN":
        return nn.BatchNorm1d(num_features=channels, eps=1e-6, affine=True)
    return nn.Identity()


class ResConv1DBlock(nn.Module):
    """Pre-activation residual block: x + dropout(conv2(act(norm(conv1(act(norm(x))))))) ."""

    def __init__(self, channels: int, dilation: int, activation: str = "relu", norm: str | None = None,
                 dropout: float = 0.2) -> None:
        super().__init__()
        self.norm_kind = norm
        self.norm1 = _norm(norm, channels)
        self.norm2 = _norm(norm, channels)
        self.activation1 = _activation(activation)
        self.activation2 = _activation(activation)
        self.conv1 = nn.Conv1d(channels, channels, 3, 1, padding=dilation, dilation=dilation)
        self.conv2 = nn.Conv1d(channels, channels, 1, 1, 0)
        self.dropout = nn.Dropout(dropout)

    def _pre(self, norm: nn.Module, act: nn.Module, x: torch.Tensor) -> torch.Tensor:
        if self.norm_kind == "LN":  # LayerNorm normalises channels, which sit on axis 1 here
            return act(norm(x.transpose(-2, -1)).transpose(-2, -1))
        return act(norm(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(self._pre(self.norm1, self.activation1, x))
        h = self.conv2(self._pre(self.norm2, self.activation2, h))
        return x + self.dropout(h)


class Resnet1D(nn.Module):
    """``depth`` residual blocks with dilations growth**0..growth**(depth-1), stored REVERSED (9, 3, 1).

    The blocks are created in increasing-dilation order (that is the RNG order) and then reversed,
    which is what the official default ``reverse_dilation=True`` does in both encoder and decoder.
    """

    def __init__(self, channels: int, depth: int, growth: int, activation: str, norm: str | None) -> None:
        super().__init__()
        blocks = [ResConv1DBlock(channels, growth ** i, activation, norm) for i in range(depth)]
        self.model = nn.Sequential(*blocks[::-1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class Encoder(nn.Module):
    """(b, D, T) features → (b, C, T / stride^down) latents."""

    def __init__(self, input_width: int, output_width: int, down_t: int, stride_t: int, width: int,
                 depth: int, growth: int, activation: str, norm: str | None) -> None:
        super().__init__()
        kernel, pad = stride_t * 2, stride_t // 2
        blocks: list[nn.Module] = [nn.Conv1d(input_width, width, 3, 1, 1), nn.ReLU()]
        for _ in range(down_t):
            blocks.append(nn.Sequential(
                nn.Conv1d(width, width, kernel, stride_t, pad),
                Resnet1D(width, depth, growth, activation, norm),
            ))
        blocks.append(nn.Conv1d(width, output_width, 3, 1, 1))
        self.model = nn.Sequential(*blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class Decoder(nn.Module):
    """(b, C, n) latents → (b, 2^down·n, D) features (note: returns time-major)."""

    def __init__(self, input_width: int, output_width: int, down_t: int, width: int, depth: int,
                 growth: int, activation: str, norm: str | None) -> None:
        super().__init__()
        blocks: list[nn.Module] = [nn.Conv1d(output_width, width, 3, 1, 1), nn.ReLU()]
        for _ in range(down_t):
            blocks.append(nn.Sequential(
                Resnet1D(width, depth, growth, activation, norm),
                nn.Upsample(scale_factor=2, mode="nearest"),
                nn.Conv1d(width, width, 3, 1, 1),
            ))
        blocks += [nn.Conv1d(width, width, 3, 1, 1), nn.ReLU(), nn.Conv1d(width, input_width, 3, 1, 1)]
        self.model = nn.Sequential(*blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x).permute(0, 2, 1)


class QuantizeLayer(nn.Module):
    """One codebook (``codebook`` buffer, (nb_code, code_dim)); nearest-neighbour lookup at inference.

    The official class (``QuantizeEMAReset``) keeps its EMA statistics as plain attributes, so the
    codebook is the only state_dict entry.
    """

    def __init__(self, nb_code: int, code_dim: int) -> None:
        super().__init__()
        self.codebook: torch.Tensor
        self.register_buffer("codebook", torch.zeros(nb_code, code_dim))

    def nearest(self, x: torch.Tensor) -> torch.Tensor:
        """Index of the nearest code for each row of ``x`` (N, C); first index on ties."""
        codes_t = self.codebook.t()
        distance = (torch.sum(x ** 2, dim=-1, keepdim=True) - 2 * torch.matmul(x, codes_t)
                    + torch.sum(codes_t ** 2, dim=0, keepdim=True))
        return torch.argmax(-distance, dim=-1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x (N, C, t) → (straight-through quantized (N, C, t), indices (N, t))."""
        n, c, t = x.shape
        flat = x.permute(0, 2, 1).reshape(n * t, c)  # rows: sample-major, then time
        idx = self.nearest(flat)
        chosen = F.embedding(idx, self.codebook)
        quantized = flat + (chosen - flat)  # literal straight-through: may differ from `chosen` by 1 ulp
        return quantized.view(n, t, c).permute(0, 2, 1), idx.view(n, t)


class ResidualVQ(nn.Module):
    """``num_quantizers`` codebooks applied to successive residuals (``layers.{q}.codebook``)."""

    def __init__(self, num_quantizers: int, nb_code: int, code_dim: int,
                 shared_codebook: bool = False) -> None:
        super().__init__()
        if shared_codebook:  # one module listed num_quantizers times, as officially
            layer = QuantizeLayer(nb_code, code_dim)
            self.layers = nn.ModuleList([layer for _ in range(num_quantizers)])
        else:
            self.layers = nn.ModuleList([QuantizeLayer(nb_code, code_dim) for _ in range(num_quantizers)])
        self.num_quantizers = num_quantizers

    def quantize(self, latents: torch.Tensor) -> torch.Tensor:
        """latents (b, C, n) → code_idx (b, n, q) int64: each layer quantizes what the previous left."""
        residual = latents
        indices = []
        for layer in self.layers:
            quantized, idx = layer(residual)
            residual = residual - quantized
            indices.append(idx)
        return torch.stack(indices, dim=-1)

    def codes_from_indices(self, indices: torch.Tensor) -> torch.Tensor:
        """indices (b, n, q' ≤ q), −1 = no code → per-layer vectors (q, b, n, C), zero where −1."""
        # One lookup per codebook: stacking the six codebooks first would copy 6 MB on every decode.
        codes = []
        for q, layer in enumerate(self.layers):
            codebook: torch.Tensor = layer.codebook  # type: ignore[assignment]
            if q < indices.shape[-1]:
                idx = indices[..., q]
                absent = (idx == -1).unsqueeze(-1)
                looked_up = F.embedding(idx.clamp(min=0), codebook)  # −1 fetches row 0 ...
                codes.append(looked_up.masked_fill_(absent, 0.0))     # ... which is then zeroed
            else:
                codes.append(codebook.new_zeros(indices.shape[0], indices.shape[1], codebook.shape[1]))
        return torch.stack(codes, dim=0)


class RVQVAE(nn.Module):
    """Motion tokenizer: ``encode`` features → 6 token layers, ``forward_decoder`` tokens → features.

    Defaults are the released HumanML3D configuration (docs/model.md §2); 19,436,807 parameters.
    """

    def __init__(self, input_width: int = 263, nb_code: int = 512, code_dim: int = 512,
                 output_emb_width: int = 512, down_t: int = 2, stride_t: int = 2, width: int = 512,
                 depth: int = 3, dilation_growth_rate: int = 3, activation: str = "relu",
                 norm: str | None = None, num_quantizers: int = NUM_QUANTIZERS,
                 shared_codebook: bool = False) -> None:
        super().__init__()
        if output_emb_width != code_dim:
            raise ValueError("output_emb_width must equal code_dim")
        self.code_dim = code_dim
        self.num_quantizers = num_quantizers
        self.down_t, self.stride_t = down_t, stride_t
        self.encoder = Encoder(input_width, output_emb_width, down_t, stride_t, width, depth,
                               dilation_growth_rate, activation, norm)
        self.decoder = Decoder(input_width, output_emb_width, down_t, width, depth,
                               dilation_growth_rate, activation, norm)
        self.quantizer = ResidualVQ(num_quantizers, nb_code, code_dim, shared_codebook)

    def token_count(self, frames: int) -> int:
        """Tokens the encoder makes from ``frames`` frames (196→49, 199→49, 200→50)."""
        n = frames
        kernel, pad = self.stride_t * 2, self.stride_t // 2
        for _ in range(self.down_t):
            n = (n + 2 * pad - kernel) // self.stride_t + 1
        return n

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """x (b, T, D) normalised features → code_idx (b, n, 6) int64, quantizer axis last."""
        return self.quantizer.quantize(self.encoder(x.permute(0, 2, 1).float()))

    def latents_from_indices(self, idx: torch.Tensor) -> torch.Tensor:
        """idx (b, n, q' ≤ 6), −1 = zero contribution → summed latents (b, C, n)."""
        return self.quantizer.codes_from_indices(idx).sum(dim=0).permute(0, 2, 1)

    def forward_decoder(self, idx: torch.Tensor) -> torch.Tensor:
        """idx (b, n, q' ≤ 6) → (b, 4n, D) float32 normalised features (−1 = zero contribution)."""
        return self.decoder(self.latents_from_indices(idx))
