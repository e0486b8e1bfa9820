"""Driven by test_ddp.py: `foundry pretrain` and `foundry distill` on 2 CPU processes (gloo DDP).

    python tests/ddp_worker.py OUT

Lightning Fabric's launcher starts this script a second time as rank 1, so both ranks run the
same sequence of CLI calls (`foundry.cli.main`, the code path of the `foundry` command):
a full run, and a run interrupted after its first epoch (or step limit) then resumed, for each
trainer. Each rank records, for its own eyes only, what it wrote under OUT, how often it built a
token cache, and the fingerprint of the weights it ended with, into OUT/rank<r>.json (written
after the runs, outside the record).
"""
from __future__ import annotations

import builtins
import json
import os
import sys
from pathlib import Path

import torch

torch.set_num_threads(1)

import foundry  # noqa: E402
from foundry import io  # noqa: E402
from foundry.cli import main as cli  # noqa: E402
from foundry.train import common, token_cache  # noqa: E402
from foundry.train import distill as distill_mod  # noqa: E402

OUT = Path(sys.argv[1]).resolve()
DDP = ["--devices", "2", "--strategy", "ddp"]
record = {"writes": [], "builds": [], "weights": {}, "rc": {}}


def _watch_writes():
    """Note every file this process opens for writing, or renames into place, under OUT."""
    real_open, real_replace = builtins.open, os.replace

    def note(path):
        p = Path(os.fspath(path)).resolve()
        if OUT in p.parents:
            record["writes"].append(str(p.relative_to(OUT)))

    def open_(file, mode="r", *a, **k):
        if isinstance(file, (str, os.PathLike)) and any(c in mode for c in "wax+"):
            note(file)
        return real_open(file, mode, *a, **k)

    def replace(src, dst, *a, **k):
        note(dst)
        return real_replace(src, dst, *a, **k)

    builtins.open, os.replace = open_, replace


def _watch_builds():
    real = token_cache.build_token_cache

    def build(folder, *a, **k):
        record["builds"].append(str(Path(folder).resolve().relative_to(OUT)))
        return real(folder, *a, **k)

    token_cache.build_token_cache = build  # load_or_build looks it up at call time


def _capture(module, name, from_result):
    """Wrap module.name so that the model it builds (from_result) or trains (its 2nd argument) is kept
    in `models[-1]`."""
    real, models = getattr(module, name), []

    def wrapped(*a, **k):
        if not from_result:  # the model is an argument: kept even when the run is interrupted
            models.append(a[1])
            return real(*a, **k)
        out = real(*a, **k)
        models.append(out)
        return out

    setattr(module, name, wrapped)
    return models


class Interrupt:
    """Stop a distillation run (as a kill would) right after its first epoch's state is saved."""

    def __init__(self):
        self.armed = False
        self.real = common.save_training_state
        common.save_training_state = self

    def __call__(self, *a, **k):
        self.real(*a, **k)
        if self.armed:
            # a kill stops every rank after the state is on disk: no rank resumes before rank 0 wrote it
            if torch.distributed.is_available() and torch.distributed.is_initialized():
                torch.distributed.barrier()
            self.armed = False
            raise KeyboardInterrupt


def run(name, argv, models):
    record["rc"][name] = cli(argv)
    record["weights"][name] = io.weights_fingerprint(models[-1])


def main():
    teacher = OUT / "teacher.safetensors"  # written by the test before the launch
    encoders = _capture(foundry.api, "create_model", True)
    students = _capture(distill_mod, "distill", False)
    interrupt = Interrupt()
    _watch_builds()
    _watch_writes()

    pre = ["pretrain", "--preset", "tiny", "--data", "synthetic:8", "--epochs", "2", "--batch-size", "4",
           "--accelerator", "cpu", "--no-progress", "--log-every", "1", *DDP]
    run("pretrain_full", pre + ["--out", str(OUT / "pretrain_full")], encoders)
    run("pretrain_part", pre + ["--out", str(OUT / "pretrain_resumed"), "--max-steps", "2"], encoders)
    run("pretrain_resumed", pre + ["--out", str(OUT / "pretrain_resumed"), "--resume"], encoders)

    # 7 clouds, batch 3: the ranks get 4 and 3 clouds unless the sampler pads (a hang in DDP otherwise)
    dis = ["distill", "--teacher", str(teacher), "--student", "foundry-tiny", "--data", "synthetic:7",
           "--epochs", "2", "--batch-size", "3", "--views", "2", *DDP]
    run("distill_full", dis + ["--out", str(OUT / "distill_full")], students)
    interrupt.armed = True
    run("distill_part", dis + ["--out", str(OUT / "distill_resumed")], students)
    run("distill_resumed", dis + ["--out", str(OUT / "distill_resumed"), "--resume"], students)

    rank = torch.distributed.get_rank()
    text = json.dumps(record, indent=1)
    with open(OUT / f"rank{rank}.json.tmp", "w") as f:  # noted as a write; the test ignores its own files
        f.write(text)
    os.replace(OUT / f"rank{rank}.json.tmp", OUT / f"rank{rank}.json")


if __name__ == "__main__":
    main()
