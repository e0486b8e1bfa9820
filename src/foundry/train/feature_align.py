"""Feature alignment: after distillation, an affine map that puts the student's global feature onto
the teacher's, fitted in closed form.

Distillation matches tokens (and, optionally, the pooled feature through a SmoothL1 term); the
pooled feature of the student is then close to the teacher's but not equal, and a head a user fitted
on the teacher's features reads it with a small systematic offset. A ridge regression of the teacher's
global features on the student's, over unlabelled training clouds (by default the distillation's; the
domain the heads serve does best, e.g. ModelNet10 train for a ModelNet classifier), removes
the linear part of that offset: W = argmin |X W - Y|^2 + lam |W|^2 on centred features, with
lam = alpha * trace(X^T X) / D (alpha relative to the features' scale, so one alpha fits any width).
No labels are used. The map becomes the student's `feature_align` layer (config field of the same
name); tokens, and so dense heads, are unchanged.
"""
from __future__ import annotations

import copy

import numpy as np
import torch

from ..eval.svm import extract_features
from ..models.student import FeatureAlign, FoundryStudent
from ..validation import FoundryInputError
from .common import unlabelled_mix

DEFAULT_ALPHA = 0.01  # chosen on ModelNet10 val for foundry-small-jepa-s16 (docs/results/2026-12-07-feature-align-val)


def global_features(model, clouds, *, batch_size: int = 32, log=None) -> np.ndarray:
    """(N, D) float64 `forward_features` of a list / array of (P, 3) clouds (`eval.svm.extract_features`:
    eval mode, no grad; a progress bar when `log` is given)."""
    return extract_features(model, np.stack(clouds), batch_size=batch_size, progress=bool(log)).astype(np.float64)


def ridge_map(x: np.ndarray, y: np.ndarray, alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """(W (D_in, D_out), b (D_out,)) minimising |x W + b - y|^2 + lam |W|^2, lam = alpha * trace(xc^T xc) / D_in
    on centred x (the bias is not penalised)."""
    if not alpha > 0:
        raise FoundryInputError(f"the alignment's ridge alpha must be positive, got {alpha}")
    xm, ym = x.mean(0), y.mean(0)
    xc, yc = x - xm, y - ym
    gram = xc.T @ xc
    lam = alpha * np.trace(gram) / gram.shape[0]
    w = np.linalg.solve(gram + lam * np.eye(gram.shape[0]), xc.T @ yc)
    return w, ym - xm @ w


def _fit_clouds(data: list[str], num_points: int, seed: int, limit: int | None) -> list[np.ndarray]:
    mix = unlabelled_mix(data, num_points, seed)
    rng = np.random.default_rng(seed)
    idx = np.arange(len(mix)) if limit is None or limit >= len(mix) else np.sort(rng.permutation(len(mix))[:limit])
    clouds = []
    for i in idx:
        pts = mix[int(i)]["points"].numpy()
        pick = np.random.default_rng((seed, int(i))).permutation(len(pts))[:num_points]
        clouds.append(pts[np.sort(pick)])
    return clouds


def without_alignment(student):
    """A copy of an aligned student without its feature alignment: the distilled student it was made from
    (its tokens are the same; its global feature the plain pooling again)."""
    plain = copy.deepcopy(student)
    plain.feature_align = None
    extra = {k: v for k, v in plain.config.extra.items() if k != "feature_align"}
    plain.config = plain.config.replace(feature_align=False, extra=extra)
    return plain


def align_features(student, teacher, *, data=("modelnet10:train", "kicadpart:train"), alpha: float = DEFAULT_ALPHA,
                   seed: int = 0, limit: int | None = None, batch_size: int = 32, refit: bool = False, log=print):
    """A copy of `student` with a `feature_align` layer fitted onto `teacher`'s global features over the
    unlabelled clouds of `data` (the distillation's defaults; `limit`: a seeded subset), and a report
    (clouds, alpha, feature MSE to the teacher before and after on those clouds). refit: an already aligned
    student is aligned again from its unaligned form (`without_alignment`)."""
    if not isinstance(student, FoundryStudent):
        raise FoundryInputError(f"feature alignment applies to Foundry students, got a {type(student).__name__}")
    if student.feature_dim != teacher.feature_dim:
        raise FoundryInputError(f"the student's global feature is {student.feature_dim}-d and the teacher's "
                                f"{teacher.feature_dim}-d: not the student of this teacher")
    if student.feature_align is not None:
        if not refit:
            raise FoundryInputError("this student already has a fitted feature alignment; pass refit=True "
                                    "(`foundry align --refit`) to fit it again from the unaligned student")
        student = without_alignment(student)
    clouds = _fit_clouds(list(data), student.config.num_points, seed, limit)
    if log:
        log(f"aligning on {len(clouds)} clouds of {', '.join(data)}, {student.config.num_points} points each")
    x = global_features(student, clouds, batch_size=batch_size, log=log)
    y = global_features(teacher, clouds, batch_size=batch_size, log=log)
    w, b = ridge_map(x, y, alpha)
    report = {"clouds": len(clouds), "data": list(data), "alpha": float(alpha), "seed": int(seed),
              "feature_mse_before": float(((x - y) ** 2).mean()),
              "feature_mse_after": float(((x @ w + b - y) ** 2).mean())}
    aligned = copy.deepcopy(student)
    aligned.config = aligned.config.replace(feature_align=True, extra={**aligned.config.extra, "feature_align": report})
    aligned.feature_align = FeatureAlign(student.feature_dim)
    with torch.no_grad():
        aligned.feature_align.weight.copy_(torch.from_numpy(w.T).float())
        aligned.feature_align.bias.copy_(torch.from_numpy(b).float())
    return aligned, report
