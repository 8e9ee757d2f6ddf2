"""Random checkpoints in the exact official layout, for tests and for trying the add-on without weights.

``make_test_weights(root, size="tiny" | "full", seed)`` writes, per dataset, the three model folders
(opt.txt + model/*.tar with the official dict keys), meta/mean.npy + std.npy and
length_estimator/model/finest.tar, plus a CLIP state_dict at ``<root>/clip/ViT-B-32.pt``:

* ``full``: official opt.txt files (copied from ``backend/weights/official_opt``) and real shapes;
  CLIP has the real ViT-B/32 shapes (stored in fp16, like the real file).
* ``tiny``: the same opt.txt files with small widths (64-d codes, 64-d transformers, 2 layers), a
  CLIP with a 64-wide, 2-layer text tower (and a 1-layer vision stub) whose output stays 512-d.

Weights are random (official init; codebooks drawn from N(0, 1)), so generated motion is noise but
every code path (sampling, decoding, retargeting) sees non-degenerate values. Deterministic in
``seed``; torch's global RNG state is left untouched.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from backend.models.text_encoder import import_clip
from backend.weights.checkpoints import (
    MODEL_FOLDERS,
    WeightsLayout,
    build_length_estimator,
    build_mask_transformer,
    build_residual_transformer,
    build_vq,
)
from backend.weights.opt_file import format_opt, parse_opt_text, read_opt

OFFICIAL_OPT_DIR = Path(__file__).resolve().parent / "official_opt"

#: Option overrides that make the "tiny" models (vocabulary sizes and layer counts of the VQ kept).
TINY_OVERRIDES = {
    "vq": {"width": 64, "code_dim": 64, "output_emb_width": 64},
    "mask": {"latent_dim": 64, "ff_size": 128, "n_layers": 2, "n_heads": 2},
    "residual": {"latent_dim": 64, "ff_size": 128, "n_layers": 2, "n_heads": 2},
}

#: clip.model.CLIP arguments: real ViT-B/32 and the tiny stand-in (text width must be a multiple of 64).
CLIP_CONFIGS = {
    "full": dict(embed_dim=512, image_resolution=224, vision_layers=12, vision_width=768,
                 vision_patch_size=32, context_length=77, vocab_size=49408, transformer_width=512,
                 transformer_heads=8, transformer_layers=12),
    "tiny": dict(embed_dim=512, image_resolution=32, vision_layers=1, vision_width=64, vision_patch_size=32,
                 context_length=77, vocab_size=49408, transformer_width=64, transformer_heads=1,
                 transformer_layers=2),
}


def _write_opt(layout: WeightsLayout, model: str, size: str) -> Path:
    folder = layout.folder(model)
    official = OFFICIAL_OPT_DIR / layout.dataset / folder.name / "opt.txt"
    values = parse_opt_text(official.read_text(encoding="utf-8"), source=str(official))
    if size == "tiny":
        values.update(TINY_OVERRIDES[model])
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "opt.txt"
    path.write_text(format_opt(values), encoding="utf-8")
    return path


def _save(payload: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(payload, path)


def write_test_clip(path: Path, size: str = "tiny") -> Path:
    """A random CLIP state_dict (fp16, like the real file) loadable by ``clip.model.build_model``."""
    clip = import_clip()
    model = clip.model.CLIP(**CLIP_CONFIGS[size])
    state = {k: v.half() if v.is_floating_point() else v for k, v in model.state_dict().items()}
    _save(state, path)
    return path


def make_test_weights(root: Path, size: str = "tiny", seed: int = 0, datasets: tuple[str, ...] = ("t2m",),
                      with_clip: bool = True, with_length_estimator: bool = True) -> Path:
    """Write random checkpoints in the official layout under ``root``; returns ``root``.

    ``size``: "tiny" (fast tests) or "full" (real shapes, ~200 MB per dataset + ~300 MB CLIP).
    """
    if size not in ("tiny", "full"):
        raise ValueError(f"size must be 'tiny' or 'full', not {size!r}")
    root = Path(root)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        rng = np.random.default_rng(seed)
        for dataset in datasets:
            if dataset not in MODEL_FOLDERS:
                raise ValueError(f"unknown dataset {dataset!r}")
            layout = WeightsLayout(root, dataset)
            vq_opt = read_opt(_write_opt(layout, "vq", size), dataset)
            mask_opt = read_opt(_write_opt(layout, "mask", size), dataset)
            res_opt = read_opt(_write_opt(layout, "residual", size), dataset)

            vq = build_vq(vq_opt)
            for layer in vq.quantizer.layers:  # zeros after construction; a trained codebook is spread out
                layer.codebook.normal_()  # type: ignore[operator]
            _save({"vq_model": vq.state_dict(), "ep": 0}, layout.vq_checkpoint)
            dim_pose = vq_opt.dim_pose
            layout.mean.parent.mkdir(parents=True, exist_ok=True)
            np.save(layout.mean, rng.normal(0.0, 0.1, dim_pose).astype(np.float64))
            np.save(layout.std, rng.uniform(0.2, 1.0, dim_pose).astype(np.float64))

            residual = build_residual_transformer(res_opt, vq_opt)
            _save({"res_transformer": residual.state_dict(), "ep": 0}, layout.residual_checkpoint)
            mask = build_mask_transformer(mask_opt, vq_opt)
            _save({"t2m_transformer": mask.state_dict(), "ep": 0}, layout.mask_checkpoint)
            if with_length_estimator:
                estimator = build_length_estimator(mask_opt)
                _save({"estimator": estimator.state_dict(), "epoch": 0, "niter": 0}, layout.length_checkpoint)
        if with_clip:
            write_test_clip(root / "clip" / "ViT-B-32.pt", size)
    return root
