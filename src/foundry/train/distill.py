"""Foundation Model Distillation: a frozen teacher's tokens -> a SuperToken student.

loss = SmoothL1(student.forward_tokens(x), teacher tokens of `layer`)  [+ -gate_lambda * sum(p)]

The teacher's target tokens are cached on disk for V augmented views of every cloud
(`foundry.train.token_cache`), so epochs after the first read them instead of rerunning the
teacher; `use_cache=False` runs the teacher online instead (fresh augmentation every step).
AdamW with linear warm-up and cosine decay; the DSO's Gumbel temperature anneals geometrically from
tau_start to tau_end over the run. Progress, metrics (metrics.csv + TensorBoard), resume, mixed
precision and DDP go through `foundry.train.common`. The result is a self-describing student
checkpoint (`student.safetensors`) with the run's provenance in its info.
"""
from __future__ import annotations

import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..models.checkpoint import atomic_write, save_checkpoint
from ..validation import FoundryInputError
from . import common
from .token_cache import draw_points, expected_header, load_or_build, teacher_identity

STATE_FILE = "training_state.pt"
DEFAULT_AUGMENT = {"scale": (2 / 3, 3 / 2), "translate": 0.2}


def check_compatible(teacher, student) -> None:
    """Refuse a student that cannot reconstruct this teacher's tokens."""
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


