"""Point-JEPA: predict the target encoder's representation of hidden patch blocks from context.

- Patches are put in sequence by a greedy nearest-neighbour walk over their centres, so a
  contiguous run of the sequence is a spatially coherent region.
- Targets: `num_targets` non-overlapping contiguous blocks of that sequence (each a fraction
  `target_ratio` of it, drawn per batch; block positions drawn per cloud); their targets are
  the LayerNorm-ed (no affine) last-block tokens of an EMA copy of the encoder on all patches.
- Context: every other patch (default), or with `context_ratio` (lo, hi) a contiguous run of the
  non-target sequence holding that share of it (drawn per batch; its start per cloud): the size
  Point-JEPA's context block (0.4-0.75 of the sequence, targets removed) has on average, with the
  same count in every cloud of a batch; a harder prediction from less of the shape. Encoded by
  the online encoder.
- A narrow predictor (default: 6 blocks, half the width) gets the context tokens plus mask
  tokens at the target centres, one target block at a time (blocks folded into the batch).
- Loss: SmoothL1 between predictions and targets. The EMA momentum rises linearly from
  ema[0] to ema[1] over the run.
"""
from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from ...models.layers import TransformerEncoder
from ...models.tokenizer import MlpPositionEmbed
from ...validation import FoundryInputError
from ._util import gather_groups, init_weights


def greedy_walk_order(centers: torch.Tensor) -> torch.Tensor:
    """(B, G) order visiting the centres (B, G, 3) by a greedy nearest-neighbour walk, starting
    at the centre with the smallest x + y + z."""
    b, g, _ = centers.shape
    dist = torch.cdist(centers.float(), centers.float())
    visited = torch.zeros(b, g, dtype=torch.bool, device=centers.device)
    rows = torch.arange(b, device=centers.device)
    current = centers.sum(-1).argmin(dim=1)
    order = [current]
    for _ in range(g - 1):
        visited[rows, current] = True
        current = dist[rows, current].masked_fill(visited, float("inf")).argmin(dim=1)
        order.append(current)
    return torch.stack(order, dim=1)


def _heads_for(width: int, wanted: int) -> int:
    for h in range(max(1, wanted), 0, -1):
        if width % h == 0:
            return h
    return 1


