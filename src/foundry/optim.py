"""The optimiser rules every training loop shares: one weight-decay rule, one schedule, and the
plain shuffled-minibatch loop of the evaluation heads."""
from __future__ import annotations

import math

import torch

# parameters whose names end so are embeddings (cls / mask tokens, cls position): never decayed
NO_DECAY_SUFFIXES = ("token", "cls_pos")


def decay_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """AdamW parameter groups: decay on weight matrices, none on biases, norms (ndim <= 1) and
    token embeddings; frozen parameters are left out. Order within a group is the module's."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.ndim <= 1 or name.endswith(NO_DECAY_SUFFIXES) else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def cosine_with_warmup(optimizer, warmup_steps: int, total_steps: int, min_lr_ratio: float = 0.0):
    """LambdaLR: linear warm-up from lr/warmup to lr over `warmup_steps`, then cosine decay to
    `min_lr_ratio * lr` at `total_steps` (held there afterwards). Call `.step()` once per step."""
    warmup_steps = max(0, int(warmup_steps))
    total_steps = max(1, int(total_steps))

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        span = max(1, total_steps - warmup_steps)
        progress = min(1.0, (step - warmup_steps) / span)
        return min_lr_ratio + (1.0 - min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def shuffled_batches(n: int, batch_size: int, generator: torch.Generator | None = None,
                     min_size: int = 1) -> list[torch.Tensor]:
    """One epoch's minibatches: a random permutation of range(n) (drawn now, one `randperm` from
    `generator`) cut into index tensors of `batch_size`, those shorter than `min_size` left out
    (2 where BatchNorm trains: the last batch may be a single cloud)."""
    perm = torch.randperm(n, generator=generator)
    return [idx for idx in perm.split(batch_size) if len(idx) >= min_size]


def train_epochs(module: torch.nn.Module, optimizer, n: int, loss_of, *, epochs: int, batch_size: int,
                 generator: torch.Generator | None = None, scheduler=None, schedule_per_epoch: bool = False,
                 min_size: int = 1) -> list[float]:
    """`epochs` passes over `shuffled_batches(n, ...)` with `module` in train mode: per batch of
    indices `idx`, `loss = loss_of(idx)`, zeroed gradients, backward, an optimiser step and a
    `scheduler` step (once per epoch instead with `schedule_per_epoch`). Returns each epoch's loss
    summed over its batches' samples, divided by n."""
    losses = []
    for _ in range(epochs):
        module.train()
        total = 0.0
        for idx in shuffled_batches(n, batch_size, generator, min_size):
            loss = loss_of(idx)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            if scheduler is not None and not schedule_per_epoch:
                scheduler.step()
            total += loss.item() * len(idx)
        if scheduler is not None and schedule_per_epoch:
            scheduler.step()
        losses.append(total / n)
    return losses
