"""When an accelerated CPU backend may stand in for a plain-torch point op.

FPS and kNN return indices, so no gradient flows through them, and on CPU an optional package
(`fpsample`, SciPy's `cKDTree`) can compute the same indices far faster than a Python loop of
tensor ops. The plain-torch code stays the definition and the path for GPUs, for tracing / ONNX
export / torch.compile (the accelerators are not tensor ops), and wherever the caller forces it:
`with plain_grouping(): ...` or the environment variable FOUNDRY_GROUPING=plain.
"""
from __future__ import annotations

import contextlib
import os

import torch

_forced_plain = 0


@contextlib.contextmanager
def plain_grouping():
    """Inside this block FPS and kNN always run their plain-torch code (for A/B checks)."""
    global _forced_plain
    _forced_plain += 1
    try:
        yield
    finally:
        _forced_plain -= 1


def _tracing() -> bool:
    compiling = getattr(getattr(torch, "compiler", None), "is_compiling", lambda: False)()
    return torch.jit.is_tracing() or torch.onnx.is_in_onnx_export() or compiling


def accelerated_cpu_allowed(*tensors: torch.Tensor) -> bool:
    """True when every tensor lives on the CPU, nothing is being traced or compiled, and the
    plain path is not forced."""
    if _forced_plain or os.environ.get("FOUNDRY_GROUPING", "").lower() == "plain":
        return False
    if _tracing():
        return False
    return all(t.device.type == "cpu" for t in tensors)


def cpu_workers() -> int:
    """Threads an accelerator may use: torch's own setting, so `--threads` governs both."""
    return max(1, torch.get_num_threads())


def preload() -> None:
    """Import the optional accelerators now (SciPy's spatial module takes ~0.5 s to import), so
    that a timed first call does not pay for it."""
    import contextlib as _c

    for mod in ("scipy.spatial", "pykdtree.kdtree", "fpsample"):
        with _c.suppress(ImportError):
            __import__(mod)
