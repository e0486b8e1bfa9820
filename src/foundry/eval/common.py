"""What every evaluation protocol shares: loading a split once (with a checksum), fixed
subsets, frozen feature / token extraction with caches, seeding, statistics and provenance.

Rule for every protocol: the clouds (which ones, fixed subsets) are the same for every model
and every seed. An evaluation seed varies what really varies between runs of a protocol, and
varies it identically for every model: each cloud's point order (hence the FPS start and the
patches), the subsample of points where a cloud holds more than the protocol reads
(`seeded_view`), and the protocol's own randomness (classifier or head initialisation, SGD
order, few-shot folds). Teacher, students and baselines therefore see exactly the same inputs.
"""
from __future__ import annotations

import hashlib
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..data import load_arrays, open_dataset
from ..io import atomic_write
from ..validation import FoundryInputError
from ..version import __version__
from .svm import extract_features

DATA_SEED = 0  # fixes subsets and point order for every model and seed


# ----------------------------------------------------------------------------- data

@dataclass
class Split:
    """One split of a data set as numpy arrays, plus where it came from and its checksum."""

    points: np.ndarray  # (M, N, 3) float32
    labels: np.ndarray  # (M,) int64
    parts: np.ndarray | None = None  # (M, N) int64
    class_names: list = field(default_factory=list)
    category_parts: dict | None = None  # category -> list of global part ids
    spec: str = "arrays"
    split: str = ""
    base_sha256: str | None = None  # set on a seeded view: the checksum of the clouds it was drawn from

    def __post_init__(self):
        self.points = np.ascontiguousarray(self.points, dtype=np.float32)
        self.labels = np.asarray(self.labels).reshape(-1).astype(np.int64)
        if self.points.ndim != 3 or self.points.shape[-1] != 3:
            raise FoundryInputError(f"{self.name}: points must be (M, N, 3), got shape {self.points.shape}")
        if self.points.shape[0] != self.labels.shape[0]:
            raise FoundryInputError(f"{self.name}: {self.points.shape[0]} clouds but {self.labels.shape[0]} labels")
        if self.points.shape[0] == 0:
            raise FoundryInputError(f"{self.name} is empty")
        if self.parts is not None:
            self.parts = np.asarray(self.parts).astype(np.int64)
            if self.parts.shape != self.points.shape[:2]:
                raise FoundryInputError(f"{self.name}: part labels have shape {self.parts.shape}, "
                                        f"expected one per point {self.points.shape[:2]}")
        if self.category_parts is not None:
            self.category_parts = {int(k): [int(p) for p in v] for k, v in self.category_parts.items()}

    @property
    def name(self) -> str:
        return f"{self.spec}:{self.split}" if self.split else self.spec

    def __len__(self) -> int:
        return int(self.points.shape[0])

    @property
    def num_classes(self) -> int:
        return max(len(self.class_names), int(self.labels.max()) + 1)

    def checksum(self) -> str:
        h = hashlib.sha256()
        for a in (self.points, self.labels) + ((self.parts,) if self.parts is not None else ()):
            h.update(str(a.shape).encode())
            h.update(np.ascontiguousarray(a).tobytes())
        return h.hexdigest()

    def subset(self, index) -> "Split":
        index = np.asarray(index, dtype=np.int64)
        return Split(self.points[index], self.labels[index], None if self.parts is None else self.parts[index],
                     list(self.class_names), self.category_parts, self.spec, self.split)

    def describe(self) -> dict:
        out = {"spec": self.spec, "split": self.split, "clouds": len(self), "points": int(self.points.shape[1]),
               "classes": self.num_classes, "sha256": self.checksum()}
        if self.base_sha256 is not None:
            out["base_sha256"] = self.base_sha256
        return out


def seeded_view(split: Split, seed: int, num_points: int | None = None) -> Split:
    """The same clouds as evaluation seed `seed` sees them, for every model alike: the points of
    each cloud in a seeded random order (the FPS start, and so the patches, change; the shape does
    not) and, where a cloud holds more than `num_points` points, the first `num_points` of that
    order (a seeded subsample). Part labels follow their points."""
    n = split.points.shape[1]
    if num_points is not None and num_points > n:
        raise FoundryInputError(f"{split.name} has {n} points per cloud, fewer than the {num_points} asked for; "
                                "lower num_points")
    rng = np.random.default_rng(seed)
    order = np.argsort(rng.random(split.points.shape[:2]), axis=1)[:, :num_points or n]
    pts = np.take_along_axis(split.points, order[..., None], axis=1)
    parts = None if split.parts is None else np.take_along_axis(split.parts, order, axis=1)
    return Split(pts, split.labels, parts, list(split.class_names), split.category_parts, split.spec, split.split,
                 split.base_sha256 or split.checksum())



