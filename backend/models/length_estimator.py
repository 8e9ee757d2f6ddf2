"""Text → motion length classifier.

Paper: MoMask (Guo et al., CVPR 2024), Sec. 3.3: at inference, when no length is given, a length is
drawn from a classifier on the text feature. Official module: ``models/vq/model.py::LengthEstimator``
(docs/model.md §5). What differs: nothing in the network; the draw (and raising class 0 to one token)
is the pipeline's (docs/sampling.md §7).

An MLP on the CLIP text feature (b, 512) giving logits over 50 classes; class c means c tokens, i.e.
c · unit_length (4) frames. Keys ``output.{0,1,4,5,8,9,11}`` match the official ``LengthEstimator``;
construction draws from the RNG in the official order (4 Linear + 3 LayerNorm, then N(0, 0.02) on
the Linear weights).
"""

from __future__ import annotations

import torch
from torch import nn

from .masked_transformer import init_weights_like_official


class LengthEstimator(nn.Module):
    """MLP 512 → 512 → 256 → 128 → ``output_size`` with LayerNorm + LeakyReLU(0.2) (+ dropout) between."""

    def __init__(self, input_size: int = 512, output_size: int = 50) -> None:
        super().__init__()
        width = 512
        self.output = nn.Sequential(
            nn.Linear(input_size, width),
            nn.LayerNorm(width),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Dropout(0.2),
            nn.Linear(width, width // 2),
            nn.LayerNorm(width // 2),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Dropout(0.2),
            nn.Linear(width // 2, width // 4),
            nn.LayerNorm(width // 4),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Linear(width // 4, output_size),
        )
        self.output.apply(init_weights_like_official)

    def forward(self, text_feature: torch.Tensor) -> torch.Tensor:
        """text_feature (b, 512) float32 → logits (b, output_size)."""
        return self.output(text_feature)
