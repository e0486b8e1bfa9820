"""Part segmentation with a light head on a model's patch tokens (KiCadPart, ShapeNetPart).

Protocol (frozen backbone by default, the same head and settings for every model):
- tokens of several blocks via `forward_layers` (default "auto": three spread blocks, e.g.
  [3, 7, 11] of 12, [1, 3, 5] of 6), else the final tokens; concatenated per patch;
- per patch: Linear to `proj_dim`; a global max over patches is appended to every point;
- propagation to the points: inverse-distance weighted interpolation from the `knn` nearest
  patch centres (weights 1/d, normalised);
- concatenated with a per-point embedding (MLP of xyz) and the object category one-hot;
- point MLP -> logits over all parts, restricted (masked) to the category's parts for both the
  loss and the prediction;
- trained on the train split with AdamW + cosine for fixed epochs, each step on a random subset
  of `train_points` points per cloud (None: all; it keeps the CPU cost small); the final epoch is
  scored on all test points. Class mIoU (mean over categories of the mean shape IoU) and instance mIoU (mean over
  shapes); a part absent from both prediction and ground truth of a shape counts IoU 1.
The seed drives the head initialisation, dropout and batch order, and (`seeded_points`) each
shape's point order and subsample, the same for every model. Per-shape IoUs are recorded for the
paired intervals of `foundry compare`. The test-mode head is fitted on `trainval`.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..io import atomic_write
from ..models.heads import PartSegHead, category_mask
from ..optim import train_epochs
from ..validation import FoundryInputError
from .common import infer_category_parts, resolve_layers, seed_everything

DEFAULTS = dict(data="kicadpart", train_split="trainval", test_split="test", num_points=1024, train_per_class=None,
                test_per_class=None, layers="auto", frozen=True, epochs=12, batch_size=16, lr=1e-3,
                weight_decay=1e-4, proj_dim=128, point_dim=64, hidden=128, dropout=0.3, knn=3, head=None,
                save_heads=True, train_points=512, seeded_points=True)
QUICK = dict(train_per_class=12, test_per_class=6, num_points=1024, epochs=20, batch_size=8, lr=3e-3, train_points=256)
METRICS = ("class_miou", "instance_miou", "point_accuracy")
HEAD_FORMAT = "foundry-partseg-head"


# ----------------------------------------------------------------------------- metrics

def shape_iou(pred: np.ndarray, gt: np.ndarray, parts) -> float:
    """Mean IoU over a category's parts for one shape; a part absent in both counts 1."""
    ious = []
    for p in parts:
        inter = np.sum((pred == p) & (gt == p))
        union = np.sum((pred == p) | (gt == p))
        ious.append(1.0 if union == 0 else inter / union)
    return float(np.mean(ious))


def segmentation_miou(preds, gts, categories, category_parts: dict) -> dict:
    """Class mIoU and instance mIoU (percent) over shapes, plus per-category mIoU."""
    per_cat: dict[int, list[float]] = {}
    shape_ious = []
    for pred, gt, cat in zip(preds, gts, categories):
        iou = shape_iou(np.asarray(pred), np.asarray(gt), category_parts[int(cat)])
        per_cat.setdefault(int(cat), []).append(iou)
        shape_ious.append(iou)
    cat_means = {c: float(np.mean(v)) for c, v in sorted(per_cat.items())}
    return {"class_miou": 100.0 * float(np.mean(list(cat_means.values()))),
            "instance_miou": 100.0 * float(np.mean(shape_ious)),
            "per_category": {str(c): 100.0 * v for c, v in cat_means.items()}}


def save_head(head: PartSegHead, path, *, meta: dict) -> Path:
    from safetensors.torch import save_file

    state = {k: v.detach().cpu().contiguous() for k, v in head.state_dict().items()}
    header = {"format": HEAD_FORMAT, "hparams": json.dumps(head.hparams), "meta": json.dumps(meta)}
    atomic_write(path, lambda tmp: save_file(state, tmp, metadata=header))
    return Path(path)


