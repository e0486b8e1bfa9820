"""Full fine-tuning for classification.

Protocol: a copy of the model (all weights trainable) with an MLP head on `forward_features`,
AdamW with a linear warm-up and cosine decay, batch augmentation (random scale and translation,
foundry.data.augment_batch), fixed epochs; the *final* epoch is scored on test (no checkpoint is
chosen on the test split). Voting is off by default; `vote=N` averages the softmax over N
augmented copies of each test cloud and is then labelled in the settings and the metric name
(`accuracy_vote{N}`). The defaults are short so that a CPU can run them; set `epochs`
(e.g. 300 as in the literature) for a full run. The seed drives the head initialisation,
dropout, batch order and augmentation.
"""
from __future__ import annotations

import copy

import torch
from torch import nn

from ..data import augment_batch
from ..optim import cosine_with_warmup, train_epochs
from .common import seed_everything
from ..models.heads import mlp_head
from .probe import accuracy_stats

DEFAULTS = dict(data="modelnet10", train_split="trainval", test_split="test", num_points=1024, train_per_class=None,
                test_per_class=None, epochs=5, batch_size=32, lr=5e-4, weight_decay=0.05, warmup_epochs=1,
                head_hidden=256, dropout=0.5, augment=True, vote=0, seeded_points=True)
QUICK = dict(train_per_class=20, test_per_class=10, epochs=2, batch_size=16)
METRICS = ("accuracy", "mean_class_accuracy")


class Classifier(nn.Module):
    def __init__(self, backbone, num_classes, hidden=256, dropout=0.5):
        super().__init__()
        self.backbone = backbone
        self.head = mlp_head(backbone.feature_dim, num_classes, hidden, dropout)

    def forward(self, points):
        return self.head(self.backbone.forward_features(points))


def run(ctx, settings: dict, seed: int) -> dict:
    s = settings
    view = seed if s["seeded_points"] else None  # see the svm protocol
    train = ctx.split(s["data"], s["train_split"], s["num_points"], s["train_per_class"], seed=view)
    test = ctx.split(s["data"], s["test_split"], s["num_points"], s["test_per_class"], seed=view)
    gen = seed_everything(seed)
    n_cls = max(train.num_classes, test.num_classes)
    model = Classifier(copy.deepcopy(ctx.model), n_cls, s["head_hidden"], s["dropout"]).to(ctx.device)
    opt = torch.optim.AdamW(model.parameters(), lr=s["lr"], weight_decay=s["weight_decay"])
    per_epoch = (len(train) + s["batch_size"] - 1) // s["batch_size"]

    sched = cosine_with_warmup(opt, s["warmup_epochs"] * per_epoch, s["epochs"] * per_epoch)
    pts, labels = torch.from_numpy(train.points), torch.from_numpy(train.labels)

    def loss_of(idx):
        x = pts[idx]
        if s["augment"]:
            x = augment_batch(x, generator=gen)
        return nn.functional.cross_entropy(model(x.to(ctx.device)), labels[idx].to(ctx.device))

    losses = train_epochs(model, opt, len(train), loss_of, epochs=s["epochs"], batch_size=s["batch_size"],
                          generator=gen, scheduler=sched, min_size=2)  # BatchNorm needs two samples
    model.eval()
    probs = []
    vote_gen = torch.Generator().manual_seed(seed + 10_000)
    with torch.no_grad():
        for b in range(0, len(test), s["batch_size"]):
            x = torch.from_numpy(test.points[b:b + s["batch_size"]])
            p = model(x.to(ctx.device)).softmax(-1).cpu()
            for _ in range(int(s["vote"] or 0)):
                p = p + model(augment_batch(x, generator=vote_gen).to(ctx.device)).softmax(-1).cpu()
            probs.append(p)
    pred = torch.cat(probs).argmax(1).numpy()
    res = accuracy_stats(pred, test.labels)
    if s["vote"]:
        res = {f"{k}_vote{s['vote']}": v for k, v in res.items()}
    return {"metrics": res,
            "details": {"train_loss": losses, "reported_epoch": s["epochs"], "voting": int(s["vote"] or 0),
                        "trainable_parameters": int(sum(p.numel() for p in model.parameters() if p.requires_grad))},
            "data": {"train": train.describe(), "test": test.describe()}}
