"""Text → joints at full size (random weights): seconds per 196-frame sample, and fast-vs-reference agreement.

    .venv/bin/python bench/bench_model.py [--device cpu|cuda] [--batch 1 32] [--repeats 5] [--threads 2]

What is timed is ``MoMaskPipeline.text_to_motion`` end to end (CLIP, length given, 10 masked steps,
5 residual layers, RVQ decoder, joint recovery), warm, with the CLIP prompt cache cleared before each
run so that every run pays for its text encoding. Agreement runs the reference flow (the official
algorithm: two guidance passes, CLIP per pass at 77 tokens, fp32) and a fast flow with the same
seed, and compares their tokens and, where every token of a sample agrees, their joints.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from common import Timing, full_weights, measure, prompts  # noqa: E402

from backend.inference.pipeline import MoMaskPipeline, SamplingSettings  # noqa: E402

FRAMES = 196
STEPS = 10


def load_pipeline(weights: Path, device: str = "cpu") -> MoMaskPipeline:
    return MoMaskPipeline.load(weights, device=device)


def settings(flow: str = "fast", precision: str = "fp32", seed: int = 0) -> SamplingSettings:
    return SamplingSettings(steps=STEPS, flow=flow, precision=precision, seed=seed)


def time_text_to_motion(pipe: MoMaskPipeline, batch: int, flow: str = "fast", precision: str = "fp32",
                        repeats: int = 5, warmup: int = 1, accel: object = None) -> Timing:
    """Seconds per sample (median over ``repeats`` warm runs of one batch of ``batch`` prompts).

    ``accel``: a ``backend.inference.cuda_graphs.StaticPasses`` to use for this measurement (GPU only),
    else none.
    """
    batch_prompts = prompts(batch)
    run_settings = settings(flow, precision)
    saved, pipe.accel = pipe.accel, accel

    def run() -> None:
        pipe.text_to_motion(batch_prompts, [FRAMES] * batch, run_settings)

    try:
        return measure(run, repeats, warmup=warmup + (accel is not None), per=batch,
                       before=pipe.models.text_encoder.clear_cache)
    finally:
        pipe.accel = saved


def time_flows(pipe: MoMaskPipeline, batch: int, variants: list[tuple[str, str]], repeats: int = 5,
               warmup: int = 1) -> dict[tuple[str, str], Timing]:
    """Like :func:`time_text_to_motion` for several (flow, precision) variants, their runs interleaved
    (A B A B ...), so that a noisy minute on a shared machine hits every variant alike."""
    batch_prompts = prompts(batch)
    timings = {variant: Timing(per=batch) for variant in variants}
    for round_ in range(warmup + repeats):
        for variant in variants:
            pipe.models.text_encoder.clear_cache()
            run_settings = settings(*variant)
            start = time.perf_counter()
            pipe.text_to_motion(batch_prompts, [FRAMES] * batch, run_settings)
            if round_ >= warmup:
                timings[variant].runs.append(time.perf_counter() - start)
    return timings


@dataclass
class Agreement:
    """How close a fast flow's output is to the reference flow's, with the same weights and seeds."""

    samples: int
    tokens_equal: float          # fraction of valid tokens (all 6 layers) that are identical
    base_equal: float            # same, base layer only
    samples_identical: int       # samples whose every token agrees
    max_mm: float                # max joint distance (mm) over the samples whose every token agrees
    mean_mm: float               # mean joint distance (mm) over those samples

    def line(self) -> str:
        mm = (f"joints within {self.max_mm:.3g} mm (mean {self.mean_mm:.2g} mm) on the "
              f"{self.samples_identical}/{self.samples} samples whose tokens all agree"
              if self.samples_identical else "no sample has all its tokens equal")
        return (f"{100 * self.tokens_equal:.2f} % tokens equal ({100 * self.base_equal:.2f} % on the base "
                f"layer) over {self.samples} samples; {mm}")


def agreement(pipe: MoMaskPipeline, prompt_list: list[str], precision: str = "fp32", seeds: int = 1,
              reference_cache: dict | None = None, accel: object = None) -> Agreement:
    """Fast flow at ``precision`` vs the reference flow, one 196-frame sample per (prompt, seed).

    ``reference_cache`` (optional) keeps the reference results between calls for other precisions;
    ``accel`` runs the fast flow with that ``StaticPasses`` (GPU).
    """
    cache = {} if reference_cache is None else reference_cache
    saved = pipe.accel
    equal = total = base_equal = base_total = identical = 0
    distances: list[float] = []
    for prompt in prompt_list:
        for seed in range(seeds):
            key = (prompt, seed)
            if key not in cache:
                cache[key] = pipe.text_to_motion([prompt], [FRAMES], settings("reference", "fp32", seed))
            ref = cache[key]
            pipe.models.text_encoder.clear_cache()
            pipe.accel = accel
            try:
                fast = pipe.text_to_motion([prompt], [FRAMES], settings("fast", precision, seed))
            finally:
                pipe.accel = saved
            valid = ref.tokens >= 0
            same = (ref.tokens == fast.tokens) & valid
            equal += int(same.sum())
            total += int(valid.sum())
            base_equal += int(same[..., 0].sum())
            base_total += int(valid[..., 0].sum())
            if int(same.sum()) == int(valid.sum()):
                identical += 1
                length = int(ref.lengths[0])
                gap = np.linalg.norm(ref.joints[0, :length] - fast.joints[0, :length], axis=-1)
                distances.append(float(gap.max()) * 1000.0)
    return Agreement(samples=len(prompt_list) * seeds, tokens_equal=equal / max(total, 1),
                     base_equal=base_equal / max(base_total, 1), samples_identical=identical,
                     max_mm=max(distances) if distances else float("nan"),
                     mean_mm=float(np.mean(distances)) if distances else float("nan"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch", type=int, nargs="+", default=[1])
    parser.add_argument("--flows", nargs="+", default=["fast", "reference"],
                        help="fast, reference, fast-bf16, fast-fp16")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--agreement", type=int, default=0, help="also compare N prompts with the reference")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    pipe = load_pipeline(full_weights(), args.device)
    print(f"device {pipe.device}, {torch.get_num_threads()} threads, torch {torch.__version__}")
    for batch in args.batch:
        for name in args.flows:
            flow, _, precision = name.partition("-")
            timing = time_text_to_motion(pipe, batch, flow, precision or "fp32",
                                         repeats=args.repeats if batch == 1 else max(1, args.repeats // 3))
            print(f"batch {batch:3d} {name:<10} {timing.median:.3f} s/sample ({timing.spread()})", flush=True)
    if args.agreement:
        cache: dict = {}
        for precision in ("fp32", "bf16"):
            result = agreement(pipe, prompts(args.agreement), precision, reference_cache=cache)
            print(f"fast {precision} vs reference: {result.line()}", flush=True)


if __name__ == "__main__":
    main()
