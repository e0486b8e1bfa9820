"""Copy a finished run's model into the package as a compact shipped checkpoint.

    python scripts/ship_weights.py runs/ts2/run/encoder.safetensors teacher-small [--set key=value ...]
    python scripts/ship_weights.py runs/study/reship/foundry-vits-s16-gate/student.safetensors foundry-vits-s16-gate --budget 64
    python scripts/ship_weights.py runs/study/reship/foundry-vits-s16-robust-seed1-fp32/student.safetensors foundry-vits-s16-robust --outliers 1

Writes src/foundry/assets/weights/<name>.safetensors in float16 with the run's provenance
(the checkpoint's own info, plus the run's summary.json when it sits beside it, plus --set
entries), then reloads it and prints how far fp16 moved the features on random clouds. The model
card (<name>.md) is written by hand from the measured results.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from foundry.models.checkpoint import load_checkpoint, save_checkpoint

WEIGHTS = Path(__file__).resolve().parents[1] / "src" / "foundry" / "assets" / "weights"
SUMMARY_KEYS = ("epochs", "steps", "total_steps", "complete", "wall_seconds", "train_seconds",
                "throughput_clouds_per_s", "device", "precision", "final_loss", "command", "clouds", "data")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint", help="a Foundry checkpoint written by foundry pretrain / distill")
    p.add_argument("name", help="shipped name (file stem under assets/weights)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="extra provenance entries; VALUE @FILE reads a JSON file (e.g. command_chain=@chain.json)")
    p.add_argument("--budget", type=int, default=None,
                   help="a gated student's default merge budget r in the shipped file (its config's merge_count; "
                        "MODEL@r=N still sets another at run time)")
    p.add_argument("--outliers", type=int, choices=(0, 1), default=None,
                   help="the grouping's outlier filter in the shipped file's config (1: on, every shipped model's "
                        "default; a run trained under FOUNDRY_OUTLIER_FILTER=0 records it off)")
    args = p.parse_args()

    src = Path(args.checkpoint)
    model = load_checkpoint(src)
    from foundry.api import with_budget

    if args.budget is not None:
        model = with_budget(model, "r", str(args.budget))
    if args.outliers is not None:
        model = with_budget(model, "outliers", str(args.outliers))
        model.config = model.config.replace(outlier_filter=bool(args.outliers))
    info = dict(getattr(model, "checkpoint_info", {}) or {})
    info.pop("runtime_outlier_filter", None)
    summary_path = src.parent / "summary.json"
    if summary_path.exists():
        summary = json.loads(summary_path.read_text())
        info.update({k: summary[k] for k in SUMMARY_KEYS if k in summary})
    for item in args.set:
        key, _, value = item.partition("=")
        info[key] = json.loads(Path(value[1:]).read_text()) if value.startswith("@") else value
    if args.budget is not None:
        info.pop("runtime_budget", None)
        info["default_merge_budget"] = args.budget
    info["name"] = args.name
    info["dtype"] = "float16 (trained with fp32 master weights)"
    dst = WEIGHTS / f"{args.name}.safetensors"
    save_checkpoint(model, dst, info=info, dtype=torch.float16)

    shipped = load_checkpoint(dst)
    x = torch.rand(4, 1024, 3, generator=torch.Generator().manual_seed(0)) * 2 - 1
    with torch.no_grad():
        a, b = model.forward_features(x), shipped.forward_features(x)
    print(f"wrote {dst} ({dst.stat().st_size / 1e6:.1f} MB); fp16 vs fp32 features: max |diff| "
          f"{float((a - b).abs().max()):.2e}, relative {float((a - b).norm() / a.norm()):.2e}")
    print(json.dumps(info, indent=1, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
