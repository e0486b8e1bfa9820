"""`foundry distill`: a frozen teacher -> a Foundry SuperToken student (or a baseline body)."""
from __future__ import annotations

import shlex
import sys
from pathlib import Path

import torch

from ..api import load, save
from ..train.common import check_run_folder
from ..train.corrupted_views import DEFAULT_FAMILIES
from ..train.distill import RUN_PRODUCTS, STATE_FILE, build_caches, distill
from ..train.experts import train_classification_expert, train_segmentation_expert
from ..train.students import check_teacher, student_for_run
from ..validation import check_output, parse_key_values

HELP = "distil a frozen teacher's tokens into a small SuperToken student (teacher tokens cached on disk)"


def register(p):
    p.add_argument("--teacher", required=True, help="teacher: shipped name (teacher-vits), checkpoint or official .pth")
    p.add_argument("--student", default="foundry-s16-narrow",
                   help="student preset (foundry-s16-narrow, -s4-narrow, -s1-narrow: the method study's final recipe, a "
                        "192-wide encoder and tokens; foundry-s16, foundry-s4, foundry-s1: 384 wide; foundry-s16-gate, "
                        "foundry-s16-narrow-gate (one file, a run-time budget r), foundry-s16-learned (the paper's free DSO queries), fps-s16, kmeans-s16, tome-s16, ...) or a "
                        "student checkpoint to continue from (default: foundry-s16-narrow)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a student config field, e.g. --set depth=2 --set cau_position=true (JSON values); "
                        "on a checkpoint only --set dso_seeding=fps (or learned) is allowed")
    p.add_argument("--data", action="append", default=None,
                   help="unlabelled data, repeatable (default: modelnet10:train and kicadpart:train)")
    p.add_argument("--limit", type=int, default=None,
                   help="train on a fixed random subset of N clouds of the data mix (picked by --seed); the token "
                        "cache holds just those, or an existing cache of all the data at --cache is indexed")
    p.add_argument("--out", required=True, help="run folder (metrics, training state, token cache, student.safetensors)")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--weight-decay", type=float, default=0.05)
    p.add_argument("--warmup-epochs", type=float, default=1.0)
    p.add_argument("--beta", type=float, default=1.0, help="SmoothL1 beta")
    p.add_argument("--feature-weight", type=float, default=0.0,
                   help="weight of an extra SmoothL1 on the pooled global feature (what SVM/probes read); 0: off")
    p.add_argument("--balance-weight", type=float, default=0.0,
                   help="DSO: weight of KL(SuperToken usage || uniform), which keeps all SuperTokens in use; 0: off")
    p.add_argument("--extra-layers", type=int, nargs="+", default=None, metavar="BLOCK",
                   help="also reproduce these teacher blocks (e.g. 3 7, as part segmentation reads 3, 7, 11), each "
                        "with its own output MLP on the CAU path; on a checkpoint the new MLPs start as copies of "
                        "the last layer's")
    p.add_argument("--train-only", choices=["layer-heads"], default=None,
                   help="layer-heads: train only the extra layers' output MLPs (the student's other outputs stay "
                        "exactly as they were)")
    p.add_argument("--layer", type=int, default=-1, help="teacher block whose normed tokens are the target (-1: last)")
    p.add_argument("--views", type=int, default=2, help="augmented views per cloud in the token cache")
    p.add_argument("--cache", default=None, help="token cache folder (default: OUT/token_cache); share it between runs")
    p.add_argument("--no-cache", action="store_true", help="run the teacher online every step instead")
    p.add_argument("--rebuild-cache", action="store_true", help="rebuild the token cache even if one exists")
    p.add_argument("--cache-only", action="store_true", help="build (or check) the token cache, then stop")
    p.add_argument("--corrupted-views", nargs="+", default=None, metavar="FAMILY",
                   help="robustness training: a share of each batch reaches the student corrupted with one of these "
                        "families (jitter drop_global drop_local add_global add_local partial; 'default' = jitter "
                        "drop_local add_local partial, leaving the global ones unseen), severity 1-5 at random, "
                        "against the clean cloud's teacher tokens (nearest clean patch) and pooled feature")
    p.add_argument("--corrupted-share", type=float, default=0.5, help="--corrupted-views: share of clouds corrupted")
    p.add_argument("--tau", type=float, nargs=2, default=(1.0, 0.1), metavar=("START", "END"),
                   help="Gumbel-Softmax temperature, annealed geometrically over the run")
    p.add_argument("--gate-lambda", type=float, default=None,
                   help="weight of the gate's -sum(p) reward for merging (default 1e-3; 0 for a student trained on "
                        "sampled budgets, gate_training=budget as in foundry-s16-gate, where the budget sets the compute)")
    p.add_argument("--init-encoder", choices=["none", "first", "spread"], default="none",
                   help="initialise the student's blocks from the teacher's (needs the teacher's width)")
    p.add_argument("--freeze-encoder", action="store_true", help="keep the (teacher-initialised) blocks frozen")
    p.add_argument("--init-tokenizer", action="store_true",
                   help="copy the teacher's mini-PointNet (student tokenizer='teacher')")
    p.add_argument("--seed", type=int, default=0, help="training seed (init, data order, Gumbel noise)")
    p.add_argument("--cache-seed", type=int, default=0,
                   help="seed of the cached augmented views (runs with other --seed values share one cache)")
    p.add_argument("--devices", default="auto")
    p.add_argument("--precision", default=None, help="Fabric precision (default bf16-mixed on CUDA, 32-true on CPU)")
    p.add_argument("--strategy", default="auto", help="Fabric strategy, e.g. ddp")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last saved state")
    p.add_argument("--max-minutes", type=float, default=None,
                   help="stop after this much wall time (the state is saved; continue with --resume)")
    p.add_argument("--overwrite", action="store_true",
                   help="start again in an --out folder that already holds a run, replacing it")
    p.add_argument("--expert", choices=["classification", "segmentation"], default=None,
                   help="train a task-specific KD baseline instead: the same body + a task head with cross-entropy on "
                        "the labels of --data; classification: linear head on the pooled feature (default "
                        "modelnet10:train); segmentation: the partseg head on the tokens, per-point part labels "
                        "(default kicadpart:train)")
    p.add_argument("--kd-weight", type=float, default=0.0,
                   help="--expert: weight of the KL to the teacher's logits (per cloud for classification, per point "
                        "for segmentation; from a head of the expert's shape first fitted on the frozen teacher's "
                        "outputs); 0: labels only")
    p.add_argument("--kd-temperature", type=float, default=2.0, help="--expert: KD temperature T")
    p.add_argument("--teacher-head-epochs", type=int, default=5,
                   help="--expert with --kd-weight > 0: epochs to fit the teacher's head")
    p.add_argument("--fp16-copy", default=None, metavar="PATH", help="also save the final student in fp16 at PATH")


