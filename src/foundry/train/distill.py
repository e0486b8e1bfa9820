"""Foundation Model Distillation: a frozen teacher's tokens -> a SuperToken student.

loss = SmoothL1(student.forward_tokens(x), teacher tokens of `layer`)
       [+ feature_weight * SmoothL1(pool(student tokens), pool(teacher tokens))]  [- gate_lambda * sum(p)]
       [+ balance_weight * KL(SuperToken usage || uniform)]

The optional pooled-feature term matches the global feature (the teacher's own pooling, e.g. mean+max)
that frozen-feature protocols (SVM, probes, few-shot) read: a max-pool is decided by a few extreme
tokens, which a token-wise loss averaged over 64 tokens weights lightly. The optional balance term
(DSO only) keeps the learned SuperTokens in use: without it the queries drift until a few of them
take most tokens.

The teacher's target tokens are cached on disk for V augmented views of every cloud trained on
(`foundry.train.token_cache`; with `limit`, the seeded subset: see `training_cache`), so epochs
after the first read them instead of rerunning the teacher; `use_cache=False` runs the teacher
online instead (fresh augmentation every step).
AdamW (foundry.optim's weight-decay rule) with linear warm-up and cosine decay; the DSO's Gumbel temperature anneals geometrically from
tau_start to tau_end over the run. Progress, metrics (metrics.csv + TensorBoard), resume, mixed
precision and DDP go through `foundry.train.common`. The result is a self-describing student
checkpoint (`student.safetensors`) with the run's provenance in its info.
"""
from __future__ import annotations

import hashlib
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..data import augment_batch, load_arrays
from ..eval.common import load_split
from ..eval.partseg import DEFAULTS as SEG, label_space
from ..io import atomic_write, device_name
from ..models.backbone import pool_tokens
from ..models.checkpoint import save_checkpoint
from ..models.dso import usage_imbalance
from ..models.heads import PartSegHead, category_mask
from ..optim import decay_groups
from ..validation import FoundryInputError
from . import common
from .common import parse_spec
from .token_cache import cache_matches, draw_points, expected_header, load_or_build, open_token_cache, teacher_identity

STATE_FILE = "training_state.pt"
RUN_PRODUCTS = ("student.safetensors", "summary.json")
DEFAULT_AUGMENT = {"scale": (2 / 3, 3 / 2), "translate": 0.2}


def check_teacher(teacher, name: str = "the teacher") -> None:
    """Refuse a model that cannot serve as a teacher (a student, a wrapper without a backbone config)."""
    kind = getattr(teacher, "kind", type(teacher).__name__)  # any module may be handed in here
    if kind == "student" or not hasattr(getattr(teacher, "config", None), "pooling"):
        raise FoundryInputError(f"{name} is a '{kind}' model, which cannot be a teacher: give a pretrained backbone "
                                "(teacher-vits, teacher-small, a `foundry pretrain` encoder or an official checkpoint)")


def check_compatible(teacher, student) -> None:
    """Refuse a student that cannot reconstruct this teacher's tokens."""
    check_teacher(teacher)
    c = student.config
    if c.teacher_width != teacher.token_dim:
        raise FoundryInputError(
            f"width mismatch: the student reconstructs {c.teacher_width}-d tokens but the teacher's tokens are "
            f"{teacher.token_dim}-d; build the student for this teacher (foundry distill sets teacher_width from the "
            "teacher) or pick the teacher it was made for")
    tc = teacher.config
    for f in ("num_groups", "group_size", "fps_start", "patch_order"):
        if getattr(c, f) != getattr(tc, f):
            raise FoundryInputError(f"patch mismatch: student {f}={getattr(c, f)!r} but teacher {f}={getattr(tc, f)!r}; "
                                    "the student's tokens must sit at the teacher's patch centres")


