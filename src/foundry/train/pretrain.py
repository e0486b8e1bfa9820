"""Self-supervised pretraining of a backbone (teacher) with Point-MAE or Point-JEPA.

`pretrain(PretrainConfig(...))` runs the whole thing through Lightning Fabric (CPU, one GPU,
DDP with `strategy="ddp"` or under torchrun; bf16-mixed autocast on GPU) and writes to `out`:

    run.json               the configuration and data summary
    metrics.csv, tb/       training loss, learning rate, throughput; SVM validation when enabled
    state.pt               training state after every epoch (and on Ctrl-C / SIGTERM): --resume
    encoder.safetensors    the pretrained backbone as a Foundry checkpoint (foundry.load)

Exactness of --resume: the data order of an epoch is a seeded permutation of (seed, epoch); the
point subsets, augmentation and masks of a step come from a generator seeded by (seed, step,
rank); the global RNG (drop-path) is saved in the state. A resumed run therefore repeats the
steps an uninterrupted run would have made.
"""
from __future__ import annotations

import dataclasses
import json
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..api import create_model, save
from ..data import augment_batch, load_arrays
from ..eval.svm import extract_features, linear_svm_eval
from ..io import atomic_write, device_name
from ..models.presets import PRESETS
from ..optim import decay_groups
from ..validation import FoundryInputError
from .common import (
    RunLogger,
    check_run_folder,
    cosine_with_warmup,
    default_precision,
    is_rank_zero,
    load_training_state,
    make_fabric,
    save_training_state,
    sync_buffers,
    unlabelled_mix,
    unwrap,
)
from .objectives import build_objective

STATE_FILE = "state.pt"
ENCODER_FILE = "encoder.safetensors"


@dataclass
class PretrainConfig:
    preset: str = "small"
    objective: str = "mae"
    data: list = field(default_factory=lambda: ["modelnet10:train", "kicadpart:train"])
    epochs: int = 30
    batch_size: int = 32  # global (over all processes)
    lr: float = 5e-4
    weight_decay: float = 0.05
    warmup_epochs: float = 1.0
    min_lr_ratio: float = 0.01
    grad_clip: float | None = None
    points: int | None = None  # points per cloud; None: the preset's num_points
    seed: int = 0
    # augmentation (foundry.data.augment_batch)
    aug_scale: tuple = (2 / 3, 3 / 2)
    aug_translate: float = 0.2
    # objective options
    mask_ratio: float = 0.6  # mae
    decoder_depth: int = 4  # mae
    predictor_depth: int = 6  # jepa
    predictor_width: int | None = None  # jepa; None: half the encoder width
    num_targets: int = 4  # jepa
    target_ratio: tuple = (0.15, 0.2)  # jepa
    ema: tuple = (0.995, 1.0)  # jepa
    # run control (not part of what must match on resume)
    out: str = "runs/pretrain"
    resume: str | None = None  # None, "auto" (out/state.pt if present) or a path
    overwrite: bool = False
    devices: str | int = "auto"
    precision: str | None = None
    strategy: str = "auto"
    accelerator: str = "auto"
    num_workers: int = 0
    val_every: int = 0  # epochs between SVM validations (0: never)
    val_points: int | None = None
    val_data: str = "modelnet10"  # labelled data of the SVM validation (fit on its train split, score its val split)
    max_steps: int | None = None  # stop early after this many steps in all (the schedule is unchanged)
    max_minutes: float | None = None  # stop (and write the encoder) after this much wall time in this process
    log_every: int = 10
    threads: int | None = None
    progress: bool = True
    command: str = ""

    RUN_CONTROL = ("out", "resume", "overwrite", "devices", "precision", "strategy", "accelerator", "num_workers",
                   "val_every", "val_points", "val_data", "max_steps", "max_minutes", "log_every", "threads", "progress", "command")

    def objective_options(self) -> dict:
        if self.objective == "mae":
            return {"mask_ratio": self.mask_ratio, "decoder_depth": self.decoder_depth}
        if self.objective == "jepa":
            return {"predictor_depth": self.predictor_depth, "predictor_width": self.predictor_width,
                    "num_targets": self.num_targets, "target_ratio": tuple(self.target_ratio), "ema": tuple(self.ema)}
        raise FoundryInputError(f"unknown objective {self.objective!r}; choose 'mae' or 'jepa'")

    def run_config(self, model_config: dict) -> dict:
        """What a resumed run must share with the run that wrote the state."""
        d = {k: v for k, v in dataclasses.asdict(self).items() if k not in self.RUN_CONTROL}
        for k in ("mask_ratio", "decoder_depth", "predictor_depth", "predictor_width", "num_targets",
                  "target_ratio", "ema"):
            d.pop(k)
        d["objective_options"] = self.objective_options()
        d["model"] = model_config
        return d


