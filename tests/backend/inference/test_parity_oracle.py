"""Parity with the official MoMask code, checked against an independent "official-order oracle".

The oracle below is deliberately plain, unoptimised torch written step by step from a reading of the
official sources (``models/mask_transformer/{transformer,tools}.py``, ``models/vq/*``,
``utils/motion_process.py``, ``gen_t2m.py``, ``edit_t2m.py``, ``utils/get_opt.py``): its own network
forwards (stock torch modules under the official key names, loaded strictly from our checkpoints), the
global torch generator after ``torch.manual_seed`` (as ``fixseed`` leaves it), ``torch.distributions
.Categorical`` for the base-layer draw, ``history_sum = 0; history_sum += ...`` for the residual
history, the VQ's literal distance / straight-through / ``-1``-masked gather, float64 de-normalisation
and the torch ``recover_from_ric`` on each cropped clip. It shares no code with ``backend/``.

What is asserted: the pipeline's reference flow gives bit-identical tokens, features and joints
(mixed lengths in one batch, Gumbel and categorical base sampling, temperature ≠ 1, inpainting with
the official residual regeneration, and editing batches with padding); the fast flow agrees on ≥ 99%
of the tokens.
"""

from __future__ import annotations

import math
import re
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.distributions.categorical import Categorical

from backend.inference import sampling
from backend.inference.pipeline import MoMaskPipeline, SamplingSettings
from backend.weights.opt_file import read_opt

MASK_ID, BASE_PAD, RES_PAD = 512, 513, 512


# --- the oracle networks ---------------------------------------------------------------------------


def _stock_encoder(latent: int, heads: int, ff: int, layers: int) -> nn.Module:
    with warnings.catch_warnings():  # the official default enable_nested_tensor=True only warns
        warnings.simplefilter("ignore")
        layer = nn.TransformerEncoderLayer(d_model=latent, nhead=heads, dim_feedforward=ff, dropout=0.2,
                                           activation="gelu")
        return nn.TransformerEncoder(layer, num_layers=layers)


class _Head(nn.Module):
    def __init__(self, latent: int, out: int) -> None:
        super().__init__()
        self.dense = nn.Linear(latent, latent)
        self.LayerNorm = nn.LayerNorm(latent, eps=1e-12)
        self.poseFinal = nn.Linear(latent, out)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        h = self.dense(h)
        h = F.gelu(h)
        h = self.LayerNorm(h)
        return self.poseFinal(h).permute(1, 2, 0)


class _Holder(nn.Module):
    pass


class OracleTransformerBase(nn.Module):
    def __init__(self, code_dim: int, latent: int, ff: int, layers: int, heads: int) -> None:
        super().__init__()
        self.input_process = _Holder()
        self.input_process.poseEmbedding = nn.Linear(code_dim, latent)
        self.position_enc = _Holder()
        self.position_enc.register_buffer("pe", torch.zeros(5000, 1, latent))
        self.seqTransEncoder = _stock_encoder(latent, heads, ff, layers)
        self.cond_emb = nn.Linear(512, latent)


class OracleMask(OracleTransformerBase):
    def __init__(self, code_dim: int, latent: int, ff: int, layers: int, heads: int) -> None:
        super().__init__(code_dim, latent, ff, layers, heads)
        self.output_process = _Head(latent, 512)
        self.token_emb = nn.Embedding(514, code_dim)

    def trans_forward(self, ids, cond, padding_mask, force_mask=False):
        if force_mask:
            cond = torch.zeros_like(cond)
        x = self.token_emb(ids)
        x = x.permute((1, 0, 2))
        x = self.input_process.poseEmbedding(x)
        c = self.cond_emb(cond).unsqueeze(0)
        x = x + self.position_enc.pe[:x.shape[0], :]
        xseq = torch.cat([c, x], dim=0)
        mask = torch.cat([torch.zeros_like(padding_mask[:, 0:1]), padding_mask], dim=1)
        return self.output_process(self.seqTransEncoder(xseq, src_key_padding_mask=mask)[1:])

    def with_cond_scale(self, ids, cond, padding_mask, cond_scale):
        logits = self.trans_forward(ids, cond, padding_mask)
        if cond_scale == 1:
            return logits
        aux = self.trans_forward(ids, cond, padding_mask, force_mask=True)
        return aux + (logits - aux) * cond_scale


