"""The CLIP text tower: files it reads, EOT truncation, long prompts, the cache, no torchvision."""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import pytest
import torch

from backend.models.text_encoder import TextEncoder, find_clip_file, import_clip
from backend.portable.errors import CheckpointError
from backend.weights.random_weights import CLIP_CONFIGS

PROMPTS = ["a person walks forward", "a man jumps twice and then sits down on the floor slowly", "run"]
LONG_PROMPT = " ".join(["a person walks in a circle and waves both hands"] * 12)


@pytest.fixture(scope="module")
def encoder(tiny_weights: Path) -> TextEncoder:
    return TextEncoder.load(tiny_weights / "clip" / "ViT-B-32.pt")


def test_output_is_unnormalised_float32_512(encoder):
    features = encoder.encode(PROMPTS)
    assert features.shape == (3, 512) and features.dtype == torch.float32
    assert not torch.allclose(features.norm(dim=-1), torch.ones(3))
    assert not hasattr(encoder.model, "visual")


def test_eot_truncation_matches_official_full_length(encoder):
    encoder.clear_cache()
    fast = encoder.encode(PROMPTS)
    full = encoder.encode(PROMPTS, truncate_at_eot=False)
    torch.testing.assert_close(fast, full, atol=1e-5, rtol=0)


def test_official_path_equals_clip_encode_text(encoder, tiny_weights):
    clip = import_clip()
    from backend.models.text_encoder import load_clip_state_dict

    reference = clip.model.build_model(load_clip_state_dict(tiny_weights / "clip" / "ViT-B-32.pt")).float()
    with torch.no_grad():
        expected = reference.encode_text(clip.tokenize(PROMPTS, truncate=True)).float()
    assert torch.equal(encoder.encode(PROMPTS, truncate_at_eot=False), expected)


def test_fp32_clip_file_gives_what_clip_load_gives(tmp_path):
    """clip's loader makes the Linear/attention weights fp16 before copying a file in, so an fp32 file
    is rounded through fp16; the text tower must reproduce that exactly."""
    clip = import_clip()
    from backend.models.text_encoder import load_clip_state_dict

    torch.manual_seed(0)
    torch.save(clip.model.CLIP(**CLIP_CONFIGS["tiny"]).state_dict(), tmp_path / "fp32.pt")
    reference = clip.model.build_model(load_clip_state_dict(tmp_path / "fp32.pt")).float()
    with torch.no_grad():
        expected = reference.encode_text(clip.tokenize(PROMPTS, truncate=True)).float()
    encoder = TextEncoder.load(tmp_path / "fp32.pt")
    assert torch.equal(encoder.encode(PROMPTS, truncate_at_eot=False), expected)


def test_only_the_text_half_is_built(encoder, tiny_weights):
    from backend.models.text_encoder import TEXT_TOWER_KEYS, load_clip_state_dict

    everything = load_clip_state_dict(tiny_weights / "clip" / "ViT-B-32.pt")
    text = {k for k in everything if k.startswith(TEXT_TOWER_KEYS)}
    assert set(encoder.model.state_dict()) == text
    assert any(k.startswith("visual.") for k in everything)
    assert all(p.dtype == torch.float32 and not p.is_meta for p in encoder.model.parameters())


def test_long_prompt_warns_and_is_flagged(encoder):
    with pytest.warns(UserWarning, match="longer than CLIP's 77 tokens"):
        features, flags = encoder.encode(["walk", LONG_PROMPT], return_truncated=True)
    assert flags == [False, True]
    assert features.shape == (2, 512)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _, flags = encoder.encode(["walk slowly"], truncate_at_eot=False, return_truncated=True)
    assert flags == [False]


def test_cache_returns_same_features_without_recomputing(encoder, monkeypatch):
    encoder.clear_cache()
    first = encoder.encode(PROMPTS[:2])
    calls = []
    original = encoder._encode_tokens
    monkeypatch.setattr(encoder, "_encode_tokens", lambda *a, **k: calls.append(a) or original(*a, **k))
    again = encoder.encode([PROMPTS[1], PROMPTS[0], PROMPTS[1]])
    assert calls == []
    assert torch.equal(again[0], first[1]) and torch.equal(again[1], first[0])
    encoder.encode([PROMPTS[2], PROMPTS[0]])
    assert len(calls) == 1 and calls[0][0].shape[0] == 1  # only the new prompt is encoded


@pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::torch.jit.TracerWarning")
def test_torchscript_archive_loads_like_a_state_dict(tmp_path):
    clip = import_clip()
    torch.manual_seed(0)
    model = clip.model.CLIP(**CLIP_CONFIGS["tiny"]).eval()
    traced = torch.jit.trace(model, (torch.randn(1, 3, 32, 32), clip.tokenize(["hello"])))
    traced.save(str(tmp_path / "ViT-B-32.pt"))
    torch.save(model.state_dict(), tmp_path / "plain.pt")
    a = TextEncoder.load(tmp_path / "ViT-B-32.pt").encode(PROMPTS)
    b = TextEncoder.load(tmp_path / "plain.pt").encode(PROMPTS)
    assert torch.equal(a, b)


def test_not_a_clip_file(tmp_path):
    torch.save({"weight": torch.zeros(3)}, tmp_path / "x.pt")
    with pytest.raises(CheckpointError, match="not a CLIP ViT state_dict"):
        TextEncoder.load(tmp_path / "x.pt")


def test_clip_lookup_order(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    explicit, weights = tmp_path / "mine.pt", tmp_path / "weights"
    cached = tmp_path / "home" / ".cache" / "clip" / "ViT-B-32.pt"
    in_weights = weights / "clip" / "ViT-B-32.pt"
    for path in (explicit, in_weights, cached):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")
    assert find_clip_file(explicit, weights) == explicit
    assert find_clip_file(None, weights) == in_weights
    in_weights.unlink()
    assert find_clip_file(tmp_path / "absent.pt", weights) == cached
    cached.unlink()
    with pytest.raises(CheckpointError, match="build.py weights"):
        find_clip_file(None, weights)


def test_torchvision_stand_in_is_not_left_behind():
    clip = import_clip()
    if getattr(sys.modules.get("torchvision"), "__momask_stand_in__", False):
        pytest.fail("the torchvision stand-in leaked into sys.modules")
    try:
        import torchvision  # noqa: F401
    except ImportError:
        with pytest.raises(RuntimeError, match="torchvision is not installed"):
            clip.clip.Compose([])