def token_metrics(pred: torch.Tensor, target: torch.Tensor, beta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(SmoothL1 mean over all elements, mean per-token cosine similarity)."""
    loss = F.smooth_l1_loss(pred.float(), target.float(), beta=beta)
    cos = F.cosine_similarity(pred.detach().float(), target.float(), dim=-1).mean()
    return loss, cos


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
            rebuild_cache: bool = False, tau_start: float = 1.0, tau_end: float = 0.1, gate_lambda: float = 1e-3,
            seed: int = 0, cache_seed: int = 0, limit: int | None = None, devices="auto", precision: str | None = None,
            strategy: str = "auto", resume: bool = False, stop_after_epoch: int | None = None,
            log_every: int = 10, command: str | None = None, extra_info: dict | None = None,
            verbose: bool = True, train_only: str | None = None, overwrite: bool = False) -> dict:
    """Distil `teacher` into `student`; returns a summary dict (also written to out_dir/summary.json).

    The student's `config.extra_layers` (teacher blocks it reproduces besides `layer`) are
    distilled too, each against its own token cache (`<cache>-layer<L>`, the same clouds and views).
    train_only="layer-heads": train only the extra layers' output MLPs, the rest frozen and in eval
    mode (adds layers to a trained student without changing its other outputs).
    stop_after_epoch: end this process after that many epochs (the run stays resumable).
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
    extra_layers = list(student.config.extra_layers)
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

    run_config = {"student": student.config.to_dict(), "teacher": {k: tid[k] for k in ("name", "fingerprint")},
                  "data": list(data), "limit": limit, "epochs": epochs, "batch_size": batch_size, "lr": lr,
                  "weight_decay": weight_decay, "warmup_epochs": warmup_epochs, "beta": beta, "layer": layer,
                  "feature_weight": feature_weight, "views": views,
                  **({"balance_weight": balance_weight} if balance_weight else {}), "use_cache": use_cache, "tau": [tau_start, tau_end], "gate_lambda": gate_lambda,
                  "seed": seed, "cache_seed": cache_seed,
                  **({"extra_layers": extra_layers} if extra_layers else {}),
                  **({"train_only": train_only} if train_only else {})}
    world, rank = fabric.world_size, fabric.global_rank
    per_rank = -(-m // world)
    steps_per_epoch = max(1, -(-per_rank // batch_size))
    total_steps = steps_per_epoch * epochs
    optimizer = torch.optim.AdamW(decay_groups(student, weight_decay), lr=lr)
    scheduler = common.cosine_with_warmup(optimizer, int(warmup_epochs * steps_per_epoch), total_steps, 0.01)
    state_path = out_dir / STATE_FILE
    start_epoch, step, extra = 0, 0, {}
    if resume:
        start_epoch, step, extra = common.load_training_state(state_path, student, optimizer, scheduler, run_config)
        log(f"resumed from {state_path} at epoch {start_epoch}, step {step}")
    model, optimizer = fabric.setup(student, optimizer)
    model.mark_forward_method("forward_supertokens")
    teacher = teacher.to(fabric.device)
    logger = common.RunLogger(out_dir, resume_step=step if resume else None)
    history = extra.get("history", [])
    wall_before = float(extra.get("wall_s", 0.0))
    t_run = time.time()
    aug_gen = torch.Generator().manual_seed(seed + 7919 * (start_epoch + 1))
    unwrapped = common.unwrap(model)

    for epoch in range(start_epoch, epochs):
        if stop_after_epoch is not None and epoch >= stop_after_epoch:
            break
        model.train(train_only is None)  # heads alone: the frozen body runs as at inference
        rng = np.random.default_rng((seed, epoch))
        perm = rng.permutation(m)
        # every rank gets per_rank clouds (the first ones again where m does not divide), so all ranks make
        # the same number of steps of the same batch shapes: DDP's gradient all-reduce never waits on a rank
        order = np.concatenate([perm, perm[:per_rank * world - m]])[rank::world]  # positions in pool
        view_of = rng.integers(0, views, size=total_clouds)
        t_epoch, seen, sum_loss, sum_cos, n_batches = time.time(), 0, 0.0, 0.0, 0
        for b0 in range(0, len(order), batch_size):
            at = order[b0:b0 + batch_size]
            idx = pool[at]
            tau = tau_start * (tau_end / tau_start) ** (step / max(1, total_steps - 1))
            unwrapped.set_temperature(tau)
            if cache is not None:
                pts, target, _ = cache.get(view_of[idx], rows[at])
                pts, target = pts.to(fabric.device), target.to(fabric.device)
            else:
                pts = draw_points(torch.stack([dataset[int(i)]["points"] for i in idx]).float(), num_points, aug_gen)
                pts = augment_batch(pts, generator=aug_gen, **DEFAULT_AUGMENT).to(fabric.device)
                with torch.no_grad(), fabric.autocast():
                    (target,), _ = teacher.forward_layers(pts, [layer])
                target = target.float()
            with fabric.autocast():
                out = model.forward_supertokens(pts, None, extra_layers)  # through the Fabric/DDP wrapper
            loss, cos = token_metrics(out["tokens"], target, beta)
            total = loss if train_only is None else 0.0
            layer_losses = {}
            for x, lc in layer_caches.items():
                _, target_x, _ = lc.get(view_of[idx], rows[at])
                layer_losses[x], _ = token_metrics(out["layer_tokens"][x], target_x.to(fabric.device), beta)
                total = total + layer_losses[x]
            if feature_weight and train_only is None:
                pooling = unwrapped.config.teacher_pooling
                feat_loss = F.smooth_l1_loss(pool_tokens(out["tokens"].float(), pooling),
                                             pool_tokens(target.float(), pooling), beta=beta)
                total = total + feature_weight * feat_loss
            if balance_weight and "usage" in out:
                total = total + balance_weight * usage_imbalance(out["usage"])
            if "gate_prob" in out and gate_lambda:
                total = total - gate_lambda * out["gate_prob"].float().sum(1).mean()
            optimizer.zero_grad(set_to_none=True)
            fabric.backward(total)
            optimizer.step()
            scheduler.step()
            step += 1
            seen += len(idx)
            n_batches += 1
            sum_loss += float(loss.detach())
            sum_cos += float(cos)
            if step % log_every == 0 or b0 + batch_size >= len(order):
                metrics = {"loss": float(loss.detach()), "cosine": float(cos),
                           **({"feature_loss": float(feat_loss.detach())} if feature_weight and train_only is None
                              else {}),
                           **{f"loss_layer{x}": float(v.detach()) for x, v in layer_losses.items()},
                           "lr": scheduler.get_last_lr()[0], "tau": tau, "epoch": epoch}
                if "usage" in out:
                    metrics["supertokens_used"] = float((out["counts"].detach() > 0).float().sum(1).mean())
                if "merge" in out:
                    metrics["merged_fraction"] = float(out["merge"].detach().mean())
                logger.log(step, **metrics)
                if step % (log_every * 5) == 0:
                    rate = seen * world / max(time.time() - t_epoch, 1e-9)
                    eta = (total_steps - step) * batch_size * world / max(rate, 1e-9)
                    log(f"step {step}/{total_steps} epoch {epoch + 1}: loss {metrics['loss']:.5f} "
                        f"cos {metrics['cosine']:.4f} ({rate:.1f} clouds/s, about {eta / 60:.0f} min left)")
        dt = time.time() - t_epoch
        rec = {"epoch": epoch + 1, "loss": sum_loss / max(1, n_batches), "cosine": sum_cos / max(1, n_batches),
               "wall_s": round(dt, 2), "clouds_per_s": round(seen * world / max(dt, 1e-9), 2)}
        history.append(rec)
        logger.log(step, epoch_loss=rec["loss"], epoch_cosine=rec["cosine"], epoch_wall_s=dt,
                   clouds_per_s=rec["clouds_per_s"])
        log(f"epoch {epoch + 1}/{epochs}: loss {rec['loss']:.5f} cos {rec['cosine']:.4f} "
            f"{dt:.1f} s ({rec['clouds_per_s']:.1f} clouds/s)")
        common.save_training_state(state_path, model=model, optimizer=optimizer, scheduler=scheduler,
                                   epoch=epoch + 1, step=step, run_config=run_config,
                                   extra={"history": history, "wall_s": wall_before + time.time() - t_run})
    logger.close()
    common.sync_buffers(model)
    finished = len(history) >= epochs
    wall = wall_before + time.time() - t_run
    info = {
        "command": command or " ".join(sys.argv),
        "objective": f"FMD: SmoothL1(beta={beta}) on teacher layer {layer} tokens"
                     + (f" + the same on teacher blocks {extra_layers}" if extra_layers else "")
                     + (" (only the extra layers' output MLPs trained)" if train_only else "")
                     + (f" + {feature_weight} x SmoothL1 on pooled features" if feature_weight else "")
                     + (f" + {balance_weight} x KL(SuperToken usage || uniform)" if balance_weight else ""),
        "teacher": teacher_name, "teacher_fingerprint": tid["fingerprint"], "data": list(data), "limit": limit,
        "epochs": len(history), "epochs_planned": epochs, "steps": step, "batch_size": batch_size, "lr": lr,
        "views": views, "token_cache": cache_info, "seed": seed, "cache_seed": cache_seed, "wall_time_s": round(wall, 1),
        "device": device_name(fabric.device), "precision": str(fabric.strategy.precision.__class__.__name__),
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
    return summary


def _progress(log, what: str):
    last = [0.0]

    def report(done, total, elapsed):
        if elapsed - last[0] >= 30 or done == total:
            last[0] = elapsed
            rate = done / max(elapsed, 1e-9)
            log(f"{what}: {done}/{total} ({rate:.1f} clouds/s, {elapsed:.0f} s)")

    return report


def train_classification_expert(student, *, data: str = "modelnet10:train", out_dir, epochs: int = 2,
                                batch_size: int = 32, lr: float = 1e-3, weight_decay: float = 0.05,
                                seed: int = 0, command: str | None = None, verbose: bool = True) -> dict:
    """Baseline "classification KD expert": the same student body plus a linear head on its pooled
    features, trained with cross-entropy on the labels of `data` (no teacher tokens). The saved
    checkpoint is the body (kind "student"); `info["expert"]` says what it is."""

    name, split = parse_spec(data)
    arrays = load_arrays(name, split, num_points=student.config.num_points)
    points, labels = torch.from_numpy(arrays["points"]).float(), torch.from_numpy(arrays["labels"]).long()
    num_classes = int(labels.max()) + 1
    torch.manual_seed(seed)
    head = torch.nn.Linear(student.feature_dim, num_classes)
    params = list(student.parameters()) + list(head.parameters())
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    steps_per_epoch = -(-len(points) // batch_size)
    sched = common.cosine_with_warmup(opt, steps_per_epoch // 10, steps_per_epoch * epochs, 0.01)
    gen = torch.Generator().manual_seed(seed)
    history, t0 = [], time.time()
    for epoch in range(epochs):
        student.train()
        order = torch.randperm(len(points), generator=gen)
        t_ep, tot, correct = time.time(), 0.0, 0
        for b0 in range(0, len(order), batch_size):
            idx = order[b0:b0 + batch_size]
            x = augment_batch(points[idx], generator=gen, **DEFAULT_AUGMENT)
            logits = head(student.forward_features(x))
            loss = F.cross_entropy(logits, labels[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            tot += float(loss.detach()) * len(idx)
            correct += int((logits.argmax(-1) == labels[idx]).sum())
        rec = {"epoch": epoch + 1, "loss": tot / len(points), "train_accuracy": correct / len(points),
               "wall_s": round(time.time() - t_ep, 1)}
        history.append(rec)
        if verbose:
            print(f"expert epoch {epoch + 1}/{epochs}: CE {rec['loss']:.4f} train acc {rec['train_accuracy']:.3f} "
                  f"({rec['wall_s']} s)", flush=True)
    info = {"command": command or " ".join(sys.argv), "expert": "classification", "role": "kd-expert",
            "objective": f"cross-entropy on {data} labels through a linear head (discarded); no teacher tokens",
            "data": [data], "epochs": epochs, "batch_size": batch_size, "lr": lr, "seed": seed,
            "wall_time_s": round(time.time() - t0, 1), "device": device_name("cpu"),
            "final_loss": history[-1]["loss"], "final_train_accuracy": history[-1]["train_accuracy"]}
    out_dir = Path(out_dir)
    save_checkpoint(student.eval(), out_dir / "student.safetensors", info=info)
    summary = {"finished": True, "info": info, "history": history}
    atomic_write(out_dir / "summary.json", lambda tmp: Path(tmp).write_text(json.dumps(summary, indent=1)))
    return summary


def _segmentation_epochs(tokens_of, head, modules, arrays, *, epochs: int, batch_size: int, lr: float,
                         weight_decay: float, gen, device, log, what: str, teacher_logits=None,
                         kd_weight: float = 0.0, temperature: float = 1.0) -> list[dict]:
    """Train `head` (and whatever `tokens_of` differentiates through) with per-point cross-entropy,
    logits restricted to the cloud's category parts as in `foundry.eval.partseg`; with
    `teacher_logits`, plus kd_weight * T^2 * KL(teacher || student) at temperature T per point."""

    points, parts, cats, mask = arrays
    params = [p for m in modules for p in m.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    steps_per_epoch = -(-len(points) // batch_size)
    sched = common.cosine_with_warmup(opt, steps_per_epoch // 10, steps_per_epoch * epochs, 0.01)
    history = []
    for epoch in range(epochs):
        for m in modules:
            m.train()
        order = torch.randperm(len(points), generator=gen)
        t_ep, tot, tot_kl, correct = time.time(), 0.0, 0.0, 0
        for b0 in range(0, len(order), batch_size):
            idx = order[b0:b0 + batch_size]
            x = augment_batch(points[idx], generator=gen, **DEFAULT_AUGMENT).to(device)
            y, cat = parts[idx].to(device), cats[idx].to(device)
            tokens, centers = tokens_of(x)
            logits = head(tokens.float(), centers, x, cat).masked_fill(~mask[cat].unsqueeze(1), -1e4)
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))
            if teacher_logits is not None:
                with torch.no_grad():
                    target = teacher_logits(x, cat).masked_fill(~mask[cat].unsqueeze(1), -1e4)
                kl = F.kl_div(F.log_softmax(logits / temperature, -1), F.log_softmax(target / temperature, -1),
                              log_target=True, reduction="none").sum(-1).mean()
                loss = loss + kd_weight * temperature ** 2 * kl
                tot_kl += float(kl.detach()) * len(idx)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            tot += float(loss.detach()) * len(idx)
            correct += int((logits.argmax(-1) == y).sum())
        rec = {"epoch": epoch + 1, "loss": tot / len(points), "train_point_accuracy": correct / parts.numel(),
               "wall_s": round(time.time() - t_ep, 1)}
        if teacher_logits is not None:
            rec["kl"] = tot_kl / len(points)
        history.append(rec)
        log(f"{what} epoch {epoch + 1}/{epochs}: loss {rec['loss']:.4f}"
            + (f" (KL {rec['kl']:.4f})" if "kl" in rec else "")
            + f" train point acc {rec['train_point_accuracy']:.3f} ({rec['wall_s']} s)")
    return history


def train_segmentation_expert(student, *, data: str = "kicadpart:train", out_dir, epochs: int = 2,
                              batch_size: int = 32, lr: float = 1e-3, weight_decay: float = 0.05, seed: int = 0,
                              command: str | None = None, verbose: bool = True, teacher=None,
                              kd_weight: float = 1.0, temperature: float = 2.0,
                              teacher_head_epochs: int = 5) -> dict:
    """Baseline "segmentation KD expert": the same student body plus the part-segmentation head of
    `foundry.eval.partseg` (`PartSegHead`: tokens -> per-point logits by inverse-distance
    propagation from the patch centres, with the object-category one-hot; logits restricted to the
    category's parts) on its final tokens, trained end to end with per-point cross-entropy on the
    part labels of `data` (KiCadPart / ShapeNetPart layouts, or "synthetic:N").

    Real KD, optional: with a `teacher` and kd_weight > 0, a head of the same shape is first fitted
    for `teacher_head_epochs` on the frozen teacher's tokens (the teacher's task head, head lr and
    weight decay of the partseg protocol), then the student's loss adds
    kd_weight * T^2 * KL(teacher logits / T || student logits / T) per point, with the teacher and
    its head run on the same augmented clouds. Without a teacher (or kd_weight 0) it is labels only.
    The saved checkpoint is the body (kind "student"); the heads are discarded and
    `info["expert"]` / `info["objective"]` say what was trained."""

    use_kd = teacher is not None and kd_weight > 0
    if epochs < 1 or (use_kd and teacher_head_epochs < 1):
        raise FoundryInputError(f"the segmentation expert needs epochs >= 1 (got {epochs}) and, with KD, "
                                f"teacher_head_epochs >= 1 (got {teacher_head_epochs})")
    name, split = parse_spec(data)
    ds = load_split(name, split, num_points=student.config.num_points)
    if ds.parts is None:
        raise FoundryInputError(
            f"the segmentation expert trains on per-point part labels, but {data!r} has none; pass part-labelled "
            "data (--data kicadpart:train, synthetic:N or a ShapeNetPart folder), or train --expert classification "
            "on this data set")
    category_parts, n_cat, n_parts = label_space(ds)
    device = next(student.parameters()).device
    mask = category_mask(category_parts, n_cat, n_parts).to(device)
    arrays = (torch.from_numpy(ds.points), torch.from_numpy(ds.parts), torch.from_numpy(ds.labels), mask)
    log = (lambda msg: print(msg, flush=True)) if verbose else (lambda msg: None)
    hp = dict(proj_dim=SEG["proj_dim"], point_dim=SEG["point_dim"], hidden=SEG["hidden"], dropout=SEG["dropout"],
              knn=SEG["knn"])
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    t0 = time.time()
    kd = {}
    teacher_history = None
    if use_kd:
        check_compatible(teacher, student)
        teacher = teacher.eval()
        teacher_head = PartSegHead(teacher.token_dim, n_cat, n_parts, **hp).to(device)

        @torch.no_grad()
        def teacher_tokens(x):
            return teacher.forward_tokens(x)

        teacher_history = _segmentation_epochs(teacher_tokens, teacher_head, [teacher_head], arrays,
                                               epochs=teacher_head_epochs, batch_size=batch_size, lr=SEG["lr"],
                                               weight_decay=SEG["weight_decay"], gen=gen, device=device, log=log,
                                               what="teacher head")
        teacher_head.eval()

        def teacher_logits(x, cat):
            tokens, centers = teacher.forward_tokens(x)
            return teacher_head(tokens.float(), centers, x, cat)

        kd = dict(teacher_logits=teacher_logits, kd_weight=kd_weight, temperature=temperature)
    head = PartSegHead(student.token_dim, n_cat, n_parts, **hp).to(device)
    history = _segmentation_epochs(student.forward_tokens, head, [student, head], arrays, epochs=epochs,
                                   batch_size=batch_size, lr=lr, weight_decay=weight_decay, gen=gen, device=device,
                                   log=log, what="expert", **kd)
    objective = (f"per-point cross-entropy on {data} part labels through the partseg head (PartSegHead, "
                 "discarded) on the student's tokens")
    if use_kd:
        objective += (f" + {kd_weight} x T^2 x KL at T={temperature} to the frozen teacher's per-point logits "
                      f"(the same head fitted {teacher_head_epochs} epochs on the teacher's tokens)")
    else:
        objective += "; labels only, no teacher"
    info = {"command": command or " ".join(sys.argv), "expert": "segmentation", "role": "kd-expert",
            "objective": objective, "data": [data], "epochs": epochs, "batch_size": batch_size, "lr": lr,
            "seed": seed, "num_parts": n_parts, "num_categories": n_cat, "head": hp,
            "wall_time_s": round(time.time() - t0, 1), "device": device_name(device),
            "final_loss": history[-1]["loss"], "final_train_point_accuracy": history[-1]["train_point_accuracy"]}
    if use_kd:
        info.update(kd_weight=kd_weight, temperature=temperature, final_kl=history[-1]["kl"],
                    teacher_head={"epochs": teacher_head_epochs, "final_loss": teacher_history[-1]["loss"],
                                  "final_train_point_accuracy": teacher_history[-1]["train_point_accuracy"]})
    out_dir = Path(out_dir)
    save_checkpoint(student.eval(), out_dir / "student.safetensors", info=info)
    summary = {"finished": True, "info": info, "history": history, "teacher_head_history": teacher_history}
    atomic_write(out_dir / "summary.json", lambda tmp: Path(tmp).write_text(json.dumps(summary, indent=1)))
    return summary
