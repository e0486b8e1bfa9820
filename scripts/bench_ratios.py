"""Batch-1 latency medians and student / teacher ratios over repeated `foundry bench` runs.

    python scripts/bench_ratios.py docs/results/2026-12-04-bench-shipped

reads FOLDER/bench-t<T>-r<R>.json (one `foundry bench ... --threads T` run each, the first model the teacher) and
prints, per thread count and model, the median over runs of each latency column (torch, onnxruntime fp32 / int8 with
the graph's own grouping, and with the host's grouping) and the median of the per-run ratios to the first model,
with their range.
"""
from __future__ import annotations

import glob
import json
import statistics
import sys
from pathlib import Path

COLUMNS = {"torch": lambda m: m["cpu_latency_b1"]["median_s"], "ORT fp32": lambda m: m["onnx"]["median_s"],
           "ORT int8": lambda m: m["onnx"]["int8"]["median_s"], "ORT-h fp32": lambda m: m["onnx"]["host"]["median_s"],
           "ORT-h int8": lambda m: m["onnx"]["host"]["int8"]["median_s"]}


def main(folder: str) -> int:
    for threads in (1, 2):
        files = sorted(glob.glob(str(Path(folder) / f"bench-t{threads}-r*.json")))
        if not files:
            continue
        reps = [json.loads(Path(f).read_text())["models"] for f in files]
        print(f"threads {threads}: medians over {len(reps)} runs, ms (ratio to the first model, median of the per-run "
              "ratios [range])")
        for i, model in enumerate(m["model"].split("/")[-1] for m in reps[0]):
            cells = []
            for name, get in COLUMNS.items():
                ms = [get(rep[i]) * 1e3 for rep in reps]
                ratio = [get(rep[i]) / get(rep[0]) * 100 for rep in reps]
                cells.append(f"{name} {statistics.median(ms):.2f} ({statistics.median(ratio):.1f}% "
                             f"[{min(ratio):.1f}-{max(ratio):.1f}])")
            print(" ", model, " | ".join(cells))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1] if len(sys.argv) > 1 else "."))
