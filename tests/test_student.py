"""The Foundry student and its baselines: shapes, gradients, hard assignment, gate r=0, save/load."""
import pytest
import torch

import foundry
from foundry.api import create_model
from foundry.models.backbone import PointTransformer
from foundry.models.baselines import ToMeTeacher
from foundry.models.merging import bipartite_merge_assignment
from foundry.models.student import FoundryStudent, student_config_for
from foundry.models.student_config import STUDENT_PRESETS
from foundry.validation import FoundryInputError

G, S, C = 16, 4, 32  # the tiny preset: 16 patches, 4 SuperTokens, teacher width 32


def clouds(b=2, n=256, seed=0):
    return torch.randn(b, n, 3, generator=torch.Generator().manual_seed(seed))


def tiny(**kw):
    torch.manual_seed(0)
    return create_model("foundry-tiny", **kw)


def test_presets_and_module_names():
    m = tiny()
    assert m.kind == "student"
    for name in ("tokenizer", "gate", "dso", "encoder", "cau"):
        assert hasattr(m, name)
    assert {"foundry-s16", "foundry-s4", "foundry-s1"} <= set(STUDENT_PRESETS)
    cfg = m.config
    assert type(cfg).from_dict(cfg.to_dict()) == cfg


@pytest.mark.parametrize("compression", ["dso", "fps", "kmeans", "tome"])
def test_shapes_and_gradients(compression):
    m = tiny(compression=compression).train()
    x = clouds()
    out = m.forward_supertokens(x)
    assert out["tokens"].shape == (2, G, C)
    assert out["assignment"].shape == (2, G, S)
    assert out["supertokens"].shape == (2, S, 32)
    assert out["centers"].shape == (2, G, 3)
    out["tokens"].pow(2).mean().backward()
    assert m.tokenizer.patch_embed.conv1a.weight.grad.abs().sum() > 0
    assert m.cau.mlp.fc2.weight.grad.abs().sum() > 0
    if compression == "dso":  # straight-through Gumbel reaches the assignment's queries and keys
        assert m.dso.q.weight.grad.abs().sum() > 0 and m.dso.k.weight.grad.abs().sum() > 0
    m.eval()
    feats = m.forward_features(x)
    assert feats.shape == (2, m.feature_dim)
    (layer,), _ = m.forward_layers(x, [-1])
    assert layer.shape == (2, G, C)
    with pytest.raises(FoundryInputError):
        m.forward_layers(x, [0])


@pytest.mark.parametrize("compression", ["dso", "fps", "kmeans", "tome"])
def test_hard_assignment_exact(compression):
    m = tiny(compression=compression).eval()
    out = m.forward_supertokens(clouds(3))
    a = out["assignment"]
    assert torch.equal(a.sum(-1), torch.ones(3, G))  # every token in exactly one SuperToken
    assert set(a.unique().tolist()) <= {0.0, 1.0}
    t = out["input_tokens"]
    for b in range(3):
        for j in range(S):
            members = a[b, :, j] > 0
            if members.any():
                torch.testing.assert_close(out["supertokens"][b, j], t[b, members].mean(0), rtol=1e-5, atol=1e-6)
            elif compression == "dso":  # empty SuperTokens keep their learned vector
                torch.testing.assert_close(out["supertokens"][b, j], m.dso.supertokens[j])


