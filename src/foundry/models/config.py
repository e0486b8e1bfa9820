"""Configuration of the point-cloud transformer backbone (teachers and the random floor)."""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field

from ..validation import FoundryInputError

CONFIG_VERSION = 1


def default_outlier_filter() -> bool:
    """The outlier filter's default for a config that does not set it (and for files written before the
    field existed): on since 2026-12-05. FOUNDRY_OUTLIER_FILTER=0 restores the earlier default, off,
    which reproduces every figure measured before the switch (the study scripts set it)."""
    value = os.environ.get("FOUNDRY_OUTLIER_FILTER", "1").strip().lower()
    if value not in ("0", "1", "on", "off", "true", "false"):
        raise FoundryInputError(f"the environment variable FOUNDRY_OUTLIER_FILTER must be 1 (on, the default) or 0 "
                                f"(off, as before 2026-12-05), got {value!r}; unset it or set one of those")
    return value in ("1", "on", "true")

POOLINGS = ("mean+max", "cls+max", "max", "mean", "cls")


class ConfigFields:
    """Serialisation shared by the model configs (dataclasses): fields as a dict with tuples as
    lists, rebuilt from such a dict (unknown keys refused), and a copy with fields replaced."""

    # groups of fields added later, left out of `to_dict()` while all of a group are at their
    # defaults: a model that does not use them serialises (and so fingerprints) exactly as it did
    # before they existed
    LATER_FIELDS = ()

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["tokenizer_hidden"] = list(self.tokenizer_hidden)
        fields = {f.name: f for f in dataclasses.fields(self)}
        for group in self.LATER_FIELDS:
            if all(_plain(d[k]) == _plain(fields[k].default) for k in group):
                for k in group:
                    del d[k]
        return d

    @classmethod
    def from_dict(cls, d: dict):
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown {cls.__name__} keys {sorted(unknown)}")
        return cls(**d)

    def replace(self, **overrides):
        known = {f.name for f in dataclasses.fields(self)}
        bad = set(overrides) - known
        if bad:
            raise ValueError(f"unknown config option(s) {sorted(bad)}; known: {sorted(known)}")
        return dataclasses.replace(self, **overrides)


@dataclass
class PatchTransformerFields(ConfigFields):
    """The fields every `PatchTransformer` config (backbone, PointGPT) starts with: its name, the
    patches (input size, patch count and size) and the encoder's shape. The subclasses' own fields
    follow these in `to_dict()` and in checkpoints, so the order on disk is the one each config had
    when it declared them itself. Each subclass also declares `tokenizer_hidden`, `cls_token` and
    `pooling`, which the shared checks and `feature_dim` read."""

    name: str = "custom"
    num_points: int = 1024  # nominal input size (MACs are reported at this size)
    num_groups: int = 64
    group_size: int = 32
    width: int = 384
    depth: int = 12
    heads: int = 6
    mlp_ratio: float = 4.0

    def __post_init__(self):
        """The checks every transformer config shares: tuple-ise the tokenizer widths, a known
        pooling that the cls token supports, and heads that divide the width."""
        self.tokenizer_hidden = tuple(self.tokenizer_hidden)
        if self.pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {self.pooling!r}")
        if self.pooling.startswith("cls") and not self.cls_token:
            raise ValueError(f"pooling {self.pooling!r} needs cls_token=True")
        if self.width % self.heads:
            raise ValueError(f"width {self.width} must be divisible by heads {self.heads}")

    @property
    def feature_dim(self) -> int:
        return self.width if self.pooling in ("max", "mean", "cls") else 2 * self.width


@dataclass
class BackboneConfig(PatchTransformerFields):
    """Everything needed to rebuild a backbone; stored inside every checkpoint.

    The options cover how the published teachers differ (see docs): qkv bias (Point-JEPA yes,
    Point-MAE no), a cls token and cls+max pooling (Point-MAE/BERT/GPT fine-tuning) or mean+max
    (Point-JEPA), a reduce layer after the tokenizer (Point-BERT 256 -> 384), sinusoidal
    positions and a causal mask (PointGPT).
    """

    qkv_bias: bool = False
    drop_path: float = 0.1
    norm_eps: float = 1e-5
    tokenizer_hidden: tuple = (128, 256, 512)
    tokenizer_width: int | None = None  # None: the tokenizer outputs `width` directly
    pos_embed: str = "mlp"  # "mlp" | "sincos"
    pos_hidden: int = 128
    pos_every_block: bool = True
    cls_token: bool = False
    pooling: str = "mean+max"
    causal: bool = False
    patch_order: str = "fps"  # "fps" (FPS order) | "morton" (z-order sort of the patch centres)
    fps_start: str = "first"
    fps_backend: str = "torch"
    # move stray points onto the surface before FPS picks patch centres (ops.outliers.suppress_outliers);
    # on by default since 2026-12-05 (default_outlier_filter). Always serialised: a file without the
    # field (written while the default was off) loads with today's default
    outlier_filter: bool = field(default_factory=default_outlier_filter)
    extra: dict = field(default_factory=dict)

    def __post_init__(self):
        super().__post_init__()
        if self.pos_embed not in ("mlp", "sincos"):
            raise ValueError(f"pos_embed must be 'mlp' or 'sincos', got {self.pos_embed!r}")
        if self.patch_order not in ("fps", "morton"):
            raise ValueError(f"patch_order must be 'fps' or 'morton', got {self.patch_order!r}")
        if self.group_size < 1 or self.num_groups < 1:
            raise ValueError("num_groups and group_size must be positive")


def _plain(v):
    return list(v) if isinstance(v, (tuple, list)) else v
