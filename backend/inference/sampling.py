"""The MoMask samplers: confidence-ordered masked decoding and residual layer-by-layer decoding.

Paper: MoMask (Guo et al., CVPR 2024), Sec. 3.3 (inference) and its temporal-inpainting application.
Official code: ``MaskTransformer.generate`` / ``edit`` and ``ResidualTransformer.generate`` in
``models/mask_transformer/transformer.py``, with ``cosine_schedule``, ``top_k``, ``gumbel_sample``
and ``lengths_to_mask`` from ``models/mask_transformer/tools.py`` (docs/sampling.md).

What differs, and why: the loops take a "logits function" instead of a model, so the official
two-pass guidance (reference flow) and the batched one (fast flow) share one loop; draws come from an
explicit generator; inpainting can keep the source's residual tokens outside the range
(docs/sampling.md §6); nothing synchronises with the host inside a loop.

Three algorithms, written once:

* :func:`masked_generate` — the base layer (docs/sampling.md §2): start from all-MASK, and over
  ``steps`` iterations keep the most confident predictions and re-mask the rest following a cosine
  schedule.
* :func:`masked_edit` — temporal inpainting of the base layer (docs/sampling.md §6): the same loop,
  restricted to the positions of an edit mask; every other token stays the source's.
* :func:`residual_generate` — quantizer layers 1..5 (docs/sampling.md §5), each predicted from the sum
  of the embeddings of the layers below it, with Gumbel-max sampling.

Random numbers are drawn in the official order and shapes (docs/sampling.md §7) from an explicit
``torch.Generator`` on the run device: one ``multinomial`` of ``(b*n, 512)`` per base step (or one
``uniform_`` of ``(b, n, 512)`` with Gumbel sampling), then one ``uniform_`` of ``(b, n, 513)`` per
residual layer. So the same weights, seed, device and torch version give the official tokens.

How the transformers are asked for classifier-free-guided logits is the only difference between the
two flows, and it lives in small "logits functions" built by :func:`reference_flow` and
:func:`fast_flow`:

* reference — mirrors the official code: two separate forward passes (conditional, then
  unconditional) through ``forward_with_cond_scale``, fp32, eager;
* fast — the conditional and unconditional passes batched into one forward (``[cond; zeros]`` on
  the batch axis), run through the lean batch-first forward of ``backend/inference/fast_transformer.py`` (the
  same parameters as the stock encoder modules), optional bf16/fp16 autocast for the transformer
  body while the logits, the softmax and the guidance mix stay fp32.

The decoding loops never synchronise with the host (no ``.item()``, no ``max`` of device lengths;
the cosine schedule is computed before the loop), so they can run ahead on a GPU.
"""

from __future__ import annotations

import contextlib
import math
import threading
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor

from backend.inference import fast_transformer
from backend.portable.errors import CancelledError

#: Number of real codes per quantizer layer; the masked transformer's MASK id equals it.
NUM_CODES = 512
MASK_ID = NUM_CODES          # masked transformer: "this token is to be predicted"
BASE_PAD_ID = NUM_CODES + 1  # masked transformer: "no token here" (past the motion's end)
RESIDUAL_PAD_ID = NUM_CODES  # residual transformer: its only extra class is PAD
NUM_QUANTIZERS = 6

#: Top-k ratio of the residual layers: the official scripts never pass --topkr to the residual
#: transformer's ``generate``, so it always keeps its default 0.9 (52 of 513 classes).
RESIDUAL_TOPK = 0.9

#: Score given to positions that must never be re-masked (padding, kept tokens). Official value.
NEVER_REMASK = 1e5

Progress = Callable[[str, int, int], None]  # (stage, done, total)

#: ``ids (b, n) -> guided logits (b, n, 512)`` float32, for the masked transformer.
BaseLogits = Callable[[Tensor], Tensor]
#: ``(history (b, n, 512), layer j) -> guided logits (b, n, 513)`` float32, for the residual one.
ResidualLogits = Callable[[Tensor, int], Tensor]


