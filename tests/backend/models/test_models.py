"""The networks: official state_dict keys/shapes/parameter counts, and the behaviour the sampler relies on."""

from __future__ import annotations

import math

import pytest
import torch

from backend.models import RVQVAE, LengthEstimator, MaskTransformer, ResidualTransformer
from backend.weights.checkpoints import (
    build_length_estimator,
    build_mask_transformer,
    build_residual_transformer,
    build_vq,
)
from backend.weights.opt_file import read_opt
from backend.weights.random_weights import OFFICIAL_OPT_DIR

T2M = OFFICIAL_OPT_DIR / "t2m"


def n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def expected_vq_shapes(dim_pose: int = 263) -> dict[str, tuple[int, ...]]:
    shapes: dict[str, tuple[int, ...]] = {}

    def conv(key: str, c_out: int, c_in: int, k: int) -> None:
        shapes[f"{key}.weight"], shapes[f"{key}.bias"] = (c_out, c_in, k), (c_out,)

    def resnet(key: str) -> None:
        for i in range(3):
            conv(f"{key}.model.{i}.conv1", 512, 512, 3)
            conv(f"{key}.model.{i}.conv2", 512, 512, 1)

    conv("encoder.model.0", 512, dim_pose, 3)
    for b in (2, 3):
        conv(f"encoder.model.{b}.0", 512, 512, 4)
        resnet(f"encoder.model.{b}.1")
        resnet(f"decoder.model.{b}.0")
        conv(f"decoder.model.{b}.2", 512, 512, 3)
    conv("encoder.model.4", 512, 512, 3)
    conv("decoder.model.0", 512, 512, 3)
    conv("decoder.model.4", 512, 512, 3)
    conv("decoder.model.6", dim_pose, 512, 3)
    for q in range(6):
        shapes[f"quantizer.layers.{q}.codebook"] = (512, 512)
    return shapes


def expected_transformer_shapes(d: int = 384, ff: int = 1024, layers: int = 8) -> dict[str, tuple[int, ...]]:
    shapes = {
        "input_process.poseEmbedding.weight": (d, 512), "input_process.poseEmbedding.bias": (d,),
        "position_enc.pe": (5000, 1, d),
        "cond_emb.weight": (d, 512), "cond_emb.bias": (d,),
        "output_process.dense.weight": (d, d), "output_process.dense.bias": (d,),
        "output_process.LayerNorm.weight": (d,), "output_process.LayerNorm.bias": (d,),
        "output_process.poseFinal.weight": (512, d), "output_process.poseFinal.bias": (512,),
    }
    for i in range(layers):
        p = f"seqTransEncoder.layers.{i}."
        shapes.update({
            p + "self_attn.in_proj_weight": (3 * d, d), p + "self_attn.in_proj_bias": (3 * d,),
            p + "self_attn.out_proj.weight": (d, d), p + "self_attn.out_proj.bias": (d,),
            p + "linear1.weight": (ff, d), p + "linear1.bias": (ff,),
            p + "linear2.weight": (d, ff), p + "linear2.bias": (d,),
            p + "norm1.weight": (d,), p + "norm1.bias": (d,),
            p + "norm2.weight": (d,), p + "norm2.bias": (d,),
        })
    return shapes


def shapes_of(module: torch.nn.Module) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in module.state_dict().items()}


@pytest.fixture(scope="module")
def full_models() -> dict[str, torch.nn.Module]:
    """Full-size models built from the official opt.txt files (as load_models builds them)."""
    vq_opt = read_opt(T2M / "rvq_nq6_dc512_nc512_noshare_qdp0.2" / "opt.txt")
    mask_opt = read_opt(T2M / "t2m_nlayer8_nhead6_ld384_ff1024_cdp0.1_rvq6ns" / "opt.txt")
    res_opt = read_opt(T2M / "tres_nlayer8_ld384_ff1024_rvq6ns_cdp0.2_sw" / "opt.txt")
    return {"vq": build_vq(vq_opt), "residual": build_residual_transformer(res_opt, vq_opt),
            "mask": build_mask_transformer(mask_opt, vq_opt), "length": build_length_estimator(mask_opt)}


