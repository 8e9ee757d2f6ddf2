"""Composed takes on tiny random weights: timelines, long prompts, regeneration, loops, continuation,
exact durations, progress and cancel, bad input (docs/compose.md)."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from backend.inference import compose as c
from backend.inference.pipeline import (
    DECODE_CHUNK_TOKENS,
    DECODER_RECEPTIVE_TOKENS,
    MAX_TOKENS,
    MoMaskPipeline,
    SamplingSettings,
)
from backend.portable.errors import CancelledError, InputError
from backend.retarget.metrics import loop_closure, seam_jerk

FAST = SamplingSettings(steps=2, seed=4)


@pytest.fixture(scope="module")
def pipeline(tiny_weights) -> MoMaskPipeline:
    return MoMaskPipeline.load(tiny_weights, device="cpu")


def segments(*pairs) -> list[c.SegmentSpec]:
    return [c.SegmentSpec(prompt, seconds) for prompt, seconds in pairs]


def test_a_timeline_keeps_the_users_boundaries_and_no_window_exceeds_49_tokens(pipeline, windows) -> None:
    timeline = segments(("a person walks to the door", 4.0), ("the person knocks", 2.5),
                        ("a person waits", None))
    take = c.compose(pipeline, timeline, FAST, fps=24)
    assert windows and max(windows) <= MAX_TOKENS
    bounds = [s["start"] for s in take.segments] + [take.segments[-1]["end"]]
    assert bounds[:3] == [0, 96, 156]                                  # 4 s and 2.5 s at 24 fps
    assert all(a["end"] == b["start"] for a, b in zip(take.segments, take.segments[1:], strict=False))
    assert take.frames == bounds[-1] and take.joints.shape == (take.frames, 22, 3)
    assert take.codes.shape[1] == 6 and (take.codes[:, 0] >= 0).all()
    assert np.isfinite(take.joints).all()
    # Same seeds, same take; the estimated segment's length is part of it.
    again = c.compose(pipeline, timeline, FAST, fps=24)
    np.testing.assert_array_equal(again.joints, take.joints)
    np.testing.assert_array_equal(again.codes, take.codes)


@pytest.mark.parametrize("fps, expected", [(24, 60), (25, 63), (30, 75), (60, 150), (20, 50)])
def test_exact_frame_counts(pipeline, fps, expected) -> None:
    take = c.compose(pipeline, segments(("a person jumps", 2.5)), SamplingSettings(steps=1), fps=fps)
    assert take.frames == expected and take.segments[0]["end"] == expected
    # The frames past 2.4 s are generated motion, not a held last frame.
    assert np.abs(take.joints[-1] - take.joints[-2]).max() > 0


def test_a_60_second_six_segment_timeline(pipeline, windows) -> None:
    timeline = [c.SegmentSpec(f"motion number {i}", 10.0) for i in range(6)]
    take = c.compose(pipeline, timeline, SamplingSettings(steps=1, seed=2))
    assert take.frames == 1200 and [s["start"] for s in take.segments] == [0, 200, 400, 600, 800, 1000]
    assert max(windows) <= MAX_TOKENS
    assert take.windows == 6 + 5                     # one window per segment core, one per transition
    bounds = [s["start"] for s in take.segments] + [take.frames]
    print("\nseam jerk, random tiny weights:", seam_jerk(take.joints, bounds, fps=20.0))


def test_a_five_minute_single_prompt_take(pipeline, windows) -> None:
    take = c.compose(pipeline, segments(("a person walks forward", 300.0)), SamplingSettings(steps=1, seed=3))
    assert take.frames == 6000 and take.codes.shape == (1500, 6)
    assert max(windows) <= MAX_TOKENS
    assert take.windows == 1 + -(-(1500 - MAX_TOKENS) // (MAX_TOKENS - c.SLIDE_CONTEXT_TOKENS))


def test_sliding_windows_keep_the_previous_windows_tokens() -> None:
    spans = c.outpaint_windows(0, 120)
    assert spans[0] == (0, 49, 0)
    for (_, stop, _), (start, _, first) in zip(spans, spans[1:], strict=False):
        assert first == stop and stop - start == c.SLIDE_CONTEXT_TOKENS
    assert spans[-1][1] == 120 and all(stop - start <= MAX_TOKENS for start, stop, _ in spans)
    # Anchored on both sides (a long in-between): the last window keeps context after the range.
    spans = c.outpaint_windows(10, 70, left=10, right=30)
    assert spans[0][0] == 0 and spans[-1][1] == 70 + c.SLIDE_CONTEXT_TOKENS


def test_regenerating_a_segment_changes_nothing_outside(pipeline) -> None:
    timeline = segments(("a person walks", 10.0), ("a person jumps", 10.0), ("a person sits", 10.0),
                        ("a person waves", 10.0), ("a person runs", 10.0))
    base = c.compose(pipeline, timeline, FAST)
    changed = list(timeline)
    changed[2] = c.SegmentSpec("a person kicks", 10.0, seed=77)
    new = c.compose(pipeline, changed, FAST, previous_codes=base.codes, regenerate_index=2)
    differs = np.nonzero(np.any(new.codes != base.codes, axis=1))[0]
    plan_lo, plan_hi = 100 - 1, 150 + 1              # segment 2 and half of each of its transitions
    assert differs.min() >= plan_lo and differs.max() < plan_hi
    reach = DECODER_RECEPTIVE_TOKENS + DECODE_CHUNK_TOKENS
    lo, hi = (differs.min() - reach) * 4, (differs.max() + 1 + reach) * 4
    assert lo > 0 and hi < new.frames
    np.testing.assert_array_equal(new.joints[:lo], base.joints[:lo])
    np.testing.assert_array_equal(new.joints[hi:], base.joints[hi:])
    np.testing.assert_array_equal(new.features[:lo], base.features[:lo])
    np.testing.assert_array_equal(new.features[hi:], base.features[hi:])
    assert not np.array_equal(new.joints[lo:hi], base.joints[lo:hi])
    assert new.changed is not None and lo <= new.changed[0] and new.changed[1] <= hi
    assert new.segments[2]["seed"] == 77 and new.segments[1] == base.segments[1]


def test_a_loop_closes_within_the_bound(pipeline) -> None:
    three = segments(("a person walks", 3.0), ("a person turns", 2.0), ("a person jumps", 3.0))
    for timeline, fps in ((segments(("a person walks in a circle", 6.0)), 30), (three, 24)):
        take = c.compose(pipeline, timeline, FAST, loop=True, fps=fps)
        total = sum(s.seconds for s in timeline)
        assert take.frames == round(total * fps)
        closure = loop_closure(take.joints, take.loop_offset)
        assert closure["within"], closure
        assert closure["position_ratio"] <= c.CLOSURE_RATIO and closure["velocity_ratio"] <= c.CLOSURE_RATIO
        assert take.loop_offset is not None and take.loop_offset[1] == 0.0


def test_the_closing_blend_repairs_a_broken_loop() -> None:
    t = np.linspace(0, 2 * np.pi, 61)[:-1]
    joints = np.zeros((60, 22, 3))
    joints[..., 1] = np.sin(t)[:, None] * 0.2 + np.arange(22) * 0.05
    joints[40:, :, 0] += 0.3                              # a jump the wrap has to hide
    assert not loop_closure(joints)["within"]
    assert loop_closure(c.close_loop(joints, np.zeros(3), 20.0))["within"]


def test_continue_and_lead_in_from_a_source(pipeline) -> None:
    source = c.compose(pipeline, segments(("a person walks", 5.0)), FAST).joints
    after = c.compose(pipeline, segments(("a person sits down", 3.0)), FAST, fps=24, source=source)
    before = c.compose(pipeline, segments(("a person stands up", 2.0)), FAST, fps=24, source=source,
                       direction="before")
    assert after.frames == 72 and before.frames == 48
    step = np.median(np.linalg.norm(np.diff(source[:, 0], axis=0), axis=-1))
    # Placed in the source's world: the first new frame follows the source's last one (a lead-in's
    # last frame leads into the source's first), not the model's canonical origin.
    assert np.linalg.norm(after.joints[0, 0] - source[-1, 0]) < 0.5 + 5 * step
    assert np.linalg.norm(before.joints[-1, 0] - source[0, 0]) < 0.5 + 5 * step
    # One token of source is enough (a continuation of the last 4 frames).
    short = c.compose(pipeline, segments(("a person sits down", 1.0)), FAST, fps=24, source=source[-4:])
    assert short.frames == 24
    # The source's context is kept: the same source and seed give the same continuation.
    again = c.compose(pipeline, segments(("a person sits down", 3.0)), FAST, fps=24, source=source)
    np.testing.assert_array_equal(again.joints, after.joints)


def test_progress_is_one_monotone_counter_and_cancel_stops_at_a_step(pipeline) -> None:
    events: list[tuple[str, int, int]] = []
    timeline = segments(("a person walks", 12.0), ("a person jumps", 3.0))
    c.compose(pipeline, timeline, FAST, progress=lambda *e: events.append(e))
    done = [d for _, d, _ in events]
    assert done == list(range(1, len(done) + 1)) and {t for _, _, t in events} == {done[-1]}
    assert {s for s, _, _ in events} == {"base", "residual", "decode"}
    cancel = threading.Event()

    def stop_early(stage, done, total):
        if done == 5:
            cancel.set()

    with pytest.raises(CancelledError):
        c.compose(pipeline, timeline, FAST, progress=stop_early, cancel=cancel)


@pytest.mark.parametrize("kwargs, words", [
    (dict(timeline=[]), "no segment"),
    (dict(timeline=[("a", 2.0), ("b", 0.2)], transition=0.4), "Segment 2 lasts 0.2 s"),
    (dict(timeline=[("walk", 3.0), ("jumps", 0.4), ("walk", 3.0)]), "Segment 2 lasts 0.4 s"),   # no core
    (dict(timeline=[("a", 2.0), ("b", 0.05)]), "shorter than one token"),
    (dict(timeline=[("  ", 2.0)]), "empty"),
    (dict(timeline=[("a", float("nan"))]), "lasts nan"),
    (dict(timeline=[("a", 2.0)], previous_codes=np.zeros((3, 6)), regenerate_index=0), "make 10"),
    (dict(timeline=[("a", 2.0)], previous_codes=np.zeros((10, 6)), regenerate_index=2), "names no segment"),
    (dict(timeline=[("a", 2.0)], source=np.zeros((3, 22, 3))), "less than one token"),
    (dict(timeline=[("a", 2.0)], source=np.full((20, 22, 3), np.nan)), "NaN"),
    (dict(timeline=[("a", 0.8)], loop=True, fps=0.5), "0 frame"),       # was a ZeroDivisionError
    (dict(timeline=[("a", 1.2)], loop=True, fps=1.0), "1 frame"),
    (dict(timeline=[("a", 0.4)], fps=1.0), "0 frame"),
])
def test_bad_input_is_refused_before_any_window(pipeline, windows, kwargs, words) -> None:
    timeline = [c.SegmentSpec(p, s) for p, s in kwargs.pop("timeline")]
    with pytest.raises(InputError, match=words):
        c.compose(pipeline, timeline, FAST, **kwargs)
    assert windows == []


def test_a_long_in_between_keeps_everything_outside(pipeline, windows) -> None:
    once = SamplingSettings(steps=1, seed=4)
    walk = c.compose(pipeline, segments(("a person walks", 10.0), ("a person runs", 10.0)), once)
    source = walk.features[:400].astype(np.float64)
    assert c.needs_long_inpaint(21, 379, len(source))
    batch = c.inpaint_long(pipeline, source, 21, 379, "a person dances", once)
    assert (batch.start, batch.end) == (20, 380) and max(windows) <= MAX_TOKENS
    _, source_joints = pipeline.source_motion(source)
    np.testing.assert_array_equal(batch.joints[0, :20], source_joints[:20])
    np.testing.assert_array_equal(batch.joints[0, 380:], source_joints[380:])
    assert not np.allclose(batch.joints[0, 40:360], source_joints[40:360], atol=1e-3)
    # The seams stay continuous: the step into and out of the range is like the source's own steps.
    steps = np.linalg.norm(np.diff(batch.joints[0, :, 0], axis=0), axis=-1)
    assert steps[19] < 0.5 and steps[379] < 0.5


def test_regenerating_a_segment_of_a_loop_keeps_it_closed(pipeline) -> None:
    timeline = segments(("a person walks", 3.0), ("a person turns", 3.0), ("a person jumps", 3.0))
    base = c.compose(pipeline, timeline, FAST, loop=True, fps=24)
    for index in (0, 2):                             # both touch the wrap-around transition
        changed = list(timeline)
        changed[index] = c.SegmentSpec("a person kicks", 3.0, seed=5)
        new = c.compose(pipeline, changed, FAST, loop=True, fps=24, previous_codes=base.codes,
                        regenerate_index=index)
        assert new.frames == base.frames
        np.testing.assert_array_equal(new.loop_offset, base.loop_offset)
        assert loop_closure(new.joints, new.loop_offset)["within"]


def test_a_lead_in_puts_the_extra_tokens_first(pipeline) -> None:
    plan = c.plan_timeline(segments(("a", 2.5), ("b", 2.5)), [None, None], 0, None, False, 24.0, 20.0,
                           direction="before")
    assert plan.tokens == 25 and plan.bounds == [0, 13, 25]     # 2.5 s → 12.5 tokens: the first gets it
    plan = c.plan_timeline(segments(("a", 2.5), ("b", 2.5)), [None, None], 0, None, False, 24.0, 20.0)
    assert plan.bounds[-1] == 25 and plan.tokens >= 25
