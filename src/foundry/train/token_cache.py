"""Teacher target tokens cached on disk, so distillation runs the frozen teacher once.

A cache is a folder:

    header.json   what it holds: teacher identity (name, kind, config, weight fingerprint), target
                  layer, data specs (and the subset of their clouds, when not all), clouds, points,
                  views, view seeds, augmentation, shapes, dtypes,
                  sha256 of every array file, build wall time
    points.npy    (V, M, N, 3) float32: the exact (augmented) clouds the teacher saw
    tokens.npy    (V, M, G, C) float16: the teacher's normed tokens of the target layer
    centers.npy   (V, M, G, 3) float32: the teacher's patch centres (the student must match them)

V views per cloud: view v of every cloud is augmented with a generator seeded by view_seeds[v]
(seed 0 and `augment=False` give the clouds as they are). A build writes its arrays under private
temporary names, renames them into place and writes the header last, so a folder without a
complete header is an unfinished build, and a process still reading the old arrays (memmaps)
keeps reading the old files. Builds and reuse take turns through a lock file next to the folder
(`.NAME.lock`): a second run waits for the first build and then reuses it. `open_token_cache`
refuses a cache built for another teacher (by weight content, not by the path it was given as),
layer, data or view set, and one whose files do not match their checksums, with an error that
says what to do.
"""
from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from ..data import augment_batch
from ..io import atomic_write, file_sha256, identity_config, remove_stale_temporaries, weights_fingerprint
from ..locks import file_lock
from ..validation import FoundryInputError

CACHE_FORMAT = "foundry-token-cache"
CACHE_VERSION = 1
FILES = ("points", "tokens", "centers")
REQUIRED_KEYS = ("teacher", "checksums", "shapes")


def teacher_identity(teacher: torch.nn.Module, name: str) -> dict:
    return {"name": str(name), "kind": teacher.kind, "config": identity_config(teacher),
            "fingerprint": weights_fingerprint(teacher), "token_dim": int(teacher.token_dim)}


