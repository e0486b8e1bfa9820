"""The public Python API; the `foundry` command mirrors it."""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from .hub import resolve, shipped_models
from .models.backbone import PointTransformer
from .models.checkpoint import load_checkpoint, save_checkpoint
from .models.official import load_official
from .models.presets import PRESETS, preset_config
from .models.student import create_student
from .models.student_config import STUDENT_PRESETS
from .validation import FoundryInputError

OFFICIAL_SUFFIXES = (".pth", ".pt", ".ckpt", ".bin")


def is_preset(name) -> bool:
    """Whether `name` names an untrained model preset (backbone or student)."""
    return isinstance(name, str) and (name in PRESETS or name in STUDENT_PRESETS)


def create_model(name: str, **overrides) -> nn.Module:
    """Build an untrained model from a named preset ('vit-s', 'small', 'tiny', or a student
    preset such as 'foundry-s16'), with config fields overridden by keyword."""
    if name in PRESETS:
        return PointTransformer(preset_config(name, **overrides))
    if name in STUDENT_PRESETS:
        return create_student(name, **overrides)
    raise KeyError(f"unknown model preset {name!r}; available: {sorted(PRESETS) + sorted(STUDENT_PRESETS)}")


def load(path_or_name: str | Path, **kwargs) -> nn.Module:
    """A ready model in eval mode on the CPU from a shipped name, a Foundry checkpoint
    (.safetensors), or an official Point-MAE / Point-BERT / Point-JEPA / PointGPT file."""
    if not isinstance(path_or_name, (str, Path)) or not str(path_or_name).strip():
        raise FoundryInputError(
            f"foundry.load needs a shipped model name or a checkpoint path, got {path_or_name!r}; "
            f"shipped models: {sorted(shipped_models()) or 'none installed'}")
    shipped = resolve(str(path_or_name))
    if shipped is not None:
        return load_checkpoint(shipped)
    path = Path(path_or_name)
    if not path.exists():
        names = sorted(shipped_models())
        raise FoundryInputError(
            f"no model named or found at {str(path_or_name)!r}. Shipped models: {names or 'none installed'}; "
            "or give the path of a .safetensors checkpoint or an official .pth file"
        )
    if path.is_dir():
        return load_folder(path)
    if path.suffix in OFFICIAL_SUFFIXES:
        return load_official(path, **kwargs).eval()
    return load_checkpoint(path)


def resolve_model(spec, *, seed: int | None = None, **overrides) -> nn.Module:
    """The one resolver of model names: a shipped name or an existing path goes to `load`; any
    other preset name builds an untrained model (torch seed `seed` first, when given; config
    fields from `overrides`). Returns it in eval mode."""
    spec = str(spec)
    if resolve(spec) is None and not Path(spec).exists() and is_preset(spec):
        if seed is not None:
            torch.manual_seed(seed)
        return create_model(spec, **overrides).eval()
    return load(spec).eval()


def load_folder(path: Path) -> nn.Module:
    """A model from a folder. No folder layout is supported yet, so this names what was found."""
    found = sorted(p.name for p in path.iterdir())[:8]
    raise FoundryInputError(
        f"{path} is a folder, not a model file (it holds {found or 'nothing'}); give the path of a .safetensors "
        "checkpoint or an official .pth file inside it")


def save(model: nn.Module, path, **kwargs):
    """Save any Foundry model as a self-describing safetensors checkpoint."""
    return save_checkpoint(model, path, **kwargs)
