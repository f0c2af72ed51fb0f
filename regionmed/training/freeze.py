"""Freezing the bottom of a Hugging Face transformer tower (embeddings + the first N layers)."""

from __future__ import annotations

from torch import nn


def _layers(model: nn.Module) -> list[nn.Module]:
    for path in ("encoder.layer", "encoder.layers", "vision_model.encoder.layers", "layers"):
        obj = model
        try:
            for part in path.split("."):
                obj = getattr(obj, part)
        except AttributeError:
            continue
        return list(obj)
    raise ValueError(f"cannot find the transformer layers of {type(model).__name__}")


def freeze_bottom_layers(tower: nn.Module, n_layers: int) -> None:
    """``n_layers``: 0 freezes nothing, -1 the whole tower, N the embeddings and the first N layers."""
    if n_layers == 0:
        return
    if n_layers < 0:
        tower.requires_grad_(False)
        return
    hf = getattr(tower, "backbone", tower)
    for name, module in hf.named_children():
        if "embed" in name:
            module.requires_grad_(False)
    for layer in _layers(hf)[:n_layers]:
        layer.requires_grad_(False)