# --- small pieces of the algorithm -----------------------------------------------------------------


def cosine_mask_ratios(steps: int, device: torch.device | str = "cpu") -> list[Tensor]:
    """The fraction of tokens still masked at each step: cos(t·π/2), t = linspace(0, 1, steps).

    Computed exactly like the official code — a float32 ``linspace`` on the run device, then one
    0-d ``cos`` per step — because ``round(ratio · length)`` is sensitive to the last bit. Returned
    as 0-d device tensors, ready before the loop starts (no host round trip inside it).
    """
    times = torch.linspace(0, 1, steps, device=device)
    return [torch.cos(t * math.pi * 0.5) for t in times]


def num_masked_schedule(ratio: Tensor, lengths: Tensor) -> Tensor:
    """How many tokens of each row to (re-)mask: round-half-to-even(ratio · length), at least 1."""
    return torch.round(ratio * lengths).clamp(min=1)


def topk_count(topk: float, num_classes: int) -> int:
    """How many logits survive the top-k filter: ceil((1 − topk) · classes) as the official float product.

    (1 − 0.9) · 512 = 51.2000…01 in floating point, hence 52 — and 52 for 513 classes too.
    """
    return math.ceil((1 - topk) * num_classes)


def topk_filter(logits: Tensor, k: int) -> Tensor:
    """Keep the ``k`` largest logits of the last axis and set the others to −inf."""
    values, indices = logits.topk(k, dim=-1)
    return torch.full_like(logits, float("-inf")).scatter_(-1, indices, values)


def lowest_score_mask(scores: Tensor, num_masked: Tensor) -> Tensor:
    """True at the ``num_masked[i]`` lowest-scoring positions of each row (argsort of argsort ranks)."""
    ranks = scores.argsort(dim=1).argsort(dim=1)
    return ranks < num_masked.unsqueeze(-1)


#: Memory layouts of the official Gumbel noise, as logical axes (b, n, C) listed slowest → fastest.
#: Officially the noise is ``zeros_like(filtered_logits).uniform_()``, and ``zeros_like``/``full_like``
#: keep the strides of the logits they copy, which are permuted views of the transformers' outputs, so
#: ``uniform_`` fills the values in MEMORY order, not in (b, n, C) order:
#: * masked transformer: the head works sequence-first and the logits are ``(n, b, C)`` in memory;
#: * residual transformer: ``output_project``'s einsum gives ``(b, C, n)`` in memory.
#: Drawing contiguous (b, n, C) noise takes the same numbers but hands them to other positions, so the
#: tokens would differ from the official ones (the pipeline's oracle test catches exactly that).
BASE_NOISE_LAYOUT = (1, 0, 2)
RESIDUAL_NOISE_LAYOUT = (0, 2, 1)


def gumbel_noise(shape: tuple[int, ...], generator: torch.Generator, device: torch.device,
                 layout: tuple[int, ...] | None = None) -> Tensor:
    """−log(−log U) with U ~ uniform(0, 1): ONE ``uniform_`` call of the logits' full shape.

    ``layout``: the order (slowest → fastest) in which the draws are laid out in memory, i.e. which
    position gets which random number (see ``BASE_NOISE_LAYOUT``); default row-major.
    """
    layout = tuple(range(len(shape))) if layout is None else layout
    memory_strides, step = [0] * len(shape), 1
    for axis in reversed(layout):
        memory_strides[axis] = step
        step *= shape[axis]
    uniform = torch.empty_strided(shape, memory_strides, dtype=torch.float32, device=device)
    uniform.uniform_(0, 1, generator=generator)
    tiny = 1e-20
    return -torch.log((-torch.log(uniform.clamp(min=tiny))).clamp(min=tiny))