def main(args):
    torch.set_num_threads(max(1, torch.get_num_threads()))
    if not args.cache_only:  # before any work: a finished run is never replaced by accident
        check_run_folder(args.out, STATE_FILE, resume=args.resume, overwrite=args.overwrite, products=RUN_PRODUCTS)
    if args.fp16_copy:
        check_output(args.fp16_copy, overwrite=args.overwrite, inputs=(args.teacher, args.student),
                     flag="--overwrite")
    teacher = load(args.teacher)
    check_teacher(teacher, f"--teacher {args.teacher!r}")
    data = args.data or ["modelnet10:train", "kicadpart:train"]
    student = student_for_run(args.student, teacher, args.teacher, parse_key_values(args.set),
                              extra_layers=args.extra_layers, init_tokenizer=args.init_tokenizer,
                              init_encoder=args.init_encoder, freeze_encoder=args.freeze_encoder, seed=args.seed)
    command = "foundry distill " + " ".join(shlex.quote(a) for a in sys.argv[2:]) if len(sys.argv) > 1 else None
    if args.expert:
        expert_kw = dict(out_dir=args.out, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                         weight_decay=args.weight_decay, seed=args.seed, command=command, resume=args.resume)
        if args.expert == "segmentation":
            summary = train_segmentation_expert(student, data=(args.data or ["kicadpart:train"])[0],
                                                teacher=teacher if args.kd_weight > 0 else None,
                                                kd_weight=args.kd_weight, temperature=args.kd_temperature,
                                                teacher_head_epochs=args.teacher_head_epochs, **expert_kw)
        else:
            summary = train_classification_expert(student, data=(args.data or ["modelnet10:train"])[0],
                                                  teacher=teacher if args.kd_weight > 0 else None,
                                                  kd_weight=args.kd_weight, temperature=args.kd_temperature,
                                                  teacher_head_epochs=args.teacher_head_epochs, **expert_kw)
        print(f"expert saved: {Path(args.out) / 'student.safetensors'} ({summary['info']['wall_time_s']:.0f} s)")
        return 0
    if args.cache_only:
        build_caches(teacher, student, teacher_name=args.teacher, data=data,
                     cache_dir=args.cache or Path(args.out) / "token_cache", layer=args.layer, views=args.views,
                     cache_seed=args.cache_seed, seed=args.seed, limit=args.limit, rebuild=args.rebuild_cache)
        return 0
    summary = distill(teacher, student, teacher_name=args.teacher, data=data, out_dir=args.out, epochs=args.epochs,
                      batch_size=args.batch_size, lr=args.lr, weight_decay=args.weight_decay,
                      warmup_epochs=args.warmup_epochs, beta=args.beta, layer=args.layer,
                      feature_weight=args.feature_weight, balance_weight=args.balance_weight, views=args.views,
                      use_cache=not args.no_cache, cache_dir=args.cache, rebuild_cache=args.rebuild_cache,
                      tau_start=args.tau[0], tau_end=args.tau[1], gate_lambda=args.gate_lambda, seed=args.seed,
                      cache_seed=args.cache_seed, limit=args.limit, devices=args.devices, precision=args.precision,
                      strategy=args.strategy, resume=args.resume, command=command,
                      extra_info=getattr(student, "continued_from", None), train_only=args.train_only,
                      overwrite=args.overwrite, max_minutes=args.max_minutes,
                      corrupted_views=_corrupted_views(args))
    info = summary["info"]
    if not summary["finished"]:
        print(f"stopped after {info['steps']} steps ({info['epochs']} of {args.epochs} epochs done); continue with "
              f"--resume (state in {Path(args.out) / STATE_FILE})")
        return 0
    print(f"done: {info['epochs']} epochs, final loss {info['final_loss']:.5f}, cosine {info['final_cosine']:.4f}, "
          f"{info['wall_time_s']:.0f} s -> {Path(args.out) / 'student.safetensors'}")
    if args.fp16_copy:
        save(load(Path(args.out) / "student.safetensors"), args.fp16_copy, info=info, dtype=torch.float16)
        print(f"fp16 copy: {args.fp16_copy}")
    return 0


def _corrupted_views(args) -> dict | None:
    if not args.corrupted_views:
        return None
    fams = list(DEFAULT_FAMILIES) if args.corrupted_views == ["default"] else args.corrupted_views
    return {"families": fams, "share": args.corrupted_share}
