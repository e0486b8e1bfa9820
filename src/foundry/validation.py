"""Input checks that turn bad data into errors a user can act on."""
from __future__ import annotations

import itertools
import json
import os
from pathlib import Path

import torch

# Models are trained on unit-sphere clouds and compute in float32; far beyond this their
# activations overflow (NaN features at about 1e20 for the shipped models). FPS/kNN themselves
# work at any finite scale (foundry.ops.frame), so only the models refuse such clouds.
MAX_COORDINATE = 1e10


class FoundryInputError(ValueError):
    """Raised when points, data files or checkpoints are not what Foundry expects."""


def check_points(points, *, min_points: int = 1, name: str = "points", dtype: torch.dtype | None = None,
                 device: torch.device | None = None) -> torch.Tensor:
    """Validate a batch of clouds and return it as a float tensor of shape (B, N, 3).

    Accepts a (B, N, 3) tensor or a single (N, 3) cloud (a batch of one is added). dtype: the
    model's floating dtype; float inputs of another precision are cast to it (after checking that
    their values fit). device: the model's device; points elsewhere are refused, not moved.
    Nothing is normalised: clouds beyond |coordinate| MAX_COORDINATE are refused instead.
    """
    if not isinstance(points, torch.Tensor):
        raise FoundryInputError(f"{name} must be a torch.Tensor of shape (B, N, 3), got {type(points).__name__}")
    if points.device.type == "meta":
        raise FoundryInputError(f"{name} is a 'meta' tensor (a shape without data); create it on a real device, "
                                "e.g. torch.tensor(..., device='cpu')")
    if device is not None and points.device != torch.device(device):
        raise FoundryInputError(f"{name} is on {points.device} but the model is on {device}; move one of them "
                                f"(points.to('{device}') or model.to('{points.device}'))")
    if points.dim() == 2:
        points = points.unsqueeze(0)
    if points.dim() != 3:
        raise FoundryInputError(
            f"{name} must have shape (B, N, 3) (batch, points, xyz), got rank {points.dim()} shape {tuple(points.shape)}"
        )
    if points.shape[-1] != 3:
        hint = " (drop normals/colours: pass points[..., :3])" if points.shape[-1] > 3 else ""
        raise FoundryInputError(f"{name} must have xyz in the last dimension (size 3), got {points.shape[-1]}{hint}")
    if not torch.is_floating_point(points):
        raise FoundryInputError(f"{name} must be a float tensor, got dtype {points.dtype}; use points.float()")
    if points.shape[0] == 0 or points.shape[1] == 0:
        raise FoundryInputError(f"{name} is empty: shape {tuple(points.shape)}")
    if points.shape[1] < min_points:
        raise FoundryInputError(
            f"{name} has {points.shape[1]} points per cloud, but this model needs at least {min_points} "
            "(one patch's worth); upsample the cloud or use a model with a smaller group_size"
        )
    finite = torch.isfinite(points)
    if not bool(finite.all()):
        bad = (~finite).any(-1).any(-1).nonzero().flatten().tolist()
        raise FoundryInputError(f"{name} contains NaN or Inf coordinates in cloud(s) {bad[:10]}; clean or drop them")
    if not (torch.jit.is_tracing() or torch.onnx.is_in_onnx_export()):
        amax = points.detach().abs().amax(dim=(1, 2))
        if bool((amax > MAX_COORDINATE).any()):
            bad = (amax > MAX_COORDINATE).nonzero().flatten().tolist()
            raise FoundryInputError(
                f"{name} has coordinates up to {float(amax.max()):.3g} in cloud(s) {bad[:10]}, beyond the "
                f"{MAX_COORDINATE:.0e} these models compute safely (they were trained on unit-sphere clouds); "
                "centre each cloud and divide by its radius first")
    if dtype is not None and points.dtype != dtype:
        points = points.to(dtype)
    return points


def model_input_spec(module: torch.nn.Module) -> dict:
    """dtype and device that `check_points` should bring points to for `module` (its first floating
    parameter or buffer); empty when it has none."""
    for t in itertools.chain(module.parameters(), module.buffers()):
        if t.is_floating_point():
            return {"dtype": t.dtype, "device": t.device}
    return {}


def positive_int(value, what: str) -> int:
    """`value` as an int >= 1, or a FoundryInputError naming `what`."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise FoundryInputError(f"{what} must be a positive whole number, got {value!r}")
    return value


def check_output(path, *, overwrite: bool = False, inputs=(), flag: str = "--overwrite") -> Path:
    """Refuse to write `path` when it exists (unless `overwrite`), and always when it is one of
    `inputs` (files this command reads), so nothing finished is replaced by accident."""
    path = Path(path)
    for src in inputs:
        if src is not None and _same_file(path, Path(src)):
            raise FoundryInputError(f"the output {path} is also an input of this command; write to another path")
    if path.exists() and not overwrite:
        raise FoundryInputError(f"{path} already exists; choose another output path, or pass {flag} to replace it")
    return path


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def parse_key_values(items, *, flag: str = "--set", key_form: str = "KEY") -> dict:
    """["a=1", "b=[2, 3]", "c=text"] -> {"a": 1, "b": [2, 3], "c": "text"}: each value read as JSON,
    or kept as a string (a folder, a name) when it is not JSON."""
    out = {}
    for item in items or []:
        if "=" not in item:
            raise FoundryInputError(f"{flag} expects {key_form}=VALUE, got {item!r}")
        key, value = item.split("=", 1)
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def check_suffix(path, suffix: str, flag: str = "--out") -> Path:
    """`path` as a Path, or FoundryInputError when it does not end in `suffix` (e.g. ".onnx")."""
    path = Path(path)
    if path.suffix != suffix:
        raise FoundryInputError(f"{flag} must end in {suffix}, got {str(path)!r}")
    return path


def check_checkpoint_file(path, *, suffix: str) -> Path:
    """`path` as a Path when it names an existing, non-empty file; a FoundryInputError otherwise
    (`suffix`: the file a user should give instead of a folder, e.g. ".safetensors")."""
    path = Path(path)
    if not path.exists():
        raise FoundryInputError(f"checkpoint not found: {path}")
    if path.is_dir():
        raise FoundryInputError(f"{path} is a folder, not a checkpoint file; give the {suffix} file inside it")
    if path.stat().st_size == 0:
        raise FoundryInputError(f"checkpoint {path} is empty (0 bytes): the file was not written completely")
    return path