def draw_points(points: torch.Tensor, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """A random subset of n points per cloud of a (B, P, 3) batch (the batch itself when P == n)."""
    if points.shape[1] == n:
        return points
    keep = torch.rand(points.shape[:2], generator=generator).argsort(1)[:, :n]
    return torch.gather(points, 1, keep.unsqueeze(-1).expand(-1, -1, 3))


class TokenCache:
    """Read access to a verified cache: `points[v, i]`, `tokens[v, i]`, `centers[v, i]` (memmaps)."""

    def __init__(self, folder: Path, header: dict):
        self.folder = Path(folder)
        self.header = header
        self.points = np.load(self.folder / "points.npy", mmap_mode="r")
        self.tokens = np.load(self.folder / "tokens.npy", mmap_mode="r")
        self.centers = np.load(self.folder / "centers.npy", mmap_mode="r")

    @property
    def views(self) -> int:
        return self.tokens.shape[0]

    def __len__(self) -> int:
        return self.tokens.shape[1]

    def get(self, view: np.ndarray, index: np.ndarray):
        """Batch of (points, tokens float32, centers) torch tensors for view/index arrays."""
        view, index = np.asarray(view), np.asarray(index)
        pts = torch.from_numpy(np.ascontiguousarray(self.points[view, index]))
        tok = torch.from_numpy(np.ascontiguousarray(self.tokens[view, index])).float()
        cen = torch.from_numpy(np.ascontiguousarray(self.centers[view, index]))
        return pts, tok, cen


def expected_header(teacher_id: dict, *, layer: int, data: list[str], num_points: int, views: int,
                    seed: int, augment: bool, subset: dict | None = None) -> dict:
    """The fields a cache must agree on to be reused. subset: None when the cache holds every cloud
    of `data` (caches written before this field existed read as None), else a record of which
    clouds it holds (e.g. `foundry.train.distill.training_cache`'s), so a subset cache and a full
    one are never taken for each other."""
    return {"teacher": teacher_id, "layer": int(layer), "data": list(data), "num_points": int(num_points),
            "views": int(views), "view_seeds": [int(seed) * 1000 + v for v in range(views)], "augment": bool(augment),
            "subset": subset}


def _mismatches(header: dict, want: dict) -> list[str]:
    out = []
    for k, v in want.items():
        have = header.get(k)
        if k == "teacher":
            for tk in ("fingerprint", "token_dim"):  # the weights, not the name or path they were given by
                if (have or {}).get(tk) != v.get(tk):
                    out.append(f"teacher {tk}: cache {(have or {}).get(tk)!r} vs now {v.get(tk)!r}")
            # and the grouping's outlier filter (a config without the field: written while it was off)
            filt = [bool(((d or {}).get("config") or {}).get("outlier_filter", False)) for d in (have, v)]
            if filt[0] != filt[1]:
                out.append(f"teacher outlier_filter: cache {filt[0]} vs now {filt[1]}")
        elif json.dumps(have, sort_keys=True) != json.dumps(v, sort_keys=True):
            out.append(f"{k}: cache {have!r} vs now {v!r}")
    return out


def cache_matches(folder, want: dict) -> bool:
    """Whether `folder` holds a finished cache whose header agrees with `want` (files not checked)."""
    try:
        header = json.loads((Path(folder) / "header.json").read_text())
    except (OSError, ValueError):  # JSON or UTF-8 errors
        return False
    return (header.get("format"), header.get("version")) == (CACHE_FORMAT, CACHE_VERSION) and not _mismatches(header, want)


def open_token_cache(folder, want: dict | None = None, *, verify: bool = True) -> TokenCache:
    """Open and check a cache. `want`: from `expected_header`; any difference is refused.
    verify: recompute the sha256 of every array file."""
    folder = Path(folder)
    hp = folder / "header.json"
    if not hp.exists():
        raise FoundryInputError(f"no complete token cache at {folder} (header.json missing: an unfinished or foreign "
                                "folder); delete it, or rebuild with --rebuild-cache")
    try:
        header = json.loads(hp.read_text())
    except (OSError, ValueError) as exc:  # JSON or UTF-8 errors
        raise FoundryInputError(f"token cache header {hp} is unreadable ({exc}); delete {folder} or pass --rebuild-cache") from exc
    if not isinstance(header, dict) or header.get("format") != CACHE_FORMAT or header.get("version") != CACHE_VERSION:
        raise FoundryInputError(f"{folder} is not a Foundry token cache of version {CACHE_VERSION}; delete it or pass --rebuild-cache")
    missing = [k for k in REQUIRED_KEYS if not isinstance(header.get(k), dict)
               or (k in ("checksums", "shapes") and set(header[k]) != set(FILES))]
    if missing:
        raise FoundryInputError(f"token cache header {hp} lacks (or has damaged) entries {missing}: the header was "
                                "edited or damaged; delete the folder or pass --rebuild-cache")
    if want is not None:
        diffs = _mismatches(header, want)
        if diffs:
            raise FoundryInputError(f"the token cache at {folder} was built for other settings ({'; '.join(diffs)}); "
                                    "use another --cache folder or pass --rebuild-cache")
    for name in FILES:
        path = folder / f"{name}.npy"
        if not path.exists():
            raise FoundryInputError(f"token cache {folder} is corrupt: {path.name} is missing; pass --rebuild-cache")
        if verify and file_sha256(path) != header["checksums"][name]:
            raise FoundryInputError(f"token cache {folder} is corrupt: {path.name} does not match its checksum "
                                    "(changed or truncated since it was built); delete it or pass --rebuild-cache")
    try:
        cache = TokenCache(folder, header)
    except (ValueError, OSError) as exc:
        raise FoundryInputError(f"token cache {folder} is corrupt ({exc}); pass --rebuild-cache") from exc
    shapes = {n: list(getattr(cache, n).shape) for n in FILES}
    if shapes != header["shapes"]:
        raise FoundryInputError(f"token cache {folder} is corrupt: array shapes {shapes} differ from its header "
                                f"{header['shapes']}; pass --rebuild-cache")
    return cache


@torch.no_grad()
def build_token_cache(folder, teacher, dataset, want: dict, *, batch_size: int = 32, device="cpu",
                      augment_kwargs: dict | None = None, progress=None) -> TokenCache:
    """Run the frozen teacher over V views of every cloud of `dataset` and write the cache.

    dataset items: dicts with "points" (N, 3) or tensors. `want` from `expected_header`. The
    arrays are built under temporary names and published (renamed, header last) only when
    complete, so an interrupted build leaves any earlier cache as it was. Callers that may run
    concurrently should go through `load_or_build`, which holds the cache's lock.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for name in FILES + ("header.json",):
        remove_stale_temporaries(folder / (name if name.endswith(".json") else f"{name}.npy"))
    teacher = teacher.eval().to(device)
    m, v_count, n = len(dataset), want["views"], want["num_points"]
    layer = want["layer"]
    probe = dataset[0]
    probe = probe["points"] if isinstance(probe, dict) else probe
    if probe.shape[0] < n:
        raise FoundryInputError(f"the data has {probe.shape[0]} points per cloud, the cache wants {n}")
    g, c = teacher.config.num_groups, teacher.token_dim
    specs = {"points": (np.float32, (v_count, m, n, 3)), "tokens": (np.float16, (v_count, m, g, c)),
             "centers": (np.float32, (v_count, m, g, 3))}
    tmp = {}
    try:
        for name in FILES:
            fd, tmp[name] = tempfile.mkstemp(prefix=f".{name}.npy.{os.getpid()}.", suffix=".tmp", dir=folder)
            os.close(fd)
        arrays = {name: np.lib.format.open_memmap(tmp[name], "w+", *specs[name]) for name in FILES}
        aug = dict(augment_kwargs or {})
        t0 = time.time()
        done = 0
        for v, vseed in enumerate(want["view_seeds"]):
            gen = torch.Generator().manual_seed(vseed)
            for start in range(0, m, batch_size):
                idx = range(start, min(m, start + batch_size))
                items = [dataset[i] for i in idx]
                pts = draw_points(torch.stack([it["points"] if isinstance(it, dict) else it for it in items]).float(), n, gen)
                if want["augment"]:
                    pts = augment_batch(pts, generator=gen, **aug)
                (tok,), centers = teacher.forward_layers(pts.to(device), [layer])
                if not bool(torch.isfinite(tok).all()):
                    raise FoundryInputError(f"the teacher gave NaN/Inf tokens for clouds {start}..{start + len(items) - 1} "
                                            "while building the token cache; check the teacher checkpoint and the data")
                sl = slice(start, start + len(items))
                arrays["points"][v, sl] = pts.cpu().numpy()
                arrays["tokens"][v, sl] = tok.float().cpu().numpy().astype(np.float16)
                arrays["centers"][v, sl] = centers.float().cpu().numpy()
                done += len(items)
                if progress is not None:
                    progress(done, m * v_count, time.time() - t0)
        for a in arrays.values():
            a.flush()
        del arrays
        header = {"format": CACHE_FORMAT, "version": CACHE_VERSION, **want,
                  "augment_kwargs": aug, "shapes": {name: list(specs[name][1]) for name in FILES},
                  "dtypes": {"points": "float32", "tokens": "float16", "centers": "float32"},
                  "checksums": {name: file_sha256(Path(tmp[name])) for name in FILES},
                  "build_wall_s": round(time.time() - t0, 1), "build_device": str(device),
                  "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        # publish: the old header goes first (the folder reads as unfinished), the arrays are
        # renamed over the old ones (open memmaps keep the old files), the new header comes last
        (folder / "header.json").unlink(missing_ok=True)
        for name in FILES:
            os.chmod(tmp[name], 0o644)
            os.replace(tmp[name], folder / f"{name}.npy")
    finally:
        for path in tmp.values():
            if os.path.exists(path):
                os.unlink(path)

    def write(tmp_path):
        with open(tmp_path, "w") as f:
            json.dump(header, f, indent=1)

    atomic_write(folder / "header.json", write)
    return open_token_cache(folder, want, verify=False)


def lock_path(folder) -> Path:
    """The lock file of the cache at `folder` (next to it, so the folder holds only the cache)."""
    folder = Path(folder).absolute()
    return folder.parent / f".{folder.name}.lock"


def load_or_build(folder, teacher, dataset, want: dict, *, rebuild: bool = False, log=print,
                  **kwargs) -> tuple[TokenCache, bool]:
    """Open the cache at `folder` if it exists and matches `want` (else raise); build it when the
    folder has no header yet or `rebuild`. Returns (cache, built_now). Holds the cache's lock, so
    a run that finds another one building the same cache waits for it and then reuses it."""
    folder = Path(folder)
    with file_lock(lock_path(folder), log=log,
                   waiting_message=f"[foundry] another process is building or checking the token cache {folder}; "
                                   "waiting for it to finish"):
        if not rebuild and (folder / "header.json").exists():
            return open_token_cache(folder, want), False
        if not rebuild and folder.exists() and any(p for p in folder.iterdir() if not p.name.startswith(".")) \
                and not (folder / "points.npy").exists():
            raise FoundryInputError(f"{folder} exists and is not a token cache; choose another --cache folder")
        return build_token_cache(folder, teacher, dataset, want, **kwargs), True


__all__ = ["TokenCache", "build_token_cache", "cache_matches", "draw_points", "expected_header", "load_or_build",
           "open_token_cache", "teacher_identity"]
