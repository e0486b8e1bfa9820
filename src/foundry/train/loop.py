"""The one training loop: `foundry pretrain`, `foundry distill` and the KD experts all run through it.

A run is a *task* (what is trained: its batches and its loss, see `TrainingTask`) and a `LoopSpec`
(how long and how: epochs, learning rate, schedule, stops). The loop owns everything else, once:
AdamW with the project's weight-decay rule and the warm-up + cosine schedule (foundry.optim), Fabric's
backward (mixed precision, DDP), optional gradient clipping, a refusal of a non-finite loss, metrics
(metrics.csv + TensorBoard, means over `log_every` steps), a progress bar or progress lines, the
training state after every epoch and whenever the run stops early, and the stops themselves: Ctrl-C /
SIGTERM (at the next step boundary; a second Ctrl-C aborts at once), `max_minutes`, `max_steps`,
`stop_after_epoch`. A resumed run starts at the saved step, mid-epoch if that is where it stopped;
the task's `batches(epoch, first)` must give the same batches for the same epoch, which makes the
resumed run repeat the steps an uninterrupted one would make.
"""
from __future__ import annotations

import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Protocol

import torch

from ..optim import cosine_with_warmup, decay_groups
from . import common

STATE_FILE = "training_state.pt"


def step_generator(seed: int, step: int, rank: int = 0) -> torch.Generator:
    """The generator of one training step's random draws (subsets, augmentation, masks), from
    (seed, step, rank): a resumed run draws what the uninterrupted one drew."""
    return torch.Generator().manual_seed((int(seed) * 1_000_003 + int(step)) * 64 + int(rank))


class TrainingTask(Protocol):
    """What one run trains. `model` is the module the loop set up (Fabric / DDP wrapped)."""

    def batches(self, epoch: int, first: int) -> Iterable:
        """This process's batches of `epoch`, from its `first` batch on (0 unless resuming mid-epoch)."""

    def loss(self, model, batch, step: int, total_steps: int) -> tuple[torch.Tensor, dict]:
        """(the loss to minimise, metrics to log as floats); `step` counts the steps done before this one."""

    def batch_clouds(self, batch) -> int:
        """Clouds in `batch` on this process (for the throughput figure)."""

    # optional: train_mode (False: the loop puts the model in eval mode, e.g. only heads train on a frozen
    # body), after_step(module, step, total_steps) -> metrics, end_of_epoch(module, epoch, logger, step),
    # state() -> dict saved with the training state, load_state(dict)


@dataclass
class LoopSpec:
    epochs: int
    steps_per_epoch: int
    lr: float
    weight_decay: float = 0.05
    warmup_steps: int = 0
    min_lr_ratio: float = 0.01
    betas: tuple = (0.9, 0.999)
    grad_clip: float | None = None
    log_every: int = 10
    max_steps: int | None = None  # stop after this many steps in all (the schedule is unchanged)
    max_minutes: float | None = None  # stop after this much wall time in this process
    stop_after_epoch: int | None = None  # end this process after that many epochs
    progress: str | None = None  # a tqdm bar with this label; None: a progress line every 50 logs
    epoch_keys: tuple | None = None  # metrics averaged into each epoch's record (None: all)

    @property
    def total_steps(self) -> int:
        return self.epochs * self.steps_per_epoch


@dataclass
class LoopResult:
    step: int
    history: list = field(default_factory=list)  # one record per finished epoch
    last_metrics: dict = field(default_factory=dict)
    total_steps: int = 0
    stopped: str | None = None  # None (ran to the end), "signal", "max_minutes", "max_steps", "stop_after_epoch"
    train_seconds: float = 0.0  # in steps, over all processes that ran this run
    wall_seconds: float = 0.0  # the same, wall time

    @property
    def finished(self) -> bool:
        return self.step >= self.total_steps


class StopRequest:
    """First SIGINT/SIGTERM asks the loop to stop at the next step boundary (the state is saved);
    a second SIGINT interrupts at once."""

    def __init__(self):
        self.requested = False
        self._old = {}

    def _handle(self, signum, frame):
        self.requested = True
        if signum == signal.SIGINT:
            signal.signal(signal.SIGINT, signal.default_int_handler)
        if common.is_rank_zero():
            print(f"\n[foundry] signal {signum}: stopping after this step and saving the training state "
                  "(press Ctrl-C again to abort at once)", file=sys.stderr, flush=True)

    def __enter__(self):
        try:
            for s in (signal.SIGINT, signal.SIGTERM):
                self._old[s] = signal.signal(s, self._handle)
        except ValueError:  # not the main thread: leave signals alone
            self._old = {}
        return self

    def __exit__(self, *exc):
        for s, h in self._old.items():
            signal.signal(s, h)
        return False


