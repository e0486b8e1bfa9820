"""Foundation Model Distillation: a frozen teacher's tokens -> a SuperToken student.

The loss is `objectives.fmd.FMDObjective` (tokens of the target layer and of each extra block,
optionally the pooled feature, SuperToken balance and the gate's budget). The teacher's target
tokens are cached on disk for V augmented views of every cloud trained on
(`foundry.train.token_cache`; with `limit`, the seeded subset: see `training_cache`), so epochs
after the first read them instead of rerunning the teacher; `use_cache=False` runs the teacher
online instead (fresh augmentation every step). The run goes through the one training loop
(`train.loop`: AdamW with foundry.optim's weight-decay rule, linear warm-up and cosine decay,
progress, metrics.csv + TensorBoard, resume, stops, mixed precision and DDP); the DSO's Gumbel
temperature anneals geometrically from tau_start to tau_end over the run. The result is a
self-describing student checkpoint (`student.safetensors`) with the run's provenance in its info.
The task-specific KD experts, the baselines the evaluation compares against, are in `train.experts`.
"""
from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import torch

from ..data import augment_batch
from ..io import atomic_write, device_name
from ..models.checkpoint import save_checkpoint
from ..validation import FoundryInputError
from . import common
from .corrupted_views import CorruptedViews
from .loop import STATE_FILE, LoopSpec, fit
from .students import check_compatible
from .objectives.fmd import FMDObjective, token_metrics
from .token_cache import cache_matches, draw_points, expected_header, load_or_build, open_token_cache, teacher_identity

RUN_PRODUCTS = ("student.safetensors", "summary.json")
DEFAULT_AUGMENT = {"scale": (2 / 3, 3 / 2), "translate": 0.2}


@torch.no_grad()
def evaluate_tokens(model, cache, *, beta: float = 1.0, batch_size: int = 32, view: int = 0) -> dict:
    """Token SmoothL1 and mean cosine similarity of `model` against the cached teacher tokens of one
    view (e.g. a test split cached without augmentation)."""
    model.eval()
    n = len(cache)
    tot_loss = tot_cos = 0.0
    for start in range(0, n, batch_size):
        idx = np.arange(start, min(n, start + batch_size))
        pts, tok, _ = cache.get(np.full_like(idx, view), idx)
        pred, _ = model.forward_tokens(pts)
        loss, cos = token_metrics(pred, tok, beta)
        tot_loss += float(loss) * len(idx)
        tot_cos += float(cos) * len(idx)
    return {"token_smoothl1": tot_loss / n, "token_cosine": tot_cos / n, "clouds": n}


def reference_cache(teacher, teacher_name: str, spec: str, folder, *, layer: int = -1, batch_size: int = 32):
    """Teacher tokens of a split as it is (one view, no augmentation), e.g. "modelnet10:test", to
    measure how well a student reproduces them (`evaluate_tokens`). Reused when it matches."""
    num_points = teacher.config.num_points
    dataset = common.unlabelled_mix([spec], num_points, 0)
    want = expected_header(teacher_identity(teacher, teacher_name), layer=layer, data=[spec], num_points=num_points,
                           views=1, seed=0, augment=False)
    cache, _ = load_or_build(folder, teacher, dataset, want, batch_size=batch_size)
    return cache


def subset_indices(total: int, limit: int | None, seed: int) -> np.ndarray:
    """The clouds a `limit` run trains on: sorted dataset indices, a random choice of `limit` of the
    `total` clouds drawn from `seed` (the training seed); all of them when there is no limit."""
    if limit is not None and limit < 1:
        raise FoundryInputError(f"limit must be a positive number of clouds, got {limit}")
    if limit is None or limit >= total:
        return np.arange(total)
    return np.sort(np.random.default_rng((seed, 104729)).permutation(total)[:limit])


