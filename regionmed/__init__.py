"""RegionMed: region-aware contrastive image-text pretraining for medical images.

``regionmed.load_model(path)`` loads an exported model folder (safetensors, never a pickle).
"""

__version__ = "0.1.0"


def load_model(path, device="cpu"):
    """``(model, tokenizer)`` from an exported model folder; see :func:`regionmed.model.io.load_model`."""
    from regionmed.model.io import load_model as _load

    return _load(path, device)
