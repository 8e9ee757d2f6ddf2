"""GPU fast path: the fast flow's transformer passes replayed as CUDA graphs at fixed shapes.

**Unmeasured.** This was written on a machine without a GPU: the padding logic is tested on CPU
(``tests/backend/inference/test_cuda_graphs.py``), the capture itself has never run. It is therefore OFF
unless asked for:
``MOMASK_ACCEL=graphs`` (or ``compile``: ``torch.compile`` of the pass, then captured) in the backend's
environment, or ``pipeline.accel = StaticPasses(...)``. It never activates off CUDA. Measure it with
``bench/run.py --device cuda`` before turning it on by default.

Why: at batch 1 on a big GPU the model is ~1 ms of arithmetic spread over ~2,300 small kernels
(an estimate, not a measurement: docs/performance.md, "GPU"), so eager PyTorch is bound by kernel
launches. A CUDA graph
launches a whole pass at once.

What is captured, and what is not:
* Captured: one logits function of the fast flow (``sampling.fast_flow``) — a masked-transformer
  step or one residual layer, guidance mix included. These are free of random numbers.
* Not captured: the sampling loop (top-k, the draws, the re-masking). It stays eager so every
  random draw keeps the official shape (``b·n`` rows, docs/sampling.md §7): seeds mean what they mean in the
  eager flows, for any batch and length.
* Static shapes: a job's rows are padded to a batch bucket (1, 2, 4, … 64) and its tokens to 49
  (196 frames). Padded rows and positions are hidden by the key padding mask; the text token is never
  hidden, so no attention row is empty. The real positions' logits therefore equal the unpadded
  ones up to float rounding. Bigger jobs fall back to the eager flow.
* One graph per (flow, model, bucket, guidance scale, pass / residual layer), captured on first use
  (two eager warm-up runs first) and replayed afterwards; all graphs share one memory pool.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from backend.inference import sampling

log = logging.getLogger(__name__)

ENV = "MOMASK_ACCEL"                       # off (default) | graphs | compile
MAX_TOKENS = 49                            # 196 frames / 4
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64)
MODES = ("off", "graphs", "compile")


def bucket(batch: int, buckets: tuple[int, ...] = BATCH_BUCKETS) -> int | None:
    """The smallest bucket holding ``batch`` rows; None when the batch is bigger than every bucket."""
    return next((size for size in buckets if size >= batch), None)


@dataclass
class _Pass:
    """Static input buffers of one captured pass, and how to run it."""

    inputs: Tensor        # ids (rows, T) or history (rows, T, C)
    cond: Tensor          # (rows, clip_dim)
    padding: Tensor       # (rows, T) bool, True = hidden
    run: Callable[[], Tensor]

    def load_job(self, cond: Tensor, padding_mask: Tensor) -> None:
        """Copy a job's condition and padding in; padded rows get zeros and are hidden everywhere."""
        batch, tokens = padding_mask.shape
        self.cond.zero_()
        self.cond[:batch].copy_(cond)
        self.padding.fill_(True)
        self.padding[:batch, :tokens].copy_(padding_mask)


