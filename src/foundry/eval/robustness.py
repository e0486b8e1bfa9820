"""Robustness: the `svm` protocol's classifier fitted on clean clouds, scored on corrupted ones.

Classification (default ModelNet10): a linear SVM on frozen global features of the clean train
split (standardised, C chosen as the `svm` protocol chooses it: 3-fold CV on train, once per
model and data), scored unchanged on the test split under
- the seven ModelNet-C corruption families at severities 1..5 (`data.corruptions`), metric
  `<family>_s<severity>`, the family's mean over severities `<family>`, and their grand mean
  `corrupted` (ModelNet-C's mean accuracy);
- single-view partial scans (`partial`: hidden-point removal from a random viewpoint, resampled to
  the clouds' point count);
- density (`density_<n>`: the same surfaces at n points; above the bundled clouds' 1024 points by
  interpolation between neighbours, see `data.corruptions.change_density`). `density_patches`
  "fixed" (default) keeps every model's patch count and patch size, so a patch covers less of the
  surface at more points; "scaled" scales the patch count with the points (num_groups * n / N).
Part segmentation (default KiCadPart, `seg`): the `partseg` head trained on clean tokens of the
teacher's spread blocks, scored (instance mIoU) under `seg_families` (default jitter, drop_local,
partial) at `seg_severities`; metrics `seg_clean`, `seg_<family>_s<severity>`, `seg_<family>`.

Every model sees the same corrupted clouds: the corruption of cloud i is seeded by the evaluation
seed, the family and the severity (and each seed's point order is the `seeded_view` one).
`outlier_filter` runs every cloud the model sees (clean train and test too) through
`ops.outliers.outlier_mask` and fills the dropped points back by `resample`: the remedy as a
switch, so both settings can be measured (it is not wired into the models' tokenizers).
Per-item records (`details["item_scores"]`) let `foundry compare` pair every model with the
teacher; compare computes the corruption error relative to the teacher (`eval.corruption_error`).
"""
from __future__ import annotations

import hashlib

import numpy as np
import torch

from ..data.corruptions import FAMILIES, PARTIAL, SEVERITIES, canonical_family, change_density, corrupt, resample
from ..ops.outliers import outlier_mask
from ..validation import FoundryInputError
from .common import Split, extract_tokens, resolve_layers
from .partseg import DEFAULTS as SEG_DEFAULTS
from .partseg import category_mask, label_space, predict, segmentation_miou, shape_iou, train_head
from .svm import linear_svm_eval

SEG_HEAD_KEYS = ("epochs", "batch_size", "lr", "weight_decay", "proj_dim", "point_dim", "hidden", "dropout", "knn",
                 "train_points")
DEFAULTS = dict(data="modelnet10", train_split="trainval", test_split="test", num_points=1024, train_per_class=None,
                test_per_class=None, cv=3, standardize=True, seeded_points=True, families=list(FAMILIES),
                severities=list(SEVERITIES), partial=True, density=[256, 512, 2048, 4096], density_patches="fixed",
                outlier_filter=False, filter_k=8, filter_ratio=4.0, seg=True, seg_data="kicadpart",
                seg_train_split="trainval", seg_test_split="test", seg_num_points=1024, seg_per_class=None,
                seg_test_per_class=None, seg_layers="auto", seg_families=["jitter", "drop_local", PARTIAL],
                seg_severities=list(SEVERITIES), **{k: SEG_DEFAULTS[k] for k in SEG_HEAD_KEYS})
QUICK = dict(train_per_class=20, test_per_class=10, families=["add_global", "jitter"], severities=[3], density=[],
             seg=False, seg_per_class=12, seg_test_per_class=6, epochs=20, batch_size=8, lr=3e-3, train_points=256)
METRICS = ("clean", "corrupted", PARTIAL)
SEG_SAFE = ("scale", "jitter", "drop_global", "drop_local", "rotate", PARTIAL)  # every output point has a source