def test_seeded_dso_uses_every_supertoken_and_learns_its_prior():
    """FPS-seeded queries: at init each token joins (about) its nearest seed, so no SuperToken is
    empty, unlike free learned queries; the spatial weight gets a gradient; empty ones keep their query."""
    m = tiny(dso_seeding="fps", dso_spatial_init=50.0).eval()
    x = clouds(3)
    out = m.forward_supertokens(x)
    assert (out["counts"] > 0).all()
    # with a dominant prior the assignment is exactly "nearest FPS seed" (the fps baseline's grouping)
    fps = tiny(compression="fps").eval().forward_supertokens(x)
    assert torch.equal(out["assignment"], fps["assignment"])
    m.train()
    m.forward_tokens(x)[0].pow(2).mean().backward()
    assert m.dso.spatial_logit.grad is not None and m.dso.spatial_logit.grad.abs() > 0
    assert m.dso.supertokens.grad.abs().sum() > 0
    # an empty SuperToken falls back to its own (per-cloud) query
    dso = m.dso.eval()
    tokens, centers = out["input_tokens"], out["centers"]
    queries, fallback, _ = dso.initial_queries(tokens, centers)
    assignment = torch.zeros(3, G, S)
    assignment[:, :, 0] = 1
    from foundry.models.assignment import pool_members
    st, _, counts = pool_members(assignment, tokens, centers, fallback)
    torch.testing.assert_close(st[:, 1:], queries[:, 1:])
    # old checkpoints have no dso_seeding field: they load as the paper's learned queries
    cfg = m.config.to_dict()
    del cfg["dso_seeding"], cfg["dso_spatial_init"]
    assert type(m.config).from_dict(cfg).dso_seeding == "learned"
    # and a learned-query config serialises without them (same fingerprint as before they existed)
    assert "dso_seeding" not in tiny().config.to_dict()
    with pytest.raises(ValueError, match="dso_seeding"):
        tiny(dso_seeding="random")


def test_dso_training_assignment_is_one_hot_and_tau_used():
    m = tiny().train()
    m.set_temperature(0.5)
    assert m.dso.tau == 0.5
    a = m.forward_supertokens(clouds())["assignment"]
    torch.testing.assert_close(a.sum(-1), torch.ones(2, G))
    assert ((a - a.round()).abs() < 1e-6).all()


def test_bipartite_merge_reaches_target():
    x = torch.randn(2, 16, 8)
    for target in (1, 3, 8):
        a = bipartite_merge_assignment(x, target)
        assert a.shape == (2, 16, target) and torch.equal(a.sum(-1), torch.ones(2, 16))
        assert (a.sum(1) > 0).all()


def test_gate_r0_equals_plain_transformer():
    m = tiny(gate=True).eval()
    m.set_merge_budget(0)
    x = clouds()
    out = m.forward_supertokens(x)
    assert out["merge"].sum() == 0
    c = m.config
    plain = PointTransformer(foundry.models.BackboneConfig(
        num_points=c.num_points, num_groups=c.num_groups, group_size=c.group_size, width=c.width, depth=c.depth,
        heads=c.heads, tokenizer_hidden=c.tokenizer_hidden, pos_hidden=c.pos_hidden, norm_eps=c.norm_eps,
        drop_path=0.0)).eval()
    plain.patch_embed.load_state_dict(m.tokenizer.patch_embed.state_dict())
    plain.pos_embed.load_state_dict(m.encoder.pos_embed.state_dict())
    plain.encoder.load_state_dict(m.encoder.blocks.state_dict())
    plain.norm.load_state_dict(m.encoder.norm.state_dict())
    ref, centers = plain.forward_tokens(x)
    assert torch.equal(out["centers"], centers)
    assert torch.equal(out["token_encoded"], ref)  # exactly the plain transformer over all tokens
    assert torch.equal(out["tokens"], m.cau(m.encoder.proj(out["input_tokens"]), ref))
    # other budgets: a count merges exactly that many; the encoder then sees fewer tokens
    m.set_merge_budget(10)
    assert int(m.forward_supertokens(x)["merge"].sum(1).max()) == 10
    m.set_merge_budget(1.0)  # threshold reading: p > 1 never happens
    assert m.forward_supertokens(x)["merge"].sum() == 0
    with pytest.raises(FoundryInputError):
        m.set_merge_budget(-1)
    m.train()
    out = m.forward_supertokens(x)
    (out["tokens"].sum() - 1e-3 * out["gate_prob"].sum()).backward()
    assert m.gate.mlp.fc1.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("compression,gate", [("dso", False), ("dso", True), ("fps", False), ("kmeans", False),
                                              ("tome", False)])
