"""CLIP ViT-B/32 text tower: prompt → (b, 512) condition vector.

Paper: MoMask (Guo et al., CVPR 2024), Sec. 3.2: both transformers are conditioned on the CLIP text
feature. Official module: ``clip.load("ViT-B/32")`` kept as ``clip_model`` inside ``MaskTransformer``
and ``ResidualTransformer`` and called through their ``encode_text`` (docs/model.md §6).

What differs: one shared text tower instead of a CLIP copy per transformer, the visual half never
built, and an optional stop at the end token with a per-prompt cache (the fast flow); the numbers
are CLIP's.

Only the text half of CLIP is ever built: MoMask only encodes text, and the vision tower is over half
the weights. The tower is made of the ``clip`` package's own modules (``clip.model.Transformer``,
``clip.model.LayerNorm``) under CLIP's attribute names, so its state_dict keys are CLIP's and its
output is bit-identical to ``CLIP.encode_text``. It is built on the meta device (no memory, no random
initialisation) and then adopts the file's tensors, converted to fp32 exactly as
``clip.load(..., jit=False)`` leaves them on the CPU: ``build_model`` first makes the Linear/attention
weights and ``text_projection`` fp16 and copies the file into them, so those pass through fp16 (a
no-op for the fp16 files CLIP ships), then ``.float()``.

Files accepted:
* the official ``ViT-B-32.pt`` (a TorchScript archive; only its ``state_dict()`` is used, as
  ``clip.load(..., jit=False)`` does; the scripted module is dropped at once);
* a plain state_dict saved with ``torch.save`` (our random test CLIP), read with ``weights_only=True``
  and memory-mapped, so the visual half is never even read.

torchvision: ``clip/clip.py`` imports ``torchvision.transforms`` (and PIL) at import time for its
image preprocessing, and this backend has no torchvision. When ``import torchvision`` fails we put a
minimal stand-in into ``sys.modules`` just while ``clip`` is imported, providing only the names
``clip.clip`` imports (``Compose``, ``Resize``, ``CenterCrop``, ``ToTensor``, ``Normalize``,
``InterpolationMode``); using any of them raises a clear error (the image side is never used here).
The stand-in is removed from ``sys.modules`` again so nothing else mistakes it for torchvision; a
one-line notice is logged. With a real torchvision installed, it is used untouched.

Encoding: ``clip.tokenize(truncate=True)`` (77-token context; longer prompts are cut, with a
``warnings`` warning and a flag returned by ``encode(..., return_truncated=True)``). The official
path runs all 77 positions; the fast path (default) slices tokens, positional embedding and the
causal mask to the longest EOT position in the batch — the tower is causal and pools at EOT, so the
result is the same to float precision — and caches results per prompt string (LRU). Output is the
un-normalised EOT feature after ``ln_final`` and ``text_projection``, as float32. On CUDA,
``official_fp16=True`` applies ``clip.model.convert_weights`` like the official code (on CPU the
official code stays fp32, and so do we).
"""

from __future__ import annotations

import gc
import importlib
import logging
import sys
import threading
import types
import warnings
import zipfile
from collections import OrderedDict
from pathlib import Path
from typing import Any

import torch
from torch import nn

from backend.portable.errors import CheckpointError
from backend.weights.torch_files import safe_load

from .construction import meta_construction

log = logging.getLogger(__name__)

CONTEXT_LENGTH = 77
CLIP_FILENAME = "ViT-B-32.pt"
_FETCH_FIX = "Run `python build.py weights` (it installs CLIP next to the MoMask checkpoints)."


# ------------------------------------------------------------------------------------------------
# Importing the clip package without torchvision


def _torchvision_stand_in() -> dict[str, types.ModuleType]:
    def unavailable(name: str) -> type:
        def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
            raise RuntimeError(
                f"torchvision.transforms.{name} is a stand-in: torchvision is not installed, so CLIP's "
                "image preprocessing is unavailable (MoMask only needs the text encoder).")
        return type(name, (), {"__init__": __init__})

    class InterpolationMode:  # clip.clip reads InterpolationMode.BICUBIC at import time
        NEAREST, BILINEAR, BICUBIC = "nearest", "bilinear", "bicubic"

    transforms = types.ModuleType("torchvision.transforms")
    for name in ("Compose", "Resize", "CenterCrop", "ToTensor", "Normalize"):
        setattr(transforms, name, unavailable(name))
    transforms.InterpolationMode = InterpolationMode  # type: ignore[attr-defined]
    root = types.ModuleType("torchvision")
    root.transforms = transforms  # type: ignore[attr-defined]
    root.__momask_stand_in__ = True  # type: ignore[attr-defined]
    return {"torchvision": root, "torchvision.transforms": transforms}