def training_cache(folder, teacher, dataset, want: dict, pool: np.ndarray, seed: int, *, rebuild: bool = False,
                   build: bool = True, **build_kwargs):
    """The token cache of the clouds `pool` (from `subset_indices`) of `dataset`, and their rows in it.

    A cache of the whole data at `folder` (header `want`) is built or reused, and indexed by `pool`.
    When `pool` is a subset and no such full cache is there (or `rebuild`), the cache holds the
    subset alone (rows 0..m-1, its own augmentation draws); its header records the subset, so it is
    never taken for a full cache nor a full one for it. build=False opens what another process
    built (DDP ranks > 0) without checksums. Returns (cache, rows, built_now).
    """
    rows = pool
    if len(pool) < len(dataset) and (rebuild or not cache_matches(folder, want)):
        digest = hashlib.sha256(np.asarray(pool, dtype=np.int64).tobytes()).hexdigest()
        want = {**want, "subset": {"of": len(dataset), "clouds": len(pool), "seed": int(seed), "indices_sha256": digest}}
        dataset, rows = torch.utils.data.Subset(dataset, pool.tolist()), np.arange(len(pool))
    if not build:
        return open_token_cache(folder, want, verify=False), rows, False
    cache, built = load_or_build(folder, teacher, dataset, want, rebuild=rebuild, **build_kwargs)
    return cache, rows, built


def layer_cache(cache_dir, x: int, teacher, dataset, want: dict, pool, seed: int, fabric, rebuild: bool, main,
                log):
    """The token cache of teacher block `x` beside the main one: the same data, views and seeds
    (so the same points, which is checked), another layer."""
    folder = Path(f"{cache_dir}-layer{x}")
    want_x = {**want, "layer": int(x)}
    if fabric.is_global_zero:
        cache, _, built = training_cache(folder, teacher, dataset, want_x, pool, seed, rebuild=rebuild,
                                         augment_kwargs=DEFAULT_AUGMENT, device=fabric.device,
                                         progress=_progress(log, f"caching teacher block {x}"))
        log(f"token cache {folder}: {'built' if built else 'reused'}")
    fabric.barrier()
    if not fabric.is_global_zero:
        cache, _, _ = training_cache(folder, teacher, dataset, want_x, pool, seed, rebuild=rebuild, build=False)
    if main is not None and cache.header["checksums"]["points"] != main.header["checksums"]["points"]:
        # the same clouds up to float rounding (e.g. a loader that normalises once instead of twice) pass
        if cache.points.shape != main.points.shape or float(np.abs(cache.points - main.points).max()) > 1e-5:
            raise FoundryInputError(f"the token caches {cache_dir} and {folder} hold different points; rebuild "
                                    f"{folder} (--rebuild-cache)")
    return cache


def build_caches(teacher, student, *, teacher_name: str, data: list[str], cache_dir, layer: int = -1, views: int = 2,
                 cache_seed: int = 0, seed: int = 0, limit: int | None = None, rebuild: bool = False, log=print) -> None:
    """Build (or verify) the token caches a `distill` run with these settings trains on, the target
    layer's and each extra layer's, without training (`foundry distill --cache-only`)."""
    ds = common.unlabelled_mix(data, student.config.num_points, cache_seed)
    want = expected_header(teacher_identity(teacher, teacher_name), layer=layer, data=list(data),
                           num_points=student.config.num_points, views=views, seed=cache_seed, augment=True)
    pool = subset_indices(len(ds), limit, seed)  # with `limit`, only the clouds that run would train on
    cache, _, built = training_cache(cache_dir, teacher, ds, want, pool, seed, rebuild=rebuild,
                                     augment_kwargs=DEFAULT_AUGMENT,
                                     progress=lambda d, t, e: log(f"cached {d}/{t} ({d / max(e, 1e-9):.1f} clouds/s)")
                                     if d % 320 == 0 or d == t else None)
    log(f"token cache {'built' if built else 'verified'}: {cache.folder} {cache.header['shapes']} "
        f"({cache.header['build_wall_s']} s to build)")
    for x in student.config.extra_layers:
        lc = layer_cache(cache_dir, x, teacher, ds, want, pool, seed, common.make_fabric(devices=1), rebuild, cache, log)
        log(f"token cache of teacher block {x}: {lc.folder}")