def stratified_cap(labels: np.ndarray, max_per_class: int | None, seed: int = DATA_SEED) -> np.ndarray:
    """Indices (sorted) keeping at most `max_per_class` items of each class, chosen with a fixed seed."""
    labels = np.asarray(labels)
    if not max_per_class:
        return np.arange(len(labels))
    rng = np.random.default_rng(seed)
    keep = []
    for c in np.unique(labels):
        idx = np.nonzero(labels == c)[0]
        if len(idx) > max_per_class:
            idx = rng.choice(idx, max_per_class, replace=False)
        keep.append(idx)
    return np.sort(np.concatenate(keep))


def _category_parts_from(obj) -> dict | None:
    cp = obj.get("category_parts") if isinstance(obj, dict) else getattr(obj, "category_parts", None)
    if cp is None:
        return None
    if isinstance(cp, dict):
        return {int(k) if str(k).lstrip("-").isdigit() else k: v for k, v in cp.items()}
    return None


def infer_category_parts(labels: np.ndarray, parts: np.ndarray) -> dict:
    """Category -> sorted part ids seen in that category (used when a data set does not say)."""
    out = {}
    for c in np.unique(labels):
        out[int(c)] = sorted(int(p) for p in np.unique(parts[labels == c]) if p >= 0)
    return out


def no_parts_error(spec, split) -> FoundryInputError:
    return FoundryInputError(
        f"data set {spec!r} ({split}) has no per-point part labels, so part segmentation cannot run on it; "
        "use 'kicadpart' or a ShapeNetPart folder (h5 with 'pid' / 'seg', or the text layout)")


def load_split(spec: str, split: str, num_points: int | None = None, max_per_class: int | None = None,
               need_parts: bool = False) -> Split:
    """Load `spec`/`split` through foundry.data (bundled name, "synthetic[:N]" or a folder), keep
    the first `num_points` points of each cloud and at most `max_per_class` clouds per class."""
    arrays = load_arrays(spec, split, num_points=num_points)
    points = np.asarray(arrays["points"], dtype=np.float32)
    if num_points and points.shape[1] > num_points:
        points = points[:, :num_points]
    if num_points and points.shape[1] < num_points:
        raise FoundryInputError(f"{spec}:{split} has {points.shape[1]} points per cloud, fewer than the "
                                f"{num_points} this protocol asks for; lower num_points")
    parts = arrays.get("parts")
    if parts is not None:
        parts = np.asarray(parts)[:, :points.shape[1]]
    labels = np.asarray(arrays["labels"]).reshape(-1)
    if need_parts and parts is None:
        raise no_parts_error(spec, split)
    cp = _category_parts_from(arrays)
    if cp is None and parts is not None:
        try:
            cp = _category_parts_from(open_dataset(spec, split))
        except Exception:  # noqa: BLE001 - fall back to what the labels show
            cp = None
        if cp is not None and not all(isinstance(k, int) for k in cp):
            names = list(arrays.get("class_names") or [])
            cp = {names.index(k): v for k, v in cp.items() if k in names} if names else None
    out = Split(points, labels, parts, list(arrays.get("class_names") or []), cp, spec, split)
    if max_per_class:
        out = out.subset(stratified_cap(out.labels, max_per_class))
    return out


# ----------------------------------------------------------------------------- models

def model_depth(model) -> int | None:
    """The number of blocks whose outputs heads read: a student's are its teacher's."""
    cfg = getattr(model, "config", None)
    for key in ("teacher_depth", "depth", "encoder_depth"):
        d = getattr(cfg, key, None)
        if isinstance(d, int) and d > 0:
            return d
    return None


def default_layers(depth: int | None) -> list[int] | None:
    """Three evenly spaced blocks ending at the last: [3, 7, 11] for 12 blocks, [1, 3, 5] for 6."""
    if not depth or depth < 2:
        return None
    return sorted({max(0, round(depth * k / 3) - 1) for k in (1, 2, 3)})


@torch.no_grad()
def extract_tokens(model, points: np.ndarray, layers: list[int] | None = None, batch_size: int = 32,
                   device="cpu", dtype=torch.float32):
    """Tokens (M, G, C*L) (the chosen layers concatenated, or the final tokens when `layers` is
    None) and centres (M, G, 3) as CPU tensors."""
    was = model.training
    model.eval()
    toks, cents = [], []
    try:
        for s in range(0, len(points), batch_size):
            batch = torch.from_numpy(np.ascontiguousarray(points[s:s + batch_size])).to(device=device,
                                                                                         dtype=torch.float32)
            if layers:
                outs, c = model.forward_layers(batch, list(layers))
                t = torch.cat([o.float() for o in outs], dim=-1)
            else:
                t, c = model.forward_tokens(batch)
            toks.append(t.float().cpu().to(dtype))
            cents.append(c.float().cpu())
    finally:
        model.train(was)
    return torch.cat(toks), torch.cat(cents)


