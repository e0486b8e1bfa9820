import pytest
import torch

import foundry
from foundry.models import BackboneConfig, preset_config
from foundry.models.patches import morton_order


def test_vit_s_preset_shape_and_size():
    model = foundry.create_model("vit-s")
    c = model.config
    assert (c.num_groups, c.group_size, c.width, c.depth, c.heads) == (64, 32, 384, 12, 6)
    n_params = sum(p.numel() for p in model.parameters())
    assert 21e6 < n_params < 23e6  # ~22 M, as the published ViT-S teachers


def test_forward_api_shapes(cloud):
    model = foundry.create_model("tiny").eval()
    tokens, centers = model.forward_tokens(cloud)
    assert tokens.shape == (2, 16, 32) and centers.shape == (2, 16, 3)
    feats = model.forward_features(cloud)
    assert feats.shape == (2, model.feature_dim) == (2, 64)
    layers, _ = model.forward_layers(cloud, [0, -1])
    assert len(layers) == 2 and torch.allclose(layers[1], tokens, atol=1e-6)


def test_centers_are_input_points(cloud):
    model = foundry.create_model("tiny").eval()
    _, centers = model.forward_tokens(cloud)
    d = (centers[:, :, None] - cloud[:, None]).norm(dim=-1).min(-1).values
    assert d.max() < 1e-6


@pytest.mark.parametrize("overrides", [
    dict(qkv_bias=True),
    dict(cls_token=True, pooling="cls+max"),
    dict(tokenizer_width=24),
    dict(pos_embed="sincos"),
    dict(causal=True, patch_order="morton"),
    dict(pos_every_block=False, pooling="max"),
])
def test_teacher_variants_run_and_backprop(cloud, overrides):
    model = foundry.create_model("tiny", **overrides).train()
    feats = model.forward_features(cloud)
    assert feats.shape[0] == 2 and torch.isfinite(feats).all()
    feats.sum().backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert any(g is not None and g.abs().sum() > 0 for g in grads)


def test_causal_mask_changes_only_later_tokens(cloud):
    model = foundry.create_model("tiny", causal=True).eval()
    tokens, _ = model.tokenize(cloud)
    centers = model.tokenize(cloud)[1]
    out1, _, _ = model.encode(tokens, centers)
    tokens2 = tokens.clone()
    tokens2[:, -1] += 1.0  # perturb the last token: earlier outputs must not change
    out2, _, _ = model.encode(tokens2, centers)
    assert torch.allclose(out1[:, :-1], out2[:, :-1], atol=1e-5)
    assert not torch.allclose(out1[:, -1], out2[:, -1])


def test_morton_order_is_a_permutation():
    c = torch.rand(3, 20, 3)
    order = morton_order(c)
    assert torch.equal(order.sort(1).values, torch.arange(20).expand(3, -1))


def test_num_groups_override_for_large_clouds():
    model = foundry.create_model("tiny").eval()
    pts = torch.randn(1, 2048, 3)
    tokens, centers = model.forward_tokens(pts, num_groups=64)
    assert tokens.shape == (1, 64, 32)


def test_config_validation_errors():
    with pytest.raises(ValueError, match="cls_token"):
        BackboneConfig(pooling="cls+max", cls_token=False)
    with pytest.raises(ValueError, match="divisible"):
        BackboneConfig(width=10, heads=3)
    with pytest.raises(ValueError, match="unknown config option"):
        preset_config("tiny").replace(widht=3)
    with pytest.raises(KeyError, match="unknown model preset"):
        foundry.create_model("vit-xxl")


def test_sdpa_attention_matches_explicit_softmax():
    from foundry.models.layers import Attention

    torch.manual_seed(0)
    attn = Attention(16, 4, qkv_bias=True).eval()
    x = torch.randn(2, 5, 16)
    b, n, c = x.shape
    q, k, v = attn.qkv(x).reshape(b, n, 3, 4, 4).permute(2, 0, 3, 1, 4)
    w = (q @ k.transpose(-2, -1) / 2.0).softmax(-1)
    ref = attn.proj((w @ v).transpose(1, 2).reshape(b, n, c))
    assert torch.allclose(attn(x), ref, atol=1e-5)


def _plain_tokenizer(pe, x):
    """The mini-PointNet as published: the pooled feature concatenated to every point."""
    h = torch.relu(pe._bn(pe.bn1, pe.conv1a(x)))
    h = pe.conv1b(h)
    h = torch.cat([h.amax(dim=2, keepdim=True).expand_as(h), h], dim=-1)
    return pe.conv2b(torch.relu(pe._bn(pe.bn2, pe.conv2a(h)))).amax(dim=2)


@pytest.mark.parametrize("training", [False, True])
def test_tokenizer_is_the_published_formula(training):
    """Eval mode folds each BatchNorm into its Linear, both modes compute the pooled half of the second
    MLP once per patch: the same tokens and gradients as the plain formula (BatchNorm on running
    statistics in eval, on the batch's in training)."""
    from foundry.models.tokenizer import PointNetPatchEmbed

    torch.manual_seed(0)
    pe = PointNetPatchEmbed(48, (16, 32, 64))
    for bn in (pe.bn1, pe.bn2):  # statistics and affine parameters far from the identity
        bn.running_mean.uniform_(-1, 1)
        bn.running_var.uniform_(0.2, 3)
        bn.weight.data.uniform_(0.5, 2)
        bn.bias.data.uniform_(-1, 1)
    pe.train(training)
    x = torch.randn(2, 5, 7, 3)
    want = _plain_tokenizer(pe, x)
    want.square().sum().backward()
    want_grads = [p.grad.clone() for p in pe.parameters()]
    pe.zero_grad()
    got = pe(x)
    assert got.shape == (2, 5, 48)
    assert torch.allclose(got, want, atol=1e-5, rtol=1e-5)
    got.square().sum().backward()
    for p, g in zip(pe.parameters(), want_grads):
        assert torch.allclose(p.grad, g, atol=1e-4, rtol=1e-4)