def conditions(s: dict, prefix: str = "") -> list[tuple[str, str, int]]:
    """(metric name, family, severity) of every corrupted test set the settings ask for."""
    fams = s[prefix + "families"] if prefix else s["families"]
    sevs = s[prefix + "severities"] if prefix else s["severities"]
    out = []
    for fam in (canonical_family(f) for f in fams):
        if fam == PARTIAL:
            out.append((PARTIAL, PARTIAL, 1))
        else:
            out += [(f"{fam}_s{int(v)}", fam, int(v)) for v in sevs]
    if not prefix and s["partial"] and PARTIAL not in [c[0] for c in out]:
        out.append((PARTIAL, PARTIAL, 1))
    return out


def _check(s: dict) -> None:
    if s["density_patches"] not in ("fixed", "scaled"):
        raise FoundryInputError(f"robustness.density_patches must be 'fixed' or 'scaled', got {s['density_patches']!r}")
    for key in ("severities", "seg_severities"):
        bad = [v for v in s[key] if v not in SEVERITIES]
        if bad:
            raise FoundryInputError(f"robustness.{key} must be drawn from {list(SEVERITIES)}, got {bad}")
    bad = [f for f in s["seg_families"] if canonical_family(f) not in SEG_SAFE]
    if s["seg"] and bad:
        raise FoundryInputError(f"robustness.seg_families {bad} add points without part labels; choose from "
                                f"{', '.join(SEG_SAFE)}")
    if any(int(n) < 1 for n in s["density"]):
        raise FoundryInputError(f"robustness.density must hold positive point counts, got {s['density']}")


# ----------------------------------------------------------------------------- corrupted splits

def corrupted_split(base: Split, family: str, level: int, seed: int) -> Split:
    """`base` with every cloud corrupted (family "clean": as is; "density": `level` points per
    cloud); part labels follow their points; base_sha256 stays the clean clouds' checksum."""
    if family == "clean":
        return base
    if family == "density":
        pts, src = change_density(base.points, level, seed)
    else:
        pts, src = corrupt(base.points, family, level, seed)
    return _with_points(base, pts, src, f"{family}{'' if family == PARTIAL else level}")


def _with_points(base: Split, pts, src, tag: str) -> Split:
    parts = None if base.parts is None else np.take_along_axis(base.parts, np.maximum(src, 0), axis=1)
    return Split(pts, base.labels, parts, list(base.class_names), base.category_parts, base.spec,
                 f"{base.split}:{tag}", base.base_sha256 or base.checksum())


def filtered_split(split: Split, s: dict, seed: int) -> tuple[Split, float]:
    """`split` through the outlier filter, each cloud filled back to its point count; (split, share
    of points dropped)."""
    keep = outlier_mask(torch.from_numpy(split.points), s["filter_k"], s["filter_ratio"]).numpy()
    n = split.points.shape[1]
    pts, src = np.empty_like(split.points), np.empty(split.points.shape[:2], dtype=np.int64)
    for i, (cloud, k) in enumerate(zip(split.points, keep)):
        rng = np.random.default_rng([int(seed), 17, i])
        out, src[i] = resample(cloud.astype(np.float64), np.nonzero(k)[0], n, rng)
        pts[i] = out
    return _with_points(split, pts, src, "filtered"), float(1.0 - keep.mean())


class _Groups(torch.nn.Module):
    """A model whose forward_features uses `num_groups` patches (density with scaled patches)."""

    def __init__(self, model, num_groups: int):
        super().__init__()
        self.model, self.num_groups = model, int(num_groups)

    def forward_features(self, points):
        return self.model.forward_features(points, num_groups=self.num_groups)


