"""`foundry compare`: teacher vs students vs baselines, one table, retention and a Pareto plot."""
from __future__ import annotations

import argparse
from pathlib import Path

import torch

from ..eval.compare import run_compare
from ..eval.protocols import NAMES
from ..report.pages import write_compare_page
from ..validation import FoundryInputError
from .eval import overrides_from_args

HELP = "compare a teacher with students and baselines under the same protocols (table + Pareto plot)"

EPILOG = """Each model is evaluated into OUT/evals/<label>/ (resumable; finished seeds are reused), with the
teacher as the reference. A random-initialised network of the teacher's shape (fixed seed) is
added as the floor of the 'gain share' retention. Name a model with LABEL=MODEL; set its group
(teacher / Foundry student / FMD baseline / KD expert / ToMe / other) with --group LABEL=GROUP
when it cannot be inferred from the checkpoint.

example:
  foundry compare --teacher teacher-small --models s16=runs/distill/s16/student.safetensors \\
      tome=runs/tome.safetensors --protocol svm --protocol fewshot --quick --out runs/compare
"""


def register(p):
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.epilog = EPILOG
    p.add_argument("--teacher", required=True, help="the teacher (shipped name or checkpoint)")
    p.add_argument("--models", nargs="+", default=[], metavar="[LABEL=]MODEL", help="models to compare")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--protocol", "-p", action="append", choices=NAMES, default=None,
                   help="protocols (default: svm, fewshot, partseg, fidelity)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--data", default=None, help="data for the classification protocols (see foundry eval)")
    p.add_argument("--seg-data", default=None, help="data for partseg")
    p.add_argument("--quick", action="store_true", help="small subsets and few epochs (CPU demo settings)")
    p.add_argument("--split", choices=["test", "val"], default="test",
                   help="test: fit on train+val, score test (the report); val: fit on train, score the validation "
                        "split (for every choice)")
    p.add_argument("--set", action="append", default=[], metavar="PROTOCOL.KEY=VALUE")
    p.add_argument("--group", action="append", default=[], metavar="LABEL=GROUP", help="set a model's group")
    p.add_argument("--reuse", action="append", default=[], metavar="LABEL=DIR",
                   help="use an earlier `foundry eval --out DIR` of that model (finished seeds are reused)")
    p.add_argument("--pair-with", default=None, metavar="LABEL",
                   help="also pair every model with this one (e.g. the best student), besides the teacher")
    p.add_argument("--no-random", action="store_true", help="leave out the random-init floor (no gain share)")
    p.add_argument("--random-seed", type=int, default=0, help="seed of the random-init network (default 0)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--overwrite", action="store_true")


def _split_label(item):
    """LABEL=MODEL, or a model alone (which may carry a run-time budget, MODEL@r=N)."""
    if "=" in item:
        label, spec = item.split("=", 1)
        if label and spec and "@" not in label:
            return label, spec
    return None, item


def main(args):
    if args.threads:
        torch.set_num_threads(args.threads)
    args.protocol = args.protocol or ["svm", "fewshot", "partseg", "fidelity"]
    labels, specs = {}, []
    for item in args.models:
        label, spec = _split_label(item)
        specs.append(spec)
        if label:
            labels[spec] = label
    tlabel, teacher = _split_label(args.teacher)
    if tlabel:
        labels[teacher] = tlabel
    groups = _label_pairs(args.group, "--group", "GROUP")
    eval_dirs = _label_pairs(args.reuse, "--reuse", "DIR")
    res = run_compare(teacher, specs, args.out, protocols=args.protocol, seeds=args.seeds, quick=args.quick,
                      split=args.split,
                      overrides=overrides_from_args(args), device=args.device, batch_size=args.batch_size,
                      labels=labels, groups=groups, random_seed=args.random_seed, include_random=not args.no_random,
                      overwrite=args.overwrite, eval_dirs=eval_dirs, pair_with=args.pair_with)
    page = write_compare_page(args.out, res)
    print((Path(args.out) / "compare.md").read_text())
    print(f"wrote {Path(args.out) / 'compare.json'}, compare.md, pareto.png" + (", report.html" if page else "")
          + f" ({res['wall_time_s']:.1f} s)")
    return 0


def _label_pairs(items, flag: str, what: str) -> dict:
    """["LABEL=VALUE", ...] -> {LABEL: VALUE}, refusing items without a label. Split at the last '=':
    the label of an unlabelled run-time spec is the spec itself (`MODEL@outliers=1`), while the value
    (a folder, a group name) holds no '='."""
    out = {}
    for item in items:
        label, _, value = item.rpartition("=")
        if not label or not value:
            raise FoundryInputError(f"{flag} expects LABEL={what}, got {item!r}")
        out[label] = value
    return out