def test_num_groups_override_like_the_teacher(compression, gate):
    """forward_* take the teacher's `num_groups` override: more or fewer patches, s stays fixed."""
    m = tiny(compression=compression, gate=gate).eval()
    x = clouds()
    torch.manual_seed(0)
    teacher = create_model("tiny").eval()
    for g in (8, 32):
        tokens, centers = m.forward_tokens(x, num_groups=g)
        assert tokens.shape == (2, g, C) and centers.shape == (2, g, 3) and torch.isfinite(tokens).all()
        assert torch.equal(centers, teacher.forward_tokens(x, num_groups=g)[1])  # the teacher's patch centres
        out = m.forward_supertokens(x, num_groups=g)
        assert out["assignment"].shape == (2, g, S) and out["supertokens"].shape[1] == S
        torch.testing.assert_close(out["assignment"].sum(-1), torch.ones(2, g))
        if gate:
            assert out["merge"].shape == out["gate_prob"].shape == (2, g)
        assert m.forward_features(x, num_groups=g).shape == (2, m.feature_dim)
        assert m.forward_layers(x, [-1], num_groups=g)[0][0].shape == (2, g, C)
    torch.testing.assert_close(m.forward_tokens(x, num_groups=G)[0], m.forward_tokens(x)[0])  # G: the default
    m.train()
    m.forward_tokens(x, num_groups=32)[0].pow(2).mean().backward()
    assert m.cau.mlp.fc2.weight.grad.abs().sum() > 0


def test_num_groups_below_supertokens_is_a_clear_error():
    m = tiny()
    with pytest.raises(FoundryInputError, match=r"num_groups=3 .*4 SuperTokens"):
        m.forward_tokens(clouds(), num_groups=S - 1)
    with pytest.raises(FoundryInputError, match="positive"):
        m.forward_features(clouds(), num_groups=0)


def test_tome_teacher_takes_num_groups():
    torch.manual_seed(0)
    teacher = create_model("tiny").eval()
    w = ToMeTeacher.wrap(teacher, r=4)
    x = clouds()
    tok, centers = w.forward_tokens(x, num_groups=32)
    assert tok.shape == (2, 32, C) and torch.equal(centers, teacher.forward_tokens(x, num_groups=32)[1])
    torch.testing.assert_close(ToMeTeacher.wrap(teacher, r=0).forward_features(x, num_groups=8),
                               teacher.forward_features(x, num_groups=8))
    assert w.forward_layers(x, [-1], num_groups=8)[0][0].shape == (2, 8, C)


def test_save_load_round_trip(tmp_path):
    for kw in ({}, {"gate": True}, {"compression": "tome"}, {"dso_seeding": "fps"}):
        m = tiny(**kw).eval()
        path = foundry.save(m, tmp_path / "s.safetensors", info={"note": "test"})
        back = foundry.load(path)
        assert back.kind == "student" and back.config == m.config
        x = clouds()
        torch.testing.assert_close(back.forward_tokens(x)[0], m.forward_tokens(x)[0])


def test_tome_teacher_wrapper(tmp_path):
    torch.manual_seed(0)
    teacher = create_model("tiny").eval()
    x = clouds()
    ref, _ = teacher.forward_tokens(x)
    same, _ = ToMeTeacher.wrap(teacher, r=0).forward_tokens(x)
    torch.testing.assert_close(same, ref)  # r = 0 merges nothing
    w = ToMeTeacher.wrap(teacher, r=4, name="tiny")
    tok, centers = w.forward_tokens(x)
    assert tok.shape == ref.shape and centers.shape == (2, G, 3)
    back = foundry.load(foundry.save(w, tmp_path / "tome.safetensors"))
    torch.testing.assert_close(back.forward_tokens(x)[0], tok)