class OracleResidual(OracleTransformerBase):
    def __init__(self, code_dim: int, latent: int, ff: int, layers: int, heads: int) -> None:
        super().__init__(code_dim, latent, ff, layers, heads)
        self.quant_emb = nn.Linear(6, latent)
        self.output_process = _Head(latent, code_dim)
        self.embed_proj_shared_weight = nn.Parameter(torch.zeros(4, 513, code_dim))
        self.token_embed_weight_ = nn.Parameter(torch.zeros(1, 513, code_dim))
        self.output_proj_weight_ = nn.Parameter(torch.zeros(1, 513, code_dim))

    def trans_forward(self, codes, qids, cond, padding_mask, force_mask=False):
        if force_mask:
            cond = torch.zeros_like(cond)
        x = self.input_process.poseEmbedding(codes.permute((1, 0, 2)))
        q = self.quant_emb(F.one_hot(qids, num_classes=6).float()).unsqueeze(0)
        c = self.cond_emb(cond).unsqueeze(0)
        x = x + self.position_enc.pe[:x.shape[0], :]
        xseq = torch.cat([c, q, x], dim=0)
        mask = torch.cat([torch.zeros_like(padding_mask[:, 0:2]), padding_mask], dim=1)
        return self.output_process(self.seqTransEncoder(xseq, src_key_padding_mask=mask)[2:])

    def project(self, feature, qids):
        weight = torch.cat([self.embed_proj_shared_weight, self.output_proj_weight_], dim=0)[qids]
        return torch.einsum("bnc, bcs->bns", weight, feature)

    def with_cond_scale(self, codes, layer, cond, padding_mask, cond_scale):
        qids = torch.full((codes.shape[0],), layer, dtype=torch.long)
        logits = self.project(self.trans_forward(codes, qids, cond, padding_mask), qids - 1)
        if cond_scale == 1:
            return logits
        aux = self.project(self.trans_forward(codes, qids, cond, padding_mask, force_mask=True), qids - 1)
        return aux + (logits - aux) * cond_scale


def _oracle_like(ours: nn.Module, kind: type) -> nn.Module:
    state = ours.state_dict()
    layers = len({k.split(".")[2] for k in state if k.startswith("seqTransEncoder.layers.")})
    ff, latent = state["seqTransEncoder.layers.0.linear1.weight"].shape
    code_dim = state["input_process.poseEmbedding.weight"].shape[1]
    heads = ours.seqTransEncoder.layers[0].self_attn.num_heads
    oracle = kind(code_dim, latent, ff, layers, heads)
    oracle.load_state_dict(state, strict=True)
    return oracle.eval()


# --- the oracle samplers (official generate / edit / residual generate) ----------------------------


def _top_k(logits, thres=0.9):
    k = math.ceil((1 - thres) * logits.shape[-1])
    val, ind = logits.topk(k, dim=-1)
    out = torch.full_like(logits, float("-inf"))
    out.scatter_(-1, ind, val)
    return out


def _gumbel_sample(t, temperature):
    noise = torch.zeros_like(t).uniform_(0, 1)
    gumbel = -torch.log((-torch.log(noise.clamp(min=1e-20))).clamp(min=1e-20))
    return ((t / max(temperature, 1e-10)) + gumbel).argmax(dim=-1)


def _not_valid(m_lens, seq_len):
    return ~(torch.arange(seq_len).expand(len(m_lens), seq_len) < m_lens.unsqueeze(1))


