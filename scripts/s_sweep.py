"""The s sweep of one recipe: task scores and token fidelity against the SuperToken count s (and GMACs).

    python scripts/s_sweep.py runs/study/sweep-final-test/compare.json [more compare.json ...] \
        --out docs/results/DATE-study-sweep-final-test/s-sweep.png

Reads `foundry compare` results; a row is a sweep point when its label ends in `-s<N>` or `-s<N>-seed<K>`
(foundry-vits-s8, w192-t192-s2-seed0; a label without it, such as w192-t192-seed0, is s = 16 when
--default-s says so). Several files may be given (e.g. a published compare of some s and a new one of the
others, on the same split); the teacher and the random floor come from the first file that has them. Prints one table (s,
GMACs, each score mean +- std, its paired difference with the teacher), each s paired with the
largest s (from the item scores in the models' results.json: the eval folder a row names, or the published
copy beside compare.json), and where the curve flattens: the smallest s whose every task score is within
noise of (or above) the largest s's. Draws one panel per score: mean +- std over seeds against s
(log scale), the teacher's and the floor's means as lines, GMACs on the top axis.
"""
from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

SCORES = ("svm/accuracy", "fewshot/acc_5w10s", "fewshot/acc_10w10s", "partseg/instance_miou", "fidelity/cosine")
TASKS = ("svm/accuracy", "fewshot/acc_5w10s", "fewshot/acc_5w20s", "fewshot/acc_10w10s", "fewshot/acc_10w20s",
         "partseg/class_miou", "partseg/instance_miou")  # every task score: what "flattens" asks of an s
S_IN_LABEL = re.compile(r"-s(\d+)(?:-seed\d+)?$")


def sweep_rows(compares: list[dict], default_s: int | None, only: str | None = None) -> dict[int, dict]:
    """{s: row} over the files (a later file's row of the same s replaces an earlier one's); only: a regular
    expression the labels must match (the recipe's runs among others in one compare)."""
    rows = {}
    for comp in compares:
        for row in comp["rows"]:
            if row["group"] in ("teacher", "random init") or (only and not re.search(only, row["label"])):
                continue
            m = S_IN_LABEL.search(row["label"])
            s = int(m.group(1)) if m else default_s
            if s is not None:
                rows[s] = row
    return dict(sorted(rows.items()))


def reference_means(compares: list[dict]) -> tuple[dict, dict]:
    """The teacher's and the random floor's mean scores, from the first file that has each."""
    rows = [r for comp in compares for r in comp["rows"]]
    teacher = next(r for r in rows if r["group"] == "teacher")
    floor = next((r for r in rows if r["group"] == "random init"), {"scores": {}})
    return ({k: v["mean"] for k, v in teacher["scores"].items()}, {k: v["mean"] for k, v in floor["scores"].items()})


def results_of(row: dict, compare_path: Path, extra=()) -> dict | None:
    """The row's results.json: in its recorded eval folder, in the published copy beside compare.json, or
    in LABEL/ under one of the `extra` folders (--evals)."""
    folders = [Path(row.get("eval_dir") or "/nonexistent"), compare_path.parent / "evals" / row["label"]]
    for folder in folders + [Path(e) / row["label"] for e in extra]:
        if (folder / "results.json").is_file():
            return json.loads((folder / "results.json").read_text())
    return None


def paired_with_largest(results: dict[int, dict | None], scores) -> dict[int, dict]:
    """{s: {score: paired interval of s - the largest s}} from the item scores both recorded
    (eval.paired: the same resample of clouds / shapes / folds for both)."""
    from foundry.eval.paired import item_scores, paired_interval

    largest = results[max(results)]
    out = {}
    for s, res in results.items():
        out[s] = {}
        for key in scores:
            proto, metric = key.split("/")
            if res is None or largest is None or proto == "fidelity":
                continue
            a = item_scores(res["protocols"].get(proto, {}), metric)
            b = item_scores(largest["protocols"].get(proto, {}), metric)
            if a is not None and b is not None and a[0].shape == b[0].shape:
                out[s][key] = paired_interval(a, b)
    return out


def flattens_at(against: dict[int, dict]) -> int | None:
    """The smallest s below the largest whose every task score's paired difference with the largest s
    holds zero or is above it (None: every smaller s is below the largest on some task score)."""
    largest = max(against)
    for s in sorted(against):
        tasks = against[s]
        if s != largest and tasks and all(iv["difference"]["high"] >= 0 for iv in tasks.values()):
            return s
    return None


def below_count(intervals: dict) -> tuple[int, int]:
    """(task scores below the largest s, task scores paired)."""
    return sum(iv["difference"]["high"] < 0 for iv in intervals.values()), len(intervals)


