"""Small helpers shared by the pretraining objectives."""
from __future__ import annotations

import torch

from ...models.backbone import _init_weights as init_weights  # noqa: F401  (one init rule for all)


def gather_groups(values: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """values (B, G, ...) gathered along G with index (B, M) -> (B, M, ...)."""
    shape = index.shape + values.shape[2:]
    idx = index.reshape(index.shape + (1,) * (values.dim() - 2)).expand(shape)
    return torch.gather(values, 1, idx)