def distill(teacher, student, *, teacher_name: str, data: list[str], out_dir, epochs: int = 10,
            batch_size: int = 32, lr: float = 1e-3, weight_decay: float = 0.05, warmup_epochs: float = 1.0,
            beta: float = 1.0, layer: int = -1, feature_weight: float = 0.0, balance_weight: float = 0.0, views: int = 2, use_cache: bool = True, cache_dir=None,
            rebuild_cache: bool = False, tau_start: float = 1.0, tau_end: float = 0.1, gate_lambda: float | None = None,
            seed: int = 0, cache_seed: int = 0, limit: int | None = None, devices="auto", precision: str | None = None,
            strategy: str = "auto", resume: bool = False, stop_after_epoch: int | None = None,
            log_every: int = 10, command: str | None = None, extra_info: dict | None = None,
            verbose: bool = True, train_only: str | None = None, overwrite: bool = False,
            max_minutes: float | None = None, corrupted_views: dict | None = None) -> dict:
    """Distil `teacher` into `student`; returns a summary dict (also written to out_dir/summary.json).

    The student's `config.extra_layers` (teacher blocks it reproduces besides `layer`) are
    distilled too, each against its own token cache (`<cache>-layer<L>`, the same clouds and views).
    train_only="layer-heads": train only the extra layers' output MLPs, the rest frozen and in eval
    mode (adds layers to a trained student without changing its other outputs).
    stop_after_epoch: end this process after that many epochs; max_minutes: after this much wall
    time, at a step boundary (the run stays resumable either way; the student is written when done).
    corrupted_views: {"families": [...], "share": p} gives a share p of each batch's clouds to the
    student corrupted, against the clean cloud's targets (`train.corrupted_views`).
    A folder that already holds a run is refused unless `resume` or `overwrite`."""
    out_dir = Path(out_dir)
    common.check_run_folder(out_dir, STATE_FILE, resume=resume, overwrite=overwrite, products=RUN_PRODUCTS)
    check_compatible(teacher, student)
    if epochs < 1 or batch_size < 1 or views < 1:
        raise FoundryInputError("epochs, batch_size and views must be positive")
    student.config.teacher = teacher_name
    student.config.teacher_layer = layer
    teacher.eval().requires_grad_(False)
    num_points = student.config.num_points
    torch.manual_seed(seed)
    np.random.seed(seed)

    fabric = common.make_fabric(devices=devices, precision=precision, strategy=strategy)
    fabric.launch()
    log = print if (verbose and fabric.is_global_zero) else (lambda *a, **k: None)

    # the data and its cached views depend on cache_seed only, so runs with other seeds share one cache
    # (a cache of a `limit` subset depends on seed too: seed picks the subset)
    dataset = common.unlabelled_mix(data, num_points, cache_seed)
    tid = teacher_identity(teacher, teacher_name)
    want = expected_header(tid, layer=layer, data=list(data),
                           num_points=num_points, views=views, seed=cache_seed, augment=True)
    total_clouds = len(dataset)
    # `limit`: train on a fixed, seeded random subset of the clouds; the cache holds just those
    # (or an existing cache of all the data is indexed)
    pool = subset_indices(total_clouds, limit, seed)
    m = len(pool)
    extra_layers = list(student.config.extra_layers)
    if gate_lambda is None:
        # no -sum(p) reward where sampled budgets, not p, set the compute; elsewhere 1e-3 as before (it is
        # recorded in the run config, so runs without a gate keep resuming)
        gate_lambda = 0.0 if student.config.gate and student.config.gate_training == "budget" else 1e-3
    run_config = {"student": student.config.to_dict(), "teacher": {k: tid[k] for k in ("name", "fingerprint")},
                  "data": list(data), "limit": limit, "epochs": epochs, "batch_size": batch_size, "lr": lr,
                  "weight_decay": weight_decay, "warmup_epochs": warmup_epochs, "beta": beta, "layer": layer,
                  "feature_weight": feature_weight, "views": views,
                  **({"balance_weight": balance_weight} if balance_weight else {}), "use_cache": use_cache, "tau": [tau_start, tau_end], "gate_lambda": gate_lambda,
                  "seed": seed, "cache_seed": cache_seed,
                  **({"extra_layers": extra_layers} if extra_layers else {}),
                  **({"train_only": train_only} if train_only else {})}
    views_of_corruption = None
    if corrupted_views:
        views_of_corruption = CorruptedViews(**corrupted_views, seed=seed)
        run_config["corrupted_views"] = views_of_corruption.describe()
    state_path = out_dir / STATE_FILE
    if resume and state_path.exists():  # a run of other settings is refused before any cache is built
        common.check_same_run(state_path, None, run_config)
    rows = pool  # row in the cache of each trained cloud
    cache = None
    cache_info = None
    if use_cache:
        if cache_dir is None:
            cache_dir = out_dir / "token_cache"
        if fabric.is_global_zero:
            cache, rows, built = training_cache(cache_dir, teacher, dataset, want, pool, seed, rebuild=rebuild_cache,
                                                augment_kwargs=DEFAULT_AUGMENT, device=fabric.device,
                                                progress=_progress(log, "caching teacher tokens"))
            log(f"token cache {cache_dir}: {'built' if built else 'reused'}, {len(cache)} clouds "
                f"({cache.header['build_wall_s']} s to build)")
        fabric.barrier()
        if cache is None:
            cache, rows, _ = training_cache(cache_dir, teacher, dataset, want, pool, seed, rebuild=rebuild_cache,
                                            build=False)
        cache_info = {"folder": str(cache_dir), "views": views, "clouds": len(cache),
                      "build_wall_s": cache.header["build_wall_s"]}
    layer_caches = {}
    if extra_layers:
        if not use_cache:
            raise FoundryInputError("distilling extra teacher layers needs the token cache (drop --no-cache)")
        for x in extra_layers:
            layer_caches[x] = layer_cache(cache_dir, x, teacher, dataset, want, pool, seed, fabric, rebuild_cache,
                                          cache, log)
    if train_only not in (None, "layer-heads"):
        raise FoundryInputError(f"train_only must be None or 'layer-heads', got {train_only!r}")
    if train_only == "layer-heads":
        if not extra_layers:
            raise FoundryInputError("--train-only layer-heads needs extra layers (--extra-layers ...)")
        student.requires_grad_(False)
        student.cau.layer_mlps.requires_grad_(True)

    world, rank = fabric.world_size, fabric.global_rank
    per_rank = -(-m // world)
    steps_per_epoch = max(1, -(-per_rank // batch_size))
    objective = FMDObjective(beta=beta, feature_weight=feature_weight, balance_weight=balance_weight,
                             gate_lambda=gate_lambda, pooling=student.config.teacher_pooling,
                             layer_heads_only=train_only == "layer-heads")
    task = DistillTask(objective, pool=pool, rows=rows, views=views, total_clouds=total_clouds, world=world,
                       rank=rank, batch_size=batch_size, seed=seed, device=fabric.device, cache=cache,
                       layer_caches=layer_caches, extra_layers=extra_layers, dataset=dataset, teacher=teacher,
                       layer=layer, num_points=num_points, fabric=fabric, tau=(tau_start, tau_end),
                       body_frozen=train_only is not None, corrupted_views=views_of_corruption)
    spec = LoopSpec(epochs=epochs, steps_per_epoch=steps_per_epoch, lr=lr, weight_decay=weight_decay,
                    warmup_steps=int(warmup_epochs * steps_per_epoch), log_every=log_every,
                    stop_after_epoch=stop_after_epoch, max_minutes=max_minutes, epoch_keys=("loss", "cosine"))
    teacher.to(fabric.device)
    model, res = fit(fabric, student, task, spec, out_dir=out_dir, run_config=run_config,
                     resume_from=state_path if resume else None, log=log, forward_methods=("forward_supertokens",))
    unwrapped = common.unwrap(model)
    history, step, finished = res.history, res.step, res.finished
    if res.stopped == "signal":
        log(f"stopped at step {step}; continue with --resume (state in {state_path})")
    info = {
        "command": command or " ".join(sys.argv),
        "objective": objective.describe(layer, extra_layers),
        "teacher": teacher_name, "teacher_fingerprint": tid["fingerprint"], "data": list(data), "limit": limit,
        "epochs": len(history), "epochs_planned": epochs, "steps": step, "batch_size": batch_size, "lr": lr,
        "views": views, "token_cache": cache_info, "seed": seed, "cache_seed": cache_seed,
        **({"corrupted_views": run_config["corrupted_views"]} if corrupted_views else {}),
        "wall_time_s": round(res.wall_seconds, 1),
        "device": device_name(fabric.device), "precision": precision or common.default_precision(),
        "final_loss": history[-1]["loss"] if history else None,
        "final_cosine": history[-1]["cosine"] if history else None,
        **(extra_info or {}),
    }
    # every command that made this student, oldest first (the ancestors' come in through extra_info)
    info["command_chain"] = list(info.get("command_chain") or []) + [
        {k: info[k] for k in ("command", "epochs", "wall_time_s", "final_loss")}]
    summary = {"finished": finished, "info": info, "history": history, "run_config": run_config}
    if fabric.is_global_zero:
        if finished:
            save_checkpoint(unwrapped, out_dir / "student.safetensors", info=info)
        atomic_write(out_dir / "summary.json", lambda tmp: Path(tmp).write_text(json.dumps(summary, indent=1)))
    if res.stopped == "signal":
        raise KeyboardInterrupt
    return summary


class DistillTask:
    """The loop's task for distillation. Per epoch a permutation of the trained clouds from
    (seed, epoch), split evenly over the processes (every rank gets as many clouds, the first ones
    again where the count does not divide, so DDP's all-reduce never waits on a rank), and a view
    per cloud; the teacher's tokens come from the token caches (or from the teacher online)."""

    def __init__(self, objective, *, pool, rows, views, total_clouds, world, rank, batch_size, seed, device, cache,
                 layer_caches, extra_layers, dataset, teacher, layer, num_points, fabric, tau, body_frozen,
                 corrupted_views=None):
        self.objective, self.pool, self.rows, self.views = objective, pool, rows, views
        self.total_clouds, self.world, self.rank, self.batch_size, self.seed = total_clouds, world, rank, batch_size, seed
        self.device, self.cache, self.layer_caches, self.extra_layers = device, cache, layer_caches, extra_layers
        self.dataset, self.teacher, self.layer, self.num_points, self.fabric = dataset, teacher, layer, num_points, fabric
        self.tau, self.corrupted_views = tau, corrupted_views
        self.train_mode = not body_frozen  # heads alone: the frozen body runs as at inference
        self.view_of, self.aug_gen = None, None

    def batches(self, epoch: int, first: int):
        m = len(self.pool)
        per_rank = -(-m // self.world)
        rng = np.random.default_rng((self.seed, epoch))
        perm = rng.permutation(m)
        order = np.concatenate([perm, perm[:per_rank * self.world - m]])[self.rank::self.world]  # positions in pool
        self.view_of = rng.integers(0, self.views, size=self.total_clouds)
        self.aug_gen = torch.Generator().manual_seed(self.seed + 7919 * (epoch + 1))  # --no-cache only
        for b0 in range(first * self.batch_size, len(order), self.batch_size):
            yield order[b0:b0 + self.batch_size]

    def loss(self, model, at, step: int, total_steps: int):
        tau_start, tau_end = self.tau
        common.unwrap(model).set_temperature(tau_start * (tau_end / tau_start) ** (step / max(1, total_steps - 1)))
        idx = self.pool[at]
        centers = None  # the teacher's patch centres, where the token cache has them
        if self.cache is not None:
            pts, target, centers = self.cache.get(self.view_of[idx], self.rows[at])
            pts, target = pts.to(self.device), target.to(self.device)
        else:
            pts = draw_points(torch.stack([self.dataset[int(i)]["points"] for i in idx]).float(), self.num_points,
                              self.aug_gen)
            pts = augment_batch(pts, generator=self.aug_gen, **DEFAULT_AUGMENT).to(self.device)
            with torch.no_grad(), self.fabric.autocast():
                (target,), _ = self.teacher.forward_layers(pts, [self.layer])
            target = target.float()
        corrupted = None
        if self.corrupted_views is not None:
            student = common.unwrap(model)
            corrupted = self.corrupted_views.corrupt_batch(pts, step, student.config, student.config.num_groups,
                                                           None if centers is None else centers.to(self.device))
            pts = corrupted.points
        with self.fabric.autocast():
            out = model.forward_supertokens(pts, None, self.extra_layers)  # through the Fabric/DDP wrapper
        layer_targets = {x: lc.get(self.view_of[idx], self.rows[at])[1].to(self.device)
                         for x, lc in self.layer_caches.items()}
        if corrupted is None:
            return self.objective(out, target, layer_targets)
        target, layer_targets, pooled = self.corrupted_views.targets(corrupted, out["centers"], target, layer_targets,
                                                                     self.objective.pooling)
        loss, metrics = self.objective(out, target, layer_targets, pooled)
        return loss, {**metrics, "corrupted_share": corrupted.rows.numel() / len(pts)}

    def batch_clouds(self, at) -> int:
        return len(at)


def _progress(log, what: str):
    last = [0.0]

    def report(done, total, elapsed):
        if elapsed - last[0] >= 30 or done == total:
            last[0] = elapsed
            rate = done / max(elapsed, 1e-9)
            log(f"{what}: {done}/{total} ({rate:.1f} clouds/s, {elapsed:.0f} s)")

    return report
