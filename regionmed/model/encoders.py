"""Image and text towers over Hugging Face transformers, built from config or loaded pretrained.

Three ways to build each tower:
- ``backbone=None``: a small ViT / BERT from the config fields, random weights;
- ``backbone="<id or folder>"``: ``from_pretrained`` (real weights);
- ``hf_config=...``: the architecture only, from a saved HF config (how an exported model is
  rebuilt before its own weights are loaded, so serving never needs the original backbone).
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import AutoModel, BertConfig, BertModel, PretrainedConfig, ViTConfig, ViTModel

from regionmed.model.config import TextConfig, VisionConfig


def _unwrap_vision(model: nn.Module) -> nn.Module:
    # A dual-tower checkpoint (CLIP, SigLIP) loads as the pair; keep its vision tower.
    return getattr(model, "vision_model", model)


class ImageEncoder(nn.Module):
    """Pixels ``[B, C, H, W]`` (already normalised) →
    ``(global [B, hidden], patch grid [B, hidden, gh, gw])``.

    The global feature is the CLS token after the backbone's final layer norm. Tokens between CLS
    and the patches (distillation or register tokens) are dropped from the grid.
    """

    def __init__(self, config: VisionConfig, hf_config: PretrainedConfig | None = None):
        super().__init__()
        if hf_config is not None:
            self.backbone = _unwrap_vision(AutoModel.from_config(hf_config))
            if isinstance(self.backbone, ViTModel) and self.backbone.pooler is not None:
                self.backbone.pooler = None
        elif config.backbone is None:
            vit = ViTConfig(
                image_size=config.image_size,
                patch_size=config.patch_size,
                num_channels=config.channels,
                hidden_size=config.hidden,
                num_hidden_layers=config.layers,
                num_attention_heads=config.heads,
                intermediate_size=config.mlp,
            )
            self.backbone = ViTModel(vit, add_pooling_layer=False)
        else:
            self.backbone = _unwrap_vision(AutoModel.from_pretrained(config.backbone))
            # The pooler (dense + tanh) is trained for classification; we use the CLS token itself.
            if isinstance(self.backbone, ViTModel) and self.backbone.pooler is not None:
                self.backbone.pooler = None
        hf = self.backbone.config
        self.hidden = hf.hidden_size
        self.patch_size = _as_int(hf.patch_size)
        self.native_size = _as_int(hf.image_size)
        self.backbone_channels = getattr(hf, "num_channels", 3)
        # CLIP-style towers keep a layer norm outside the encoder for the CLS token.
        self.post_norm = getattr(self.backbone, "post_layernorm", None)

    def hf_config(self) -> PretrainedConfig:
        return self.backbone.config

    def grid_shape(self, image_size: int) -> tuple[int, int]:
        return image_size // self.patch_size, image_size // self.patch_size

    def forward(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        pixels = _match_channels(pixels, self.backbone_channels)
        h, w = pixels.shape[-2:]
        kwargs = {}
        if (h, w) != (self.native_size, self.native_size):
            kwargs["interpolate_pos_encoding"] = True  # crops and other sizes: resample positions
        tokens = self.backbone(pixel_values=pixels, **kwargs).last_hidden_state
        gh, gw = h // self.patch_size, w // self.patch_size
        cls = tokens[:, 0]
        if self.post_norm is not None:
            cls = self.post_norm(cls)
        patches = tokens[:, tokens.shape[1] - gh * gw :]
        grid = patches.transpose(1, 2).reshape(tokens.shape[0], self.hidden, gh, gw)
        return cls, grid

    def set_gradient_checkpointing(self, enabled: bool) -> None:
        _set_checkpointing(self.backbone, enabled)


class TextEncoder(nn.Module):
    """Token ids ``[B, L]`` and mask → sentence feature ``[B, hidden]``: the final CLS token.

    Why CLS rather than a masked mean: negation is compositional. "no effusion" and "effusion"
    share every content token, so a mean over tokens differs only by the diluted contribution of
    "no" (less and less in a long report), whereas the CLS token attends to the whole sentence and
    can learn to flip on the negation cue. The contrastive loss trains CLS directly, so it need not
    be pretrained as a sentence embedding.
    """

    def __init__(
        self,
        config: TextConfig,
        vocab_size: int | None = None,
        pad_token_id: int = 0,
        hf_config: PretrainedConfig | None = None,
    ):
        super().__init__()
        if hf_config is not None:
            self.backbone = AutoModel.from_config(hf_config)
        elif config.backbone is None:
            if vocab_size is None:
                raise ValueError("a text tower built from config needs the tokenizer's vocab_size")
            bert = BertConfig(
                vocab_size=vocab_size,
                hidden_size=config.hidden,
                num_hidden_layers=config.layers,
                num_attention_heads=config.heads,
                intermediate_size=config.mlp,
                max_position_embeddings=config.max_length,
                pad_token_id=pad_token_id,
                type_vocab_size=1,
                hidden_dropout_prob=config.dropout,
                attention_probs_dropout_prob=config.dropout,
            )
            self.backbone = BertModel(bert, add_pooling_layer=False)
        else:
            self.backbone = AutoModel.from_pretrained(config.backbone)
            if vocab_size is not None and vocab_size > self.backbone.config.vocab_size:
                raise ValueError(
                    f"tokenizer has {vocab_size} ids but backbone {config.backbone!r} embeds "
                    f"{self.backbone.config.vocab_size}: use the backbone's own tokenizer"
                )
        if getattr(self.backbone, "pooler", None) is not None:
            self.backbone.pooler = None  # unused; would be parameters without gradients
        self.hidden = self.backbone.config.hidden_size

    def hf_config(self) -> PretrainedConfig:
        return self.backbone.config

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        out = self.backbone(input_ids=input_ids, attention_mask=attention_mask)
        return out.last_hidden_state[:, 0]

    def set_gradient_checkpointing(self, enabled: bool) -> None:
        _set_checkpointing(self.backbone, enabled)


def _match_channels(pixels: torch.Tensor, wanted: int) -> torch.Tensor:
    have = pixels.shape[1]
    if have == wanted:
        return pixels
    if have == 1:
        return pixels.expand(-1, wanted, -1, -1)  # grayscale shown to an RGB backbone
    if wanted == 1:
        return pixels.mean(dim=1, keepdim=True)
    raise ValueError(f"cannot feed {have}-channel images to a {wanted}-channel backbone")


def _as_int(value) -> int:
    return int(value[0] if isinstance(value, (tuple, list)) else value)


def _set_checkpointing(model, enabled: bool) -> None:
    # transformers 5.24 renamed gradient_* to activation_checkpointing_* (the old names warn and
    # go away in v6); older releases have only the old names.
    kwargs = {"use_reentrant": False}  # non-reentrant: works with frozen layers and no-grad inputs
    if hasattr(model, "activation_checkpointing_enable"):
        if enabled:
            model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
        elif model.is_activation_checkpointing:
            model.activation_checkpointing_disable()
    elif hasattr(model, "gradient_checkpointing_enable"):
        if enabled:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
        elif model.is_gradient_checkpointing:
            model.gradient_checkpointing_disable()
    elif enabled:
        raise ValueError(f"{type(model).__name__} does not support gradient checkpointing")
