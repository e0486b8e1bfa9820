"""N-way K-shot classification on frozen features, fold by fold, paired with a reference model.

Protocol: a pool split (default ModelNet10 test, fixed for every model); for each setting
(n_way, k_shot) and each seed, `folds` episodes are drawn with that seed (foundry.data's
few-shot sampler; the splits are saved as JSON next to the results and reused). In each episode
a classifier is fitted on the n_way*k_shot support features and scored on n_way*n_query query
features. Classifier (default): linear SVM (LinearSVC, fixed C=1.0, features standardised with
support statistics only; no choice is made on query data). Alternatives: "logreg" (logistic
regression, C=1.0) and "centroid" (nearest class mean, cosine).

Reported per seed: the mean accuracy over folds per setting; the summary also pools all folds of
all seeds (mean +- std over folds, the field's usual few-shot number). With a reference model
(e.g. the teacher) the same folds are scored for it, and the per-fold differences
(model - reference) are reported with their mean +- std: the paired comparison that few-shot
numbers need, because fold-to-fold spread (2-5 points) exceeds most gaps between methods.
"""
from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path

import numpy as np

from ..validation import FoundryInputError
from .common import mean_std, reorder_points

DEFAULTS = dict(data="modelnet10", split="test", num_points=1024, per_class=None,
                settings=[[5, 10], [5, 20], [10, 10], [10, 20]], n_query=20, folds=10, classifier="svm", C=1.0,
                reorder_points_per_seed=False)
QUICK = dict(per_class=20, settings=[[5, 10]], n_query=10, folds=5)
METRICS = ()  # named per setting: acc_5w10s, ... (see metric_names)


def metric_name(n_way: int, k_shot: int) -> str:
    return f"acc_{n_way}w{k_shot}s"


def metric_names(settings: dict) -> list[str]:
    return [metric_name(n, k) for n, k in settings["settings"]]


# ----------------------------------------------------------------------------- splits

def make_splits(labels, n_way: int, k_shot: int, n_query: int, folds: int, seed: int) -> list[dict]:
    """Episodes as plain dicts {"classes", "support", "query"} (indices into `labels`).

    Uses foundry.data.make_fewshot_splits when it is available, else an equivalent sampler of
    this module: for each fold, n_way classes among those with >= k_shot + n_query items, then
    k_shot support and n_query query items per class, without overlap, all from one
    numpy Generator seeded with `seed`.
    """
    labels = np.asarray(labels).reshape(-1)
    _check_feasible(labels, n_way, k_shot, n_query)
    try:
        from ..data import make_fewshot_splits
    except ImportError:
        make_fewshot_splits = None
    if make_fewshot_splits is not None:
        obj = make_fewshot_splits(labels, n_way=n_way, k_shot=k_shot, n_query=n_query, folds=folds, seed=seed)
        episodes = _normalise(obj)
        if episodes is not None:
            return episodes
    return _own_splits(labels, n_way, k_shot, n_query, folds, seed)


def _check_feasible(labels, n_way, k_shot, n_query):
    classes, counts = np.unique(labels, return_counts=True)
    enough = int((counts >= k_shot + n_query).sum())
    if enough < n_way:
        raise FoundryInputError(
            f"{n_way}-way {k_shot}-shot with {n_query} queries needs {n_way} classes with >= {k_shot + n_query} "
            f"items; the pool has only {enough} (of {len(classes)} classes); lower n_query / k_shot / n_way "
            "or use a bigger split")


def _own_splits(labels, n_way, k_shot, n_query, folds, seed):
    rng = np.random.default_rng(seed)
    classes, counts = np.unique(labels, return_counts=True)
    eligible = classes[counts >= k_shot + n_query]
    episodes = []
    for _ in range(folds):
        chosen = np.sort(rng.choice(eligible, n_way, replace=False))
        support, query = [], []
        for c in chosen:
            idx = rng.permutation(np.nonzero(labels == c)[0])
            support.extend(idx[:k_shot].tolist())
            query.extend(idx[k_shot:k_shot + n_query].tolist())
        episodes.append({"classes": [int(c) for c in chosen], "support": [int(i) for i in support],
                         "query": [int(i) for i in query]})
    return episodes


def _normalise(obj) -> list[dict] | None:
    """Turn foundry.data's FewShotSplits (folds with support / query indices) into plain dicts."""
    folds = getattr(obj, "folds", obj)
    if isinstance(obj, dict):
        folds = obj.get("folds")
    if not isinstance(folds, (list, tuple)):
        return None
    out = []
    for f in folds:
        get = f.get if isinstance(f, dict) else (lambda k, f=f: getattr(f, k, None))
        sup, qry = get("support"), get("query")
        if sup is None or qry is None:
            return None
        classes = get("classes")
        out.append({"classes": [int(c) for c in (classes if classes is not None else [])],
                    "support": [int(i) for i in np.asarray(sup).reshape(-1)],
                    "query": [int(i) for i in np.asarray(qry).reshape(-1)]})
    return out


def splits_checksum(episodes: list[dict]) -> str:
    return hashlib.sha256(json.dumps(episodes, sort_keys=True).encode()).hexdigest()