def resolve_layers(model, layers, points_example: np.ndarray, device="cpu") -> list[int] | None:
    """The block indices to read ("auto": three spread blocks where forward_layers works and gives
    (B, G, C) tokens, else None = the final tokens)."""
    if layers in (None, "final", "none", []):
        return None
    if layers == "auto":
        layers = default_layers(model_depth(model))
        if layers is None or not hasattr(model, "forward_layers"):
            return None
    layers = [int(x) for x in layers]
    try:
        with torch.no_grad():
            x = torch.from_numpy(np.ascontiguousarray(points_example[:1])).to(device)
            outs, c = model.forward_layers(x, layers)
        if len(outs) != len(layers) or any(o.dim() != 3 or o.shape[1] != c.shape[1] for o in outs):
            return None
    except Exception as exc:  # noqa: BLE001
        if layers == default_layers(model_depth(model)):
            return None
        raise FoundryInputError(f"{type(model).__name__}.forward_layers({layers}) failed: {exc}") from exc
    return layers


class FeatureCache:
    """Frozen global features per (model, split), in memory (shared by every run in this process,
    so `foundry compare` extracts the teacher's reference features once) and optionally on disk."""

    _shared: dict = {}
    MAX_SHARED = 32

    def __init__(self, folder: str | Path | None = None):
        self.folder = Path(folder) if folder else None
        self.mem = FeatureCache._shared
        while len(self.mem) > self.MAX_SHARED:
            self.mem.pop(next(iter(self.mem)))

    def features(self, model, split: Split, fingerprint: str, batch_size: int = 64, device="cpu",
                 progress: bool = False, remember: bool = True) -> np.ndarray:
        """remember=False: on disk only, not kept in this process's memory (features read once, e.g. the
        robustness protocol's corrupted test clouds: dozens per model and seed)."""
        key = (fingerprint, split.checksum())
        if key in self.mem:
            return self.mem[key]
        path = None
        if self.folder is not None:
            path = self.folder / f"features_{fingerprint[:16]}_{key[1][:16]}.npz"
            feats = _read_features(path, len(split))
            if feats is not None:
                if remember:
                    self.mem[key] = feats
                return feats
        feats = extract_features(model, split.points, batch_size=batch_size, device=device, progress=progress)
        if not np.isfinite(feats).all():
            raise FoundryInputError(f"the model produced NaN/Inf features on {split.name}")
        if path is not None:
            digest = hashlib.sha256(np.ascontiguousarray(feats).tobytes()).hexdigest()

            def write(tmp):
                with open(tmp, "wb") as f:
                    np.savez(f, features=feats, sha256=np.array(digest))

            atomic_write(path, write)
        if remember:
            self.mem[key] = feats
        return feats


def _read_features(path: Path, rows: int) -> np.ndarray | None:
    """Cached features at `path` if present and intact (its recorded sha256 matches); a damaged
    file is reported and None returned, so the features are extracted again."""
    if not path.exists():
        return None
    try:
        with np.load(path) as z:
            feats, digest = z["features"], str(z["sha256"])
        intact = (feats.ndim == 2 and feats.shape[0] == rows
                  and hashlib.sha256(np.ascontiguousarray(feats).tobytes()).hexdigest() == digest)
    except Exception as exc:  # noqa: BLE001 - zip, pickle-free npy and key errors alike mean a damaged file
        intact, feats = False, None
        reason = f"unreadable ({type(exc).__name__})"
    else:
        reason = "does not match its checksum"
    if not intact:
        print(f"[foundry] feature cache {path} {reason}; extracting the features again")
        return None
    return feats


# ----------------------------------------------------------------------------- seeds, stats

def seed_everything(seed: int) -> torch.Generator:
    import random

    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def mean_std(values) -> dict:
    """Mean and sample standard deviation (ddof=1; 0 for a single value) of a list of numbers."""
    v = np.asarray([float(x) for x in values], dtype=np.float64)
    if v.size == 0:
        return {"mean": float("nan"), "std": float("nan"), "n": 0}
    return {"mean": float(v.mean()), "std": float(v.std(ddof=1)) if v.size > 1 else 0.0, "n": int(v.size)}


# ----------------------------------------------------------------------------- provenance

def package_versions() -> dict:
    out = {"foundry": __version__, "python": sys.version.split()[0], "torch": torch.__version__,
           "numpy": np.__version__}
    from importlib.metadata import PackageNotFoundError, version

    for key, dist in (("sklearn", "scikit-learn"), ("lightning", "lightning"), ("safetensors", "safetensors")):
        try:
            out[key] = version(dist)  # without importing the package (lightning takes seconds)
        except PackageNotFoundError:
            pass
    return out


def git_commit() -> dict | None:
    here = Path(__file__).resolve().parent
    try:
        rev = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=10)
        if rev.returncode != 0:
            return None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                               capture_output=True, text=True, timeout=10)
        return {"commit": rev.stdout.strip(), "dirty": bool(dirty.stdout.strip())}
    except (OSError, subprocess.SubprocessError):
        return None


