"""MLP probe of frozen global features.

Protocol: global features from `forward_features` (frozen backbone, fixed data), standardised
with train statistics only, a small torch MLP (Linear-BN-ReLU-Dropout-Linear; `hidden=0` gives a
plain linear probe) trained with AdamW for a fixed number of epochs; the test accuracy of the
*final* epoch is reported (nothing is selected on the test split). The seed drives the
initialisation, the dropout and the batch order.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ..models.heads import mlp_head
from ..optim import train_epochs
from ..validation import FoundryInputError
from .common import seed_everything

DEFAULTS = dict(data="modelnet10", train_split="trainval", test_split="test", num_points=1024,
                train_per_class=None, test_per_class=None, hidden=256, dropout=0.5, epochs=100,
                batch_size=128, lr=1e-3, weight_decay=1e-4, seeded_points=True)
QUICK = dict(train_per_class=20, test_per_class=20, epochs=60)
METRICS = ("accuracy", "mean_class_accuracy")


def accuracy_stats(pred: np.ndarray, labels: np.ndarray) -> dict:
    """Overall and mean per-class accuracy, in percent."""
    pred, labels = np.asarray(pred), np.asarray(labels)
    per_class = [float((pred[labels == c] == c).mean()) for c in np.unique(labels)]
    return {"accuracy": 100.0 * float((pred == labels).mean()), "mean_class_accuracy": 100.0 * float(np.mean(per_class))}


def train_probe(xtr, ytr, xte, yte, *, seed: int, hidden=256, dropout=0.5, epochs=100, batch_size=128, lr=1e-3,
                weight_decay=1e-4, num_classes: int | None = None) -> dict:
    """Fit the probe on (xtr, ytr) and score the final epoch on (xte, yte)."""
    xtr, xte = np.asarray(xtr, np.float32), np.asarray(xte, np.float32)
    ytr, yte = np.asarray(ytr, np.int64), np.asarray(yte, np.int64)
    if xtr.ndim != 2 or xte.ndim != 2 or xtr.shape[1] != xte.shape[1]:
        raise FoundryInputError(f"probe: train/test features must be (M, D) with the same D, got {xtr.shape} / {xte.shape}")
    mu, sd = xtr.mean(0), xtr.std(0) + 1e-6
    xtr_t = torch.from_numpy((xtr - mu) / sd)
    xte_t = torch.from_numpy((xte - mu) / sd)
    ytr_t = torch.from_numpy(ytr)
    n_cls = num_classes or int(max(ytr.max(), yte.max())) + 1
    gen = seed_everything(seed)
    head = mlp_head(xtr.shape[1], n_cls, hidden, dropout)
    opt = torch.optim.AdamW(head.parameters(), lr=lr, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, epochs))

    def loss_of(idx):
        return nn.functional.cross_entropy(head(xtr_t[idx]), ytr_t[idx])

    losses = train_epochs(head, opt, len(xtr_t), loss_of, epochs=epochs, batch_size=batch_size, generator=gen,
                          scheduler=sched, schedule_per_epoch=True,
                          min_size=2 if hidden > 0 else 1)  # BatchNorm needs two samples
    head.eval()
    with torch.no_grad():
        pred = head(xte_t).argmax(1).numpy()
    out = accuracy_stats(pred, yte)
    out["final_train_loss"] = losses[-1] if losses else float("nan")
    return out


def run(ctx, settings: dict, seed: int) -> dict:
    s = settings
    view = seed if s["seeded_points"] else None  # see the svm protocol
    train = ctx.split(s["data"], s["train_split"], s["num_points"], s["train_per_class"], seed=view)
    test = ctx.split(s["data"], s["test_split"], s["num_points"], s["test_per_class"], seed=view)
    data = {"train": train.describe(), "test": test.describe()}
    xtr, xte = ctx.features(train), ctx.features(test)
    res = train_probe(xtr, train.labels, xte, test.labels, seed=seed, hidden=s["hidden"], dropout=s["dropout"],
                      epochs=s["epochs"], batch_size=s["batch_size"], lr=s["lr"], weight_decay=s["weight_decay"],
                      num_classes=max(train.num_classes, test.num_classes))
    metrics = {k: res[k] for k in METRICS}
    return {"metrics": metrics, "details": {"final_train_loss": res["final_train_loss"], "reported_epoch": s["epochs"]},
            "data": data}
