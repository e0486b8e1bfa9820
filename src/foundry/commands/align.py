"""`foundry align`: fit a distilled student's global feature onto its teacher's (closed form, no labels)."""
from __future__ import annotations

import time

import torch

from ..api import resolve_model
from ..io import write_json
from ..models.checkpoint import save_checkpoint
from ..train.feature_align import DEFAULT_ALPHA, align_features
from ..validation import check_output, check_suffix, positive_int

HELP = ("fit an affine map from a distilled student's global feature to its teacher's on unlabelled training "
        "clouds (ridge regression), so heads fitted on the teacher read the student unchanged")


def register(p):
    p.add_argument("student", help="distilled student: shipped name or checkpoint path")
    p.add_argument("--teacher", required=True, help="the teacher it was distilled from (shipped name or checkpoint)")
    p.add_argument("--out", required=True, help="output student checkpoint (.safetensors); a .json report beside it")
    p.add_argument("--data", action="append", default=None,
                   help="unlabelled clouds to fit on, repeatable (default: the distillation's modelnet10:train and "
                        "kicadpart:train; never a split you score on; the domain your heads serve does best: the shipped "
                        "foundry-small-jepa-s16 was fitted on modelnet10:train, chosen on validation)")
    p.add_argument("--alpha", type=float, default=None,
                   help="ridge strength relative to the features' scale (default 0.01, chosen on ModelNet10 val)")
    p.add_argument("--limit", type=int, default=None, help="fit on a seeded subset of N clouds")
    p.add_argument("--seed", type=int, default=0, help="seed of the subset and of each cloud's point subsample")
    p.add_argument("--refit", action="store_true",
                   help="the student is already aligned (e.g. a shipped one): fit the map again from its unaligned form")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out (never the input student)")


def main(args):
    if args.threads is not None:
        torch.set_num_threads(positive_int(args.threads, "--threads"))
    out = check_suffix(args.out, ".safetensors")
    if args.limit is not None:
        positive_int(args.limit, "--limit")
    positive_int(args.batch_size, "--batch-size")
    for path in (out, out.with_suffix(".json")):
        check_output(path, overwrite=args.overwrite, inputs=(args.student, args.teacher))
    alpha = DEFAULT_ALPHA if args.alpha is None else args.alpha
    data = args.data or ["modelnet10:train", "kicadpart:train"]
    start = time.time()
    student, teacher = resolve_model(args.student), resolve_model(args.teacher)
    aligned, report = align_features(student, teacher, data=data, alpha=alpha, seed=args.seed, limit=args.limit,
                                     batch_size=args.batch_size, refit=args.refit)
    report.update(student=str(args.student), teacher=str(args.teacher), wall_time_s=round(time.time() - start, 1),
                  threads=torch.get_num_threads())
    # the source's provenance kept (its distillation's command chain), this step appended
    info = dict(getattr(student, "checkpoint_info", None) or {})
    info.pop("runtime_outlier_filter", None)
    info["command_chain"] = list(info.get("command_chain") or []) + [
        {"command": "align", "wall_time_s": report["wall_time_s"], "clouds": report["clouds"], "alpha": alpha}]
    info["feature_align"] = report
    save_checkpoint(aligned, out, info=info)
    write_json(out.with_suffix(".json"), report)
    print(f"feature MSE to the teacher on the fitting clouds: {report['feature_mse_before']:.5f} -> "
          f"{report['feature_mse_after']:.5f} ({report['clouds']} clouds, alpha {alpha:g}, "
          f"{report['wall_time_s']:.0f} s)")
    print(f"wrote {out} and {out.with_suffix('.json')}")
    return 0
