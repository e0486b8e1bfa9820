"""Ship the reference ViT-S teacher (official Point-MAE layout, ../shared) as `teacher-vits`, and
measure it with the linear-SVM protocol on ModelNet10.

    # 1. convert ../shared/checkpoints/point-mae-reference-vits/pretrain.pth -> assets (fp16)
    python scripts/convert_reference.py convert
    # 2. linear SVM, ModelNet10 train -> test, features of the *shipped* teacher-vits
    OMP_NUM_THREADS=1 nice -n 10 python scripts/convert_reference.py svm

Features are cached under runs/teacher-vits-svm/ (git-ignored); the result is printed as JSON
and written to runs/teacher-vits-svm/result.json.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
REFERENCE = SHARED / "checkpoints" / "point-mae-reference-vits" / "pretrain.pth"
WEIGHTS = REPO / "src" / "foundry" / "assets" / "weights"
CACHE = REPO / "runs" / "teacher-vits-svm"

INFO = {
    "origin": ("pretrained OUTSIDE this project's code: an independent re-implementation of Point-MAE "
               "with the official pretraining configuration, stored in the official Point-MAE checkpoint "
               "layout; see ../shared/checkpoints/point-mae-reference-vits/README.md. Not the official "
               "Point-MAE release. Converted with foundry.models.official.convert_official"),
    "objective": "Point-MAE masked patch reconstruction (mask ratio 0.6, Chamfer-L2)",
    "data": "5,472 unlabelled clouds: ModelNet10 train (3,991) + KiCadPart train (1,481)",
    "schedule": "145 epochs, 6,090 steps, batch 128, 307 s on one NVIDIA H200 (as its README reports)",
    "source_sha256": "11a599c2969a09e31a995f5264cf9496d451baa90840637f948b96c77661b107",
}


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def cmd_convert(args) -> int:
    from foundry.models.official import convert_official

    src = Path(args.src)
    digest = sha256(src)
    if digest != INFO["source_sha256"]:
        print(f"warning: {src} has sha256 {digest}, not the one its README states", file=sys.stderr)
    out = WEIGHTS / "teacher-vits.safetensors"
    convert_official(src, out, dtype=torch.float16, info={**INFO, "source_sha256": digest}, name="teacher-vits")
    print(f"wrote {out} ({out.stat().st_size / 2**20:.1f} MiB)")
    return 0


def modelnet10(split: str):
    """(points (M, 1024, 3) float32, labels (M,) int64) of ModelNet10 `split`."""
    try:
        from foundry.data import load_arrays

        arr = load_arrays("modelnet10", split)
        return arr["points"].astype(np.float32), arr["labels"].astype(np.int64)
    except (ImportError, AttributeError):
        import h5py

        with h5py.File(SHARED / "data" / "modelnet10" / f"ply_data_{split}0.h5", "r") as f:
            return f["data"][:].astype(np.float32), f["label"][:].reshape(-1).astype(np.int64)


def cmd_svm(args) -> int:
    import foundry
    from foundry.eval.svm import extract_features, linear_svm_eval

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = foundry.load(args.model)
    CACHE.mkdir(parents=True, exist_ok=True)
    feats = {}
    for split in ("train", "test"):
        cache = CACHE / f"{args.model.replace('/', '_')}-{split}.npz"
        pts, labels = modelnet10(split)
        if cache.exists() and not args.refresh:
            z = np.load(cache)
            feats[split] = (z["feats"], z["labels"])
            print(f"{split}: cached features {z['feats'].shape} from {cache}")
            continue
        t0 = time.time()
        f = extract_features(model, pts, batch_size=args.batch_size, progress=True)
        print(f"{split}: {f.shape} features in {time.time() - t0:.0f} s")
        np.savez(cache, feats=f, labels=labels)
        feats[split] = (f, labels)
    res = linear_svm_eval(*feats["train"], *feats["test"], seeds=(0, 1, 2))
    res["model"] = args.model
    res["protocol"] = ("ModelNet10 train -> test, 1024 points, forward_features (mean+max of final-norm tokens), "
                       "standardised on train, LinearSVC, C by 3-fold CV on train only")
    res["cv_scores"] = {str(k): v for k, v in res["cv_scores"].items()}
    (CACHE / "result.json").write_text(json.dumps(res, indent=2))
    print(json.dumps(res, indent=2))
    print(f"linear SVM accuracy {100 * res['accuracy_mean']:.2f} +- {100 * res['accuracy_std']:.2f} % (C={res['C']})")
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("convert", help="convert the reference checkpoint into the shipped teacher-vits")
    c.add_argument("--src", default=str(REFERENCE))
    s = sub.add_parser("svm", help="linear-SVM accuracy on ModelNet10 of a model's forward_features")
    s.add_argument("--model", default="teacher-vits")
    s.add_argument("--batch-size", type=int, default=32)
    s.add_argument("--threads", type=int, default=1)
    s.add_argument("--refresh", action="store_true", help="recompute cached features")
    args = p.parse_args(argv)
    return cmd_convert(args) if args.cmd == "convert" else cmd_svm(args)


if __name__ == "__main__":
    sys.exit(main())
