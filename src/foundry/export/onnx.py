"""ONNX export of Foundry models, checked against PyTorch in onnxruntime; optional int8.

What is exported: by default the whole model from raw points, grouping included. FPS is a loop
of `num_groups` steps of tensor ops (sub, mul, min, argmax, gather) and kNN a matmul + top-k, so
the TorchScript-based exporter unrolls FPS into the graph (G steps) and no custom op is needed.
The graph therefore has a fixed patch count G; the batch size is dynamic, and so is the point
count when `dynamic_points=True` (checked at a second size by `check_onnx`). With
grouping="host" the graph starts from the patches instead and the host groups the points
(host_grouping.py): the cheaper deployment at batch 1, where the unrolled FPS dominates.

Outputs: "features" (B, D) from `forward_features`, or "tokens" (B, G, C) and "centers"
(B, G, 3) from `forward_tokens`.

int8: `onnxruntime.quantization.quantize_dynamic` (weights of MatMul/Gemm in int8, activations
quantised on the fly); its accuracy cost is measured with the linear-SVM protocol of
`foundry.eval.svm` on features extracted by the ONNX session (`extract_features_onnx`).
"""
from __future__ import annotations

import contextlib
import json
import logging
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..bench.flops import random_cloud
from ..data import load_arrays
from ..eval.svm import extract_features, linear_svm_eval
from ..io import atomic_write
from ..ops.grouping import provided_patches
from ..validation import FoundryInputError, positive_int
from .host_grouping import GROUPING_KEY, grouping_spec, host_patches, onnx_feed, ort_session

OUTPUTS = ("features", "tokens")
GROUPINGS = ("graph", "host")


class _Exported(nn.Module):
    def __init__(self, model: nn.Module, output: str):
        super().__init__()
        self.model = model
        self.output = output

    def forward(self, points):
        if self.output == "tokens":
            return self.model.forward_tokens(points)
        return self.model.forward_features(points)


class _FromPatches(_Exported):
    """The model traced from its patches: the grouping is left to the host."""

    def forward(self, neighborhoods, centers):
        points = (neighborhoods + centers.unsqueeze(2)).flatten(1, 2)  # what the input checks look at
        with provided_patches(neighborhoods, centers):
            return super().forward(points)


def _names(output: str):
    return ["tokens", "centers"] if output == "tokens" else ["features"]


@contextlib.contextmanager
def _quiet():
    """Silence the exporter's tracer warnings and onnxruntime.quantization's root-logger advice."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        root.setLevel(level)


def export_onnx(model: nn.Module, path, *, num_points: int | None = None, output: str = "features",
                opset: int = 17, dynamic_points: bool = True, check: bool = True, atol: float = 1e-4,
                seed: int = 0, grouping: str = "graph") -> dict:
    """Write `model` as ONNX to `path` (atomically). Returns a report dict (path, size, check).
    grouping: "graph" (input "points") or "host" (inputs "neighborhoods" and "centers"; see
    host_grouping.py)."""

    if output not in OUTPUTS:
        raise FoundryInputError(f"output must be one of {OUTPUTS}, got {output!r}")
    if grouping not in GROUPINGS:
        raise FoundryInputError(f"grouping must be one of {GROUPINGS}, got {grouping!r}")
    n = positive_int(getattr(model.config, "num_points", 1024) if num_points is None else num_points, "num_points")
    model = model.eval().to("cpu")
    example = random_cloud(2, n, seed)
    names = _names(output)
    if grouping == "host":
        spec = grouping_spec(model)
        wrapper = _FromPatches(model, output).eval()
        example = tuple(torch.from_numpy(a) for a in host_patches(example.numpy(), spec))
        inputs = ["neighborhoods", "centers"]
        axes = {name: {0: "batch"} for name in inputs}
        dynamic_points = False  # the graph sees G patches of K points, whatever the cloud's size
    else:
        wrapper = _Exported(model, output).eval()
        example = (example,)
        inputs = ["points"]
        axes = {"points": {0: "batch", 1: "num_points"} if dynamic_points else {0: "batch"}}
    for name in names:
        axes[name] = {0: "batch"}

    def write(tmp):
        with _quiet(), torch.no_grad():
            torch.onnx.export(wrapper, example, tmp, input_names=inputs, output_names=names,
                              dynamic_axes=axes, opset_version=opset, dynamo=False, do_constant_folding=True)
        if grouping == "host":
            import onnx

            graph = onnx.load(tmp)
            entry = graph.metadata_props.add()
            entry.key, entry.value = GROUPING_KEY, json.dumps(spec)
            onnx.save(graph, tmp)

    atomic_write(path, write)
    report = {"path": str(path), "bytes": Path(path).stat().st_size, "output": output, "opset": opset,
              "num_points": n, "num_groups": getattr(model.patch_config, "num_groups", None),
              "dynamic_axes": {k: list(v.values()) for k, v in axes.items()}, "grouping_mode": grouping,
              "grouping": ("on the host (foundry.export.host_grouping; the graph starts from the patches)"
                           if grouping == "host" else "included (FPS unrolled into the graph, kNN as matmul + TopK)")}
    if check:
        report["check"] = check_onnx(model, path, num_points=n, output=output, atol=atol,
                                     other_points=(n + n // 2) if dynamic_points or grouping == "host" else None)
    return report


def onnx_session(path, threads: int = 1):
    """An onnxruntime CPU session with a fixed thread count (`host_grouping.ort_session`)."""
    try:
        import onnxruntime  # noqa: F401
    except ImportError as exc:
        raise FoundryInputError("onnxruntime is not installed: pip install 'foundry3d[export]'") from exc
    return ort_session(path, threads)


def check_onnx(model: nn.Module, path, *, num_points: int, output: str = "features", batches=(1, 3),
               atol: float = 1e-4, other_points: int | None = None, seed: int = 1) -> dict:
    """Max |ONNX - PyTorch| over outputs at several batch sizes (and a second point count)."""

    sess = onnx_session(path)
    cases = [(b, num_points) for b in batches] + ([(2, other_points)] if other_points else [])
    diffs = {}
    for i, (b, n) in enumerate(cases):
        pts = random_cloud(b, n, seed + i)
        got = sess.run(None, onnx_feed(sess, pts.numpy()))
        with torch.no_grad():
            ref = _Exported(model.eval(), output)(pts)
        ref = ref if isinstance(ref, tuple) else (ref,)
        diffs[f"batch{b}_points{n}"] = max(float(np.abs(g - r.numpy()).max()) for g, r in zip(got, ref))
    worst = max(diffs.values())
    return {"max_abs_diff": worst, "per_case": diffs, "atol": atol, "passed": worst < atol}


def quantize_int8(src, dst) -> dict:
    """Dynamic int8 quantisation of an exported model (weights int8, activations at run time)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    def write(tmp):
        with _quiet():
            quantize_dynamic(str(src), tmp, weight_type=QuantType.QInt8)

    atomic_write(dst, write)
    a, b = Path(src).stat().st_size, Path(dst).stat().st_size
    return {"path": str(dst), "bytes": b, "fp32_bytes": a, "ratio": b / a}


