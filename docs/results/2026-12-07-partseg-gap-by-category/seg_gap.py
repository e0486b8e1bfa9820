"""Per-category part-segmentation gap of the students against the teacher, from published per-shape IoUs:
`foundry.eval.paired.partseg_by_category`, the pairing `foundry compare` writes into compare.md."""
import json

from foundry.eval.paired import fmt_interval, partseg_by_category

SHIPPED = "docs/results/2026-12-04-study-shipped-test/evals/"
SWEEP = "docs/results/2026-12-04-study-sweep-final-test/evals/"
MODELS = {"s1": SHIPPED, "s2": SWEEP, "s4": SHIPPED, "s8": SWEEP, "s16": SHIPPED, "s32": SWEEP}


def partseg(path):
    return json.load(open(path))["protocols"]["partseg"]


teacher = partseg(SHIPPED + "teacher-vits/results.json")
rows = {k: partseg_by_category(partseg(f"{d}foundry-vits-{k}/results.json"), teacher) for k, d in MODELS.items()}
cats = list(rows["s16"])
print("instance-mIoU difference to teacher-vits per KiCadPart test category (mean over 3 seeds, points)")
print(f"{'category':16s} {'n':>3s} {'teacher':>7s} " + " ".join(f"{k:>6s}" for k in rows))
for c in cats:
    n, t, _ = rows["s16"][c]
    print(f"{c:16s} {n:3d} {t:7.1f} " + " ".join(f"{r[c][2]['difference']['estimate']:+6.2f}" for r in rows.values()))
def overall(r):  # the instance mIoU difference over all shapes: the shape-weighted mean of the categories'
    return sum(n * iv["difference"]["estimate"] for n, _, iv in r.values()) / sum(n for n, _, _ in r.values())


n_all = sum(n for n, _, _ in rows["s16"].values())
t_all = sum(n * t for n, t, _ in rows["s16"].values()) / n_all
print(f"{'all':16s} {n_all:3d} {t_all:7.1f} " + " ".join(f"{overall(r):+6.2f}" for r in rows.values()))
total = overall(rows["s16"]) * n_all
print("\ns16 per category, paired bootstrap over the category's shapes (2,000 resamples): difference [2.5%, 97.5%]")
for c in cats:
    n, _, iv = rows["s16"][c]
    share = 100 * n * iv["difference"]["estimate"] / total
    print(f"{c:16s} {fmt_interval(iv['difference'], 2):>24s}  share of the gap {share:5.1f}%")