def test_cli_models_tome(tmp_path):
    from foundry.bench.flops import model_macs
    from foundry.cli import main as cli

    torch.manual_seed(0)
    teacher_path = foundry.save(create_model("tiny"), tmp_path / "tiny.safetensors")
    assert cli(["models", "tome", str(teacher_path), str(tmp_path / "r4.safetensors"), "--r", "4"]) == 0
    w = foundry.load(tmp_path / "r4.safetensors")
    assert w.kind == "tome-teacher" and w.config.r == 4 and w.checkpoint_info["r"] == 4
    # --match: the smallest r whose MACs do not exceed the given model's
    target = foundry.save(ToMeTeacher.wrap(foundry.load(teacher_path), r=3), tmp_path / "target.safetensors")
    assert cli(["models", "tome", str(teacher_path), str(tmp_path / "m.safetensors"), "--match", str(target)]) == 0
    m = foundry.load(tmp_path / "m.safetensors")
    assert model_macs(m) <= model_macs(foundry.load(target)) and m.config.r <= 3
    # a student is not a teacher backbone
    student = foundry.save(FoundryStudent(student_config_for("foundry-tiny", foundry.load(teacher_path))),
                           tmp_path / "s.safetensors")
    assert cli(["models", "tome", str(student), str(tmp_path / "x.safetensors"), "--r", "2"]) == 2
    assert cli(["models", "tome", str(teacher_path), str(tmp_path / "y.safetensors"), "--r", "999"]) == 2


def test_teacher_aware_config_and_init():
    torch.manual_seed(0)
    teacher = create_model("tiny").eval()
    cfg = student_config_for("foundry-tiny", teacher, teacher="tiny", tokenizer="teacher", tokenizer_hidden=(16, 32, 64))
    assert cfg.teacher_width == teacher.token_dim and cfg.num_groups == teacher.config.num_groups
    s = FoundryStudent(cfg)
    from foundry.models.surgery import init_from_teacher

    init_from_teacher(s, teacher, encoder_blocks="spread", freeze_encoder=True)
    x = clouds()
    torch.testing.assert_close(s.tokenizer.patch_embed.eval()(teacher.group(x)[0]), teacher.eval().embed(teacher.group(x)[0]))
    assert not any(p.requires_grad for p in s.encoder.blocks.parameters())
    assert s.config.encoder_init.startswith("teacher:tiny")


def test_runtime_budget_in_the_model_name(tmp_path):
    """MODEL@r=N loads a gated student at merge budget N (another config, so another fingerprint),
    MODEL@tome=N a backbone with ToMe; a model without a gate is refused by name."""
    from foundry.bench.flops import model_macs
    from foundry.io import model_fingerprint

    torch.manual_seed(0)
    gated, plain, teacher = tiny(gate=True).eval(), tiny().eval(), create_model("tiny").eval()
    for name, m in (("gated", gated), ("plain", plain), ("teacher", teacher)):
        foundry.save(m, tmp_path / f"{name}.safetensors")
    r0, r8 = (foundry.load(f"{tmp_path / 'gated.safetensors'}@r={r}") for r in (0, 8))
    assert (r0.merge_count, r8.merge_count) == (0, 8) and r8.config.merge_count == 8
    assert model_fingerprint(r0) != model_fingerprint(r8)
    assert r8.checkpoint_info["runtime_budget"] == "r=8"
    x = clouds()
    with torch.no_grad():
        assert not torch.allclose(r0.forward_features(x), r8.forward_features(x))
    assert model_macs(r8, 256) < model_macs(r0, 256)
    assert foundry.load(f"{tmp_path / 'gated.safetensors'}@r=0.5").merge_threshold == 0.5
    tome = foundry.load(f"{tmp_path / 'teacher.safetensors'}@tome=2")
    assert isinstance(tome, ToMeTeacher) and tome.config.r == 2
    with pytest.raises(FoundryInputError, match="no gate"):
        foundry.load(f"{tmp_path / 'plain.safetensors'}@r=4")
    with pytest.raises(FoundryInputError, match="needs a backbone"):
        foundry.load(f"{tmp_path / 'plain.safetensors'}@tome=4")
    from foundry.commands.compare import _split_label

    assert _split_label("ckpt@r=8") == (None, "ckpt@r=8")
    assert _split_label("gate-r8=ckpt@r=8") == ("gate-r8", "ckpt@r=8")