def load_head(path, *, token_width: int, model_name: str = "this model") -> tuple[PartSegHead, dict]:
    """A saved head, after checking it fits tokens `token_width` wide; FoundryInputError if not."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    path = Path(path)
    if not path.exists():
        raise FoundryInputError(f"part-segmentation head not found: {path}")
    try:
        with safe_open(str(path), framework="pt") as f:
            header = f.metadata() or {}
    except Exception as exc:  # noqa: BLE001
        raise FoundryInputError(f"{path} is not a readable safetensors file ({exc})") from exc
    if header.get("format") != HEAD_FORMAT:
        raise FoundryInputError(f"{path} is not a Foundry part-segmentation head (no '{HEAD_FORMAT}' metadata)")
    hp, meta = json.loads(header["hparams"]), json.loads(header.get("meta", "{}"))
    if hp["in_width"] != token_width:
        raise FoundryInputError(
            f"head {path} was trained on tokens {hp['in_width']} wide (model {meta.get('model', '?')}, layers "
            f"{meta.get('layers')}), but {model_name} gives tokens {token_width} wide; train a head for this "
            "model (leave the `head` setting empty) or pass the model the head was trained on")
    head = PartSegHead(**hp)
    head.load_state_dict(load_file(str(path)))
    return head.eval(), meta


def train_head(tokens, centers, train, mask, s: dict, seed: int, device="cpu") -> tuple[PartSegHead, list]:
    """A fresh head fitted on frozen `tokens` / `centers` of the part-labelled `train` split with
    the protocol's settings `s` (AdamW + cosine, fixed epochs, a random subset of `train_points`
    points per cloud per step); returns (head, mean loss per epoch)."""
    n_cat, n_parts = mask.shape
    gen = seed_everything(seed)
    head = PartSegHead(int(tokens.shape[-1]), n_cat, n_parts, s["proj_dim"], s["point_dim"], s["hidden"],
                       s["dropout"], s["knn"]).to(device)
    dev_mask = mask.to(device)
    opt = torch.optim.AdamW(head.parameters(), lr=s["lr"], weight_decay=s["weight_decay"])
    steps = s["epochs"] * ((len(train) + s["batch_size"] - 1) // s["batch_size"])
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, steps))
    pts = torch.from_numpy(train.points)
    parts = torch.from_numpy(train.parts)
    cats = torch.from_numpy(train.labels)

    def loss_of(idx):
        cat = cats[idx].to(device)
        p, y = pts[idx], parts[idx]
        if s["train_points"] and s["train_points"] < p.shape[1]:  # a random subset of each cloud's points
            keep = torch.rand(p.shape[:2], generator=gen).argsort(1)[:, :s["train_points"]]
            p, y = torch.gather(p, 1, keep.unsqueeze(-1).expand(-1, -1, 3)), torch.gather(y, 1, keep)
        logits = head(tokens[idx].to(device).float(), centers[idx].to(device), p.to(device), cat)
        logits = logits.masked_fill(~dev_mask[cat].unsqueeze(1), -1e4)
        return nn.functional.cross_entropy(logits.reshape(-1, n_parts), y.to(device).reshape(-1))

    losses = train_epochs(head, opt, len(train), loss_of, epochs=s["epochs"], batch_size=s["batch_size"],
                          generator=gen, scheduler=sched)
    return head, losses


# ----------------------------------------------------------------------------- protocol

def label_space(*splits) -> tuple[dict, int, int]:
    """(category -> part ids, number of categories, number of parts) of part-labelled splits; the
    part lists come from the first split's data set, or from the labels seen when it has none."""
    cp = splits[0].category_parts or {}
    if not cp:
        cp = infer_category_parts(np.concatenate([s.labels for s in splits]), np.concatenate([s.parts for s in splits]))
    n_cat = max(max(len(s.class_names) for s in splits), max(int(s.labels.max()) for s in splits) + 1)
    listed = max((max(v) for v in cp.values() if len(v)), default=0)
    n_parts = max(max(int(s.parts.max()) for s in splits), listed) + 1
    return cp, n_cat, n_parts