class _Means:
    """Running sums of metrics, to report their means."""

    def __init__(self, sums=None, n=0, seconds=0.0, clouds=0):
        self.sums, self.n, self.seconds, self.clouds = dict(sums or {}), int(n), float(seconds), int(clouds)

    def add(self, metrics: dict, seconds: float, clouds: int) -> None:
        for k, v in metrics.items():
            self.sums[k] = self.sums.get(k, 0.0) + float(v)
        self.n += 1
        self.seconds += seconds
        self.clouds += clouds

    def means(self, keys=None) -> dict:
        return {k: v / max(1, self.n) for k, v in self.sums.items() if keys is None or k in keys}

    def state(self) -> dict:
        return {"sums": self.sums, "n": self.n, "seconds": self.seconds, "clouds": self.clouds}


def fit(fabric, module: torch.nn.Module, task: TrainingTask, spec: LoopSpec, *, out_dir=None,
        run_config: dict | None = None, resume_from=None, state_file: str = STATE_FILE, log=print,
        forward_methods: tuple = ()) -> tuple[torch.nn.Module, LoopResult]:
    """Train `module` (its parameters that require grad) on `task` under `spec`.

    out_dir: where metrics.csv, TensorBoard and the training state go (None: nothing is written, e.g.
    a head fitted in memory). resume_from: a training-state file to continue (its run config must be
    `run_config`). forward_methods: methods of `module` besides forward that the task calls through
    the Fabric wrapper. Returns (the set-up module, LoopResult); the task's `state()` / `load_state()`
    (optional) carry its own records (e.g. validation history) through the state file."""
    if spec.epochs < 1 or spec.steps_per_epoch < 1 or spec.lr < 0:
        raise ValueError("a training run needs epochs and steps per epoch above zero and a learning rate >= 0")
    optimizer = torch.optim.AdamW(decay_groups(module, spec.weight_decay), lr=spec.lr, betas=tuple(spec.betas))
    scheduler = cosine_with_warmup(optimizer, spec.warmup_steps, spec.total_steps, spec.min_lr_ratio)
    step, extra = 0, {}
    if resume_from is not None:
        _, step, extra = common.load_training_state(resume_from, module, optimizer, scheduler, run_config or {})
        log(f"resumed from {resume_from} at step {step} (epoch {step / spec.steps_per_epoch:.2f})")
        if hasattr(task, "load_state"):
            task.load_state(extra.get("task", extra))
    model, optimizer = fabric.setup(module, optimizer)
    for name in forward_methods:
        model.mark_forward_method(name)
    unwrapped = common.unwrap(model)
    out = Path(out_dir) if out_dir is not None else None
    logger = common.RunLogger(out, resume_step=step if resume_from is not None else None) if out else None
    history = list(extra.get("history", []))
    train_seconds = float(extra.get("train_seconds", 0.0))
    wall_before = float(extra.get("wall_s", extra.get("wall_seconds", 0.0)))
    partial = extra.get("epoch_partial")
    epoch_sums = _Means(**partial) if partial and step % spec.steps_per_epoch else _Means()
    world = fabric.world_size
    t_start = time.time()

    def save_state():
        if out is None:
            return
        state_extra = {"history": history, "train_seconds": train_seconds,
                       "wall_s": wall_before + time.time() - t_start, "steps_per_epoch": spec.steps_per_epoch,
                       "epoch_partial": epoch_sums.state(), "task": task.state() if hasattr(task, "state") else {}}
        common.save_training_state(out / state_file, model=model, optimizer=optimizer, scheduler=scheduler,
                                   epoch=step // spec.steps_per_epoch, step=step, run_config=run_config or {},
                                   extra=state_extra)
        fabric.barrier()

    limit, limited_by = spec.total_steps, None
    if spec.max_steps and int(spec.max_steps) < limit:
        limit, limited_by = int(spec.max_steps), "max_steps"
    if spec.stop_after_epoch is not None and int(spec.stop_after_epoch) * spec.steps_per_epoch < limit:
        limit, limited_by = int(spec.stop_after_epoch) * spec.steps_per_epoch, "stop_after_epoch"
    pbar = None
    if spec.progress and fabric.is_global_zero:
        from tqdm import tqdm  # a dependency; imported where the bar is wanted

        pbar = tqdm(total=limit, initial=min(step, limit), desc=spec.progress, unit="step", dynamic_ncols=True,
                    file=sys.stderr)
    stopped, last = None, {}
    window = _Means()
    with StopRequest() as stop:
        while step < limit and stopped is None:
            epoch = step // spec.steps_per_epoch
            first = step - epoch * spec.steps_per_epoch
            if first == 0:
                epoch_sums = _Means()
            model.train(getattr(task, "train_mode", True))  # a task may keep its frozen parts at inference
            t_epoch = time.time()
            for batch in task.batches(epoch, first):
                t0 = time.perf_counter()
                loss, metrics = task.loss(model, batch, step, spec.total_steps)
                if not torch.isfinite(loss.detach()).all():
                    raise RuntimeError(f"the loss became {float(loss)} at step {step}; lower the learning rate or "
                                       "set gradient clipping" + (f" (the last good state is {out / state_file})"
                                                                   if out else ""))
                optimizer.zero_grad(set_to_none=True)
                fabric.backward(loss)
                if spec.grad_clip:
                    fabric.clip_gradients(model, optimizer, max_norm=spec.grad_clip)
                optimizer.step()
                scheduler.step()
                if hasattr(task, "after_step"):
                    metrics = {**metrics, **task.after_step(unwrapped, step + 1, spec.total_steps)}
                step += 1
                dt = time.perf_counter() - t0
                train_seconds += dt
                clouds = task.batch_clouds(batch)
                last = {k: float(v) for k, v in metrics.items()}
                window.add(last, dt, clouds)
                epoch_sums.add(last, dt, clouds)
                if pbar is not None:
                    pbar.update(1)
                    pbar.set_postfix(loss=f"{last.get('loss', float(loss)):.4f}", epoch=step // spec.steps_per_epoch)
                if step % spec.log_every == 0 or step == limit or step % spec.steps_per_epoch == 0:
                    means = window.means()
                    if world > 1 and "loss" in means:  # the mean over all processes
                        means["loss"] = float(fabric.all_reduce(torch.tensor(means["loss"], device=fabric.device),
                                                                reduce_op="mean"))
                    rate = window.clouds * world / max(window.seconds, 1e-9)
                    if logger is not None:
                        logger.log(step, epoch=step / spec.steps_per_epoch, loss=means.pop("loss", float("nan")),
                                   lr=optimizer.param_groups[0]["lr"], **means, clouds_per_s=rate)
                    if pbar is None and step % (spec.log_every * 5) == 0:
                        eta = (limit - step) * window.seconds / max(1, window.n)
                        log(f"step {step}/{limit} epoch {epoch + 1}: loss {last.get('loss', float('nan')):.5f} "
                            f"({rate:.1f} clouds/s, about {eta / 60:.0f} min left)")
                    window = _Means()
                flags = [stop.requested, bool(spec.max_minutes) and time.time() - t_start > 60 * spec.max_minutes]
                if world > 1:  # every process stops at the same step
                    flags = fabric.all_reduce(torch.tensor([float(f) for f in flags], device=fabric.device),
                                              reduce_op="sum").gt(0).tolist()
                if flags[0]:
                    stopped = "signal"
                    break
                if step >= limit:
                    break
                if flags[1]:
                    stopped = "max_minutes"
                    log(f"max minutes ({spec.max_minutes}) reached at step {step}; continue later with --resume")
                    break
            if step % spec.steps_per_epoch == 0 and stopped is None:
                wall = time.time() - t_epoch
                rec = {"epoch": step // spec.steps_per_epoch, **epoch_sums.means(spec.epoch_keys),
                       "wall_s": round(wall, 2), "clouds_per_s": round(epoch_sums.clouds * world / max(wall, 1e-9), 2)}
                history.append(rec)
                if hasattr(task, "end_of_epoch"):
                    task.end_of_epoch(unwrapped, rec["epoch"], logger, step)
                shown = " ".join(f"{k} {v:.5f}" for k, v in rec.items() if k not in ("epoch", "wall_s", "clouds_per_s")
                                 and isinstance(v, float))
                if pbar is None:
                    log(f"epoch {rec['epoch']}/{spec.epochs}: {shown} {rec['wall_s']:.1f} s "
                        f"({rec['clouds_per_s']:.1f} clouds/s)")
            save_state()
    if pbar is not None:
        pbar.close()
    if logger is not None:
        logger.close()
    common.sync_buffers(model)
    if stopped is None and step < spec.total_steps:
        stopped = limited_by
    result = LoopResult(step=step, total_steps=spec.total_steps, history=history, last_metrics=last, stopped=stopped, train_seconds=train_seconds,
                        wall_seconds=wall_before + time.time() - t_start)
    return model, result