def _step_generator(seed: int, step: int, rank: int) -> torch.Generator:
    return torch.Generator().manual_seed((int(seed) * 1_000_003 + int(step)) * 64 + int(rank))


class _StopFlag:
    """First SIGINT/SIGTERM asks the loop to stop at the next step boundary (state is saved);
    a second SIGINT interrupts at once."""

    def __init__(self):
        self.requested = False
        self._old = {}

    def _handle(self, signum, frame):
        self.requested = True
        if signum == signal.SIGINT:
            signal.signal(signal.SIGINT, signal.default_int_handler)
        if is_rank_zero():
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


class SvmValidator:
    """Linear SVM on frozen global features, fitted on the train split of `data` (ModelNet10 by
    default) and scored on its validation split: the test split is never read while training.
    Logged only, never used to choose a checkpoint. Data is loaded once."""

    FIT_SPLIT, SCORE_SPLIT = "train", "val"

    def __init__(self, data: str, num_points: int, seeds=(0,)):
        self.train = load_arrays(data, self.FIT_SPLIT, num_points=num_points)
        self.test = load_arrays(data, self.SCORE_SPLIT, num_points=num_points)
        self.seeds = tuple(seeds)

    def __call__(self, encoder, device) -> dict:
        ftr = extract_features(encoder, self.train["points"], device=device)
        fte = extract_features(encoder, self.test["points"], device=device)
        res = linear_svm_eval(ftr, self.train["labels"], fte, self.test["labels"], seeds=self.seeds)
        return {"val_svm_acc": float(res["accuracy_mean"]), "val_svm_C": float(res["C"])}


def _subsample(points: torch.Tensor, n: int, generator: torch.Generator) -> torch.Tensor:
    if points.shape[1] == n:
        return points
    idx = torch.rand(points.shape[:2], generator=generator).argsort(dim=1)[:, :n]
    return torch.gather(points, 1, idx.unsqueeze(-1).expand(-1, -1, 3))


def prepare_resume(cfg: PretrainConfig, out: Path) -> Path | None:
    """The state file to resume from, or None for a fresh run; refuses to overwrite a run."""
    state_path = out / STATE_FILE
    if cfg.resume in (None, "", False):
        check_run_folder(out, STATE_FILE, resume=False, overwrite=cfg.overwrite)
        return None
    if cfg.resume == "auto":
        return state_path if state_path.exists() else None
    path = Path(cfg.resume)
    if path.is_dir():
        path = path / STATE_FILE
    if not path.exists():
        raise FoundryInputError(f"--resume {cfg.resume}: no training state found at {path}")
    return path


