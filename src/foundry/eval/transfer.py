"""Heads that transfer: a head fitted on the teacher's frozen outputs, scored unchanged on the model.

This is the test of a drop-in replacement. A user who built a head for the teacher swaps in the
student and keeps the head; the score it then gets is what this protocol reports.
- classification: the `svm` protocol's classifier (features standardised with the teacher's
  train statistics, LinearSVC, C by CV on the teacher's train features) fitted on the teacher's
  global features of the train split, applied to the model's features of the test clouds;
- part segmentation: the `partseg` protocol's head trained on the teacher's tokens of the layers
  it uses (`seg_layers`, default the teacher's three spread blocks, e.g. [3, 7, 11]), applied to
  the model's `forward_layers` of the same blocks. A model that cannot give those blocks gets no
  part-segmentation score here (the details say why).
Metrics: `accuracy`, `instance_miou`, `class_miou` (the teacher's heads on the model) and the same
heads on the teacher (`teacher_*`), all on the seed's view of the data (point order, subsample),
with per-item records for paired intervals. Needs the teacher as the reference (`--reference`;
`foundry compare` passes it).
"""
from __future__ import annotations

import json

import numpy as np

from ..validation import FoundryInputError
from .common import default_layers, model_depth
from .partseg import DEFAULTS as SEG_DEFAULTS
from ..models.heads import category_mask
from .partseg import label_space, predict, segmentation_miou, shape_iou, train_head
from .svm import linear_svm_eval

SEG_HEAD_KEYS = ("epochs", "batch_size", "lr", "weight_decay", "proj_dim", "point_dim", "hidden", "dropout", "knn",
                 "train_points")
DEFAULTS = dict(data="modelnet10", train_split="trainval", test_split="test", num_points=1024, train_per_class=None,
                test_per_class=None, cv=3, standardize=True, seg_data="kicadpart", seg_train_split="trainval",
                seg_test_split="test", seg_num_points=1024, seg_per_class=None, seg_test_per_class=None,
                seg_layers="auto", segmentation=True, seeded_points=True,
                **{k: SEG_DEFAULTS[k] for k in SEG_HEAD_KEYS})
QUICK = dict(train_per_class=20, test_per_class=20, seg_per_class=12, seg_test_per_class=6, epochs=20,
             batch_size=8, lr=3e-3, train_points=256)
_HEADS: dict = {}
METRICS = ("accuracy", "instance_miou", "class_miou", "teacher_accuracy", "teacher_instance_miou",
           "teacher_class_miou")


def run(ctx, settings: dict, seed: int) -> dict:
    if ctx.reference is None:
        raise FoundryInputError("transfer fits its heads on the teacher: pass --reference TEACHER "
                                "(foundry compare does)")
    s = settings
    view = seed if s["seeded_points"] else None
    metrics, details, data = {}, {}, {}
    _classification(ctx, s, seed, view, metrics, details, data)
    if s["segmentation"]:  # false: the classification head only (the part head costs a head fit per seed)
        _segmentation(ctx, s, seed, view, metrics, details, data)
    return {"metrics": metrics, "details": details, "data": data}


def _classification(ctx, s, seed, view, metrics, details, data):
    train = ctx.split(s["data"], s["train_split"], s["num_points"], s["train_per_class"], seed=view)
    test = ctx.split(s["data"], s["test_split"], s["num_points"], s["test_per_class"], seed=view)
    data.update(train=train.describe(), test=test.describe())
    ttr, tte = ctx.features(train, which="reference"), ctx.features(test, which="reference")
    mte = ctx.features(test)
    if mte.shape[1] != ttr.shape[1]:
        details["classification"] = f"feature widths differ (model {mte.shape[1]}, teacher {ttr.shape[1]})"
        return
    key = ("transfer-svm-C", ctx.reference_fingerprint, train.base_sha256 or train.checksum(), s["standardize"], s["cv"])
    c_grid = (ctx._memo[key],) if key in ctx._memo else None
    kw = {} if c_grid is None else {"c_grid": c_grid}
    # one fit on the teacher's train features scores both the teacher's and the model's test features
    both = np.concatenate([tte, mte])
    labels = np.concatenate([test.labels, test.labels])
    res = linear_svm_eval(ttr, train.labels, both, labels, seeds=(seed,), standardize=s["standardize"], cv=s["cv"],
                          **kw)
    ctx._memo[key] = res["C"]
    correct = np.asarray(res["correct"][0])
    t_ok, m_ok = correct[:len(tte)], correct[len(tte):]
    metrics["accuracy"], metrics["teacher_accuracy"] = 100.0 * m_ok.mean(), 100.0 * t_ok.mean()
    details.update(C=res["C"], correct="".join("1" if c else "0" for c in m_ok),
                   teacher_correct="".join("1" if c else "0" for c in t_ok))


def _segmentation(ctx, s, seed, view, metrics, details, data):
    train = ctx.split(s["seg_data"], s["seg_train_split"], s["seg_num_points"], s["seg_per_class"], need_parts=True,
                      seed=view)
    test = ctx.split(s["seg_data"], s["seg_test_split"], s["seg_num_points"], s["seg_test_per_class"],
                     need_parts=True, seed=view)
    data.update(seg_train=train.describe(), seg_test=test.describe())
    layers = s["seg_layers"]
    if layers == "auto":
        layers = default_layers(model_depth(ctx.reference))
    layers = None if layers in (None, "final") else [int(x) for x in layers]
    details["seg_layers"] = layers
    try:
        m_tok, m_cen = ctx.tokens(test, layers)
    except FoundryInputError as exc:
        details["segmentation"] = f"not scored: the model cannot give the teacher's blocks {layers} ({exc})"
        return
    t_tr, c_tr = ctx.tokens(train, layers, which="reference")
    t_te, c_te = ctx.tokens(test, layers, which="reference")
    if m_tok.shape[-1] != t_tr.shape[-1]:
        details["segmentation"] = f"token widths differ (model {m_tok.shape[-1]}, teacher {t_tr.shape[-1]})"
        return
    cp, n_cat, n_parts = label_space(train, test)
    mask = category_mask(cp, n_cat, n_parts)
    head_key = (ctx.reference_fingerprint, train.checksum(), str(layers), seed,
                json.dumps({k: s[k] for k in SEG_HEAD_KEYS}, sort_keys=True))
    if head_key not in _HEADS:  # one head per teacher, view and seed for every model of this process
        _HEADS[head_key] = train_head(t_tr, c_tr, train, mask, s, seed, ctx.device)[0]
    head = _HEADS[head_key]
    for prefix, tok, cen in (("", m_tok, m_cen), ("teacher_", t_te, c_te)):
        pred = predict(head, tok, cen, test.points, test.labels, mask, s["batch_size"], ctx.device)
        res = segmentation_miou(pred, test.parts, test.labels, cp)
        metrics[prefix + "instance_miou"], metrics[prefix + "class_miou"] = res["instance_miou"], res["class_miou"]
        details[prefix + "shape_iou"] = [round(shape_iou(p, g, cp[int(c)]), 6)
                                         for p, g, c in zip(pred, test.parts, test.labels)]
    details["shape_category"] = [int(c) for c in test.labels]
