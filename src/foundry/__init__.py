"""Foundry: distil 3D point-cloud foundation models into small SuperToken students."""
from .api import create_model, load, save, save_pretrained
from .validation import FoundryInputError
from .version import __version__

__all__ = ["create_model", "load", "save", "save_pretrained", "FoundryInputError", "__version__"]