def _features(ctx, split: Split, num_groups: int | None = None) -> np.ndarray:
    """Features of a corrupted split through the evaluation's feature cache on disk (not kept in memory:
    each is read once), so that a run cut short (the seven families at five severities take the ViT-S
    teacher ~90 min a seed) resumes at the first condition it had not scored, and a later compare with
    the same clouds scores none again. Keyed by the split's checksum (the corrupted points themselves)
    and the model's fingerprint; with scaled density patches by a fingerprint of the model and the
    patch count."""
    model, fingerprint = ctx.model, ctx.fingerprint
    if num_groups is not None:
        model = _Groups(ctx.model, num_groups)
        fingerprint = hashlib.sha256(f"{ctx.fingerprint}|num_groups={int(num_groups)}".encode()).hexdigest()
    return ctx.cache.features(model, split, fingerprint, batch_size=ctx.batch_size, device=ctx.device,
                              progress=ctx.progress, remember=False)


def _bits(ok) -> str:
    return "".join("1" if c else "0" for c in ok)


def _digest(checks: list[str]) -> str:
    return hashlib.sha256("".join(checks).encode()).hexdigest()


# ----------------------------------------------------------------------------- protocol

def run(ctx, settings: dict, seed: int) -> dict:
    s = settings
    _check(s)
    metrics, details, data = {}, {"item_scores": {}, "outlier_filter": bool(s["outlier_filter"]),
                                   "density_patches": s["density_patches"]}, {}
    _classification(ctx, s, seed, metrics, details, data)
    if s["seg"]:
        _segmentation(ctx, s, seed, metrics, details, data)
    return {"metrics": metrics, "details": details, "data": data}


def _prepare(ctx, split: Split, s: dict, seed: int, details: dict, name: str) -> Split:
    if not s["outlier_filter"]:
        return split
    out, dropped = filtered_split(split, s, seed)
    details.setdefault("filter_dropped_share", {})[name] = round(dropped, 6)
    return out


def _classification(ctx, s, seed, metrics, details, data):
    view = seed if s["seeded_points"] else None
    train = ctx.split(s["data"], s["train_split"], s["num_points"], s["train_per_class"], seed=view)
    test = ctx.split(s["data"], s["test_split"], s["num_points"], s["test_per_class"], seed=view)
    data.update(train=train.describe(), test=test.describe())
    filt = bool(s["outlier_filter"])
    train_in = _prepare(ctx, train, s, seed, details, "train")
    xtr = ctx.features(train_in)
    groups = getattr(getattr(ctx.model, "config", None), "num_groups", None)
    todo = [("clean", "clean", 0)] + conditions(s) + [(f"density_{int(n)}", "density", int(n)) for n in s["density"]]
    feats, names, checks = [], [], []
    for i, (name, family, level) in enumerate(todo):
        split = _prepare(ctx, corrupted_split(test, family, level, seed), s, seed, details, name)
        g = None
        if family == "density" and s["density_patches"] == "scaled" and groups:
            g = max(1, round(groups * level / test.points.shape[1]))
            details.setdefault("density_groups", {})[name] = g
        ctx.log(f"  robustness: {name} ({i + 1}/{len(todo)})")
        try:
            x = ctx.features(split) if family == "clean" else _features(ctx, split, g)
        except FoundryInputError as exc:  # e.g. too few points for the model's patches
            details.setdefault("not_scored", {})[name] = str(exc)
            continue
        feats.append(x)
        names.append(name)
        checks.append(split.checksum())
    data["corrupted"] = {"spec": test.spec, "split": f"{test.split} (corrupted)", "clouds": len(test),
                         "conditions": len(names), "sha256": _digest(checks),
                         "base_sha256": test.base_sha256 or test.checksum()}
    key = ("svm-C", ctx.fingerprint, train.base_sha256 or train.checksum(), s["standardize"], s["cv"])
    if filt:
        key += ("outlier_filter", s["filter_k"], s["filter_ratio"])
    if key not in ctx._memo:
        res = linear_svm_eval(xtr, train.labels, feats[0], test.labels, seeds=(seed,), standardize=s["standardize"],
                              cv=s["cv"])
        ctx._memo[key] = (res["C"], {str(k): v for k, v in res["cv_scores"].items()})
    c, cv_scores = ctx._memo[key]
    # one fit on the clean train features scores every condition
    res = linear_svm_eval(xtr, train.labels, np.concatenate(feats), np.tile(test.labels, len(feats)), seeds=(seed,),
                          standardize=s["standardize"], c_grid=(c,), cv=s["cv"])
    correct = np.asarray(res["correct"][0]).reshape(len(feats), len(test))
    details.update(C=c, cv_scores=cv_scores, n_train=len(train), n_test=len(test))
    by_name = dict(zip(names, correct))
    for name, ok in by_name.items():
        metrics[name] = 100.0 * float(ok.mean())
        details["item_scores"][name] = _bits(ok)
    _family_means(by_name, conditions(s), metrics, details, "")