def oracle_masked(model, cond, m_lens, steps, cond_scale, temperature=1.0, gsample=False,
                  tokens=None, edit_mask=None, topk=0.9):
    """MaskTransformer.generate (tokens None) or .edit with an edit mask, as officially."""
    seq_len = int(max(m_lens)) if tokens is None else tokens.shape[1]
    padding_mask = _not_valid(m_lens, seq_len)
    if tokens is None:
        ids = torch.where(padding_mask, BASE_PAD, MASK_ID)
        scores = torch.where(padding_mask, 1e5, 0.)
        count = m_lens
    else:
        edit_mask = edit_mask & ~padding_mask
        count = edit_mask.sum(dim=-1)
        ids = torch.where(edit_mask, MASK_ID, tokens)
        scores = torch.where(edit_mask, 0., 1e5)
    for timestep in torch.linspace(0, 1, steps):
        ratio = torch.cos(timestep * math.pi * 0.5)
        num_masked = torch.round(ratio * count).clamp(min=1)
        ranks = scores.argsort(dim=1).argsort(dim=1)
        is_mask = ranks < num_masked.unsqueeze(-1)
        ids = torch.where(is_mask, MASK_ID, ids)
        logits = model.with_cond_scale(ids, cond, padding_mask, cond_scale).permute(0, 2, 1)
        filtered = _top_k(logits, topk)
        if gsample:
            pred = _gumbel_sample(filtered, temperature)
        else:
            probs = F.softmax(filtered / temperature, dim=-1)
            pred = Categorical(probs).sample()
        ids = torch.where(is_mask, pred, ids)
        scores = logits.softmax(dim=-1).gather(2, pred.unsqueeze(dim=-1)).squeeze(-1)
        scores = scores.masked_fill(~is_mask, 1e5)
    return torch.where(padding_mask, -1, ids)


def oracle_residual(model, motion_ids, cond, m_lens, cond_scale):
    """ResidualTransformer.generate(temperature=1, topk 0.9) as officially."""
    embed = torch.cat([model.token_embed_weight_, model.embed_proj_shared_weight], dim=0)
    batch, seq_len = motion_ids.shape
    padding_mask = _not_valid(m_lens, seq_len)
    motion_ids = torch.where(padding_mask, RES_PAD, motion_ids)
    all_indices = [motion_ids]
    history_sum = 0
    for i in range(1, 6):
        table = embed[i - 1].unsqueeze(0).expand(batch, -1, -1)
        gathered = motion_ids.unsqueeze(-1).expand(-1, -1, table.shape[-1])
        history_sum += table.gather(1, gathered)
        logits = model.with_cond_scale(history_sum, i, cond, padding_mask, cond_scale).permute(0, 2, 1)
        pred = _gumbel_sample(_top_k(logits), 1)
        motion_ids = torch.where(padding_mask, RES_PAD, pred)
        all_indices.append(motion_ids)
    stacked = torch.stack(all_indices, dim=-1)
    return torch.where(stacked == RES_PAD, -1, stacked)


# --- the oracle VQ and joints --------------------------------------------------------------------------


def _run_stock(module, x):
    """Walk the conv stack in order; residual blocks as officially: conv path + input."""
    for child in module.children():
        if isinstance(child, nn.Conv1d):
            x = child(x)
        elif isinstance(child, nn.ReLU):
            x = F.relu(x)
        elif isinstance(child, nn.Upsample):
            x = F.interpolate(x, scale_factor=2, mode="nearest")
        elif hasattr(child, "conv1"):
            h = child.conv2(F.relu(child.conv1(F.relu(x))))
            x = h + x
        else:
            x = _run_stock(child, x)
    return x


def oracle_encode(vq, motion):
    residual = _run_stock(vq.encoder.model, motion.permute(0, 2, 1).float())
    indices = []
    for layer in vq.quantizer.layers:
        n, c, t = residual.shape
        x = residual.permute(0, 2, 1).reshape(n * t, c)
        k_w = layer.codebook.t()
        distance = torch.sum(x ** 2, dim=-1, keepdim=True) - 2 * torch.matmul(x, k_w) + \
            torch.sum(k_w ** 2, dim=0, keepdim=True)
        idx = (-distance).argmax(dim=-1)
        x_d = x + (F.embedding(idx, layer.codebook) - x)
        residual = residual - x_d.view(n, t, -1).permute(0, 2, 1).contiguous()
        indices.append(idx.view(n, t))
    return torch.stack(indices, dim=-1)