def test_full_vq_matches_official_keys_shapes_and_size(full_models):
    vq = full_models["vq"]
    assert shapes_of(vq) == expected_vq_shapes()
    assert n_params(vq) == 19_436_807


def test_full_vq_dilations_are_9_3_1_in_both_halves(full_models):
    vq = full_models["vq"]
    for prefix in ("encoder.model.2.1", "encoder.model.3.1", "decoder.model.2.0", "decoder.model.3.0"):
        resnet = vq.get_submodule(prefix)
        assert [blk.conv1.dilation[0] for blk in resnet.model] == [9, 3, 1]
        assert [blk.conv1.padding[0] for blk in resnet.model] == [9, 3, 1]


def test_full_mask_transformer_matches_official_keys(full_models):
    mask = full_models["mask"]
    expected = expected_transformer_shapes()
    expected["token_emb.weight"] = (514, 512)
    assert shapes_of(mask) == expected
    assert n_params(mask) == 12_048_768
    assert (mask.mask_id, mask.pad_id) == (512, 513)
    assert not any(k.startswith("clip_model.") for k in mask.state_dict())
    layer = mask.seqTransEncoder.layers[0]
    assert layer.self_attn.batch_first is False and layer.norm_first is False
    assert mask.output_process.LayerNorm.eps == 1e-12


def test_full_residual_transformer_matches_official_keys(full_models):
    res = full_models["residual"]
    expected = expected_transformer_shapes()
    expected.update({"quant_emb.weight": (384, 6), "quant_emb.bias": (384,),
                     "embed_proj_shared_weight": (4, 513, 512), "token_embed_weight_": (1, 513, 512),
                     "output_proj_weight_": (1, 513, 512)})
    assert shapes_of(res) == expected
    assert n_params(res) == 13_364_224
    assert res.pad_id == 512


def test_length_estimator_keys(full_models):
    keys = {k.rsplit(".", 1)[0] for k in full_models["length"].state_dict()}
    assert keys == {f"output.{i}" for i in (0, 1, 4, 5, 8, 9, 11)}
    assert full_models["length"](torch.zeros(3, 512)).shape == (3, 50)


def test_positional_table_is_sinusoidal_and_persistent(full_models):
    pe = full_models["mask"].position_enc.pe
    assert "position_enc.pe" in full_models["mask"].state_dict()
    pos, i = 7, 5  # channel 2i = sin, 2i+1 = cos
    angle = pos * math.exp(2 * i * (-math.log(10000.0) / 384))
    assert pe[pos, 0, 2 * i].item() == pytest.approx(math.sin(angle), abs=1e-5)
    assert pe[pos, 0, 2 * i + 1].item() == pytest.approx(math.cos(angle), abs=1e-5)


# -- tiny models: behaviour ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_vq() -> RVQVAE:
    torch.manual_seed(1)
    vq = RVQVAE(input_width=263, code_dim=32, output_emb_width=32, width=32).eval()
    for layer in vq.quantizer.layers:
        layer.codebook.normal_()
    return vq


@pytest.mark.parametrize("frames, tokens", [(196, 49), (199, 49), (200, 50), (40, 10)])
def test_encoder_token_count(tiny_vq, frames, tokens):
    with torch.no_grad():
        idx = tiny_vq.encode(torch.randn(2, frames, 263))
    assert idx.shape == (2, tokens, 6) and idx.dtype == torch.int64
    assert tiny_vq.token_count(frames) == tokens