def gumbel_argmax(filtered: Tensor, temperature: float, generator: torch.Generator,
                  layout: tuple[int, ...] | None = None) -> Tensor:
    """Gumbel-max sampling: argmax(logits / T + Gumbel noise) over the last axis."""
    noise = gumbel_noise(tuple(filtered.shape), generator, filtered.device, layout)
    return (filtered / max(temperature, 1e-10) + noise).argmax(dim=-1)


def categorical_draw(probs: Tensor, generator: torch.Generator) -> Tensor:
    """One class per row of ``probs (..., C)``: the official ``Categorical(probs).sample()``.

    ``Categorical`` renormalises the probabilities by their sum and then makes ONE multinomial draw
    over all rows; doing the same without ``Categorical`` skips its argument validation, which
    would otherwise synchronise with the device.
    """
    probs = probs / probs.sum(dim=-1, keepdim=True)
    drawn = torch.multinomial(probs.reshape(-1, probs.shape[-1]), 1, replacement=True, generator=generator)
    return drawn.view(probs.shape[:-1])


def categorical_sample(filtered: Tensor, temperature: float, generator: torch.Generator) -> Tensor:
    """Sample each position of ``filtered (b, n, C)`` from softmax(logits / T)."""
    return categorical_draw(torch.softmax(filtered / temperature, dim=-1), generator)


# --- progress and cancel ---------------------------------------------------------------------------


def job_units(steps: int) -> int:
    """The work units one generation reports: the base layer's ``steps``, one per residual layer
    (``NUM_QUANTIZERS - 1``) and one for decoding."""
    return steps + (NUM_QUANTIZERS - 1) + 1


@dataclass
class StepReporter:
    """Reports progress after each step and stops the job when the user cancels.

    One reporter follows a whole job (base steps, residual layers, decoding), so ``done`` counts
    across stages and ``total`` is the job's total (:func:`job_units`).
    """

    progress: Progress | None = None
    cancel: threading.Event | None = None
    total: int = 0
    done: int = field(default=0)

    def step(self, stage: str) -> None:
        self.done += 1
        if self.progress is not None:
            self.progress(stage, self.done, self.total)
        self.check()

    def check(self) -> None:
        if self.cancel is not None and self.cancel.is_set():
            raise CancelledError()


# --- the flows: how guided logits are obtained ------------------------------------------------------


def _guided(cond_logits: Tensor, uncond_logits: Tensor, scale: float) -> Tensor:
    """Classifier-free guidance: uncond + (cond − uncond) · scale (the official expression)."""
    return uncond_logits + (cond_logits - uncond_logits) * scale


@dataclass(frozen=True)
class Flow:
    """Builds the logits functions the sampling loops call; see the module docstring."""

    name: str
    base_logits: Callable[..., BaseLogits]
    residual_logits: Callable[..., ResidualLogits]


def _reference_base_logits(model, cond: Tensor, padding_mask: Tensor, cond_scale: float) -> BaseLogits:
    def logits(ids: Tensor) -> Tensor:
        out = model.forward_with_cond_scale(ids, cond, padding_mask, cond_scale=cond_scale)
        return out.permute(0, 2, 1)
    return logits


def _reference_residual_logits(model, cond: Tensor, padding_mask: Tensor, cond_scale: float,
                               output_proj_weight: Tensor) -> ResidualLogits:
    """The official ``forward_with_cond_scale``: conditional pass, then a separate unconditional one."""
    def logits(history: Tensor, layer: int) -> Tensor:
        out = model.forward_with_cond_scale(history, layer, cond, padding_mask, cond_scale=cond_scale,
                                            output_proj_weight=output_proj_weight)
        return out.permute(0, 2, 1)
    return logits


def reference_flow() -> Flow:
    """The official flow: two separate guidance passes, fp32, eager."""
    return Flow("reference", _reference_base_logits, _reference_residual_logits)


_AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