def oracle_decode(vq, indices):
    batch = indices.shape[0]
    indices = F.pad(indices, (0, 6 - indices.shape[-1]), value=-1)
    books = torch.stack([layer.codebook for layer in vq.quantizer.layers], dim=0)
    books = books.unsqueeze(1).expand(-1, batch, -1, -1)
    gather = indices.permute(2, 0, 1).unsqueeze(-1).expand(-1, -1, -1, books.shape[-1])
    absent = gather == -1.
    codes = books.gather(2, gather.masked_fill(absent, 0)).masked_fill(absent, 0.)
    return _run_stock(vq.decoder.model, codes.sum(dim=0).permute(0, 2, 1)).permute(0, 2, 1)


def oracle_recover_from_ric(data, joints_num=22):
    def qinv(q):
        mask = torch.ones_like(q)
        mask[..., 1:] = -mask[..., 1:]
        return q * mask

    def qrot(q, v):
        shape = list(v.shape)
        q, v = q.contiguous().view(-1, 4), v.contiguous().view(-1, 3)
        uv = torch.cross(q[:, 1:], v, dim=1)
        uuv = torch.cross(q[:, 1:], uv, dim=1)
        return (v + 2 * (q[:, :1] * uv + uuv)).view(shape)

    ang = torch.zeros_like(data[..., 0])
    ang[..., 1:] = data[..., :-1, 0]
    ang = torch.cumsum(ang, dim=-1)
    quat = torch.zeros(data.shape[:-1] + (4,))
    quat[..., 0], quat[..., 2] = torch.cos(ang), torch.sin(ang)
    pos = torch.zeros(data.shape[:-1] + (3,))
    pos[..., 1:, [0, 2]] = data[..., :-1, 1:3]
    pos = torch.cumsum(qrot(qinv(quat), pos), dim=-2)
    pos[..., 1] = data[..., 3]
    local = data[..., 4:(joints_num - 1) * 3 + 4]
    local = local.view(local.shape[:-1] + (-1, 3))
    local = qrot(qinv(quat[..., None, :]).expand(local.shape[:-1] + (4,)), local)
    local[..., 0] += pos[..., 0:1]
    local[..., 2] += pos[..., 2:3]
    return torch.cat([pos.unsqueeze(-2), local], dim=-2)


# --- fixtures --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pipeline(tiny_weights) -> MoMaskPipeline:
    return MoMaskPipeline.load(tiny_weights, device="cpu")


@pytest.fixture(scope="module")
def oracles(pipeline):
    models = pipeline.models
    return _oracle_like(models.mask_transformer, OracleMask), _oracle_like(models.residual_transformer,
                                                                          OracleResidual)


def official_text_to_motion(pipeline, oracles, prompts, frames, seed, steps=10, cond_scale=4.0,
                            temperature=1.0, gsample=False):
    """gen_t2m.py with given lengths: tokens, de-normalised float64 data, joints per cropped clip."""
    mask, residual = oracles
    cond = pipeline.models.text_encoder.encode(prompts, truncate_at_eot=False).float()
    token_lens = torch.LongTensor(frames) // 4
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        torch.manual_seed(seed)
        ids = oracle_masked(mask, cond, token_lens, steps, cond_scale, temperature, gsample)
        ids = oracle_residual(residual, ids, cond, token_lens, 5.0)
        data = oracle_decode(pipeline.models.vq, ids).numpy() * pipeline.std + pipeline.mean
    joints = [oracle_recover_from_ric(torch.from_numpy(d[:4 * n]).float()).numpy()
              for d, n in zip(data, token_lens.tolist(), strict=True)]
    return ids.numpy(), data, joints


# --- text to motion ----------------------------------------------------------------------------------

