"""N-way K-shot classification on frozen features, fold by fold, paired with a reference model.

Protocol: support clouds from `split` (default ModelNet10 train) and query clouds from
`query_split` (default test), as in the usual ModelNet40 few-shot protocol (`query_split=null`:
both from `split`, disjoint); the same data for every model. For each setting (n_way, k_shot) and
each seed, `folds` episodes are drawn with that seed (foundry.data's few-shot sampler; the splits
are saved as JSON next to the results and reused, with checksums of the data). In each episode
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

from ..data import FewShotSplits, make_fewshot_splits
from ..validation import FoundryInputError
from .common import mean_std

DEFAULTS = dict(data="modelnet10", split="trainval", query_split="test", num_points=1024, per_class=None,
                settings=[[5, 10], [5, 20], [10, 10], [10, 20]], n_query=20, folds=10, classifier="svm", C=1.0,
                seeded_points=True)
QUICK = dict(per_class=20, settings=[[5, 10]], n_query=10, folds=5)
METRICS = ()  # named per setting: acc_5w10s, ... (see metric_names)


def metric_name(n_way: int, k_shot: int) -> str:
    return f"acc_{n_way}w{k_shot}s"


def metric_names(settings: dict) -> list[str]:
    return [metric_name(n, k) for n, k in settings["settings"]]


# ----------------------------------------------------------------------------- splits

def make_splits(labels, n_way: int, k_shot: int, n_query: int, folds: int, seed: int, query_labels=None,
                dataset_checksum: str | None = None):
    """Seeded episodes from foundry.data's sampler (a FewShotSplits: `.episodes` are dicts
    {"classes", "support", "query"} of indices into `labels` / `query_labels`)."""

    return make_fewshot_splits(np.asarray(labels).reshape(-1), n_way=n_way, k_shot=k_shot, n_query=n_query,
                               folds=folds, seed=seed, query_labels=query_labels, dataset_checksum=dataset_checksum)


def splits_checksum(episodes: list[dict]) -> str:
    return hashlib.sha256(json.dumps(episodes, sort_keys=True).encode()).hexdigest()


def load_or_make_splits(path: Path | None, labels, n_way, k_shot, n_query, folds, seed, pool_checksum: str,
                        query_labels=None) -> list[dict]:
    """The episodes saved at `path` when they were drawn with these settings from this data, else
    new ones (then saved there)."""

    if path is not None and path.exists():
        try:
            saved = FewShotSplits.load(path)
            same = (saved.n_way, saved.k_shot, saved.n_query, saved.folds, saved.seed) == (n_way, k_shot, n_query,
                                                                                           folds, seed)
            if same:
                saved.verify(np.asarray(labels).reshape(-1), query_labels, dataset_checksum=pool_checksum)
                return saved.episodes
        except FoundryInputError:
            pass  # drawn for other data or settings: draw again below
    splits = make_splits(labels, n_way, k_shot, n_query, folds, seed, query_labels, pool_checksum)
    if path is not None:
        splits.save(path)
    return splits.episodes


# ----------------------------------------------------------------------------- classifier

def episode_accuracy(feats, labels, episode: dict, classifier: str = "svm", C: float = 1.0, seed: int = 0,
                     query_feats=None, query_labels=None) -> float:
    """Accuracy (percent) of one episode: fit on the support features, score the query features
    (taken from `query_feats` / `query_labels` when the queries come from another split)."""
    feats = np.asarray(feats, dtype=np.float64)
    labels = np.asarray(labels)
    qf = feats if query_feats is None else np.asarray(query_feats, dtype=np.float64)
    ql = labels if query_labels is None else np.asarray(query_labels)
    sup, qry = np.asarray(episode["support"]), np.asarray(episode["query"])
    xs, ys, xq, yq = feats[sup], labels[sup], qf[qry], ql[qry]
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
    view = seed if s["seeded_points"] else None  # the seed's point order / subsample (see the svm protocol)
    seen = ctx.split(s["data"], s["split"], s["num_points"], s["per_class"], seed=view)
    qseen = ctx.split(s["data"], s["query_split"], s["num_points"], s["per_class"], seed=view) if s["query_split"] \
        else None
    pool, qpool = seen, qseen  # the episodes index the same clouds whatever their point order
    data = {"support": pool.describe()} | ({"query": qpool.describe()} if qpool is not None else {})
    both = (pool.base_sha256 or pool.checksum()) + ((qpool.base_sha256 or qpool.checksum()) if qpool is not None
                                                    else "")
    feats = ctx.features(seen)
    qfeats = ctx.features(qseen) if qseen is not None else None
    qlabels = qpool.labels if qpool is not None else None
    ref = ctx.reference is not None
    ref_feats = ctx.features(seen, which="reference") if ref else None
    ref_qfeats = ctx.features(qseen, which="reference") if ref and qseen is not None else None
    metrics, details = {}, {"classifier": s["classifier"], "C": s["C"], "settings": {}}
    for n_way, k_shot in s["settings"]:
        name = metric_name(n_way, k_shot)
        path = None
        if ctx.out_dir is not None:
            tag = hashlib.sha256(both.encode()).hexdigest()[:12]
            path = Path(ctx.out_dir) / "splits" / (
                f"fewshot_{tag}_{n_way}w{k_shot}s_q{s['n_query']}_f{s['folds']}_seed{seed}.json")
        episodes = load_or_make_splits(path, pool.labels, n_way, k_shot, s["n_query"], s["folds"], seed,
                                       hashlib.sha256(both.encode()).hexdigest(), qlabels)
        accs = [episode_accuracy(feats, pool.labels, ep, s["classifier"], s["C"], seed, qfeats, qlabels)
                for ep in episodes]
        d = {"fold_accuracy": accs, "splits_sha256": splits_checksum(episodes),
             "splits_file": str(path.relative_to(ctx.out_dir)) if path is not None else None,
             "fold_mean_std": mean_std(accs)}
        metrics[name] = float(np.mean(accs))
        if ref:
            racc = [episode_accuracy(ref_feats, pool.labels, ep, s["classifier"], s["C"], seed, ref_qfeats, qlabels)
                    for ep in episodes]
            diff = [a - b for a, b in zip(accs, racc)]
            d.update({"reference_fold_accuracy": racc, "fold_difference": diff, "difference": mean_std(diff)})
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