def test_encode_picks_nearest_code_per_residual_layer(tiny_vq):
    x = torch.randn(1, 40, 263)
    with torch.no_grad():
        idx = tiny_vq.encode(x)
        residual = tiny_vq.encoder(x.permute(0, 2, 1)).permute(0, 2, 1)[0]  # (n, C)
        for q, layer in enumerate(tiny_vq.quantizer.layers):
            nearest = torch.cdist(residual, layer.codebook).argmin(dim=1)
            assert torch.equal(idx[0, :, q], nearest)
            residual = residual - layer.codebook[nearest]


def test_decode_minus_one_is_zero_contribution(tiny_vq):
    idx = torch.randint(0, 512, (2, 8, 6))
    only_base = idx.clone()
    only_base[..., 1:] = -1
    with torch.no_grad():
        by_padding = tiny_vq.forward_decoder(idx[..., :1])
        by_minus_one = tiny_vq.forward_decoder(only_base)
        direct = tiny_vq.decoder(tiny_vq.quantizer.layers[0].codebook[idx[..., 0]].permute(0, 2, 1))
        full = tiny_vq.forward_decoder(idx)
    assert by_padding.shape == (2, 32, 263)
    assert torch.equal(by_padding, by_minus_one)
    torch.testing.assert_close(by_minus_one, direct)
    assert not torch.allclose(full, by_minus_one)  # the residual layers do contribute


def test_encode_decode_round_trip_shape(tiny_vq):
    with torch.no_grad():
        out = tiny_vq.forward_decoder(tiny_vq.encode(torch.randn(1, 196, 263)))
    assert out.shape == (1, 196, 263) and out.dtype == torch.float32


def tiny_mask() -> MaskTransformer:
    torch.manual_seed(2)
    return MaskTransformer(code_dim=32, latent_dim=32, ff_size=64, num_layers=2, num_heads=2).eval()


def test_mask_cfg_is_two_passes_combined():
    model = tiny_mask()
    ids = torch.randint(0, 514, (2, 7))
    cond = torch.randn(2, 512)
    pad = torch.tensor([[False] * 7, [False] * 5 + [True] * 2])
    with torch.no_grad():
        c = model.trans_forward(ids, cond, pad)
        u = model.trans_forward(ids, cond, pad, force_mask=True)
        assert c.shape == (2, 512, 7)
        torch.testing.assert_close(model.forward_with_cond_scale(ids, cond, pad, 4.0), u + (c - u) * 4.0)
        assert torch.equal(model.forward_with_cond_scale(ids, cond, pad, 1.0), c)
        assert torch.equal(model.forward_with_cond_scale(ids, cond, pad, 4.0, force_mask=True), u)
        assert torch.equal(u, model.trans_forward(ids, torch.zeros_like(cond), pad))


def test_mask_padded_tokens_do_not_affect_valid_positions():
    model = tiny_mask()
    ids = torch.randint(0, 512, (1, 6))
    pad = torch.tensor([[False] * 4 + [True] * 2])
    other = ids.clone()
    other[0, 4:] = 513
    cond = torch.randn(1, 512)
    with torch.no_grad():
        a = model.trans_forward(ids, cond, pad)[..., :4]
        b = model.trans_forward(other, cond, pad)[..., :4]
    torch.testing.assert_close(a, b)


def tiny_residual(**kwargs) -> ResidualTransformer:
    torch.manual_seed(3)
    return tiny_residual_at_current_seed(**kwargs).eval()


def test_residual_weight_tying():
    model = tiny_residual()
    embed, proj = model.tied_weights()
    assert embed.shape == proj.shape == (5, 513, 32)
    for j in range(1, 5):  # E_j (embedding of layer j) is the classifier predicting layer j
        assert torch.equal(embed[j], proj[j - 1])
    assert torch.equal(embed[0], model.token_embed_weight_[0])
    assert torch.equal(proj[4], model.output_proj_weight_[0])