CASES = [  # prompts, frames, seed, extra settings
    (["a person walks forward"], [196], 0, {}),
    (["a person walks forward", "someone jumps twice", "a man kicks"], [40, 196, 100], 3, {}),
    (["a dance", "a person sits down"], [64, 17 * 4], 11, {"gumbel": True}),
    (["a person waves", "a cartwheel", "crawling"], [120, 8, 52], 5, {"temperature": 0.7, "steps": 18}),
]


@pytest.mark.parametrize(("prompts", "frames", "seed", "extra"), CASES)
def test_reference_flow_is_bit_identical_to_the_official_order_oracle(pipeline, oracles, prompts, frames,
                                                                      seed, extra) -> None:
    settings = SamplingSettings(seed=seed, flow="reference", **extra)
    got = pipeline.text_to_motion(prompts, frames, settings)
    ids, data, joints = official_text_to_motion(pipeline, oracles, prompts, frames, seed, settings.steps,
                                                temperature=settings.temperature, gsample=settings.gumbel)
    np.testing.assert_array_equal(got.tokens, ids)
    for i, length in enumerate(got.lengths):
        np.testing.assert_array_equal(got.features[i, :length], data[i, :length].astype(np.float32))
        np.testing.assert_array_equal(got.joints[i, :length], joints[i])


def test_fast_flow_agrees_with_the_oracle_on_99_percent_of_tokens(pipeline, oracles) -> None:
    same = total = 0
    for prompts, frames, seed, extra in CASES:
        settings = SamplingSettings(seed=seed, flow="fast", **extra)
        got = pipeline.text_to_motion(prompts, frames, settings).tokens
        ids, _, _ = official_text_to_motion(pipeline, oracles, prompts, frames, seed, settings.steps,
                                            temperature=settings.temperature, gsample=settings.gumbel)
        valid = ids >= 0
        same += int((got == ids)[valid].sum())
        total += int(valid.sum())
    print(f"\nfast flow vs official-order oracle: {same / total:.4f} of {total} tokens")
    assert same / total >= 0.99


def test_residual_layers_ignore_the_base_topk_like_the_official_scripts(pipeline, oracles) -> None:
    # gen_t2m passes --topkr to the masked transformer only; the residual one keeps its default 0.9.
    prompts, frames, seed = ["a person walks in a circle", "a jump"], [80, 48], 2
    mask, residual = oracles
    got = pipeline.text_to_motion(prompts, frames, SamplingSettings(seed=seed, flow="reference", topk=0.5))
    cond = pipeline.models.text_encoder.encode(prompts, truncate_at_eot=False).float()
    lens = torch.LongTensor(frames) // 4
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        torch.manual_seed(seed)
        ids = oracle_residual(residual, oracle_masked(mask, cond, lens, 10, 4.0, topk=0.5), cond, lens, 5.0)
    np.testing.assert_array_equal(got.tokens, ids.numpy())


# --- inpainting / editing -------------------------------------------------------------------------------


@pytest.mark.parametrize(("frames", "start", "end", "seed"),
                         [(199, 60, 120, 0), (160, 0, 40, 4), (100, 64, 100, 9)])
