"""RegionMed: region-aware contrastive image-text pretraining for medical images.

``regionmed.load_model(path)`` loads an exported model folder (safetensors, never a pickle). It is
resolved on first use, so importing any part of the package does not load the model code.
"""

from importlib import import_module

__version__ = "0.1.0"


def __getattr__(name: str):
    if name == "load_model":  # (model, tokenizer) from an exported folder: regionmed.model.io.load_model
        return import_module("regionmed.model.io").load_model
    raise AttributeError(f"module 'regionmed' has no attribute {name!r}")
