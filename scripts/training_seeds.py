"""Several training seeds of each recipe, against the teacher and against each other, from `foundry eval` folders.

    python scripts/training_seeds.py --teacher EVALS/teacher-vits [--floor EVALS/random-init] \
        --model foundry-s16=EVALS/foundry-s16-seed0-fp32,EVALS/foundry-s16-seed1-fp32 \
        --model fps-s16=EVALS/fps-s16-seed0-fp32,EVALS/fps-s16-seed1-fp32 --pair-with foundry-s16 [--out table.md]

`foundry compare` pairs one trained file with another; a recipe's claim needs its training seeds too. Per recipe
and task: the score of each training seed (mean over its evaluation seeds), their mean +- std (the spread a user
who retrains sees), and paired 95% intervals over the shared items with every run of the recipe pooled (all
training x evaluation seeds in one bootstrap, `foundry.eval.paired.pooled_item_scores`): against the teacher
(its runs tiled seed by seed), against `--pair-with` (training seed k paired with training seed k), and the share
of the teacher's gain over the floor. The pooled bootstrap resamples items only, so it does not hold the training
seed's variance; with at least MIN_RUNS training seeds per recipe each difference also gets a two-level interval
(items and training seeds resampled, `foundry.eval.paired.seed_and_item_interval`), the one to decide on. Every run must have been scored with the teacher's settings on the same data
(checked from the results.json records); fidelity (no items) is given as mean +- std only.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from foundry.eval.paired import (fmt_interval, item_scores, matched_rows, paired_interval, pooled_item_scores,
                                 seed_and_item_interval, verdict)
from foundry.validation import FoundryInputError

TASKS = [("svm", "accuracy", "SVM"), ("fewshot", "acc_5w10s", "5w10s"), ("fewshot", "acc_5w20s", "5w20s"),
         ("fewshot", "acc_10w10s", "10w10s"), ("fewshot", "acc_10w20s", "10w20s"),
         ("partseg", "class_miou", "part cls mIoU"), ("partseg", "instance_miou", "part inst mIoU")]
FIDELITY = [("cosine", "token cosine"), ("cka_tokens", "CKA tokens")]
MIN_RUNS = 3  # training seeds per recipe for the two-level interval


def load_results(folder: str | Path) -> dict:
    path = Path(folder) / "results.json"
    if not path.is_file():
        raise FoundryInputError(f"{path} not found: give the folder a `foundry eval --out` wrote")
    res = json.loads(path.read_text())
    if not res.get("finished", True):
        raise FoundryInputError(f"{path} is an unfinished evaluation: rerun its `foundry eval` to finish it")
    return res


def check_same_protocol(runs: dict[str, dict], teacher: dict) -> None:
    """Every run scored with the teacher's settings, on the teacher's data, with the teacher's seeds."""
    for name, res in runs.items():
        for proto, entry in res["protocols"].items():
            ref = teacher["protocols"].get(proto)
            if ref is None:
                continue
            if entry["settings"] != ref["settings"] or entry.get("data_checksums") != ref.get("data_checksums"):
                raise FoundryInputError(f"{name}: its {proto} evaluation used other settings or data than the "
                                        "teacher's: score both with one `foundry eval` configuration")
            if sorted(entry.get("details", {})) != sorted(ref.get("details", {})):
                raise FoundryInputError(f"{name}: its {proto} evaluation seeds differ from the teacher's "
                                        f"({sorted(entry.get('details', {}))} vs {sorted(ref.get('details', {}))})")


def _seed_means(runs: list[dict], proto: str, metric: str) -> list[float]:
    return [r["protocols"][proto]["summary"][metric]["mean"] for r in runs
            if metric in r["protocols"].get(proto, {}).get("summary", {})]


def recipe_rows(name: str, runs: list[dict], teacher: dict, floor: dict | None,
                other: tuple[str, list[dict]] | None) -> list[dict]:
    """One dict per task: training-seed means, their mean and std, and the pooled paired intervals."""
    out = []
    for proto, metric, title in TASKS:
        means = _seed_means(runs, proto, metric)
        if len(means) != len(runs):
            continue
        pooled = pooled_item_scores([r["protocols"][proto] for r in runs], metric)
        teach = pooled_item_scores([teacher["protocols"].get(proto, {})], metric)
        row = {"recipe": name, "task": title, "per_seed": means, "mean": float(np.mean(means)),
               "std": float(np.std(means, ddof=1)) if len(means) > 1 else 0.0,
               "teacher": teacher["protocols"][proto]["summary"][metric]["mean"]}
        if pooled is not None and teach is not None and pooled[0].shape[1] == teach[0].shape[1]:
            rows = pooled[0].shape[0]
            fl = pooled_item_scores([floor["protocols"].get(proto, {})], metric) if floor else None
            row["vs_teacher"] = paired_interval(
                pooled, (matched_rows(teach[0], rows), teach[1]),
                (matched_rows(fl[0], rows), fl[1]) if fl is not None and fl[0].shape[1] == teach[0].shape[1] else None)
            per_run = [item_scores(r["protocols"][proto], metric)[0] for r in runs]
            if len(runs) >= MIN_RUNS:
                row["vs_teacher_seeds"] = seed_and_item_interval(per_run, [teach[0]], pooled[1])
            if other is not None:
                theirs = pooled_item_scores([r["protocols"][proto] for r in other[1]], metric)
                if theirs is not None and theirs[0].shape == pooled[0].shape:
                    row["vs_other"] = paired_interval(pooled, theirs)
                    if len(runs) >= MIN_RUNS and len(other[1]) >= MIN_RUNS:
                        row["vs_other_seeds"] = seed_and_item_interval(
                            per_run, [item_scores(r["protocols"][proto], metric)[0] for r in other[1]], pooled[1])
        out.append(row)
    for key, title in FIDELITY:
        means = _seed_means(runs, "fidelity", key)
        if len(means) == len(runs):
            out.append({"recipe": name, "task": title, "per_seed": means, "mean": float(np.mean(means)),
                        "std": float(np.std(means, ddof=1)) if len(means) > 1 else 0.0, "teacher": None})
    return out


