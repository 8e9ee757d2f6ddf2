"""Building a model's structure without memory or random initialisation, to load a checkpoint into.

Paper: none (MoMask, Guo et al., CVPR 2024, describes the networks, not their loading). Official
counterpart: the ``load_*_model`` functions of ``gen_t2m.py``, which build each model with its random
init and then ``load_state_dict`` over it (docs/model.md §10). What differs: nothing is drawn or
allocated before the checkpoint's tensors are adopted.

Constructing the networks normally allocates every weight and draws it at random, only for the
checkpoint to overwrite it: for CLIP and the three MoMask models that is most of the load time and
a second copy of the weights at peak. Inside :func:`meta_construction` modules are built on torch's
meta device (shapes and dtypes only) and random initialisation is skipped; the loader then adopts
the checkpoint's tensors with ``load_state_dict(..., assign=True)``.

Why the random draws are skipped explicitly: on the meta device ``normal_`` has no native kernel and
runs torch's Python reference, whose first use imports torch's compiler stack (seconds). Drawing
nothing also leaves torch's global RNG untouched; the official construction order and draws
(docs/model.md §10) remain what the plain constructors do, outside this context.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

M = TypeVar("M", bound=nn.Module)


class _SkipRandomInit(TorchFunctionMode):
    """Turns the normal draws used by constructors into no-ops while building on the meta device."""

    def __torch_function__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        if func in (torch.Tensor.normal_, nn.init.normal_):
            target = args[0] if args else kwargs.get("tensor")  # nn.init passes its tensor by keyword
            if isinstance(target, torch.Tensor) and target.is_meta:
                return target  # in-place init of a meta tensor: nothing to compute
        if func is torch.normal and "size" in kwargs and kwargs.get("device") is None:  # (mean, std, size=)
            return torch.empty(kwargs["size"], dtype=kwargs.get("dtype"))  # meta (the device mode is outside)
        return func(*args, **kwargs)


@contextmanager
def meta_construction() -> Iterator[None]:
    """Modules created inside have meta tensors (no memory) and draw nothing from the RNG."""
    with torch.device("meta"), _SkipRandomInit():
        yield


def build_without_init(build: Callable[[], M]) -> M:
    """``build()`` inside :func:`meta_construction`. Every tensor must then come from a checkpoint."""
    with meta_construction():
        return build()


def unset_tensors(module: nn.Module) -> list[str]:
    """Names of parameters/buffers still on the meta device (none may remain once a checkpoint is loaded)."""
    return [name for name, tensor in (*module.named_parameters(), *module.named_buffers()) if tensor.is_meta]