def import_clip() -> types.ModuleType:
    """Import the openai ``clip`` package, with a torchvision stand-in if torchvision is missing."""
    if "clip" in sys.modules:
        return sys.modules["clip"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # clip imports the deprecated pkg_resources
        try:
            import torchvision  # noqa: F401
            return importlib.import_module("clip")
        except ImportError:
            pass
        stand_in = _torchvision_stand_in()
        sys.modules.update(stand_in)
        try:
            module = importlib.import_module("clip")
        finally:
            for name, mod in stand_in.items():
                if sys.modules.get(name) is mod:
                    del sys.modules[name]
    log.info("torchvision not installed: using a stand-in for CLIP's image transforms (text encoding only).")
    return module


# ------------------------------------------------------------------------------------------------
# Finding and reading the CLIP file


def clip_candidates(explicit: Path | None = None, weights_root: Path | None = None) -> list[Path]:
    """Where CLIP is looked for, in order: explicit path, <weights>/clip/ViT-B-32.pt, ~/.cache/clip/."""
    places = []
    if explicit is not None:
        places.append(Path(explicit).expanduser())
    if weights_root is not None:
        places.append(Path(weights_root) / "clip" / CLIP_FILENAME)
    places.append(Path.home() / ".cache" / "clip" / CLIP_FILENAME)
    return places


def find_clip_file(explicit: Path | None = None, weights_root: Path | None = None) -> Path:
    """The first existing CLIP file (see :func:`clip_candidates`); CheckpointError naming all places."""
    places = clip_candidates(explicit, weights_root)
    for place in places:
        if place.is_file():
            return place
    if explicit is None:
        places.insert(0, Path("<no explicit --clip path given>"))
    raise CheckpointError("CLIP ViT-B/32 weights not found; looked in: " + ", ".join(map(str, places)) + ".",
                          _FETCH_FIX)


def _is_torchscript(path: Path) -> bool:
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError):
        return False
    return any(name.endswith("constants.pkl") or "/code/" in name for name in names)


#: State_dict keys of CLIP's text half (everything else is the vision tower or training-only).
TEXT_TOWER_KEYS = ("token_embedding.", "positional_embedding", "transformer.", "ln_final.", "text_projection")


def _is_text_key(key: str) -> bool:
    return key.startswith(TEXT_TOWER_KEYS)