def test_inpainting_with_official_residual_matches_edit_t2m(pipeline, oracles, sample_features, frames, start,
                                                            end, seed) -> None:
    """edit_t2m.py: normalise, zero-pad to 196, encode, edit the base layer inside [start//4, end//4),
    regenerate every residual layer (``--use_res_model``, residual guidance 2), decode, crop."""
    source = sample_features[:frames]
    settings = SamplingSettings(seed=seed, flow="reference", res_cond_scale=2.0)
    got = pipeline.inpaint(source, start, end, "a person jumps", settings, regen_residual_everywhere=True)

    mask, residual = oracles
    motion = (source - pipeline.mean) / pipeline.std
    motion = np.concatenate([motion, np.zeros((196 - frames, motion.shape[1]))]) if frames < 196 else motion
    cond = pipeline.models.text_encoder.encode(["a person jumps"], truncate_at_eot=False).float()
    token_lens = torch.LongTensor([frames]) // 4
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        tokens = oracle_encode(pipeline.models.vq, torch.from_numpy(motion)[None])
        edit_mask = torch.zeros_like(tokens[..., 0])
        edit_mask[:, start // 4:end // 4] = 1
        torch.manual_seed(seed)
        ids = oracle_masked(mask, cond, token_lens, 10, 4.0, tokens=tokens[..., 0],
                            edit_mask=edit_mask.bool())
        ids = oracle_residual(residual, ids, cond, token_lens, 2.0)
        data = oracle_decode(pipeline.models.vq, ids).numpy()[0] * pipeline.std + pipeline.mean
    n = frames // 4
    np.testing.assert_array_equal(got.tokens[0], ids[0, :n].numpy())
    assert (got.start, got.end) == (start, end)
    np.testing.assert_array_equal(got.features[0, start:end], data[start:end].astype(np.float32))
    # and our encoder gives the official source tokens (what inpainting keeps by default)
    np.testing.assert_array_equal(pipeline.encode(source), tokens[0, :n].numpy())


def test_editing_a_padded_batch_matches_the_oracle(pipeline, oracles) -> None:
    """Two rows of different lengths: padded positions keep their source token, hidden by the padding
    mask; edit counts are per row (a row whose mask lies in its padding still re-masks 1 token)."""
    ours = pipeline.models.mask_transformer
    mask, _ = oracles
    gen = torch.Generator().manual_seed(5)
    tokens = torch.randint(0, 512, (3, 30), generator=gen)
    lens = torch.tensor([30, 21, 12])
    edit = torch.zeros(3, 30, dtype=torch.bool)
    edit[0, 5:15], edit[1, 15:28], edit[2, 20:25] = True, True, True   # row 2: only padding
    cond = torch.randn(3, 512, generator=gen)
    for seed, gumbel in ((1, False), (2, True)):
        with torch.no_grad():
            flow_logits = sampling.reference_flow().base_logits(
                ours, cond, sampling.padding_mask_for(lens, 30), 4.0)
            got = sampling.masked_edit(flow_logits, tokens, edit, lens, 10, gumbel=gumbel,
                                       generator=torch.Generator().manual_seed(seed))
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                want = oracle_masked(mask, cond, lens, 10, 4.0, gsample=gumbel, tokens=tokens, edit_mask=edit)
        assert torch.equal(got, want)


# --- opt.txt ---------------------------------------------------------------------------------------------


def _official_get_opt_values(path: Path) -> dict:
    """utils/get_opt.py's value rules on the raw lines."""
    values = {}
    for line in path.read_text().splitlines(keepends=True):
        if line.strip() in ("-------------- End ----------------", "------------ Options -------------",
                            "\n"):
            continue
        key, value = line.strip("\n").split(": ")
        bare = str(value).strip().lstrip("-").lstrip("+")
        if value in ("True", "False"):
            values[key] = value == "True"
        elif re.match(r"^[-+]?[0-9]+\.[0-9]+$", bare):
            values[key] = float(value)
        elif bare.isdigit():
            values[key] = int(value)
        else:
            values[key] = str(value)
    # what get_opt then sets whatever the file says (paths, is_continue and device are not ours to keep)
    values["which_epoch"] = "finest"
    values["joints_num"], values["dim_pose"] = {"t2m": (22, 263), "kit": (21, 251)}[values["dataset_name"]]
    values.update(max_motion_length=196, max_motion_frame=196, max_motion_token=55, dim_word=300,
                  is_train=False)
    values.setdefault("unit_length", 4)
    values["num_classes"] = 200 // values["unit_length"]
    values.pop("is_continue", None)
    return values


@pytest.mark.parametrize("path", sorted((Path(__file__).resolve().parents[3] / "backend" / "weights"
                                         / "official_opt").rglob("opt.txt")), ids=lambda p: p.parent.name)
def test_opt_files_parse_with_the_official_types(path: Path) -> None:
    official = _official_get_opt_values(path)
    ours = vars(read_opt(path))
    for key, value in official.items():
        assert type(ours[key]) is type(value) and ours[key] == value, key
