"""Task-specific KD experts: the student's body trained for one task, the baselines that show what
a task-trained model loses in generality (`foundry distill --expert classification|segmentation`).

Both run through the one training loop (`train.loop`: the same optimiser rule, schedule, logging,
state after every epoch and `--resume` as distillation) on `objectives.experts`' tasks. The saved
checkpoint is the body (kind "student"); the task heads are discarded and `info["expert"]` /
`info["objective"]` say what was trained.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import torch

from ..data import load_arrays
from ..eval.common import load_split
from ..eval.partseg import DEFAULTS as SEG, label_space
from ..io import atomic_write, device_name
from ..models.checkpoint import save_checkpoint
from ..models.heads import PartSegHead, category_mask
from ..validation import FoundryInputError
from . import common
from .common import parse_spec
from .loop import STATE_FILE, LoopSpec, fit
from .objectives.experts import BodyWithHead, CachedOutputsHeadTask, ClassificationTask, SegmentationTask
from .students import check_compatible

RUN_PRODUCTS = ("student.safetensors", "summary.json")


def _fit_expert(model, task, *, epochs, lr, weight_decay, out_dir, run_config, resume, log, what):
    """One expert (or head) fit on the loop; out_dir None: in memory, nothing written."""
    fabric = common.make_fabric(devices=1, precision="32-true")
    fabric.launch()
    spec = LoopSpec(epochs=epochs, steps_per_epoch=task.steps_per_epoch, lr=lr, weight_decay=weight_decay,
                    warmup_steps=task.steps_per_epoch // 10, log_every=max(1, min(50, task.steps_per_epoch // 4)))
    state = Path(out_dir) / STATE_FILE if out_dir is not None and resume else None
    log_what = (lambda msg: log(f"{what}: {msg}"))
    _, res = fit(fabric, model, task, spec, out_dir=out_dir, run_config=run_config, resume_from=state, log=log_what)
    if res.stopped == "signal":
        raise KeyboardInterrupt
    return res


@torch.no_grad()
def _frozen_outputs(teacher, points: torch.Tensor, task: str, *, batch_size: int, device, log) -> tuple:
    """The frozen teacher's outputs on each clean cloud, once: (features,) or (tokens, centres)."""
    teacher.eval()
    outs, n, t0, shown = [], len(points), time.time(), 0
    for b0 in range(0, n, batch_size):
        x = points[b0:b0 + batch_size].to(device)
        outs.append((teacher.forward_features(x),) if task == "classification"
                    else tuple(t.float() for t in teacher.forward_tokens(x)))
        done = min(n, b0 + batch_size)
        if done * 10 // n > shown or done == n:
            shown = done * 10 // n
            log(f"teacher outputs: {done}/{n} clouds ({done / (time.time() - t0):.1f} clouds/s)")
    return tuple(torch.cat([o[i] for o in outs]).cpu() for i in range(len(outs[0])))


def _teacher_targets(teacher, student, head, task: str, points, labels, *, epochs, batch_size, lr, weight_decay,
                     seed, device, log, mask=None, categories=None):
    """The experts' soft targets: `head` fitted (in memory) on the frozen teacher's outputs of the clean
    clouds, then run on them: (M, C) logits per cloud or (M, N, P) per point. Returns (targets, fit result)."""
    check_compatible(teacher, student)
    cached = _frozen_outputs(teacher, points, task, batch_size=batch_size, device=device, log=log)
    inputs = cached if task == "classification" else (*cached, points, categories)
    head = head.to(device)
    res = _fit_expert(head, CachedOutputsHeadTask(inputs, labels, batch_size=batch_size, seed=seed + 1, device=device,
                                                  mask=mask, categories=categories),
                      epochs=epochs, lr=lr, weight_decay=weight_decay, out_dir=None, run_config=None, resume=False,
                      log=log, what="teacher head")
    head.eval()
    with torch.no_grad():
        targets = torch.cat([head(*(x[b0:b0 + batch_size].to(device) for x in inputs)).float().cpu()
                             for b0 in range(0, len(labels), batch_size)])
    return targets, res


def _train_expert(name: str, student, model, task, *, data, epochs, batch_size, lr, weight_decay, seed, kd,
                  out_dir, resume, log):
    """The expert's own run (its state and metrics in out_dir); its run config is what a resume must match."""
    run_config = {"expert": name, "student": student.config.to_dict(), "data": data, "epochs": epochs,
                  "batch_size": batch_size, "lr": lr, "weight_decay": weight_decay, "seed": seed, "kd": kd}
    return _fit_expert(model, task, epochs=epochs, lr=lr, weight_decay=weight_decay, out_dir=out_dir,
                       run_config=run_config, resume=resume, log=log, what="expert")


