"""Official checkpoint layouts -> Foundry.

Each test builds, at a tiny size, a model in the *source project's own module structure*
(Conv1d + BatchNorm1d mini-PointNet in `first_conv` / `second_conv` Sequentials, a separate
positional MLP, blocks holding `qkv`, ...), so that its `state_dict()` has that project's exact key
names and shapes; saves it the way the project does; loads it with `load_official`; and checks that
Foundry's forward matches the source-structured forward on the same grouping.
"""
import math

import pytest
import torch
from torch import nn

import foundry
from foundry.models.official import load_official, convert_official, official_to_foundry
from foundry.validation import FoundryInputError

W, DEPTH, HEADS = 32, 2, 2
HID = (16, 32, 64)  # first_conv 3->16->32, second_conv 64->64->out
ATOL = 1e-5


# -- source-structured re-implementations (tiny) ------------------------------------------------
class SrcMiniPointNet(nn.Module):
    def __init__(self, out, first_bias=True):
        super().__init__()
        h1, h2, h3 = HID
        self.first_conv = nn.Sequential(nn.Conv1d(3, h1, 1, bias=first_bias), nn.BatchNorm1d(h1), nn.ReLU(),
                                        nn.Conv1d(h1, h2, 1))
        self.second_conv = nn.Sequential(nn.Conv1d(2 * h2, h3, 1, bias=first_bias), nn.BatchNorm1d(h3), nn.ReLU(),
                                         nn.Conv1d(h3, out, 1))
        self.out = out

    def forward(self, groups):  # (B, G, K, 3)
        b, g, k, _ = groups.shape
        f = self.first_conv(groups.reshape(b * g, k, 3).transpose(2, 1))
        glob = f.max(dim=2, keepdim=True).values
        f = self.second_conv(torch.cat([glob.expand(-1, -1, k), f], dim=1))
        return f.max(dim=2).values.reshape(b, g, self.out)


