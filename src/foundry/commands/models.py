"""`foundry models`: list the shipped models, or convert an official checkpoint.

    foundry models                       # shipped models with their model-card one-liners
    foundry models convert SRC DST       # official Point-MAE/BERT/JEPA .pth -> Foundry .safetensors
"""
from __future__ import annotations

import json

HELP = "list shipped models (with their model cards' one-liners), or convert an official checkpoint"


def register(p):
    p.add_argument("--json", action="store_true", help="print the list as JSON")
    sub = p.add_subparsers(dest="models_cmd", metavar="SUBCOMMAND")
    c = sub.add_parser("convert", help="convert an official Point-MAE / Point-BERT / Point-JEPA checkpoint "
                                       "into a Foundry .safetensors file")
    c.add_argument("src", help="official checkpoint (.pth / .pt / .ckpt / .bin)")
    c.add_argument("dst", help="output .safetensors path")
    c.add_argument("--heads", type=int, default=None, help="attention heads (not stored in the weights; "
                                                           "default width/64, as the official ViT-S)")
    c.add_argument("--num-groups", type=int, default=None, help="patches per cloud (default 64)")
    c.add_argument("--group-size", type=int, default=None, help="points per patch (default 32)")
    c.add_argument("--fp16", action="store_true", help="store the weights in fp16 (half the size)")


def one_liner(card: str | None) -> str:
    """First prose line of a model card (headings, tables and blank lines skipped)."""
    if not card:
        return "(no model card)"
    for line in card.splitlines():
        s = line.strip()
        if s and not s.startswith(("#", "|", "---", "```")):
            return s.lstrip("> ").strip()
    return "(no summary line)"


def main(args):
    if getattr(args, "models_cmd", None) == "convert":
        import torch

        from ..models.official import convert_official

        overrides = {k: v for k, v in (("heads", args.heads), ("num_groups", args.num_groups),
                                       ("group_size", args.group_size)) if v is not None}
        out = convert_official(args.src, args.dst, dtype=torch.float16 if args.fp16 else None, **overrides)
        from ..models.checkpoint import read_header

        meta = read_header(out)
        print(f"wrote {out}: layout {meta['info'].get('layout')}, width {meta['config']['width']}, "
              f"depth {meta['config']['depth']}, heads {meta['config']['heads']}; "
              f"{meta['info'].get('ignored_tensors', 0)} non-encoder tensors ignored")
        return 0

    from ..hub import model_card, shipped_models

    rows = []
    for name, path in shipped_models().items():
        rows.append({"name": name, "path": str(path), "size_mib": round(path.stat().st_size / 2**20, 1),
                     "summary": one_liner(model_card(name))})
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    if not rows:
        print("no shipped models installed")
        return 0
    width = max(len(r["name"]) for r in rows)
    for r in rows:
        print(f"{r['name']:{width}s}  {r['size_mib']:6.1f} MiB  {r['summary']}")
    return 0
