"""`foundry pretrain`: self-supervised pretraining of a backbone (Point-MAE or Point-JEPA)."""
from __future__ import annotations

import shlex
import sys

from ..train.pretrain import PretrainConfig, pretrain

HELP = "pretrain a backbone (teacher) on unlabelled point clouds with Point-MAE or Point-JEPA"

EPILOG = """examples:
  foundry pretrain --preset small --objective mae --data modelnet10:train --data kicadpart:train \\
      --epochs 30 --out runs/teacher-small
  foundry pretrain --out runs/teacher-small --resume          # continue after an interruption
  torchrun --nproc-per-node 4 -m foundry.cli pretrain --preset vit-s --data /data/shapenet55 ...
Ctrl-C (or SIGTERM) stops after the current step and saves the state; --resume continues exactly."""


def register(p):
    p.epilog = EPILOG
    import argparse

    p.formatter_class = argparse.RawDescriptionHelpFormatter
    g = p.add_argument_group("model and objective")
    g.add_argument("--preset", default="small", help="backbone preset: vit-s, small, tiny (default: small)")
    g.add_argument("--objective", choices=["mae", "jepa"], default="mae", help="pretraining objective (default: mae)")
    g.add_argument("--mask-ratio", type=float, default=0.6, help="mae: fraction of patches masked (default 0.6)")
    g.add_argument("--decoder-depth", type=int, default=4, help="mae: decoder blocks (default 4)")
    g.add_argument("--predictor-depth", type=int, default=6, help="jepa: predictor blocks (default 6)")
    g.add_argument("--predictor-width", type=int, default=None, help="jepa: predictor width (default: half the encoder's)")
    g.add_argument("--num-targets", type=int, default=4, help="jepa: target blocks (default 4)")
    g.add_argument("--ema", type=float, nargs=2, default=None, metavar=("START", "END"),
                   help="jepa: target-encoder EMA momentum, linear from START to END over the run "
                        "(default Point-JEPA's 0.9995 0.99999)")
    g.add_argument("--context-ratio", type=float, nargs=2, default=None, metavar=("LO", "HI"),
                   help="jepa: a contiguous context run of this share of the non-target patches, drawn per batch "
                        "(Point-JEPA's 0.4 0.75; default: every non-target patch)")
    g = p.add_argument_group("data")
    g.add_argument("--data", action="append", default=None, metavar="SPEC",
                   help="repeatable: modelnet10:train, kicadpart:train, synthetic:N, a folder, or folder:split "
                        "(default: modelnet10:train + kicadpart:train)")
    g.add_argument("--no-outlier-filter", action="store_true",
                   help="group without the outlier filter (on by default since 2026-12-05; off to resume older runs)")
    g.add_argument("--points", type=int, default=None, help="points per cloud (default: the preset's, 1024)")
    g.add_argument("--num-workers", type=int, default=0, help="DataLoader workers (default 0)")
    g = p.add_argument_group("optimisation")
    g.add_argument("--epochs", type=int, default=30)
    g.add_argument("--batch-size", type=int, default=32, help="global batch size (default 32)")
    g.add_argument("--lr", type=float, default=5e-4, help="peak AdamW learning rate (default 5e-4)")
    g.add_argument("--weight-decay", type=float, default=0.05)
    g.add_argument("--warmup-epochs", type=float, default=1.0)
    g.add_argument("--grad-clip", type=float, default=None)
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--max-steps", type=int, default=None,
                   help="stop after this many steps in all, keeping the schedule of --epochs (quick runs)")
    g.add_argument("--max-minutes", type=float, default=None,
                   help="stop after this much wall time (state saved, encoder written; --resume continues)")
    g = p.add_argument_group("run")
    g.add_argument("--out", default="runs/pretrain", help="run folder (default runs/pretrain)")
    g.add_argument("--resume", nargs="?", const="auto", default=None, metavar="STATE",
                   help="continue the run in --out (or from the given training_state.pt / run folder)")
    g.add_argument("--overwrite", action="store_true", help="start again even if --out holds a run")
    g.add_argument("--devices", default="auto", help="devices per node (default auto)")
    g.add_argument("--accelerator", default="auto", help="auto, cpu, cuda, ... (default auto)")
    g.add_argument("--strategy", default="auto", help="Fabric strategy, e.g. ddp (default auto)")
    g.add_argument("--precision", default=None, help="bf16-mixed (CUDA default), 32-true (CPU default), 16-mixed")
    g.add_argument("--threads", type=int, default=None, help="CPU threads for torch")
    g.add_argument("--val-every", type=int, default=0,
                   help="every N epochs, linear-SVM accuracy ModelNet10 train->test (logged only; 0 = off)")
    g.add_argument("--val-data", default="modelnet10", help="labelled data of the SVM validation (default modelnet10)")
    g.add_argument("--log-every", type=int, default=10, help="steps between metrics.csv rows (default 10)")
    g.add_argument("--no-progress", action="store_true", help="no tqdm progress bar")


def _devices(value):
    try:
        return int(value)
    except (TypeError, ValueError):
        return value


def main(args):
    cfg = PretrainConfig(
        preset=args.preset, objective=args.objective,
        data=args.data or ["modelnet10:train", "kicadpart:train"],
        epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, weight_decay=args.weight_decay,
        warmup_epochs=args.warmup_epochs, grad_clip=args.grad_clip, points=args.points, seed=args.seed,
        **({"outlier_filter": False} if args.no_outlier_filter else {}),
        mask_ratio=args.mask_ratio, decoder_depth=args.decoder_depth, predictor_depth=args.predictor_depth,
        predictor_width=args.predictor_width, num_targets=args.num_targets,
        **({"ema": tuple(args.ema)} if args.ema else {}),
        **({"context_ratio": tuple(args.context_ratio)} if args.context_ratio else {}),
        out=args.out, resume=args.resume, overwrite=args.overwrite, devices=_devices(args.devices),
        precision=args.precision, strategy=args.strategy, accelerator=args.accelerator,
        num_workers=args.num_workers, val_every=args.val_every, val_data=args.val_data, max_steps=args.max_steps, max_minutes=args.max_minutes, log_every=args.log_every,
        threads=args.threads, progress=not args.no_progress,
        command="foundry " + " ".join(shlex.quote(a) for a in sys.argv[1:]),
    )
    pretrain(cfg)
    return 0