@contextlib.contextmanager
def _autocast(device: torch.device, precision: str) -> Iterator[None]:
    if precision == "fp32":
        yield
        return
    with torch.autocast(device_type=device.type, dtype=_AUTOCAST_DTYPES[precision]):
        yield


def _doubled(x: Tensor) -> Tensor:
    return torch.cat([x, x], dim=0)


def _key_padding(padding_mask: Tensor, prefix: int) -> Tensor:
    """Key padding over [prefix tokens, motion tokens]: the text/layer tokens are never hidden."""
    return torch.cat([padding_mask.new_zeros(padding_mask.shape[0], prefix), padding_mask], dim=1)


def _pass_rows(cond: Tensor, padding_mask: Tensor, both: bool) -> tuple[Tensor, Tensor]:
    """Condition and padding of the rows of one forward: [text; no text] when ``both``, else one set."""
    if both:
        return torch.cat([cond, torch.zeros_like(cond)], dim=0), _doubled(padding_mask)
    return cond, padding_mask


def _token_inputs(model) -> Tensor:
    """``input_process(token_emb(id))`` for every id (514, latent): the embedding and the input Linear
    folded into one table, built once per model (a gather per step instead of a Linear)."""
    weight = model.token_emb.weight
    cached = _TOKEN_INPUTS.get(model)
    if cached is None or cached[0] != weight._version:
        with torch.no_grad():
            cached = (weight._version, model.input_process.poseEmbedding(weight))
        _TOKEN_INPUTS[model] = cached
    return cached[1]


_TOKEN_INPUTS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def fast_flow(precision: str = "fp32") -> Flow:
    """Guidance passes batched: rows [0, b) see the text, rows [b, 2b) see zeros (unconditional).

    Same modules and weights as ``trans_forward``, but fed so that no work repeats: the text and
    layer tokens are computed once per job, the motion tokens once per step for both passes (they
    are the same ids), the masked transformer's input is a gather from a per-model table, the
    attention mask is made once per job (none when nothing is padded), the encoder runs batch-first
    through ``fast_transformer.encoder_forward``, and the residual classifier is one matrix product
    with that layer's weights. Only float rounding differs from the reference flow.
    """
    if precision not in ("fp32", *_AUTOCAST_DTYPES):
        raise ValueError(f"unknown precision {precision!r}")

    def base_logits(model, cond: Tensor, padding_mask: Tensor, cond_scale: float) -> BaseLogits:
        batch, seq_len = padding_mask.shape
        both = cond_scale != 1
        pass_cond, pass_mask = _pass_rows(cond, padding_mask, both)
        with _autocast(cond.device, precision):
            text_token = model.cond_emb(pass_cond).unsqueeze(1)              # (rows, 1, latent)
        attention_bias = fast_transformer.attention_bias(_key_padding(pass_mask, 1))
        table = _token_inputs(model)
        positions = model.position_enc.pe[:seq_len, 0]                      # (n, latent)

        def logits(ids: Tensor) -> Tensor:
            motion = table[ids] + positions                                 # (b, n, latent)
            with _autocast(ids.device, precision):
                sequence = torch.cat([text_token, motion.repeat(2, 1, 1) if both else motion], dim=1)
                hidden = fast_transformer.encoder_forward(model.seqTransEncoder, sequence, attention_bias)
                out = fast_transformer.head_forward(model.output_process, hidden[:, 1:])  # (rows, n, 512)
            out = out.float()
            return _guided(out[:batch], out[batch:], cond_scale) if both else out
        return logits

    def residual_logits(model, cond: Tensor, padding_mask: Tensor, cond_scale: float,
                        output_proj_weight: Tensor) -> ResidualLogits:
        batch, seq_len = padding_mask.shape
        both = cond_scale != 1
        pass_cond, pass_mask = _pass_rows(cond, padding_mask, both)
        rows = pass_cond.shape[0]
        layers = model.num_quantizers
        with _autocast(cond.device, precision):
            text_token = model.cond_emb(pass_cond).unsqueeze(1)              # (rows, 1, latent)
            eye = torch.eye(layers, device=cond.device)
            layer_tokens = model.quant_emb(eye)                              # (layers, latent)
        attention_bias = fast_transformer.attention_bias(_key_padding(pass_mask, 2))
        positions = model.position_enc.pe[:seq_len, 0]

        def logits(history: Tensor, layer: int) -> Tensor:
            with _autocast(history.device, precision):
                motion = model.input_process.poseEmbedding(history) + positions   # (b, n, latent)
                layer_token = layer_tokens[layer].expand(rows, 1, -1)
                sequence = torch.cat([text_token, layer_token, motion.repeat(2, 1, 1) if both else motion],
                                     dim=1)
                hidden = fast_transformer.encoder_forward(model.seqTransEncoder, sequence, attention_bias)
                feature = fast_transformer.head_forward(model.output_process, hidden[:, 2:])   # (rows, n, C)
            out = F.linear(feature.float(), output_proj_weight[layer - 1])   # (rows, n, 513)
            out = model.add_output_bias(out, lambda bias: bias[layer - 1])
            return _guided(out[:batch], out[batch:], cond_scale) if both else out
        return logits

    return Flow(f"fast-{precision}" if precision != "fp32" else "fast", base_logits, residual_logits)