class JEPAObjective(nn.Module):
    def __init__(self, encoder: nn.Module, predictor_depth: int = 6, predictor_width: int | None = None,
                 predictor_heads: int | None = None, num_targets: int = 4, target_ratio=(0.15, 0.2),
                 ema=(0.9995, 0.99999), context_ratio=None):
        super().__init__()
        c = encoder.config
        self.encoder = encoder
        self.target = copy.deepcopy(encoder)
        for p in self.target.parameters():
            p.requires_grad_(False)
        self.num_targets = int(num_targets)
        self.target_ratio = tuple(float(r) for r in target_ratio)
        self.ema = tuple(float(m) for m in ema)
        if self.num_targets < 1 or not 0 < self.target_ratio[0] <= self.target_ratio[1]:
            raise ValueError(f"bad JEPA targets: {num_targets} blocks of ratio {target_ratio}")
        if self.num_targets * self.target_ratio[1] >= 1.0:
            raise ValueError(f"{num_targets} target blocks of up to {target_ratio[1]} leave no context")
        self.context_ratio = None if context_ratio is None else tuple(float(r) for r in context_ratio)
        if self.context_ratio is not None and (len(self.context_ratio) != 2
                                               or not 0 < self.context_ratio[0] <= self.context_ratio[1] <= 1):
            raise FoundryInputError(f"bad JEPA context ratio {context_ratio}: give two shares LO HI with "
                                    "0 < LO <= HI <= 1 of the non-target patches, e.g. --context-ratio 0.4 0.75")
        pw = predictor_width or max(1, c.width // 2)
        self.predictor_embed = nn.Linear(c.width, pw)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, pw))
        self.predictor_pos = MlpPositionEmbed(pw, c.pos_hidden)
        self.predictor = TransformerEncoder(pw, predictor_depth, _heads_for(pw, predictor_heads or c.heads),
                                            c.mlp_ratio, True, 0.0, True, c.norm_eps)
        self.predictor_norm = nn.LayerNorm(pw, eps=c.norm_eps)
        self.predictor_proj = nn.Linear(pw, c.width)
        for m in (self.predictor_embed, self.predictor_pos, self.predictor, self.predictor_norm, self.predictor_proj):
            m.apply(init_weights)
        nn.init.trunc_normal_(self.mask_token, std=0.02)
        self.target.eval()

    def train(self, mode: bool = True):
        super().train(mode)
        self.target.eval()  # no drop-path in the target; its BatchNorm uses the online statistics
        return self

    # -- masks ------------------------------------------------------------------------------
    def sample_blocks(self, b: int, g: int, generator=None):
        """Target indices (B, T, L) into the ordered sequence and context indices (B, G - T*L, or
        fewer with `context_ratio`), the context in sequence order."""
        lo, hi = self.target_ratio
        ratio = lo + (hi - lo) * float(torch.rand((), generator=generator))
        length = max(1, int(round(ratio * g)))
        t = self.num_targets
        length = min(length, (g - 1) // t)
        if length < 1:
            raise ValueError(f"{g} patches are too few for {t} target blocks plus context")
        free = g - t * length
        offsets = torch.randint(0, free + 1, (b, t), generator=generator).sort(dim=1).values
        starts = offsets + torch.arange(t) * length
        targets = starts.unsqueeze(-1) + torch.arange(length)  # (B, T, L)
        is_target = torch.zeros(b, g, dtype=torch.bool)
        is_target.scatter_(1, targets.reshape(b, -1), True)
        context = torch.argsort(is_target.to(torch.int8), dim=1, stable=True)[:, :free]  # in sequence order
        if self.context_ratio is not None:  # a contiguous run of the non-target sequence
            lo, hi = self.context_ratio
            n = min(free, max(1, int(round((lo + (hi - lo) * float(torch.rand((), generator=generator))) * free))))
            first = torch.randint(0, free - n + 1, (b, 1), generator=generator)
            context = context.gather(1, first + torch.arange(n))
        return targets, context

    def _target_tokens(self, nbhd: torch.Tensor, centers: torch.Tensor) -> torch.Tensor:
        tgt = self.target
        tokens = tgt.embed(nbhd)
        pos = tgt.pos_embed(centers)
        if tgt.config.cls_token:
            bsz = tokens.shape[0]
            tokens = torch.cat([tgt.cls_token.expand(bsz, -1, -1), tokens], 1)
            pos = torch.cat([tgt.cls_pos.expand(bsz, -1, -1), pos], 1)
        h = tgt.encoder(tokens, pos)
        if tgt.config.cls_token:
            h = h[:, 1:]
        return F.layer_norm(h.float(), (h.shape[-1],))

    def forward(self, points: torch.Tensor, generator: torch.Generator | None = None):
        nbhd, centers = self.encoder.group(points)
        order = greedy_walk_order(centers)
        nbhd, centers = gather_groups(nbhd, order), gather_groups(centers, order)
        b, g = centers.shape[:2]
        targets, context = self.sample_blocks(b, g, generator)
        targets, context = targets.to(points.device), context.to(points.device)
        t, length = targets.shape[1:]
        flat_targets = targets.reshape(b, -1)

        with torch.no_grad():
            y = gather_groups(self._target_tokens(nbhd, centers), flat_targets)  # (B, T*L, C)

        ctx_centers = gather_groups(centers, context)
        ctx, _, _ = self.encoder.encode(self.encoder.embed(gather_groups(nbhd, context)), ctx_centers)

        n_ctx = ctx.shape[1]
        z = self.predictor_embed(ctx)
        pw = z.shape[-1]
        z = z.unsqueeze(1).expand(b, t, n_ctx, pw).reshape(b * t, n_ctx, pw)
        ctx_pos = self.predictor_pos(ctx_centers).unsqueeze(1).expand(b, t, n_ctx, pw).reshape(b * t, n_ctx, pw)
        tgt_pos = self.predictor_pos(gather_groups(centers, flat_targets)).reshape(b * t, length, pw)
        q = self.mask_token.expand(b * t, length, pw).to(z.dtype)
        out = self.predictor(torch.cat([z, q], 1), torch.cat([ctx_pos, tgt_pos], 1))[:, n_ctx:]
        pred = self.predictor_proj(self.predictor_norm(out))
        loss = F.smooth_l1_loss(pred.float(), y.reshape(b * t, length, -1))
        with torch.no_grad():
            target_std = y.std(dim=1).mean()
        return loss, {"loss": loss.detach(), "target_std": target_std}

    # -- EMA --------------------------------------------------------------------------------
    def momentum(self, step: int, total_steps: int) -> float:
        m0, m1 = self.ema
        return m0 + (m1 - m0) * min(1.0, step / max(1, total_steps))

    @torch.no_grad()
    def after_step(self, step: int, total_steps: int) -> dict:
        m = self.momentum(step, total_steps)
        for pt, po in zip(self.target.parameters(), self.encoder.parameters()):
            pt.mul_(m).add_(po.detach(), alpha=1.0 - m)
        for bt, bo in zip(self.target.buffers(), self.encoder.buffers()):
            bt.copy_(bo)
        return {"ema": m}
