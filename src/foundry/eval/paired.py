"""Paired 95% intervals for a model against the teacher (and the random-init floor).

Teacher and student are scored on the same items (test clouds for the SVM, shapes for part
segmentation, folds for few-shot), seed by seed, on the same seeded views of the data. The
uncertainty that matters for "does the student keep the teacher's score" is therefore the one
of the *paired* difference: resample the items (the same resample for every model and every
seed), recompute each model's score, and read the 2.5 / 97.5 percentiles of

    difference   = model - teacher                        (points)
    raw          = model / teacher * 100                  (retention, %)
    gain share   = (model - floor) / (teacher - floor) * 100

A difference whose interval holds zero is "within noise". Item scores come from the per-seed
details the protocols record (`item_scores`).
"""
from __future__ import annotations

import numpy as np

N_BOOT = 2000
BOOT_SEED = 0


def item_scores(entry: dict, metric: str):
    """(scores (S, M), aggregate) of one protocol entry of a results.json, or None.

    scores[s, i] is item i's score under seed s; aggregate(scores_subset) -> (S,) the metric per
    seed (e.g. the mean, or the class mIoU) for a resample of the items."""
    seeds = sorted(entry.get("details", {}), key=int)
    if not seeds:
        return None
    details = [entry["details"][s] for s in seeds]
    recorded = [d.get("item_scores", {}).get(metric) for d in details]  # {metric: "0110.." or [scores]}
    if all(r is not None for r in recorded):
        rows = [[c == "1" for c in r] if isinstance(r, str) else r for r in recorded]
        if len({len(r) for r in rows}) != 1:
            return None
        return 100.0 * np.asarray(rows, dtype=np.float64), _mean
    if metric == "accuracy" and all("correct" in d for d in details):
        rows = [[c == "1" for c in d["correct"]] for d in details]
        if len({len(r) for r in rows}) != 1:
            return None
        return 100.0 * np.asarray(rows, dtype=np.float64), _mean
    if metric in ("instance_miou", "class_miou") and all("shape_iou" in d for d in details):
        scores = 100.0 * np.asarray([d["shape_iou"] for d in details], dtype=np.float64)
        if metric == "instance_miou":
            return scores, _mean
        return scores, _class_mean(np.asarray(details[0]["shape_category"]))
    if metric.startswith("acc_"):  # few-shot: the folds of every seed are the items
        folds = [d.get("settings", {}).get(metric, {}).get("fold_accuracy") for d in details]
        if any(f is None for f in folds) or len({len(f) for f in folds}) != 1:
            return None
        return np.asarray(folds, dtype=np.float64), _mean
    return None


def _mean(scores: np.ndarray, idx: np.ndarray | None = None) -> np.ndarray:
    return (scores if idx is None else scores[:, idx]).mean(axis=1)


def _class_mean(categories: np.ndarray):
    def aggregate(scores: np.ndarray, idx: np.ndarray | None = None) -> np.ndarray:
        cats = categories if idx is None else categories[idx]
        sub = scores if idx is None else scores[:, idx]
        return np.mean([sub[:, cats == c].mean(axis=1) for c in np.unique(cats)], axis=0)

    return aggregate


def paired_interval(model, teacher, floor=None, n_boot: int = N_BOOT, seed: int = BOOT_SEED) -> dict:
    """Bootstrap the items shared by `model`, `teacher` (and `floor`): each an (scores, aggregate)
    pair from `item_scores`, over the same items and seeds. Returns {"difference", "raw", "gain"}
    each {"estimate", "low", "high"}, the number of items and seeds, and "within_noise"."""
    ms, agg = model
    ts, _ = teacher
    if ms.shape != ts.shape:
        raise ValueError(f"model and teacher were scored on different items ({ms.shape} vs {ts.shape})")
    fs = None
    if floor is not None:
        fs = floor[0]
        if fs.shape != ms.shape:
            fs = None
    rng = np.random.default_rng(seed)
    m_items = ms.shape[1]

    def stats(idx):
        m, t = agg(ms, idx).mean(), agg(ts, idx).mean()
        out = [m - t, 100.0 * m / t if t else np.nan]
        if fs is not None:
            f = agg(fs, idx).mean()
            out.append(100.0 * (m - f) / (t - f) if abs(t - f) > 1e-9 else np.nan)
        return out

    est = stats(None)
    boots = np.asarray([stats(rng.integers(0, m_items, m_items)) for _ in range(n_boot)])
    names = ["difference", "raw"] + (["gain"] if fs is not None else [])
    out = {"items": int(m_items), "seeds": int(ms.shape[0]), "bootstrap": n_boot}
    for j, name in enumerate(names):
        col = boots[:, j][np.isfinite(boots[:, j])]
        lo, hi = (np.percentile(col, [2.5, 97.5]) if col.size else (np.nan, np.nan))
        out[name] = {"estimate": float(est[j]), "low": float(lo), "high": float(hi)}
    d = out["difference"]
    out["within_noise"] = bool(d["low"] <= 0.0 <= d["high"])
    return out