def make_flow(name: str, precision: str = "fp32") -> Flow:
    """``"reference"`` (always fp32) or ``"fast"`` with the given precision."""
    if name == "reference":
        return reference_flow()
    if name == "fast":
        return fast_flow(precision)
    raise ValueError(f"unknown flow {name!r}; expected 'fast' or 'reference'")


# --- the samplers ----------------------------------------------------------------------------------


def padding_mask_for(lengths: Tensor, seq_len: int) -> Tensor:
    """True where position j ≥ the row's token count (the official ``~lengths_to_mask``)."""
    positions = torch.arange(seq_len, device=lengths.device)
    return positions.unsqueeze(0) >= lengths.unsqueeze(1)


def _unmask_loop(logits_fn: BaseLogits, ids: Tensor, scores: Tensor, editable_lengths: Tensor, steps: int,
                 temperature: float, topk: float, gumbel: bool, generator: torch.Generator,
                 reporter: StepReporter, mask_id: int) -> Tensor:
    """The confidence-ordered unmasking loop shared by generate and edit.

    At step k, the ``round(cos(t_k·π/2) · len)`` lowest-scoring positions are masked, every masked
    position is predicted, and each prediction's (guided, unfiltered) probability becomes its
    score for the next step. Positions scored ``NEVER_REMASK`` are never touched.
    """
    for ratio in cosine_mask_ratios(steps, ids.device):
        is_mask = lowest_score_mask(scores, num_masked_schedule(ratio, editable_lengths))
        ids = torch.where(is_mask, mask_id, ids)
        logits = logits_fn(ids)
        filtered = topk_filter(logits, topk_count(topk, logits.shape[-1]))
        if gumbel:
            predicted = gumbel_argmax(filtered, temperature, generator, BASE_NOISE_LAYOUT)
        else:
            predicted = categorical_sample(filtered, temperature, generator)
        ids = torch.where(is_mask, predicted, ids)
        confidence = logits.softmax(dim=-1).gather(2, predicted.unsqueeze(-1)).squeeze(-1)
        scores = confidence.masked_fill(~is_mask, NEVER_REMASK)
        reporter.step("base")
    return ids


