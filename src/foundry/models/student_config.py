"""The student's config (everything that rebuilds it, including which teacher it imitates) and
its presets."""
from __future__ import annotations

from dataclasses import dataclass, field

from torch import nn

from .config import ConfigFields, default_outlier_filter

COMPRESSIONS = ("dso", "fps", "kmeans", "tome")


@dataclass
class StudentConfig(ConfigFields):
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
    outlier_filter: bool = field(default_factory=default_outlier_filter)  # as the backbone's (models.config)
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
    # an affine map on the pooled global feature, fitted after distillation in closed form onto the teacher's
    # global features of the training clouds (`foundry align`, train/feature_align.py); tokens unchanged
    feature_align: bool = False
    # Foundry-Gate
    gate: bool = False
    gate_hidden: int = 64
    merge_threshold: float = 0.5  # inference: merge tokens with p > threshold ...
    merge_count: int | None = None  # ... or, when set, the `merge_count` tokens with the highest p
    # training: "budget" draws a merge count r uniformly from 0..G per cloud and merges the r tokens of
    # highest p (straight-through), so one file serves every run-time budget (foundry-s16-gate's setting);
    # "bernoulli" merges each token with its probability p (the paper's form: training then sees only the
    # budgets p happens to give; the default, so that gated runs from before this field resume as they were)
    gate_training: str = "bernoulli"
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
        if self.gate_training not in ("budget", "bernoulli"):
            raise ValueError(f"gate_training must be 'budget' or 'bernoulli', got {self.gate_training!r}")
        if self.gate and self.compression != "dso":
            raise ValueError("the Foundry-Gate works with compression='dso' only")
        if self.teacher_pooling.startswith("cls"):
            # a student has no cls token: the mean of the tokens stands in for it
            self.teacher_pooling = self.teacher_pooling.replace("cls", "mean")

    @property
    def feature_dim(self) -> int:
        return self.teacher_width if self.teacher_pooling in ("max", "mean") else 2 * self.teacher_width

    # fields added later are left out at their defaults (ConfigFields.to_dict)
    LATER_FIELDS = (("dso_seeding", "dso_spatial_init"), ("teacher_depth",), ("extra_layers",), ("gate_training",),
                    ("feature_align",))


_S = dict(teacher_width=384, width=384, depth=4, heads=6, tokenizer="slim", tokenizer_hidden=(32, 64, 128), token_dim=384)
# the method study's final recipe (chosen on validation, scripts/method_study.sh narrow with TOKEN_DIM=192): the
# encoder and the tokenizer's tokens 192 wide (3 heads of 64), the CAU still 384 hidden: within noise of the teacher
# on every validation task score, as the 384-wide student, with 28% of its parameters and 48% of its MACs (the
# tokenizer's last layer over every point, 128 -> 384, was most of them)
_N = dict(_S, width=192, heads=3, token_dim=192)
STUDENT_PRESETS: dict[str, dict] = {
    "foundry-s16-narrow": dict(_N, num_supertokens=16, dso_seeding="fps"),
    "foundry-s4-narrow": dict(_N, num_supertokens=4, dso_seeding="fps"),
    "foundry-s1-narrow": dict(_N, num_supertokens=1, dso_seeding="fps"),  # as trained (one SuperToken: no effect)
    # DSO with FPS-seeded queries and a learned spatial prior (see DSO): every SuperToken in use
    "foundry-s16": dict(_S, num_supertokens=16, dso_seeding="fps"),
    "foundry-s4": dict(_S, num_supertokens=4, dso_seeding="fps"),
    "foundry-s1": dict(_S, num_supertokens=1),  # one SuperToken: every token joins it, queries do not matter
    "foundry-s16-gate": dict(_S, num_supertokens=16, gate=True, dso_seeding="fps", gate_training="budget"),
    "foundry-s16-narrow-gate": dict(_N, num_supertokens=16, gate=True, dso_seeding="fps", gate_training="budget"),
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


def student_config_for(name: str, teacher_model: nn.Module | None = None, **overrides) -> StudentConfig:
    """A preset's config, with patches, width and pooling taken from `teacher_model` when given.

    A student is never wider than its teacher: for a teacher narrower than the preset (teacher-small,
    192) the encoder, its tokens and the CAU take the teacher's width, with 64-d attention heads, so
    the student stays a fraction of its teacher's cost (a 384-wide student of a 192-wide teacher
    would cost about 60% of it). Presets keep their width for a teacher at least as wide."""
    if name not in STUDENT_PRESETS:
        raise KeyError(f"unknown student preset {name!r}; available: {sorted(STUDENT_PRESETS)}")
    fields = dict(STUDENT_PRESETS[name])
    if teacher_model is not None:
        tc = teacher_model.config
        fields.update(num_points=tc.num_points, num_groups=tc.num_groups, group_size=tc.group_size,
                      fps_start=tc.fps_start, fps_backend=tc.fps_backend, patch_order=tc.patch_order,
                      outlier_filter=getattr(tc, "outlier_filter", default_outlier_filter()),
                      teacher_width=teacher_model.token_dim, teacher_pooling=tc.pooling, teacher_depth=tc.depth)
        fields.update(_narrowed_to(fields, teacher_model.token_dim))
    cfg = StudentConfig(name=name, **fields)
    return cfg.replace(**overrides) if overrides else cfg


def _narrowed_to(fields: dict, teacher_width: int) -> dict:
    """The width fields of a preset narrowed to `teacher_width` (nothing when the preset is not wider)."""
    width = fields.get("width", StudentConfig.width)
    if teacher_width >= width:
        return {}
    narrowed = {"width": teacher_width, "heads": max(1, teacher_width // 64)}
    for key in ("token_dim", "cau_hidden"):
        if fields.get(key, getattr(StudentConfig, key)) > teacher_width:
            narrowed[key] = teacher_width
    if teacher_width % narrowed["heads"]:
        narrowed["heads"] = 1
    return narrowed