def _family_means(by_name: dict, conds, metrics, details, prefix: str) -> None:
    """<prefix><family>: the mean over its severities, per item too; <prefix>corrupted over every family."""
    every = []
    for fam in dict.fromkeys(c[1] for c in conds if c[1] != PARTIAL):
        rows = [np.asarray(by_name[n], dtype=np.float64) for n, f, _ in conds if f == fam and n in by_name]
        if not rows:
            continue
        every += rows
        item = np.mean(rows, axis=0)
        metrics[prefix + fam] = 100.0 * float(item.mean())
        details["item_scores"][prefix + fam] = [round(float(v), 6) for v in item]
    if every and not prefix:
        item = np.mean(every, axis=0)
        metrics["corrupted"] = 100.0 * float(item.mean())
        details["item_scores"]["corrupted"] = [round(float(v), 6) for v in item]


def _segmentation(ctx, s, seed, metrics, details, data):
    view = seed if s["seeded_points"] else None
    train = ctx.split(s["seg_data"], s["seg_train_split"], s["seg_num_points"], s["seg_per_class"], need_parts=True,
                      seed=view)
    test = ctx.split(s["seg_data"], s["seg_test_split"], s["seg_num_points"], s["seg_test_per_class"],
                     need_parts=True, seed=view)
    data.update(seg_train=train.describe(), seg_test=test.describe())
    layers = ctx.memo(("layers", s["seg_layers"]),
                      lambda: resolve_layers(ctx.model, s["seg_layers"], train.points, ctx.device))
    details["seg_layers"] = layers
    train_in = _prepare(ctx, train, s, seed, details, "seg_train")
    tok, cen = ctx.tokens(train_in, layers)
    cp, n_cat, n_parts = label_space(train, test)
    mask = category_mask(cp, n_cat, n_parts)
    head, _ = train_head(tok, cen, train_in, mask, s, seed, ctx.device)
    by_name, checks = {}, []
    seg_conds = [("clean", "clean", 0)] + conditions(s, "seg_")
    for i, (name, family, level) in enumerate(seg_conds):
        split = _prepare(ctx, corrupted_split(test, family, level, seed), s, seed, details, "seg_" + name)
        ctx.log(f"  robustness: part segmentation, {name} ({i + 1}/{len(seg_conds)})")
        if family == "clean":
            t, c = ctx.tokens(split, layers)
        else:
            t, c = extract_tokens(ctx.model, split.points, layers, ctx.batch_size, ctx.device, torch.float16)
        pred = predict(head, t, c, split.points, split.labels, mask, s["batch_size"], ctx.device)
        metrics["seg_" + name] = segmentation_miou(pred, split.parts, split.labels, cp)["instance_miou"]
        ious = [shape_iou(p, g, cp[int(k)]) for p, g, k in zip(pred, split.parts, split.labels)]
        by_name[name] = ious
        details["item_scores"]["seg_" + name] = [round(v, 6) for v in ious]
        checks.append(split.checksum())
    _family_means(by_name, seg_conds[1:], metrics, details, "seg_")
    data["seg_corrupted"] = {"spec": test.spec, "split": f"{test.split} (corrupted)", "clouds": len(test),
                             "conditions": len(seg_conds), "sha256": _digest(checks),
                             "base_sha256": test.base_sha256 or test.checksum()}