def _check_run(task: str, out_dir, epochs: int, resume: bool, teacher, kd_weight: float,
               teacher_head_epochs: int) -> bool:
    """Refuse bad epoch counts and a --resume without a state; returns whether the run uses KD."""
    use_kd = teacher is not None and kd_weight > 0
    if epochs < 1 or (use_kd and teacher_head_epochs < 1):
        raise FoundryInputError(f"the {task} expert needs epochs >= 1 (got {epochs}) and, with KD, "
                                f"teacher_head_epochs >= 1 (got {teacher_head_epochs})")
    if resume:
        common.check_run_folder(out_dir, STATE_FILE, resume=True)
    return use_kd


def _kd_text(kd_weight, temperature, epochs, what) -> str:
    return (f" + {kd_weight} x T^2 x KL at T={temperature} to the frozen teacher's {what} "
            f"(a head of the same shape fitted {epochs} epochs on the teacher's outputs, run once per clean cloud)")


def _finish(student, out_dir, info: dict, history: list, teacher_res, kd: dict | None, accuracy: str) -> dict:
    """Record KD's figures in `info`, write the body (student.safetensors) and summary.json."""
    if kd is not None:
        info.update(kd_weight=kd["kd_weight"], temperature=kd["temperature"], final_kl=history[-1]["kl"],
                    teacher_head={"epochs": kd["teacher_head_epochs"], "final_loss": teacher_res.history[-1]["loss"],
                                  f"final_{accuracy}": teacher_res.history[-1][accuracy]})
    summary = {"finished": True, "info": info, "history": history,
               "teacher_head_history": teacher_res.history if teacher_res else None}
    out_dir = Path(out_dir)
    save_checkpoint(student.eval(), out_dir / "student.safetensors", info=info)
    atomic_write(out_dir / "summary.json", lambda tmp: Path(tmp).write_text(json.dumps(summary, indent=1)))
    return summary


def train_classification_expert(student, *, data: str = "modelnet10:train", out_dir, epochs: int = 2,
                                batch_size: int = 32, lr: float = 1e-3, weight_decay: float = 0.05,
                                seed: int = 0, command: str | None = None, verbose: bool = True,
                                resume: bool = False, teacher=None, kd_weight: float = 1.0,
                                temperature: float = 2.0, teacher_head_epochs: int = 5) -> dict:
    """Baseline "classification KD expert": the same student body plus a linear head on its pooled
    features, trained with cross-entropy on the labels of `data`. Real KD, optional: with a `teacher`
    and kd_weight > 0, a linear head is first fitted for `teacher_head_epochs` on the frozen
    teacher's global features, and the loss adds kd_weight * T^2 * KL(teacher logits / T || expert
    logits / T) on the same augmented clouds."""
    use_kd = _check_run("classification", out_dir, epochs, resume, teacher, kd_weight, teacher_head_epochs)
    name, split = parse_spec(data)
    arrays = load_arrays(name, split, num_points=student.config.num_points)
    points, labels = torch.from_numpy(arrays["points"]).float(), torch.from_numpy(arrays["labels"]).long()
    num_classes = int(labels.max()) + 1
    torch.manual_seed(seed)
    device = next(student.parameters()).device
    log = (lambda msg: print(msg, flush=True)) if verbose else (lambda msg: None)
    kd, teacher_res = {}, None
    if use_kd:
        targets, teacher_res = _teacher_targets(
            teacher, student, torch.nn.Linear(teacher.feature_dim, num_classes), "classification", points, labels,
            epochs=teacher_head_epochs, batch_size=batch_size, lr=lr, weight_decay=weight_decay, seed=seed,
            device=device, log=log)
        kd = dict(teacher_targets=targets, kd_weight=kd_weight, temperature=temperature)
    model = BodyWithHead(student, torch.nn.Linear(student.feature_dim, num_classes), "classification")
    task = ClassificationTask((points, labels), batch_size=batch_size, seed=seed, device=device, **kd)
    kd_run = {"weight": kd_weight, "temperature": temperature, "teacher_head_epochs": teacher_head_epochs} \
        if use_kd else None
    res = _train_expert("classification", student, model, task, data=data, epochs=epochs, batch_size=batch_size, lr=lr,
                        weight_decay=weight_decay, seed=seed, kd=kd_run, out_dir=out_dir, resume=resume, log=log)
    history = res.history
    info = {"command": command or " ".join(sys.argv), "expert": "classification", "role": "kd-expert",
            "objective": f"cross-entropy on {data} labels through a linear head (discarded)"
                         + (_kd_text(kd_weight, temperature, teacher_head_epochs, "logits") if use_kd
                            else "; labels only, no teacher"),
            "data": [data], "epochs": epochs, "batch_size": batch_size, "lr": lr, "seed": seed,
            "wall_time_s": round(res.wall_seconds, 1), "device": device_name(device),
            "final_loss": history[-1]["loss"], "final_train_accuracy": history[-1]["train_accuracy"]}
    kd_info = dict(kd_weight=kd_weight, temperature=temperature, teacher_head_epochs=teacher_head_epochs) if use_kd \
        else None
    return _finish(student, out_dir, info, history, teacher_res, kd_info, "train_accuracy")