def test_residual_cfg_and_projection():
    model = tiny_residual()
    codes, cond = torch.randn(2, 5, 32), torch.randn(2, 512)
    pad = torch.zeros(2, 5, dtype=torch.bool)
    qids = torch.full((2,), 3)
    with torch.no_grad():
        feature = model.trans_forward(codes, qids, cond, pad)
        assert feature.shape == (2, 32, 5)
        c = model.output_project(feature, qids - 1)
        u = model.output_project(model.trans_forward(codes, qids, cond, pad, force_mask=True), qids - 1)
        assert c.shape == (2, 513, 5)
        torch.testing.assert_close(c[0], model.tied_weights()[1][2] @ feature[0])
        torch.testing.assert_close(model.forward_with_cond_scale(codes, 3, cond, pad, 5.0), u + (c - u) * 5.0)


def test_residual_unshared_variant_layout_and_official_bias_doubling():
    model = tiny_residual(share_weight=False)
    shapes = shapes_of(model)
    assert shapes["token_embed_weight"] == (5, 513, 32)
    assert shapes["output_proj_weight"] == (5, 513, 32)
    assert shapes["output_proj_bias"] == (6, 513)
    with torch.no_grad():
        model.output_proj_bias.normal_()
        feature, q = torch.randn(1, 32, 4), torch.tensor([1])
        plain = torch.einsum("bnc,bcs->bns", model.output_proj_weight[q], feature)
        bias = model.output_proj_bias[q].unsqueeze(-1)
        torch.testing.assert_close(model.output_project(feature, q), plain + (plain + bias))
        model.replicate_official_bias_doubling = False
        torch.testing.assert_close(model.output_project(feature, q), plain + bias)


def test_residual_shared_codebook_variant_saves_no_projection():
    model = tiny_residual(shared_codebook=True)
    assert not [k for k in model.state_dict() if "." not in k]  # official quirk: never saved
    embed, proj = model.tied_weights()
    assert embed.shape == (5, 513, 32) and proj is embed


# -- construction consumes the CPU RNG like the official code (docs/model.md §10) -------------------------


def test_vq_construction_rng_order():
    """Convs drawn in creation order: encoder (dilations 1,3,9 created, then reversed), then decoder."""
    nn = torch.nn
    torch.manual_seed(21)
    nn.Conv1d(263, 16, 3, 1, 1)
    for _ in range(2):
        nn.Conv1d(16, 16, 4, 2, 1)
        for d in (1, 3, 9):
            nn.Conv1d(16, 16, 3, 1, d, d), nn.Conv1d(16, 16, 1, 1, 0)
    nn.Conv1d(16, 16, 3, 1, 1)
    nn.Conv1d(16, 16, 3, 1, 1)
    for _ in range(2):
        for d in (1, 3, 9):
            nn.Conv1d(16, 16, 3, 1, d, d), nn.Conv1d(16, 16, 1, 1, 0)
        nn.Conv1d(16, 16, 3, 1, 1)
    nn.Conv1d(16, 16, 3, 1, 1)
    last = nn.Conv1d(16, 263, 3, 1, 1)
    after = torch.rand(1)
    torch.manual_seed(21)
    vq = RVQVAE(code_dim=16, output_emb_width=16, width=16)
    assert torch.equal(vq.decoder.model[6].weight, last.weight)
    assert torch.equal(torch.rand(1), after)  # codebooks are zeros: nothing else drawn


def _replay_transformer_modules(seed: int, extra_linears: list[tuple[int, int]], d: int = 32) -> None:
    nn = torch.nn
    torch.manual_seed(seed)
    nn.Linear(32, d)  # input_process.poseEmbedding
    nn.TransformerEncoderLayer(d, 2, 64, 0.2, "gelu")  # deep-copied afterwards: no draws
    for fan_in, fan_out in extra_linears:
        nn.Linear(fan_in, fan_out)


def _init_pass_draws(layers: int, d: int = 32, ff: int = 64, tail: tuple = ()) -> list[torch.Tensor]:
    shapes = [(d, 32)] + [(d, d), (ff, d), (d, ff)] * layers + list(tail)
    return [torch.empty(s).normal_(0.0, 0.02) for s in shapes]


