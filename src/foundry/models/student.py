"""The Foundry student: the data path from points to the teacher's tokens.

    points -> tokenizer -> c patch tokens T (the teacher's patches, no positions)
           -> gate (optional): which tokens are merged
           -> dso: merged tokens -> s SuperTokens (hard assignment; dso.py, or a baseline
              compressor of compressors.py, config `compression`)
           -> encoder: pre-LN transformer over the s SuperTokens (+ the tokens the gate let bypass)
           -> cau: every token takes its SuperToken's encoded value through the same assignment,
              adds its own input token, and an MLP maps it to the teacher's width.

Its config and presets are in student_config.py, weight surgery (teacher init, switching DSO's
queries, more output layers) in surgery.py. Choices the method leaves open are config options:
empty SuperTokens keep their query, SuperToken positions are the assignment-weighted mean of
member centres through a position MLP, CAU optionally adds the token's own position.
"""
from __future__ import annotations

import torch
from torch import nn

from ..ops import gather_points
from ..validation import FoundryInputError
from .backbone import _init_weights, pool_tokens
from .base import FoundryModel
from .compressors import FPSCompressor, KMeansCompressor, ToMeCompressor
from .dso import DSO
from .layers import Mlp, TransformerEncoder
from .patches import make_patches
from .student_config import StudentConfig, student_config_for
from .tokenizer import MlpPositionEmbed, PointNetPatchEmbed

# config `compression` -> the stage that turns the c patch tokens into s SuperTokens
COMPRESSORS = {"dso": DSO, "fps": FPSCompressor, "kmeans": KMeansCompressor, "tome": ToMeCompressor}


class StudentTokenizer(nn.Module):
    """FPS + kNN patches (the teacher's own grouping) and a mini-PointNet: points -> (T, centres)."""

    def __init__(self, config: StudentConfig):
        super().__init__()
        self.config = config
        self.patch_embed = PointNetPatchEmbed(config.token_dim, config.tokenizer_hidden)

    def forward(self, points: torch.Tensor, num_groups: int):
        """Validated points (see FoundryStudent.check_input) -> (tokens (B, G, C), centres)."""
        nbhd, centers = make_patches(points, self.config, num_groups)
        return self.patch_embed(nbhd), centers


class FoundryGate(nn.Module):
    """2-layer MLP: merge probability p (B, G) per token."""

    def __init__(self, dim: int, hidden: int = 64):
        super().__init__()
        self.mlp = Mlp(dim, hidden, 1)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.mlp(tokens).squeeze(-1))


class LightEncoder(nn.Module):
    """Input projection (token_dim -> width when they differ), position MLP added before every
    block, pre-LN blocks, final LayerNorm."""

    def __init__(self, c: StudentConfig):
        super().__init__()
        self.proj = nn.Linear(c.token_dim, c.width) if c.token_dim != c.width else nn.Identity()
        self.pos_embed = MlpPositionEmbed(c.width, c.pos_hidden)
        self.blocks = TransformerEncoder(c.width, c.depth, c.heads, c.mlp_ratio, c.qkv_bias, c.drop_path, True, c.norm_eps)
        self.norm = nn.LayerNorm(c.width, eps=c.norm_eps)

    def forward(self, x, centers, key_valid=None):
        mask = None if key_valid is None else key_valid[:, None, None, :]
        return self.norm(self.blocks(x, self.pos_embed(centers), mask))


class CAU(nn.Module):
    """Cross-Attention Upsampling: Y_hat = MLP(LN(T + A . S_enc [+ pos])) -> teacher width."""

    def __init__(self, c: StudentConfig):
        super().__init__()
        self.norm = nn.LayerNorm(c.width, eps=c.norm_eps)
        self.mlp = Mlp(c.width, c.cau_hidden, c.teacher_width)
        if c.extra_layers:  # one output MLP per further teacher block, on the same normed input
            self.layer_mlps = nn.ModuleDict({str(x): Mlp(c.width, c.cau_hidden, c.teacher_width)
                                             for x in c.extra_layers})

    def forward(self, residual, upsampled, pos=None, layers=()):
        """The reconstructed target-layer tokens, or with `layers` (extra blocks) also a dict
        block -> tokens of those blocks."""
        h = residual + upsampled
        if pos is not None:
            h = h + pos
        h = self.norm(h)
        if not layers:
            return self.mlp(h)
        return self.mlp(h), {x: self.layer_mlps[str(x)](h) for x in layers}


class FeatureAlign(nn.Linear):
    """Affine map of the pooled global feature onto the teacher's (config `feature_align`). Starts as the
    identity; its weights are fitted by ridge regression after distillation (train/feature_align.py)."""

    def __init__(self, dim: int):
        super().__init__(dim, dim)
        with torch.no_grad():
            self.weight.copy_(torch.eye(dim))
            self.bias.zero_()


