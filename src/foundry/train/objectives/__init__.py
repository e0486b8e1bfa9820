"""Self-supervised pretraining objectives. Each wraps a backbone (`.encoder`, a PointTransformer)
and returns `(loss, metrics)` from `forward(points, generator=None)`; `after_step(step, total)`
runs after each optimizer step (the JEPA EMA update)."""
from __future__ import annotations

from torch import nn

from .jepa import JEPAObjective, greedy_walk_order
from .mae import MAEObjective

OBJECTIVES = {"mae": MAEObjective, "jepa": JEPAObjective}


def build_objective(name: str, encoder: nn.Module, **options) -> nn.Module:
    if name not in OBJECTIVES:
        raise ValueError(f"unknown objective {name!r}; choose one of {sorted(OBJECTIVES)}")
    return OBJECTIVES[name](encoder, **options)


__all__ = ["MAEObjective", "JEPAObjective", "OBJECTIVES", "build_objective", "greedy_walk_order"]
