"""MoMask end to end: text → motion, temporal inpainting, and encoding a motion into tokens.

The pipeline owns the loaded models and the device; the decoding algorithms themselves live in
:mod:`backend.inference.sampling`. :meth:`MoMaskPipeline.text_to_motion` reads as the numbered steps
of the paper's inference (MoMask, Guo et al., CVPR 2024, Sec. 3.3; ``gen_t2m.py`` officially):
1. text condition, 2. lengths, 3. base tokens, 4. residual tokens, 5. decode, 6. joints.
:meth:`MoMaskPipeline.inpaint` is the same flow on a source motion's tokens (``edit_t2m.py``).

Conventions a caller should know:

* Lengths are in frames at 20 fps (12.5 for KIT) and are rounded DOWN to a multiple of 4 frames
  (one token), like the official ``motion_length // 4``; 1..3 frames are therefore refused.
* One random generator on the run device, seeded once per job with ``settings.seed`` before the
  first draw; the draws follow the official order and shapes (length estimation, base steps,
  residual layers; docs/sampling.md §7). On a GPU this is exactly the official stream after
  ``fixseed(seed)``; on the CPU the official scripts first advance the generator by their models'
  random initialisation (docs/sampling.md §8), so official CPU parity needs that offset, not the
  same seed.
* All prompts of a call form ONE batch (results depend on the batch, as officially: docs/sampling.md §8).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from backend.inference import cuda_graphs as accel
from backend.inference import sampling
from backend.motion import skeleton as sk
from backend.motion.features import SKELETONS, features_from_joints, recover_from_ric
from backend.portable.errors import InputError
from backend.portable.quaternion import wrap_angle

Progress = Callable[[str, int, int], None]   # (stage, done, total); total = job_units(steps)
Conditions = tuple[torch.Tensor, torch.Tensor]   # (masked, residual) text conditions (b, 512)

FLOWS = ("fast", "reference")
PRECISIONS = ("fp32", "bf16", "fp16")
DEVICES = ("auto", "cpu", "cuda", "mps")
TOKEN_FRAMES = sk.UNIT_LENGTH
MAX_FRAMES = sk.MAX_MOTION_FRAMES
#: The longest token window any transformer call sees (49 tokens = 196 frames, docs/model.md §1).
MAX_TOKENS = MAX_FRAMES // TOKEN_FRAMES

#: Receptive field of the RVQ-VAE decoder, in tokens on each side (docs/compose.md, "Decoding"): conv
#: k3 (1) + Resnet1D dilations 9, 3, 1 (13) at token rate, then at 2x [conv k3 (1/2) + Resnet1D (13/2)]
#: and at 4x three k3 convolutions (3/4): 21.75 tokens = 87 frames, measured by a test.
DECODER_RECEPTIVE_TOKENS = 22
#: Long token sequences are decoded on a fixed grid of chunks this long, each decoded with
#: ``DECODER_RECEPTIVE_TOKENS`` of context on both sides (see :meth:`MoMaskPipeline.decode_tokens`).
DECODE_CHUNK_TOKENS = 16


#: Residual guidance scale of the official temporal-inpainting script (edit_t2m passes 2, gen_t2m 5);
#: the default for in-betweens, so they reproduce the official edits.
INPAINT_RES_COND_SCALE = 2.0


@dataclass
class SamplingSettings:
    steps: int = 10
    cond_scale: float = 4.0
    res_cond_scale: float = 5.0
    temperature: float = 1.0
    topk: float = 0.9
    seed: int = 0
    flow: str = "fast"          # "fast" (batched CFG, CLIP once) | "reference" (official flow)
    precision: str = "fp32"     # "fp32" | "bf16" | "fp16" (fast flow only)
    gumbel: bool = False        # base layer: Gumbel-max instead of categorical sampling (paper's eval)

    def validate(self) -> None:
        """Refuse settings the sampler cannot honour, naming the accepted values."""
        if not isinstance(self.steps, int) or not 1 <= self.steps <= 100:
            raise InputError(f"steps={self.steps!r} is out of range.",
                             "Use 1 to 100 steps (10 is the paper's).")
        for name in ("cond_scale", "res_cond_scale"):
            value = getattr(self, name)
            if not math.isfinite(value):
                raise InputError(f"{name}={value!r} is not a number.", f"Pass a finite {name} (e.g. 4).")
        if not (math.isfinite(self.temperature) and self.temperature > 0):
            raise InputError(f"temperature={self.temperature!r} must be > 0.", "Use e.g. 1.0.")
        if not 0 < self.topk < 1:
            raise InputError(f"topk={self.topk!r} must lie strictly between 0 and 1.",
                             "Use 0.9 (keeps the best 10% of codes).")
        if self.flow not in FLOWS:
            raise InputError(f"Unknown flow {self.flow!r}.", f"Use one of {', '.join(FLOWS)}.")
        if self.precision not in PRECISIONS:
            raise InputError(f"Unknown precision {self.precision!r}.", f"Use one of {', '.join(PRECISIONS)}.")
        if self.flow == "reference" and self.precision != "fp32":
            raise InputError("The reference flow runs in fp32 only.", "Use precision fp32 or flow fast.")

    def make_flow(self) -> sampling.Flow:
        return sampling.make_flow(self.flow, self.precision)


@dataclass
class MotionBatch:
    joints: np.ndarray    # (B, T, J, 3) float32, Y up, metres, 20 fps; rows past lengths[i] are padding
    features: np.ndarray  # (B, T, 263) float32, de-normalised
    tokens: np.ndarray    # (B, T // 4, 6) int64, -1 = no code
    lengths: np.ndarray   # (B,) int64 frames
    fps: float = 20.0
    start: int | None = None
    end: int | None = None   # inpainting: the widened range [start, end)


def resolve_device(device: str = "auto") -> torch.device:
    """``auto`` = CUDA, else Apple MPS, else CPU; a forced device must exist."""
    if device not in DEVICES and not device.startswith("cuda:"):
        raise InputError(f"Unknown device {device!r}.", f"Use one of {', '.join(DEVICES)}.")
    cuda = torch.cuda.is_available()
    mps = getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    if device == "auto":
        return torch.device("cuda" if cuda else "mps" if mps else "cpu")
    if device.startswith("cuda") and not cuda:
        raise InputError("CUDA was requested but this torch sees no CUDA GPU.",
                         "Use --device auto or cpu, or install a CUDA build of torch.")
    if device == "mps" and not mps:
        raise InputError("Apple MPS was requested but is not available here.", "Use --device auto or cpu.")
    return torch.device(device)


def check_prompts(prompts: list[str] | str) -> list[str]:
    if isinstance(prompts, str):
        prompts = [prompts]
    if not prompts:
        raise InputError("No prompt was given.", "Pass at least one text prompt.")
    for i, prompt in enumerate(prompts):
        if not isinstance(prompt, str) or not prompt.strip():
            raise InputError(f"Prompt {i + 1} is empty.",
                             "Describe the motion, e.g. 'a person walks forward'.")
    return [p.strip() for p in prompts]


def frames_to_tokens(frames: int) -> int:
    """Token count for a requested frame count: ``frames // 4``, refused outside 1..49 tokens."""
    if isinstance(frames, bool) or not isinstance(frames, (int, np.integer)):
        raise InputError(f"Length {frames!r} is not a whole number of frames.",
                         "Pass an integer frame count.")
    if frames < TOKEN_FRAMES or frames > MAX_FRAMES:
        raise InputError(
            f"Length {frames} frames is outside {TOKEN_FRAMES}..{MAX_FRAMES} frames "
            f"({MAX_FRAMES} frames = {MAX_FRAMES / 20:.1f} s at 20 fps, the longest the models were "
            "trained on).",
            f"Pass a length between {TOKEN_FRAMES} and {MAX_FRAMES} frames, or omit it to estimate one.")
    return int(frames) // TOKEN_FRAMES


