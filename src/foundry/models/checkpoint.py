"""Self-describing checkpoints: weights in safetensors, config and provenance in its metadata.

A file written here needs nothing else to be rebuilt: `load_checkpoint(path)` reads the model
kind and its config from the header, builds the model and loads the weights.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from ..validation import FoundryInputError

FORMAT = "foundry-checkpoint"
FORMAT_VERSION = "1"

# kind -> builder(config_dict) -> nn.Module; model families register themselves here.
_BUILDERS: dict[str, Callable[[dict], nn.Module]] = {}


def register_kind(kind: str, builder: Callable[[dict], nn.Module]) -> None:
    _BUILDERS[kind] = builder


def _ensure_builtin_kinds() -> None:
    if "backbone" not in _BUILDERS:
        from .backbone import PointTransformer
        from .config import BackboneConfig

        register_kind("backbone", lambda cfg: PointTransformer(BackboneConfig.from_dict(cfg)))
    if "student" not in _BUILDERS:
        try:  # the student family registers itself on import
            from . import student  # noqa: F401
        except ImportError:
            pass
    if "pointgpt" not in _BUILDERS:  # PointGPT encoders converted from official files
        from . import official  # noqa: F401


def atomic_write(path: str | os.PathLike, write: Callable[[str], None]) -> None:
    """Write through a temporary file in the same folder, then rename: never a half file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def model_config_dict(model: nn.Module) -> dict:
    cfg = model.config
    return cfg.to_dict() if hasattr(cfg, "to_dict") else dict(cfg)


def save_checkpoint(model: nn.Module, path, *, info: dict | None = None, dtype: torch.dtype | None = None) -> Path:
    """Save `model` (weights + config + `info` provenance) as one safetensors file.

    dtype=torch.float16 halves the file for shipping; floats are cast back on load.
    """
    from safetensors.torch import save_file

    from .. import __version__

    state = {}
    for k, v in model.state_dict().items():
        v = v.detach().cpu()
        if dtype is not None and v.is_floating_point():
            v = v.to(dtype)
        state[k] = v.contiguous()
    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "kind": getattr(model, "kind", "backbone"),
        "config": json.dumps(model_config_dict(model)),
        "info": json.dumps(info or {}),
        "foundry_version": __version__,
    }
    atomic_write(path, lambda tmp: save_file(state, tmp, metadata=meta))
    return Path(path)


def read_header(path) -> dict:
    """The metadata of a Foundry checkpoint, with config and info decoded."""
    from safetensors import safe_open

    path = Path(path)
    if not path.exists():
        raise FoundryInputError(f"checkpoint not found: {path}")
    if path.stat().st_size == 0:
        raise FoundryInputError(f"checkpoint {path} is empty (0 bytes): the file was not written completely")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except Exception as exc:  # safetensors raises its own error types
        raise FoundryInputError(
            f"checkpoint {path} is not a readable safetensors file ({exc}); it may be truncated or corrupt"
        ) from exc
    if meta.get("format") != FORMAT:
        raise FoundryInputError(
            f"{path} is a safetensors file but not a Foundry checkpoint (no '{FORMAT}' metadata); "
            "for an official Point-MAE/BERT/JEPA/GPT file use foundry.load on the original .pth"
        )
    meta = dict(meta)
    meta["config"] = json.loads(meta["config"])
    meta["info"] = json.loads(meta.get("info", "{}"))
    return meta


def load_checkpoint(path, *, expect_kind: str | None = None) -> nn.Module:
    """Rebuild a model from a Foundry checkpoint; returns it in eval mode on the CPU."""
    from safetensors.torch import load_file

    _ensure_builtin_kinds()
    meta = read_header(path)
    kind = meta["kind"]
    if expect_kind is not None and kind != expect_kind:
        raise FoundryInputError(f"{path} holds a '{kind}' model, but a '{expect_kind}' model was expected")
    if kind not in _BUILDERS:
        raise FoundryInputError(f"{path} holds a model of unknown kind '{kind}' (known: {sorted(_BUILDERS)})")
    model = _BUILDERS[kind](meta["config"])
    try:
        state = load_file(str(path), device="cpu")
    except Exception as exc:
        raise FoundryInputError(f"could not read the weights of {path} ({exc}); the file may be truncated") from exc
    load_state_strict(model, state, source=str(path))
    model.checkpoint_info = meta["info"]
    return model.eval()


def load_state_strict(model: nn.Module, state: dict, *, source: str) -> None:
    """load_state_dict with dtype casting and an error that names what does not match."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"missing {len(missing)} (e.g. {missing[:3]})")
        if unexpected:
            parts.append(f"unexpected {len(unexpected)} (e.g. {unexpected[:3]})")
        if wrong:
            k = wrong[0]
            parts.append(f"{len(wrong)} with other shapes (e.g. {k}: file {tuple(state[k].shape)} vs model {tuple(own[k].shape)})")
        raise FoundryInputError(
            f"weights in {source} do not fit the model: " + "; ".join(parts) + ". Is it a checkpoint of another model?"
        )
    cast = {k: v.to(own[k].dtype) for k, v in state.items()}
    model.load_state_dict(cast, strict=True)