def pretrain(cfg: PretrainConfig) -> dict:
    """Run (or continue) a pretraining run; returns a summary dict (also stored as out/summary.json)."""

    if cfg.preset not in PRESETS:
        raise FoundryInputError(f"unknown preset {cfg.preset!r}; available: {sorted(PRESETS)}")
    cfg.objective_options()  # validates the objective name
    if cfg.epochs < 1 or cfg.batch_size < 1 or cfg.lr <= 0:
        raise FoundryInputError("epochs, batch size and learning rate must be positive")
    if cfg.threads:
        torch.set_num_threads(int(cfg.threads))
    out = Path(cfg.out)
    resume_path = prepare_resume(cfg, out)

    fabric = make_fabric(cfg.devices, cfg.precision, cfg.strategy, cfg.accelerator)
    fabric.launch()
    rank, world = fabric.global_rank, fabric.world_size
    fabric.seed_everything(cfg.seed, verbose=False)

    encoder = create_model(cfg.preset)
    num_points = int(cfg.points or encoder.config.num_points)
    if num_points < encoder.min_points:
        raise FoundryInputError(f"--points {num_points} is below the {encoder.min_points} the {cfg.preset} preset needs")
    dataset = unlabelled_mix(cfg.data, num_points, cfg.seed)
    if cfg.batch_size % world:
        raise FoundryInputError(f"batch size {cfg.batch_size} must be divisible by the {world} processes")
    local_bs = cfg.batch_size // world
    steps_per_epoch = len(dataset) // cfg.batch_size
    if steps_per_epoch < 1:
        raise FoundryInputError(
            f"the training data has {len(dataset)} clouds, fewer than one batch of {cfg.batch_size}; "
            "lower --batch-size or add data"
        )
    total_steps = cfg.epochs * steps_per_epoch
    model = build_objective(cfg.objective, encoder, **cfg.objective_options())
    optimizer = torch.optim.AdamW(decay_groups(model, cfg.weight_decay), lr=cfg.lr, betas=(0.9, 0.999))
    model, optimizer = fabric.setup(model, optimizer)
    scheduler = cosine_with_warmup(optimizer, round(cfg.warmup_epochs * steps_per_epoch), total_steps,
                                   cfg.min_lr_ratio)
    run_config = cfg.run_config(encoder.config.to_dict())

    step, extra = 0, {}
    if resume_path is not None:
        _, step, extra = load_training_state(resume_path, model, optimizer, scheduler, run_config)
        if is_rank_zero():
            print(f"[foundry] resuming {resume_path} at step {step} (epoch {step // steps_per_epoch})", flush=True)
    train_seconds = float(extra.get("train_seconds", 0.0))
    wall_before = float(extra.get("wall_seconds", 0.0))
    val_history = list(extra.get("val", []))
    start_wall = time.time()

    if is_rank_zero():
        out.mkdir(parents=True, exist_ok=True)
        info = {"config": dataclasses.asdict(cfg), "data": dataset.describe(), "clouds": len(dataset),
                "steps_per_epoch": steps_per_epoch, "total_steps": total_steps, "points": num_points,
                "world_size": world, "device": device_name(fabric.device, fabric.world_size)}
        run_text = json.dumps(info, indent=2, default=str)
        atomic_write(out / "run.json", lambda tmp: Path(tmp).write_text(run_text))
    logger = RunLogger(out, resume_step=step if resume_path is not None else None)
    validator = None

    def run_validation(epoch_done: int):
        nonlocal validator
        if is_rank_zero():
            if validator is None:
                validator = SvmValidator(cfg.val_data, cfg.val_points or num_points)
            res = validator(unwrap(model).encoder, fabric.device)
            unwrap(model).train()
            res["epoch"] = epoch_done
            val_history.append(res)
            logger.log(step, **res)
            print(f"[foundry] epoch {epoch_done}: linear-SVM {cfg.val_data} val acc {res['val_svm_acc'] * 100:.2f}% "
                  "(validation only; not used to pick a checkpoint)", flush=True)
        fabric.barrier()

    def state_extra():
        return {"train_seconds": train_seconds, "wall_seconds": wall_before + time.time() - start_wall,
                "val": val_history, "steps_per_epoch": steps_per_epoch}

    def save_state():
        save_training_state(out / STATE_FILE, model=model, optimizer=optimizer, scheduler=scheduler,
                            epoch=step // steps_per_epoch, step=step, run_config=run_config, extra=state_extra())
        fabric.barrier()

    limit = total_steps if not cfg.max_steps else min(total_steps, int(cfg.max_steps))
    interrupted = False
    last_loss = float("nan")
    pbar = None
    if cfg.progress and is_rank_zero():
        from tqdm import tqdm

        pbar = tqdm(total=limit, initial=min(step, limit), desc=f"pretrain {cfg.objective}", unit="step",
                    dynamic_ncols=True, file=sys.stderr)
    model.train()
    window = {"loss": 0.0, "n": 0, "t": 0.0}
    with _StopFlag() as stop:
        while step < limit and not interrupted:
            epoch = step // steps_per_epoch
            perm = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(cfg.seed * 7919 + epoch))
            first = step - epoch * steps_per_epoch
            batches = [perm[i * cfg.batch_size + rank * local_bs: i * cfg.batch_size + (rank + 1) * local_bs].tolist()
                       for i in range(first, steps_per_epoch)]
            loader = torch.utils.data.DataLoader(dataset, batch_sampler=batches, num_workers=cfg.num_workers,
                                                 generator=torch.Generator().manual_seed(cfg.seed))
            for batch in loader:
                t0 = time.perf_counter()
                gen = _step_generator(cfg.seed, step, rank)
                pts = _subsample(batch["points"], num_points, gen)
                pts = augment_batch(pts, generator=gen, scale=tuple(cfg.aug_scale), translate=cfg.aug_translate)
                pts = pts.to(fabric.device)
                loss, metrics = model(pts, generator=gen)
                if not torch.isfinite(loss):
                    raise RuntimeError(f"the loss became {float(loss)} at step {step}; lower --lr or set --grad-clip "
                                       f"(the last good state is {out / STATE_FILE})")
                optimizer.zero_grad(set_to_none=True)
                fabric.backward(loss)
                if cfg.grad_clip:
                    fabric.clip_gradients(model, optimizer, max_norm=cfg.grad_clip)
                optimizer.step()
                scheduler.step()
                step_metrics = unwrap(model).after_step(step + 1, total_steps)
                step += 1
                dt = time.perf_counter() - t0
                train_seconds += dt
                last_loss = float(loss.detach())
                window["loss"] += last_loss
                window["n"] += 1
                window["t"] += dt
                if pbar is not None:
                    pbar.update(1)
                    pbar.set_postfix(loss=f"{last_loss:.4f}", epoch=step // steps_per_epoch)
                if step % cfg.log_every == 0 or step == limit:
                    extra_m = {k: float(v) for k, v in metrics.items() if k != "loss"}
                    mean_loss = window["loss"] / window["n"]
                    if world > 1:  # the mean over all processes
                        mean_loss = float(fabric.all_reduce(torch.tensor(mean_loss, device=fabric.device),
                                                            reduce_op="mean"))
                    logger.log(step, epoch=step / steps_per_epoch, loss=mean_loss,
                               lr=optimizer.param_groups[0]["lr"],
                               clouds_per_s=cfg.batch_size * window["n"] / max(window["t"], 1e-9),
                               **extra_m, **step_metrics)
                    window = {"loss": 0.0, "n": 0, "t": 0.0}
                stop_now = stop.requested
                late = bool(cfg.max_minutes) and time.time() - start_wall > 60 * cfg.max_minutes
                if world > 1:  # every process stops at the same step
                    flags = fabric.all_reduce(torch.tensor([float(stop_now), float(late)], device=fabric.device),
                                              reduce_op="sum")
                    stop_now, late = bool(flags[0] > 0), bool(flags[1] > 0)
                if stop_now:
                    interrupted = True
                    break
                if step >= limit:
                    break
                if late:
                    limit = step
                    if is_rank_zero():
                        print(f"[foundry] --max-minutes {cfg.max_minutes} reached at step {step}; "
                              "writing the encoder (continue later with --resume)", file=sys.stderr, flush=True)
                    break
            epoch_done = step // steps_per_epoch
            if not interrupted and step % steps_per_epoch == 0 and cfg.val_every and epoch_done % cfg.val_every == 0:
                run_validation(epoch_done)
            save_state()
    if pbar is not None:
        pbar.close()
    logger.close()
    sync_buffers(model)
    wall = wall_before + time.time() - start_wall
    summary = {
        "objective": cfg.objective, "preset": cfg.preset, "data": dataset.describe(), "clouds": len(dataset),
        "epochs": step / steps_per_epoch, "steps": step, "total_steps": total_steps, "complete": step >= total_steps,
        "batch_size": cfg.batch_size, "points": num_points, "lr": cfg.lr, "seed": cfg.seed,
        "wall_seconds": round(wall, 1), "train_seconds": round(train_seconds, 1),
        "throughput_clouds_per_s": round(step * cfg.batch_size / max(train_seconds, 1e-9), 2) if step else None,
        "device": device_name(fabric.device, fabric.world_size), "precision": cfg.precision or default_precision(),
        "world_size": world, "final_loss": last_loss, "val": val_history, "command": cfg.command,
        "interrupted": interrupted, "out": str(out),
    }
    if interrupted:
        if is_rank_zero():
            print(f"[foundry] stopped at step {step}; continue with --resume (state in {out / STATE_FILE})",
                  file=sys.stderr, flush=True)
        raise KeyboardInterrupt
    if is_rank_zero():
        info = {k: summary[k] for k in ("objective", "data", "epochs", "steps", "complete", "batch_size", "points",
                                         "lr", "seed", "wall_seconds", "throughput_clouds_per_s", "device",
                                         "precision", "world_size", "final_loss", "command")}
        info["source"] = "foundry pretrain"
        save(unwrap(model).encoder, out / ENCODER_FILE, info=info)
        summary_text = json.dumps(summary, indent=2, default=str)
        atomic_write(out / "summary.json", lambda tmp: Path(tmp).write_text(summary_text))
        print(f"[foundry] wrote {out / ENCODER_FILE} ({summary['epochs']:.2f} epochs, {summary['steps']} steps, "
              f"{summary['wall_seconds']:.0f} s, {summary['throughput_clouds_per_s']} clouds/s)", flush=True)
    fabric.barrier()
    return summary

