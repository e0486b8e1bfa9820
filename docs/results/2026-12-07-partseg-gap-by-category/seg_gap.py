"""Per-category part-segmentation gap of students against the teacher (paired per shape, 3 seeds)."""
import json

import numpy as np
def load(path):
    r = json.load(open(path))["protocols"]["partseg"]
    return np.array([r["details"][k]["shape_iou"] for k in ("0", "1", "2")]), np.array(r["details"]["0"]["shape_category"]), list(r["details"]["0"]["per_category_miou"])
T, cats, names = load("docs/results/2026-12-04-study-shipped-test/evals/teacher-vits/results.json")
models = {"s1": "docs/results/2026-12-04-study-shipped-test/evals/foundry-vits-s1/results.json",
          "s2": "docs/results/2026-12-04-study-sweep-final-test/evals/foundry-vits-s2/results.json",
          "s4": "docs/results/2026-12-04-study-shipped-test/evals/foundry-vits-s4/results.json",
          "s8": "docs/results/2026-12-04-study-sweep-final-test/evals/foundry-vits-s8/results.json",
          "s16": "docs/results/2026-12-04-study-shipped-test/evals/foundry-vits-s16/results.json",
          "s32": "docs/results/2026-12-04-study-sweep-final-test/evals/foundry-vits-s32/results.json"}
rows = {}
for lab, p in models.items():
    S, c2, _ = load(p)
    assert (c2 == cats).all()
    rows[lab] = 100 * (S - T).mean(0)
print("instance-mIoU difference to teacher-vits per KiCadPart test category (mean over 3 seeds, points)")
print(f"{'category':16s} {'n':>3s} {'teacher':>7s} " + " ".join(f"{k:>6s}" for k in rows))
for c in np.unique(cats):
    idx = cats == c
    print(f"{names[c]:16s} {idx.sum():3d} {100*T[:, idx].mean():7.1f} " + " ".join(f"{v[idx].mean():+6.2f}" for v in rows.values()))
print(f"{'all':16s} {len(cats):3d} {100*T.mean():7.1f} " + " ".join(f"{v.mean():+6.2f}" for v in rows.values()))
rng = np.random.default_rng(0)
print("\ns16 per category, bootstrap over the category's shapes (2,000 resamples): difference [2.5%, 97.5%]")
d = rows["s16"]
for c in np.unique(cats):
    idx = np.flatnonzero(cats == c)
    boot = [d[rng.choice(idx, len(idx))].mean() for _ in range(2000)]
    print(f"{names[c]:16s} {d[idx].mean():+6.2f} [{np.percentile(boot, 2.5):+.2f}, {np.percentile(boot, 97.5):+.2f}]"
          f"  share of the gap {100 * d[idx].sum() / d.sum():5.1f}%")
