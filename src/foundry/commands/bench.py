"""`foundry bench`: cost, latency, throughput, memory and scaling of models, side by side."""
from __future__ import annotations

import time
from pathlib import Path

import torch

from ..bench.flops import random_cloud
from ..bench.grouping import format_grouping, grouping_times
from ..bench.paired import format_paired, paired_latency
from ..bench.report import bench_models, format_report, machine_info
from ..bench.scaling import format_ratios, format_scaling, merge_scaling_runs, plot_scaling, run_scaling
from ..bench.stages import format_stages
from ..bench.worker import build_model
from ..io import write_json
from ..validation import FoundryInputError, check_output, positive_int

HELP = "benchmark models side by side: MACs/FLOPs per stage, latency, throughput, memory, ONNX, scaling"


NAMED_SIZES = {"1k": 1024, "2k": 2048, "4k": 4096, "8k": 8192, "16k": 16384, "32k": 32768, "65k": 65536,
               "131k": 131072}


def _size(text: str) -> int:
    """'8k' -> 8192 (the usual power-of-two cloud sizes), '300k' -> 300000, '1M' -> 1000000, '5000' -> 5000."""
    t = text.strip().lower()
    if t in NAMED_SIZES:
        return NAMED_SIZES[t]
    if t.endswith("k"):
        return int(float(t[:-1]) * 1000)
    if t.endswith("m"):
        return int(float(t[:-1]) * 1_000_000)
    return int(t)


def _sizes(text: str) -> list[int]:
    """'1k,8k,65k,300k,1M' -> [1024, 8192, 65536, 300000, 1000000] (1k/8k/65k are powers of two)."""
    try:
        sizes = [_size(s) for s in text.split(",") if s.strip()]
    except ValueError as exc:
        raise FoundryInputError(f"--sizes {text!r}: expected point counts like 1k,8k,65k,300k,1M ({exc})") from exc
    if not sizes or min(sizes) < 1:
        raise FoundryInputError(f"--sizes {text!r}: give one or more positive point counts, e.g. 1k,8k,65k")
    return sizes


def register(p):
    p.add_argument("models", nargs="*", help="preset names (vit-s, small, foundry-s16, ...), shipped names or "
                                              "checkpoint paths; benchmarked one after another in this process")
    p.add_argument("--points", type=int, default=1024, help="points per cloud (default 1024)")
    p.add_argument("--batch", type=int, default=16, help="batch for the throughput figure (default 16)")
    p.add_argument("--flops-batch", type=int, default=1, help="batch at which FLOPs are counted (default 1)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1; stated in the output)")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N; GPU figures added when not cpu "
                                                  "('auto' picks cuda when present)")
    # how long each figure is timed
    for flag, kind, default, text in (("--warmup", int, 3, "untimed calls before timing"),
                                      ("--runs", int, 20, "timed calls at least"),
                                      ("--min-seconds", float, 1.0, "keep timing until this much time has passed"),
                                      ("--max-seconds", float, 30.0, "stop timing one figure after this long")):
        p.add_argument(flag, type=kind, default=default, help=f"{text} (default {default})")
    p.add_argument("--no-memory", action="store_true", help="skip the peak-memory subprocess runs")
    p.add_argument("--no-onnx", action="store_true", help="skip the onnxruntime latency column")
    p.add_argument("--no-latency", action="store_true", help="cost figures only")
    p.add_argument("--fast", action="store_true", help="quick settings for smoke tests (warm-up 1, 3 runs)")
    p.add_argument("--scaling", action="store_true", help="scaling curve over input size for MODELS instead")
    p.add_argument("--sizes", default=None, help="sizes for --scaling / --grouping, e.g. 1k,8k,65k,300k,1M")
    p.add_argument("--time-limit", type=float, default=240.0, help="--scaling/--grouping: seconds per point")
    p.add_argument("--max-memory-gb", type=float, default=8.0,
                   help="--scaling: memory cap per run (RLIMIT_DATA; 0 = none; default 8)")
    p.add_argument("--group-ratio", type=int, default=16, help="--scaling/--grouping: G = max(G0, N // ratio)")
    p.add_argument("--max-groups", type=int, default=None, help="--scaling: clip the patch count")
    p.add_argument("--merge-scaling", nargs="+", default=None, metavar="JSON",
                   help="combine scaling.json files of earlier --scaling runs into one table, JSON and PNG")
    p.add_argument("--grouping", action="store_true", help="grouping time (FPS + kNN), plain torch vs the automatic CPU backends, instead")
    p.add_argument("--groups", type=int, default=None, help="--grouping: fixed number of centres instead of N/ratio")
    p.add_argument("--paired", action="store_true",
                   help="batch-1 latency of MODELS interleaved in one process, round by round, with each model's "
                        "ratio to the first and its 95%% interval over rounds, instead")
    p.add_argument("--rounds", type=int, default=30, help="--paired: rounds (default 30)")
    p.add_argument("--calls", type=int, default=10, help="--paired: timed calls per model and round (default 10)")
    p.add_argument("--out", default=None, help="output folder for JSON/PNG (default runs/bench/<time>)")
    p.add_argument("--overwrite", action="store_true", help="replace results already in --out")


