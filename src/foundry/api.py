"""The public Python API; the `foundry` command mirrors it."""
from __future__ import annotations

import re
from pathlib import Path

import torch
from torch import nn

from . import hub
from .hub import resolve
from .models.backbone import PointTransformer
from .models.baselines import ToMeTeacher
from .models.checkpoint import load_checkpoint, save_checkpoint
from .models.official import load_official
from .models.pretrained import is_pretrained_folder, load_pretrained
from .models.pretrained import save_pretrained as _save_pretrained
from .models.presets import PRESETS, preset_config
from .models.student import create_student
from .models.student_config import STUDENT_PRESETS
from .validation import FoundryInputError

OFFICIAL_SUFFIXES = (".pth", ".pt", ".ckpt", ".bin")
# a run-time setting after a model's name: MODEL@r=N (a gated student merging N tokens, or a float
# threshold), MODEL@tome=N (a backbone with ToMe merging N tokens per block), MODEL@outliers=1 (the
# outlier filter before the grouping on; 0 off)
BUDGET = re.compile(r"^(?P<base>.+)@(?P<key>r|tome|outliers)=(?P<value>[0-9]+(\.[0-9]*)?)$")


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
    """A ready model in eval mode on the CPU from a shipped name, a pretrained-model folder
    (`save_pretrained`), a Hub name ('hf:owner/name', from the local cache or downloaded once),
    a Foundry checkpoint (.safetensors), or an official Point-MAE / Point-BERT / Point-JEPA /
    PointGPT file."""
    if not isinstance(path_or_name, (str, Path)) or not str(path_or_name).strip():
        raise FoundryInputError(
            f"foundry.load needs a shipped model name or a checkpoint path, got {path_or_name!r}; "
            f"shipped models: {sorted(hub.shipped_models()) or 'none installed'}")
    shipped = hub.resolve(str(path_or_name))
    if shipped is not None:
        return load_checkpoint(shipped)
    path = Path(path_or_name)
    budget = BUDGET.match(str(path_or_name))
    if budget and not path.exists():
        return with_budget(load(budget["base"], **kwargs), budget["key"], budget["value"])
    repo_id = hub.repo_id_of(str(path_or_name))  # 'hf:owner/name', or 'owner/name' already in the cache
    if repo_id and (str(path_or_name).startswith(hub.HUB_PREFIX) or
                    (not path.exists() and repo_id in hub.cached_models())):
        return load_pretrained(hub.pull(repo_id))
    if not path.exists():
        names = sorted(hub.shipped_models())
        raise FoundryInputError(
            f"no model named or found at {str(path_or_name)!r}. Shipped models: {names or 'none installed'}; "
            "or give a pretrained-model folder, a Hub name 'hf:owner/name', the path of a .safetensors checkpoint "
            "or an official .pth file (foundry models lists what is available)"
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


def with_budget(model: nn.Module, key: str, value: str) -> nn.Module:
    """`model` at a run-time setting, no retraining: key "outliers" switches the outlier filter
    before the grouping (config `outlier_filter`); key "r" sets a gated student's merge
    budget (an integer: the r tokens with the highest merge probability; a float in [0, 1]: those
    with p > value), key "tome" wraps a backbone in ToMe merging `value` tokens per block. The budget
    enters the model's config, so evaluations, caches and MACs tell the budgets apart."""
    number = float(value) if "." in value else int(value)
    if key == "outliers":
        if number not in (0, 1) or isinstance(number, float):
            raise FoundryInputError(f"@outliers={value}: use @outliers=1 (filter on) or @outliers=0 (off)")
        model.patch_config.outlier_filter = bool(number)  # read by the grouping at every call
        if getattr(model, "checkpoint_info", None) is not None:
            model.checkpoint_info = {**model.checkpoint_info, "runtime_outlier_filter": bool(number)}
        return model
    if key == "tome":
        if getattr(model, "kind", None) != "backbone" or not isinstance(number, int):
            raise FoundryInputError(f"@tome={value} needs a backbone (teacher) and a whole number of merges per "
                                    f"block; this model is a {getattr(model, 'kind', type(model).__name__)!r}")
        return ToMeTeacher.wrap(model, number)
    if getattr(model, "kind", None) != "student" or getattr(model, "gate", None) is None:
        raise FoundryInputError(f"@r={value} sets the merge budget of a gated student (foundry-s16-gate); this model "
                                "has no gate. For a teacher use @tome=N (ToMe merging)")
    model.set_merge_budget(number)  # checks the range
    model.config = model.config.replace(merge_count=model.merge_count, merge_threshold=model.merge_threshold)
    if getattr(model, "checkpoint_info", None) is not None:
        model.checkpoint_info = {**model.checkpoint_info, "runtime_budget": f"r={value}"}
    return model


def load_folder(path: Path) -> nn.Module:
    """A model from a pretrained-model folder (`save_pretrained`); any other folder gets an error
    naming what was found."""
    if not is_pretrained_folder(path):
        found = sorted(p.name for p in path.iterdir())[:8]
        raise FoundryInputError(
            f"{path} is a folder without config.json or model.safetensors (it holds {found or 'nothing'}): not a "
            "pretrained-model folder (write one with foundry.save_pretrained); or give the path of a .safetensors "
            "checkpoint or an official .pth file inside it")
    return load_pretrained(path)


def save(model: nn.Module, path, **kwargs):
    """Save any Foundry model as a self-describing safetensors checkpoint."""
    return save_checkpoint(model, path, **kwargs)


def save_pretrained(model: nn.Module, folder, **kwargs):
    """Save a model as a folder the Hugging Face Hub serves as is: config.json, model.safetensors
    and a README.md model card (see `foundry.models.pretrained.save_pretrained`)."""
    return _save_pretrained(model, folder, **kwargs)