def extract_features_onnx(session_or_path, points, batch_size: int = 64, threads: int = 1) -> np.ndarray:
    """Features (M, D) of clouds (M, N, 3) from an exported "features" model, for the SVM probe.

    The ONNX counterpart of `foundry.eval.svm.extract_features` (same batching, float32 out).
    """
    sess = onnx_session(session_or_path, threads) if isinstance(session_or_path, (str, Path)) else session_or_path
    if isinstance(points, torch.Tensor):
        points = points.detach().cpu().numpy()
    points = np.asarray(points, dtype=np.float32)
    if points.ndim != 3 or points.shape[-1] != 3 or points.shape[0] == 0:
        raise FoundryInputError(f"points must be a non-empty array of shape (M, N, 3), got {points.shape}")
    outputs = [o.name for o in sess.get_outputs()]
    if "features" not in outputs:
        raise FoundryInputError(f"this ONNX model outputs {outputs}; export with --output features for the SVM")
    out = [sess.run(["features"], onnx_feed(sess, points[s:s + batch_size]))[0]
           for s in range(0, len(points), batch_size)]
    return np.concatenate(out).astype(np.float32)


def _subset(arrays: dict, limit: int, seed: int) -> dict:
    """A seeded, class-stratified subset of about `limit` clouds (at least 2 per class, for the CV)."""
    labels = np.asarray(arrays["labels"])
    m = len(labels)
    if limit >= m:
        return arrays
    rng = np.random.default_rng(seed)
    keep = []
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        take = min(len(members), max(2, int(round(limit * len(members) / m))))
        keep.append(rng.choice(members, take, replace=False))
    idx = np.sort(np.concatenate(keep))
    return {"points": arrays["points"][idx], "labels": labels[idx]}


def svm_fp32_vs_int8(model: nn.Module, fp32_path, int8_path, *, dataset: str = "modelnet10",
                     num_points: int | None = None, seeds=(0, 1, 2), batch_size: int = 32, threads: int = 1,
                     limit: int | None = None, svm_kwargs: dict | None = None, arrays=None, log=print) -> dict:
    """Linear-SVM accuracy (foundry.eval.svm protocol) of PyTorch, ONNX fp32 and ONNX int8 features.

    The data is `load_arrays(dataset, "train"/"test", num_points)`, or `arrays` = (train, test)
    dicts with "points" and "labels" when given.
    """

    n = positive_int(getattr(model.config, "num_points", 1024) if num_points is None else num_points, "num_points")
    if arrays is not None:
        train, test = arrays
    else:
        train = load_arrays(dataset, "train", num_points=n)
        test = load_arrays(dataset, "test", num_points=n)
    if limit:  # a seeded random subset of each split (stated in the results), for a quicker check
        train, test = _subset(train, limit, 0), _subset(test, limit, 1)
    results = {"dataset": dataset, "num_points": n, "train": int(len(train["labels"])),
               "test": int(len(test["labels"])), "seeds": list(seeds),
               "subset": f"seeded class-stratified ~{limit} per split (seeds 0/1)" if limit else "full splits"}
    feats = {
        "pytorch": lambda x: extract_features(model, x, batch_size=batch_size),
        "onnx_fp32": lambda x: extract_features_onnx(fp32_path, x, batch_size, threads),
        "onnx_int8": lambda x: extract_features_onnx(int8_path, x, batch_size, threads),
    }
    cached = {}
    for name, fn in feats.items():
        tr, te = fn(train["points"]), fn(test["points"])
        cached[name] = (tr, te)
        res = linear_svm_eval(tr, train["labels"], te, test["labels"], seeds=seeds, **(svm_kwargs or {}))
        results[name] = {k: res[k] for k in ("accuracy_mean", "accuracy_std", "C") if k in res}
        if log:
            log(f"  SVM {name:<9} {res['accuracy_mean'] * 100:.2f} +- {res['accuracy_std'] * 100:.2f} % (C={res.get('C')})")
    base_tr, base_te = cached["pytorch"]
    for name in ("onnx_fp32", "onnx_int8"):
        results[name]["feature_max_abs_diff_vs_pytorch"] = float(np.abs(cached[name][1] - base_te).max())
    return results
