"""Where models come from by name: shipped inside the package, saved in the local cache, or on the
Hugging Face Hub.

- shipped: `assets/weights/<name>.safetensors` (+ its card `<name>.md`), always offline;
- cached: pretrained-model folders (`foundry.models.pretrained`) under `cache_dir()`
  (`$FOUNDRY_HOME/models`, default `~/.cache/foundry/models`), one per Hub name `owner--name`;
- the Hub: `pull(repo_id)` downloads a folder into the cache and `push(folder, repo_id)` uploads
  one, through the optional `huggingface_hub` package (`pip install "foundry3d[hub]"`), imported
  only when called. A model pulled once loads offline from the cache afterwards.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

from .models.pretrained import CARD_FILE, CONFIG_FILE, WEIGHTS_FILE, load_pretrained, read_pretrained_config
from .validation import FoundryInputError

WEIGHTS_DIR = Path(__file__).parent / "assets" / "weights"
HUB_PREFIX = "hf:"
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def shipped_models() -> dict[str, Path]:
    """Name -> checkpoint path of every model shipped with this package."""
    if not WEIGHTS_DIR.is_dir():
        return {}
    return {p.stem: p for p in sorted(WEIGHTS_DIR.glob("*.safetensors"))}


def model_card(name: str) -> str | None:
    card = WEIGHTS_DIR / f"{name}.md"
    return card.read_text() if card.exists() else None


def resolve(name_or_path: str) -> Path | None:
    """Path of a shipped model by name, or None when `name_or_path` is not a shipped name."""
    return shipped_models().get(str(name_or_path))


def cache_dir() -> Path:
    home = os.environ.get("FOUNDRY_HOME")
    return (Path(home) if home else Path.home() / ".cache" / "foundry") / "models"


def cached_models() -> dict[str, Path]:
    """Hub name ('owner/name') -> folder of every complete model folder in the local cache."""

    root = cache_dir()
    if not root.is_dir():
        return {}
    return {p.name.replace("--", "/", 1): p for p in sorted(root.iterdir()) if (p / CONFIG_FILE).is_file()}


def repo_id_of(name: str) -> str | None:
    """'hf:owner/name' or 'owner/name' -> 'owner/name'; None when `name` is not a Hub name."""
    name = str(name)
    rid = name[len(HUB_PREFIX):] if name.startswith(HUB_PREFIX) else name
    return rid if _REPO_ID.match(rid) else None


def cached_folder(repo_id: str) -> Path:
    return cache_dir() / repo_id.replace("/", "--", 1)


def _hub_api():
    try:
        import huggingface_hub
    except ImportError as exc:
        raise FoundryInputError('pushing or pulling by Hub name needs the huggingface_hub package: '
                                'pip install "foundry3d[hub]" (local folders load without it)') from exc
    return huggingface_hub


def pull(repo_id: str, *, revision: str | None = None, force: bool = False) -> Path:
    """The cached folder of Hub model `repo_id`, downloaded first when absent (or `force`)."""

    folder = cached_folder(repo_id)
    if (folder / CONFIG_FILE).is_file() and not force:
        return folder
    hub = _hub_api()
    hub.snapshot_download(repo_id=repo_id, revision=revision, local_dir=str(folder),
                          allow_patterns=[CONFIG_FILE, WEIGHTS_FILE, CARD_FILE])
    read_pretrained_config(folder)  # a clear error when the repository is not a Foundry model
    return folder


def push(folder, repo_id: str, *, private: bool = False, message: str | None = None) -> str:
    """Upload a pretrained-model folder to the Hub as `repo_id` (created when absent); returns the
    name that loads it ('hf:owner/name')."""

    load_pretrained(folder)  # never publish a folder that does not load
    hub = _hub_api()
    api = hub.HfApi()
    api.create_repo(repo_id=repo_id, private=private, exist_ok=True)
    api.upload_folder(repo_id=repo_id, folder_path=str(folder), allow_patterns=[CONFIG_FILE, WEIGHTS_FILE, CARD_FILE],
                      commit_message=message or f"Upload {Path(folder).name} with foundry")
    return HUB_PREFIX + repo_id