def distill(teacher, student, *, teacher_name: str, data: list[str], out_dir, epochs: int = 10,
            batch_size: int = 32, lr: float = 1e-3, weight_decay: float = 0.05, warmup_epochs: float = 1.0,
            beta: float = 1.0, layer: int = -1, views: int = 2, use_cache: bool = True, cache_dir=None,
            rebuild_cache: bool = False, tau_start: float = 1.0, tau_end: float = 0.1, gate_lambda: float = 1e-3,
            seed: int = 0, cache_seed: int = 0, limit: int | None = None, devices="auto", precision: str | None = None,
            strategy: str = "auto", resume: bool = False, stop_after_epoch: int | None = None,
            log_every: int = 10, command: str | None = None, extra_info: dict | None = None,
            verbose: bool = True) -> dict:
    """Distil `teacher` into `student`; returns a summary dict (also written to out_dir/summary.json).

    stop_after_epoch: end this process after that many epochs (the run stays resumable)."""
    out_dir = Path(out_dir)
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
    dataset = common.unlabelled_mix(data, num_points, cache_seed)
    tid = teacher_identity(teacher, teacher_name)
    want = expected_header(tid, layer=layer, data=list(data),
                           num_points=num_points, views=views, seed=cache_seed, augment=True)
    cache = None
    cache_info = None
    if use_cache:
        if cache_dir is None:
            cache_dir = out_dir / "token_cache"
        if fabric.is_global_zero:
            cache, built = load_or_build(cache_dir, teacher, dataset, want, rebuild=rebuild_cache,
                                         augment_kwargs=DEFAULT_AUGMENT, device=fabric.device,
                                         progress=_progress(log, "caching teacher tokens"))
            log(f"token cache {cache_dir}: {'built' if built else 'reused'} ({cache.header['build_wall_s']} s to build)")
        fabric.barrier()
        if cache is None:
            from .token_cache import open_token_cache

            cache = open_token_cache(cache_dir, want, verify=False)
        cache_info = {"folder": str(cache_dir), "views": views, "build_wall_s": cache.header["build_wall_s"]}
    total_clouds = len(cache) if cache is not None else len(dataset)
    # `limit`: train on a fixed, seeded random subset of the clouds (the cache still covers them all)
    pool = np.arange(total_clouds)
    if limit is not None and limit < total_clouds:
        pool = np.sort(np.random.default_rng((seed, 104729)).permutation(total_clouds)[:limit])
    m = len(pool)

    run_config = {"student": student.config.to_dict(), "teacher": {k: tid[k] for k in ("name", "fingerprint")},
                  "data": list(data), "limit": limit, "epochs": epochs, "batch_size": batch_size, "lr": lr,
                  "weight_decay": weight_decay, "warmup_epochs": warmup_epochs, "beta": beta, "layer": layer,
                  "views": views, "use_cache": use_cache, "tau": [tau_start, tau_end], "gate_lambda": gate_lambda,
                  "seed": seed, "cache_seed": cache_seed}
    world, rank = fabric.world_size, fabric.global_rank
    per_rank = -(-m // world)
    steps_per_epoch = max(1, -(-per_rank // batch_size))
    total_steps = steps_per_epoch * epochs
    params = [p for p in student.parameters() if p.requires_grad]
    decay = [p for p in params if p.ndim >= 2]
    no_decay = [p for p in params if p.ndim < 2]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay},
                                   {"params": no_decay, "weight_decay": 0.0}], lr=lr)
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
        model.train()
        rng = np.random.default_rng((seed, epoch))
        order = pool[rng.permutation(m)][rank::world]
        view_of = rng.integers(0, views, size=total_clouds)
        t_epoch, seen, sum_loss, sum_cos, n_batches = time.time(), 0, 0.0, 0.0, 0
        for b0 in range(0, len(order), batch_size):
            idx = order[b0:b0 + batch_size]
            tau = tau_start * (tau_end / tau_start) ** (step / max(1, total_steps - 1))
            unwrapped.set_temperature(tau)
            if cache is not None:
                pts, target, _ = cache.get(view_of[idx], idx)
                pts, target = pts.to(fabric.device), target.to(fabric.device)
            else:
                from ..data import augment_batch

                pts = draw_points(torch.stack([dataset[int(i)]["points"] for i in idx]).float(), num_points, aug_gen)
                pts = augment_batch(pts, generator=aug_gen, **DEFAULT_AUGMENT).to(fabric.device)
                with torch.no_grad(), fabric.autocast():
                    (target,), _ = teacher.forward_layers(pts, [layer])
                target = target.float()
            with fabric.autocast():
                out = model.forward_supertokens(pts)  # through the Fabric/DDP wrapper
            loss, cos = token_metrics(out["tokens"], target, beta)
            total = loss
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
                metrics = {"loss": float(loss.detach()), "cosine": float(cos), "lr": scheduler.get_last_lr()[0], "tau": tau,
                           "epoch": epoch}
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
    finished = len(history) >= epochs
    wall = wall_before + time.time() - t_run
    info = {
        "command": command or " ".join(sys.argv),
        "objective": f"FMD: SmoothL1(beta={beta}) on teacher layer {layer} tokens",
        "teacher": teacher_name, "teacher_fingerprint": tid["fingerprint"], "data": list(data), "limit": limit,
        "epochs": len(history), "epochs_planned": epochs, "steps": step, "batch_size": batch_size, "lr": lr,
        "views": views, "token_cache": cache_info, "seed": seed, "cache_seed": cache_seed, "wall_time_s": round(wall, 1),
        "device": _device_name(fabric), "precision": str(fabric.strategy.precision.__class__.__name__),
        "final_loss": history[-1]["loss"] if history else None,
        "final_cosine": history[-1]["cosine"] if history else None,
        **(extra_info or {}),
    }
    summary = {"finished": finished, "info": info, "history": history, "run_config": run_config}
    if fabric.is_global_zero:
        if finished:
            save_checkpoint(unwrapped, out_dir / "student.safetensors", info=info)
        atomic_write(out_dir / "summary.json", lambda tmp: Path(tmp).write_text(json.dumps(summary, indent=1)))
    return summary


def _device_name(fabric) -> str:
    dev = fabric.device
    if dev.type == "cuda":
        return torch.cuda.get_device_name(dev)
    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


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
    from ..data import augment_batch, load_arrays
    from .common import parse_spec

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
    info = {"command": command or " ".join(sys.argv), "expert": "classification",
            "objective": f"cross-entropy on {data} labels through a linear head (discarded); no teacher tokens",
            "data": [data], "epochs": epochs, "batch_size": batch_size, "lr": lr, "seed": seed,
            "wall_time_s": round(time.time() - t0, 1), "device": f"cpu ({platform.machine()}, {torch.get_num_threads()} threads)",
            "final_loss": history[-1]["loss"], "final_train_accuracy": history[-1]["train_accuracy"]}
    out_dir = Path(out_dir)
    save_checkpoint(student.eval(), out_dir / "student.safetensors", info=info)
    summary = {"finished": True, "info": info, "history": history}
    atomic_write(out_dir / "summary.json", lambda tmp: Path(tmp).write_text(json.dumps(summary, indent=1)))
    return summary