def masked_generate(logits_fn: BaseLogits, lengths: Tensor, seq_len: int, steps: int, *,
                    generator: torch.Generator, temperature: float = 1.0, topk: float = 0.9,
                    gumbel: bool = False, reporter: StepReporter | None = None, mask_id: int = MASK_ID,
                    pad_id: int = BASE_PAD_ID) -> Tensor:
    """Base-layer tokens (b, seq_len) int64 for token counts ``lengths``; −1 past each row's end."""
    padding = padding_mask_for(lengths, seq_len)
    ids = torch.where(padding, pad_id, mask_id)
    scores = torch.where(padding, NEVER_REMASK, 0.0)
    ids = _unmask_loop(logits_fn, ids, scores, lengths, steps, temperature, topk, gumbel, generator,
                       reporter or StepReporter(), mask_id)
    return torch.where(padding, -1, ids)


def masked_edit(logits_fn: BaseLogits, tokens: Tensor, edit_mask: Tensor, lengths: Tensor, steps: int, *,
                generator: torch.Generator, temperature: float = 1.0, topk: float = 0.9,
                gumbel: bool = False, reporter: StepReporter | None = None, mask_id: int = MASK_ID) -> Tensor:
    """Regenerate the base tokens where ``edit_mask`` is True; keep ``tokens`` elsewhere.

    The schedule is relative to the number of edited tokens per row, not to the motion length.
    Positions past a row's end keep their source value during the loop (hidden from attention by
    the padding mask, as in the official code) and come back as −1.
    """
    padding = padding_mask_for(lengths, tokens.shape[1])
    edit_mask = edit_mask & ~padding
    ids = torch.where(edit_mask, mask_id, tokens)
    scores = torch.where(edit_mask, 0.0, NEVER_REMASK)
    ids = _unmask_loop(logits_fn, ids, scores, edit_mask.sum(dim=-1), steps, temperature, topk, gumbel,
                       generator, reporter or StepReporter(), mask_id)
    return torch.where(padding, -1, ids)


def residual_generate(logits_fn: ResidualLogits, token_embeddings: Tensor, base_ids: Tensor, lengths: Tensor,
                      *, generator: torch.Generator, temperature: float = 1.0, topk: float = 0.9,
                      num_layers: int = NUM_QUANTIZERS - 1, keep: Tensor | None = None,
                      keep_tokens: Tensor | None = None, reporter: StepReporter | None = None,
                      pad_id: int = RESIDUAL_PAD_ID) -> Tensor:
    """Quantizer layers 1..``num_layers`` on top of ``base_ids`` (b, n); returns (b, n, 1 + num_layers).

    ``token_embeddings`` (≥ num_layers, 513, 512) holds E_j, the embedding of layer-j tokens (the
    tied weights of the residual transformer). Layer j is predicted from
    history_j = E_0[ids_0] + … + E_{j−1}[ids_{j−1}] (summed in that order) with Gumbel-max sampling.

    ``keep`` (b, n) bool and ``keep_tokens`` (b, n, 6): where ``keep`` is True the layer-j token is
    forced to ``keep_tokens[..., j]`` before it enters the history — inpainting that leaves the
    source untouched outside the edited range on every layer. The random draws are unchanged.

    PAD (512) is a legal prediction; like the official code it becomes −1 (a zero code) in the output.
    """
    padding = padding_mask_for(lengths, base_ids.shape[1])
    reporter = reporter or StepReporter()
    ids = torch.where(padding, pad_id, base_ids)
    layers = [ids]
    history: Tensor | None = None
    for layer in range(1, num_layers + 1):
        embedded = token_embeddings[layer - 1][ids]
        history = embedded if history is None else history + embedded
        logits = logits_fn(history, layer)
        filtered = topk_filter(logits, topk_count(topk, logits.shape[-1]))
        predicted = gumbel_argmax(filtered, temperature, generator, RESIDUAL_NOISE_LAYOUT)
        if keep is not None and keep_tokens is not None:
            predicted = torch.where(keep, keep_tokens[..., layer], predicted)
        ids = torch.where(padding, pad_id, predicted)
        layers.append(ids)
        reporter.step("residual")
    stacked = torch.stack(layers, dim=-1)
    return torch.where(stacked == pad_id, -1, stacked)
