"""Linear-SVM probe of frozen global features (the field's standard ModelNet protocol).

Protocol: global features from `model.forward_features`, standardised with statistics of the
train split only, LinearSVC whose C is picked by k-fold cross-validation on the train split only
(the test split is never used for a choice), then one fit per seed on all of train and one score
on test; the report is mean +- std over seeds with the chosen C and the seeds recorded.
"""
from __future__ import annotations

import warnings

import numpy as np
import torch

from ..validation import FoundryInputError

DEFAULT_C_GRID = (0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0)
CV_SEED = 0  # fixed split seed of the cross-validation that picks C


@torch.no_grad()
def extract_features(model, points, batch_size: int = 64, device="cpu", progress: bool = False) -> np.ndarray:
    """Global features (M, D) float32 of clouds `points` (M, N, 3) from `model.forward_features`.

    `points` may be a numpy array or a tensor. The model is run in eval mode (its previous mode is
    restored afterwards) without gradients, `batch_size` clouds at a time, on `device`.
    """
    if not hasattr(model, "forward_features"):
        raise FoundryInputError(f"{type(model).__name__} has no forward_features(points); pass a Foundry model")
    if isinstance(points, np.ndarray):
        points = torch.from_numpy(points)
    if not isinstance(points, torch.Tensor) or points.dim() != 3 or points.shape[-1] != 3:
        shape = tuple(points.shape) if hasattr(points, "shape") else type(points).__name__
        raise FoundryInputError(f"points must be an array of shape (M, N, 3), got {shape}")
    if points.shape[0] == 0:
        raise FoundryInputError("points is empty: no clouds to extract features from")
    if batch_size < 1:
        raise FoundryInputError(f"batch_size must be positive, got {batch_size}")
    was_training = model.training
    model.eval()
    params = list(model.parameters())
    moved = params and params[0].device != torch.device(device)
    if moved:
        model.to(device)
    out = []
    starts = range(0, points.shape[0], batch_size)
    if progress:
        from tqdm import tqdm

        starts = tqdm(starts, desc="features", unit="batch")
    try:
        for s in starts:
            batch = points[s:s + batch_size].to(device=device, dtype=torch.float32)
            out.append(model.forward_features(batch).float().cpu())
    finally:
        model.train(was_training)
    return torch.cat(out).numpy()


def _check_split(feats, labels, name):
    feats = np.asarray(feats, dtype=np.float64)
    labels = np.asarray(labels).reshape(-1)
    if feats.ndim != 2:
        raise FoundryInputError(f"{name} features must be a 2-D array (M, D), got shape {feats.shape}")
    if feats.shape[0] != labels.shape[0]:
        raise FoundryInputError(f"{name}: {feats.shape[0]} feature rows but {labels.shape[0]} labels")
    if feats.shape[0] == 0:
        raise FoundryInputError(f"{name} split is empty")
    if not np.isfinite(feats).all():
        raise FoundryInputError(f"{name} features contain NaN or Inf; the model produced non-finite outputs")
    return feats, labels


def _svc(c: float, seed: int, max_iter: int):
    # dual="auto" takes the primal solver when there are more clouds than feature dimensions, and
    # that solver ignores random_state: the spread over seeds comes from the data each seed sees
    # (eval.common.seeded_view), not from here
    from sklearn.svm import LinearSVC

    return LinearSVC(C=c, random_state=seed, max_iter=max_iter, dual="auto")


def linear_svm_eval(train_feats, train_labels, test_feats, test_labels, seeds=(0, 1, 2), standardize: bool = True,
                    c_grid=DEFAULT_C_GRID, cv: int = 3, max_iter: int = 5000) -> dict:
    """Linear-SVM accuracy of frozen features; C chosen by `cv`-fold CV on train only.

    Returns a dict: "accuracy_mean", "accuracy_std" (population std over seeds, in [0, 1]),
    "per_seed" (accuracy per seed), "correct" (per seed, per test item), "C" (chosen), "seeds", "cv_scores" (C -> mean CV
    accuracy), "cv", "cv_seed", "standardize", "n_train", "n_test", "feature_dim".
    """
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.preprocessing import StandardScaler

    xtr, ytr = _check_split(train_feats, train_labels, "train")
    xte, yte = _check_split(test_feats, test_labels, "test")
    if xtr.shape[1] != xte.shape[1]:
        raise FoundryInputError(f"train features are {xtr.shape[1]}-d but test features {xte.shape[1]}-d")
    seeds = tuple(int(s) for s in seeds)
    c_grid = tuple(float(c) for c in c_grid)
    if not seeds or not c_grid:
        raise FoundryInputError("seeds and c_grid must not be empty")
    if len(np.unique(ytr)) < 2:
        raise FoundryInputError("the train split has fewer than 2 classes; a classifier cannot be fitted")
    if standardize:
        scaler = StandardScaler().fit(xtr)
        xtr, xte = scaler.transform(xtr), scaler.transform(xte)

    cv_scores = {}
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*converge.*")
        if len(c_grid) == 1:
            best_c = c_grid[0]
        else:
            _, counts = np.unique(ytr, return_counts=True)
            folds = max(2, min(cv, int(counts.min())))
            if counts.min() < 2:
                raise FoundryInputError("a train class has fewer than 2 examples: C cannot be cross-validated; "
                                        "pass a single value in c_grid")
            splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=CV_SEED)
            for c in c_grid:
                cv_scores[c] = float(cross_val_score(_svc(c, CV_SEED, max_iter), xtr, ytr, cv=splitter).mean())
            best_c = max(c_grid, key=lambda c: (cv_scores[c], -c))  # ties -> the smaller C
        per_seed, correct = [], []
        for s in seeds:
            clf = _svc(best_c, s, max_iter).fit(xtr, ytr)
            correct.append(clf.predict(xte) == yte)
            per_seed.append(float(correct[-1].mean()))
    acc = np.asarray(per_seed)
    return {
        "accuracy_mean": float(acc.mean()),
        "accuracy_std": float(acc.std()),
        "per_seed": per_seed,
        "correct": [c.tolist() for c in correct],  # per seed, per test item: was it classified right
        "C": best_c,
        "seeds": list(seeds),
        "cv_scores": cv_scores,
        "cv": cv,
        "cv_seed": CV_SEED,
        "standardize": bool(standardize),
        "n_train": int(xtr.shape[0]),
        "n_test": int(xte.shape[0]),
        "feature_dim": int(xtr.shape[1]),
    }
