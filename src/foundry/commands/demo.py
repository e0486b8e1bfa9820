"""`foundry demo`: one command that shows Foundry working end to end."""
from __future__ import annotations

from ..demo import run_demo

HELP = "distil, evaluate and benchmark a student on the bundled real data; writes a report (~15 min on 2 CPU cores)"


def register(p):
    p.add_argument("--out", default="foundry-demo", help="report folder (default: ./foundry-demo)")
    p.add_argument("--teacher", default="teacher-vits", help="teacher (shipped name or checkpoint)")
    p.add_argument("--skip-train", action="store_true", help="use the shipped student instead of distilling one")
    p.add_argument("--student", default=None, help="student to use when skipping training (default foundry-vits-s16)")
    p.add_argument("--preset", default="foundry-s16", help="student preset to distil (default foundry-s16)")
    p.add_argument("--epochs", type=int, default=6, help="distillation epochs of the short run")
    p.add_argument("--limit", type=int, default=800, help="clouds used for the short distillation run")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")


def main(args):
    student = None
    if args.skip_train or args.student:
        student = args.student or "foundry-vits-s16"
    run_demo(args.out, teacher=args.teacher, student=student, preset=args.preset, epochs=args.epochs,
             limit=args.limit, seeds=tuple(args.seeds), threads=args.threads)
    return 0
