"""A/B of the voxel-ordered k-d tree queries (ops.host_tree, 2026-12-07) in one process: the outlier
filter and the whole grouping (filter + bucket FPS + kNN) on random points, 2 threads, the queries in
the caller's order (A) and voxel-ordered (B) in turn; medians of the last runs.

    python docs/results/2026-12-07-bench-scaling-ordered/ab_query_order.py 300000 6
"""
import statistics
import sys
import time

import numpy as np
import torch

from foundry.ops import host_tree
from foundry.ops.grouping import group_patches
from foundry.ops.outliers import suppress_outliers

n, runs = int(sys.argv[1]), int(sys.argv[2])
torch.set_num_threads(2)
points = torch.from_numpy(np.random.default_rng(0).random((1, n, 3)).astype(np.float32))
ordered_from = host_tree.ORDER_QUERIES_FROM
times = {"A caller's order": ([], []), "B voxel order": ([], [])}
for i in range(runs):
    for (name, (filt, grouping)), limit in zip(times.items(), (1 << 62, ordered_from)):
        host_tree.ORDER_QUERIES_FROM = limit
        t0 = time.perf_counter()
        suppress_outliers(points)
        t1 = time.perf_counter()
        group_patches(points, n // 16, 32, fps_backend="bucket", outlier_filter=True)
        t2 = time.perf_counter()
        if i or runs == 1:  # the first pair warms up
            filt.append(t1 - t0)
            grouping.append(t2 - t1)
for name, (filt, grouping) in times.items():
    print(f"{name}: filter {statistics.median(filt):.3f} s ({min(filt):.3f}-{max(filt):.3f}), grouping with the "
          f"filter {statistics.median(grouping):.3f} s ({min(grouping):.3f}-{max(grouping):.3f}), {len(filt)} runs")
