"""Loading checkpoints: the official layout round trip, and every way a weights folder can be wrong."""

from __future__ import annotations

import os
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from backend.portable.errors import CheckpointError
from backend.weights.checkpoints import WeightsLayout, find_weights_root, load_models
from backend.weights.opt_file import parse_value, read_opt
from backend.weights.random_weights import OFFICIAL_OPT_DIR, make_test_weights
from backend.weights.torch_files import safe_load


@pytest.fixture
def weights(tiny_weights: Path, tmp_path: Path) -> Path:
    """A private copy of the session's tiny weights that a test may damage."""
    return Path(shutil.copytree(tiny_weights, tmp_path / "weights"))


@pytest.fixture(autouse=True)
def no_home_clip(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # ~/.cache/clip must not rescue a test


# -- opt.txt ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("text, value", [
    ("True", True), ("False", False), ("0.0002", 0.0002), ("512", 512), ("-1", -1), ("0.2", 0.2),
    ("None", "None"), ("[50000]", "[50000]"), ("2e-4", "2e-4"), ("relu", "relu"), ("1.", "1."),
])
def test_opt_values_follow_official_get_opt(text, value):
    parsed = parse_value(text)
    assert parsed == value and type(parsed) is type(value)


def test_official_opt_files_parse_with_dataset_facts():
    vq = read_opt(OFFICIAL_OPT_DIR / "t2m" / "rvq_nq6_dc512_nc512_noshare_qdp0.2" / "opt.txt")
    assert (vq.nb_code, vq.shared_codebook, vq.vq_norm, vq.lr) == (512, False, "None", 0.0002)
    assert (vq.joints_num, vq.dim_pose, vq.unit_length, vq.num_classes) == (22, 263, 4, 50)
    kit = read_opt(OFFICIAL_OPT_DIR / "kit" / "rvq_nq6_dc512_nc512_noshare_qdp0.2_k" / "opt.txt")
    assert (kit.joints_num, kit.dim_pose, kit.quantize_dropout_prob) == (21, 251, 0.5)


# -- round trip ------------------------------------------------------------------------------------


def test_round_trip_loads_every_model_strictly(tiny_weights: Path):
    models = load_models(tiny_weights)
    layout = WeightsLayout(tiny_weights, "t2m")
    saved = torch.load(layout.mask_checkpoint, weights_only=True)
    assert set(saved) == {"t2m_transformer", "ep"}
    for key, value in saved["t2m_transformer"].items():
        assert torch.equal(models.mask_transformer.state_dict()[key], value)
    assert set(torch.load(layout.vq_checkpoint, weights_only=True)) == {"vq_model", "ep"}
    assert set(torch.load(layout.residual_checkpoint, weights_only=True)) == {"res_transformer", "ep"}
    assert set(torch.load(layout.length_checkpoint, weights_only=True)) == {"estimator", "epoch", "niter"}
    for module in (models.vq, models.mask_transformer, models.residual_transformer, models.length_estimator):
        assert not module.training
        assert not any(p.requires_grad for p in module.parameters())
    assert models.mean.dtype == models.std.dtype == np.float64
    assert models.mean.shape == models.std.shape == (263,) and (models.std > 0).all()
    assert models.opts["vq"].dim_pose == 263 and models.dataset == "t2m"
    cond = models.text_encoder.encode(["a person walks"])
    assert cond.shape == (1, 512)
    assert models.require_length_estimator()(cond).shape == (1, 50)


