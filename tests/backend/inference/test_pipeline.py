"""MoMaskPipeline on tiny random weights: text → motion, inpainting, encoding, bad input."""

from __future__ import annotations

import math
import threading

import numpy as np
import pytest
import torch
from sampler_support import DrawRecorder

from backend.inference.pipeline import MoMaskPipeline, SamplingSettings, align_to_source, heading
from backend.motion.features import recover_from_ric
from backend.portable.errors import CancelledError, InputError


@pytest.fixture(scope="module")
def pipeline(tiny_weights) -> MoMaskPipeline:
    return MoMaskPipeline.load(tiny_weights, device="cpu")


# --- text → motion ----------------------------------------------------------------------------------


def test_text_to_motion_shapes_dtypes_and_padding(pipeline) -> None:
    batch = pipeline.text_to_motion(["a person walks forward", "a person jumps"], [42, 16],
                                    SamplingSettings())
    assert batch.lengths.tolist() == [40, 16]              # rounded down to whole tokens
    assert batch.joints.shape == (2, 40, 22, 3) and batch.joints.dtype == np.float32
    assert batch.features.shape == (2, 40, 263) and batch.features.dtype == np.float32
    assert batch.tokens.shape == (2, 10, 6) and batch.tokens.dtype == np.int64
    assert batch.fps == 20.0
    assert (batch.tokens[1, 4:] == -1).all() and (batch.tokens[1, :4, 0] >= 0).all()
    assert (batch.joints[1, 16:] == 0).all() and np.isfinite(batch.joints).all()
    # The joints are the features' joints (official recover_from_ric on each motion).
    np.testing.assert_array_equal(batch.joints[1, :16], recover_from_ric(batch.features[1, :16], 22))


def test_same_seed_same_motion_other_seed_other_motion(pipeline) -> None:
    prompts, frames = ["a person waves"], [32]
    a = pipeline.text_to_motion(prompts, frames, SamplingSettings(seed=11))
    b = pipeline.text_to_motion(prompts, frames, SamplingSettings(seed=11))
    c = pipeline.text_to_motion(prompts, frames, SamplingSettings(seed=12))
    np.testing.assert_array_equal(a.tokens, b.tokens)
    np.testing.assert_array_equal(a.joints, b.joints)
    assert not np.array_equal(a.tokens, c.tokens)


def test_estimated_lengths_draw_first_then_the_official_sequence(pipeline, monkeypatch) -> None:
    calls = DrawRecorder(monkeypatch).calls
    batch = pipeline.text_to_motion(["a person runs", "a person sits down"], None, SamplingSettings(steps=7))
    n = int(batch.lengths.max()) // 4
    assert calls == ([("multinomial", (2, 50))] + [("multinomial", (2 * n, 512))] * 7
                     + [("uniform_", (2, n, 513))] * 5)
    assert all(4 <= length <= 196 and length % 4 == 0 for length in batch.lengths)


def test_fast_flow_matches_reference_flow(pipeline) -> None:
    prompts = ["a person walks forward", "someone jumps twice", "a man kicks with his left leg", "a dance"]
    frames = [196, 120, 64, 40]
    ref = pipeline.text_to_motion(prompts, frames, SamplingSettings(seed=7, flow="reference"))
    fast = pipeline.text_to_motion(prompts, frames, SamplingSettings(seed=7, flow="fast"))
    valid = ref.tokens >= 0
    agreement = float((ref.tokens == fast.tokens)[valid].mean())
    print(f"\nfast vs reference token agreement (tiny weights, 4 prompts): {agreement:.4f}")
    assert agreement >= 0.99
    for i in range(len(prompts)):
        if np.array_equal(ref.tokens[i], fast.tokens[i]):
            length = ref.lengths[i]
            assert np.abs(ref.joints[i, :length] - fast.joints[i, :length]).max() < 1e-3   # 1 mm


def test_bf16_fast_flow_runs(pipeline) -> None:
    ref = pipeline.text_to_motion(["a person walks"], [80], SamplingSettings(seed=3, flow="reference"))
    low = pipeline.text_to_motion(["a person walks"], [80], SamplingSettings(seed=3, precision="bf16"))
    agreement = float((ref.tokens == low.tokens).mean())
    print(f"\nfast-bf16 vs reference token agreement (tiny weights): {agreement:.4f}")
    assert agreement >= 0.5          # rounding flips near-ties only (0.875 here, 0.946 at full size)
    assert low.joints.shape == ref.joints.shape and np.isfinite(low.joints).all()


