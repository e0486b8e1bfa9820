"""`foundry eval`: run evaluation protocols on one model, resumably, with mean +- std over seeds."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from ..eval.protocols import NAMES, protocol_settings
from ..eval.runner import parse_overrides, run_eval

HELP = "evaluate a model (svm, probe, finetune, fewshot, partseg, fidelity) over seeds; resumable"

EPILOG = """protocols:
  svm       linear SVM on frozen global features (C by CV on train); default ModelNet10
  probe     MLP probe on frozen global features, final epoch
  finetune  full fine-tuning for classification, final epoch, voting off
  fewshot   N-way K-shot folds on frozen features (linear SVM), paired with --reference
  partseg   frozen backbone + point head on multi-layer tokens; class / instance mIoU (KiCadPart)
  fidelity  token SmoothL1 / cosine and linear CKA against --reference (the teacher)

examples:
  foundry eval teacher-small --protocol svm --protocol fewshot --reference teacher-small --quick --out runs/eval/t
  foundry eval student.safetensors --protocol svm --data /data/modelnet40_ply_hdf5_2048 --out runs/eval/s40
  foundry eval tiny --protocol probe --set probe.epochs=20 --seeds 0 1 2 --out runs/eval/tiny
"""


def register(p):
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.epilog = EPILOG
    p.add_argument("model", help="shipped name, checkpoint (.safetensors), official .pth, or a preset (random init)")
    p.add_argument("--protocol", "-p", action="append", choices=NAMES, required=True,
                   help="protocol to run (repeat for several)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="evaluation seeds (default 0 1 2)")
    p.add_argument("--out", required=True, help="output folder (results.json, results.md, per-seed runs)")
    p.add_argument("--reference", default=None,
                   help="reference model (the teacher): fidelity compares with it, fewshot pairs folds with it")
    p.add_argument("--data", default=None,
                   help="data for svm/probe/finetune/fewshot/fidelity: 'modelnet10', 'synthetic' or a folder "
                        "(ModelNet40 h5, ScanObjectNN, ...)")
    p.add_argument("--seg-data", default=None, help="data for partseg: 'kicadpart' or a ShapeNetPart folder")
    p.add_argument("--quick", action="store_true", help="small subsets and few epochs (CPU demo settings)")
    p.add_argument("--split", choices=["test", "val"], default="test",
                   help="test: fit on train+val, score the test split (the report); val: fit on train, score the "
                        "held-out validation split (make every choice here, never on test)")
    p.add_argument("--set", action="append", default=[], metavar="PROTOCOL.KEY=VALUE",
                   help="override a protocol setting, JSON value (e.g. probe.epochs=20, fewshot.settings=[[5,10]])")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ... (default cpu)")
    p.add_argument("--batch-size", type=int, default=32, help="clouds per forward pass for frozen features")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--overwrite", action="store_true", help="recompute finished (protocol, seed) results")
    p.add_argument("--cache-dir", default=None,
                   help="where frozen features are kept (default OUT/cache); give a `foundry compare` run's "
                        "OUT/cache with --out OUT/evals/<label> to run part of that comparison in another process")
    p.add_argument("--dry-run", action="store_true", help="print the settings each protocol would use, and stop")


def overrides_from_args(args) -> dict:
    over = parse_overrides(args.set)
    cls_protocols = ("svm", "probe", "finetune", "fewshot", "fidelity")
    for proto in args.protocol:
        if args.data and proto in cls_protocols + ("robustness",):
            over.setdefault(proto, {}).setdefault("data", args.data)
        if args.seg_data and proto in ("partseg", "robustness"):
            over.setdefault(proto, {}).setdefault("data" if proto == "partseg" else "seg_data", args.seg_data)
    return over


def main(args):
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.dry_run:
        over = overrides_from_args(args)
        for proto in dict.fromkeys(args.protocol):
            print(f"{proto}: {json.dumps(protocol_settings(proto, args.quick, over.get(proto), args.split))}")
        return 0
    res = run_eval(args.model, args.protocol, args.seeds, args.out, quick=args.quick, split=args.split,
                   overrides=overrides_from_args(args), reference=args.reference, device=args.device,
                   batch_size=args.batch_size, overwrite=args.overwrite, progress=sys.stderr.isatty(),
                   cache_dir=args.cache_dir)
    print((Path(args.out) / "results.md").read_text())
    print(f"results: {Path(args.out) / 'results.json'}  ({res['wall_time_s']:.1f} s)")
    return 0
