"""Ridge strength of the feature alignment, scanned on ModelNet10 val (one view: the deterministic 1024-point
subsample of load_arrays; the teacher's SVM fitted on `train`, as `foundry eval --split val`):

    python docs/results/2026-12-07-feature-align-val/alpha_scan.py TEACHER STUDENT

Post-hoc affine alignment of a student's global feature onto its teacher's: fitted on train clouds (teacher
features as targets, no labels), scored with the teacher's SVM (transfer protocol) on val."""
import sys, time, numpy as np, torch
from foundry import api
from foundry.data import load_arrays
from foundry.eval.svm import linear_svm_eval
torch.set_num_threads(1)
teacher_name, student_name = sys.argv[1], sys.argv[2]
out = {}
def feats(model, pts, bs=32):
    fs = []
    with torch.inference_mode():
        for i in range(0, len(pts), bs):
            fs.append(model.forward_features(torch.from_numpy(pts[i:i+bs].copy())).numpy())
    return np.concatenate(fs).astype(np.float64)
tr = load_arrays("modelnet10", "train", 1024); va = load_arrays("modelnet10", "val", 1024)
cache = f"/tmp/align/{teacher_name}_{student_name}.npz"
try:
    z = np.load(cache); T_tr, T_va, S_tr, S_va = z["T_tr"], z["T_va"], z["S_tr"], z["S_va"]
except FileNotFoundError:
    t0 = time.time()
    T, S = api.load(teacher_name).eval(), api.load(student_name).eval()
    T_tr, T_va, S_tr, S_va = feats(T, tr["points"]), feats(T, va["points"]), feats(S, tr["points"]), feats(S, va["points"])
    np.savez(cache, T_tr=T_tr, T_va=T_va, S_tr=S_tr, S_va=S_va); print("features", round(time.time() - t0), "s")
ytr, yva = tr["labels"], va["labels"]
both = lambda *f: np.concatenate(f)
res = linear_svm_eval(T_tr, ytr, both(T_va, S_va), both(yva, yva), seeds=(0,))
c = np.asarray(res["correct"][0]); n = len(yva)
print(f"teacher on val {100*c[:n].mean():.2f}, student raw {100*c[n:].mean():.2f}  (retention {100*c[n:].mean()/c[:n].mean():.1f}%)")
Xm, Ym = S_tr.mean(0), T_tr.mean(0)
X, Y = S_tr - Xm, T_tr - Ym
for alpha in (1e-3, 1e-2, 1e-1, 1, 10):
    lam = alpha * np.trace(X.T @ X) / X.shape[1]
    W = np.linalg.solve(X.T @ X + lam * np.eye(X.shape[1]), X.T @ Y)
    A_va = (S_va - Xm) @ W + Ym
    r = linear_svm_eval(T_tr, ytr, A_va, yva, seeds=(0,), c_grid=(res["C"],))
    own = linear_svm_eval((S_tr - Xm) @ W + Ym, ytr, A_va, yva, seeds=(0,))
    mse_raw = ((S_va - T_va) ** 2).mean(); mse = ((A_va - T_va) ** 2).mean()
    print(f"alpha {alpha}: teacher's SVM on aligned student {100*r['accuracy_mean']:.2f}; own SVM {100*own['accuracy_mean']:.2f}; feature MSE {mse_raw:.4f} -> {mse:.4f}")
raw_own = linear_svm_eval(S_tr, ytr, S_va, yva, seeds=(0,))
print(f"student own SVM raw {100*raw_own['accuracy_mean']:.2f}")
