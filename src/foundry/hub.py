"""Shipped models: weights that live inside the package, loadable by name offline."""
from __future__ import annotations

from pathlib import Path

WEIGHTS_DIR = Path(__file__).parent / "assets" / "weights"


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