def table(rows: list[dict], pair_with: str | None) -> str:
    seeds = any("vs_teacher_seeds" in r for r in rows)
    head = ["recipe", "task", "teacher", "per training seed", "mean +- std", "- teacher [95%] (pooled)",
            "gain % [95%]"] + ([f"- {pair_with} [95%] (pooled)"] if pair_with else [])
    if seeds:
        head += ["- teacher [95%] (items + seeds)"] + ([f"- {pair_with} [95%] (items + seeds)"] if pair_with else [])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    fid = any(r["teacher"] is None for r in rows)
    for r in rows:
        digits = 4 if r["teacher"] is None else 2
        cells = [r["recipe"], r["task"], "-" if r["teacher"] is None else f"{r['teacher']:.2f}",
                 " / ".join(f"{m:.{digits}f}" for m in r["per_seed"]), f"{r['mean']:.{digits}f} +- {r['std']:.{digits}f}"]
        vt = r.get("vs_teacher")
        cells.append(f"{fmt_interval(vt['difference'], 2)} {verdict(vt)}" if vt else "-")
        cells.append(fmt_interval(vt["gain"]) if vt and "gain" in vt else "-")
        if pair_with:
            vo = r.get("vs_other")
            cells.append(f"{fmt_interval(vo['difference'], 2)} {verdict(vo, pair_with)}" if vo else "-")
        if seeds:
            keys = ["vs_teacher_seeds"] + (["vs_other_seeds"] if pair_with else [])
            for key, ref in zip(keys, ["the teacher", pair_with]):
                iv = r.get(key)
                cells.append(f"{fmt_interval(iv['difference'], 2)} {verdict(iv, ref)}" if iv else "-")
        lines.append("| " + " | ".join(cells) + " |")
    note = "\nFidelity against the teacher (1 = identical tokens): mean +- std over training seeds.\n" if fid else ""
    return "\n".join(lines) + "\n" + note


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--teacher", required=True, metavar="EVAL_DIR")
    ap.add_argument("--floor", default=None, metavar="EVAL_DIR", help="the random-init floor (for the gain share)")
    ap.add_argument("--model", action="append", required=True, metavar="RECIPE=DIR[,DIR...]",
                    help="a recipe and the eval folders of its training seeds (repeat per recipe)")
    ap.add_argument("--pair-with", default=None, metavar="RECIPE", help="also pair every recipe with this one")
    ap.add_argument("--out", default=None, help="write the table (markdown) and OUT's .json beside it")
    ap.add_argument("--overwrite", action="store_true")
    args = ap.parse_args(argv)
    teacher = load_results(args.teacher)
    floor = load_results(args.floor) if args.floor else None
    recipes = {}
    for spec in args.model:
        name, sep, dirs = spec.partition("=")
        if not sep or not name or not dirs:
            raise FoundryInputError(f"--model {spec!r}: write RECIPE=DIR[,DIR...]")
        recipes[name] = {d: load_results(d) for d in dirs.split(",")}
        check_same_protocol(recipes[name], teacher)
    if args.pair_with and args.pair_with not in recipes:
        raise FoundryInputError(f"--pair-with {args.pair_with}: not one of the recipes ({', '.join(recipes)})")
    if args.pair_with and len({len(v) for v in recipes.values()}) != 1:
        raise FoundryInputError("--pair-with needs the same number of training seeds for every recipe")
    rows = []
    for name, runs in recipes.items():
        other = None
        if args.pair_with and name != args.pair_with:
            other = (args.pair_with, list(recipes[args.pair_with].values()))
        rows += recipe_rows(name, list(runs.values()), teacher, floor, other)
    text = table(rows, args.pair_with)
    if args.out:
        out = Path(args.out)
        if out.exists() and not args.overwrite:
            raise FoundryInputError(f"{out} exists: pass --overwrite to replace it")
        out.parent.mkdir(parents=True, exist_ok=True)
        record = {"recipes": {k: list(v) for k, v in recipes.items()}, "teacher": args.teacher, "floor": args.floor,
                  "pair_with": args.pair_with, "rows": rows}
        for path, content in ((out.with_suffix(".json"), json.dumps(record, indent=1)), (out, text)):
            tmp = path.with_name(path.name + ".tmp")  # written whole, then renamed: never a half-written file
            tmp.write_text(content)
            tmp.replace(path)
    print(text, end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