def main(args):
    out_dir = Path(args.out or Path("runs") / "bench" / time.strftime("%Y%m%d-%H%M%S"))
    for value, flag in ((args.points, "--points"), (args.batch, "--batch"), (args.flops_batch, "--flops-batch"),
                        (args.threads, "--threads"), (args.runs, "--runs"), (args.group_ratio, "--group-ratio")):
        positive_int(value, flag)
    if args.warmup < 0:
        raise FoundryInputError(f"--warmup must be 0 or more, got {args.warmup}")
    _check_outputs(args, out_dir)
    torch.set_num_threads(args.threads)
    device = args.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if torch.device(device).type == "cuda" and not torch.cuda.is_available():
        raise FoundryInputError(f"--device {device}: CUDA is not available here; use --device cpu")

    if args.grouping:
        return _grouping(args, out_dir, device)
    if args.merge_scaling:
        return _merge_scaling(args, out_dir)
    if not args.models:
        raise FoundryInputError("name at least one model, e.g. `foundry bench vit-s small` (or use --grouping)")
    for spec in args.models:  # every name checked before the first model is timed (bench runs for minutes)
        build_model(spec)
    if args.scaling:
        return _scaling(args, out_dir, device)
    if args.paired:
        return _paired(args, out_dir, device)

    warmup, runs, min_s = (1, 3, 0.0) if args.fast else (args.warmup, args.runs, args.min_seconds)
    result = bench_models(args.models, points=args.points, batch=args.batch, flops_batch=args.flops_batch,
                          device=device, threads=args.threads, warmup=warmup, runs=runs, min_seconds=min_s,
                          max_seconds=args.max_seconds, memory=not args.no_memory, onnx=not args.no_onnx,
                          latency=not args.no_latency)
    print()
    print(format_report(result))
    write_json(out_dir / "bench.json", result)
    print(f"\nwrote {out_dir / 'bench.json'}")
    return 0


def _check_outputs(args, out_dir: Path) -> None:
    """Refuse to replace earlier results in --out (unless --overwrite) or to write onto an input."""
    if args.grouping:
        names = ["grouping.json"]
    elif args.paired:
        names = ["paired.json"]
    elif args.merge_scaling or args.scaling:
        names = ["scaling.json", "scaling.png"]
    else:
        names = ["bench.json"]
    inputs = list(args.merge_scaling or []) + list(args.models)
    for name in names:
        check_output(out_dir / name, overwrite=args.overwrite, inputs=inputs)


