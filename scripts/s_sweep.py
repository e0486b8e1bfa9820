"""The s sweep of one recipe: task scores and token fidelity against the SuperToken count s (and GMACs).

    python scripts/s_sweep.py runs/study/sweep-final-test/compare.json [more compare.json ...] \
        --out docs/results/DATE-study-sweep-final-test/s-sweep.png

Reads `foundry compare` results; a row is a sweep point when its label ends in `-s<N>` or `-s<N>-seed<K>`
(foundry-vits-s8, w192-t192-s2-seed0; a label without it, such as w192-t192-seed0, is s = 16 when
--default-s says so). Several files may be given (e.g. a published compare of some s and a new one of the
others, on the same split); the teacher and the random floor come from the first. Prints one table (s,
GMACs, each score mean +- std, its paired difference with the teacher and verdict) and, when the compare
was run with `--pair-with` the largest s, where the curve flattens: the smallest s whose every task score
is within noise of (or above) the largest s's. Draws one panel per score: mean +- std over seeds against s
(log scale), the teacher's and the floor's means as lines, GMACs on the top axis.
"""
from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

SCORES = ("svm/accuracy", "fewshot/acc_5w10s", "fewshot/acc_10w10s", "partseg/instance_miou", "fidelity/cosine")
S_IN_LABEL = re.compile(r"-s(\d+)(?:-seed\d+)?$")


def sweep_rows(compares: list[dict], default_s: int | None) -> dict[int, dict]:
    """{s: row} over the files (a later file's row of the same s replaces an earlier one's)."""
    rows = {}
    for comp in compares:
        for row in comp["rows"]:
            if row["group"] in ("teacher", "random init"):
                continue
            m = S_IN_LABEL.search(row["label"])
            s = int(m.group(1)) if m else default_s
            if s is not None:
                rows[s] = row
    return dict(sorted(rows.items()))


def reference_means(compare: dict) -> tuple[dict, dict]:
    teacher = next(r for r in compare["rows"] if r["group"] == "teacher")
    floor = next((r for r in compare["rows"] if r["group"] == "random init"), None)
    return ({k: v["mean"] for k, v in teacher["scores"].items()},
            {k: v["mean"] for k, v in (floor or {"scores": {}})["scores"].items()})


def flattens_at(rows: dict[int, dict], largest: int) -> int | None:
    """The smallest s whose every task score's paired difference with the largest s holds zero or is above it."""
    for s, row in rows.items():
        against = row.get("paired_with") or {}
        if s == largest:
            return s
        tasks = [k for k in against if not k.startswith("fidelity/")]
        if tasks and all(against[k]["difference"]["high"] >= 0 for k in tasks):
            return s
    return None


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
    p.add_argument("--title", default="")
    args = p.parse_args()
    compares = [json.loads(f.read_text()) for f in args.compares]
    splits = {c["split"] for c in compares}
    if len(splits) > 1:
        raise SystemExit(f"the files mix splits {sorted(splits)}: give one split's compares")
    rows = sweep_rows(compares, args.default_s)
    if not rows:
        raise SystemExit("no sweep rows (labels ending in -s<N>) in these files")
    teacher, floor = reference_means(compares[0])
    print(table(rows, SCORES))
    if any(r.get("paired_with") for r in rows.values()):
        s = flattens_at(rows, max(rows))
        print(f"\nflattens at s = {s}: the smallest s within noise of (or above) s = {max(rows)} on every task score"
              if s is not None else "\nno s is within noise of the largest on every task score")
    if args.out is not None:
        plot(rows, teacher, floor, SCORES, args.out, args.title or f"s sweep ({splits.pop()} split, 3 seeds)")
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
