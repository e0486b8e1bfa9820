"""Foundry: distil 3D point-cloud foundation models into small SuperToken students."""
__version__ = "0.1.0"

from .api import create_model, load, save, save_pretrained  # noqa: E402
from .validation import FoundryInputError  # noqa: E402

__all__ = ["create_model", "load", "save", "save_pretrained", "FoundryInputError", "__version__"]
