"""Issue 18's teacher goal, paired: does the Point-JEPA teacher's SVM gain over the random network reach the
Point-MAE teacher's? Both small teachers and their common random floor scored on the same 908 ModelNet10 test
clouds under the same three seeded views (the `svm` protocol's per-cloud records), so

    JEPA gain - MAE gain = (JEPA - floor) - (MAE - floor) = JEPA - MAE accuracy   (points)
    JEPA gain as % of MAE gain = (JEPA - floor) / (MAE - floor) * 100

with the project's paired bootstrap over the test clouds (eval.paired.paired_interval, 2,000 resamples).

    python docs/results/2026-12-07-teachers-jepa-vs-mae-test/pair.py MAE_RESULTS.json
"""
import json
import sys

from foundry.eval.paired import fmt_interval, item_scores, paired_interval

JEPA = "docs/results/2026-12-07-teachers-jepa-fp32/teacher-small-jepa/evals/"


def svm(path):
    entry = json.load(open(path))["protocols"]["svm"]
    return entry, item_scores(entry, "accuracy")


mae_entry, mae = svm(sys.argv[1])
jepa_entry, jepa = svm(JEPA + "teacher-small-jepa/results.json")
_, floor = svm(JEPA + "random-init/results.json")
assert mae_entry["settings"] == jepa_entry["settings"], "not the same protocol settings"
for name, e in (("MAE", mae_entry), ("JEPA", jepa_entry)):
    print(f"{name}: {e['summary']['accuracy']['mean']:.2f} +- {e['summary']['accuracy']['std']:.2f} "
          f"(seeds {[round(v['accuracy'], 2) for v in e['per_seed'].values()]})")
iv = paired_interval(jepa, mae, floor)
print(f"JEPA - MAE (= JEPA gain - MAE gain): {fmt_interval(iv['difference'], 2)} points; "
      f"JEPA gain as % of MAE gain: {fmt_interval(iv['gain'])}; within noise: {iv['within_noise']} "
      f"({iv['items']} clouds x {iv['seeds']} seeds)")