def _linear_and_embedding_weights(model: torch.nn.Module) -> list[torch.Tensor]:
    out: list[torch.Tensor] = []

    def visit(module: torch.nn.Module) -> None:  # post-order, like Module.apply
        for child in module.children():
            visit(child)
        if isinstance(module, (torch.nn.Linear, torch.nn.Embedding)):
            out.append(module.weight)

    visit(model)
    return out


def test_mask_transformer_construction_rng_order():
    _replay_transformer_modules(31, [(512, 32), (32, 32), (32, 512)])
    torch.nn.Embedding(514, 32)
    expected = _init_pass_draws(2, tail=((32, 512), (32, 32), (512, 32), (514, 32)))
    torch.manual_seed(31)
    model = MaskTransformer(code_dim=32, latent_dim=32, ff_size=64, num_layers=2, num_heads=2)
    got = _linear_and_embedding_weights(model)
    for a, b in zip(got, expected, strict=True):
        assert torch.equal(a, b)


def test_residual_transformer_construction_rng_order():
    _replay_transformer_modules(41, [(6, 32), (512, 32), (32, 32), (32, 32)])
    raw = [torch.normal(mean=0, std=0.02, size=s) for s in ((4, 513, 32), (1, 513, 32), (1, 513, 32))]
    expected = _init_pass_draws(2, tail=((32, 6), (32, 512), (32, 32), (32, 32)))
    torch.manual_seed(41)
    model = tiny_residual_at_current_seed()
    assert torch.equal(model.embed_proj_shared_weight, raw[0])
    assert torch.equal(model.token_embed_weight_, raw[1])
    assert torch.equal(model.output_proj_weight_, raw[2])
    for a, b in zip(_linear_and_embedding_weights(model), expected, strict=True):
        assert torch.equal(a, b)


def tiny_residual_at_current_seed(**kwargs) -> ResidualTransformer:
    return ResidualTransformer(code_dim=32, latent_dim=32, ff_size=64, num_layers=2, num_heads=2, **kwargs)


def test_length_estimator_is_deterministic_in_eval():
    torch.manual_seed(0)
    model = LengthEstimator().eval()
    x = torch.randn(2, 512)
    with torch.no_grad():
        assert torch.equal(model(x), model(x))


def test_construction_for_loading_allocates_and_draws_nothing():
    """Inside meta_construction (used to load checkpoints) the full models are shapes only: no weight
    memory, no RNG draw; their keys and shapes are still the official ones."""
    from backend.models.construction import meta_construction, unset_tensors

    vq_opt = read_opt(T2M / "rvq_nq6_dc512_nc512_noshare_qdp0.2" / "opt.txt")
    mask_opt = read_opt(T2M / "t2m_nlayer8_nhead6_ld384_ff1024_cdp0.1_rvq6ns" / "opt.txt")
    res_opt = read_opt(T2M / "tres_nlayer8_ld384_ff1024_rvq6ns_cdp0.2_sw" / "opt.txt")
    torch.manual_seed(7)
    after = torch.rand(1)
    torch.manual_seed(7)
    with meta_construction():
        models = {"vq": build_vq(vq_opt), "residual": build_residual_transformer(res_opt, vq_opt),
                  "mask": build_mask_transformer(mask_opt, vq_opt),
                  "length": build_length_estimator(mask_opt)}
    assert torch.equal(torch.rand(1), after)
    for model in models.values():
        names = [name for name, _ in (*model.named_parameters(), *model.named_buffers())]
        assert unset_tensors(model) == [n for n in names if n != "position_enc.pe"]  # pe: computed on CPU
    assert shapes_of(models["vq"]) == expected_vq_shapes()
    assert n_params(models["mask"]) == 12_048_768 and n_params(models["residual"]) == 13_364_224
    assert torch.randn(2).device.type == "cpu"  # nothing leaks out of the context