def pooled_item_scores(entries: list[dict], metric: str):
    """(scores (R, M), aggregate) of several runs of one recipe (e.g. its training seeds) on the same items:
    each run's per-seed rows stacked, so the paired bootstrap over items averages the training seeds as
    well as the evaluation seeds. None when a run lacks the records or the runs were scored on other items."""
    found = [item_scores(e, metric) for e in entries]
    if not found or any(f is None for f in found) or len({f[0].shape[1] for f in found}) != 1:
        return None
    return np.concatenate([f[0] for f in found]), found[0][1]


def matched_rows(scores: np.ndarray, rows: int) -> np.ndarray:
    """`scores` (S, M) tiled to `rows` rows, so that a single run pairs with a pooled one (R = k * S rows,
    evaluation seed by evaluation seed); its mean is unchanged."""
    if rows % scores.shape[0]:
        raise ValueError(f"{rows} pooled rows are not a multiple of {scores.shape[0]} seeds")
    return np.tile(scores, (rows // scores.shape[0], 1))


def seed_and_item_interval(runs, others, aggregate, n_boot: int = N_BOOT, seed: int = BOOT_SEED) -> dict:
    """The difference (mean over `runs`) - (mean over `others`) with a two-level bootstrap: each draw resamples
    the items (shared by both sides, as in `paired_interval`) and, independently per side, the runs with
    replacement. `runs` / `others`: lists of (S, M) item scores, one per training seed of a recipe (a teacher:
    one run). Unlike `paired_interval` over pooled runs, its interval holds the training seed's variance too; with
    few runs per side that part is coarse (three runs give ten distinct resamples), so read it as a floor on the
    uncertainty, not an exact interval."""
    rng = np.random.default_rng(seed)
    items = runs[0].shape[1]
    if any(r.shape[1] != items for r in list(runs) + list(others)):
        raise ValueError("every run must be scored on the same items")

    def run_values(group, idx):
        return np.asarray([aggregate(r, idx).mean() for r in group])

    est = run_values(runs, None).mean() - run_values(others, None).mean()
    boots = np.empty(n_boot)
    for b in range(n_boot):
        idx = rng.integers(0, items, items)
        mine, theirs = run_values(runs, idx), run_values(others, idx)
        boots[b] = rng.choice(mine, mine.size).mean() - rng.choice(theirs, theirs.size).mean()
    lo, hi = np.percentile(boots, [2.5, 97.5])
    return {"difference": {"estimate": float(est), "low": float(lo), "high": float(hi)},
            "runs": [len(runs), len(others)], "items": int(items), "bootstrap": n_boot,
            "within_noise": bool(lo <= 0.0 <= hi)}


def partseg_by_category(entry: dict, teacher_entry: dict) -> dict:
    """{category name: (number of shapes, teacher's mean shape IoU in %, paired interval of the model's
    instance mIoU over that category's shapes)} from two `partseg` entries of results.json, or {} when
    either lacks the per-shape records. Where an overall part-segmentation gap lies (one category's
    fine parts, or every category a little) decides what a recipe has to change."""
    mine, theirs = item_scores(entry, "instance_miou"), item_scores(teacher_entry, "instance_miou")
    if mine is None or theirs is None or mine[0].shape != theirs[0].shape:
        return {}
    first = entry["details"][min(entry["details"], key=int)]  # item_scores found per-shape records in every seed
    cats = np.asarray(first.get("shape_category", []))
    names = list(first.get("per_category_miou", {}))  # the test categories by index, as named there
    present = np.unique(cats)
    if len(cats) != mine[0].shape[1] or len(names) != len(present):
        return {}
    out = {}
    for name, c in zip(names, present):
        idx = np.flatnonzero(cats == c)
        out[str(name)] = (int(len(idx)), float(theirs[0][:, idx].mean()),
                          paired_interval((mine[0][:, idx], _mean), (theirs[0][:, idx], _mean)))
    return out


def verdict(interval: dict, reference: str = "the teacher") -> str:
    """'within noise' when the paired interval of the difference holds zero, else above / below."""
    if interval["within_noise"]:
        return "within noise"
    return f"{'above' if interval['difference']['estimate'] > 0 else 'below'} {reference}"


GOAL_VERDICTS = ("missed", "within noise of the goal", "met")  # worst first


def goal_verdict(stat: dict, goal: float) -> str:
    """A retention goal (`stat` >= `goal`) judged on the paired interval: met when the whole interval
    reaches it, missed when none of it does, else within noise of the goal."""
    if stat["low"] >= goal:
        return "met"
    return "missed" if stat["high"] < goal else "within noise of the goal"


def fmt_interval(stat: dict, digits: int = 1) -> str:
    return f"{stat['estimate']:.{digits}f} [{stat['low']:.{digits}f}, {stat['high']:.{digits}f}]"
