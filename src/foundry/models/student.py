"""The Foundry student: tokenizer -> [Foundry-Gate] -> DSO -> light encoder -> CAU.

    points -> tokenizer -> c patch tokens T (no positions)
           -> gate (optional): which tokens are merged
           -> dso: merged tokens -> s SuperTokens (hard assignment, straight-through Gumbel-Softmax)
           -> encoder: pre-LN transformer over the s SuperTokens (+ the tokens the gate let bypass)
           -> cau: every token takes its SuperToken's encoded value through the same assignment,
              adds its own input token, and an MLP maps it to the teacher's width.

The compression stage is swappable (config `compression`): "dso" (learned, the method; its queries
are free vectors as in the paper, `dso_seeding="learned"`, or FPS-seeded with a spatial prior,
`dso_seeding="fps"`, the presets' default since free queries leave most SuperTokens empty), and the
baselines "fps" (s patch centres by FPS, tokens to the nearest one), "kmeans" (K-Means of tokens)
and "tome" (bipartite merging of the most similar tokens, size-weighted means). All produce a hard
(B, G, s) assignment, so the rest of the body is the same. Design guesses (see METHOD.md) are config
options: empty SuperTokens keep their learned vector, SuperToken positions are the assignment-weighted
mean of member centres through a position MLP, CAU optionally adds the token's own position.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from ..ops import farthest_point_sample, gather_points
from ..validation import FoundryInputError
from .backbone import PointTransformer, _init_weights, pool_tokens
from .checkpoint import register_kind
from .config import BackboneConfig
from .layers import Mlp, TransformerEncoder
from .tokenizer import MlpPositionEmbed, PointNetPatchEmbed

COMPRESSIONS = ("dso", "fps", "kmeans", "tome")


@dataclass
class StudentConfig:
    """Everything needed to rebuild a student, including which teacher it imitates."""

    name: str = "custom"
    # teacher identity: reconstructed tokens live in this teacher's token space
    teacher: str = ""
    teacher_width: int = 384
    teacher_pooling: str = "mean+max"
    teacher_layer: int = -1  # the teacher block whose (normed) tokens are the target
    teacher_depth: int = 12  # the teacher's number of blocks (what layer -1 means, which blocks heads read)
    # further teacher blocks the student reproduces, each by its own small output MLP on the shared
    # CAU path, so that heads reading several teacher blocks (part segmentation: 3, 7, 11) run on it
    extra_layers: tuple = ()
    # patches: must equal the teacher's so token i sits at the teacher's patch centre i
    num_points: int = 1024
    num_groups: int = 64
    group_size: int = 32
    fps_start: str = "first"
    fps_backend: str = "torch"
    patch_order: str = "fps"
    # tokenizer: "slim" (small mini-PointNet) or "teacher" (the teacher's shape, weights copied)
    tokenizer: str = "slim"
    tokenizer_hidden: tuple = (32, 64, 128)
    token_dim: int = 384
    # compression
    compression: str = "dso"
    num_supertokens: int = 16
    dso_passes: int = 1
    dso_key_dim: int = 64
    # DSO queries: "learned" (s free vectors, the paper's DSO) or "fps" (each learned vector is added to
    # the content of a token at one of s FPS-spread patch centres, and a learnable spatial prior
    # -w * |c_i - seed_j|^2 favours nearby seeds; w starts at `dso_spatial_init`)
    dso_seeding: str = "learned"
    dso_spatial_init: float = 4.0
    kmeans_iters: int = 5
    # light encoder over the SuperTokens
    width: int = 384
    depth: int = 4
    heads: int = 6
    mlp_ratio: float = 4.0
    qkv_bias: bool = False
    drop_path: float = 0.0
    norm_eps: float = 1e-6
    pos_hidden: int = 128
    # CAU
    cau_hidden: int = 384
    cau_position: bool = False  # add the token's own position embedding before the CAU MLP
    # Foundry-Gate
    gate: bool = False
    gate_hidden: int = 64
    merge_threshold: float = 0.5  # inference: merge tokens with p > threshold ...
    merge_count: int | None = None  # ... or, when set, the `merge_count` tokens with the highest p
    # provenance of the initialisation (informational)
    tokenizer_init: str = "random"
    encoder_init: str = "random"
    freeze_encoder: bool = False
    extra: dict = field(default_factory=dict)

    def __post_init__(self):
        self.tokenizer_hidden = tuple(self.tokenizer_hidden)
        self.extra_layers = tuple(sorted({int(x) for x in self.extra_layers}))
        if any(not 0 <= x < self.teacher_depth for x in self.extra_layers):
            raise ValueError(f"extra_layers must be teacher blocks 0..{self.teacher_depth - 1}, got {self.extra_layers}")
        if self.compression not in COMPRESSIONS:
            raise ValueError(f"compression must be one of {COMPRESSIONS}, got {self.compression!r}")
        if self.dso_seeding not in ("learned", "fps"):
            raise ValueError(f"dso_seeding must be 'learned' or 'fps', got {self.dso_seeding!r}")
        if self.tokenizer not in ("slim", "teacher"):
            raise ValueError(f"tokenizer must be 'slim' or 'teacher', got {self.tokenizer!r}")
        if not 1 <= self.num_supertokens <= self.num_groups:
            raise ValueError(f"num_supertokens must be in 1..num_groups ({self.num_groups}), got {self.num_supertokens}")
        if self.width % self.heads:
            raise ValueError(f"width {self.width} must be divisible by heads {self.heads}")
        if self.gate and self.compression != "dso":
            raise ValueError("the Foundry-Gate works with compression='dso' only")
        if self.teacher_pooling.startswith("cls"):
            # a student has no cls token: the mean of the tokens stands in for it
            self.teacher_pooling = self.teacher_pooling.replace("cls", "mean")

    @property
    def feature_dim(self) -> int:
        return self.teacher_width if self.teacher_pooling in ("max", "mean") else 2 * self.teacher_width

    # same serialisation as the backbone's config (dataclass fields, tuples as lists), except that
    # fields added later are left out at their defaults: a student that does not use them serialises
    # (and so fingerprints) exactly as it did before they existed
    LATER_FIELDS = (("dso_seeding", "dso_spatial_init"), ("teacher_depth",), ("extra_layers",))

    def to_dict(self) -> dict:
        d = BackboneConfig.to_dict(self)
        fields = {f.name: f for f in dataclasses.fields(self)}
        for group in self.LATER_FIELDS:
            defaults = {k: fields[k].default for k in group}
            if all(_plain(d[k]) == _plain(v) for k, v in defaults.items()):
                for k in group:
                    del d[k]
        return d

    from_dict = classmethod(BackboneConfig.from_dict.__func__)
    replace = BackboneConfig.replace


def _plain(v):
    return list(v) if isinstance(v, (tuple, list)) else v


_S = dict(teacher_width=384, width=384, depth=4, heads=6, tokenizer="slim", tokenizer_hidden=(32, 64, 128), token_dim=384)
STUDENT_PRESETS: dict[str, dict] = {
    # DSO with FPS-seeded queries and a learned spatial prior (see DSO): every SuperToken in use
    "foundry-s16": dict(_S, num_supertokens=16, dso_seeding="fps"),
    "foundry-s4": dict(_S, num_supertokens=4, dso_seeding="fps"),
    "foundry-s1": dict(_S, num_supertokens=1),  # one SuperToken: every token joins it, queries do not matter
    "foundry-s16-gate": dict(_S, num_supertokens=16, gate=True, dso_seeding="fps"),
    # the paper's DSO: free learned queries (most SuperTokens end up empty; kept for comparison)
    "foundry-s16-learned": dict(_S, num_supertokens=16),
    "foundry-s4-learned": dict(_S, num_supertokens=4),
    "foundry-s16-teachertok": dict(_S, num_supertokens=16, tokenizer="teacher", tokenizer_hidden=(128, 256, 512)),
    # baselines: same body, other compression of the c tokens into s
    "fps-s16": dict(_S, num_supertokens=16, compression="fps"),
    "kmeans-s16": dict(_S, num_supertokens=16, compression="kmeans"),
    "tome-s16": dict(_S, num_supertokens=16, compression="tome"),
    # for unit tests only (matches the `tiny` backbone preset)
    "foundry-tiny": dict(num_points=256, num_groups=16, group_size=16, teacher_width=32, teacher_depth=2, width=32,
                         depth=2, heads=2,
                         tokenizer_hidden=(8, 16, 32), token_dim=32, num_supertokens=4, dso_key_dim=16,
                         pos_hidden=16, cau_hidden=32, gate_hidden=16),
}


# -- stages ------------------------------------------------------------------------------------
class StudentTokenizer(nn.Module):
    """FPS + kNN patches (the teacher's own grouping) and a mini-PointNet: points -> (T, centres)."""

    def __init__(self, config: StudentConfig):
        super().__init__()
        self.config = config
        self.patch_embed = PointNetPatchEmbed(config.token_dim, config.tokenizer_hidden)

    def forward(self, points: torch.Tensor, num_groups: int | None = None):
        # the backbone's grouping reads only the patch fields that StudentConfig shares with it
        nbhd, centers = PointTransformer.group(self, points, num_groups)
        return self.patch_embed(nbhd), centers


def pool_members(assignment: torch.Tensor, values: torch.Tensor, centers: torch.Tensor,
                 fallback: torch.Tensor | None = None, weight: torch.Tensor | None = None):
    """Hard-assignment pooling shared by every compressor.

    assignment (B, G, s) one-hot (maybe straight-through), values (B, G, d), centers (B, G, 3),
    weight (B, G) membership (the gate's merge decision). Returns (supertokens (B, s, d): mean of
    members, or `fallback` ((s, d) or (B, s, d)) where a SuperToken is empty; super_centers (B, s, 3): mean of
    member centres, or the cloud's centroid where empty; counts (B, s) hard member counts).
    """
    w = assignment if weight is None else assignment * weight.unsqueeze(-1)
    counts = w.detach().round().sum(1)  # (B, s) exact integers
    denom = counts.clamp_min(1).unsqueeze(-1)
    mean = torch.einsum("bgs,bgd->bsd", w, values) / denom
    filled = (counts > 0).unsqueeze(-1)
    if fallback is not None:
        fallback = fallback if fallback.dim() == 3 else fallback.unsqueeze(0)
        mean = torch.where(filled, mean, fallback.to(mean.dtype))
    c = torch.einsum("bgs,bgd->bsd", w.detach(), centers) / denom
    c = torch.where(filled, c, centers.mean(1, keepdim=True))
    return mean, c, counts


def one_hot_argmax(logits: torch.Tensor) -> torch.Tensor:
    return F.one_hot(logits.argmax(-1), logits.shape[-1]).to(logits.dtype)


class DSO(nn.Module):
    """Dynamic SuperToken Optimisation: s SuperToken queries attend to the patch tokens; each token
    goes to exactly one SuperToken (argmax of q.k/sqrt(d)); a SuperToken becomes the mean of its
    members. Training: straight-through Gumbel-Softmax at temperature `tau` (set by the training
    loop); eval: plain argmax. `passes` > 1 repeats assign-and-update with the new SuperTokens as
    queries.

    seeding="learned" (the paper): the queries are s free learned vectors, the same for every cloud.
    In our runs most of them end up empty (about 6 of 16 used per cloud), which wastes the budget.
    seeding="fps" (ours): query j is its learned vector plus the content of the token at the j-th of s
    FPS-spread patch centres, and the logits get a spatial prior -w |c_i - seed_j|^2 (distances in
    units of the cloud's mean squared distance to the nearest seed; w = softplus of a learned scalar,
    starting at `spatial_init`). At initialisation this is close to "join the nearest seed", so every
    SuperToken starts in use; training decides how far content moves tokens away from it. An empty
    SuperToken keeps its query (learned vector, or learned vector + seed content)."""

    def __init__(self, dim: int, num_supertokens: int, key_dim: int = 64, passes: int = 1, eps: float = 1e-6,
                 seeding: str = "learned", spatial_init: float = 4.0):
        super().__init__()
        self.supertokens = nn.Parameter(torch.randn(num_supertokens, dim))
        self.norm_q = nn.LayerNorm(dim, eps=eps)
        self.norm_k = nn.LayerNorm(dim, eps=eps)
        self.q = nn.Linear(dim, key_dim)
        self.k = nn.Linear(dim, key_dim)
        self.passes = passes
        self.seeding = seeding
        if seeding == "fps":
            # inverse softplus, so that softplus(spatial_logit) == spatial_init
            self.spatial_logit = nn.Parameter(torch.tensor(math.log(math.expm1(spatial_init))))
        self.tau = 1.0  # runtime setting, not a weight
        self.usage = None  # (B, s) mean soft assignment of the last forward (see `usage_imbalance`)

    def logits(self, queries: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        q = self.q(self.norm_q(queries))
        k = self.k(self.norm_k(tokens))
        return k @ q.transpose(1, 2) / math.sqrt(q.shape[-1])  # (B, G, s)

    def assign(self, logits: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return one_hot_argmax(logits)
        u = torch.rand_like(logits).clamp(1e-9, 1 - 1e-9)
        soft = torch.softmax((logits - torch.log(-torch.log(u))) / max(self.tau, 1e-4), dim=-1)
        hard = one_hot_argmax(soft)
        return hard - soft.detach() + soft  # forward: one-hot; backward: Gumbel-Softmax

    def initial_queries(self, tokens, centers):
        """(queries (B, s, d), fallback for empty SuperTokens, spatial prior (B, G, s) or None)."""
        b, s = tokens.shape[0], self.supertokens.shape[0]
        if self.seeding == "learned":
            return self.supertokens.unsqueeze(0).expand(b, -1, -1), self.supertokens, None
        idx = farthest_point_sample(centers, s)
        seed_tokens, seed_centers = gather_points(tokens, idx), gather_points(centers, idx)
        d2 = torch.cdist(centers.float(), seed_centers.float()).square()  # (B, G, s)
        scale = d2.min(-1).values.mean(-1, keepdim=True).clamp_min(1e-9).unsqueeze(-1)  # (B, 1, 1)
        prior = -F.softplus(self.spatial_logit.float()) * d2 / scale
        queries = seed_tokens + self.supertokens.unsqueeze(0).to(tokens.dtype)
        return queries, queries, prior

    def forward(self, tokens, centers, weight=None):
        queries, fallback, prior = self.initial_queries(tokens, centers)
        for _ in range(self.passes):
            logits = self.logits(queries, tokens)
            if prior is not None:
                logits = logits + prior.to(logits.dtype)
            assignment = self.assign(logits)
            queries, super_centers, counts = pool_members(assignment, tokens, centers, fallback, weight)
        # how the tokens spread over the SuperTokens, as the training temperature sees it (for the
        # optional balance term: learned queries otherwise tend to leave most SuperTokens empty)
        self.usage = torch.softmax(logits.float() / max(self.tau, 1e-4), dim=-1).mean(1) if self.training else None
        return queries, assignment, super_centers, counts


def usage_imbalance(usage: torch.Tensor) -> torch.Tensor:
    """KL(usage || uniform) per cloud, averaged: 0 when every SuperToken takes the same share of
    tokens, log(s) when one takes them all. usage: (B, s) rows summing to 1."""
    s = usage.shape[-1]
    return (usage * torch.log(usage.clamp_min(1e-9) * s)).sum(-1).mean()


class FPSCompressor(nn.Module):
    """Baseline: s patch centres by FPS; every token joins the nearest one (in xyz)."""

    def __init__(self, num_supertokens: int):
        super().__init__()
        self.s = num_supertokens

    def forward(self, tokens, centers, weight=None):
        idx = farthest_point_sample(centers, self.s)
        picked = gather_points(centers, idx)
        assignment = one_hot_argmax(-torch.cdist(centers.float(), picked.float())).to(tokens.dtype)
        st, sc, counts = pool_members(assignment, tokens, centers)
        return st, assignment, sc, counts


class KMeansCompressor(nn.Module):
    """Baseline: K-Means of the tokens (feature space, Lloyd iterations, no gradient through the
    assignment), seeded with the tokens at s FPS-spread patch centres (deterministic)."""

    def __init__(self, num_supertokens: int, iters: int = 5):
        super().__init__()
        self.s = num_supertokens
        self.iters = iters

    def forward(self, tokens, centers, weight=None):
        idx = farthest_point_sample(centers, self.s)
        x = tokens.detach().float()
        means = gather_points(x, idx)
        for _ in range(self.iters + 1):
            assignment = one_hot_argmax(-torch.cdist(x, means))
            new, _, counts = pool_members(assignment, x, centers, None)
            means = torch.where((counts > 0).unsqueeze(-1), new, means)  # an emptied cluster keeps its mean
        st, sc, counts = pool_members(assignment.to(tokens.dtype), tokens, centers)
        return st, assignment.to(tokens.dtype), sc, counts


def bipartite_targets(metric: torch.Tensor, r: int, chunk_elements: int = 1 << 24) -> torch.Tensor:
    """One ToMe-style bipartite matching step, reimplemented: split the n tokens alternately into
    A (even) and B (odd); each A token finds its most cosine-similar B token; the r most similar A
    tokens merge into their partners. metric (B, n, d) -> (B, n) index of each old token's merged
    token in 0..n-r-1 (kept A tokens first, then B). The (A, B) similarity is built a slice of A
    rows at a time (about `chunk_elements` floats), so memory stays O(n) on long sequences."""
    b, n, _ = metric.shape
    a, bb = metric[:, ::2], metric[:, 1::2]
    na, nb = a.shape[1], bb.shape[1]
    r = max(0, min(r, na))
    a_n, b_n = F.normalize(a.float(), dim=-1), F.normalize(bb.float(), dim=-1).transpose(1, 2)
    step = max(1, chunk_elements // max(1, b * nb))
    parts = [(a_n[:, i:i + step] @ b_n).max(-1) for i in range(0, na, step)]
    best, partner = torch.cat([p.values for p in parts], 1), torch.cat([p.indices for p in parts], 1)  # (B, na)
    rank = best.argsort(-1, descending=True).argsort(-1)  # rank of each A token by similarity
    merged = rank < r
    tgt_a = torch.where(merged, (na - r) + partner, (rank - r).clamp_min(0))
    tgt_b = (na - r) + torch.arange(nb, device=metric.device).expand(b, -1)
    tgt = torch.empty(b, n, dtype=torch.long, device=metric.device)
    tgt[:, ::2], tgt[:, 1::2] = tgt_a, tgt_b
    return tgt


def bipartite_step(metric: torch.Tensor, r: int) -> torch.Tensor:
    """`bipartite_targets` as a one-hot map (B, n, n - r) from the old tokens to the merged ones."""
    tgt = bipartite_targets(metric, r)
    n_new = metric.shape[1] - max(0, min(r, (metric.shape[1] + 1) // 2))
    return F.one_hot(tgt, n_new).to(metric.dtype)


DENSE_MERGE_MAX_TOKENS = 256  # up to here the merge maps are dense matrices (the measured baselines);
# beyond, integer owner indices and scatter sums keep time and memory O(n) per step


def bipartite_merge_assignment(x: torch.Tensor, target: int) -> torch.Tensor:
    """Repeated bipartite steps until `target` tokens remain; similarity between the size-weighted
    means of the merged tokens. x (B, G, d) -> hard assignment (B, G, target)."""
    b, g, _ = x.shape
    x = x.detach().float()
    if g > DENSE_MERGE_MAX_TOKENS:
        owner = torch.arange(g, device=x.device).expand(b, -1)  # each original token's merged token
        cur = x
        while cur.shape[1] > target:
            owner = torch.gather(bipartite_targets(cur, cur.shape[1] - target), 1, owner)
            cur = scatter_mean(x, owner, int(owner.max()) + 1)
        return F.one_hot(owner, cur.shape[1]).to(x.dtype)
    m = torch.eye(g, dtype=x.dtype, device=x.device).unsqueeze(0).expand(b, -1, -1)
    cur = x
    while cur.shape[1] > target:
        m = m @ bipartite_step(cur, cur.shape[1] - target)
        cur = torch.einsum("bgs,bgd->bsd", m, x) / m.sum(1).clamp_min(1).unsqueeze(-1)
    return m


def scatter_mean(values: torch.Tensor, owner: torch.Tensor, size: int, weight: torch.Tensor | None = None):
    """(B, n, d) values averaged into `size` groups by owner (B, n) indices (weighted by (B, n, 1)
    `weight` when given); empty groups give 0."""
    b, _, d = values.shape
    w = values.new_ones(b, values.shape[1], 1) if weight is None else weight
    idx = owner.unsqueeze(-1)
    total = values.new_zeros(b, size, d).scatter_add_(1, idx.expand(-1, -1, d), values * w)
    count = values.new_zeros(b, size, 1).scatter_add_(1, idx, w)
    return total / count.clamp_min(1e-12)


class ToMeCompressor(nn.Module):
    """Baseline: bipartite merging of the c tokens (cosine similarity) down to s."""

    def __init__(self, num_supertokens: int):
        super().__init__()
        self.s = num_supertokens

    def forward(self, tokens, centers, weight=None):
        assignment = bipartite_merge_assignment(tokens, self.s).to(tokens.dtype)
        st, sc, counts = pool_members(assignment, tokens, centers)
        return st, assignment, sc, counts


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


# -- the model ---------------------------------------------------------------------------------
class FoundryStudent(nn.Module):
    """Student with the uniform model API (kind "student")."""

    kind = "student"

    def __init__(self, config: StudentConfig):
        super().__init__()
        self.config = c = config
        self.tokenizer = StudentTokenizer(c)
        self.gate = FoundryGate(c.token_dim, c.gate_hidden) if c.gate else None
        if c.compression == "dso":
            self.dso = DSO(c.token_dim, c.num_supertokens, c.dso_key_dim, c.dso_passes, c.norm_eps,
                           c.dso_seeding, c.dso_spatial_init)
        elif c.compression == "fps":
            self.dso = FPSCompressor(c.num_supertokens)
        elif c.compression == "kmeans":
            self.dso = KMeansCompressor(c.num_supertokens, c.kmeans_iters)
        else:
            self.dso = ToMeCompressor(c.num_supertokens)
        self.encoder = LightEncoder(c)
        self.cau = CAU(c)
        supertokens = getattr(self.dso, "supertokens", None)
        self.apply(_init_weights)
        if supertokens is not None:  # keep the random SuperToken init, not the Linear init
            # seeded queries add the vector to a token's content: start it small so the content leads
            nn.init.normal_(supertokens, std=0.02 if c.dso_seeding == "fps" else 1.0)
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
    def _merge_decision(self, p: torch.Tensor) -> torch.Tensor:
        if self.training:
            hard = torch.bernoulli(p.detach())
            return hard + p - p.detach()  # straight-through
        if self.merge_count is not None:
            rank = p.argsort(-1, descending=True).argsort(-1)
            return (rank < self.merge_count).to(p.dtype)
        return (p > self.merge_threshold).to(p.dtype)

    def check_num_groups(self, num_groups: int | None = None) -> int:
        """The number of patches G of a forward call: `num_groups`, or the config's when None. The
        s SuperTokens are fixed by the model, so G must be at least s."""
        g = self.config.num_groups if num_groups is None else num_groups
        s = self.config.num_supertokens
        if isinstance(g, bool) or not isinstance(g, int) or g < 1:
            raise FoundryInputError(f"num_groups must be a positive whole number of patches, got {g!r}")
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
        tokens, centers = self.tokenizer(points, self.check_num_groups(num_groups))
        out = {"centers": centers, "input_tokens": tokens}
        merge = None
        if self.gate is not None:
            p = self.gate(tokens)
            merge = self._merge_decision(p)
            out["gate_prob"], out["merge"] = p, merge
        st, assignment, sc, counts = self.dso(tokens, centers, merge)
        out.update(supertokens=st, assignment=assignment, counts=counts, super_centers=sc)
        if getattr(self.dso, "usage", None) is not None:
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
        return pool_tokens(tokens, self.config.teacher_pooling)

    def forward(self, points: torch.Tensor) -> torch.Tensor:
        return self.forward_features(points)

    @property
    def token_dim(self) -> int:
        return self.config.teacher_width

    @property
    def feature_dim(self) -> int:
        return self.config.feature_dim

    @property
    def min_points(self) -> int:
        return max(self.config.group_size, self.config.num_groups)


# -- construction --------------------------------------------------------------------------------
def student_config_for(name: str, teacher_model: nn.Module | None = None, **overrides) -> StudentConfig:
    """A preset's config, with patches, width and pooling taken from `teacher_model` when given."""
    if name not in STUDENT_PRESETS:
        raise KeyError(f"unknown student preset {name!r}; available: {sorted(STUDENT_PRESETS)}")
    fields = dict(STUDENT_PRESETS[name])
    if teacher_model is not None:
        tc = teacher_model.config
        fields.update(num_points=tc.num_points, num_groups=tc.num_groups, group_size=tc.group_size,
                      fps_start=tc.fps_start, fps_backend=tc.fps_backend, patch_order=tc.patch_order,
                      teacher_width=teacher_model.token_dim, teacher_pooling=tc.pooling, teacher_depth=tc.depth)
    cfg = StudentConfig(name=name, **fields)
    return cfg.replace(**overrides) if overrides else cfg


def create_student(name: str, **overrides) -> FoundryStudent:
    return FoundryStudent(student_config_for(name, **overrides))


def init_from_teacher(student: FoundryStudent, teacher: PointTransformer, *, tokenizer: bool | None = None,
                      encoder_blocks: list[int] | str | None = None, freeze_encoder: bool = False) -> None:
    """Copy teacher weights into the student. tokenizer: copy the mini-PointNet (needs
    tokenizer='teacher' and the teacher's tokenizer shape; default: when the shapes allow).
    encoder_blocks: teacher block indices for the student's blocks ("first", "spread" = evenly
    spaced, or a list); needs width == teacher width. freeze_encoder: stop training the blocks."""
    c = student.config
    if not isinstance(teacher, PointTransformer):
        raise FoundryInputError("init_from_teacher needs a PointTransformer teacher")
    tc = teacher.config
    can_tok = (c.tokenizer == "teacher" and tuple(tc.tokenizer_hidden) == c.tokenizer_hidden
               and (tc.tokenizer_width or tc.width) == c.token_dim)
    if tokenizer is None:
        tokenizer = can_tok
    if tokenizer:
        if not can_tok:
            raise FoundryInputError("the student's tokenizer does not have the teacher's shape; use tokenizer='teacher' "
                                    f"with tokenizer_hidden={tuple(tc.tokenizer_hidden)} and token_dim={tc.tokenizer_width or tc.width}")
        student.tokenizer.patch_embed.load_state_dict(teacher.patch_embed.state_dict())
        c.tokenizer_init = f"teacher:{c.teacher}"
    if encoder_blocks is not None:
        if c.width != tc.width or c.heads != tc.heads or c.qkv_bias != tc.qkv_bias or c.mlp_ratio != tc.mlp_ratio:
            raise FoundryInputError("encoder init from the teacher needs the teacher's width, heads, qkv_bias and mlp_ratio")
        if encoder_blocks == "first":
            encoder_blocks = list(range(c.depth))
        elif encoder_blocks == "spread":
            encoder_blocks = [round(i * (tc.depth - 1) / max(1, c.depth - 1)) for i in range(c.depth)]
        if len(encoder_blocks) != c.depth:
            raise FoundryInputError(f"need {c.depth} teacher blocks, got {encoder_blocks}")
        for mine, theirs in zip(student.encoder.blocks.blocks, encoder_blocks):
            mine.load_state_dict(teacher.encoder.blocks[theirs].state_dict())
        student.encoder.norm.load_state_dict(teacher.norm.state_dict())
        c.encoder_init = f"teacher:{c.teacher}:blocks{list(encoder_blocks)}"
    if freeze_encoder:
        for p in student.encoder.blocks.parameters():
            p.requires_grad_(False)
        c.freeze_encoder = True


def switch_dso_seeding(student: FoundryStudent, seeding: str, spatial_init: float | None = None) -> FoundryStudent:
    """A copy of a trained DSO student whose SuperToken queries are switched to `seeding`
    ("learned" or "fps"): tokenizer, encoder, CAU and DSO keys/queries keep their weights, the
    learned query vectors restart (std 0.02 for "fps", 1.0 for "learned", torch seed 0) and the
    spatial prior is added or dropped. For continuing a trained student with the other query mode."""
    c = student.config
    if c.compression != "dso":
        raise FoundryInputError(f"only a DSO student has SuperToken queries to switch (this one uses {c.compression!r})")
    name = c.name.removesuffix("-learned") if seeding == "fps" else (
        c.name if c.name.endswith("-learned") else f"{c.name}-learned")
    cfg = c.replace(dso_seeding=seeding, name=name,
                    dso_spatial_init=c.dso_spatial_init if spatial_init is None else spatial_init)
    new = FoundryStudent(cfg)
    missing, unexpected = new.load_state_dict(student.state_dict(), strict=False)
    if (set(missing) | set(unexpected)) - {"dso.spatial_logit"}:
        raise RuntimeError(f"switching DSO seeding changed more than the spatial prior: {missing}, {unexpected}")
    with torch.random.fork_rng():
        torch.manual_seed(0)
        nn.init.normal_(new.dso.supertokens, std=0.02 if seeding == "fps" else 1.0)
    return new.to(next(student.parameters()).device)


def add_extra_layers(student: FoundryStudent, layers) -> FoundryStudent:
    """A copy of a trained student that also reproduces teacher blocks `layers`: every weight is
    kept, and each new block's output MLP starts as a copy of the target layer's (so it starts
    from the deepest reconstruction and only has to learn the difference)."""
    c = student.config
    new_layers = sorted({int(x) for x in layers} - set(c.extra_layers))
    cfg = c.replace(extra_layers=tuple(sorted(set(c.extra_layers) | set(new_layers))))
    new = FoundryStudent(cfg)
    missing, unexpected = new.load_state_dict(student.state_dict(), strict=False)
    if unexpected or any(not k.startswith("cau.layer_mlps.") for k in missing):
        raise RuntimeError(f"adding output layers changed more than the new heads: {missing}, {unexpected}")
    for x in new_layers:
        new.cau.layer_mlps[str(x)].load_state_dict(student.cau.mlp.state_dict())
    return new.to(next(student.parameters()).device)


register_kind("student", lambda cfg: FoundryStudent(StudentConfig.from_dict(cfg)))

from . import baselines  # noqa: E402,F401  (registers the baseline model kinds)