def _grouping(args, out_dir, device):
    sizes = _sizes(args.sizes or "1k,8k,65k,300k")
    print(f"grouping (FPS + kNN, K=32, G = {'%d' % args.groups if args.groups else 'max(64, N // %d)' % args.group_ratio})"
          f" on {device}, {args.threads} thread(s), torch {torch.__version__}; median of repeated "
          "runs at small sizes, one run at large ones")
    rows = grouping_times(sizes, num_groups=args.groups, ratio=args.group_ratio, time_limit=args.time_limit,
                          device=device)
    print(format_grouping(rows))
    write_json(out_dir / "grouping.json", {"settings": machine_info(args.threads, device), "grouping": rows})
    print(f"wrote {out_dir / 'grouping.json'}")
    return 0


def _paired(args, out_dir, device):
    for value, flag in ((args.rounds, "--rounds"), (args.calls, "--calls")):
        positive_int(value, flag)
    if len(args.models) < 2 or args.rounds < 2:
        raise FoundryInputError("--paired compares at least two models over at least 2 rounds, e.g. "
                                "`foundry bench teacher-vits foundry-vits-s16 --paired --threads 2`")
    warmup, rounds, calls = (1, 2, 2) if args.fast else (max(1, args.warmup), args.rounds, args.calls)
    models = {spec: build_model(spec).to(device) for spec in args.models}
    print(f"paired latency on {device}, {args.threads} thread(s), batch 1, {args.points} points: {rounds} rounds of "
          f"{calls} calls per model")
    result = paired_latency(models, random_cloud(1, args.points, 0, device), rounds=rounds, calls=calls,
                            warmup=warmup, log=print)
    settings = machine_info(args.threads, device)
    settings.update(points=args.points, batch=1, timing="per round and model: median of `calls` timed calls after "
                    "one untimed call; ratio per round to the first model; median over rounds, 95% percentile "
                    "bootstrap interval over rounds")
    print(format_paired(result))
    write_json(out_dir / "paired.json", {"settings": settings, "paired": result})
    print(f"wrote {out_dir / 'paired.json'}")
    return 0


def _scaling(args, out_dir, device):
    sizes = _sizes(args.sizes or "1k,8k,65k,300k,1M")
    cap = args.max_memory_gb or None
    print(f"scaling on {device}, {args.threads} thread(s), batch 1, G = max(G0, N // {args.group_ratio})"
          f"{', at most %d' % args.max_groups if args.max_groups else ''}, time limit {args.time_limit:.0f} s"
          f"{', memory cap %.1f GB' % cap if cap else ''}; fresh process per point")
    print(format_scaling([], header=True))
    records = run_scaling(args.models, sizes, ratio=args.group_ratio, max_groups=args.max_groups,
                          time_limit=args.time_limit, max_memory_gb=cap, threads=args.threads, device=device)
    settings = machine_info(args.threads, device)
    settings.update(sizes=sizes, group_ratio=args.group_ratio, max_groups=args.max_groups,
                    time_limit_s=args.time_limit, max_memory_gb=cap, batch=1)
    write_json(out_dir / "scaling.json", {"settings": settings, "scaling": records})
    plot_scaling(records, out_dir / "scaling.png",
                 title=f"{', '.join(args.models)} on {device} ({settings['cpu']}), {args.threads} thread(s), batch 1")
    print()
    _print_scaling(records)
    print(f"wrote {out_dir / 'scaling.json'} and {out_dir / 'scaling.png'}")
    return 0


def _print_scaling(records):
    print(format_scaling(records))
    print()
    print("seconds per stage (first call; fps/knn = patch grouping, other = glue between modules)")
    print(format_stages(records))
    ratios = format_ratios(records)
    if ratios:
        print()
        print(ratios)


def _merge_scaling(args, out_dir):
    settings, records = merge_scaling_runs(args.merge_scaling)
    write_json(out_dir / "scaling.json", {"settings": settings, "scaling": records, "sources": args.merge_scaling})
    st = settings[0]
    plot_scaling(records, out_dir / "scaling.png",
                 title=f"{st.get('device')} ({st.get('cpu')}), {st.get('torch_threads')} thread(s), batch 1, "
                       f"G = N/{st.get('group_ratio')}; merged from {len(settings)} runs")
    _print_scaling(records)
    print(f"wrote {out_dir / 'scaling.json'} and {out_dir / 'scaling.png'}")
    return 0
