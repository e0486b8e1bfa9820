"""The task-specific KD experts' objectives: the student's body with a task head, trained on labels
and, optionally, the frozen teacher's predictions as soft targets (per cloud for classification,
per point for segmentation), computed once per cloud before training (`teacher_targets`).

Each is a task of the one training loop (`train.loop`): a permutation of the clouds from (seed,
epoch) and a per-step generator for the augmentation, so a resumed run repeats the uninterrupted one.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ...data import augment_batch
from ..loop import step_generator

AUGMENT = {"scale": (2 / 3, 3 / 2), "translate": 0.2}


class BodyWithHead(nn.Module):
    """A model body and a task head trained together: `forward` gives the head's logits.

    classification: head(body.forward_features(points)); segmentation: the part head on the body's
    tokens and patch centres with the object category (per-point logits)."""

    def __init__(self, body: nn.Module, head: nn.Module, task: str, frozen_body: bool = False):
        super().__init__()
        self.body, self.head, self.task, self.frozen_body = body, head, task, frozen_body
        if frozen_body:
            body.requires_grad_(False)

    def train(self, mode: bool = True):
        super().train(mode)
        if self.frozen_body:  # a frozen body runs as at inference
            self.body.eval()
        return self

    def forward(self, points, category=None):
        if self.task == "classification":
            return self.head(self.body.forward_features(points))
        tokens, centers = self.body.forward_tokens(points)
        return self.head(tokens.float(), centers, points, category)


class _EpochBatches:
    """Batches of cloud indices from a permutation seeded by (seed, epoch), starting at batch `first`
    (a resumed epoch); subclasses set `self.batch_size`, `self.seed` and `num_clouds`."""

    num_clouds: int

    @property
    def steps_per_epoch(self) -> int:
        return -(-self.num_clouds // self.batch_size)

    def batches(self, epoch: int, first: int):
        order = torch.randperm(self.num_clouds, generator=torch.Generator().manual_seed(self.seed * 7919 + epoch))
        for b0 in range(first * self.batch_size, len(order), self.batch_size):
            yield order[b0:b0 + self.batch_size]

    def batch_clouds(self, idx) -> int:
        return len(idx)


class _LabelledTask(_EpochBatches):
    """Labelled clouds in batches; with `teacher_targets` (the teacher's logits per cloud, (M, C), or
    per point, (M, N, P): a head fitted on its frozen outputs, run on the clean clouds), the loss adds
    kd_weight * T^2 * KL(teacher || model) at temperature T.

    The targets come from the clean cloud while the model sees it scaled and shifted: the labels do
    not change under that augmentation, and one teacher pass per cloud instead of one per step makes
    the fair experts about 3x cheaper (the teacher costs ~5x the student per cloud)."""

    def __init__(self, arrays: tuple, *, batch_size: int, seed: int, device, teacher_targets=None,
                 kd_weight: float = 0.0, temperature: float = 1.0):
        self.arrays, self.batch_size, self.seed, self.device = arrays, batch_size, seed, device
        self.teacher_targets, self.kd_weight, self.temperature = teacher_targets, kd_weight, temperature
        self.num_clouds = len(arrays[0])

    def with_kd(self, loss, logits, idx, allowed=None) -> tuple[torch.Tensor, dict]:
        if self.teacher_targets is None:
            return loss, {}
        t = self.temperature
        target = self.teacher_targets[idx].to(self.device, logits.dtype)
        if allowed is not None:
            target = target.masked_fill(~allowed, -1e4)
        kl = F.kl_div(F.log_softmax(logits / t, -1), F.log_softmax(target / t, -1), log_target=True,
                      reduction="none").sum(-1).mean()
        return loss + self.kd_weight * t ** 2 * kl, {"kl": float(kl.detach())}

    def augmented(self, idx, step: int) -> torch.Tensor:
        return augment_batch(self.arrays[0][idx], generator=step_generator(self.seed, step), **AUGMENT).to(self.device)


class ClassificationTask(_LabelledTask):
    """Cross-entropy on the class labels (KD per cloud);
    arrays = (points (M, N, 3), labels (M,))."""

    def loss(self, model, idx, step: int, total_steps: int):
        labels = self.arrays[1][idx].to(self.device)
        x = self.augmented(idx, step)
        logits = model(x)
        loss, kd = self.with_kd(F.cross_entropy(logits, labels), logits, idx)
        return loss, {"loss": float(loss.detach()), **kd,
                      "train_accuracy": float((logits.argmax(-1) == labels).float().mean())}


class SegmentationTask(_LabelledTask):
    """Per-point cross-entropy on the part labels, logits restricted to the cloud's category parts (as
    in `foundry.eval.partseg`); KD per point.
    arrays = (points, parts (M, N), categories (M,), category mask (C, P))."""

    def loss(self, model, idx, step: int, total_steps: int):
        _, parts, cats, mask = self.arrays
        x = self.augmented(idx, step)
        y, cat = parts[idx].to(self.device), cats[idx].to(self.device)
        allowed = mask.to(self.device)[cat].unsqueeze(1)
        logits = model(x, cat).masked_fill(~allowed, -1e4)
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))
        loss, metrics = self.with_kd(loss, logits, idx, allowed)
        metrics = {"loss": float(loss.detach()), **metrics,
                   "train_point_accuracy": float((logits.argmax(-1) == y).float().mean())}
        return loss, metrics


class CachedOutputsHeadTask(_EpochBatches):
    """A task head fitted on a frozen body's outputs computed once per clean cloud (the teacher's head
    behind the experts' soft targets): `inputs` are the head's inputs per cloud (a tuple of (M, ...)
    tensors), `targets` its labels ((M,) classes or (M, N) parts), `mask` the (C, P) category-parts
    mask for segmentation (logits outside the cloud's category are excluded, as in the partseg protocol)."""

    def __init__(self, inputs: tuple, targets: torch.Tensor, *, batch_size: int, seed: int, device,
                 mask: torch.Tensor | None = None, categories: torch.Tensor | None = None):
        self.inputs, self.targets, self.mask, self.categories = inputs, targets, mask, categories
        self.batch_size, self.seed, self.device = batch_size, seed, device
        self.num_clouds = len(targets)

    def loss(self, model, idx, step: int, total_steps: int):
        logits = model(*(x[idx].to(self.device) for x in self.inputs))
        y = self.targets[idx].to(self.device)
        if self.mask is not None:
            logits = logits.masked_fill(~self.mask.to(self.device)[self.categories[idx]].unsqueeze(1), -1e4)
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))
        return loss, {"loss": float(loss.detach()),
                      ("train_accuracy" if self.mask is None else "train_point_accuracy"):
                      float((logits.argmax(-1) == y).float().mean())}
