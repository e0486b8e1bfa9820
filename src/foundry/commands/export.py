"""`foundry export`: a model to ONNX (grouping in the graph or on the host), checked in onnxruntime;
optional int8."""
from __future__ import annotations

import json

import torch

from ..bench.flops import random_cloud
from ..bench.worker import build_model
from ..export.onnx import export_onnx, quantize_int8, svm_fp32_vs_int8
from ..export.profile import format_profile, profile_onnx
from ..io import write_json
from ..validation import FoundryInputError, check_output, check_suffix, positive_int

HELP = "export a model to ONNX (dynamic batch), check it against PyTorch, optionally quantise to int8"


def register(p):
    p.add_argument("model", help="preset name, shipped name or checkpoint path")
    p.add_argument("--out", required=True, help="output .onnx path")
    p.add_argument("--points", type=int, default=None, help="points per cloud of the example input "
                                                            "(default: the model's own)")
    p.add_argument("--output", choices=("features", "tokens"), default="features",
                   help="features: forward_features (B, D); tokens: forward_tokens (B, G, C) + centres")
    p.add_argument("--grouping", choices=("graph", "host"), default="graph",
                   help="graph: the graph takes raw points and groups them itself (FPS unrolled into it); "
                        "host: the graph takes the patches (inputs neighborhoods, centers) and the host groups "
                        "(foundry.export.host_grouping.onnx_feed; faster at batch 1)")
    p.add_argument("--opset", type=int, default=17)
    p.add_argument("--fixed-points", action="store_true", help="fix the point count (default: dynamic)")
    p.add_argument("--atol", type=float, default=1e-4, help="max |ONNX - PyTorch| accepted (default 1e-4)")
    p.add_argument("--int8", action="store_true", help="also write <out>.int8.onnx (dynamic quantisation)")
    p.add_argument("--svm", action="store_true",
                   help="with --int8: linear-SVM accuracy (eval.svm protocol) of PyTorch, ONNX fp32 and int8 "
                        "features on --svm-data (slow)")
    p.add_argument("--svm-data", default="modelnet10", help="dataset spec for --svm (default modelnet10)")
    p.add_argument("--svm-limit", type=int, default=None,
                   help="--svm on a seeded class-stratified subset of about this many clouds per split (quicker, stated)")
    p.add_argument("--profile", action="store_true",
                   help="per-stage onnxruntime time (grouping, tokenizer, dso, encoder, cau) at batch 1, "
                        "from the runtime's node profiler; of the int8 graph too with --int8")
    p.add_argument("--threads", type=int, default=1, help="torch/onnxruntime threads (default 1)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--overwrite", action="store_true", help="replace existing output files (never the input model)")


def main(args):
    torch.set_num_threads(positive_int(args.threads, "--threads"))
    out = check_suffix(args.out, ".onnx")
    if args.points is not None:
        positive_int(args.points, "--points")
    outputs = [out, out.with_suffix(".json")] + ([out.with_suffix(".int8.onnx")] if args.int8 else [])
    for path in outputs:
        check_output(path, overwrite=args.overwrite, inputs=(args.model,))
    if args.svm and not args.int8:
        raise FoundryInputError("--svm compares fp32 with int8: add --int8")
    model = build_model(args.model)
    report = export_onnx(model, out, num_points=args.points, output=args.output, opset=args.opset,
                         dynamic_points=not args.fixed_points, atol=args.atol, grouping=args.grouping)
    check = report["check"]
    if not args.json:
        print(f"wrote {out} ({report['bytes'] / 1e6:.2f} MB, opset {args.opset}, output {args.output}, "
              f"{report['num_groups']} patches, grouping {report['grouping']})")
        print(f"dynamic axes: {report['dynamic_axes']}")
        print(f"onnxruntime vs PyTorch: max |diff| = {check['max_abs_diff']:.2e} over {list(check['per_case'])} "
              f"({'ok' if check['passed'] else 'FAILED'}, tolerance {args.atol:g})")
    if args.int8:
        int8_path = out.with_suffix(".int8.onnx")
        report["int8"] = quantize_int8(out, int8_path)
        if not args.json:
            q = report["int8"]
            print(f"wrote {int8_path} ({q['bytes'] / 1e6:.2f} MB, {q['ratio']:.0%} of fp32)")
        if args.svm:
            if args.output != "features":
                raise FoundryInputError("--svm needs --output features")
            report["svm"] = svm_fp32_vs_int8(model, out, int8_path, dataset=args.svm_data, num_points=args.points,
                                             threads=args.threads, limit=args.svm_limit,
                                             log=None if args.json else print)
    if args.profile:
        report["profile"] = _profile(out, report, args)
    report["settings"] = {"model": str(args.model), "threads": args.threads, "torch": torch.__version__,
                          "grouping": args.grouping}
    write_json(out.with_suffix(".json"), report)
    if args.json:
        print(json.dumps(report, indent=2, default=str))
    else:
        print(f"wrote {out.with_suffix('.json')}")
    return 0 if check["passed"] else 1


def _profile(out, report, args) -> dict:
    points = random_cloud(1, report["num_points"], 0).numpy()
    graphs = {"fp32": out}
    if "int8" in report:
        graphs["int8"] = report["int8"]["path"]
    prof = {kind: profile_onnx(path, points, threads=args.threads) for kind, path in graphs.items()}
    if not args.json:
        print(f"onnxruntime per-stage time, batch 1, {report['num_points']} points, {args.threads} thread(s):")
        print(format_profile(prof))
    return prof
