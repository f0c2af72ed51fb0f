"""Tiny randomly initialised OWLv2 and SAM models saved to a folder: the real loading and calling path
of the ``detector`` localizer, offline, in well under a second per call (no pretrained weights)."""

from __future__ import annotations

import string
from pathlib import Path


def save_tiny_owlv2(folder: Path) -> Path:
    import torch
    from transformers import (
        CLIPTokenizer,
        Owlv2Config,
        Owlv2ForObjectDetection,
        Owlv2ImageProcessor,
        Owlv2Processor,
    )

    # ids > 0 for every real token: OWLv2 masks a query whose first id is 0
    vocab = {"!": 0, "<|startoftext|>": 1, "<|endoftext|>": 2}
    for c in string.ascii_lowercase + string.digits + "-,.'":
        vocab.setdefault(c, len(vocab))
        vocab.setdefault(c + "</w>", len(vocab))
    tokenizer = CLIPTokenizer(vocab=vocab, merges=[])
    torch.manual_seed(0)
    config = Owlv2Config(
        text_config={
            "hidden_size": 32,
            "intermediate_size": 37,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "vocab_size": len(vocab),
            "max_position_embeddings": 128,
            "bos_token_id": 1,
            "eos_token_id": 2,
            "pad_token_id": 2,
        },
        vision_config={
            "hidden_size": 32,
            "intermediate_size": 37,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "image_size": 64,
            "patch_size": 16,
        },
        projection_dim=32,
    )
    model = Owlv2ForObjectDetection(config)
    with (
        torch.no_grad()
    ):  # random box weights give zero-width boxes; at zero each box is its patch's prior box
        model.box_head.dense2.weight.zero_()
        model.box_head.dense2.bias.zero_()
    model.save_pretrained(folder)
    Owlv2Processor(
        image_processor=Owlv2ImageProcessor(size={"height": 64, "width": 64}), tokenizer=tokenizer
    ).save_pretrained(folder)
    return folder


def save_tiny_sam(folder: Path) -> Path:
    import torch
    from transformers import SamConfig, SamModel, SamProcessor

    try:  # the PIL backend: torchvision is not installed
        from transformers import SamImageProcessorPil as SamImageProcessor
    except ImportError:
        from transformers import SamImageProcessor

    torch.manual_seed(0)
    config = SamConfig(
        vision_config={
            "hidden_size": 32,
            "intermediate_size": 37,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "image_size": 64,
            "patch_size": 16,
            "output_channels": 16,
            "global_attn_indexes": [0],
            "window_size": 2,
            "mlp_dim": 37,
            "num_pos_feats": 8,
        },
        prompt_encoder_config={
            "hidden_size": 16,
            "image_size": 64,
            "patch_size": 16,
            "mask_input_channels": 4,
        },
        mask_decoder_config={
            "hidden_size": 16,
            "mlp_dim": 32,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "iou_head_hidden_dim": 16,
        },
    )
    SamModel(config).save_pretrained(folder)
    SamProcessor(
        image_processor=SamImageProcessor(size={"longest_edge": 64}, pad_size={"height": 64, "width": 64})
    ).save_pretrained(folder)
    return folder