def test_progress_and_cancel(pipeline) -> None:
    seen: list[tuple[str, int, int]] = []
    pipeline.text_to_motion(["a person walks"], [20], SamplingSettings(steps=3),
                            progress=lambda *a: seen.append(a))
    assert [s[1] for s in seen] == list(range(1, 10)) and all(s[2] == 9 for s in seen)
    assert [s[0] for s in seen] == ["base"] * 3 + ["residual"] * 5 + ["decode"]
    cancel = threading.Event()
    with pytest.raises(CancelledError):
        pipeline.text_to_motion(["a person walks"], [20], SamplingSettings(),
                                progress=lambda stage, done, total: cancel.set(), cancel=cancel)


@pytest.mark.parametrize("frames", [0, -4, 3, 197, 400])
def test_lengths_outside_the_limit_are_refused(pipeline, frames: int) -> None:
    with pytest.raises(InputError, match="196") as info:
        pipeline.text_to_motion(["a person walks"], [frames], SamplingSettings())
    assert info.value.fix


@pytest.mark.parametrize("prompt", ["", "   ", "\n\t"])
def test_empty_prompts_are_refused(pipeline, prompt: str) -> None:
    with pytest.raises(InputError, match="empty"):
        pipeline.text_to_motion(["fine", prompt], [20], SamplingSettings())


def test_lengths_must_match_the_prompts(pipeline) -> None:
    with pytest.raises(InputError, match="3 prompts"):
        pipeline.text_to_motion(["a", "b", "c"], [20, 20], SamplingSettings())
    batch = pipeline.text_to_motion(["a walk", "a run"], [24], SamplingSettings())   # one for all
    assert batch.lengths.tolist() == [24, 24]


# --- inpainting -------------------------------------------------------------------------------------