def test_fast_loading_gives_the_official_construction_exactly(tiny_weights: Path):
    """load_models builds without init and adopts the tensors; the result must equal building the
    official way and copying the checkpoint in: same tensors (dtype, layout) and the same outputs."""
    from backend.weights.checkpoints import (
        build_length_estimator,
        build_mask_transformer,
        build_residual_transformer,
        build_vq,
    )

    models = load_models(tiny_weights)
    layout = WeightsLayout(tiny_weights)
    vq_opt, mask_opt, res_opt = (read_opt(p) for p in (layout.vq_opt, layout.mask_opt, layout.residual_opt))
    pairs = [  # (official construction, loaded, checkpoint, entry)
        (build_vq(vq_opt), models.vq, layout.vq_checkpoint, "vq_model"),
        (build_mask_transformer(mask_opt, vq_opt), models.mask_transformer, layout.mask_checkpoint,
         "t2m_transformer"),
        (build_residual_transformer(res_opt, vq_opt), models.residual_transformer,
         layout.residual_checkpoint, "res_transformer"),
        (build_length_estimator(mask_opt), models.length_estimator, layout.length_checkpoint, "estimator"),
    ]
    for official, loaded, path, entry in pairs:
        official.load_state_dict(torch.load(path, weights_only=True)[entry])
        official.eval().requires_grad_(False)  # as loaded models are (it selects torch's kernels)
        expected, got = official.state_dict(), loaded.state_dict()
        assert list(got) == list(expected)
        for key, value in expected.items():
            assert torch.equal(got[key], value) and got[key].dtype == value.dtype, (path, key)
            assert got[key].is_contiguous(), (path, key)
    vq, mask, residual, length = (pair[0] for pair in pairs)
    ids, cond = torch.randint(0, 512, (2, 7)), torch.randn(2, 512)
    pad = torch.tensor([[False] * 7, [False] * 5 + [True] * 2])
    codes, qids = torch.randn(2, 7, vq_opt.code_dim), torch.tensor([1, 4])
    idx = torch.randint(0, 512, (2, 5, 6))
    with torch.no_grad():
        assert torch.equal(models.mask_transformer.trans_forward(ids, cond, pad),
                           mask.trans_forward(ids, cond, pad))
        assert torch.equal(models.residual_transformer.trans_forward(codes, qids, cond, pad),
                           residual.trans_forward(codes, qids, cond, pad))
        assert torch.equal(models.vq.forward_decoder(idx), vq.forward_decoder(idx))
        assert torch.equal(models.length_estimator(cond), length(cond))


def test_loading_leaves_the_global_rng_alone(tiny_weights: Path):
    """Nothing is randomly initialised while loading, so a caller's torch.manual_seed still holds."""
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    load_models(tiny_weights)
    assert torch.equal(torch.rand(3), expected)


def test_legacy_format_checkpoints_still_load(weights: Path):
    """Files saved in torch's pre-1.6 (non-zip) format cannot be memory-mapped; they load normally."""
    layout = WeightsLayout(weights)
    for path in (layout.vq_checkpoint, layout.clip_file):
        torch.save(torch.load(path, weights_only=True), path, _use_new_zipfile_serialization=False)
    models = load_models(weights)
    assert models.text_encoder.encode(["a person walks"]).shape == (1, 512)


def test_test_weights_are_deterministic_in_seed(tmp_path: Path):
    a = make_test_weights(tmp_path / "a", seed=3, with_clip=False)
    b = make_test_weights(tmp_path / "b", seed=3, with_clip=False)
    c = make_test_weights(tmp_path / "c", seed=4, with_clip=False)
    path = WeightsLayout(a).vq_checkpoint.relative_to(a)
    sa, sb, sc = (torch.load(r / path, weights_only=True)["vq_model"] for r in (a, b, c))
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not torch.equal(sa["encoder.model.0.weight"], sc["encoder.model.0.weight"])


def test_kit_layout_loads(tmp_path: Path):
    root = make_test_weights(tmp_path / "w", datasets=("kit",))
    assert (root / "kit" / "rvq_nq6_dc512_nc512_noshare_qdp0.2_k" / "meta" / "std.npy").is_file()
    models = load_models(root, dataset="kit")
    assert models.vq.encoder.model[0].weight.shape[1] == 251 and models.mean.shape == (251,)
    idx = torch.randint(0, 512, (1, 5, 6))
    assert models.vq.forward_decoder(idx).shape == (1, 20, 251)


def test_official_fallback_dict_keys(weights: Path):
    layout = WeightsLayout(weights)
    vq = torch.load(layout.vq_checkpoint, weights_only=True)
    torch.save({"net": vq["vq_model"]}, layout.vq_checkpoint)
    mask = torch.load(layout.mask_checkpoint, weights_only=True)
    torch.save({"trans": mask["t2m_transformer"], "ep": 3}, layout.mask_checkpoint)
    load_models(weights)


def test_clip_keys_in_transformer_checkpoints_are_tolerated(weights: Path):
    layout = WeightsLayout(weights)
    ckpt = torch.load(layout.mask_checkpoint, weights_only=True)
    ckpt["t2m_transformer"]["clip_model.positional_embedding"] = torch.zeros(77, 512)
    torch.save(ckpt, layout.mask_checkpoint)
    load_models(weights)


# -- failures --------------------------------------------------------------------------------------


def test_no_dataset_folder(tmp_path: Path):
    with pytest.raises(CheckpointError, match="No MoMask checkpoints in") as err:
        load_models(tmp_path)
    assert "python build.py weights" in str(err.value)