class MoMaskPipeline:
    """The loaded models on one device, and the three jobs they do."""

    def __init__(self, models: Any, device: torch.device, dataset: str = "t2m", weights: Path | None = None,
                 clip: Path | None = None) -> None:
        self.models = models
        self.device = device
        self.dataset = dataset
        self.weights = weights
        self.clip = clip
        self.joints_num = sk.NUM_JOINTS[dataset]
        self.feature_dim = sk.FEATURE_DIM[dataset]
        self.fps = sk.FPS[dataset]
        self.mean = np.asarray(models.mean, dtype=np.float64)
        self.std = np.asarray(models.std, dtype=np.float64)
        self._residual_weights: tuple[torch.Tensor, torch.Tensor] | None = None
        # CUDA graphs for the fast flow, only when asked for (MOMASK_ACCEL) and on CUDA: unmeasured so far.
        self.accel = accel.from_environment(device)

    @classmethod
    def load(cls, weights: Path, dataset: str = "t2m", clip: Path | None = None,
             device: str = "auto", clip_precision: str = "official") -> MoMaskPipeline:
        """Load the official checkpoints under ``weights``.

        ``clip_precision="official"`` runs CLIP the way the official code does on each device: fp16
        on CUDA (the text conditions then match official GPU runs bit for bit), fp32 elsewhere (fp16
        matmuls are not implemented on CPU). ``"fp32"`` keeps CLIP in fp32 everywhere.
        """
        from backend.weights.checkpoints import load_models

        if dataset not in sk.FEATURE_DIM:
            raise InputError(f"Unknown dataset {dataset!r}.", "Use t2m (HumanML3D) or kit (KIT-ML).")
        run_device = resolve_device(device)
        weights = Path(weights).expanduser()
        clip = Path(clip).expanduser() if clip else None
        if clip_precision not in ("official", "fp32"):
            raise InputError(f"Unknown CLIP precision {clip_precision!r}.", "Use 'official' or 'fp32'.")
        models = load_models(weights, dataset, clip, run_device,
                             official_fp16_clip=clip_precision == "official" and run_device.type == "cuda")
        return cls(models, run_device, dataset, weights, models.clip_file)

    def info(self) -> dict[str, Any]:
        return {
            "device": str(self.device),
            "dataset": self.dataset,
            "weights": str(self.weights) if self.weights else None,
            "clip": str(self.clip) if self.clip else None,
            "torch": torch.__version__,
            "flow": SamplingSettings().flow,
            "flows": list(FLOWS),
            "precisions": list(PRECISIONS),
            "fps": self.fps,
            "max_frames": MAX_FRAMES,
            "joints": self.joints_num,
            "has_length_estimator": self.models.length_estimator is not None,
        }

    def prime(self) -> None:
        """One throwaway 1-step generation at the longest length, so that the first real one does not
        pay the one-time costs of a fresh process (OpenMP's thread pool, first-touch memory, kernel
        set-up: ≈ 0.15–0.2 s of the first click on a 2-core CPU). The service runs it in the
        background warm-up; the sampler's seeding is per call, so nothing that follows changes."""
        self.text_to_motion(["a person stands still"], [MAX_FRAMES], SamplingSettings(steps=1))

    # --- pieces -----------------------------------------------------------------------------------

    def _text_features(self, prompts: list[str], flow: str) -> torch.Tensor:
        """CLIP features (b, 512) float32 on the run device.

        The fast flow stops the causal text tower at the end token; the reference flow runs the full
        77 tokens like the official code (the same numbers up to float noise).
        """
        features = self.models.text_encoder.encode(prompts, truncate_at_eot=(flow == "fast"))
        return features.float().to(self.device)

    def _generator(self, seed: int) -> torch.Generator:
        generator = torch.Generator(device=self.device)
        generator.manual_seed(int(seed))
        return generator

    def _residual_tied_weights(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(E_0..E_4 token embeddings, classifiers of layers 1..5) of the residual transformer, built once."""
        if self._residual_weights is None:
            with torch.inference_mode():
                embed, proj = self.models.residual_transformer.tied_weights()
                self._residual_weights = (embed.detach(), proj.detach())
        return self._residual_weights

    def _estimate_tokens(self, cond: torch.Tensor, generator: torch.Generator) -> list[int]:
        """The length estimator's sampled token counts: ONE multinomial over (b, 50) (official draw)."""
        estimator = self.models.length_estimator
        probs = torch.softmax(estimator(cond), dim=-1)
        tokens = sampling.categorical_draw(probs, generator)
        # Class 0 (an empty motion) is possible in the official sampler; a motion needs one token.
        return [max(1, int(t)) for t in tokens.tolist()]

    def _decode(self, ids: torch.Tensor) -> np.ndarray:
        """Tokens (b, n, 6) → de-normalised features (b, 4n, D) float32 (float64 de-normalisation)."""
        normalised = self.models.vq.forward_decoder(ids).float().cpu().numpy()
        return (normalised * self.std + self.mean).astype(np.float32)

    def flow_for(self, settings: SamplingSettings) -> sampling.Flow:
        """The settings' flow, replayed as CUDA graphs when the accelerator is on (fast flow only)."""
        flow = settings.make_flow()
        if self.accel is not None and settings.flow == "fast":
            flow = self.accel.wrap(flow)
        return flow

    def _residual_tokens(self, flow: sampling.Flow, cond: torch.Tensor, base: torch.Tensor,
                         lengths: torch.Tensor, padding: torch.Tensor, settings: SamplingSettings,
                         generator: torch.Generator, reporter: sampling.StepReporter,
                         keep: torch.Tensor | None = None,
                         keep_tokens: torch.Tensor | None = None) -> torch.Tensor:
        """Quantizer layers 1..5 on top of the base tokens (b, n) → all six layers (b, n, 6)."""
        model = self.models.residual_transformer
        embeddings, classifiers = self._residual_tied_weights()
        logits = flow.residual_logits(model, cond, padding, settings.res_cond_scale, classifiers)
        # Official gen/edit call the residual sampler with temperature 1 and its default top-k 0.9
        # whatever --temperature/--topkr say (those only reach the base layer), so we do the same.
        return sampling.residual_generate(
            logits, embeddings, base, lengths, generator=generator, temperature=1.0,
            topk=sampling.RESIDUAL_TOPK, keep=keep, keep_tokens=keep_tokens, reporter=reporter,
            num_layers=model.num_quantizers - 1, pad_id=model.pad_id)

    def _masked_regeneration(self, flow: sampling.Flow, cond: torch.Tensor, residual_cond: torch.Tensor,
                             tokens: torch.Tensor, edit_mask: torch.Tensor, lengths: torch.Tensor,
                             settings: SamplingSettings, generator: torch.Generator,
                             reporter: sampling.StepReporter, keep: torch.Tensor | None) -> torch.Tensor:
        """Masked regeneration of one window (docs/sampling.md §6), shared by in-betweens and compose.

        ``tokens`` (b, n, 6) are the window's codes (n ≤ 49), ``edit_mask`` (b, n) the base tokens to
        regenerate by confidence-ordered unmasking (every other base token stays), ``keep`` (b, n) the
        positions whose residual tokens are forced to ``tokens`` on layers 1..5 (None: regenerate
        them everywhere, the official edit). Returns all six layers (b, n, 6), −1 = no code.
        """
        if tokens.shape[1] > MAX_TOKENS:
            raise AssertionError(f"a {tokens.shape[1]}-token window reached the transformers")
        masked = self.models.mask_transformer
        padding = sampling.padding_mask_for(lengths, tokens.shape[1])
        base_logits = flow.base_logits(masked, cond, padding, settings.cond_scale)
        base = sampling.masked_edit(
            base_logits, tokens[..., 0], edit_mask, lengths, settings.steps, generator=generator,
            temperature=settings.temperature, topk=settings.topk, gumbel=settings.gumbel,
            reporter=reporter, mask_id=masked.mask_id)
        return self._residual_tokens(flow, residual_cond, base, lengths, padding, settings, generator,
                                     reporter, keep=keep, keep_tokens=tokens)

    def text_conditions(self, prompts: list[str], settings: SamplingSettings) -> Conditions:
        """(masked, residual) text conditions for ``prompts``: one CLIP pass, two in the reference flow."""
        with torch.inference_mode():
            cond = self._text_features(prompts, settings.flow)
            residual = self._text_features(prompts, settings.flow) if settings.flow == "reference" else cond
        return cond, residual

    def generator(self, seed: int) -> torch.Generator:
        """A fresh generator on the run device seeded with ``seed`` (one per job, docs/sampling.md §7)."""
        return self._generator(seed)

    def regenerate(self, codes: np.ndarray, keep: np.ndarray, prompt: str,
                   settings: SamplingSettings | None = None, progress: Progress | None = None,
                   cancel: threading.Event | None = None) -> np.ndarray:
        """One masked regeneration as a job of its own: :meth:`regenerate_window` with the prompt's
        condition and a generator seeded with ``settings.seed``; progress counts base steps and
        residual layers (``job_units(steps) - 1``: nothing is decoded)."""
        settings = settings or SamplingSettings()
        settings.validate()
        prompts = check_prompts([prompt])
        reporter = sampling.StepReporter(progress, cancel, total=sampling.job_units(settings.steps) - 1)
        reporter.check()
        return self.regenerate_window(codes, keep, self.text_conditions(prompts, settings), settings,
                                      self._generator(settings.seed), reporter)

    def regenerate_window(self, codes: np.ndarray, keep: np.ndarray, conditions: Conditions,
                          settings: SamplingSettings, generator: torch.Generator,
                          reporter: sampling.StepReporter, flow: sampling.Flow | None = None) -> np.ndarray:
        """Regenerate the unkept tokens of one window ≤ 49 tokens; kept ones stay on all six layers.

        ``codes`` (n, 6) int (−1 where unknown: such positions must not be kept on the base layer),
        ``keep`` (n,) bool. Unkept base tokens are masked and filled by confidence-ordered steps
        conditioned on the kept ones (both sides: in-betweens, transitions, outpainting); residual
        layers 1..5 are then sampled for the regenerated positions only, the kept positions' codes
        forced on every layer before they enter the history. Draws come from ``generator`` in the
        official order (docs/sampling.md §7), so a job that calls this window after window with one
        generator is reproducible from its seed. Returns (n, 6) int64; kept rows bit-identical.
        """
        codes = np.asarray(codes)
        keep = np.asarray(keep, dtype=bool)
        if codes.ndim != 2 or codes.shape[1] != sampling.NUM_QUANTIZERS or keep.shape != (len(codes),):
            raise InputError(f"Codes {codes.shape} and keep mask {keep.shape} do not describe one window.",
                             "Pass codes (tokens, 6) and one keep flag per token.")
        if not 1 <= len(codes) <= MAX_TOKENS:
            raise InputError(f"A window of {len(codes)} tokens is outside 1..{MAX_TOKENS} tokens (the "
                             "longest the models were trained on).", "Split the motion into windows.")
        if (codes < -1).any() or (codes >= sampling.NUM_CODES).any():
            raise InputError("The codes hold values outside -1..511.", "Pass tokens of a MoMask take.")
        if (keep & (codes[:, 0] < 0)).any():
            raise InputError("A kept token has no base-layer code (-1).",
                             "Keep only known tokens; regenerate the unknown ones.")
        if keep.all():
            return codes.astype(np.int64)
        flow = flow or self.flow_for(settings)
        cond, residual_cond = conditions
        with torch.inference_mode():
            tokens = torch.from_numpy(codes.astype(np.int64))[None].to(self.device)
            edit = torch.from_numpy(~keep)[None].to(self.device)
            lengths = torch.tensor([len(codes)], dtype=torch.long, device=self.device)
            ids = self._masked_regeneration(flow, cond, residual_cond, tokens, edit, lengths, settings,
                                            generator, reporter, keep=~edit)
        out = ids[0].cpu().numpy().astype(np.int64)
        out[keep] = codes[keep]          # (already equal: the samplers never touch kept positions)
        return out

    def decode_tokens(self, codes: np.ndarray, circular: bool = False,
                      reporter: sampling.StepReporter | None = None) -> np.ndarray:
        """Tokens (n, 6) of any length → de-normalised features (4n, D) float32.

        ``circular``: the tokens are one cycle of a loop, so each chunk's context wraps around (the
        last frames are decoded seeing the first tokens after them). ``reporter``: one step per chunk.

        Decoded on a fixed grid of ``DECODE_CHUNK_TOKENS``-token chunks, each from its tokens plus
        ``DECODER_RECEPTIVE_TOKENS`` on both sides (clipped to the motion), keeping the chunk's own
        frames. A frame therefore depends only on the tokens of its chunk's window, always decoded with
        the same shape: changing some tokens leaves every frame bit-identical whose chunk window does
        not contain one of them (docs/compose.md, "Decoding"). Up to float rounding this equals one
        decode of the whole sequence (the margin covers the decoder's receptive field).
        """
        codes = np.asarray(codes, dtype=np.int64)
        n = len(codes)
        out = np.empty((n * TOKEN_FRAMES, self.feature_dim), dtype=np.float32)
        with torch.inference_mode():
            for start, stop, lo, hi in decode_chunks(n):
                if circular:
                    lo, hi = start - DECODER_RECEPTIVE_TOKENS, stop + DECODER_RECEPTIVE_TOKENS
                    window = codes[np.arange(lo, hi) % n]
                else:
                    window = codes[lo:hi]
                ids = torch.from_numpy(np.ascontiguousarray(window))[None].to(self.device)
                frames = self._decode(ids)[0]
                out[start * TOKEN_FRAMES: stop * TOKEN_FRAMES] = \
                    frames[(start - lo) * TOKEN_FRAMES: (stop - lo) * TOKEN_FRAMES]
                if reporter is not None:
                    reporter.step("decode")
        return out

    def estimate_tokens(self, cond: torch.Tensor, generator: torch.Generator) -> list[int]:
        """The length estimator's token counts for text conditions (b, 512): one draw (sampling.md §7)."""
        with torch.inference_mode():
            return self._estimate_tokens(cond, generator)

    def source_motion(self, source: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """A source (features (T, D) or joints (T, J, 3) at the model's fps) as (features float64,
        joints float32) of the same T frames, checked (shape, finite values, ≥ 2 tokens)."""
        return self._source_motion(source)

    def joints_from_features(self, features: np.ndarray) -> np.ndarray:
        """Joint positions (T, J, 3) float32 of de-normalised features (T, D) (docs/model.md §9)."""
        return recover_from_ric(np.asarray(features, dtype=np.float32), self.joints_num).astype(np.float32)

    # --- jobs -------------------------------------------------------------------------------------

    def text_to_motion(self, prompts: list[str], frames: list[int | None] | None,
                       settings: SamplingSettings | None = None, progress: Progress | None = None,
                       cancel: threading.Event | None = None) -> MotionBatch:
        """Generate one motion per prompt; ``frames[i]`` None = let the length estimator choose."""
        settings = settings or SamplingSettings()
        settings.validate()
        prompts = check_prompts(prompts)
        batch = len(prompts)
        if frames is None:
            frames = [None] * batch
        frames = list(frames)
        if len(frames) == 1 and batch > 1:
            frames = frames * batch
        if len(frames) != batch:
            raise InputError(f"{len(frames)} lengths were given for {batch} prompts.",
                             "Give one length for all prompts or one per prompt.")
        requested = [None if f is None else frames_to_tokens(f) for f in frames]
        estimate = any(t is None for t in requested)
        if estimate and self.models.length_estimator is None:
            raise InputError(f"No length estimator is available for {self.dataset}.",
                             "Give the length in frames (--frames).")

        reporter = sampling.StepReporter(progress, cancel, total=sampling.job_units(settings.steps))
        reporter.check()
        generator = self._generator(settings.seed)
        reference = settings.flow == "reference"
        flow = self.flow_for(settings)
        masked = self.models.mask_transformer
        with torch.inference_mode():
            # 1. Text condition: CLIP features (b, 512). The reference flow encodes again for the length
            #    estimator and the residual transformer, as the official scripts do (docs/model.md §6).
            cond = self._text_features(prompts, settings.flow)

            # 2. Lengths in tokens: the requested ones; where none was given, the length estimator's
            #    draw, which is the job's first use of the generator (docs/sampling.md §7).
            if estimate:
                length_cond = self._text_features(prompts, settings.flow) if reference else cond
                estimated = self._estimate_tokens(length_cond, generator)
                requested = [e if r is None else r for r, e in zip(requested, estimated, strict=True)]
            token_lens = [int(t) for t in requested]
            lengths = torch.tensor(token_lens, dtype=torch.long, device=self.device)
            seq_len = max(token_lens)
            padding = sampling.padding_mask_for(lengths, seq_len)

            # 3. Base tokens (quantizer layer 0): confidence-ordered unmasking (docs/sampling.md §2).
            base_logits = flow.base_logits(masked, cond, padding, settings.cond_scale)
            base = sampling.masked_generate(
                base_logits, lengths, seq_len, settings.steps, generator=generator,
                temperature=settings.temperature, topk=settings.topk, gumbel=settings.gumbel,
                reporter=reporter, mask_id=masked.mask_id, pad_id=masked.pad_id)

            # 4. Residual tokens (layers 1..5), one layer after another (docs/sampling.md §5).
            residual_cond = self._text_features(prompts, settings.flow) if reference else cond
            ids = self._residual_tokens(flow, residual_cond, base, lengths, padding, settings, generator,
                                        reporter)

            # 5. Decode: RVQ-VAE decoder at the batch's longest length, de-normalised (docs/model.md §2).
            features = self._decode(ids)
        reporter.step("decode")

        # 6. Joints: each motion cropped to its length, rows past it zeroed, then recovered alone.
        frame_lens = np.array(token_lens, dtype=np.int64) * TOKEN_FRAMES
        joints = np.zeros(features.shape[:2] + (self.joints_num, 3), dtype=np.float32)
        for i, length in enumerate(frame_lens):
            features[i, length:] = 0.0
            # Official order: crop to the motion's length, then recover that clip alone (the torch ops
            # inside round by buffer position, so a padded or batched call could move the last bit).
            joints[i, :length] = recover_from_ric(features[i, :length], self.joints_num)
        return MotionBatch(joints=joints, features=features, tokens=ids.cpu().numpy().astype(np.int64),
                           lengths=frame_lens, fps=self.fps)

    def _source_motion(self, source: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """A source motion as (features (T, D) float64, joints (T, J, 3) float32).

        Joint positions go through the official feature extraction, which yields T − 1 frames; the
        last feature row is repeated so that frame indices of the features and of the joints agree.
        """
        try:
            source = np.asarray(source)
            if not np.issubdtype(source.dtype, np.number):
                raise TypeError
        except (TypeError, ValueError):
            raise InputError("The source motion is not a numeric array.",
                             "Pass features (frames, 263) or joint positions (frames, 22, 3).") from None
        dim, joints_num = self.feature_dim, self.joints_num
        shape_fix = (f"Pass de-normalised features (frames, {dim}) or joint positions "
                     f"(frames, {joints_num}, 3).")
        is_features = source.ndim == 2 and source.shape[1] == dim
        is_joints = source.ndim == 3 and source.shape[1:] == (joints_num, 3)
        if not (is_features or is_joints):
            raise InputError(f"The source motion has shape {source.shape}, which is neither "
                             f"{self.dataset} features nor {self.dataset} joint positions.", shape_fix)
        if not np.isfinite(source).all():
            raise InputError("The source motion contains NaN or infinite values.",
                             "Fix or re-export the source animation (look for broken keys).")
        if len(source) < 2 * TOKEN_FRAMES:
            raise InputError(f"The source motion has only {len(source)} frames.",
                             f"Use a source of at least {2 * TOKEN_FRAMES} frames.")
        if is_features:
            features = source.astype(np.float64)
            return features, recover_from_ric(features.astype(np.float32), joints_num).astype(np.float32)
        features = features_from_joints(source, self.dataset)
        features = np.concatenate([features, features[-1:]], axis=0)
        return features, source.astype(np.float32)

    def _normalised_tensor(self, features: np.ndarray, pad_to: int | None = None) -> torch.Tensor:
        """(features − mean) / std in float64, optionally zero-padded in normalised space (official edit)."""
        normalised = (features - self.mean) / self.std
        if pad_to is not None and len(normalised) < pad_to:
            padding = np.zeros((pad_to - len(normalised), normalised.shape[1]))
            normalised = np.concatenate([normalised, padding])
        return torch.from_numpy(normalised).float()[None].to(self.device)

    def encode(self, source: np.ndarray) -> np.ndarray:
        """Source features (T, D) or joints (T, J, 3) → its tokens (T // 4, 6) int64.

        Encoded exactly as :meth:`inpaint` encodes its source (zero-padded to 196 frames in normalised
        space, like the official edit script), so these are the tokens inpainting keeps.
        """
        features, _ = self._source_motion(source)
        with torch.inference_mode():
            tokens = self.models.vq.encode(self._normalised_tensor(features, pad_to=MAX_FRAMES))
        return tokens[0, : len(features) // TOKEN_FRAMES].cpu().numpy().astype(np.int64)

    @staticmethod
    def widen_range(start: int, end: int, frames: int) -> tuple[int, int]:
        """[start, end) in frames → whole tokens [4·floor(start/4), 4·ceil(end/4)), within the model span.

        The model covers ``4·floor(frames/4)`` frames; the 1..3 frames past it (if any) are always kept.
        """
        for name, value in (("start", start), ("end", end)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
                raise InputError(f"The edit {name} {value!r} is not a frame number.",
                                 "Pass whole frame numbers.")
        span = frames // TOKEN_FRAMES * TOKEN_FRAMES
        if start < 0 or end > frames or start >= end:
            raise InputError(f"The edit range [{start}, {end}) is empty or not inside the source motion's "
                             f"{frames} frames.",
                             f"Pick 0 <= start < end <= {frames} (end is exclusive).")
        wide_start = start // TOKEN_FRAMES * TOKEN_FRAMES
        wide_end = min(-(-end // TOKEN_FRAMES) * TOKEN_FRAMES, span)
        if wide_start >= wide_end:
            raise InputError(f"The edit range [{start}, {end}) lies in the last {frames - span} frames, past "
                             f"the last whole token (frame {span}).", f"Start the range before frame {span}.")
        return wide_start, wide_end

    def inpaint(self, source: np.ndarray, start: int, end: int, prompt: str,
                settings: SamplingSettings | None = None, regen_residual_everywhere: bool = False,
                progress: Progress | None = None, cancel: threading.Event | None = None) -> MotionBatch:
        """Regenerate frames [start, end) of ``source`` from ``prompt``; keep everything else.

        The range is widened to whole tokens and reported in the result. Base tokens inside it are
        regenerated; outside it the source's tokens are kept on all six layers (the official code
        regenerates residual tokens everywhere — ``regen_residual_everywhere=True`` reproduces that).
        The returned joints equal the source joints outside the widened range; inside it, the new
        motion is placed so that both seams are continuous (see :func:`align_to_source`).
        """
        settings = settings or SamplingSettings()
        settings.validate()
        prompts = check_prompts([prompt])
        features, source_joints = self._source_motion(source)
        window = inpaint_window(start, end, len(features))
        if window is not None:
            return self._inpaint_in_window(window, features, source_joints, start, end, prompts, settings,
                                           regen_residual_everywhere, progress, cancel)
        return self._inpaint_motion(features, source_joints, start, end, prompts, settings,
                                    regen_residual_everywhere, progress, cancel)

    def _inpaint_motion(self, features: np.ndarray, source_joints: np.ndarray, start: int, end: int,
                        prompts: list[str], settings: SamplingSettings, regen_residual_everywhere: bool,
                        progress: Progress | None, cancel: threading.Event | None) -> MotionBatch:
        """Inpaint a source of at most 199 frames given as (features, joints) of the same frames."""
        frames = len(features)
        wide_start, wide_end = self.widen_range(start, end, frames)
        span_tokens = frames // TOKEN_FRAMES

        reporter = sampling.StepReporter(progress, cancel, total=sampling.job_units(settings.steps))
        reporter.check()
        reference = settings.flow == "reference"
        flow = self.flow_for(settings)
        with torch.inference_mode():
            # 1. Source tokens: the source encoded zero-padded to 196 frames, as edit_t2m does.
            source_tokens = self.models.vq.encode(self._normalised_tensor(features, pad_to=MAX_FRAMES))
            seq_len = source_tokens.shape[1]
            generator = self._generator(settings.seed)

            # 2. Text condition (the reference flow encodes again for the residual transformer).
            cond = self._text_features(prompts, settings.flow)
            residual_cond = self._text_features(prompts, settings.flow) if reference else cond

            # 3. Lengths and the edit mask: the source's whole tokens; the widened range is
            #    regenerated, and everything else is kept on every layer unless asked otherwise.
            lengths = torch.tensor([span_tokens], dtype=torch.long, device=self.device)
            positions = torch.arange(seq_len, device=self.device)[None]
            edit_mask = (positions >= wide_start // TOKEN_FRAMES) & (positions < wide_end // TOKEN_FRAMES)
            keep = None if regen_residual_everywhere else (~edit_mask) & (positions < span_tokens)

            # 4.–5. Base tokens by unmasking restricted to the edit mask, then residual tokens: the
            #       source's outside the range (``keep``), generated inside it (docs/sampling.md §6).
            ids = self._masked_regeneration(flow, cond, residual_cond, source_tokens, edit_mask, lengths,
                                            settings, generator, reporter, keep)

            # 6. Decode the source's span.
            generated = self._decode(ids)[0, : span_tokens * TOKEN_FRAMES]
        reporter.step("decode")

        # 7. Joints: the source's outside the range; inside it, the new motion placed on the seams.
        generated_joints = recover_from_ric(generated, self.joints_num).astype(np.float32)
        joints = source_joints.copy()
        joints[wide_start:wide_end] = align_to_source(generated_joints, source_joints, wide_start, wide_end,
                                                      self.dataset)
        out_features = features.astype(np.float32)
        out_features[wide_start:wide_end] = generated[wide_start:wide_end]
        tokens = ids[0, :span_tokens].cpu().numpy().astype(np.int64)
        return MotionBatch(joints=joints[None], features=out_features[None], tokens=tokens[None],
                           lengths=np.array([frames], dtype=np.int64), fps=self.fps,
                           start=wide_start, end=wide_end)

    def _inpaint_in_window(self, window: int, features: np.ndarray, source_joints: np.ndarray, start: int,
                           end: int, prompts: list[str], settings: SamplingSettings,
                           regen_residual_everywhere: bool,
                           progress: Progress | None, cancel: threading.Event | None) -> MotionBatch:
        """Inpaint a long source inside the 196-frame window that starts at frame ``window``.

        The models only ever saw clips of up to 196 frames, so a longer source is cut to a window
        around the range (token-aligned, so widening gives the same frames as on the whole motion);
        everything outside the window is the source itself. ``tokens`` then cover the window only.
        """
        stop = window + MAX_FRAMES
        part = self._inpaint_motion(features[window:stop], source_joints[window:stop], start - window,
                                    min(end, stop) - window, prompts, settings, regen_residual_everywhere,
                                    progress, cancel)
        joints = source_joints.copy()
        joints[window:stop] = part.joints[0]
        out_features = features.astype(np.float32)
        out_features[window:stop] = part.features[0]
        assert part.start is not None and part.end is not None
        return MotionBatch(joints=joints[None], features=out_features[None], tokens=part.tokens,
                           lengths=np.array([len(features)], dtype=np.int64), fps=self.fps,
                           start=part.start + window, end=part.end + window)


def decode_chunks(tokens: int, chunk: int = DECODE_CHUNK_TOKENS, margin: int = DECODER_RECEPTIVE_TOKENS
                  ) -> list[tuple[int, int, int, int]]:
    """The fixed decode grid of a ``tokens``-long sequence: (start, stop, lo, hi) per chunk, the chunk's
    own tokens [start, stop) and the tokens [lo, hi) it is decoded from."""
    return [(start, min(start + chunk, tokens), max(0, start - margin), min(tokens, start + chunk + margin))
            for start in range(0, tokens, chunk)]


def inpaint_window(start: int, end: int, frames: int) -> int | None:
    """First frame of the 196-frame window to inpaint [start, end) of a longer source, or None.

    Sources of up to 199 frames (the official example's length) are used whole. Longer ones get a
    window aligned to whole tokens and centred on the range, so the model sees context on both sides.
    """
    if frames <= MAX_FRAMES + TOKEN_FRAMES - 1:
        return None
    if not (0 <= start < end <= frames):
        return None     # widen_range reports the bad range
    wide_start = start // TOKEN_FRAMES * TOKEN_FRAMES
    wide_end = -(-end // TOKEN_FRAMES) * TOKEN_FRAMES
    if wide_end - wide_start > MAX_FRAMES - 2 * TOKEN_FRAMES:
        raise InputError(f"The edit range [{start}, {end}) is {end - start} frames long; one in-between can "
                         f"regenerate at most {MAX_FRAMES - 2 * TOKEN_FRAMES} frames "
                         f"({(MAX_FRAMES - 2 * TOKEN_FRAMES) / 20:.1f} s at 20 fps) with context around it.",
                         "Select a shorter range, or regenerate it in parts one after another.")
    centre = (wide_start + wide_end) // 2
    last_window = (frames - MAX_FRAMES) // TOKEN_FRAMES * TOKEN_FRAMES
    window = (centre - MAX_FRAMES // 2) // TOKEN_FRAMES * TOKEN_FRAMES
    return int(min(max(window, 0), last_window))


# --- placing generated frames in the source's world --------------------------------------------------

def heading(pose: np.ndarray, dataset: str = "t2m") -> float:
    """Yaw (radians, about +Y, 0 = facing +Z) of a pose (J, 3), from the hips and shoulders."""
    r_hip, l_hip, r_shoulder, l_shoulder = SKELETONS[dataset].face_joints
    across = (pose[r_hip] - pose[l_hip]) + (pose[r_shoulder] - pose[l_shoulder])
    forward_x, forward_z = across[2], -across[0]    # up × across (lies on the ground)
    return math.atan2(forward_x, forward_z)


def _turn(poses: np.ndarray, angle: np.ndarray | float, pivot: np.ndarray) -> np.ndarray:
    """Rotate poses (..., J, 3) about the vertical axis through ``pivot`` (..., 3) by ``angle``."""
    angle = np.asarray(angle, dtype=np.float64)[..., None]
    cos, sin = np.cos(angle), np.sin(angle)
    rel = poses - pivot[..., None, :]
    out = rel.copy()
    out[..., 0] = cos * rel[..., 0] + sin * rel[..., 2]
    out[..., 2] = -sin * rel[..., 0] + cos * rel[..., 2]
    return out + pivot[..., None, :]


def rigid_onto(poses: np.ndarray, frame: int, pose: np.ndarray, dataset: str = "t2m") -> np.ndarray:
    """``poses`` (L, J, 3) moved by one yaw about the vertical and one translation so that
    ``poses[frame]`` gets the heading and root position of ``pose`` (J, 3); float64."""
    poses = np.asarray(poses, dtype=np.float64)
    pose = np.asarray(pose, dtype=np.float64)
    angle = wrap_angle(heading(pose, dataset) - heading(poses[frame], dataset))
    moved = _turn(poses, angle, poses[frame, 0])
    return moved + (pose[0] - poses[frame, 0])


def align_to_source(generated: np.ndarray, source: np.ndarray, start: int, end: int,
                    dataset: str = "t2m") -> np.ndarray:
    """Frames [start, end) of ``generated`` (L, J, 3), placed in the source's world (float32).

    The generated motion lives in the model's canonical frame (frame 0 at the origin facing +Z).
    * Start seam (start > 0): one rigid yaw + translation moves the generated pose at start − 1 onto
      the source's pose at start − 1 (the last kept frame), so the new frames continue from it as
      smoothly as the model's own motion does.
    * End seam (end < len(source)): the root offset and heading difference that remain at the
      reference frame (end, or end − 1 when the model stops at end) are spread linearly over the
      range, reaching the full amount at the reference frame, so the motion lands on the source.
    * A range starting at frame 0 (prefix generation) is placed rigidly by the end seam alone; a
      range reaching the end (suffix) by the start seam alone; the whole motion by frame 0.
    """
    poses = generated.astype(np.float64)
    target = source.astype(np.float64)
    total = len(source)
    has_end_seam = end < total
    reference = end if end < len(poses) else end - 1

    def rigid(frame: int) -> np.ndarray:
        return rigid_onto(poses, frame, target[frame], dataset)

    if start > 0:
        poses = rigid(start - 1)
    elif has_end_seam:
        poses = rigid(reference)
    else:
        poses = rigid(0)

    if start > 0 and has_end_seam:
        angle = wrap_angle(heading(target[reference], dataset) - heading(poses[reference], dataset))
        offset = target[reference, 0] - poses[reference, 0]
        idx = np.arange(start, end)
        weight = (idx - start + 1) / (reference - start + 1)
        section = _turn(poses[start:end], weight * angle, poses[start:end, 0])
        poses[start:end] = section + weight[:, None, None] * offset
    return poses[start:end].astype(np.float32)
