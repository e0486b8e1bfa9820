"""A model as a folder in the layout the Hugging Face Hub serves as is.

    config.json         what to build: kind, config, Foundry version, and the sha256 of the weights file
    model.safetensors   the weights: a Foundry checkpoint (`save_checkpoint`), so it also loads alone
    README.md           the model card; its YAML front matter holds the card's fields as metadata
                        (library_name, tags, base_model, datasets, ...) for the Hub to index

`save_pretrained(model, folder)` writes it, `load_pretrained(folder)` rebuilds the model offline.
Each file is written atomically, config.json last, so a folder with a config.json is complete.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from ..io import atomic_write, config_dict, file_sha256
from ..validation import FoundryInputError
from ..version import __version__
from .checkpoint import load_checkpoint, read_header, save_checkpoint

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
CARD_FILE = "README.md"
LAYOUT = "foundry-pretrained"
LAYOUT_VERSION = 1


def is_pretrained_folder(path) -> bool:
    """Whether `path` is a folder meant to be a pretrained-model folder (it holds either file)."""
    path = Path(path)
    return path.is_dir() and ((path / CONFIG_FILE).exists() or (path / WEIGHTS_FILE).exists())


def _yaml_value(v) -> str:
    """A YAML scalar or flow list (JSON strings are valid YAML, so json.dumps quotes safely)."""
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(json.dumps(str(x)) for x in v) + "]"
    if isinstance(v, bool) or v is None:
        return json.dumps(v)
    return json.dumps(v) if isinstance(v, (int, float)) else json.dumps(str(v))


def card_metadata(model: nn.Module, name: str, info: dict, license: str | None) -> dict:
    """The model card's fields, in the names the Hub reads (plus foundry_* ones of our own)."""
    kind = getattr(model, "kind", "backbone")
    cfg = config_dict(model)
    data = info.get("data") or []
    meta = {"library_name": "foundry", "license": license,
            "tags": ["foundry", "point-cloud", "3d", "pytorch", "safetensors"]
            + (["knowledge-distillation", "supertokens"] if kind == "student" else ["self-supervised"]),
            "pipeline_tag": "feature-extraction",
            "base_model": cfg.get("teacher") if kind == "student" else None,
            "datasets": [str(d).split(":")[0] for d in (data if isinstance(data, list) else [data])],
            "model_name": name, "foundry_kind": kind,
            "parameters": sum(p.numel() for p in model.parameters()),
            "num_points": cfg.get("num_points"), "token_dim": getattr(model, "token_dim", None),
            "feature_dim": getattr(model, "feature_dim", None)}
    return {k: v for k, v in meta.items() if v not in (None, [], "")}


def model_card(model: nn.Module, name: str, info: dict, *, license: str | None = None, summary: str | None = None) -> str:
    meta = card_metadata(model, name, info, license)
    front = ["---"] + [f"{k}: {_yaml_value(v)}" for k, v in meta.items()] + ["---", ""]
    kind = meta["foundry_kind"]
    what = {"student": "A Foundry SuperToken student: it reconstructs its teacher's patch tokens, so heads built "
                       "for the teacher run on it unchanged.",
            "backbone": "A point-cloud transformer backbone (patch tokens from FPS + kNN groups)."}
    body = [f"# {name}", "", summary or what.get(kind, f"A Foundry model of kind `{kind}`."), "",
            "## Use", "", "```python", "import foundry", "",
            f'model = foundry.load("path/to/{name}")   # this folder, or "hf:OWNER/{name}" once pushed',
            "tokens, centers = model.forward_tokens(points)   # points: (B, N, 3) float",
            "features = model.forward_features(points)", "```", "",
            "## Configuration", "", "| field | value |", "|---|---|"]
    body += [f"| {k} | `{json.dumps(v)}` |" for k, v in config_dict(model).items()]
    if info:
        body += ["", "## Provenance", "", "```json", json.dumps(info, indent=1, default=str), "```"]
    return "\n".join(front + body) + "\n"


