"""The official checkpoint layout, safe loading, and building the models from a weights root.

A weights root holds one folder per dataset exactly as the official zips unpack (docs/model.md §7)::

    <root>/t2m/rvq_nq6_dc512_nc512_noshare_qdp0.2/{opt.txt, model/net_best_fid.tar, meta/{mean,std}.npy}
    <root>/t2m/t2m_nlayer8_nhead6_ld384_ff1024_cdp0.1_rvq6ns/{opt.txt, model/latest.tar}
    <root>/t2m/tres_nlayer8_ld384_ff1024_rvq6ns_cdp0.2_sw/{opt.txt, model/net_best_fid.tar}
    <root>/t2m/length_estimator/model/finest.tar        (optional: needed only to guess lengths)
    <root>/kit/...  (same names with a `_k` suffix; no length estimator is published for KIT)
    <root>/clip/ViT-B-32.pt

Every file is read with ``torch.load(weights_only=True)``: a checkpoint carrying pickled code is
refused, never executed. Each model is built from its own opt.txt and loaded STRICTLY (the official
masked/residual loaders only tolerate missing ``clip_model.*`` keys; our models own no CLIP, so no key
may be missing). Any mismatch becomes a :class:`CheckpointError` naming the file, the key and the fix.

RNG note (CPU seed parity, docs/model.md §10): the ``build_*`` functions construct the models with the
official init calls, and ``make_test_weights`` uses them in the official gen_t2m order. ``load_models``
does not: it builds each structure on the meta device (no allocation, no random init, no RNG draw)
and adopts the checkpoint tensors, which is several times faster and keeps one copy of the weights.
The official code also builds two CLIP copies inside the transformer constructors; we build one text
tower. Loading therefore leaves torch's global RNG untouched; samplers seed their own generator.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any, TypeVar

import numpy as np
import torch
from torch import nn

from backend.portable.errors import CheckpointError
from backend.models import RVQVAE, LengthEstimator, MaskTransformer, ResidualTransformer
from backend.models.construction import build_without_init, unset_tensors
from backend.models.text_encoder import TextEncoder, find_clip_file
from backend.weights.opt_file import read_opt
from backend.weights.torch_files import FETCH_FIX, safe_load

M = TypeVar("M", bound=nn.Module)

MIXED_FIX = ("The opt.txt and the weights come from different models; re-install the checkpoints with "
             "`python build.py weights` (do not mix folders from different downloads).")

#: Folder names of the released models, per dataset.
MODEL_FOLDERS = {
    "t2m": {
        "vq": "rvq_nq6_dc512_nc512_noshare_qdp0.2",
        "mask": "t2m_nlayer8_nhead6_ld384_ff1024_cdp0.1_rvq6ns",
        "residual": "tres_nlayer8_ld384_ff1024_rvq6ns_cdp0.2_sw",
    },
    "kit": {
        "vq": "rvq_nq6_dc512_nc512_noshare_qdp0.2_k",
        "mask": "t2m_nlayer8_nhead6_ld384_ff1024_cdp0.1_rvq6ns_k",
        "residual": "tres_nlayer8_ld384_ff1024_rvq6ns_cdp0.2_sw_k",
    },
}


@dataclass(frozen=True)
class WeightsLayout:
    """Where each file of one dataset lives under a weights root (official names)."""

    root: Path
    dataset: str = "t2m"

    def __post_init__(self) -> None:
        if self.dataset not in MODEL_FOLDERS:
            raise CheckpointError(f"Unknown dataset {self.dataset!r}.", "Use 't2m' (HumanML3D) or 'kit'.")
        object.__setattr__(self, "root", Path(self.root))

    @property
    def dataset_dir(self) -> Path:
        return self.root / self.dataset

    def folder(self, model: str) -> Path:
        """Folder of ``model`` in ('vq', 'mask', 'residual', 'length')."""
        if model == "length":
            return self.dataset_dir / "length_estimator"
        return self.dataset_dir / MODEL_FOLDERS[self.dataset][model]

    @property
    def vq_opt(self) -> Path:
        return self.folder("vq") / "opt.txt"

    @property
    def vq_checkpoint(self) -> Path:
        return self.folder("vq") / "model" / "net_best_fid.tar"

    @property
    def mean(self) -> Path:
        return self.folder("vq") / "meta" / "mean.npy"

    @property
    def std(self) -> Path:
        return self.folder("vq") / "meta" / "std.npy"

    @property
    def mask_opt(self) -> Path:
        return self.folder("mask") / "opt.txt"

    @property
    def mask_checkpoint(self) -> Path:
        return self.folder("mask") / "model" / "latest.tar"  # hard-coded officially (gen/edit)

    @property
    def residual_opt(self) -> Path:
        return self.folder("residual") / "opt.txt"

    @property
    def residual_checkpoint(self) -> Path:
        return self.folder("residual") / "model" / "net_best_fid.tar"

    @property
    def length_checkpoint(self) -> Path:
        return self.folder("length") / "model" / "finest.tar"

    @property
    def clip_file(self) -> Path:
        return self.root / "clip" / "ViT-B-32.pt"

    def required_files(self) -> list[Path]:
        """Files without which nothing can be generated (the length estimator is optional)."""
        return [self.vq_opt, self.vq_checkpoint, self.mean, self.std, self.mask_opt, self.mask_checkpoint,
                self.residual_opt, self.residual_checkpoint]

    def missing_files(self) -> list[Path]:
        return [path for path in self.required_files() if not path.is_file()]


def state_dict_from(checkpoint: Any, keys: tuple[str, ...], path: Path) -> dict[str, torch.Tensor]:
    """The state_dict stored under the first of ``keys`` present (official fallbacks)."""
    if isinstance(checkpoint, dict):
        for key in keys:
            if key in checkpoint and isinstance(checkpoint[key], dict):
                return checkpoint[key]
        found = ", ".join(map(str, list(checkpoint)[:8])) or "nothing"
    else:
        found = type(checkpoint).__name__
    raise CheckpointError(f"{path} has no {' / '.join(repr(k) for k in keys)} entry (found: {found}).",
                          f"This is not the expected MoMask checkpoint. {FETCH_FIX}")


def _few(keys: list[str]) -> str:
    return str(keys[:5]) + (f" (+{len(keys) - 5} more)" if len(keys) > 5 else "")


def load_state_strict(model: nn.Module, state: dict[str, torch.Tensor], path: Path, opt_path: Path | str,
                      ignore_prefix: str | None = None, assign: bool = False) -> None:
    """``model.load_state_dict(state, strict=True)`` with errors naming keys, shapes and the opt.txt.

    ``ignore_prefix``: keys dropped from ``state`` first (``clip_model.`` for the transformers,
    which the official code never saves but would tolerate).
    ``assign``: the model's tensors BECOME the checkpoint's (converted to the model's dtype, made
    contiguous) instead of being copied into; required for a model built on the meta device.
    """
    if ignore_prefix:
        state = {k: v for k, v in state.items() if not k.startswith(ignore_prefix)}
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing keys {_few(missing)}")
        if unexpected:
            parts.append(f"unexpected keys {_few(unexpected)}")
        raise CheckpointError(f"{path} does not match the model described by {opt_path}: {'; '.join(parts)}.",
                              MIXED_FIX)
    for key, target in expected.items():
        if tuple(state[key].shape) != tuple(target.shape):
            raise CheckpointError(
                f"{path}: '{key}' has shape {tuple(state[key].shape)} in the weights but {opt_path} "
                f"describes {tuple(target.shape)}.", MIXED_FIX)
    if not assign:
        model.load_state_dict(state, strict=True)
        return
    # What copy_ would have done: the model's dtype, a dense layout.
    state = {key: state[key].to(target.dtype).contiguous() for key, target in expected.items()}
    model.load_state_dict(state, strict=True, assign=True)
    unset = unset_tensors(model)
    if unset:  # a non-persistent buffer cannot come from a checkpoint: the model must not have one
        raise RuntimeError(f"{type(model).__name__} has tensors no checkpoint provides: {_few(unset)}")


def _opt_field(opt: SimpleNamespace, name: str, default: Any = None) -> Any:
    if hasattr(opt, name):
        return getattr(opt, name)
    if default is not None:
        return default
    raise CheckpointError(f"{opt.opt_path} lacks the option '{name}'.", MIXED_FIX)


# ------------------------------------------------------------------------------------------------
# Models from their opt.txt (official constructor arguments)


def build_vq(vq_opt: SimpleNamespace) -> RVQVAE:
    """RVQVAE as the official ``load_vq_model`` constructs it from the VQ opt.txt."""
    return RVQVAE(
        input_width=_opt_field(vq_opt, "dim_pose"), nb_code=_opt_field(vq_opt, "nb_code"),
        code_dim=_opt_field(vq_opt, "code_dim"), output_emb_width=_opt_field(vq_opt, "output_emb_width"),
        down_t=_opt_field(vq_opt, "down_t"), stride_t=_opt_field(vq_opt, "stride_t"),
        width=_opt_field(vq_opt, "width"), depth=_opt_field(vq_opt, "depth"),
        dilation_growth_rate=_opt_field(vq_opt, "dilation_growth_rate"),
        activation=_opt_field(vq_opt, "vq_act"), norm=_opt_field(vq_opt, "vq_norm"),
        num_quantizers=_opt_field(vq_opt, "num_quantizers"),
        shared_codebook=bool(getattr(vq_opt, "shared_codebook", False)),
    )


def build_mask_transformer(mask_opt: SimpleNamespace, vq_opt: SimpleNamespace) -> MaskTransformer:
    """MaskTransformer as gen_t2m builds it (num_tokens/code_dim come from the VQ opt)."""
    return MaskTransformer(
        code_dim=_opt_field(vq_opt, "code_dim"), latent_dim=_opt_field(mask_opt, "latent_dim"),
        ff_size=_opt_field(mask_opt, "ff_size"), num_layers=_opt_field(mask_opt, "n_layers"),
        num_heads=_opt_field(mask_opt, "n_heads"), dropout=_opt_field(mask_opt, "dropout"), clip_dim=512,
        num_tokens=_opt_field(vq_opt, "nb_code"), cond_drop_prob=_opt_field(mask_opt, "cond_drop_prob"),
    )


def build_residual_transformer(res_opt: SimpleNamespace, vq_opt: SimpleNamespace) -> ResidualTransformer:
    """ResidualTransformer as gen_t2m builds it (shared_codebook from the VQ opt)."""
    return ResidualTransformer(
        code_dim=_opt_field(vq_opt, "code_dim"), latent_dim=_opt_field(res_opt, "latent_dim"),
        ff_size=_opt_field(res_opt, "ff_size"), num_layers=_opt_field(res_opt, "n_layers"),
        num_heads=_opt_field(res_opt, "n_heads"), dropout=_opt_field(res_opt, "dropout"), clip_dim=512,
        num_tokens=_opt_field(vq_opt, "nb_code"), num_quantizers=_opt_field(vq_opt, "num_quantizers"),
        cond_drop_prob=_opt_field(res_opt, "cond_drop_prob"),
        shared_codebook=bool(getattr(vq_opt, "shared_codebook", False)),
        share_weight=bool(getattr(res_opt, "share_weight", False)),
    )


def build_length_estimator(mask_opt: SimpleNamespace) -> LengthEstimator:
    """LengthEstimator(512, 200 // unit_length) as the official loader builds it."""
    return LengthEstimator(512, _opt_field(mask_opt, "num_classes", 50))


def _load_meta(path: Path, dim_pose: int) -> np.ndarray:
    if not path.is_file():
        raise CheckpointError(f"Missing normalisation file {path}.", FETCH_FIX)
    try:
        array = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise CheckpointError(f"{path} is corrupt ({exc}).",
                              f"Delete it and re-download: {FETCH_FIX}") from None
    if array.shape != (dim_pose,):
        raise CheckpointError(f"{path} has shape {array.shape}, expected ({dim_pose},) for this dataset.",
                              MIXED_FIX)
    return array.astype(np.float64)


# ------------------------------------------------------------------------------------------------
# The whole set


@dataclass
class LoadedModels:
    """Everything one dataset needs for inference; all modules in eval mode with requires_grad False."""

    vq: RVQVAE
    mask_transformer: MaskTransformer
    residual_transformer: ResidualTransformer
    length_estimator: LengthEstimator | None
    text_encoder: Any  # backend.models.text_encoder.TextEncoder (not imported at module level: clip)
    mean: np.ndarray  # (dim_pose,) float64
    std: np.ndarray  # (dim_pose,) float64
    opts: dict[str, SimpleNamespace]  # 'vq', 'mask', 'residual'
    dataset: str
    layout: WeightsLayout | None = None
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    clip_file: Path | None = None  # the CLIP checkpoint the text encoder was loaded from

    def require_length_estimator(self) -> LengthEstimator:
        """The length estimator, or a CheckpointError explaining that lengths must be given."""
        if self.length_estimator is None:
            where = self.layout.length_checkpoint if self.layout else "length_estimator/model/finest.tar"
            raise CheckpointError(
                f"Length estimation is unavailable: {where} is not installed"
                + (" (no length estimator is published for KIT)." if self.dataset == "kit" else "."),
                "Give the motion length explicitly (frames or seconds), or install it with "
                "`python build.py weights`.")
        return self.length_estimator


def find_weights_root(candidates: Iterable[Path], dataset: str = "t2m") -> Path:
    """The first candidate folder holding ``<dataset>/``; CheckpointError naming them all otherwise."""
    tried = [Path(c).expanduser() for c in candidates]
    for candidate in tried:
        if (candidate / dataset).is_dir():
            return candidate
    places = ", ".join(str(c) for c in tried) or "(no folder given)"
    raise CheckpointError(f"No MoMask checkpoints in {places}.", FETCH_FIX)


def _frozen(module: nn.Module, device: torch.device) -> Any:
    return module.to(device).eval().requires_grad_(False)


def _load_checkpoint(build: Callable[[], M], path: Path, keys: tuple[str, ...], opt_path: Path | str,
                     ignore_prefix: str | None = None) -> M:
    """The model ``build`` describes, with the weights stored under the first of ``keys`` in ``path``.

    The structure is built on the meta device and the checkpoint's tensors are adopted as its
    weights: no random initialisation to throw away, and no second copy of the weights. Unlike the
    ``build_*`` functions alone, this draws nothing from torch's RNG (sampling seeds its own generator).
    """
    model = build_without_init(build)
    state = state_dict_from(safe_load(path), keys, path)
    load_state_strict(model, state, path, opt_path, ignore_prefix=ignore_prefix, assign=True)
    return model


def load_models(root: Path, dataset: str = "t2m", clip: Path | None = None,
                device: str | torch.device = "cpu", official_fp16_clip: bool = False) -> LoadedModels:
    """Load the official (or test) checkpoints of ``dataset`` under weights root ``root``.

    Checks the folder is complete first (listing every missing file), finds CLIP (explicit path →
    ``<root>/clip/ViT-B-32.pt`` → ``~/.cache/clip/ViT-B-32.pt``), loads CLIP's text tower, then
    builds VQ, residual and masked transformers and the length estimator from their opt.txt
    (without random init, see :func:`_load_checkpoint`) and loads each strictly. A missing length
    estimator leaves ``length_estimator=None``.
    ``device`` is a concrete device ("auto" is resolved by ``pipeline.resolve_device``).
    ``official_fp16_clip``: on CUDA, run CLIP in fp16 as the official code does.
    """
    root = Path(root).expanduser()
    layout = WeightsLayout(root, dataset)
    if not layout.dataset_dir.is_dir():
        raise CheckpointError(f"No MoMask checkpoints in {root} (no '{dataset}' folder).", FETCH_FIX)
    missing = layout.missing_files()
    if missing:
        names = ", ".join(str(p.relative_to(root)) for p in missing)
        raise CheckpointError(f"Incomplete MoMask checkpoints in {layout.dataset_dir}: missing {names}.",
                              FETCH_FIX)
    clip_file = find_clip_file(clip, root)
    target = torch.device(device)

    vq_opt = read_opt(layout.vq_opt, dataset)
    mask_opt = read_opt(layout.mask_opt, dataset)
    res_opt = read_opt(layout.residual_opt, dataset)
    vq_name = layout.folder("vq").name
    for opt in (mask_opt, res_opt):
        if getattr(opt, "vq_name", vq_name) != vq_name:
            raise CheckpointError(f"{opt.opt_path} was trained with VQ '{opt.vq_name}', but the VQ folder is "
                                  f"'{vq_name}'.", MIXED_FIX)
    if getattr(vq_opt, "shared_codebook", False):
        raise CheckpointError(
            f"{layout.vq_opt} uses a shared codebook; the official code never saved the residual "
            "transformer's embeddings for that configuration, so its checkpoints cannot be restored.",
            "Use the released checkpoints (`python build.py weights`).")
    mean = _load_meta(layout.mean, vq_opt.dim_pose)
    std = _load_meta(layout.std, vq_opt.dim_pose)

    # CLIP first: its load briefly holds the file's fp16 text weights next to the fp32 ones, and the
    # peak memory is lower while the other models are not loaded yet.
    text_encoder = TextEncoder.load(clip_file, device=target, official_fp16=official_fp16_clip)
    vq = _load_checkpoint(lambda: build_vq(vq_opt), layout.vq_checkpoint, ("vq_model", "net"), layout.vq_opt)
    residual = _load_checkpoint(lambda: build_residual_transformer(res_opt, vq_opt),
                                layout.residual_checkpoint, ("res_transformer",), layout.residual_opt,
                                ignore_prefix="clip_model.")
    mask = _load_checkpoint(lambda: build_mask_transformer(mask_opt, vq_opt), layout.mask_checkpoint,
                            ("t2m_transformer", "trans"), layout.mask_opt, ignore_prefix="clip_model.")
    length_estimator = None
    if layout.length_checkpoint.is_file():
        length_estimator = _frozen(_load_checkpoint(lambda: build_length_estimator(mask_opt),
                                                    layout.length_checkpoint, ("estimator",),
                                                    "LengthEstimator(512, 50)"), target)
    return LoadedModels(
        vq=_frozen(vq, target), mask_transformer=_frozen(mask, target),
        residual_transformer=_frozen(residual, target), length_estimator=length_estimator,
        text_encoder=text_encoder, mean=mean, std=std,
        opts={"vq": vq_opt, "mask": mask_opt, "residual": res_opt}, dataset=dataset, layout=layout,
        device=target, clip_file=clip_file,
    )
