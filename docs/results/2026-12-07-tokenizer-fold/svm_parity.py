import sys, time, numpy as np, torch, foundry
from foundry.eval.runner import load_split
from foundry.eval.svm import extract_features, linear_svm_eval
from foundry.models import tokenizer as T
torch.set_num_threads(1)
new = T.PointNetPatchEmbed._embed_folded
from plain_tokenizer import old  # noqa: E402
tr = load_split("modelnet10", "train", 1024, None, False)
va = load_split("modelnet10", "val", 1024, None, False)
for name in sys.argv[1:]:
    m = foundry.load(name)
    out = {}
    for lab, f in (("old", old), ("new", new)):
        T.PointNetPatchEmbed._embed_folded = f
        t = time.time()
        ftr, fva = extract_features(m, tr.points, 32), extract_features(m, va.points, 32)
        out[lab] = (ftr, fva, time.time() - t)
    T.PointNetPatchEmbed._embed_folded = new
    d = max(np.abs(out["old"][0] - out["new"][0]).max(), np.abs(out["old"][1] - out["new"][1]).max())
    r = {k: linear_svm_eval(v[0], tr.labels, v[1], va.labels, seeds=(0,)) for k, v in out.items()}
    same = (np.asarray(r["old"]["correct"][0]) == np.asarray(r["new"]["correct"][0])).all()
    print(f"{name}: features max |old-new| {d:.2e}; val SVM old {100*r['old']['accuracy_mean']:.2f}% (C {r['old']['C']}) "
          f"new {100*r['new']['accuracy_mean']:.2f}% (C {r['new']['C']}); identical per-cloud correctness: {same}; "
          f"feature time old {out['old'][2]:.0f} s new {out['new'][2]:.0f} s", flush=True)
