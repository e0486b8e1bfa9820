"""Watch the point grouping (FPS + kNN) inside any Foundry model without changing it.

Models import `farthest_point_sample`, `knn` and `group_patches` by name; `watch_grouping`
temporarily rebinds those names in every loaded `foundry.*` module to thin wrappers that call
`on_enter(name)` / `on_exit(name, result, seconds)` around the real function. Nothing else in the
model is touched, so the FLOP counter and the timers see the grouping of teachers and students
alike, wherever it is called from.
"""
from __future__ import annotations

import contextlib
import sys
import time

GROUPING_FUNCTIONS = ("group_patches", "farthest_point_sample", "knn")


def _originals() -> dict:
    import importlib

    grouping = importlib.import_module("foundry.ops.grouping")
    fps = importlib.import_module("foundry.ops.fps")
    knn = importlib.import_module("foundry.ops.knn")  # the package attribute `knn` is the function
    return {
        "group_patches": grouping.group_patches,
        "farthest_point_sample": fps.farthest_point_sample,
        "knn": knn.knn,
    }


@contextlib.contextmanager
def watch_grouping(on_enter=None, on_exit=None, sync=None):
    """Context manager; inside it every call of a grouping function is reported.

    on_enter(name) runs before the call, on_exit(name, result, seconds) after it; `sync` (e.g.
    torch.cuda.synchronize) is called before each clock reading when given.
    """
    originals = _originals()

    def wrap(name, fn):
        def wrapper(*args, **kwargs):
            if on_enter is not None:
                on_enter(name)
            if sync is not None:
                sync()
            t0 = time.perf_counter()
            out = None
            try:
                out = fn(*args, **kwargs)
                if sync is not None:
                    sync()
                return out
            finally:
                if on_exit is not None:
                    on_exit(name, out, time.perf_counter() - t0)

        wrapper.__wrapped__ = fn
        wrapper.__name__ = fn.__name__
        return wrapper

    wrappers = {name: wrap(name, fn) for name, fn in originals.items()}
    patched = []
    for mod_name, mod in list(sys.modules.items()):
        if mod is None or not (mod_name == "foundry" or mod_name.startswith("foundry.")):
            continue
        if mod_name.startswith("foundry.bench"):
            continue
        for name, fn in originals.items():
            if getattr(mod, name, None) is fn:
                setattr(mod, name, wrappers[name])
                patched.append((mod, name, fn))
    try:
        yield
    finally:
        for mod, name, fn in patched:
            setattr(mod, name, fn)


class GroupingRecorder:
    """Collects grouping time (outermost calls only) and the kNN indices seen, for coverage.

    seconds: wall time spent inside grouping functions (nested calls counted once);
    fps_seconds / knn_seconds: per function; coverage(num_points): fraction of input points that
    belong to at least one patch (from the recorded kNN indices of the last call).
    """

    def __init__(self, keep_indices: bool = False):
        self.keep_indices = keep_indices
        self.seconds = 0.0
        self.per_function: dict[str, float] = {}
        self.calls: dict[str, int] = {}
        self.last_knn = None
        self._depth = 0

    def enter(self, name):
        self._depth += 1

    def exit(self, name, result, seconds):
        self._depth -= 1
        self.calls[name] = self.calls.get(name, 0) + 1
        if name != "group_patches":
            self.per_function[name] = self.per_function.get(name, 0.0) + seconds
        if self._depth == 0:
            self.seconds += seconds
        if name == "knn" and self.keep_indices and result is not None:
            self.last_knn = result.detach()

    def watch(self, sync=None):
        return watch_grouping(self.enter, self.exit, sync=sync)

    def coverage(self, num_points: int) -> float | None:
        """Fraction of the N input points inside at least one patch (first cloud of the batch)."""
        if self.last_knn is None:
            return None
        import torch

        idx = self.last_knn[0].reshape(-1)
        return float(torch.unique(idx).numel() / num_points)