def load_or_make_splits(path: Path | None, labels, n_way, k_shot, n_query, folds, seed, pool_checksum: str):
    """Saved splits at `path` when they match the pool and settings, else new ones (then saved)."""
    meta = {"n_way": n_way, "k_shot": k_shot, "n_query": n_query, "folds": folds, "seed": seed,
            "pool_sha256": pool_checksum}
    if path is not None and path.exists():
        saved = json.loads(path.read_text())
        if saved.get("meta") == meta:
            return saved["episodes"]
    episodes = make_splits(labels, n_way, k_shot, n_query, folds, seed)
    if path is not None:
        from .common import write_json

        write_json(path, {"meta": meta, "episodes": episodes, "sha256": splits_checksum(episodes)})
    return episodes


# ----------------------------------------------------------------------------- classifier

def episode_accuracy(feats, labels, episode: dict, classifier: str = "svm", C: float = 1.0, seed: int = 0) -> float:
    """Accuracy (percent) of one episode: fit on support features, score on query features."""
    feats = np.asarray(feats, dtype=np.float64)
    labels = np.asarray(labels)
    sup, qry = np.asarray(episode["support"]), np.asarray(episode["query"])
    xs, ys, xq, yq = feats[sup], labels[sup], feats[qry], labels[qry]
    mu, sd = xs.mean(0), xs.std(0) + 1e-6
    xs, xq = (xs - mu) / sd, (xq - mu) / sd
    if classifier == "centroid":
        cls = np.unique(ys)
        cent = np.stack([xs[ys == c].mean(0) for c in cls])
        cent /= np.linalg.norm(cent, axis=1, keepdims=True) + 1e-12
        q = xq / (np.linalg.norm(xq, axis=1, keepdims=True) + 1e-12)
        pred = cls[(q @ cent.T).argmax(1)]
    else:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*converge.*")
            if classifier == "svm":
                from sklearn.svm import LinearSVC

                clf = LinearSVC(C=C, random_state=seed, max_iter=5000, dual="auto")
            elif classifier == "logreg":
                from sklearn.linear_model import LogisticRegression

                clf = LogisticRegression(C=C, max_iter=2000, random_state=seed)
            else:
                raise FoundryInputError(f"unknown few-shot classifier {classifier!r}; use svm, logreg or centroid")
            pred = clf.fit(xs, ys).predict(xq)
    return 100.0 * float((pred == yq).mean())


# ----------------------------------------------------------------------------- protocol

def run(ctx, settings: dict, seed: int) -> dict:
    s = settings
    pool = ctx.split(s["data"], s["split"], s["num_points"], s["per_class"])
    data = {"pool": pool.describe()}
    seen = pool
    if s["reorder_points_per_seed"]:  # see the svm protocol; splits still index the same clouds
        seen = reorder_points(pool, seed)
        data["pool"]["point_order_seed"] = seed
    feats = ctx.features(seen)
    ref_feats = ctx.features(seen, which="reference") if ctx.reference is not None else None
    metrics, details = {}, {"classifier": s["classifier"], "C": s["C"], "settings": {}}
    for n_way, k_shot in s["settings"]:
        name = metric_name(n_way, k_shot)
        path = None
        if ctx.out_dir is not None:
            path = Path(ctx.out_dir) / "splits" / (
                f"fewshot_{pool.checksum()[:12]}_{n_way}w{k_shot}s_q{s['n_query']}_f{s['folds']}_seed{seed}.json")
        episodes = load_or_make_splits(path, pool.labels, n_way, k_shot, s["n_query"], s["folds"], seed,
                                       pool.checksum())
        accs = [episode_accuracy(feats, pool.labels, ep, s["classifier"], s["C"], seed) for ep in episodes]
        d = {"fold_accuracy": accs, "splits_sha256": splits_checksum(episodes),
             "splits_file": str(path.relative_to(ctx.out_dir)) if path is not None else None,
             "fold_mean_std": mean_std(accs)}
        metrics[name] = float(np.mean(accs))
        if ref_feats is not None:
            ref = [episode_accuracy(ref_feats, pool.labels, ep, s["classifier"], s["C"], seed) for ep in episodes]
            diff = [a - b for a, b in zip(accs, ref)]
            d.update({"reference_fold_accuracy": ref, "fold_difference": diff, "difference": mean_std(diff)})
            metrics[f"{name}_minus_ref"] = float(np.mean(diff))
        details["settings"][name] = d
    return {"metrics": metrics, "details": details, "data": data}


def summarize(per_seed: dict) -> dict:
    """Pool every fold of every seed: mean +- std over folds, and of the paired differences."""
    out = {}
    for res in per_seed.values():
        for name, d in res["details"]["settings"].items():
            o = out.setdefault(name, {"folds": [], "diffs": []})
            o["folds"].extend(d["fold_accuracy"])
            o["diffs"].extend(d.get("fold_difference", []))
    return {name: {"all_folds": mean_std(o["folds"]),
                   **({"paired_difference_all_folds": mean_std(o["diffs"])} if o["diffs"] else {})}
            for name, o in out.items()}
