"""How closely a model reproduces a reference model's (the teacher's) representation.

Protocol: on a split (default ModelNet10 test), both models see the same clouds; for each seed the
points of every cloud are put in the same seeded random order for both models (so the FPS start,
and hence the patches, vary with the seed; the spread over seeds is the metric's sensitivity to
point sampling). Reported:
- `smooth_l1`: SmoothL1 (beta from the settings) between the model's and the reference's final
  tokens, averaged over all token entries (needs equal token widths);
- `cosine`: mean cosine similarity of corresponding tokens (needs equal widths);
- `cka_tokens`: linear CKA between the two token matrices (all tokens of all clouds as rows;
  works across widths);
- `cka_features`: linear CKA between the global features (`forward_features`).
Tokens correspond by patch: directly when both models put their patch centres at the same
places, else each reference patch takes the model token whose centre is nearest.
"""
from __future__ import annotations

import numpy as np
import torch

from ..models.backbone import pool_tokens
from ..validation import FoundryInputError
from .common import extract_tokens
from .svm import extract_features

DEFAULTS = dict(data="modelnet10", split="test", num_points=1024, per_class=None, beta=1.0)
QUICK = dict(per_class=5)
METRICS = ("smooth_l1", "cosine", "cka_tokens", "cka_features")


def linear_cka(x, y) -> float:
    """Linear CKA (Kornblith et al. 2019) between (n, p) and (n, q) matrices, via the feature-space
    form ||Yc^T Xc||_F^2 / (||Xc^T Xc||_F ||Yc^T Yc||_F); 1 for identical, 0 for unrelated."""
    x = torch.as_tensor(np.asarray(x), dtype=torch.float64)
    y = torch.as_tensor(np.asarray(y), dtype=torch.float64)
    if x.shape[0] != y.shape[0]:
        raise FoundryInputError(f"CKA needs the same rows in both matrices, got {x.shape[0]} and {y.shape[0]}")
    x = x - x.mean(0, keepdim=True)
    y = y - y.mean(0, keepdim=True)
    num = (y.T @ x).pow(2).sum()
    den = (x.T @ x).pow(2).sum().sqrt() * (y.T @ y).pow(2).sum().sqrt()
    return float(num / den) if float(den) > 0 else 0.0


def match_tokens(tokens, centers, ref_centers):
    """Reorder `tokens` (B, G, C) to correspond to `ref_centers` (B, G', 3) (nearest centre)."""
    if centers.shape == ref_centers.shape and torch.allclose(centers, ref_centers, atol=1e-5):
        return tokens, "same-centres"
    idx = torch.cdist(ref_centers, centers).argmin(-1)  # (B, G')
    return torch.gather(tokens, 1, idx.unsqueeze(-1).expand(-1, -1, tokens.shape[-1])), "nearest-centre"


_CACHE: dict = {}  # (fingerprint, data checksum, seed) -> outputs; the teacher's are reused across models


def _pooling_of(model) -> str | None:
    cfg = getattr(model, "config", None)
    for obj, name in ((cfg, "pooling"), (cfg, "teacher_pooling"), (getattr(getattr(model, "teacher", None), "config",
                                                                            None), "pooling")):
        p = getattr(obj, name, None)
        if isinstance(p, str) and not p.startswith("cls"):
            return p
    return None


def tokens_and_features(model, fingerprint, points, key, batch_size=32, device="cpu"):
    """(tokens, centres, global features) of `points`; features are pooled from the tokens when that
    gives exactly `forward_features` (checked on two clouds), saving a second forward pass."""
    ck = (fingerprint, *key)
    if ck in _CACHE:
        return _CACHE[ck]

    tok, cen = extract_tokens(model, points, None, batch_size, device)
    pooling = _pooling_of(model)
    feats = None
    if pooling is not None:
        direct = extract_features(model, points[:2], 2, device)
        pooled = pool_tokens(tok[:2].float(), pooling).numpy()
        if pooled.shape == direct.shape and np.allclose(pooled, direct, atol=1e-4, rtol=1e-4):
            feats = pool_tokens(tok.float(), pooling).numpy()
    if feats is None:
        feats = extract_features(model, points, batch_size, device)
    while len(_CACHE) >= 6:
        _CACHE.pop(next(iter(_CACHE)))
    _CACHE[ck] = (tok, cen, feats)
    return _CACHE[ck]


def run(ctx, settings: dict, seed: int) -> dict:
    s = settings
    if ctx.reference is None:
        raise FoundryInputError("fidelity compares a model with a reference: pass --reference (e.g. the teacher)")
    data = ctx.split(s["data"], s["split"], s["num_points"], s["per_class"], seed=seed)
    pts = data.points
    key = (data.checksum(), seed)
    tok, cen, feats = tokens_and_features(ctx.model, ctx.fingerprint, pts, key, ctx.batch_size, ctx.device)
    rtok, rcen, rfeats = tokens_and_features(ctx.reference, ctx.reference_fingerprint, pts, key, ctx.batch_size,
                                             ctx.reference_device)
    tok, how = match_tokens(tok, cen, rcen)
    metrics = {"cka_tokens": linear_cka(tok.reshape(-1, tok.shape[-1]), rtok.reshape(-1, rtok.shape[-1])),
               "cka_features": linear_cka(feats, rfeats)}
    if tok.shape[-1] == rtok.shape[-1]:
        metrics["smooth_l1"] = float(torch.nn.functional.smooth_l1_loss(tok, rtok, beta=s["beta"]))
        metrics["cosine"] = float(torch.nn.functional.cosine_similarity(tok, rtok, dim=-1).mean())
    return {"metrics": metrics,
            "details": {"token_match": how, "token_width": int(tok.shape[-1]), "reference_width": int(rtok.shape[-1]),
                        "tokens_per_cloud": int(rtok.shape[1]), "reference": ctx.reference_name,
                        "note": None if tok.shape[-1] == rtok.shape[-1] else
                        "token widths differ: smooth_l1 and cosine are undefined, CKA only"},
            "data": {"split": data.describe()}}