def train_segmentation_expert(student, *, data: str = "kicadpart:train", out_dir, epochs: int = 2,
                              batch_size: int = 32, lr: float = 1e-3, weight_decay: float = 0.05, seed: int = 0,
                              command: str | None = None, verbose: bool = True, teacher=None,
                              kd_weight: float = 1.0, temperature: float = 2.0,
                              teacher_head_epochs: int = 5, resume: bool = False) -> dict:
    """Baseline "segmentation KD expert": the same student body plus the part-segmentation head of
    `foundry.eval.partseg` (`PartSegHead`: tokens -> per-point logits by inverse-distance
    propagation from the patch centres, with the object-category one-hot; logits restricted to the
    category's parts) on its final tokens, trained end to end with per-point cross-entropy on the
    part labels of `data` (KiCadPart / ShapeNetPart layouts, or "synthetic:N").

    Real KD, optional: with a `teacher` and kd_weight > 0, a head of the same shape is first fitted
    for `teacher_head_epochs` on the frozen teacher's tokens (the teacher's task head, head lr and
    weight decay of the partseg protocol; in memory), then the student's loss adds
    kd_weight * T^2 * KL(teacher logits / T || student logits / T) per point, with the teacher and
    its head run on the same augmented clouds. Without a teacher (or kd_weight 0) it is labels only."""
    use_kd = _check_run("segmentation", out_dir, epochs, resume, teacher, kd_weight, teacher_head_epochs)
    name, split = parse_spec(data)
    ds = load_split(name, split, num_points=student.config.num_points)
    if ds.parts is None:
        raise FoundryInputError(
            f"the segmentation expert trains on per-point part labels, but {data!r} has none; pass part-labelled "
            "data (--data kicadpart:train, synthetic:N or a ShapeNetPart folder), or train --expert classification "
            "on this data set")
    category_parts, n_cat, n_parts = label_space(ds)
    device = next(student.parameters()).device
    mask = category_mask(category_parts, n_cat, n_parts)
    arrays = (torch.from_numpy(ds.points), torch.from_numpy(ds.parts), torch.from_numpy(ds.labels), mask)
    log = (lambda msg: print(msg, flush=True)) if verbose else (lambda msg: None)
    hp = dict(proj_dim=SEG["proj_dim"], point_dim=SEG["point_dim"], hidden=SEG["hidden"], dropout=SEG["dropout"],
              knn=SEG["knn"])
    torch.manual_seed(seed)
    kd, teacher_res = {}, None
    if use_kd:
        targets, teacher_res = _teacher_targets(
            teacher, student, PartSegHead(teacher.token_dim, n_cat, n_parts, **hp), "segmentation", arrays[0],
            arrays[1].long(), epochs=teacher_head_epochs, batch_size=batch_size, lr=SEG["lr"],
            weight_decay=SEG["weight_decay"], seed=seed, device=device, log=log, mask=mask,
            categories=arrays[2].long())
        kd = dict(teacher_targets=targets.half(), kd_weight=kd_weight, temperature=temperature)
    model = BodyWithHead(student, PartSegHead(student.token_dim, n_cat, n_parts, **hp).to(device), "segmentation")
    task = SegmentationTask(arrays, batch_size=batch_size, seed=seed, device=device, **kd)
    kd_run = {"weight": kd_weight, "temperature": temperature, "teacher_head_epochs": teacher_head_epochs} \
        if use_kd else None
    res = _train_expert("segmentation", student, model, task, data=data, epochs=epochs, batch_size=batch_size, lr=lr,
                        weight_decay=weight_decay, seed=seed, kd=kd_run, out_dir=out_dir, resume=resume, log=log)
    history = res.history
    objective = (f"per-point cross-entropy on {data} part labels through the partseg head (PartSegHead, "
                 "discarded) on the student's tokens")
    if use_kd:
        objective += _kd_text(kd_weight, temperature, teacher_head_epochs, "per-point logits")
    else:
        objective += "; labels only, no teacher"
    info = {"command": command or " ".join(sys.argv), "expert": "segmentation", "role": "kd-expert",
            "objective": objective, "data": [data], "epochs": epochs, "batch_size": batch_size, "lr": lr,
            "seed": seed, "num_parts": n_parts, "num_categories": n_cat, "head": hp,
            "wall_time_s": round(res.wall_seconds, 1), "device": device_name(device),
            "final_loss": history[-1]["loss"], "final_train_point_accuracy": history[-1]["train_point_accuracy"]}
    kd_info = dict(kd_weight=kd_weight, temperature=temperature, teacher_head_epochs=teacher_head_epochs) if use_kd \
        else None
    return _finish(student, out_dir, info, history, teacher_res, kd_info, "train_point_accuracy")