class FoundryStudent(FoundryModel):
    """Student with the uniform model API (kind "student")."""

    kind = "student"

    def __init__(self, config: StudentConfig):
        super().__init__()
        self.config = c = config
        self.tokenizer = StudentTokenizer(c)
        self.gate = FoundryGate(c.token_dim, c.gate_hidden) if c.gate else None
        self.dso = COMPRESSORS[c.compression].from_config(c)  # (named dso for every compressor: weight names)
        self.encoder = LightEncoder(c)
        self.cau = CAU(c)
        self.apply(_init_weights)
        if isinstance(self.dso, DSO):  # the random query init, not the Linear init
            self.dso.reset_queries()
        self.feature_align = FeatureAlign(c.feature_dim) if c.feature_align else None
        self.merge_count = c.merge_count
        self.merge_threshold = c.merge_threshold

    # -- runtime settings ----------------------------------------------------------------------
    def set_merge_budget(self, r: int | float | None) -> None:
        """Inference budget of the gate, no retraining: an int merges the r tokens with the highest
        merge probability (r = 0 merges nothing: a plain transformer over all tokens); a float in
        [0, 1] merges the tokens with p > r; None restores the config's setting."""
        if r is None:
            self.merge_count, self.merge_threshold = self.config.merge_count, self.config.merge_threshold
        elif isinstance(r, bool) or not isinstance(r, (int, float)):
            raise FoundryInputError(f"merge budget must be an int (token count) or a float threshold, got {r!r}")
        elif isinstance(r, int):
            if not 0 <= r <= self.config.num_groups:
                raise FoundryInputError(f"merge count must be in 0..{self.config.num_groups}, got {r}")
            self.merge_count = r
        else:
            if not 0.0 <= r <= 1.0:
                raise FoundryInputError(f"merge threshold must be in [0, 1], got {r}")
            self.merge_count, self.merge_threshold = None, float(r)

    def set_temperature(self, tau: float) -> None:
        if isinstance(self.dso, DSO):
            self.dso.tau = float(tau)

    # -- forward ---------------------------------------------------------------------------------
    @staticmethod
    def _merge_rank(p: torch.Tensor) -> torch.Tensor:
        """Each token's place in its cloud by merge probability (0: the most mergeable)."""
        return p.argsort(-1, descending=True).argsort(-1)

    def _merge_decision(self, p: torch.Tensor) -> torch.Tensor:
        if self.training:
            if self.config.gate_training == "bernoulli":
                hard = torch.bernoulli(p.detach())
            else:  # a budget per cloud, uniform over 0..G: every run-time budget is trained
                budget = torch.randint(0, p.shape[1] + 1, (p.shape[0], 1), device=p.device)
                hard = (self._merge_rank(p.detach()) < budget).to(p.dtype)
            return hard + p - p.detach()  # straight-through
        if self.merge_count is not None:
            return (self._merge_rank(p) < self.merge_count).to(p.dtype)
        return (p > self.merge_threshold).to(p.dtype)

    def check_num_groups(self, num_groups: int | None = None) -> int:
        """The number of patches G of a forward call. The s SuperTokens are fixed by the model, so
        G must be at least s."""
        g = super().check_num_groups(num_groups)
        s = self.config.num_supertokens
        if g < s:
            raise FoundryInputError(f"num_groups={g} patches is fewer than this student's {s} SuperTokens; "
                                    f"ask for at least {s} patches (s is fixed by the trained model)")
        return g

    def forward_supertokens(self, points: torch.Tensor, num_groups: int | None = None, layers=()) -> dict:
        """Everything the student computes. Keys: supertokens (B, s, d) before the encoder,
        encoded (B, s, width), assignment (B, G, s), counts (B, s), super_centers (B, s, 3),
        centers (B, G, 3), tokens (B, G, C_teacher) reconstructed teacher tokens; with the gate
        also gate_prob (B, G), merge (B, G) and token_encoded (B, G, width) of bypass tokens;
        with `layers` (some of config.extra_layers) also layer_tokens {block: (B, G, C_teacher)}.
        num_groups: G patches instead of the config's (like the teacher's override); s stays fixed."""
        points, g = self.check_input(points, num_groups)
        tokens, centers = self.tokenizer(points, g)
        out = {"centers": centers, "input_tokens": tokens}
        merge = None
        if self.gate is not None:
            p = self.gate(tokens)
            merge = self._merge_decision(p)
            out["gate_prob"], out["merge"] = p, merge
        st, assignment, sc, counts = self.dso(tokens, centers, merge)
        out.update(supertokens=st, assignment=assignment, counts=counts, super_centers=sc)
        if self.dso.usage is not None:
            out["usage"] = self.dso.usage
        residual = self.encoder.proj(tokens)
        s = st.shape[1]
        if merge is None:
            enc = self.encoder(self.encoder.proj(st), sc)
            up = assignment @ enc
        else:
            enc, tok_enc = self._encode_with_bypass(tokens, centers, st, sc, counts, merge)
            m = merge.unsqueeze(-1)
            up = m * (assignment @ enc) + (1 - m) * tok_enc
            out["token_encoded"] = tok_enc
        out["encoded"] = enc
        pos = self.encoder.pos_embed(centers) if self.config.cau_position else None
        if layers:
            out["tokens"], out["layer_tokens"] = self.cau(residual, up, pos, tuple(layers))
        else:
            out["tokens"] = self.cau(residual, up, pos)
        assert out["tokens"].shape[1] == assignment.shape[1] and assignment.shape[2] == s
        return out

    def _encode_with_bypass(self, tokens, centers, st, sc, counts, merge):
        """The encoder over [SuperTokens ; bypass tokens]. Training: all G tokens ride along and
        merged ones are masked as keys (both alternatives exist for the straight-through gate).
        Eval: only the bypass tokens are gathered; SuperTokens without members are masked, and are
        dropped when no cloud merged anything, so r = 0 is exactly the plain transformer."""
        b, g, _ = tokens.shape
        s = st.shape[1]
        hard = merge.detach() > 0.5
        super_valid = counts > 0
        if self.training:
            idx = torch.arange(g, device=tokens.device).expand(b, -1)
            valid = ~hard
        else:
            k = int((~hard).sum(1).max())
            order = (hard.long() * g + torch.arange(g, device=tokens.device)).argsort(-1)  # bypass first, in order
            idx = order[:, :k]
            valid = torch.arange(k, device=tokens.device).expand(b, -1) < (~hard).sum(1, keepdim=True)
        x_b, c_b = gather_points(tokens, idx), gather_points(centers, idx)
        drop_super = not bool(super_valid.any())
        if drop_super:
            x, c, kv = x_b, c_b, valid
        else:
            x, c, kv = torch.cat([st, x_b], 1), torch.cat([sc, c_b], 1), torch.cat([super_valid, valid], 1)
        y = self.encoder(self.encoder.proj(x), c, None if bool(kv.all()) else kv)
        enc = y.new_zeros(b, s, y.shape[-1]) if drop_super else y[:, :s]
        y_b = y if drop_super else y[:, s:]
        tok_enc = y.new_zeros(b, g, y.shape[-1]).scatter(1, idx.unsqueeze(-1).expand_as(y_b), y_b)
        return enc, tok_enc

    def forward_tokens(self, points: torch.Tensor, num_groups: int | None = None):
        out = self.forward_supertokens(points, num_groups)
        return out["tokens"], out["centers"]

    def reproduced_layers(self) -> list[int]:
        """The teacher blocks this student reproduces: its target layer and its extra layers."""
        c = self.config
        main = c.teacher_layer if c.teacher_layer >= 0 else c.teacher_depth + c.teacher_layer
        return sorted({main, *c.extra_layers})

    def forward_layers(self, points: torch.Tensor, layers: list[int], num_groups: int | None = None):
        """The reconstructed tokens of teacher blocks `layers` (-1 = the last), each one of
        `reproduced_layers()`: the target layer, or an extra layer the student was distilled on."""
        c = self.config
        depth = c.teacher_depth
        main = c.teacher_layer if c.teacher_layer >= 0 else depth + c.teacher_layer
        want = [x if x >= 0 else depth + x for x in layers]
        bad = [x for x, w in zip(layers, want) if w != main and w not in c.extra_layers]
        if bad:
            raise FoundryInputError(
                f"this student reproduces teacher blocks {self.reproduced_layers()} only; got {bad}. Distil it "
                "with `foundry distill --extra-layers ...` to reproduce more")
        extra = tuple(dict.fromkeys(w for w in want if w != main))
        out = self.forward_supertokens(points, num_groups, extra)
        return [out["tokens"] if w == main else out["layer_tokens"][w] for w in want], out["centers"]

    def forward_features(self, points: torch.Tensor, num_groups: int | None = None) -> torch.Tensor:
        tokens, _ = self.forward_tokens(points, num_groups)
        feature = pool_tokens(tokens, self.config.teacher_pooling)
        return feature if self.feature_align is None else self.feature_align(feature)

    @property
    def token_dim(self) -> int:
        return self.config.teacher_width


def create_student(name: str, **overrides) -> FoundryStudent:
    """An untrained student of a preset (see STUDENT_PRESETS), config fields overridden by keyword."""
    return FoundryStudent(student_config_for(name, **overrides))
