import json, statistics as S, glob
cols = {"torch": lambda m: m["cpu_latency_b1"]["median_s"], "ORT fp32": lambda m: m["onnx"]["median_s"],
        "ORT int8": lambda m: m["onnx"]["int8"]["median_s"], "ORT-h fp32": lambda m: m["onnx"]["host"]["median_s"],
        "ORT-h int8": lambda m: m["onnx"]["host"]["int8"]["median_s"]}
for T in (1, 2):
    reps = [json.load(open(f))["models"] for f in sorted(glob.glob(f"bench-t{T}-r*.json"))]
    names = [m["model"].split("/")[-1] for m in reps[0]]
    print(f"threads {T}: medians over {len(reps)} runs, ms (ratio to teacher, median of per-run ratios [range])")
    for i, n in enumerate(names):
        row = []
        for c, f in cols.items():
            v = [f(rep[i]) * 1e3 for rep in reps]
            rat = [f(rep[i]) / f(rep[0]) * 100 for rep in reps]
            row.append(f"{c} {S.median(v):.2f} ({S.median(rat):.1f}% [{min(rat):.1f}-{max(rat):.1f}])")
        print(" ", n, " | ".join(row))
