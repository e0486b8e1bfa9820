"""`foundry info`: what a model is, how big, and how much it costs."""
from __future__ import annotations

import json

from ..api import resolve_model
from ..bench.flops import model_macs
from ..hub import model_card
from ..io import config_dict

HELP = "print a model's config, parameter count and MACs at its input size"


def register(p):
    p.add_argument("model", help="shipped name, preset name, or checkpoint path")
    p.add_argument("--points", type=int, default=None, help="input size for MACs (default: the model's own)")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")


def main(args):
    model = resolve_model(args.model)
    cfg = config_dict(model)
    n_points = args.points or cfg.get("num_points", 1024)
    params = sum(p.numel() for p in model.parameters())
    macs = model_macs(model, n_points)
    out = {"model": str(args.model), "kind": model.kind, "parameters": params,
           "macs": macs, "gmacs": macs / 1e9, "points": n_points, "batch": 1, "config": cfg,
           "info": getattr(model, "checkpoint_info", {})}
    if args.json:
        print(json.dumps(out, indent=2))
        return 0
    print(f"model       {args.model} ({out['kind']})")
    print(f"parameters  {params:,} ({params / 1e6:.2f} M)")
    print(f"MACs        {macs / 1e9:.3f} G per cloud ({macs * 2 / 1e9:.3f} GFLOPs) at {n_points} points, batch 1")
    print("config")
    for k, v in cfg.items():
        print(f"  {k:18s} {v}")
    if out["info"]:
        print("provenance")
        for k, v in out["info"].items():
            print(f"  {k:18s} {v}")
    card = model_card(str(args.model))
    if card:
        print("\n" + card)
    return 0
