"""Models: the transformer backbone (teachers), the Foundry student and its baselines."""
from .backbone import PointTransformer, pool_tokens
from .config import BackboneConfig
from .presets import PRESETS, preset_config

__all__ = ["PointTransformer", "BackboneConfig", "PRESETS", "preset_config", "pool_tokens"]
