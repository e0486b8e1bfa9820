"""Corrupted distillation views (robustness training): some clouds of a batch reach the student
corrupted (`data.corruptions`: noise, holes, strays, single-view scans) while the targets stay the
teacher's tokens on the clean cloud.

The student's patches on a corrupted cloud are not the teacher's: FPS picks other centres. So each
student token is matched to the teacher token of the nearest clean patch centre, and the pooled
feature term compares with the teacher's pooled feature of the clean cloud (what the frozen-feature
protocols read). Families that move the cloud's frame (`scale` renormalises, `rotate` turns it) are
refused: a nearest-centre match across frames means nothing, and the augmentation already scales.

Everything random comes from (seed, step), so a resumed run sees the same corrupted clouds.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..data.corruptions import PARTIAL, SEVERITIES, canonical_family, corrupt
from ..models.backbone import pool_tokens
from ..models.patches import make_patches
from ..validation import FoundryInputError

TRAINABLE = ("jitter", "drop_global", "drop_local", "add_global", "add_local", PARTIAL)
# the default leaves drop_global and add_global out of training, so the robustness protocol keeps
# families that the student never saw
DEFAULT_FAMILIES = ("jitter", "drop_local", "add_local", PARTIAL)


@dataclass
class CorruptedBatch:
    points: torch.Tensor  # (B, N, 3) the student's input
    rows: torch.Tensor  # (R,) rows of the batch that were corrupted
    clean_centers: torch.Tensor | None  # (R, G, 3) the teacher's patch centres on those rows' clean clouds


class CorruptedViews:
    """Corrupt a share of each batch's clouds (each chosen cloud: one family and severity, uniform)."""

    def __init__(self, families=DEFAULT_FAMILIES, share: float = 0.5, seed: int = 0):
        fams = [canonical_family(f) for f in families]
        bad = [f for f in fams if f not in TRAINABLE]
        if bad or not fams:
            raise FoundryInputError(f"corrupted views take {', '.join(TRAINABLE)}; got {', '.join(bad) or 'none'} "
                                    "(scale and rotate move the cloud's frame, where token targets cannot follow)")
        if not 0.0 < share <= 1.0:
            raise FoundryInputError(f"the corrupted share must be in (0, 1], got {share}")
        self.families, self.share, self.seed = tuple(dict.fromkeys(fams)), float(share), int(seed)

    def describe(self) -> dict:
        return {"families": list(self.families), "share": self.share}

    def corrupt_batch(self, points: torch.Tensor, step: int, config, num_groups: int,
                      centers: torch.Tensor | None = None) -> CorruptedBatch:
        """The batch with its chosen clouds corrupted, and the clean patch centres of those clouds:
        `centers` (B, G, 3) when the teacher's are at hand (the token cache holds them), else the
        grouping of `config` (the student's = the teacher's)."""
        rng = np.random.default_rng([self.seed, int(step), 0xC0])
        b = points.shape[0]
        rows = np.flatnonzero(rng.random(b) < self.share)
        if rows.size == 0:
            return CorruptedBatch(points, torch.zeros(0, dtype=torch.long), None)
        clouds = points[rows].detach().cpu().numpy()
        out = np.empty_like(clouds)
        for j, cloud in enumerate(clouds):
            family = self.families[rng.integers(len(self.families))]
            severity = 1 if family == PARTIAL else int(rng.integers(1, len(SEVERITIES) + 1))
            out[j], _ = corrupt(cloud, family, severity, seed=int(rng.integers(2**31)))
        rows_t = torch.as_tensor(rows, dtype=torch.long, device=points.device)
        if centers is not None:
            clean_centers = centers[rows_t]
        else:
            with torch.no_grad():
                _, clean_centers = make_patches(points[rows_t].float(), config, num_groups)
        mixed = points.clone()
        mixed[rows_t] = torch.as_tensor(out, device=points.device, dtype=points.dtype)
        return CorruptedBatch(mixed, rows_t, clean_centers)

    @staticmethod
    def targets(batch: CorruptedBatch, centers: torch.Tensor, target: torch.Tensor, layer_targets: dict,
                pooling: str):
        """(token targets, {layer: targets}, pooled-feature target): on the corrupted rows each
        student token's target is the teacher token at the clean patch centre nearest to the
        student's centre (`centers`, (B, G, 3)); the pooled target is always the clean tokens'."""
        pooled = pool_tokens(target.float(), pooling)
        if batch.rows.numel() == 0:
            return target, layer_targets, pooled
        nearest = torch.cdist(centers[batch.rows].detach().float(), batch.clean_centers.float()).argmin(-1)

        def remap(t):
            t = t.clone()
            t[batch.rows] = torch.gather(t[batch.rows], 1, nearest.unsqueeze(-1).expand(-1, -1, t.shape[-1]))
            return t

        return remap(target), {x: remap(t) for x, t in layer_targets.items()}, pooled
