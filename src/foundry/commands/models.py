"""`foundry models`: list the shipped models, or convert an official checkpoint.

    foundry models                       # shipped and locally cached models with their cards' one-liners
    foundry models --dir runs            # ... and the pretrained-model folders found under runs/
    foundry models save MODEL FOLDER     # any model -> a Hub-layout folder (config.json, model.safetensors, README.md)
    foundry models pull OWNER/NAME       # download from the Hugging Face Hub into the cache (needs huggingface_hub)
    foundry models push FOLDER OWNER/NAME
    foundry models convert SRC DST       # official Point-MAE/BERT/JEPA .pth -> Foundry .safetensors
    foundry models tome TEACHER DST --r 32            # training-free ToMe baseline of a teacher
    foundry models tome TEACHER DST --match foundry-vits-s4   # r chosen to match a model's MACs
"""
from __future__ import annotations

import json
from pathlib import Path

import torch

from .. import hub
from ..api import load, save, save_pretrained
from ..bench.flops import model_macs, tome_r_for_macs
from ..hub import cache_dir, cached_models, model_card, shipped_models
from ..models.backbone import PointTransformer
from ..models.baselines import ToMeTeacher
from ..models.checkpoint import read_header
from ..models.official import convert_official
from ..models.pretrained import CARD_FILE, CONFIG_FILE, WEIGHTS_FILE
from ..validation import FoundryInputError, check_output

HELP = ("list shipped and cached models (with their model cards' one-liners); save, pull or push Hub-layout "
        "folders; convert an official checkpoint")


def register(p):
    p.add_argument("--json", action="store_true", help="print the list as JSON")
    p.add_argument("--dir", action="append", default=[], metavar="FOLDER",
                   help="also list the pretrained-model folders found under FOLDER (repeatable)")
    sub = p.add_subparsers(dest="models_cmd", metavar="SUBCOMMAND")
    sv = sub.add_parser("save", help="write a model as a Hub-layout folder: config.json, model.safetensors, "
                                     "README.md model card")
    sv.add_argument("model", help="shipped name, checkpoint, folder or official file")
    sv.add_argument("folder", help="output folder")
    sv.add_argument("--name", default=None, help="model name in the card (default: the folder's name)")
    sv.add_argument("--license", default=None, help="licence identifier for the card's metadata, e.g. apache-2.0")
    sv.add_argument("--fp16", action="store_true", help="store the weights in fp16 (half the size)")
    pl = sub.add_parser("pull", help="download a model folder from the Hugging Face Hub into the local cache")
    pl.add_argument("repo_id", help="OWNER/NAME on the Hub")
    pl.add_argument("--revision", default=None)
    pl.add_argument("--force", action="store_true", help="download again even when cached")
    ps = sub.add_parser("push", help="upload a model folder (foundry models save) to the Hugging Face Hub")
    ps.add_argument("folder")
    ps.add_argument("repo_id", help="OWNER/NAME on the Hub (created when absent)")
    ps.add_argument("--private", action="store_true")
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
        check_output(args.dst, overwrite=args.overwrite, inputs=(args.src,))
        overrides = {k: v for k, v in (("heads", args.heads), ("num_groups", args.num_groups),
                                       ("group_size", args.group_size)) if v is not None}
        out = convert_official(args.src, args.dst, dtype=torch.float16 if args.fp16 else None, **overrides)
        meta = read_header(out)
        print(f"wrote {out}: layout {meta['info'].get('layout')}, width {meta['config']['width']}, "
              f"depth {meta['config']['depth']}, heads {meta['config']['heads']}; "
              f"{meta['info'].get('ignored_tensors', 0)} non-encoder tensors ignored")
        return 0

    if getattr(args, "models_cmd", None) == "tome":
        return _tome(args)

    if getattr(args, "models_cmd", None) in ("save", "pull", "push"):
        return _share(args)

    rows = list_models(args.dir)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    if not rows:
        print("no models installed, cached or found")
        return 0
    width = max(len(r["name"]) for r in rows)
    for r in rows:
        print(f"{r['name']:{width}s}  {r['source']:7s}  {r['size_mib']:6.1f} MiB  {r['summary']}")
    print(f"\n(cache: {cache_dir()}; load any of these with foundry.load(NAME))")
    return 0


def _card_summary(card_path) -> str:
    """One-liner of a card, its YAML front matter skipped."""
    text = Path(card_path).read_text() if Path(card_path).exists() else None
    if text and text.startswith("---"):
        text = text.split("\n---", 1)[-1]
    return one_liner(text)


def list_models(dirs=()) -> list[dict]:
    """Shipped models, then the local cache, then pretrained-model folders under `dirs`."""
    def size(path):
        return round(path.stat().st_size / 2**20, 1) if path.exists() else 0.0

    rows = [{"name": name, "source": "shipped", "path": str(path), "size_mib": size(path),
             "summary": one_liner(model_card(name))} for name, path in shipped_models().items()]
    found = [(name, "cached", folder) for name, folder in cached_models().items()]
    for d in dirs:
        found += [(str(c.parent), "local", c.parent) for c in sorted(Path(d).rglob(CONFIG_FILE))
                  if (c.parent / WEIGHTS_FILE).exists()]
    rows += [{"name": name, "source": source, "path": str(folder), "size_mib": size(folder / WEIGHTS_FILE),
              "summary": _card_summary(folder / CARD_FILE)} for name, source, folder in found]
    return rows


def _share(args) -> int:
    if args.models_cmd == "save":
        folder = save_pretrained(load(args.model), args.folder, name=args.name, license=args.license,
                                 dtype=torch.float16 if args.fp16 else None)
        print(f"wrote {folder}: config.json, model.safetensors, README.md (push it with "
              f"foundry models push {folder} OWNER/NAME)")
    elif args.models_cmd == "pull":
        folder = hub.pull(args.repo_id, revision=args.revision, force=args.force)
        print(f"{args.repo_id} is in {folder}; foundry.load('hf:{args.repo_id}') loads it offline from now on")
    else:
        name = hub.push(args.folder, args.repo_id, private=args.private)
        print(f"pushed {args.folder} as {args.repo_id}; others load it with foundry.load('{name}')")
    return 0


def _tome(args) -> int:
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