def load_clip_state_dict(path: Path, text_only: bool = False) -> dict[str, torch.Tensor]:
    """The CLIP state_dict from the official TorchScript file or a plain ``torch.save`` state_dict.

    ``text_only``: keep only the text tower's entries (the vision half is released right away; from a
    plain file it is never read, the file being memory-mapped).
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"CLIP file {path} does not exist.", _FETCH_FIX)
    if _is_torchscript(path):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)  # deprecated, still works
                archive = torch.jit.load(str(path), map_location="cpu")
            state = dict(archive.state_dict())
            del archive  # the scripted module (its code and graph) is never used
        except Exception as exc:  # noqa: BLE001 - any failure here means a damaged archive
            raise CheckpointError(f"CLIP file {path} is damaged ({type(exc).__name__}: {exc}).",
                                  "Delete it and " + _FETCH_FIX[0].lower() + _FETCH_FIX[1:]) from None
    else:
        state = safe_load(path, mmap=True)
        if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
            state = state["state_dict"]
        if not isinstance(state, dict) or "text_projection" not in state or "visual.proj" not in state:
            raise CheckpointError(f"{path} is not a CLIP ViT state_dict (no text_projection / visual.proj).",
                                  "Point --clip at the ViT-B-32.pt from the clip package, or " + _FETCH_FIX)
    if text_only:
        state = {key: value for key, value in state.items() if _is_text_key(key)}
    return state


def build_text_tower(state: dict[str, torch.Tensor]) -> nn.Module:
    """CLIP's text half from a (text) state_dict: clip's own modules, weights as ``clip.load`` has them.

    Shapes are read from ``state`` as ``clip.model.build_model`` reads them. Raises KeyError,
    RuntimeError or ValueError when ``state`` is not a CLIP text tower.
    """
    clip = import_clip()
    width = state["ln_final.weight"].shape[0]
    context = state["positional_embedding"].shape[0]
    vocab = state["token_embedding.weight"].shape[0]
    embed_dim = state["text_projection"].shape[1]
    layers = len({key.split(".")[2] for key in state if key.startswith("transformer.resblocks.")})
    # CLIP's build_attention_mask: additive causal mask, -inf above the diagonal. A plain attribute
    # of each block (not a buffer), so it is made for real, outside the meta device.
    causal_mask = torch.full((context, context), float("-inf")).triu_(1)
    with meta_construction():
        tower = nn.Module()
        tower.token_embedding = nn.Embedding(vocab, width)
        tower.positional_embedding = nn.Parameter(torch.empty(context, width))
        tower.transformer = clip.model.Transformer(width, layers, width // 64, attn_mask=causal_mask)
        tower.ln_final = clip.model.LayerNorm(width)
        tower.text_projection = nn.Parameter(torch.empty(width, embed_dim))
    # On the skeleton, clip's own conversion marks which tensors build_model stores in fp16.
    clip.model.convert_weights(tower)
    expected = tower.state_dict()
    unexpected = sorted(set(state) - set(expected))
    if unexpected:
        raise KeyError(f"unexpected text keys {unexpected[:5]}")
    weights = {}
    for key, slot in expected.items():
        if tuple(state[key].shape) != tuple(slot.shape):
            raise ValueError(f"'{key}' has shape {tuple(state[key].shape)}, expected {tuple(slot.shape)}")
        weights[key] = state[key].to(slot.dtype).to(torch.float32, memory_format=torch.contiguous_format,
                                                   copy=True)
    tower.load_state_dict(weights, strict=True, assign=True)
    return tower.eval()


# ------------------------------------------------------------------------------------------------
# The encoder


class TextEncoder:
    """Frozen CLIP text tower. Use :meth:`load`; call :meth:`encode`."""

    def __init__(self, model: torch.nn.Module, device: str | torch.device = "cpu",
                 official_fp16: bool = False, cache_size: int = 256) -> None:
        clip = import_clip()
        if hasattr(model, "visual"):  # a whole CLIP model was given: keep its text half only
            del model.visual  # note CLIP.dtype/encode_text need `visual`, so we encode ourselves
            gc.collect()
        model = model.float()
        self.device = torch.device(device)
        self.official_fp16 = bool(official_fp16 and self.device.type == "cuda")
        if self.official_fp16:
            clip.model.convert_weights(model)
        self.dtype = torch.float16 if self.official_fp16 else torch.float32
        self.model: Any = model.to(self.device).eval().requires_grad_(False)
        projection: Any = model.text_projection
        self.embed_dim = int(projection.shape[1])
        self._tokenize = clip.tokenize
        self._bpe = getattr(clip.clip, "_tokenizer", None)
        self._cache: OrderedDict[str, torch.Tensor] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()

    @classmethod
    def load(cls, path: Path, device: str | torch.device = "cpu", official_fp16: bool = False) -> TextEncoder:
        """From a CLIP file (official TorchScript or plain state_dict); the visual half is never built."""
        state = load_clip_state_dict(path, text_only=True)
        try:
            model = build_text_tower(state)
        except (KeyError, RuntimeError, ValueError) as exc:
            raise CheckpointError(
                f"{path} does not hold a loadable CLIP model ({type(exc).__name__}: {exc}).",
                "Re-download it: " + _FETCH_FIX) from None
        del state
        return cls(model, device=device, official_fp16=official_fp16)

    # -- tokens --------------------------------------------------------------------------------

    def token_count(self, prompt: str) -> int:
        """Tokens ``prompt`` needs including start/end markers (> 77 means it gets truncated)."""
        if self._bpe is not None:
            return len(self._bpe.encode(prompt)) + 2
        try:
            tokens = self._tokenize([prompt])
        except RuntimeError:
            return CONTEXT_LENGTH + 1
        return int(tokens.argmax(dim=-1)[0]) + 1

    def too_long(self, prompts: list[str]) -> list[bool]:
        """Per prompt: True if it exceeds CLIP's 77-token context (it will be cut)."""
        return [self.token_count(p) > CONTEXT_LENGTH for p in prompts]

    def tokenize(self, prompts: list[str]) -> tuple[torch.Tensor, list[bool]]:
        """(tokens (b, 77) as ``clip.tokenize(truncate=True)`` gives them, truncated flag per prompt)."""
        flags = self.too_long(prompts)
        for prompt, cut in zip(prompts, flags, strict=True):
            if cut:
                warnings.warn(f"Prompt longer than CLIP's {CONTEXT_LENGTH} tokens; the end is ignored: "
                              f"{prompt[:60]!r}...", stacklevel=3)
        return self._tokenize(prompts, truncate=True), flags

    # -- encoding ------------------------------------------------------------------------------

    @torch.no_grad()
    def _encode_tokens(self, tokens: torch.Tensor, truncate_at_eot: bool) -> torch.Tensor:
        m: Any = self.model
        tokens = tokens.to(self.device)
        eot = tokens.argmax(dim=-1)  # EOT (49407) is the largest id in every row
        length = int(eot.max()) + 1 if truncate_at_eot else tokens.shape[1]
        tokens = tokens[:, :length]
        x = m.token_embedding(tokens).type(self.dtype)
        x = x + m.positional_embedding[:length].type(self.dtype)
        x = x.permute(1, 0, 2)  # sequence-first, as CLIP's transformer expects
        if length == CONTEXT_LENGTH:
            x = m.transformer(x)  # the official path, untouched
        else:
            mask = m.transformer.resblocks[0].attn_mask[:length, :length].to(dtype=x.dtype, device=x.device)
            for block in m.transformer.resblocks:
                h = block.ln_1(x)
                x = x + block.attn(h, h, h, need_weights=False, attn_mask=mask)[0]
                x = x + block.mlp(block.ln_2(x))
        x = m.ln_final(x.permute(1, 0, 2)).type(self.dtype)
        features = x[torch.arange(x.shape[0], device=x.device), eot] @ m.text_projection
        return features.float()

    def encode(self, prompts: list[str], truncate_at_eot: bool = True,
               return_truncated: bool = False) -> torch.Tensor | tuple[torch.Tensor, list[bool]]:
        """Prompts → (b, 512) float32 text features (not L2-normalised), on this encoder's device.

        ``truncate_at_eot=True``: fast path (EOT slicing + per-prompt LRU cache).
        ``truncate_at_eot=False``: the official full-77-position computation, uncached.
        ``return_truncated=True`` also returns, per prompt, whether it was cut to 77 tokens.
        """
        prompts = list(prompts)
        if not truncate_at_eot:
            tokens, flags = self.tokenize(prompts)
            features = self._encode_tokens(tokens, truncate_at_eot=False)
            return (features, flags) if return_truncated else features
        with self._lock:
            cached = {p: self._cache[p] for p in prompts if p in self._cache}
            for p in cached:
                self._cache.move_to_end(p)
        missing = list(dict.fromkeys(p for p in prompts if p not in cached))
        if missing:
            tokens, _ = self.tokenize(missing)
            fresh = self._encode_tokens(tokens, truncate_at_eot=True)
            with self._lock:
                for prompt, row in zip(missing, fresh, strict=True):
                    self._cache[prompt] = cached[prompt] = row.clone()
                while len(self._cache) > self._cache_size:
                    self._cache.popitem(last=False)
        features = torch.stack([cached[p] for p in prompts], dim=0)
        if return_truncated:
            return features, self.too_long(prompts)
        return features

    def cached(self, prompt: str) -> bool:
        """Whether the fast path has ``prompt``'s features cached."""
        with self._lock:
            return prompt in self._cache

    def clear_cache(self) -> None:
        """Forget cached prompt features."""
        with self._lock:
            self._cache.clear()
