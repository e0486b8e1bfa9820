"""Self-describing checkpoints: weights in safetensors, config and provenance in its metadata.

A file written here needs nothing else to be rebuilt: `load_checkpoint(path)` reads the model
kind and its config from the header, builds the model and loads the weights.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
from torch import nn

from ..io import atomic_write, config_dict
from ..validation import FoundryInputError, check_checkpoint_file
from ..version import __version__
from .kinds import KINDS, build_model

FORMAT = "foundry-checkpoint"
FORMAT_VERSION = "1"
DIGESTED_HEADER = ("kind", "config", "info")  # header entries covered by the "sha256" digest

def tensor_digest(state: dict, header: dict | None = None) -> str:
    """sha256 over names, dtypes, shapes and raw bytes of a dict of tensors (sorted by name), and
    over the header entries that rebuild the model (kind, config, info): an integrity record of a
    checkpoint, recomputed on load."""
    h = hashlib.sha256()
    for k in DIGESTED_HEADER:
        h.update(f"{k}={(header or {}).get(k, '')}|".encode())
    for k in sorted(state):
        v = state[k].detach().cpu().contiguous()
        h.update(f"{k}|{v.dtype}|{tuple(v.shape)}|".encode())
        if v.numel():
            h.update(v.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def check_finite(state: dict, source: str) -> None:
    """Refuse a dict of tensors with NaN/Inf (or float16 overflow) values, naming them."""
    bad = sorted(k for k, v in state.items()
                 if isinstance(v, torch.Tensor) and v.is_floating_point() and not bool(torch.isfinite(v).all()))
    if bad:
        raise FoundryInputError(f"{source} has NaN/Inf values in {len(bad)} tensor(s) (e.g. {bad[:3]}): the weights "
                                "diverged or the file is corrupt; nothing was written or loaded from them")


def save_checkpoint(model: nn.Module, path, *, info: dict | None = None, dtype: torch.dtype | None = None) -> Path:
    """Save `model` (weights + config + `info` provenance) as one safetensors file.

    dtype=torch.float16 halves the file for shipping; floats are cast back on load. Refuses
    non-finite weights; records a digest of the tensors that `load_checkpoint` verifies.
    """
    from safetensors.torch import save_file

    state = {}
    for k, v in model.state_dict().items():
        v = v.detach().cpu()
        if dtype is not None and v.is_floating_point():
            v = v.to(dtype)
        state[k] = v.contiguous()
    check_finite(state, f"the model to be saved as {path}" + (f" (in {dtype})" if dtype is not None else ""))
    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "kind": model.kind,
        "config": json.dumps(config_dict(model)),
        "info": json.dumps(info or {}),
        "foundry_version": __version__,
    }
    meta["sha256"] = tensor_digest(state, meta)
    atomic_write(path, lambda tmp: save_file(state, tmp, metadata=meta))
    return Path(path)


def read_header(path) -> dict:
    """The metadata of a Foundry checkpoint, with config and info decoded."""
    from safetensors import safe_open

    path = check_checkpoint_file(path, suffix=".safetensors")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            shapes = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
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
    meta["raw"] = {k: meta.get(k, "") for k in DIGESTED_HEADER}
    for key, required in (("config", True), ("info", False)):
        text = meta.get(key, None if required else "{}")
        if text is None:
            raise FoundryInputError(f"the header of {path} has no '{key}' entry: the file is damaged or was not "
                                    "written by Foundry; re-export it from its source")
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            raise FoundryInputError(f"the '{key}' entry in the header of {path} is not valid JSON ({exc}): the file "
                                    "is damaged; re-export it from its source") from exc
        if not isinstance(value, dict):
            raise FoundryInputError(f"the '{key}' entry in the header of {path} is a {type(value).__name__}, not a "
                                    "JSON object: the file is damaged; re-export it from its source")
        meta[key] = value
    if not isinstance(meta.get("kind"), str):
        raise FoundryInputError(f"the header of {path} does not say which kind of model it holds (no 'kind')")
    meta["shapes"] = shapes
    return meta


def _build(kind: str, config: dict, path, shapes: dict) -> nn.Module:
    """The model of `kind` from `config`, checked first on the meta device (no memory) against the
    tensor shapes stored in the file, so a damaged or crafted config cannot allocate at will."""
    skeleton = None
    try:
        with torch.device("meta"):
            skeleton = build_model(kind, config)
    except Exception as exc:  # noqa: BLE001 - any builder error means the config does not describe a model
        if "meta" not in str(exc):  # (a builder that needs real data on meta: the real build below decides)
            raise FoundryInputError(f"the config in {path} does not describe a valid '{kind}' model "
                                    f"({type(exc).__name__}: {exc}); the file is damaged or was edited") from exc
    if skeleton is not None:
        own = {k: tuple(v.shape) for k, v in skeleton.state_dict().items()}
        if own != shapes:
            wrong = sorted(k for k in set(own) & set(shapes) if own[k] != shapes[k])
            detail = (f"e.g. {wrong[0]}: config {own[wrong[0]]} vs file {shapes[wrong[0]]}" if wrong else
                      f"{len(set(own) ^ set(shapes))} tensor names differ")
            raise FoundryInputError(f"the weights in {path} do not fit the model its header's config describes "
                                    f"({detail}); the file is damaged or was edited")
    try:
        return build_model(kind, config)
    except Exception as exc:  # noqa: BLE001 - any builder error means the config does not describe a model
        raise FoundryInputError(f"the config in {path} does not describe a valid '{kind}' model ({type(exc).__name__}: "
                                f"{exc}); the file is damaged or was written by an incompatible version") from exc


def load_checkpoint(path, *, expect_kind: str | None = None) -> nn.Module:
    """Rebuild a model from a Foundry checkpoint; returns it in eval mode on the CPU.

    The weights must match the digest recorded when the file was written (files written before
    digests existed, such as older shipped weights, load without that check) and be finite."""
    from safetensors.torch import load_file

    meta = read_header(path)
    kind = meta["kind"]
    if expect_kind is not None and kind != expect_kind:
        raise FoundryInputError(f"{path} holds a '{kind}' model, but a '{expect_kind}' model was expected")
    if kind not in KINDS:
        raise FoundryInputError(f"{path} holds a model of unknown kind '{kind}' (known: {sorted(KINDS)})")
    model = _build(kind, meta["config"], path, meta["shapes"])
    try:
        state = load_file(str(path), device="cpu")
    except Exception as exc:
        raise FoundryInputError(f"could not read the weights of {path} ({exc}); the file may be truncated") from exc
    if "sha256" in meta and tensor_digest(state, meta["raw"]) != meta["sha256"]:
        raise FoundryInputError(f"the weights in {path} do not match the digest recorded when it was written: the file "
                                "was damaged (or changed) after saving; restore it from a good copy or re-create it")
    check_finite(state, str(path))
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