def test_find_weights_root(tiny_weights: Path, tmp_path: Path):
    assert find_weights_root([tmp_path / "nothing", tiny_weights]) == tiny_weights
    with pytest.raises(CheckpointError, match="No MoMask checkpoints in") as err:
        find_weights_root([tmp_path / "x", tmp_path / "y"])
    assert str(tmp_path / "x") in str(err.value) and "build.py weights" in str(err.value)


def test_partial_folder_lists_exactly_the_missing_files(weights: Path):
    layout = WeightsLayout(weights)
    layout.mask_checkpoint.unlink()
    layout.std.unlink()
    with pytest.raises(CheckpointError) as err:
        load_models(weights)
    message = str(err.value)
    assert "t2m_nlayer8_nhead6_ld384_ff1024_cdp0.1_rvq6ns/model/latest.tar" in message
    assert "meta/std.npy" in message
    assert "net_best_fid.tar" not in message and "mean.npy" not in message


def test_missing_length_estimator_is_optional(weights: Path):
    shutil.rmtree(WeightsLayout(weights).folder("length"))
    models = load_models(weights)
    assert models.length_estimator is None
    with pytest.raises(CheckpointError, match="Length estimation is unavailable") as err:
        models.require_length_estimator()
    assert "length explicitly" in str(err.value)


def test_truncated_checkpoint(weights: Path):
    path = WeightsLayout(weights).residual_checkpoint
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt") as err:
        load_models(weights)
    assert str(path) in str(err.value) and "re-download" in str(err.value)


@pytest.mark.parametrize("payload", [b"", b"not a checkpoint at all" * 10])
def test_garbage_file(tmp_path: Path, payload: bytes):
    path = tmp_path / "x.tar"
    path.write_bytes(payload)
    with pytest.raises(CheckpointError, match="corrupt"):
        safe_load(path)


class _Payload:
    """Unpickling this would create a marker file (what a malicious checkpoint could do)."""

    marker = ""

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.mark.parametrize("legacy", [False, True])
def test_pickled_code_is_refused_and_never_run(weights: Path, tmp_path: Path, legacy: bool):
    marker = tmp_path / "pwned"
    _Payload.marker = str(marker)
    path = WeightsLayout(weights).vq_checkpoint
    if legacy:
        path.write_bytes(pickle.dumps({"vq_model": _Payload()}, protocol=2))  # torch's legacy format
    else:
        torch.save({"vq_model": _Payload(), "ep": 0}, path)
    assert not marker.exists()
    with pytest.raises(CheckpointError, match="Refusing to load .* executable pickled code") as err:
        load_models(weights)
    assert not marker.exists()
    assert "re-download" in str(err.value)


def test_missing_state_dict_key(weights: Path):
    path = WeightsLayout(weights).vq_checkpoint
    torch.save({"model": {}, "ep": 1}, path)
    with pytest.raises(CheckpointError, match="'vq_model' / 'net'"):
        load_models(weights)


def test_opt_that_does_not_match_the_weights(weights: Path):
    opt = WeightsLayout(weights).mask_opt
    opt.write_text(opt.read_text().replace("ff_size: 128", "ff_size: 96"))
    with pytest.raises(CheckpointError) as err:
        load_models(weights)
    message = str(err.value)
    assert "seqTransEncoder.layers.0.linear1.weight" in message
    assert "(128, 64)" in message and "(96, 64)" in message and str(opt) in message


def test_opt_with_wrong_layer_count_names_the_keys(weights: Path):
    opt = WeightsLayout(weights).residual_opt
    opt.write_text(opt.read_text().replace("n_layers: 2", "n_layers: 3"))
    with pytest.raises(CheckpointError, match=r"missing keys \['seqTransEncoder.layers.2"):
        load_models(weights)


def test_mismatched_meta(weights: Path):
    np.save(WeightsLayout(weights).mean, np.zeros(251))
    with pytest.raises(CheckpointError, match=r"mean.npy has shape \(251,\)"):
        load_models(weights)


def test_missing_clip_names_all_places(weights: Path, tmp_path: Path):
    (weights / "clip" / "ViT-B-32.pt").unlink()
    with pytest.raises(CheckpointError) as err:
        load_models(weights, clip=tmp_path / "mine.pt")
    message = str(err.value)
    assert str(tmp_path / "mine.pt") in message
    assert str(weights / "clip" / "ViT-B-32.pt") in message
    assert os.path.join(".cache", "clip", "ViT-B-32.pt") in message
    assert "Run `python build.py weights`" in message