def test_a_student_is_never_wider_than_its_teacher():
    """A 384-wide preset built for a narrower teacher takes the teacher's width (64-d heads); for a
    teacher at least as wide it keeps its own."""
    narrow = create_model("small", num_groups=16, group_size=16, num_points=256, depth=2).eval()  # width 192
    cfg = student_config_for("foundry-s16", narrow)
    assert (cfg.width, cfg.heads, cfg.token_dim, cfg.cau_hidden) == (192, 3, 192, 192)
    assert cfg.teacher_width == 192 and cfg.teacher_depth == 2
    wide = create_model("small", num_groups=16, group_size=16, num_points=256, depth=1, width=384, heads=6).eval()
    cfg = student_config_for("foundry-s16", wide)
    assert (cfg.width, cfg.heads, cfg.token_dim) == (384, 6, 384)
    s = FoundryStudent(student_config_for("foundry-s4", narrow))
    assert s.forward_tokens(clouds())[0].shape == (2, 16, 192)


@pytest.mark.parametrize("compression", ["dso", "fps", "kmeans"])
def test_seeds_of_fps_ordered_centres_are_their_first_s_as_fps_would_pick(compression):
    """The seeded compressors take the first s patch centres instead of running FPS over them:
    the same indices as that FPS on every bundled test cloud and on random ones, so the same model."""
    from foundry.data import load_arrays
    from foundry.ops import farthest_point_sample, group_patches

    real = torch.as_tensor(load_arrays("modelnet10", "test", 1024)["points"]).float()
    for pts in (real, clouds(64, 512, 1)):
        _, centers = group_patches(pts, 64, 32)
        for s in (1, 4, 16, 32):
            assert torch.equal(farthest_point_sample(centers, s), torch.arange(s).expand(len(pts), s))
    m = tiny(compression=compression, dso_seeding="fps").eval()
    assert m.dso.fps_ordered_centers
    x = clouds(4)
    with torch.no_grad():
        fast = m.forward_supertokens(x)
        m.dso.fps_ordered_centers = False
        looped = m.forward_supertokens(x)
    assert torch.equal(fast["assignment"], looped["assignment"]) and torch.equal(fast["tokens"], looped["tokens"])
    assert not tiny(compression=compression, patch_order="morton").dso.fps_ordered_centers


def test_gate_training_draws_a_budget_per_cloud_and_merges_the_most_mergeable():
    """Sampled budgets (foundry-s16-gate's setting): each cloud merges r tokens, r uniform over 0..G, and exactly its r
    tokens of highest merge probability, so every run-time budget is seen in training; gradients reach the
    gate through the distillation loss alone (no -sum(p) reward)."""
    torch.manual_seed(0)
    m = tiny(gate=True, gate_training="budget").train()
    x = clouds()
    counts = set()
    for _ in range(40):
        out = m.forward_supertokens(x)
        hard = out["merge"].detach() > 0.5
        counts.update(hard.sum(1).tolist())
        for b in range(x.shape[0]):
            r = int(hard[b].sum())
            top = out["gate_prob"][b].detach().argsort(descending=True)[:r]
            assert hard[b, top].all()
    g = m.config.num_groups
    assert min(counts) <= 2 and max(counts) >= g - 2 and len(counts) > g // 2
    m.zero_grad()
    m.forward_supertokens(x)["tokens"].square().mean().backward()
    assert m.gate.mlp.fc1.weight.grad.abs().sum() > 0
    assert tiny(gate=True, gate_training="bernoulli").config.gate_training == "bernoulli"


def test_narrow_presets_are_the_method_study_recipe():
    """foundry-sN-narrow is what scripts/method_study.sh narrow (TOKEN_DIM=192) trained and validation chose."""
    for s in (16, 4, 1):
        preset = student_config_for(f"foundry-s{s}-narrow")
        trained = student_config_for("foundry-s16", width=192, heads=3, token_dim=192, num_supertokens=s)
        assert preset.replace(name=trained.name) == trained
    m = FoundryStudent(student_config_for("foundry-s16-narrow")).eval()
    assert sum(p.numel() for p in m.parameters()) < 2.2e6
    with torch.no_grad():
        assert m(torch.rand(1, 1024, 3)).shape == (1, 768)
