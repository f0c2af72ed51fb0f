"""The ground floor: RegionCLIP in plain PyTorch (encoders, RoI path, losses, save/load).

Knows nothing of Lightning, DVC or params.yaml; everything here is testable alone.
"""

from regionmed.model.config import ModelConfig, RoiConfig, TextConfig, VisionConfig
from regionmed.model.io import export_model, load_model, read_config
from regionmed.model.losses import ClipLoss, gather_features, hierarchical_loss, region_phrase_loss
from regionmed.model.regionclip import RegionCLIP
from regionmed.model.roi import proposal_boxes, roi_align
from regionmed.model.text import encode_text_list, token_ids_hash
from regionmed.model.tokenizer import train_wordpiece_tokenizer

__all__ = [
    "ClipLoss",
    "ModelConfig",
    "RegionCLIP",
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