def _outside(tokens_len: int, start: int, end: int) -> np.ndarray:
    positions = np.arange(tokens_len)
    return (positions < start // 4) | (positions >= end // 4)


def test_inpainting_keeps_every_token_outside_the_range(pipeline, sample_features) -> None:
    source = sample_features[:120]
    result = pipeline.inpaint(source, 41, 70, "a person kicks", SamplingSettings(seed=4))
    assert (result.start, result.end) == (40, 72)           # widened to whole tokens
    assert result.tokens.shape == (1, 30, 6)
    source_tokens = pipeline.encode(source)
    outside = _outside(30, 40, 72)
    np.testing.assert_array_equal(result.tokens[0][outside], source_tokens[outside])   # all 6 layers
    assert not np.array_equal(result.tokens[0][~outside, 0], source_tokens[~outside, 0])


def test_regen_residual_everywhere_is_the_official_behaviour(pipeline, sample_features) -> None:
    source = sample_features[:120]
    result = pipeline.inpaint(source, 40, 72, "a person kicks", SamplingSettings(seed=4),
                              regen_residual_everywhere=True)
    kept = pipeline.inpaint(source, 40, 72, "a person kicks", SamplingSettings(seed=4))
    source_tokens = pipeline.encode(source)
    outside = _outside(30, 40, 72)
    np.testing.assert_array_equal(result.tokens[0][outside, 0], source_tokens[outside, 0])   # base kept
    assert not np.array_equal(result.tokens[0][outside, 1:], source_tokens[outside, 1:])    # residual not
    # Same draws either way: the regenerated base layer is identical.
    np.testing.assert_array_equal(result.tokens[0, :, 0], kept.tokens[0, :, 0])


@pytest.mark.parametrize(("start", "end"), [(41, 70), (0, 30), (90, 120), (0, 120)])
def test_inpainted_joints_equal_the_source_outside_the_range(pipeline, sample_features, start, end) -> None:
    source = sample_features[:122]                             # not a multiple of 4 frames
    result = pipeline.inpaint(source, start, end, "a person spins", SamplingSettings(seed=1))
    source_joints = recover_from_ric(source.astype(np.float32), 22)
    s, e = result.start, result.end
    assert s == start // 4 * 4 and e == min(math.ceil(end / 4) * 4, 120)
    assert result.joints.shape == (1, 122, 22, 3) and result.lengths.tolist() == [122]
    np.testing.assert_array_equal(result.joints[0, :s], source_joints[:s])
    np.testing.assert_array_equal(result.joints[0, e:], source_joints[e:])
    assert not np.array_equal(result.joints[0, s:e], source_joints[s:e])


def test_inpainting_a_joint_animation(pipeline, sample_features) -> None:
    joints = recover_from_ric(sample_features[:81].astype(np.float32), 22) + np.float32([1.5, 0.0, -2.0])
    result = pipeline.inpaint(joints, 20, 40, "a person crouches", SamplingSettings(seed=2))
    assert result.joints.shape == (1, 81, 22, 3)
    assert result.tokens.shape == (1, 20, 6)
    np.testing.assert_array_equal(result.joints[0, :20], joints[:20])
    np.testing.assert_array_equal(result.joints[0, 40:], joints[40:])


@pytest.mark.parametrize(("source_shape", "match"), [((100, 262), "shape"), ((100, 21, 3), "shape"),
                                                     ((100,), "shape"), ((5, 263), "frames")])
def test_bad_source_motions_are_refused(pipeline, source_shape, match) -> None:
    with pytest.raises(InputError, match=match):
        pipeline.inpaint(np.zeros(source_shape), 0, 8, "a person walks", SamplingSettings())


def test_nan_source_is_refused(pipeline, sample_features) -> None:
    source = sample_features[:80].copy()
    source[10, 5] = np.nan
    with pytest.raises(InputError, match="NaN"):
        pipeline.inpaint(source, 0, 8, "a person walks", SamplingSettings())


@pytest.mark.parametrize(("start", "end"), [(-1, 10), (10, 10), (20, 10), (0, 121), (119, 125), (200, 210)])
def test_ranges_outside_the_motion_are_refused(pipeline, sample_features, start, end) -> None:
    with pytest.raises(InputError, match="range") as info:
        pipeline.inpaint(sample_features[:120], start, end, "a person walks", SamplingSettings())
    assert "Fix" in str(info.value)


# --- seams ------------------------------------------------------------------------------------------


def _rigidly_moved(joints: np.ndarray, angle: float, shift: np.ndarray) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    out = joints.copy()
    out[..., 0] = c * joints[..., 0] + s * joints[..., 2]
    out[..., 2] = -s * joints[..., 0] + c * joints[..., 2]
    return out + shift


@pytest.mark.parametrize(("start", "end"), [(40, 80), (0, 60), (100, 196), (0, 196)])
def test_alignment_undoes_a_rigid_move(sample_features, start, end) -> None:
    """A generated motion that IS the source seen from elsewhere lands exactly on the source."""
    source = recover_from_ric(sample_features[:196].astype(np.float32), 22)
    generated = _rigidly_moved(source, 2.0, np.float32([3.0, 0.1, -1.0]))
    placed = align_to_source(generated, source, start, end)
    np.testing.assert_allclose(placed, source[start:end], atol=1e-4)


def test_alignment_spreads_the_end_seam_offset(sample_features) -> None:
    source = recover_from_ric(sample_features[:196].astype(np.float32), 22)
    generated = source.copy()
    drift = np.float32([0.8, 0.0, 0.5])                      # the new motion ends 0.94 m away...
    generated[40:80] += np.linspace(0, 1, 40, dtype=np.float32)[:, None, None] * drift
    generated[80:] += drift
    placed = align_to_source(generated, source, 40, 80)
    root = placed[:, 0]
    path = np.concatenate([source[39:40, 0], root, source[80:81, 0]])
    steps = np.linalg.norm(np.diff(path, axis=0), axis=-1)
    natural = np.linalg.norm(np.diff(source[38:82, 0], axis=0), axis=-1).max()
    assert steps.max() < natural + 2 * 0.94 / 40             # ...yet no jump: the offset is spread out
    assert np.linalg.norm(root[-1] - source[79, 0]) < 0.94 / 40
    assert abs(heading(placed[-1]) - heading(source[79])) < 1e-3


def test_encode_gives_one_token_per_four_frames(pipeline, sample_features) -> None:
    tokens = pipeline.encode(sample_features)
    assert tokens.shape == (49, 6) and tokens.dtype == np.int64 and (tokens >= 0).all()


def test_info_names_device_and_versions(pipeline, tiny_weights) -> None:
    info = pipeline.info()
    assert info["device"] == "cpu" and info["dataset"] == "t2m" and info["torch"] == torch.__version__
    assert info["weights"] == str(tiny_weights) and info["flow"] == "fast"


def test_long_sources_are_inpainted_in_a_window_around_the_range(pipeline, sample_features) -> None:
    # 300 frames (15 s): longer than the 196 frames the models were trained on.
    long_source = np.concatenate([sample_features, sample_features[:101]], axis=0)
    source_joints = recover_from_ric(long_source.astype(np.float32), 22)
    batch = pipeline.inpaint(long_source, 221, 250, "a person jumps", SamplingSettings(seed=3))
    assert (batch.start, batch.end) == (220, 252)
    assert batch.joints.shape == (1, 300, 22, 3) and batch.lengths.tolist() == [300]
    outside = np.r_[0:220, 252:300]
    np.testing.assert_array_equal(batch.joints[0, outside], source_joints[outside])
    assert not np.allclose(batch.joints[0, 220:252], source_joints[220:252])


def test_in_betweens_longer_than_a_window_are_refused(pipeline, sample_features) -> None:
    long_source = np.concatenate([sample_features, sample_features], axis=0)
    with pytest.raises(InputError, match="shorter range"):
        pipeline.inpaint(long_source, 10, 250, "a person jumps", SamplingSettings())
