"""``python -m backend <command>``: the command lines other tools drive (issue 3).

    generate           text → motion, written to an .npz
    inpaint            regenerate a frame range of a source motion, written to an .npz
    compose            a long take from prompt segments (loop, continuation, lead-in, regenerate one)
    make-test-weights  random checkpoints in the official layout (tests, benchmarks)
    serve              the persistent NDJSON service the Blender add-on talks to
    doctor             check the environment, the weights and the device

Output ``.npz`` keys: ``joints`` float32 (B, T, J, 3), ``features`` float32 (B, T, D), ``tokens``
int64 (B, T/4, 6), ``lengths`` int64 (B,), ``fps``; inpainting adds ``start`` and ``end`` (the range
widened to whole tokens); ``compose`` writes one take (B = 1) with ``joints`` at the take's ``fps``,
``features`` and ``tokens`` on the model's timeline (``model_fps``), and the segments as
``segment_prompt``, ``segment_seed``, ``segment_start``, ``segment_end`` (take frames, end exclusive),
plus ``loop_offset`` for a loop. The file is written atomically (a temporary file in the same folder, then
renamed), and nothing is written when the command fails.

Failures print ONE line on stderr, ``error: <problem> Fix: <fix>``, and exit with:

    2  bad input (arguments, prompt, length, source motion, range)
    3  bad weights (missing, partial, corrupt, unsafe or inconsistent checkpoints, CLIP file)
    1  any other failure (including an internal error)
    130 cancelled (Ctrl-C)
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any, NoReturn

from backend.portable.errors import CancelledError, CheckpointError, InputError, MoMaskError

EXIT_OK, EXIT_FAILURE, EXIT_BAD_INPUT, EXIT_BAD_WEIGHTS, EXIT_CANCELLED = 0, 1, 2, 3, 130


class _Parser(argparse.ArgumentParser):
    """argparse that reports mistakes as an :class:`InputError` (one line, exit 2) instead of usage."""

    def error(self, message: str) -> NoReturn:
        raise InputError(f"{self.prog}: {message}.", f"Run `{self.prog} --help` for the accepted arguments.")


def _sampling_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--steps", type=int, default=10, help="masked-decoding steps (default 10)")
    parser.add_argument("--cond-scale", type=float, default=4.0, help="guidance scale, base layer (4)")
    parser.add_argument("--res-cond-scale", type=float, default=None,
                        help="guidance scale, residual layers (as the official scripts: 5 for generate, "
                             "2 for inpaint)")
    parser.add_argument("--temperature", type=float, default=1.0, help="sampling temperature (1)")
    parser.add_argument("--topk", type=float, default=0.9, help="top-k filter ratio (0.9 keeps the top 10%%)")
    parser.add_argument("--flow", choices=("fast", "reference"), default="fast",
                        help="fast (batched guidance) or reference (the official flow)")
    parser.add_argument("--precision", choices=("fp32", "bf16", "fp16"), default="fp32",
                        help="autocast precision of the fast flow (default fp32)")
    parser.add_argument("--device", default="auto", help="auto|cpu|cuda|mps (auto: CUDA > MPS > CPU)")


def _model_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--weights", type=Path, required=True, help="weights root (official layout)")
    parser.add_argument("--dataset", choices=("t2m", "kit"), default="t2m")
    parser.add_argument("--clip", type=Path, default=None,
                        help="CLIP ViT-B/32 file (default: <weights>/clip, then the clip package's cache)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m backend", description="MoMask inference backend.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    gen = commands.add_parser("generate", help="text → motion")
    _model_arguments(gen)
    gen.add_argument("--prompt", action="append", required=True, help="text prompt (repeat for a batch)")
    gen.add_argument("--frames", type=int, action="append", default=None,
                     help="length in frames, 4..196, rounded down to a multiple of 4; once for all prompts "
                          "or once per prompt (default: estimated)")
    _sampling_arguments(gen)
    gen.add_argument("--out", type=Path, required=True, help="output .npz")

    inp = commands.add_parser("inpaint", help="regenerate frames [start, end) of a source motion")
    _model_arguments(inp)
    inp.add_argument("--source", type=Path, required=True,
                     help=".npy: de-normalised features (T, 263) or joint positions (T, 22, 3)")
    inp.add_argument("--prompt", required=True)
    inp.add_argument("--start", type=int, required=True, help="first frame to regenerate")
    inp.add_argument("--end", type=int, required=True, help="frame after the last one to regenerate")
    inp.add_argument("--regen-residual-everywhere", action="store_true",
                     help="official behaviour: regenerate residual tokens outside the range too")
    _sampling_arguments(inp)
    inp.add_argument("--out", type=Path, required=True, help="output .npz")

    com = commands.add_parser("compose", help="a long take from prompt segments (docs/compose.md)")
    _model_arguments(com)
    com.add_argument("--segment", nargs=2, action="append", metavar=("PROMPT", "SECONDS"), default=None,
                     help="one segment, in order (repeat); SECONDS may be 'auto' (the length estimator)")
    com.add_argument("--timeline", type=Path, default=None,
                     help='a JSON file: [{"prompt": ..., "seconds": ..., "seed": ...}, ...] or '
                          '{"segments": [...], "transition": ..., "loop": ..., "fps": ...}')
    com.add_argument("--prompt", default=None, help="a single segment's prompt (with --seconds)")
    com.add_argument("--seconds", type=float, default=None, help="the single segment's seconds")
    com.add_argument("--transition", type=float, default=None,
                     help="seconds of each inpainted transition (default 0.4 = 2 tokens)")
    com.add_argument("--loop", action="store_true", help="the end flows into the start (a loop)")
    com.add_argument("--fps", type=float, default=None, help="the take's frame rate (default 20)")
    com.add_argument("--continue-from", type=Path, default=None,
                     help=".npy source (features (T, 263) or joints (T, 22, 3) at 20 fps) to continue")
    com.add_argument("--direction", choices=("after", "before"), default="after",
                     help="with --continue-from: after its end (continue) or before its start (lead-in)")
    com.add_argument("--regenerate", type=Path, default=None,
                     help="an .npz written by compose: regenerate its segment --index (new --prompt / "
                          "--segment-seed)")
    com.add_argument("--index", type=int, default=None, help="with --regenerate: the segment (from 0)")
    com.add_argument("--segment-seed", type=int, default=None, help="with --regenerate: its new seed")
    _sampling_arguments(com)
    com.add_argument("--out", type=Path, required=True, help="output .npz")

    mtw = commands.add_parser("make-test-weights", help="random checkpoints in the official layout")
    mtw.add_argument("dir", type=Path)
    mtw.add_argument("--size", choices=("tiny", "full"), default="tiny")
    mtw.add_argument("--seed", type=int, default=0)

    srv = commands.add_parser("serve", help="persistent NDJSON service on stdin/stdout")
    _model_arguments(srv)
    srv.add_argument("--device", default="auto")
    srv.add_argument("--log", type=Path, default=None, help="log file")

    doc = commands.add_parser("doctor", help="check the environment, weights and device")
    doc.add_argument("--weights", type=Path, default=None)
    doc.add_argument("--clip", type=Path, default=None)
    doc.add_argument("--device", default="auto")
    doc.add_argument("--dataset", choices=("t2m", "kit"), default="t2m")
    doc.add_argument("--json", action="store_true", help="print the report as JSON")
    return parser


# --- helpers ---------------------------------------------------------------------------------------


def _settings(args: argparse.Namespace) -> Any:
    from backend.inference.pipeline import INPAINT_RES_COND_SCALE, SamplingSettings

    res_cond_scale = args.res_cond_scale
    if res_cond_scale is None:
        inpaint = args.command == "inpaint"
        res_cond_scale = INPAINT_RES_COND_SCALE if inpaint else SamplingSettings.res_cond_scale
    return SamplingSettings(steps=args.steps, cond_scale=args.cond_scale, res_cond_scale=res_cond_scale,
                            temperature=args.temperature, topk=args.topk, seed=args.seed, flow=args.flow,
                            precision=args.precision)


def _check_out(out: Path) -> Path:
    """Fail before any work if the result could not be written."""
    out = out.expanduser()
    folder = out.parent if str(out.parent) else Path(".")
    if out.is_dir():
        raise InputError(f"--out {out} is a folder.", "Give a file name, e.g. --out result.npz.")
    if not folder.is_dir():
        raise InputError(f"The folder of --out ({folder}) does not exist.",
                         "Create it or choose another path.")
    if not os.access(folder, os.W_OK):
        raise InputError(f"The folder of --out ({folder}) is not writable.", "Choose a writable folder.")
    return out


def write_npz_atomically(out: Path, arrays: dict[str, Any]) -> None:
    """np.savez into a temporary file next to ``out``, then rename it over ``out`` (all or nothing)."""
    import numpy as np

    fd, temp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            np.savez(handle, **arrays)
        os.replace(temp, out)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def _batch_arrays(batch: Any) -> dict[str, Any]:
    import numpy as np

    arrays = {
        "joints": np.asarray(batch.joints, dtype=np.float32),
        "features": np.asarray(batch.features, dtype=np.float32),
        "tokens": np.asarray(batch.tokens, dtype=np.int64),
        "lengths": np.asarray(batch.lengths, dtype=np.int64),
        "fps": np.asarray(batch.fps, dtype=np.float32),
    }
    if batch.start is not None:
        arrays["start"] = np.asarray(batch.start, dtype=np.int64)
        arrays["end"] = np.asarray(batch.end, dtype=np.int64)
    return arrays


def _load_source(path: Path) -> Any:
    import numpy as np

    if not path.is_file():
        raise InputError(f"The source motion {path} does not exist.",
                         "Pass an existing .npy file to --source.")
    try:
        return np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise InputError(f"{path} is not a readable .npy array ({exc}).",
                         "Save the source with numpy.save as a plain float array.") from None


def _load_pipeline(args: argparse.Namespace) -> Any:
    from backend.inference.pipeline import MoMaskPipeline

    return MoMaskPipeline.load(args.weights, dataset=args.dataset, clip=args.clip, device=args.device)


# --- commands --------------------------------------------------------------------------------------


def cmd_generate(args: argparse.Namespace) -> int:
    from backend.inference.pipeline import check_prompts, frames_to_tokens

    out = _check_out(args.out)
    settings = _settings(args)
    settings.validate()
    prompts = check_prompts(args.prompt)
    frames = args.frames
    if frames is not None:
        if len(frames) not in (1, len(prompts)):
            raise InputError(f"{len(frames)} --frames values were given for {len(prompts)} prompts.",
                             "Give --frames once for all prompts or once per prompt.")
        for f in frames:
            frames_to_tokens(f)      # refuse bad lengths before loading the models
    pipeline = _load_pipeline(args)
    batch = pipeline.text_to_motion(prompts, frames, settings)
    write_npz_atomically(out, _batch_arrays(batch))
    print(f"wrote {out}: {len(prompts)} motion(s), frames {batch.lengths.tolist()}, seed {args.seed}")
    return EXIT_OK


def cmd_inpaint(args: argparse.Namespace) -> int:
    from backend.inference.pipeline import check_prompts

    out = _check_out(args.out)
    settings = _settings(args)
    settings.validate()
    check_prompts([args.prompt])
    source = _load_source(args.source)
    pipeline = _load_pipeline(args)
    batch = pipeline.inpaint(source, args.start, args.end, args.prompt, settings,
                             regen_residual_everywhere=args.regen_residual_everywhere)
    write_npz_atomically(out, _batch_arrays(batch))
    print(f"wrote {out}: frames [{batch.start}, {batch.end}) regenerated of {int(batch.lengths[0])}, "
          f"seed {args.seed}")
    return EXIT_OK


def _timeline_segments(args: argparse.Namespace) -> tuple[list[Any], dict[str, Any]]:
    """The segments (and the file's settings) from --segment, --timeline or --prompt/--seconds."""
    import json
    import math

    from backend.inference.compose import SegmentSpec

    given = [args.segment is not None, args.timeline is not None, args.prompt is not None]
    if sum(given) != 1 and args.regenerate is None:
        raise InputError("Give the timeline once: --segment PROMPT SECONDS (repeated), --timeline FILE.json "
                         "or --prompt with --seconds.", "Use one of the three.")
    settings: dict[str, Any] = {}
    if args.timeline is not None:
        try:
            data = json.loads(args.timeline.read_text())
        except (OSError, ValueError) as exc:
            raise InputError(f"--timeline {args.timeline} is not a readable JSON file ({exc}).",
                             'Write [{"prompt": "a person walks", "seconds": 4}, ...].') from None
        if isinstance(data, dict):
            settings = {k: data[k] for k in ("transition", "loop", "fps") if data.get(k) is not None}
            data = data.get("segments")
        if not isinstance(data, list) or not all(isinstance(item, dict) for item in data):
            raise InputError(f"--timeline {args.timeline} holds no list of segments.",
                             'Write [{"prompt": "a person walks", "seconds": 4}, ...].')
        items = [(item.get("prompt"), item.get("seconds"), item.get("seed")) for item in data]
    elif args.segment is not None:
        items = []
        for prompt, seconds in args.segment:
            if seconds.strip().lower() == "auto":
                items.append((prompt, None, None))
                continue
            try:
                items.append((prompt, float(seconds), None))
            except ValueError:
                raise InputError(f"--segment {prompt!r} {seconds!r}: the seconds are not a number.",
                                 "Give seconds like 4 or 2.5, or 'auto'.") from None
    elif args.prompt is not None:
        items = [(args.prompt, args.seconds, None)]
    else:
        items = []
    segments = []
    for k, (prompt, seconds, seed) in enumerate(items):
        if not isinstance(prompt, str) or not prompt.strip():
            raise InputError(f"Segment {k + 1}'s prompt is empty.", "Describe the segment's motion.")
        if seconds is not None and (isinstance(seconds, bool) or not isinstance(seconds, (int, float))
                                    or not math.isfinite(seconds) or seconds <= 0):
            raise InputError(f"Segment {k + 1} lasts {seconds!r} s.",
                             "Give every segment a positive duration.")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise InputError(f"Segment {k + 1}'s seed {seed!r} is not a whole number.",
                             "Use an integer seed.")
        segments.append(SegmentSpec(prompt.strip(), None if seconds is None else float(seconds), seed))
    return segments, settings


def _previous_take(path: Path, index: int | None) -> tuple[list[Any], dict[str, Any], Any]:
    """Segments, settings and codes of an .npz written by compose, for --regenerate."""
    import numpy as np

    from backend.inference.compose import SegmentSpec

    if not path.is_file():
        raise InputError(f"The take {path} does not exist.", "Pass an .npz written by `compose`.")
    try:
        with np.load(path, allow_pickle=False) as data:
            fields = {name: data[name] for name in data.files}
    except (ValueError, OSError, EOFError) as exc:
        raise InputError(f"{path} is not a readable .npz ({exc}).",
                         "Pass an .npz written by `compose`.") from None
    needed = {"segment_prompt", "segment_seed", "segment_start", "segment_end", "tokens", "fps"}
    if not needed <= set(fields):
        raise InputError(f"{path} holds no stored segments (it was not written by `compose`).",
                         "Regenerate a segment of a take made by `python -m backend compose`.")
    count = len(fields["segment_prompt"])
    if index is None or not 0 <= index < count:
        raise InputError(f"--index {index} names no segment: the take has {count} (0..{count - 1}).",
                         "Pick a segment of the take with --index.")
    fps = float(fields["fps"])
    segments = [SegmentSpec(str(p), float(e - s) / fps, int(seed)) for p, seed, s, e in zip(
        fields["segment_prompt"], fields["segment_seed"], fields["segment_start"], fields["segment_end"],
        strict=True)]
    settings = {"fps": fps, "loop": "loop_offset" in fields,
                "transition": float(fields["transition"]) if "transition" in fields else None}
    return segments, settings, fields["tokens"][0]


def cmd_compose(args: argparse.Namespace) -> int:
    import dataclasses

    import numpy as np

    from backend.inference.compose import compose, plan_timeline
    from backend.motion.skeleton import FPS, MAX_MOTION_FRAMES, UNIT_LENGTH

    out = _check_out(args.out)
    settings = _settings(args)
    settings.validate()
    previous_codes = None
    if args.regenerate is not None:
        segments, file_settings, previous_codes = _previous_take(args.regenerate, args.index)
        old = segments[args.index]
        segments[args.index] = dataclasses.replace(
            old, prompt=(args.prompt or old.prompt).strip() or old.prompt,
            seed=args.segment_seed if args.segment_seed is not None else old.seed)
    else:
        segments, file_settings = _timeline_segments(args)
    transition = args.transition if args.transition is not None else file_settings.get("transition")
    loop = args.loop or bool(file_settings.get("loop", False))
    fps = args.fps if args.fps is not None else file_settings.get("fps")
    source = None
    if args.continue_from is not None:
        source = _load_source(args.continue_from)
    # The timeline's checks (boundaries, transitions, codes) before the models load.
    model_fps = FPS[args.dataset]
    longest = MAX_MOTION_FRAMES // UNIT_LENGTH
    plan = plan_timeline(segments, [None if s.seconds is not None else longest for s in segments], 0,
                         transition, loop, model_fps if fps is None else fps, model_fps,
                         args.direction if source is not None else None)
    if previous_codes is not None and previous_codes.shape != (plan.tokens, 6):
        raise InputError(f"{args.regenerate} holds {len(previous_codes)} tokens but its segments make "
                         f"{plan.tokens}.", "Regenerate from an unmodified .npz written by `compose`.")
    pipeline = _load_pipeline(args)
    take = compose(pipeline, segments, settings, transition=transition, loop=loop, fps=fps, source=source,
                   direction=args.direction, previous_codes=previous_codes,
                   regenerate_index=args.index if previous_codes is not None else None)
    arrays = {
        "joints": take.joints[None].astype(np.float32), "features": take.features[None].astype(np.float32),
        "tokens": take.codes[None].astype(np.int64), "lengths": np.array([take.frames], dtype=np.int64),
        "fps": np.asarray(take.fps, dtype=np.float64),
        "model_fps": np.asarray(pipeline.fps, dtype=np.float64),
        "segment_prompt": np.array([s["prompt"] for s in take.segments]),
        "segment_seed": np.array([s["seed"] for s in take.segments], dtype=np.int64),
        "segment_start": np.array([s["start"] for s in take.segments], dtype=np.int64),
        "segment_end": np.array([s["end"] for s in take.segments], dtype=np.int64),
    }
    if transition is not None:
        arrays["transition"] = np.asarray(transition, dtype=np.float64)
    if take.loop_offset is not None:
        arrays["loop_offset"] = take.loop_offset.astype(np.float32)
    write_npz_atomically(out, arrays)
    print(f"wrote {out}: {take.frames} frames at {take.fps:g} fps, {len(take.segments)} segment(s), "
          f"{take.windows} window(s), seed {args.seed}")
    return EXIT_OK


def cmd_make_test_weights(args: argparse.Namespace) -> int:
    from backend.weights.random_weights import make_test_weights

    root = args.dir.expanduser()
    make_test_weights(root, size=args.size, seed=args.seed)
    print(f"wrote {args.size} random test weights to {root}")
    return EXIT_OK


def cmd_serve(args: argparse.Namespace) -> int:
    from backend.service import lifetime  # lazily: the other commands need none of the service

    return int(lifetime.main(args) or 0)


def cmd_doctor(args: argparse.Namespace) -> int:
    from backend import doctor

    return int(doctor.main(args) or 0)


COMMANDS = {
    "generate": cmd_generate,
    "inpaint": cmd_inpaint,
    "compose": cmd_compose,
    "make-test-weights": cmd_make_test_weights,
    "serve": cmd_serve,
    "doctor": cmd_doctor,
}


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    print(f"warning: {message}", file=sys.stderr)


def exit_code(error: MoMaskError) -> int:
    if isinstance(error, InputError):
        return EXIT_BAD_INPUT
    if isinstance(error, CheckpointError):
        return EXIT_BAD_WEIGHTS
    if isinstance(error, CancelledError):
        return EXIT_CANCELLED
    return EXIT_FAILURE


def main(argv: list[str] | None = None) -> int:
    warnings.showwarning = _show_warning
    try:
        args = build_parser().parse_args(argv)
        return COMMANDS[args.command](args)
    except MoMaskError as error:
        print(f"error: {error}", file=sys.stderr)
        return exit_code(error)
    except KeyboardInterrupt:
        print("error: Cancelled.", file=sys.stderr)
        return EXIT_CANCELLED
    except Exception as error:  # one line for the user; the traceback with MOMASK_DEBUG=1
        if os.environ.get("MOMASK_DEBUG"):
            raise
        print(f"error: Internal error: {type(error).__name__}: {error} "
              f"Fix: Re-run with MOMASK_DEBUG=1 for the traceback and report it.", file=sys.stderr)
        return EXIT_FAILURE