class StaticPasses:
    """Wraps the fast flow so its passes run at (bucket, 49) shapes; as CUDA graphs when ``capture``.

    ``capture=False`` runs the same padded passes eagerly: that is what the CPU tests check.
    """

    def __init__(self, mode: str = "graphs", tokens: int = MAX_TOKENS,
                 buckets: tuple[int, ...] = BATCH_BUCKETS, capture: bool = True) -> None:
        if mode not in MODES[1:]:
            raise ValueError(f"unknown acceleration mode {mode!r}; expected one of {MODES[1:]}")
        self.mode, self.tokens, self.buckets, self.capture = mode, tokens, buckets, capture
        self._passes: dict[tuple, _Pass] = {}
        self._pool: Any = None          # one CUDA graph memory pool shared by every captured pass

    # -- building and capturing ---------------------------------------------------------------

    def _pass(self, key: tuple, inputs: Tensor, cond_dim: int, device: torch.device,
              compute: Callable[[Tensor, Tensor, Tensor], Tensor]) -> _Pass:
        found = self._passes.get(key)
        if found is not None:
            return found
        rows = inputs.shape[0]
        cond = torch.zeros(rows, cond_dim, device=device)
        padding = torch.ones(rows, self.tokens, dtype=torch.bool, device=device)  # all hidden until a job

        def body() -> Tensor:
            return compute(inputs, cond, padding)

        if self.mode == "compile":
            body = torch.compile(body, dynamic=False)
        run: Callable[[], Tensor] = body
        if self.capture:
            run = self._capture(body, device)
        found = self._passes[key] = _Pass(inputs, cond, padding, run)
        return found

    def _capture(self, body: Callable[[], Tensor], device: torch.device) -> Callable[[], Tensor]:
        side = torch.cuda.Stream(device)
        side.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(side):
            for _ in range(2):          # warm-up: cuBLAS workspaces, lazily built tables, compilation
                body()
        torch.cuda.current_stream(device).wait_stream(side)
        if self._pool is None:
            self._pool = torch.cuda.graph_pool_handle()
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=self._pool):
            output = body()

        def replay() -> Tensor:
            graph.replay()
            return output
        return replay

    # -- the flow -------------------------------------------------------------------------------

    def wrap(self, flow: sampling.Flow) -> sampling.Flow:
        """``flow`` (a fast flow) with its passes run at static shapes."""

        def base_logits(model, cond: Tensor, padding_mask: Tensor, cond_scale: float) -> sampling.BaseLogits:
            batch, tokens = padding_mask.shape
            rows = bucket(batch, self.buckets)
            if rows is None or tokens > self.tokens:
                return flow.base_logits(model, cond, padding_mask, cond_scale)
            key = ("base", flow.name, id(model), rows, float(cond_scale))
            ids = torch.full((rows, self.tokens), model.pad_id, dtype=torch.long, device=cond.device)
            step = self._pass(key, ids, cond.shape[1], cond.device,
                              lambda i, c, p: flow.base_logits(model, c, p, cond_scale)(i))
            step.load_job(cond, padding_mask)

            def logits(ids: Tensor) -> Tensor:
                step.inputs[:batch, :tokens].copy_(ids)
                return step.run()[:batch, :tokens]
            return logits

        def residual_logits(model, cond: Tensor, padding_mask: Tensor, cond_scale: float,
                            output_proj_weight: Tensor) -> sampling.ResidualLogits:
            batch, tokens = padding_mask.shape
            rows = bucket(batch, self.buckets)
            if rows is None or tokens > self.tokens:
                return flow.residual_logits(model, cond, padding_mask, cond_scale, output_proj_weight)
            weights = output_proj_weight

            def layer_pass(layer: int) -> _Pass:
                key = ("residual", flow.name, id(model), rows, float(cond_scale), layer)
                history = torch.zeros(rows, self.tokens, model.code_dim, device=cond.device)

                def compute(h: Tensor, c: Tensor, p: Tensor) -> Tensor:
                    return flow.residual_logits(model, c, p, cond_scale, weights)(h, layer)
                found = self._pass(key, history, cond.shape[1], cond.device, compute)
                found.load_job(cond, padding_mask)
                return found

            loaded: dict[int, _Pass] = {}

            def logits(history: Tensor, layer: int) -> Tensor:
                if layer not in loaded:
                    loaded[layer] = layer_pass(layer)
                step = loaded[layer]
                step.inputs[:batch, :tokens].copy_(history)
                return step.run()[:batch, :tokens]
            return logits

        return sampling.Flow(f"{flow.name}+{self.mode}", base_logits, residual_logits)


def from_environment(device: torch.device | str) -> StaticPasses | None:
    """The accelerator asked for by ``MOMASK_ACCEL`` — only ever on CUDA; None otherwise."""
    mode = os.environ.get(ENV, "off").strip().lower() or "off"
    if mode not in MODES:
        log.warning("%s=%r is not one of %s; acceleration stays off", ENV, mode, ", ".join(MODES))
        return None
    if mode == "off" or torch.device(device).type != "cuda":
        return None
    log.info("CUDA fast path on (%s=%s): passes padded to %d tokens and replayed as graphs (unmeasured)",
             ENV, mode, MAX_TOKENS)
    return StaticPasses(mode)
