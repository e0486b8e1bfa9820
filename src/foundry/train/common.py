"""Training plumbing shared by `foundry pretrain` and `foundry distill`.

- `make_fabric`: a Lightning Fabric with the right precision for the machine (bf16-mixed on CUDA,
  32-true on CPU); DDP through `strategy="ddp"` or by running under torchrun.
- `cosine_with_warmup` (from foundry.optim): linear warm-up then cosine decay, a LambdaLR stepped per step.
- `RunLogger`: metrics.csv (one row per `log` call, columns grow as new metrics appear) and
  TensorBoard, written on rank 0 only.
- `save_training_state` / `load_training_state`: one atomic file with everything needed to
  continue a run exactly (model, optimizer, scheduler, epoch, step, RNG states), refusing a file
  from a run with another configuration.
- `unlabelled_mix`: one dataset of point clouds from several sources ("modelnet10:train",
  "kicadpart:train", "synthetic:5000", a folder path, "folder:split").
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import random
from pathlib import Path
from typing import Iterable

import numpy as np
import torch
from torch import nn

from ..data import load_arrays
from ..io import atomic_write, remove_stale_temporaries
from ..models.checkpoint import load_state_strict
from ..optim import cosine_with_warmup  # noqa: F401  (part of this module's contract)
from ..validation import FoundryInputError

STATE_FORMAT = "foundry-training-state"
STATE_VERSION = 1
SPLITS = ("train", "test", "val", "valid", "trainval", "all")


# ---------------------------------------------------------------------------------------------
# Fabric and distributed helpers
# ---------------------------------------------------------------------------------------------
def default_precision() -> str:
    return "bf16-mixed" if torch.cuda.is_available() else "32-true"


def make_fabric(devices="auto", precision: str | None = None, strategy: str = "auto", accelerator: str = "auto"):
    """A (not yet launched) Lightning Fabric: bf16-mixed autocast on CUDA, 32-true on CPU by
    default. Under torchrun, Fabric picks up the process group from the environment; call
    `fabric.launch()` before use."""
    from lightning.fabric import Fabric

    return Fabric(accelerator=accelerator, devices=devices, precision=precision or default_precision(),
                  strategy=strategy)


def is_rank_zero() -> bool:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank() == 0
    return int(os.environ.get("RANK", os.environ.get("LOCAL_RANK", 0))) == 0


def unwrap(obj):
    """The plain module/optimizer inside Fabric or DDP wrappers."""
    for _ in range(4):
        if hasattr(obj, "_original_module"):
            obj = obj._original_module
        elif isinstance(obj, nn.parallel.DistributedDataParallel):
            obj = obj.module
        elif type(obj).__name__ == "_FabricOptimizer":
            obj = obj.optimizer
        else:
            break
    return obj


def sync_buffers(model, src: int = 0) -> None:
    """Give every process rank `src`'s buffers (BatchNorm running statistics) at the end of a DDP run.

    DDP copies rank 0's buffers to the others at the start of each forward, so after the last step
    each rank holds the statistics of its own last batch; without this the ranks end with different
    models. A no-op outside DDP."""
    dist = torch.distributed
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return
    for buf in unwrap(model).buffers():
        dist.broadcast(buf.data, src)


# ---------------------------------------------------------------------------------------------
# Learning-rate schedule
# ---------------------------------------------------------------------------------------------
# ---------------------------------------------------------------------------------------------
# Logging
# ---------------------------------------------------------------------------------------------
class RunLogger:
    """Append metrics to `out_dir/metrics.csv` and TensorBoard (`out_dir/tb`), rank 0 only.

    The CSV has a `step` column and one column per metric name seen so far; a new name rewrites
    the (small) file with the wider header. `resume_step`: when continuing a run, rows logged
    after that step (by the interrupted process, after its last checkpoint) are dropped, so the
    file reads like one uninterrupted run.
    """

    def __init__(self, out_dir, *, resume_step: int | None = None, tensorboard: bool = True):
        self.out_dir = Path(out_dir)
        self.path = self.out_dir / "metrics.csv"
        self.enabled = is_rank_zero()
        self.columns: list[str] = ["step"]
        self.rows: list[dict] = []
        self._tb = None
        if not self.enabled:
            return
        self.out_dir.mkdir(parents=True, exist_ok=True)
        if self.path.exists():
            if resume_step is None:
                self.path.unlink()
            else:
                self.columns, self.rows = _read_metrics(self.path, resume_step)
                self._rewrite()
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                purge = None if resume_step is None else resume_step + 1
                self._tb = SummaryWriter(str(self.out_dir / "tb"), purge_step=purge)
            except Exception as exc:  # tensorboard missing or broken: CSV still works
                print(f"[foundry] TensorBoard logging disabled ({exc})")
                self._tb = None

    def _rewrite(self) -> None:
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=self.columns, extrasaction="ignore")
        w.writeheader()
        for r in self.rows:
            w.writerow(r)
        text = buf.getvalue()

        def write(tmp):
            with open(tmp, "w", newline="") as f:
                f.write(text)

        atomic_write(self.path, write)

    def log(self, step: int, **metrics) -> None:
        if not self.enabled:
            return
        row = {"step": int(step)}
        for k, v in metrics.items():
            if isinstance(v, torch.Tensor):
                v = v.detach().float().item()
            row[k] = v
        self.rows.append(row)
        new = [k for k in row if k not in self.columns]
        if new:
            self.columns += new
            self._rewrite()
        else:
            with open(self.path, "a", newline="") as f:
                csv.DictWriter(f, fieldnames=self.columns, extrasaction="ignore").writerow(row)
        if self._tb is not None:
            for k, v in row.items():
                if k != "step" and isinstance(v, (int, float)) and not isinstance(v, bool):
                    self._tb.add_scalar(k, v, int(step))

    def close(self) -> None:
        if self._tb is not None:
            self._tb.flush()
            self._tb.close()
            self._tb = None


def _read_metrics(path: Path, resume_step: int) -> tuple[list[str], list[dict]]:
    """Columns and the rows up to `resume_step` of an earlier metrics.csv. Rows that cannot be
    read (a line cut by a kill, or edited) are dropped with a message saying how many."""
    try:
        with open(path, newline="", errors="replace") as f:
            reader = csv.DictReader(f)
            columns = [c for c in (reader.fieldnames or []) if c]
            rows, bad = [], 0
            for r in reader:
                try:
                    ok = None not in r and None not in r.values() and int(float(r["step"])) >= 0
                except (KeyError, TypeError, ValueError):
                    ok = False
                if not ok:
                    bad += 1
                elif int(float(r["step"])) <= resume_step:
                    rows.append(r)
    except (OSError, csv.Error, UnicodeError) as exc:
        print(f"[foundry] {path} is unreadable ({exc}); starting a new metrics.csv (the training state is intact)")
        return ["step"], []
    if "step" not in columns:
        print(f"[foundry] {path} has no 'step' column; starting a new metrics.csv")
        return ["step"], []
    if bad:
        print(f"[foundry] {path}: dropped {bad} unreadable row(s) while resuming (damaged or edited lines)")
    return columns, rows


# ---------------------------------------------------------------------------------------------
# Training state (resume)
# ---------------------------------------------------------------------------------------------
def _rng_state() -> dict:
    np_state = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {"name": np_state[0], "keys": torch.from_numpy(np_state[1].astype(np.int64)),
                  "pos": int(np_state[2]), "has_gauss": int(np_state[3]), "gauss": float(np_state[4])},
        "python": random.getstate(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state((n["name"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    if "cuda" in state and torch.cuda.is_available():
        cuda = state["cuda"]
        if len(cuda) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda)


def _jsonable(d: dict) -> dict:
    """Normalise a run config (tuples -> lists etc.) so saved and current configs compare equal."""
    return json.loads(json.dumps(d, sort_keys=True, default=str))


def state_digest(obj) -> str:
    """sha256 over a nested training state (dicts, lists, tensors, plain values) in a fixed order:
    recorded at save time, recomputed on load, so flipped bytes in a state file are caught."""
    h = hashlib.sha256()

    def walk(o):
        if isinstance(o, torch.Tensor):
            t = o.detach().cpu().contiguous()
            h.update(f"T{t.dtype}{tuple(t.shape)}".encode())
            if t.numel():
                h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
        elif isinstance(o, dict):
            h.update(f"D{len(o)}".encode())
            for k in sorted(o, key=repr):
                h.update(repr(k).encode())
                walk(o[k])
        elif isinstance(o, (list, tuple)):
            h.update(f"L{len(o)}".encode())
            for v in o:
                walk(v)
        else:
            h.update(repr(o).encode())

    walk(obj)
    return h.hexdigest()


def _non_finite(obj, prefix="") -> list[str]:
    """Names of the floating tensors with NaN/Inf anywhere in a nested state."""
    if isinstance(obj, torch.Tensor):
        return [prefix] if obj.is_floating_point() and not bool(torch.isfinite(obj).all()) else []
    if isinstance(obj, dict):
        return [n for k, v in obj.items() for n in _non_finite(v, f"{prefix}.{k}" if prefix else str(k))]
    if isinstance(obj, (list, tuple)):
        return [n for i, v in enumerate(obj) for n in _non_finite(v, f"{prefix}[{i}]")]
    return []


def save_training_state(path, *, model, optimizer, scheduler, epoch: int, step: int, run_config: dict,
                        extra: dict | None = None) -> None:
    """Atomically write everything needed to continue a run exactly. Only rank 0 writes.

    Refuses (FoundryInputError) a model or optimizer state with NaN/Inf values, so a diverged run
    never replaces its last good state; records a digest that `read_training_state` verifies."""
    if not is_rank_zero():
        return
    state = {
        "format": STATE_FORMAT,
        "version": STATE_VERSION,
        "run_config": json.dumps(_jsonable(run_config), sort_keys=True),
        "epoch": int(epoch),
        "step": int(step),
        "model": {k: v.detach().cpu() for k, v in unwrap(model).state_dict().items()},
        "optimizer": unwrap(optimizer).state_dict() if optimizer is not None else None,
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "rng": _rng_state(),
        "extra": extra or {},
    }
    bad = _non_finite({"model": state["model"], "optimizer": state["optimizer"]})
    if bad:
        raise FoundryInputError(
            f"training diverged at epoch {epoch}, step {step}: NaN/Inf in {len(bad)} tensor(s) (e.g. {bad[:3]}); the "
            f"state was not saved, so {path} keeps the last good one. Lower --lr, add gradient clipping or "
            "check the data (foundry check-data), then --resume")
    state["digest"] = state_digest(state)
    atomic_write(path, lambda tmp: torch.save(state, tmp))


def read_training_state(path) -> dict:
    """Load a training-state file (CPU tensors) with clear errors for missing, foreign or damaged
    files (states written with a digest must match it; older ones are checked for NaN/Inf)."""
    path = Path(path)
    if not path.exists():
        raise FoundryInputError(f"no training state to resume at {path}; start the run without --resume")
    remove_stale_temporaries(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise FoundryInputError(
            f"cannot read training state {path} ({exc}); the file is corrupt or not a Foundry training state"
        ) from exc
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        raise FoundryInputError(f"{path} is not a Foundry training state (was it written by foundry pretrain/distill?)")
    digest = state.pop("digest", None)
    if digest is not None and state_digest(state) != digest:
        raise FoundryInputError(f"training state {path} does not match the digest recorded when it was saved: the file "
                                "was damaged after saving. Restart the run (--overwrite), or restore the file")
    missing = [k for k in ("run_config", "epoch", "step", "model", "rng") if k not in state]
    if missing:
        raise FoundryInputError(f"training state {path} lacks {missing}: the file is damaged; restart the run (--overwrite)")
    bad = _non_finite({"model": state["model"], "optimizer": state.get("optimizer")})
    if bad:
        raise FoundryInputError(f"training state {path} holds NaN/Inf values in {bad[:3]}: the run had diverged or "
                                "the file is damaged; restart the run (--overwrite)")
    return state


# fields a run config written before they existed holds implicitly, at these values
ABSENT_MEANS = {"outlier_filter": False}  # the grouping's outlier filter was off by default until 2026-12-05


def config_differences(saved: dict, current: dict) -> list[str]:
    saved, current = _jsonable(saved), _jsonable(current)
    out = []
    for k in sorted(set(saved) | set(current)):
        a, b = saved.get(k, ABSENT_MEANS.get(k, "<absent>")), current.get(k, "<absent>")
        if isinstance(a, dict) and isinstance(b, dict):
            out += [f"{k}.{d}" for d in config_differences(a, b)]
        elif a != b:
            out.append(f"{k}: checkpoint {a!r} vs now {b!r}")
    return out


def check_same_run(path, state: dict | None, run_config: dict) -> None:
    """Raise FoundryInputError, naming the differing settings, when the training state at `path`
    (`state`: already read, or None to read it) belongs to a run with another configuration."""
    state = read_training_state(path) if state is None else state
    diffs = config_differences(json.loads(state["run_config"]), run_config)
    if diffs:
        shown = "; ".join(diffs[:8]) + (f"; ... ({len(diffs)} in all)" if len(diffs) > 8 else "")
        hint = ""
        if any("outlier_filter" in d for d in diffs):
            hint = (" Runs started before 2026-12-05 grouped without the outlier filter (then off by default): "
                    "resume with the teacher as NAME@outliers=0 (distill) or --no-outlier-filter (pretrain).")
        raise FoundryInputError(
            f"cannot resume from {path}: it belongs to a run with other settings ({shown}). "
            "Resume with the original settings, or start a new run in another --out folder." + hint
        )


def load_training_state(path, model, optimizer, scheduler, run_config: dict):
    """Restore model, optimizer, scheduler and RNG states from `path`; returns (epoch, step, extra).

    Raises FoundryInputError, naming the differing settings, when the file was written by a run
    with another configuration (model shape, objective, data, batch size, ...).
    """
    state = read_training_state(path)
    check_same_run(path, state, run_config)
    load_state_strict(unwrap(model), state["model"], source=str(path))
    if optimizer is not None and state.get("optimizer") is not None:
        unwrap(optimizer).load_state_dict(state["optimizer"])
    if scheduler is not None and state.get("scheduler") is not None:
        scheduler.load_state_dict(state["scheduler"])
    _set_rng_state(state["rng"])
    return int(state["epoch"]), int(state["step"]), state.get("extra", {})


def check_run_folder(out_dir, state_file: str, *, resume: bool, overwrite: bool = False,
                     products: tuple[str, ...] = ()) -> None:
    """Before any work: refuse --resume without a saved state, and a fresh run into a folder that
    already holds one (its state or any of `products`) unless `overwrite`."""
    out_dir = Path(out_dir)
    if resume:
        if not (out_dir / state_file).exists():
            raise FoundryInputError(f"nothing to resume in {out_dir}: no {state_file} (the run stopped before its first "
                                    "saved epoch, or --out names another folder); start it again without --resume")
        return
    found = [n for n in (state_file, *products) if (out_dir / n).exists()]
    if found and not overwrite:
        raise FoundryInputError(f"{out_dir} already holds a run ({', '.join(found)}); continue it with --resume, use "
                                "another --out, or pass --overwrite to start again and replace it")


# ---------------------------------------------------------------------------------------------
# Unlabelled data
# ---------------------------------------------------------------------------------------------
def parse_spec(spec: str) -> tuple[str, str]:
    """'modelnet10:train' -> ('modelnet10', 'train'); 'synthetic:500' -> ('synthetic:500', 'train');
    a bare name or folder -> (spec, 'train')."""
    spec = str(spec).strip()
    if not spec:
        raise FoundryInputError("empty data spec; use e.g. 'modelnet10:train', 'synthetic:1000' or a folder path")
    if spec.startswith("synthetic"):
        return spec, "train"
    head, sep, tail = spec.rpartition(":")
    if sep and head and tail in SPLITS:
        return head, tail
    return spec, "train"


class UnlabelledMix(torch.utils.data.Dataset):
    """Point clouds from several sources, as (P, 3) float32 tensors with P = the smallest cloud
    size over the sources (each bigger cloud is cut to P points by a fixed, seeded permutation).

    Items are dicts {"points", "source", "index"}; `sources` lists (spec, count)."""

    def __init__(self, clouds: list[np.ndarray], specs: list[str], seed: int = 0):
        self.clouds = clouds
        self.specs = specs
        self.seed = int(seed)
        self.points_per_cloud = min(c.shape[1] for c in clouds)
        self.offsets = np.cumsum([0] + [len(c) for c in clouds])
        self.sources = [(s, len(c)) for s, c in zip(specs, clouds)]

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def __getitem__(self, i: int) -> dict:
        i = int(i)
        if not 0 <= i < len(self):
            raise IndexError(i)
        src = int(np.searchsorted(self.offsets, i, side="right") - 1)
        cloud = self.clouds[src][i - self.offsets[src]]
        if cloud.shape[0] > self.points_per_cloud:
            rng = np.random.default_rng((self.seed, i))
            cloud = cloud[np.sort(rng.permutation(cloud.shape[0])[: self.points_per_cloud])]
        return {"points": torch.from_numpy(np.ascontiguousarray(cloud, dtype=np.float32)), "source": src, "index": i}

    def describe(self) -> str:
        return ", ".join(f"{s} ({n} clouds)" for s, n in self.sources) + f"; {self.points_per_cloud} points each"


def _check_clouds(points, spec: str) -> np.ndarray:
    arr = np.asarray(points)
    if arr.ndim != 3 or arr.shape[-1] != 3:
        raise FoundryInputError(
            f"data source {spec!r} gave point clouds of shape {arr.shape}, expected (clouds, points, 3); "
            "check that the folder holds point clouds in a supported layout (foundry check-data)"
        )
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise FoundryInputError(f"data source {spec!r} is empty (shape {arr.shape}); check the path and split")
    arr = arr.astype(np.float32, copy=False)
    finite = np.isfinite(arr).all(axis=(1, 2))
    if not finite.all():
        bad = np.nonzero(~finite)[0][:10].tolist()
        raise FoundryInputError(
            f"data source {spec!r} has NaN/Inf coordinates in cloud(s) {bad}; clean or drop them (foundry check-data)"
        )
    return arr


def unlabelled_mix(specs: Iterable[str] | str, num_points: int, seed: int = 0) -> UnlabelledMix:
    """One dataset of unlabelled point clouds from `specs` ("modelnet10:train", "kicadpart:train",
    "synthetic:N", a folder path, or "folder:split"). Labels are ignored. Each cloud has at least
    `num_points` points (the training loop draws `num_points` of them at random every step)."""
    if isinstance(specs, str):
        specs = [specs]
    specs = [str(s) for s in specs]
    if not specs:
        raise FoundryInputError("no training data given; pass --data (e.g. --data modelnet10:train --data synthetic:1000)")

    clouds = []
    for spec in specs:
        name, split = parse_spec(spec)
        try:
            arrays = load_arrays(name, split)
        except FoundryInputError:
            raise
        except (FileNotFoundError, OSError, KeyError, ValueError) as exc:
            raise FoundryInputError(f"cannot read data source {spec!r}: {exc}") from exc
        arr = _check_clouds(arrays["points"], spec)
        if arr.shape[1] < num_points:
            raise FoundryInputError(
                f"data source {spec!r} has {arr.shape[1]} points per cloud, fewer than the {num_points} "
                "points the model is trained on; lower --points or use denser clouds"
            )
        clouds.append(arr)
    return UnlabelledMix(clouds, specs, seed)
