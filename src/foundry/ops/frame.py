"""A safe numeric frame for distance comparisons: FPS and kNN square coordinate differences, which
overflow float32 beyond about 5e18 (every distance becomes inf, FPS then repeats one index and
kNN returns NaN-ordered neighbours) and underflow to 0 below about 1e-19 (every distance ties).

Both only compare distances, and comparisons do not change when a cloud is scaled by a power of
two (`torch.ldexp` is exact), so each cloud whose largest |coordinate| is outside [2^-30, 2^60]
is rescaled to a largest |coordinate| in [0.5, 1). Clouds inside that range pass through
untouched, so ordinary inputs give bit-identical results.
"""
from __future__ import annotations

import torch

_LOW, _HIGH = 2.0 ** -30, 2.0 ** 60


def comparable_frame(*clouds: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """The clouds ((B, N_i, 3) each, same batch) rescaled per batch item by one power of two where
    their joint magnitude would overflow or underflow squared distances; others unchanged."""
    if torch.jit.is_tracing() or torch.onnx.is_in_onnx_export() or clouds[0].device.type == "meta":
        return clouds  # exported graphs keep the plain arithmetic
    per_cloud = [c.detach().abs().amax(dim=(1, 2)) for c in clouds]
    amax = per_cloud[0] if len(per_cloud) == 1 else torch.stack(per_cloud).amax(0)  # (B,)
    lo, hi = (float(v) for v in torch.aminmax(amax))  # one reduction, one sync: the common case
    if _LOW <= lo and hi <= _HIGH or hi != hi or hi == float("inf"):
        return clouds  # inside the safe range, or non-finite (left to the callers' checks)
    off = (amax > _HIGH) | ((amax < _LOW) & (amax > 0))
    if not bool(off.any()):
        return clouds
    _, exponent = torch.frexp(amax.double())
    shift = torch.where(off, -exponent, torch.zeros_like(exponent)).view(-1, 1, 1)
    return tuple(torch.ldexp(c, shift.to(c.device)).to(c.dtype) for c in clouds)
