"""Named backbone presets."""
from __future__ import annotations

from .config import BackboneConfig

PRESETS: dict[str, dict] = {
    # Point-MAE / Point-JEPA ViT-S: 64 patches of 32 points at 1024 points, width 384, depth 12.
    "vit-s": dict(num_groups=64, group_size=32, width=384, depth=12, heads=6, drop_path=0.1),
    # A teacher sized for CPU pretraining: same patches, narrower and shallower.
    "small": dict(num_groups=64, group_size=32, width=192, depth=6, heads=3, drop_path=0.1,
                  tokenizer_hidden=(64, 128, 256)),
    # For unit tests only.
    "tiny": dict(num_points=256, num_groups=16, group_size=16, width=32, depth=2, heads=2, drop_path=0.0,
                 tokenizer_hidden=(16, 32, 64), pos_hidden=16),
}


def preset_config(name: str, **overrides) -> BackboneConfig:
    if name not in PRESETS:
        raise KeyError(f"unknown preset {name!r}; available: {sorted(PRESETS)}")
    return BackboneConfig(name=name, **{**PRESETS[name], **overrides})
