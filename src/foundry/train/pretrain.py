"""Self-supervised pretraining of a backbone (teacher) with Point-MAE or Point-JEPA.

`pretrain(PretrainConfig(...))` runs the whole thing through the one training loop (`train.loop`, on
Lightning Fabric: CPU, one GPU, DDP with `strategy="ddp"` or under torchrun; bf16-mixed autocast on
GPU) and writes to `out`:

    run.json               the configuration and data summary
    metrics.csv, tb/       training loss, learning rate, throughput; SVM validation when enabled
    training_state.pt      training state after every epoch (and on Ctrl-C / SIGTERM): --resume
    encoder.safetensors    the pretrained backbone as a Foundry checkpoint (foundry.load)

Exactness of --resume: the data order of an epoch is a seeded permutation of (seed, epoch); the
point subsets, augmentation and masks of a step come from a generator seeded by (seed, step,
rank); the global RNG (drop-path) is saved in the state. A resumed run therefore repeats the
steps an uninterrupted run would have made.
"""
from __future__ import annotations

import dataclasses
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..api import create_model, save
from ..data import augment_batch, load_arrays
from ..eval.svm import extract_features, linear_svm_eval
from ..io import atomic_write, device_name
from ..models.config import default_outlier_filter
from ..models.presets import PRESETS
from ..validation import FoundryInputError
from .common import (
    check_run_folder,
    default_precision,
    is_rank_zero,
    make_fabric,
    unlabelled_mix,
    unwrap,
)
from .loop import STATE_FILE, LoopSpec, fit, step_generator
from .objectives import build_objective

LEGACY_STATE_FILE = "state.pt"  # pretraining runs before the one training loop
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
    outlier_filter: bool = field(default_factory=default_outlier_filter)  # the encoder's grouping (models.config)
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
    # jepa: EMA momentum of the target encoder, linear from the first to the second value over the run.
    # Point-JEPA's (0.9995, 0.99999): the target stays near its initialisation for long. With (0.995, 1.0)
    # the `small` preset's target followed the online encoder within ~200 steps and the features
    # collapsed (validation SVM 89.7% after 5 epochs, below the random init's 92.0%)
    ema: tuple = (0.9995, 0.99999)
    # jepa: None, every non-target patch is context; (lo, hi): a contiguous context run of that share of the
    # non-target patches (Point-JEPA's 0.4-0.75; objectives.jepa). Recorded for resume only when set, so older runs resume
    context_ratio: tuple | None = None
    # run control (not part of what must match on resume)
    out: str = "runs/pretrain"
    resume: str | None = None  # None, "auto" (out/training_state.pt, or an older run's state.pt, if present) or a path
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
            opts = {"predictor_depth": self.predictor_depth, "predictor_width": self.predictor_width,
                    "num_targets": self.num_targets, "target_ratio": tuple(self.target_ratio), "ema": tuple(self.ema)}
            if self.context_ratio is not None:
                opts["context_ratio"] = tuple(self.context_ratio)
            return opts
        raise FoundryInputError(f"unknown objective {self.objective!r}; choose 'mae' or 'jepa'")

    def run_config(self, model_config: dict) -> dict:
        """What a resumed run must share with the run that wrote the state."""
        d = {k: v for k, v in dataclasses.asdict(self).items() if k not in self.RUN_CONTROL}
        d.pop("outlier_filter")  # in the model's config
        for k in ("mask_ratio", "decoder_depth", "predictor_depth", "predictor_width", "num_targets",
                  "target_ratio", "ema", "context_ratio"):
            d.pop(k)
        d["objective_options"] = self.objective_options()
        d["model"] = model_config
        return d


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
    """The state file to resume from, or None for a fresh run; refuses to overwrite a run. A run
    written before the one training loop saved its state as `state.pt`; it resumes too."""
    state_path = out / STATE_FILE
    if cfg.resume in (None, "", False):
        for name in (STATE_FILE, LEGACY_STATE_FILE):
            check_run_folder(out, name, resume=False, overwrite=cfg.overwrite)
        return None
    if cfg.resume == "auto":
        for path in (state_path, out / LEGACY_STATE_FILE):
            if path.exists():
                return path
        return None
    path = Path(cfg.resume)
    if path.is_dir():
        path = path / STATE_FILE if (path / STATE_FILE).exists() else path / LEGACY_STATE_FILE
    if not path.exists():
        raise FoundryInputError(f"--resume {cfg.resume}: no training state found at {path}")
    return path


