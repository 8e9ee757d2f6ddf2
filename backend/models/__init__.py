"""The MoMask networks, with state_dict keys identical to the official checkpoints.

``text_encoder`` (CLIP) is not imported here: it pulls in the ``clip`` package, which only the
pipeline needs.
"""

from .length_estimator import LengthEstimator
from .masked_transformer import MaskTransformer
from .residual_transformer import ResidualTransformer
from .rvq_vae import RVQVAE

__all__ = ["RVQVAE", "MaskTransformer", "ResidualTransformer", "LengthEstimator"]