@torch.no_grad()
def predict(head, tokens, centers, points, cats, mask, batch_size=16, device="cpu") -> np.ndarray:
    head.eval()
    out = []
    mask = mask.to(device)
    for s in range(0, len(points), batch_size):
        sl = slice(s, s + batch_size)
        cat = torch.from_numpy(cats[sl]).to(device)
        logits = head(tokens[sl].to(device).float(), centers[sl].to(device), torch.from_numpy(points[sl]).to(device),
                      cat)
        logits = logits.masked_fill(~mask[cat].unsqueeze(1), float("-inf"))
        out.append(logits.argmax(-1).cpu().numpy())
    return np.concatenate(out)


def run(ctx, settings: dict, seed: int) -> dict:
    s = settings
    if not s["frozen"]:
        raise FoundryInputError("partseg: only the frozen-backbone protocol is implemented (frozen=true)")
    view = seed if s["seeded_points"] else None
    train = ctx.split(s["data"], s["train_split"], s["num_points"], s["train_per_class"], need_parts=True, seed=view)
    test = ctx.split(s["data"], s["test_split"], s["num_points"], s["test_per_class"], need_parts=True, seed=view)
    cp, n_cat, n_parts = label_space(train, test)
    missing = sorted(set(np.unique(test.labels).tolist()) - set(cp))
    if missing:
        raise FoundryInputError(f"partseg: test categories {missing} have no part list in the data set's category_parts")
    layers = ctx.memo(("layers", s["layers"]), lambda: resolve_layers(ctx.model, s["layers"], train.points, ctx.device))
    tr_tok, tr_cen = ctx.tokens(train, layers)
    te_tok, te_cen = ctx.tokens(test, layers)
    width = int(tr_tok.shape[-1])
    mask = category_mask(cp, n_cat, n_parts)
    meta = {"model": ctx.name, "model_fingerprint": ctx.fingerprint, "layers": layers, "token_width": width,
            "seed": seed, "data": train.describe()}
    trained = s["head"] is None
    if trained:
        head, losses = train_head(tr_tok, tr_cen, train, mask, s, seed, ctx.device)
        head_file = None
        if s["save_heads"] and ctx.out_dir is not None:
            head_file = Path(ctx.out_dir) / "heads" / f"partseg_seed{seed}.safetensors"
            save_head(head, head_file, meta=meta)
    else:
        head, _ = load_head(s["head"], token_width=width, model_name=ctx.name)
        head = head.to(ctx.device)
        losses, head_file = [], s["head"]
        if head.hparams["num_parts"] != n_parts or head.hparams["num_categories"] != n_cat:
            raise FoundryInputError(
                f"head {s['head']} predicts {head.hparams['num_parts']} parts of {head.hparams['num_categories']} "
                f"categories, but {test.name} has {n_parts} parts of {n_cat} categories")
    pred = predict(head, te_tok, te_cen, test.points, test.labels, mask, s["batch_size"], ctx.device)
    res = segmentation_miou(pred, test.parts, test.labels, cp)
    shape_ious = [round(shape_iou(p, g, cp[int(c)]), 6) for p, g, c in zip(pred, test.parts, test.labels)]
    acc = 100.0 * float((pred == test.parts).mean())
    names = train.class_names
    per_cat = {(names[int(c)] if int(c) < len(names) else c): v for c, v in res["per_category"].items()}
    return {"metrics": {"class_miou": res["class_miou"], "instance_miou": res["instance_miou"], "point_accuracy": acc},
            "details": {"layers": layers, "token_width": width, "per_category_miou": per_cat,
                        "train_loss": losses, "head_trained": trained,
                        "head_file": str(Path(head_file).relative_to(ctx.out_dir)) if head_file and ctx.out_dir
                        and trained else (str(head_file) if head_file else None),
                        "backbone": "frozen", "num_parts": n_parts, "num_categories": n_cat,
                        "shape_iou": shape_ious, "shape_category": [int(c) for c in test.labels]},
            "data": {"train": train.describe(), "test": test.describe()}}