class PretrainTask:
    """The loop's task for pretraining: a seeded permutation of the clouds per epoch, split over the
    processes; per step a generator seeded by (seed, step, rank) draws the point subsets, the
    augmentation and the objective's masks; the objective module gives the loss."""

    def __init__(self, cfg: PretrainConfig, dataset, num_points: int, steps_per_epoch: int, rank: int, world: int,
                 device):
        self.cfg, self.dataset, self.num_points, self.device = cfg, dataset, num_points, device
        self.steps_per_epoch, self.rank, self.local_bs = steps_per_epoch, rank, cfg.batch_size // world
        self.validator = None  # SvmValidator, its data loaded at the first validation
        self.val_history = []

    def batches(self, epoch: int, first: int):
        bs, lb = self.cfg.batch_size, self.local_bs
        perm = torch.randperm(len(self.dataset), generator=torch.Generator().manual_seed(self.cfg.seed * 7919 + epoch))
        batches = [perm[i * bs + self.rank * lb: i * bs + (self.rank + 1) * lb].tolist()
                   for i in range(first, self.steps_per_epoch)]
        return torch.utils.data.DataLoader(self.dataset, batch_sampler=batches, num_workers=self.cfg.num_workers,
                                           generator=torch.Generator().manual_seed(self.cfg.seed))

    def loss(self, model, batch, step: int, total_steps: int):
        gen = step_generator(self.cfg.seed, step, self.rank)
        pts = _subsample(batch["points"], self.num_points, gen)
        pts = augment_batch(pts, generator=gen, scale=tuple(self.cfg.aug_scale), translate=self.cfg.aug_translate)
        loss, metrics = model(pts.to(self.device), generator=gen)
        return loss, {"loss": float(loss.detach()), **{k: float(v) for k, v in metrics.items() if k != "loss"}}

    def after_step(self, module, step: int, total_steps: int) -> dict:
        return module.after_step(step, total_steps)

    def batch_clouds(self, batch) -> int:
        return len(batch["points"])

    def end_of_epoch(self, module, epoch: int, logger, step: int) -> None:
        cfg = self.cfg
        if not cfg.val_every or epoch % cfg.val_every:
            return
        if is_rank_zero():
            if self.validator is None:
                self.validator = SvmValidator(cfg.val_data, cfg.val_points or self.num_points)
            res = {**self.validator(module.encoder, self.device), "epoch": epoch}
            self.val_history.append(res)
            if logger is not None:
                logger.log(step, **res)
            print(f"[foundry] epoch {epoch}: linear-SVM {cfg.val_data} val acc {res['val_svm_acc'] * 100:.2f}% "
                  "(validation only; not used to pick a checkpoint)", flush=True)

    def state(self) -> dict:
        return {"val": self.val_history}

    def load_state(self, state: dict) -> None:
        self.val_history = list(state.get("val", []))


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

    encoder = create_model(cfg.preset, outlier_filter=cfg.outlier_filter)
    num_points = int(cfg.points or encoder.config.num_points)
    if num_points < encoder.min_points:
        raise FoundryInputError(f"--points {num_points} is below the {encoder.min_points} the {cfg.preset} preset needs")
    dataset = unlabelled_mix(cfg.data, num_points, cfg.seed)
    if cfg.batch_size % world:
        raise FoundryInputError(f"batch size {cfg.batch_size} must be divisible by the {world} processes")
    steps_per_epoch = len(dataset) // cfg.batch_size
    if steps_per_epoch < 1:
        raise FoundryInputError(
            f"the training data has {len(dataset)} clouds, fewer than one batch of {cfg.batch_size}; "
            "lower --batch-size or add data"
        )
    total_steps = cfg.epochs * steps_per_epoch
    objective = build_objective(cfg.objective, encoder, **cfg.objective_options())
    run_config = cfg.run_config(encoder.config.to_dict())
    if is_rank_zero():
        out.mkdir(parents=True, exist_ok=True)
        info = {"config": dataclasses.asdict(cfg), "data": dataset.describe(), "clouds": len(dataset),
                "steps_per_epoch": steps_per_epoch, "total_steps": total_steps, "points": num_points,
                "world_size": world, "device": device_name(fabric.device, fabric.world_size)}
        run_text = json.dumps(info, indent=2, default=str)
        atomic_write(out / "run.json", lambda tmp: Path(tmp).write_text(run_text))
    task = PretrainTask(cfg, dataset, num_points, steps_per_epoch, rank, world, fabric.device)
    spec = LoopSpec(epochs=cfg.epochs, steps_per_epoch=steps_per_epoch, lr=cfg.lr, weight_decay=cfg.weight_decay,
                    warmup_steps=round(cfg.warmup_epochs * steps_per_epoch), min_lr_ratio=cfg.min_lr_ratio,
                    grad_clip=cfg.grad_clip, log_every=cfg.log_every, max_steps=cfg.max_steps,
                    max_minutes=cfg.max_minutes, progress=f"pretrain {cfg.objective}" if cfg.progress else None)
    if resume_path is not None and is_rank_zero():
        print(f"[foundry] resuming {resume_path}", flush=True)
    model, res = fit(fabric, objective, task, spec, out_dir=out, run_config=run_config, resume_from=resume_path,
                     state_file=STATE_FILE, log=lambda msg: print(f"[foundry] {msg}", file=sys.stderr, flush=True)
                     if is_rank_zero() else None)
    step, interrupted = res.step, res.stopped == "signal"
    summary = {
        "objective": cfg.objective, "preset": cfg.preset, "data": dataset.describe(), "clouds": len(dataset),
        "epochs": step / steps_per_epoch, "steps": step, "total_steps": total_steps, "complete": res.finished,
        "batch_size": cfg.batch_size, "points": num_points, "lr": cfg.lr, "seed": cfg.seed,
        "wall_seconds": round(res.wall_seconds, 1), "train_seconds": round(res.train_seconds, 1),
        "throughput_clouds_per_s": round(step * cfg.batch_size / max(res.train_seconds, 1e-9), 2) if step else None,
        "device": device_name(fabric.device, fabric.world_size), "precision": cfg.precision or default_precision(),
        "world_size": world, "final_loss": res.last_metrics.get("loss", float("nan")), "val": task.val_history,
        "command": cfg.command, "interrupted": interrupted, "out": str(out),
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
