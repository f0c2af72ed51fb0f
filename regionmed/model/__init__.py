"""The ground floor: RegionCLIP in plain PyTorch (encoders, RoI path, typed outputs, losses, save/load).

Knows nothing of Lightning, DVC or params.yaml; everything here is testable alone. Names are
imported lazily, so that reading a config (``regionmed.model.config``) does not load torch and
transformers.
"""

from importlib import import_module

_EXPORTS = {
    "ModelConfig": "config",
    "RoiConfig": "config",
    "TextConfig": "config",
    "VisionConfig": "config",
    "export_model": "io",
    "load_model": "io",
    "read_config": "io",
    "ClipLoss": "losses",
    "gather_features": "losses",
    "hierarchical_loss": "losses",
    "region_phrase_loss": "losses",
    "Grounding": "outputs",
    "RegionCLIPOutput": "outputs",
    "RegionCLIP": "regionclip",
    "proposal_boxes": "roi",
    "roi_align": "roi",
    "encode_text_list": "text",
    "token_ids_hash": "text",
    "train_wordpiece_tokenizer": "tokenizer",
}
__all__ = [
    "ClipLoss",
    "Grounding",
    "ModelConfig",
    "RegionCLIP",
    "RegionCLIPOutput",
    "RoiConfig",
    "TextConfig",
    "VisionConfig",
    "encode_text_list",
    "export_model",
    "gather_features",
    "hierarchical_loss",
    "load_model",
    "proposal_boxes",
    "read_config",
    "region_phrase_loss",
    "roi_align",
    "token_ids_hash",
    "train_wordpiece_tokenizer",
]
assert sorted(__all__) == sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'regionmed.model' has no attribute {name!r}")
    return getattr(import_module(f"regionmed.model.{_EXPORTS[name]}"), name)