class SrcAttention(nn.Module):
    def __init__(self, dim, heads, qkv_bias):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        attn = (q @ k.transpose(-2, -1) * (c // self.heads) ** -0.5).softmax(-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(b, n, c))


class SrcMlp(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.fc1, self.act, self.fc2 = nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class SrcBlock(nn.Module):
    def __init__(self, dim, heads, qkv_bias=False):
        super().__init__()
        self.norm1, self.attn = nn.LayerNorm(dim), SrcAttention(dim, heads, qkv_bias)
        self.norm2, self.mlp = nn.LayerNorm(dim), SrcMlp(dim)

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class SrcTransformerEncoder(nn.Module):
    """Point-MAE / Point-BERT: `blocks.blocks.N`, positions added before every block."""

    def __init__(self, dim, depth, heads, qkv_bias=False):
        super().__init__()
        self.blocks = nn.ModuleList(SrcBlock(dim, heads, qkv_bias) for _ in range(depth))

    def forward(self, x, pos):
        for blk in self.blocks:
            x = blk(x + pos)
        return x


def src_pos(dim):
    return nn.Sequential(nn.Linear(3, 16), nn.GELU(), nn.Linear(16, dim))


class SrcMAEEncoder(nn.Module):  # Point-MAE MaskTransformer (MAE_encoder)
    def __init__(self):
        super().__init__()
        self.encoder = SrcMiniPointNet(W)
        self.pos_embed = src_pos(W)
        self.blocks = SrcTransformerEncoder(W, DEPTH, HEADS)
        self.norm = nn.LayerNorm(W)

    def forward(self, nbhd, center):
        return self.norm(self.blocks(self.encoder(nbhd), self.pos_embed(center)))


class SrcPointMAE(nn.Module):  # Point_MAE pretraining model
    def __init__(self):
        super().__init__()
        self.MAE_encoder = SrcMAEEncoder()
        self.mask_token = nn.Parameter(torch.randn(1, 1, W))
        self.decoder_pos_embed = src_pos(W)
        self.MAE_decoder = nn.Module()
        self.MAE_decoder.blocks = nn.ModuleList(SrcBlock(W, HEADS) for _ in range(1))
        self.MAE_decoder.norm = nn.LayerNorm(W)
        self.increase_dim = nn.Sequential(nn.Conv1d(W, 3 * 16, 1))

    def features(self, nbhd, center):
        x = self.MAE_encoder(nbhd, center)
        return torch.cat([x.mean(1), x.max(1).values], -1), x


class SrcClsTransformer(nn.Module):
    """Point-MAE / Point-BERT fine-tuning PointTransformer (and Point-BERT's MaskTransformer)."""

    def __init__(self, reduce=None, heads_extra=False):
        super().__init__()
        tok = reduce or W
        self.encoder = SrcMiniPointNet(tok)
        if reduce:
            self.reduce_dim = nn.Linear(reduce, W)
        self.cls_token = nn.Parameter(torch.randn(1, 1, W))
        self.cls_pos = nn.Parameter(torch.randn(1, 1, W))
        if heads_extra:  # Point-BERT pretraining extras
            self.mask_token = nn.Parameter(torch.randn(1, 1, W))
        self.pos_embed = src_pos(W)
        self.blocks = SrcTransformerEncoder(W, DEPTH, HEADS)
        self.norm = nn.LayerNorm(W)
        if heads_extra:
            self.lm_head = nn.Linear(W, 64)
            self.cls_head = nn.Sequential(nn.Linear(W, 16), nn.GELU(), nn.Linear(16, 16))
        else:
            self.cls_head_finetune = nn.Sequential(nn.Linear(2 * W, 16), nn.ReLU(), nn.Dropout(0.5), nn.Linear(16, 10))

    def features(self, nbhd, center):
        t = self.encoder(nbhd)
        if hasattr(self, "reduce_dim"):
            t = self.reduce_dim(t)
        b = t.shape[0]
        x = torch.cat([self.cls_token.expand(b, -1, -1), t], 1)
        pos = torch.cat([self.cls_pos.expand(b, -1, -1), self.pos_embed(center)], 1)
        x = self.norm(self.blocks(x, pos))
        return torch.cat([x[:, 0], x[:, 1:].max(1).values], -1), x[:, 1:]


class SrcPointBERT(nn.Module):  # Point_BERT pretraining (MoCo): transformer_q / transformer_k / dvae
    def __init__(self):
        super().__init__()
        self.transformer_q = SrcClsTransformer(reduce=24, heads_extra=True)
        self.transformer_k = SrcClsTransformer(reduce=24, heads_extra=True)
        self.dvae = nn.Module()
        self.dvae.encoder = SrcMiniPointNet(24)
        self.register_buffer("queue", torch.randn(16, 8))


class SrcJEPAEncoder(nn.Module):  # pointjepa TransformerEncoder: blocks.N + norm inside
    def __init__(self):
        super().__init__()
        self.blocks = nn.ModuleList(SrcBlock(W, HEADS, qkv_bias=True) for _ in range(DEPTH))
        self.norm = nn.LayerNorm(W)

    def forward(self, x, pos):
        for blk in self.blocks:
            x = blk(x + pos)
        return self.norm(x)


class SrcPointJEPA(nn.Module):
    def __init__(self, finetune=False, cls=False):
        super().__init__()
        self.positional_encoding = src_pos(W)
        self.tokenizer = nn.Module()
        self.tokenizer.embedding = nn.Module()
        self.tokenizer.embedding.encoder = SrcMiniPointNet(W, first_bias=False)
        if finetune:
            self.encoder = SrcJEPAEncoder()
            if cls:
                self.cls_token = nn.Parameter(torch.randn(W))
                self.cls_pos = nn.Parameter(torch.randn(W))
            self.cls_head = nn.Linear(2 * W, 10)
        else:
            self.mask_token = nn.Parameter(torch.randn(W))
            self.student = SrcJEPAEncoder()
            self.teacher = nn.Module()
            self.teacher.ema_model = SrcJEPAEncoder()
            self.predictor = nn.Module()
            self.predictor.predictor_embed = nn.Linear(W, 16)
        self.finetune, self.cls = finetune, cls

    def features(self, nbhd, center):
        t = self.tokenizer.embedding.encoder(nbhd)
        pos = self.positional_encoding(center)
        enc = self.encoder if self.finetune else self.student
        if self.cls:
            b = t.shape[0]
            t = torch.cat([self.cls_token.reshape(1, 1, W).expand(b, -1, -1), t], 1)
            pos = torch.cat([self.cls_pos.reshape(1, 1, W).expand(b, -1, -1), pos], 1)
        x = enc(t, pos)
        if self.cls:
            x = x[:, 1:]
        return torch.cat([x.max(1).values, x.mean(1)], -1), x  # Point-JEPA's order: max, then mean


def randomize(module, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in module.state_dict().items():
            if t.is_floating_point():
                if name.endswith("running_var"):
                    t.copy_(torch.rand(t.shape, generator=g) + 0.5)
                else:
                    t.copy_(torch.randn(t.shape, generator=g) * (0.3 if t.dim() > 1 else 0.1)
                            + (1.0 if name.endswith(("norm1.weight", "norm2.weight", "norm.weight")) else 0.0))
    return module.eval()


def tiny_kw():
    return dict(heads=HEADS, num_groups=16, group_size=16, num_points=256)


def save(tmp_path, obj, name="ckpt.pth"):
    p = tmp_path / name
    torch.save(obj, p)
    return p


def fp16(sd):
    return {k: (v.half() if v.is_floating_point() else v) for k, v in sd.items()}


def check_match(model, src_features, cloud, mean_max_order="mean,max"):
    with torch.no_grad():
        nbhd, centers = model.group(cloud)
        ref_feat, ref_tokens = src_features(nbhd, centers)
        tokens, c2 = model.forward_tokens(cloud)
        feats = model.forward_features(cloud)
    assert torch.equal(centers, c2)
    assert torch.allclose(tokens, ref_tokens, atol=ATOL), (tokens - ref_tokens).abs().max()
    if mean_max_order == "max,mean":
        ref_feat = torch.cat([ref_feat[:, W:], ref_feat[:, :W]], -1)
    assert torch.allclose(feats, ref_feat, atol=ATOL), (feats - ref_feat).abs().max()


# -- layouts -----------------------------------------------------------------------------------
def test_point_mae_pretrain(tmp_path, cloud):
    src = randomize(SrcPointMAE())
    p = save(tmp_path, {"base_model": src.state_dict(), "epoch": 3})
    model = load_official(p, **tiny_kw())
    info = model.checkpoint_info
    assert info["layout"] == "point-mae-pretrain" and info["source_epoch"] == 3
    assert set(info["ignored_prefixes"]) == {"MAE_decoder", "decoder_pos_embed", "increase_dim", "mask_token"}
    assert not model.config.cls_token and not model.config.qkv_bias and model.config.pooling == "mean+max"
    check_match(model, src.features, cloud)


def test_point_mae_pretrain_fp16_and_ddp_prefix(tmp_path, cloud):
    src = randomize(SrcPointMAE())
    sd = {"module." + k: v for k, v in fp16(src.state_dict()).items()}
    model = load_official(save(tmp_path, {"base_model": sd}), **tiny_kw())
    assert all(p.dtype == torch.float32 for p in model.parameters())
    src.half().float()  # the same rounding as the file
    check_match(model, src.features, cloud)


def test_point_mae_finetune(tmp_path, cloud):
    src = randomize(SrcClsTransformer())
    p = save(tmp_path, {"base_model": {"module." + k: v for k, v in src.state_dict().items()}, "epoch": 1})
    model = load_official(p, **tiny_kw())
    assert model.checkpoint_info["layout"] == "point-mae-finetune"
    assert model.config.cls_token and model.config.pooling == "cls+max"
    check_match(model, src.features, cloud)


def test_point_bert_finetune(tmp_path, cloud):
    src = randomize(SrcClsTransformer(reduce=24))
    model = load_official(save(tmp_path, {"base_model": src.state_dict()}), **tiny_kw())
    assert model.checkpoint_info["layout"] == "point-bert-finetune"
    assert model.config.tokenizer_width == 24 and model.config.width == W
    check_match(model, src.features, cloud)


def test_point_bert_pretrain_query_branch(tmp_path, cloud):
    src = randomize(SrcPointBERT())
    sd = {"module." + k: v for k, v in src.state_dict().items()}
    model = load_official(save(tmp_path, {"base_model": sd, "epoch": 299}), **tiny_kw())
    info = model.checkpoint_info
    assert info["layout"] == "point-bert-pretrain"
    assert {"transformer_k", "dvae", "queue"} <= set(info["ignored_prefixes"])
    check_match(model, src.transformer_q.features, cloud)


def test_point_jepa_pretrain_lightning(tmp_path, cloud):
    src = randomize(SrcPointJEPA())
    p = save(tmp_path, {"state_dict": src.state_dict(), "epoch": 499, "global_step": 10})
    model = load_official(p, **tiny_kw())
    assert model.checkpoint_info["layout"] == "point-jepa-pretrain"
    assert model.config.qkv_bias and model.config.pooling == "mean+max"
    assert torch.count_nonzero(model.patch_embed.conv1a.bias) == 0  # bias-free conv before BatchNorm
    check_match(model, src.features, cloud, mean_max_order="max,mean")


@pytest.mark.parametrize("cls", [False, True])
def test_point_jepa_finetune(tmp_path, cloud, cls):
    src = randomize(SrcPointJEPA(finetune=True, cls=cls))
    model = load_official(save(tmp_path, {"state_dict": src.state_dict()}), **tiny_kw())
    assert model.checkpoint_info["layout"] == "point-jepa-finetune"
    assert model.config.cls_token == cls
    check_match(model, src.features, cloud, mean_max_order="max,mean")


class SrcGPTBlock(nn.Module):  # PointGPT models/GPT.py Block (sequence-first)
    def __init__(self):
        super().__init__()
        self.ln_1, self.ln_2 = nn.LayerNorm(W), nn.LayerNorm(W)
        self.attn = nn.MultiheadAttention(W, HEADS)
        self.mlp = nn.Sequential(nn.Linear(W, 4 * W), nn.GELU(), nn.Linear(4 * W, W))

    def forward(self, x, attn_mask):
        x = self.ln_1(x)
        a, _ = self.attn(x, x, x, attn_mask=attn_mask, need_weights=False)
        x = x + a
        return x + self.mlp(self.ln_2(x))


class SrcGPTExtractor(nn.Module):
    def __init__(self, finetune):
        super().__init__()
        self.sos = nn.Parameter(torch.randn(W))
        self.layers = nn.ModuleList(SrcGPTBlock() for _ in range(DEPTH))
        self.ln_f = nn.LayerNorm(W)
        self.increase_dim = nn.Sequential(nn.Conv1d(W, 3 * 16, 1))
        if finetune:
            self.cls_head_finetune = nn.Sequential(nn.Linear(2 * W, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 10))
            self.cls_norm = nn.LayerNorm(W)

    def forward(self, h, pos, attn_mask, classify=False):
        b = h.shape[0]
        h, pos = h.transpose(0, 1), pos.transpose(0, 1)
        sos = torch.ones(1, b, W) * self.sos
        h = torch.cat([sos, h if classify else h[:-1]], 0)
        for layer in self.layers:
            h = layer(h + pos, attn_mask)
        h = self.ln_f(h).transpose(0, 1)
        if not classify:
            return h
        h = self.cls_norm(h)
        return torch.cat([h[:, 1], h[:, 2:].max(1).values], -1), h


def src_sine(xyz, temperature):  # PositionEmbeddingCoordsSine(3, W, temperature), written from its formula
    f = W // 3 // 2 * 2
    i = torch.arange(f, dtype=torch.float32)
    dim_t = temperature ** (2 * torch.div(i, 2, rounding_mode="floor") / f)
    div = (xyz * 2 * math.pi).unsqueeze(-1) / dim_t
    emb = torch.stack([div[..., 0::2].sin(), div[..., 1::2].cos()], -1).reshape(*xyz.shape[:-1], -1)
    return nn.functional.pad(emb, (0, W - emb.shape[-1]))


def causal(n):
    return torch.ones(n, n, dtype=torch.bool).triu(1)  # True = blocked (nn.MultiheadAttention)


class SrcGPTPretrain(nn.Module):  # PointGPT: the GPT_Transformer inside the pretraining model
    def __init__(self, temperature=1.0):
        super().__init__()
        self.GPT_Transformer = nn.Module()
        g = self.GPT_Transformer
        g.encoder = SrcMiniPointNet(W)
        g.blocks = SrcGPTExtractor(finetune=False)
        g.generator_blocks = nn.Module()
        g.generator_blocks.layers = nn.ModuleList(SrcGPTBlock() for _ in range(1))
        g.generator_blocks.ln_f = nn.LayerNorm(W)
        g.sos_pos = nn.Parameter(torch.randn(1, 1, W))
        g.norm = nn.LayerNorm(W)
        self.temperature = temperature

    def shifted_tokens(self, nbhd, center):
        """PointGPT's own pretraining forward: input [sos, t_1..t_{L-1}] (shifted by one)."""
        g = self.GPT_Transformer
        t = g.encoder(nbhd)
        b, n, _ = t.shape
        pos = torch.cat([g.sos_pos.expand(b, -1, -1), src_sine(center[:, :-1], self.temperature)], 1)
        return g.blocks(t, pos, causal(n), classify=False)

    def full_tokens(self, nbhd, center):
        """The same network on the unshifted sequence [sos, t_1..t_L]; patch outputs."""
        g = self.GPT_Transformer
        t = g.encoder(nbhd)
        b, n, _ = t.shape
        h = torch.cat([(torch.ones(b, 1, W) * g.blocks.sos), t], 1).transpose(0, 1)
        pos = torch.cat([g.sos_pos.expand(b, -1, -1), src_sine(center, self.temperature)], 1).transpose(0, 1)
        for layer in g.blocks.layers:
            h = layer(h + pos, causal(n + 1))
        x = g.blocks.ln_f(h).transpose(0, 1)[:, 1:]
        return torch.cat([x.mean(1), x.max(1).values], -1), x


class SrcGPTFinetune(nn.Module):  # PointGPT fine-tuning PointTransformer
    def __init__(self):
        super().__init__()
        self.encoder = SrcMiniPointNet(W)
        self.blocks = SrcGPTExtractor(finetune=True)
        self.generator_blocks = nn.Module()
        self.generator_blocks.layers = nn.ModuleList(SrcGPTBlock() for _ in range(1))
        self.norm = nn.LayerNorm(W)
        self.cls_token = nn.Parameter(torch.randn(1, 1, W))
        self.cls_pos = nn.Parameter(torch.randn(1, 1, W))
        self.sos_pos = nn.Parameter(torch.randn(1, 1, W))

    def features(self, nbhd, center):
        t = self.encoder(nbhd)
        b, n, _ = t.shape
        pos = torch.cat([self.sos_pos.expand(b, -1, -1), src_sine(center, 1.0)], 1)
        x = torch.cat([self.cls_token.expand(b, -1, -1), t], 1)
        pos = torch.cat([self.cls_pos.expand(b, -1, -1), pos], 1)
        feat, h = self.blocks(x, pos, causal(n + 2), classify=True)
        return feat, h[:, 2:]


def src_chain_order(center):  # PointGPT's "simplified morton sorting", one cloud at a time
    out = []
    for c in center:
        d = torch.cdist(c, c)
        d.fill_diagonal_(float("inf"))
        seq, seen = [0], {0}
        for _ in range(len(c) - 1):
            row = d[seq[-1]].clone()
            row[list(seen)] = float("inf")
            nxt = int(row.argmin())
            seq.append(nxt)
            seen.add(nxt)
        out.append(seq)
    return torch.tensor(out)


def test_pointgpt_patch_order(cloud):
    from foundry.ops import group_patches

    src = randomize(SrcGPTPretrain())
    model = load_official_sd({"base_model": src.state_dict()})
    assert model.config.outlier_filter  # on by default, as every model's grouping
    nbhd0, c0 = group_patches(cloud, 16, 16, outlier_filter=True)
    order = src_chain_order(c0)
    nbhd, centers = model.group(cloud)
    assert torch.equal(centers, torch.stack([c0[b, order[b]] for b in range(len(order))]))


def load_official_sd(obj, tmp=None, **kw):
    import tempfile
    from pathlib import Path

    d = Path(tmp or tempfile.mkdtemp())
    return load_official(save(d, obj), **{**tiny_kw(), **kw})


def test_pointgpt_pretrain(tmp_path, cloud):
    src = randomize(SrcGPTPretrain())
    model = load_official_sd({"base_model": {"module." + k: v for k, v in src.state_dict().items()}}, tmp_path)
    info = model.checkpoint_info
    assert info["layout"] == "pointgpt-pretrain" and model.kind == "pointgpt"
    assert {"generator_blocks", "blocks.increase_dim", "norm"} <= set(info["ignored_prefixes"])
    check_match(model, src.full_tokens, cloud)
    with torch.no_grad():  # PointGPT's own (shifted) pretraining forward agrees position by position
        nbhd, centers = model.group(cloud)
        shifted = src.shifted_tokens(nbhd, centers)
        tokens, _ = model.forward_tokens(cloud)
    assert torch.allclose(tokens[:, :-1], shifted[:, 1:], atol=ATOL)


def test_pointgpt_sine_temperature(tmp_path, cloud):
    src = randomize(SrcGPTPretrain(temperature=10000.0))
    model = load_official_sd({"base_model": src.state_dict()}, tmp_path, pos_temperature=10000.0)
    check_match(model, src.full_tokens, cloud)


def test_pointgpt_finetune_and_roundtrip(tmp_path, cloud):
    src = randomize(SrcGPTFinetune())
    model = load_official_sd({"base_model": src.state_dict()}, tmp_path)
    assert model.checkpoint_info["layout"] == "pointgpt-finetune" and model.config.pooling == "cls+max"
    check_match(model, src.features, cloud)
    layers, _ = model.forward_layers(cloud, [-1])
    assert torch.allclose(layers[0], model.forward_tokens(cloud)[0], atol=1e-6)
    out = foundry.save(model, tmp_path / "gpt.safetensors")
    again = foundry.load(out)
    assert again.kind == "pointgpt"
    check_match(again, src.features, cloud)


def test_pointgpt_large_is_refused(tmp_path):
    sd = randomize(SrcGPTPretrain()).state_dict()
    sd["GPT_Transformer.encoder.first_conv.4.weight"] = torch.ones(32)
    with pytest.raises(FoundryInputError, match="PointGPT-B/L"):
        load_official_sd({"base_model": sd}, tmp_path)


# -- conversion ----------------------------------------------------------------------------------
def test_convert_official_roundtrip(tmp_path, cloud):
    src = randomize(SrcPointMAE())
    p = save(tmp_path, {"base_model": src.state_dict()})
    out = convert_official(p, tmp_path / "mae.safetensors", **tiny_kw())
    model = foundry.load(out)
    assert model.checkpoint_info["layout"] == "point-mae-pretrain"
    check_match(model, src.features, cloud)


def test_models_command_convert(tmp_path, capsys):
    from foundry.cli import main

    src = randomize(SrcPointMAE())
    p = save(tmp_path, {"base_model": src.state_dict()})
    out = tmp_path / "x.safetensors"
    assert main(["models", "convert", str(p), str(out), "--heads", "2", "--num-groups", "16",
                 "--group-size", "16"]) == 0
    assert out.exists() and foundry.load(out).config.heads == 2
    assert main(["models"]) == 0
    assert "teacher-vits" in capsys.readouterr().out


# -- bad files -----------------------------------------------------------------------------------
def test_truncated_file(tmp_path):
    src = randomize(SrcPointMAE())
    p = save(tmp_path, {"base_model": src.state_dict()})
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(FoundryInputError, match="truncated"):
        load_official(p)
    empty = tmp_path / "empty.pth"
    empty.write_bytes(b"")
    with pytest.raises(FoundryInputError, match="empty"):
        load_official(empty)


def test_unknown_layout_and_other_models(tmp_path):
    resnet_like = {"conv1.weight": torch.zeros(8, 3, 3, 3), "fc.weight": torch.zeros(10, 8)}
    with pytest.raises(FoundryInputError, match="unknown checkpoint layout"):
        load_official(save(tmp_path, {"state_dict": resnet_like}))
    with pytest.raises(FoundryInputError, match="not a dict|no tensors"):
        load_official(save(tmp_path, [1, 2, 3], "list.pth"))
    with pytest.raises(FoundryInputError, match="Foundry weights"):
        load_official(save(tmp_path, foundry.create_model("tiny").state_dict(), "foundry.pth"))


def test_missing_keys_are_named(tmp_path):
    sd = randomize(SrcPointMAE()).state_dict()
    del sd["MAE_encoder.blocks.blocks.1.attn.proj.weight"]
    with pytest.raises(FoundryInputError, match=r"MAE_encoder\.blocks\.blocks\.1\.attn\.proj\.weight"):
        load_official(save(tmp_path, {"base_model": sd}), **tiny_kw())
    sd = randomize(SrcPointMAE()).state_dict()
    for k in [k for k in sd if k.startswith("MAE_encoder.blocks.blocks.0.")]:
        del sd[k]
    with pytest.raises(FoundryInputError, match="blocks \\[0\\] are missing"):
        load_official(save(tmp_path, {"base_model": sd}), **tiny_kw())


def test_wrong_heads_override_is_an_input_error(tmp_path):
    p = save(tmp_path, {"base_model": randomize(SrcPointMAE()).state_dict()})
    with pytest.raises(FoundryInputError):
        load_official(p, heads=5)  # 32 is not divisible by 5
    with pytest.raises(FoundryInputError):
        load_official(p, no_such_option=1)


def test_load_dispatches_pth(tmp_path, cloud):
    src = randomize(SrcPointMAE())
    p = save(tmp_path, {"base_model": src.state_dict()})
    # api.load passes keyword overrides on to load_official
    model = foundry.load(p, **tiny_kw())
    check_match(model, src.features, cloud)


# -- the real reference file in ../shared and the shipped teacher ----------------------------------
def test_reference_checkpoint_maps_fully(shared_dir):
    path = shared_dir / "checkpoints" / "point-mae-reference-vits" / "pretrain.pth"
    if not path.exists():
        pytest.skip("reference checkpoint not present")
    raw = torch.load(path, map_location="cpu", weights_only=True)["base_model"]
    enc_keys = {k for k in raw if k.startswith("MAE_encoder.")}
    cfg, mapped, info = official_to_foundry(raw, source=str(path))
    assert info["layout"] == "point-mae-pretrain"
    assert info["mapped_tensors"] == len(enc_keys)  # every encoder tensor is used
    assert set(info["ignored_prefixes"]) == {"MAE_decoder", "decoder_pos_embed", "increase_dim", "mask_token"}
    assert (cfg.width, cfg.depth, cfg.heads, cfg.tokenizer_hidden) == (384, 12, 6, (128, 256, 512))
    assert all(torch.isfinite(v).all() for v in mapped.values() if v.is_floating_point())
    from foundry.hub import shipped_models

    if "teacher-vits" not in shipped_models():
        return
    model = foundry.load("teacher-vits")  # the shipped conversion of this file
    shipped = model.state_dict()
    assert shipped.keys() == mapped.keys()
    assert all(torch.equal(shipped[k], mapped[k].to(shipped[k].dtype)) for k in mapped)  # fp16 round trip is exact


def test_shipped_teacher_vits():
    from foundry.hub import model_card, shipped_models

    if "teacher-vits" not in shipped_models():
        pytest.skip("teacher-vits is not shipped in this build")
    model = foundry.load("teacher-vits")
    info = model.checkpoint_info
    assert info["layout"] == "point-mae-pretrain" and "OUTSIDE this project's code" in info["origin"]
    assert model.feature_dim == 768 and model.config.pooling == "mean+max"
    assert "linear SVM" in model_card("teacher-vits")
    with torch.no_grad():
        f = model.forward_features(torch.nn.functional.normalize(torch.randn(1, 1024, 3), dim=-1))
    assert f.shape == (1, 768) and torch.isfinite(f).all()