def table(rows: dict[int, dict], scores) -> str:
    head = "| s | GMACs | " + " | ".join(scores) + " |"
    lines = [head, "|" + "---|" * (len(scores) + 2)]
    for s, row in rows.items():
        cells = []
        for k in scores:
            v = row["scores"].get(k)
            if v is None:
                cells.append("-")
                continue
            digits = 4 if k.startswith("fidelity/") else 2
            cell = f"{v['mean']:.{digits}f} +- {v['std']:.{digits}f}"
            iv = (row.get("paired") or {}).get(k)
            if iv is not None:
                d = iv["difference"]
                cell += f" ({d['estimate']:+.2f} [{d['low']:+.2f}, {d['high']:+.2f}]" \
                        f"{', noise' if iv['within_noise'] else ''})"
            cells.append(cell)
        lines.append(f"| {s} | {row['gmacs']:.3f} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(rows: dict[int, dict], teacher: dict, floor: dict, scores, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s_values = list(rows)
    fig, axes = plt.subplots(1, len(scores), figsize=(3.4 * len(scores), 3.4))
    for ax, key in zip(axes, scores):
        pts = [(s, rows[s]["scores"][key]) for s in s_values if key in rows[s]["scores"]]
        ax.errorbar([s for s, _ in pts], [v["mean"] for _, v in pts], yerr=[v["std"] for _, v in pts], fmt="o-",
                    capsize=3, color="tab:green", label="student")
        if key in teacher:
            ax.axhline(teacher[key], color="tab:blue", ls="--", lw=1, label="teacher")
        if key in floor:
            ax.axhline(floor[key], color="tab:orange", ls=":", lw=1, label="random init")
        ax.set_xscale("log", base=2)
        ax.set_xticks(s_values, [str(s) for s in s_values])
        ax.set_xlabel("SuperTokens s")
        ax.set_title(key, fontsize=9)
        ax.grid(alpha=0.3)
        top = ax.secondary_xaxis("top")
        top.set_xticks(s_values, [f"{rows[s]['gmacs']:.3f}" for s in s_values], fontsize=6)
        top.set_xlabel("GMACs (batch 1)", fontsize=7)
        ax.minorticks_off()
        top.minorticks_off()
    axes[0].legend(fontsize=7, loc="lower right")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("compares", nargs="+", type=Path, help="compare.json files of one split")
    p.add_argument("--out", type=Path, help="the PNG to write (none: the table only)")
    p.add_argument("--default-s", type=int, default=16, help="s of a row whose label names none (default 16)")
    p.add_argument("--only", help="a regular expression the sweep's labels match (e.g. '^w192-t192')")
    p.add_argument("--evals", nargs="*", default=[], help="more folders of LABEL/results.json (published evaluations)")
    p.add_argument("--title", default="")
    args = p.parse_args()
    compares = [json.loads(f.read_text()) for f in args.compares]
    splits = {c["split"] for c in compares}
    if len(splits) > 1:
        raise SystemExit(f"the files mix splits {sorted(splits)}: give one split's compares")
    rows, source = {}, {}
    for path, comp in zip(args.compares, compares):  # which file each s came from (a later file wins)
        for sv, row in sweep_rows([comp], args.default_s, args.only).items():
            rows[sv], source[sv] = row, path
    rows = dict(sorted(rows.items()))
    if not rows:
        raise SystemExit("no sweep rows (labels ending in -s<N>) in these files")
    teacher, floor = reference_means(compares)
    print(table(rows, SCORES))
    against = paired_with_largest({sv: results_of(row, source[sv], args.evals) for sv, row in rows.items()}, TASKS)
    largest = max(rows)
    print(f"\npaired with s = {largest} (s - s{largest}, points, 95% bootstrap):")
    for sv, ivs in against.items():
        if sv != largest:
            print(f"  s = {sv}: " + "; ".join(
                f"{k} {iv['difference']['estimate']:+.2f} [{iv['difference']['low']:+.2f}, {iv['difference']['high']:+.2f}]"
                for k, iv in ivs.items()))
    flat = flattens_at(against)
    counts = ", ".join(f"s{sv} {b}/{n}" for sv, ivs in against.items() if sv != largest for b, n in [below_count(ivs)])
    print(f"task scores below s = {largest}: {counts}")
    print(f"flattens at s = {flat}: the smallest s within noise of (or above) s = {largest} on every task score"
          if flat is not None else f"every smaller s is below s = {largest} on at least one task score")
    if args.out is not None:
        plot(rows, teacher, floor, SCORES, args.out, args.title or f"s sweep ({splits.pop()} split, 3 seeds)")
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
