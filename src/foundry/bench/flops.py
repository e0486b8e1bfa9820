"""MACs and FLOPs through PyTorch's own FLOP counter (torch.utils.flop_counter).

FLOPs count a multiply-add as 2; MACs = FLOPs / 2. Only matmul-like ops (linear, bmm,
attention, conv) are counted, as is usual; FPS and kNN comparisons are not MACs.
"""
from __future__ import annotations

import torch
from torch.utils.flop_counter import FlopCounterMode


def count_flops(fn, *args, **kwargs) -> tuple[int, dict[str, int]]:
    """Run fn(*args) under the counter; returns (total FLOPs, FLOPs per top-level module)."""
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        fn(*args, **kwargs)
    per_module = {}
    for name, ops in counter.get_flop_counts().items():
        per_module[name] = int(sum(ops.values()))
    return int(counter.get_total_flops()), per_module


def model_macs(model, num_points: int | None = None, batch: int = 1, seed: int = 0) -> int:
    """MACs of one `forward_features` call on a random (batch, num_points, 3) cloud."""
    n = num_points or getattr(model.config, "num_points", 1024)
    g = torch.Generator().manual_seed(seed)
    points = torch.randn(batch, n, 3, generator=g)
    total, _ = count_flops(model.forward_features, points)
    return total // 2
