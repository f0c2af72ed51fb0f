"""Typed architecture settings of RegionCLIP.

These are the ``model:`` block of ``params.yaml`` (read there by the params loader) and the
``model`` entry of an exported model's ``config.json``; keep the field names stable, since an
exported model is rebuilt from them. ``extra="forbid"`` turns a typo into an error naming the key.
No field has a default: the values live in ``params.yaml`` (one home), and a ``config.json`` written
before a field existed is completed by the legacy table in :mod:`regionmed.model.io`.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from regionmed.strict import StrictModel

# The report texts the model contrasts with an image (manifest columns), coarse to fine.
TEXT_LEVELS = ("report", "modality_text", "anatomy_text", "finding_text")


class VisionConfig(StrictModel):
    """The image tower.

    ``backbone``: ``None`` builds a small ViT from the fields below with random weights; otherwise a
    Hugging Face model id or a local folder loaded with ``from_pretrained`` (any ViT-like model whose
    output is ``[CLS] (+ other prefix tokens) + patch tokens``). With a backbone, the architecture
    fields below are ignored except ``image_size`` (the size of the images the model is given) and
    ``channels`` (the channels of those images; grayscale is repeated when the backbone wants RGB).
    """

    backbone: str | None
    image_size: int = Field(ge=8)
    patch_size: int = Field(ge=1)
    channels: Literal[1, 3]
    hidden: int = Field(ge=8)
    layers: int = Field(ge=1)
    heads: int = Field(ge=1)
    mlp: int = Field(ge=8)
    # The model takes pixels in 0..1 and normalises them itself, so serving and training agree.
    # A pretrained backbone usually wants its own statistics (e.g. ImageNet's); set them here.
    pixel_mean: float
    pixel_std: float = Field(gt=0)

    @model_validator(mode="after")
    def _divisible(self) -> VisionConfig:
        if self.backbone is None:
            if self.image_size % self.patch_size:
                raise ValueError(
                    f"image_size {self.image_size} is not a multiple of patch_size {self.patch_size}"
                )
            if self.hidden % self.heads:
                raise ValueError(f"vision hidden {self.hidden} is not a multiple of heads {self.heads}")
        return self


class TextConfig(StrictModel):
    """The text tower: a BERT built from these fields (``backbone: None``) or loaded pretrained.

    ``vocab_size`` is the size asked of the WordPiece trainer; the model's embedding table takes the
    size of the tokenizer actually trained (a small corpus yields fewer pieces than asked for).
    A pretrained text backbone comes with its own tokenizer, which must then be used instead.
    """

    backbone: str | None
    hidden: int = Field(ge=8)
    layers: int = Field(ge=1)
    heads: int = Field(ge=1)
    mlp: int = Field(ge=8)
    max_length: int = Field(ge=4)
    vocab_size: int = Field(ge=16)
    # BERT's own default is 0.1; attention dropout forces the slow "math" attention kernel on CPU
    # (about a sixth of a tiny model's step), and a contrastive batch is regularisation enough.
    dropout: float = Field(ge=0, lt=1)

    @model_validator(mode="after")
    def _divisible(self) -> TextConfig:
        if self.backbone is None and self.hidden % self.heads:
            raise ValueError(f"text hidden {self.hidden} is not a multiple of heads {self.heads}")
        return self


class BoxHeadConfig(StrictModel):
    """The box head (:mod:`regionmed.model.box_head`): ``ground()``'s box drawn from a window of the image
    around the heatmap's peak, finer than the patch grid.

    - ``window``: the window's side, in patch cells, centred on the anchor point.
    - ``crop_size``: the window's pixels are resampled to ``crop_size x crop_size`` (default 32 over a
      48 px window: 1.5 px a sample) for the head's convolutions.
    - ``channels``: width of the head's convolutions.
    - ``centre_stride``: crop samples per cell of the map whose soft-argmax is the box's centre: 4 (the
      head's deepest map) or 2 (that map upsampled and joined with the half-resolution pixel features:
      finer cells for findings of a few pixels).
    - ``anchor_jitter``: in training the anchor is the true box centre moved by up to this many cells
      along each axis (uniform), the spread of the heatmap peak's distance to the centre that the head
      learns to correct; at inference the anchor is the peak cell's centre. At most half the window.
    """

    window: float = Field(gt=0)
    crop_size: int = Field(ge=8)
    channels: int = Field(ge=4)
    anchor_jitter: float = Field(ge=0)
    centre_stride: Literal[2, 4]

    @model_validator(mode="after")
    def _anchor_inside_window(self) -> BoxHeadConfig:
        if self.crop_size % 4:
            raise ValueError(f"box_head.crop_size {self.crop_size} is not a multiple of 4")
        if self.anchor_jitter > self.window / 2:
            raise ValueError(
                f"box_head.anchor_jitter {self.anchor_jitter} exceeds half the window ({self.window / 2}):"
                " the true centre would fall outside the window the head sees"
            )
        return self


class RoiConfig(StrictModel):
    """The region path: RoIAlign over the patch grid, an optional crop branch, and fusion.

    - ``pool_size``: RoIAlign output grid per region (``pool_size x pool_size`` cells of the patch grid).
    - ``sampling_ratio``: bilinear samples per output cell along each axis (fixed, >= 1).
    - ``crop_branch``: also re-encode each region's crop (resized to ``crop_size``) with the image
      encoder; sharper for small findings, but one extra encoder pass per region.
    - ``fusion_heads``: heads of the cross-attention from region tokens to [global + patch tokens].
    - ``fusion_dim``: width of the region tokens and the fusion (the patch and global features are
      projected down to it first); ``None`` = the image encoder's width. Narrower is cheaper: the
      fusion runs over every proposal and patch cell of every image (BENCHMARKS.md).
    - ``cell_path``: how each patch cell becomes a region feature, for the grounding loss, the heatmap
      of ``ground()`` and (with ``grid_sizes: [gh]``) the region-aware image embedding. ``fusion``: the
      cell box goes through the whole region path like an annotated box (RoIAlign, box embedding,
      cross-attention to the image context, gate). ``direct``: the region token before the
      cross-attention (RoIAlign + box embedding, normalised): the ROI processor's forward +
      backward on a default batch ~15 ms instead of ~25 ms, same grounding, better zero-shot, lower
      R@5 (docs/experiments.md); annotated boxes and ``encode_regions`` always take
      the whole path.
    - ``proposals``: boxes used when none are given. ``grid``: a fixed multi-scale tiling of the image
      into ``n x n`` boxes for each ``n`` in ``grid_sizes``. ``similarity`` (grounding only, where a text
      is known): the grid boxes plus boxes centred on the best-matching patch cells.
    - ``box_head``: ``ground()``'s box from the box head at the heatmap's peak (:class:`BoxHeadConfig`,
      trained by the ``box`` loss); ``None``: no head, the best-scoring proposal is the box.
    """

    pool_size: int = Field(ge=1)
    sampling_ratio: int = Field(ge=1)
    crop_branch: bool
    crop_size: int = Field(ge=8)
    fusion_heads: int = Field(ge=1)
    fusion_dim: int | None = Field(ge=8)
    cell_path: Literal["fusion", "direct"]
    proposals: Literal["grid", "similarity"]
    grid_sizes: list[int] = Field(min_length=1)
    box_head: BoxHeadConfig | None

    @model_validator(mode="after")
    def _positive_grid(self) -> RoiConfig:
        if any(n < 1 for n in self.grid_sizes):
            raise ValueError(f"grid_sizes must be >= 1, got {self.grid_sizes}")
        return self


class ModelConfig(StrictModel):
    """The whole model. ``embed_dim``: the shared embedding space; ``init_temperature``: the InfoNCE
    temperature at initialisation (the logit scale ``1/T`` is learned, capped at 100)."""

    vision: VisionConfig
    text: TextConfig
    roi: RoiConfig
    embed_dim: int = Field(ge=2)
    init_temperature: float = Field(gt=0.01, le=1.0)
    gradient_checkpointing: bool

    @model_validator(mode="after")
    def _fusion_heads_divide(self) -> ModelConfig:
        width, name = (
            (self.roi.fusion_dim, "roi.fusion_dim")
            if self.roi.fusion_dim
            else (self.vision.hidden, "vision.hidden")
        )
        if (self.roi.fusion_dim or self.vision.backbone is None) and width % self.roi.fusion_heads:
            raise ValueError(f"roi.fusion_heads {self.roi.fusion_heads} must divide {name} {width}")
        return self
