"""`foundry models`: list the shipped models, or convert an official checkpoint.

    foundry models                       # shipped models with their model-card one-liners
    foundry models convert SRC DST       # official Point-MAE/BERT/JEPA .pth -> Foundry .safetensors
    foundry models tome TEACHER DST --r 32            # training-free ToMe baseline of a teacher
    foundry models tome TEACHER DST --match foundry-vits-s4   # r chosen to match a model's MACs
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
    c.add_argument("--overwrite", action="store_true", help="replace DST if it exists (never the input)")
    t = sub.add_parser("tome", help="wrap a teacher with training-free ToMe token merging (a baseline for compare)")
    t.add_argument("teacher", help="the teacher backbone (shipped name or checkpoint)")
    t.add_argument("dst", help="output .safetensors path")
    how = t.add_mutually_exclusive_group(required=True)
    how.add_argument("--r", type=int, help="tokens merged after each block")
    how.add_argument("--match", metavar="MODEL", help="the smallest r whose MACs are at most this model's")
    t.add_argument("--fp16", action="store_true", help="store the weights in fp16 (half the size)")
    t.add_argument("--overwrite", action="store_true", help="replace DST if it exists (never an input)")


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
        from ..validation import check_output

        check_output(args.dst, overwrite=args.overwrite, inputs=(args.src,))
        overrides = {k: v for k, v in (("heads", args.heads), ("num_groups", args.num_groups),
                                       ("group_size", args.group_size)) if v is not None}
        out = convert_official(args.src, args.dst, dtype=torch.float16 if args.fp16 else None, **overrides)
        from ..models.checkpoint import read_header

        meta = read_header(out)
        print(f"wrote {out}: layout {meta['info'].get('layout')}, width {meta['config']['width']}, "
              f"depth {meta['config']['depth']}, heads {meta['config']['heads']}; "
              f"{meta['info'].get('ignored_tensors', 0)} non-encoder tensors ignored")
        return 0

    if getattr(args, "models_cmd", None) == "tome":
        return _tome(args)

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


def _tome(args) -> int:
    import torch

    from ..api import load, save
    from ..bench.flops import model_macs, tome_r_for_macs
    from ..models.backbone import PointTransformer
    from ..models.baselines import ToMeTeacher
    from ..validation import FoundryInputError, check_output

    check_output(args.dst, overwrite=args.overwrite, inputs=(args.teacher, args.match))
    teacher = load(args.teacher)
    if not isinstance(teacher, PointTransformer):
        raise FoundryInputError(f"{args.teacher} is a '{teacher.kind}' model; "
                                "ToMe wraps a teacher backbone (kind 'backbone')")
    if args.match:
        r, _ = tome_r_for_macs(teacher, model_macs(load(args.match)), args.teacher)
    elif not 0 <= args.r < teacher.config.num_groups:
        raise FoundryInputError(f"--r must be in [0, {teacher.config.num_groups - 1}] (tokens per block), got {args.r}")
    else:
        r = args.r
    model = ToMeTeacher.wrap(teacher, r, args.teacher)
    macs = model_macs(model)
    info = {"role": "training-free ToMe baseline", "r": r, "teacher": args.teacher,
            **({"matched_to": args.match} if args.match else {})}
    save(model, args.dst, info=info, dtype=torch.float16 if args.fp16 else None)
    print(f"wrote {args.dst}: ToMe r={r} on {args.teacher}, {macs / 1e9:.3f} GMACs "
          f"(teacher {model_macs(teacher) / 1e9:.3f})")
    return 0