def save_pretrained(model: nn.Module, folder, *, name: str | None = None, info: dict | None = None,
                    dtype: torch.dtype | None = None, license: str | None = None, card: str | None = None) -> Path:
    """Write `model` as a pretrained-model folder (see the module docstring); returns the folder.

    info: provenance (default: the info the model was loaded with); card: a model card text to use
    instead of the generated one (its YAML front matter, if any, is kept as it is).
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise FoundryInputError(f"{folder} is a file; save_pretrained writes a folder (give a folder path)")
    info = dict(info if info is not None else getattr(model, "checkpoint_info", {}) or {})
    name = name or folder.resolve().name
    folder.mkdir(parents=True, exist_ok=True)
    (folder / CONFIG_FILE).unlink(missing_ok=True)  # incomplete until config.json is written again
    weights = save_checkpoint(model, folder / WEIGHTS_FILE, info=info, dtype=dtype)
    text = card or model_card(model, name, info, license=license)
    atomic_write(folder / CARD_FILE, lambda tmp: Path(tmp).write_text(text))
    config = {"layout": LAYOUT, "layout_version": LAYOUT_VERSION, "library_name": "foundry",
              "kind": model.kind, "name": name, "foundry_version": __version__,
              "config": config_dict(model),
              "files": {WEIGHTS_FILE: {"sha256": file_sha256(weights), "bytes": weights.stat().st_size}}}
    atomic_write(folder / CONFIG_FILE, lambda tmp: Path(tmp).write_text(json.dumps(config, indent=2) + "\n"))
    return folder


def read_pretrained_config(folder) -> dict:
    """config.json of a pretrained-model folder, with errors that say what is wrong and what to do."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FoundryInputError(f"no pretrained-model folder at {folder}")
    path = folder / CONFIG_FILE
    if not path.exists():
        raise FoundryInputError(
            f"{folder} lacks {CONFIG_FILE}: it is not a complete pretrained-model folder (it needs {CONFIG_FILE} and "
            f"{WEIGHTS_FILE}); write it again with foundry.save_pretrained or download it again")
    try:
        config = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise FoundryInputError(f"{path} is corrupt (not JSON: {exc}); write or download the folder again") from exc
    if not isinstance(config, dict) or config.get("layout") != LAYOUT or "kind" not in config:
        raise FoundryInputError(f"{path} is not a Foundry model config (no '{LAYOUT}' layout); is {folder} a model "
                                "of another library?")
    return config


def load_pretrained(folder, *, verify: bool = True) -> nn.Module:
    """Rebuild the model saved in `folder` (offline); eval mode, on the CPU.

    verify: check model.safetensors against the sha256 recorded in config.json (a changed or
    truncated file is refused, even one that still parses)."""
    folder = Path(folder)
    config = read_pretrained_config(folder)
    weights = folder / WEIGHTS_FILE
    if not weights.exists():
        raise FoundryInputError(f"{folder} lacks {WEIGHTS_FILE} (the weights); write or download the folder again")
    expected = (config.get("files") or {}).get(WEIGHTS_FILE, {})
    if verify and expected.get("sha256") and file_sha256(weights) != expected["sha256"]:
        raise FoundryInputError(
            f"{weights} is corrupt: its sha256 differs from the one in {CONFIG_FILE} ({weights.stat().st_size} bytes, "
            f"expected {expected.get('bytes')}); it was changed or cut short since it was saved: download it again")
    header = read_header(weights)  # a clear error for a file that is not a readable Foundry checkpoint
    if header["kind"] != config["kind"] or header["config"] != config.get("config", header["config"]):
        raise FoundryInputError(f"{CONFIG_FILE} and {WEIGHTS_FILE} in {folder} describe different models "
                                f"({config['kind']} vs {header['kind']}); the folder mixes two saves: save it again")
    model = load_checkpoint(weights)
    model.pretrained_name = config.get("name", folder.name)
    return model
