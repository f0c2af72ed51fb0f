"""The pipeline's settings: the params.yaml sections of the stages corpus to gate, and their root
:class:`PipelineParams` (read with :func:`load_pipeline_params`; regionmed/params_loader.py).

The stages before ``package`` read only this root, so their code (and their DVC deps) holds none of
the operations' settings (regionmed/params_operations.py): a change there reruns none of them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from regionmed.errors import BadInput
from regionmed.model.config import ModelConfig
from regionmed.params_loader import DEFAULT_PARAMS_FILE, load_root
from regionmed.strict import StrictModel


class SplitFractions(StrictModel):
    train: float = Field(ge=0, le=1)
    val: float = Field(ge=0, le=1)
    test: float = Field(ge=0, le=1)

    @model_validator(mode="after")
    def _sum_to_one(self) -> SplitFractions:
        total = self.train + self.val + self.test
        if abs(total - 1.0) > 1e-6:
            raise ValueError(f"split fractions must sum to 1, got {total:.4f}")
        return self


class SyntheticParams(StrictModel):
    """Knobs of the procedural phantom generator (the anatomy atlas itself is data in code)."""

    n_images: int = Field(ge=1)
    modalities: list[Literal["chest_xray", "brain_mri", "abdomen_ct"]]
    images_per_patient_max: int = Field(ge=1)
    max_findings: int = Field(ge=0)
    p_no_finding: float = Field(ge=0, le=1)
    size_weights: dict[Literal["subtle", "small", "large"], float]
    noise_std: float = Field(ge=0)
    max_rotation_deg: float = Field(ge=0)
    max_scale_jitter: float = Field(ge=0, lt=0.5)
    max_shift: float = Field(ge=0, lt=0.5)
    gamma_jitter: float = Field(ge=0, lt=1)
    negatives_per_report: int = Field(ge=0)
    absent_presence_questions: int = Field(ge=0)


class ImportParams(StrictModel):
    """Settings for importing real data (JSONL, COCO, MedPix, DICOM folders)."""

    path: str | None
    captions_csv: str | None
    max_file_bytes: int = Field(ge=1)
    max_image_pixels: int = Field(ge=1)
    dicom_window: Literal["header", "minmax"]


# corpus.source: the built-in phantom generator or one of the importers (regionmed/corpus/importers)
IMPORTERS = ("jsonl", "coco", "medpix")
CorpusSource = Literal[("synthetic", *IMPORTERS)]


class ClusterParams(StrictModel):
    """Where the per-image work of the stages runs: a Dask cluster (regionmed/cluster.py, docs/scaling.md)."""

    address: str | None  # None: a LocalCluster of ``workers`` on this machine; else a scheduler's address
    workers: int = Field(ge=1)  # LocalCluster worker processes (1: one in-process worker, no pickling)
    threads_per_worker: int = Field(ge=1)  # task threads per worker (also torch's threads in a worker)
    memory_limit: str  # per LocalCluster worker ("4GiB"); Dask pauses a worker above 80% of it
    connect_timeout_s: float = Field(gt=0)  # an address that does not answer stops the stage after this
    allowed_failures: int = Field(ge=0)  # a task whose workers died this many times fails the stage


# How a corpus stores its images: WebDataset-style tar shards (a few hundred files for DVC to track at any
# size) or one PNG per image (what older corpora hold; every reader takes both: regionmed/corpus/shards.py)
CorpusLayout = Literal["shards", "files"]


class CorpusParams(StrictModel):
    source: CorpusSource
    out_dir: str
    image_size: int = Field(ge=16)
    channels: Literal[1, 3]
    layout: CorpusLayout
    shard_size: int = Field(ge=1)  # images per shard, and per task of the build
    split: SplitFractions
    max_reject_fraction: float = Field(ge=0, le=1)
    min_box_area: float = Field(ge=0)
    max_text_chars: int = Field(ge=1)
    synthetic: SyntheticParams
    importer: ImportParams


class DetectorParams(StrictModel):
    """The ``detector`` localizer (docs/annotation.md): Hugging Face hub ids or local folders."""

    model: str | None  # an AutoModelForZeroShotObjectDetection (OWLv2, OWL-ViT, Grounding DINO)
    sam: str | None  # optional SamModel (SAM, MedSAM): box -> mask -> tight box
    box_threshold: float = Field(ge=0, le=1)  # detections under this score are no answer
    batch_size: int = Field(ge=1)


class PriorConfidence(StrictModel):
    """The confidence of a box the location words alone placed, by what framed the words
    (regionmed/annotation/anatomy.py): the prior never looked at the image's pixels."""

    image_anatomy: float = Field(ge=0, le=1)  # inside an anatomy box given with this image
    corpus_anatomy: float = Field(ge=0, le=1)  # inside the corpus's mean box of the organ
    words: float = Field(ge=0, le=1)  # halves and thirds of the whole image (no anatomy box anywhere)


class AnnotateParams(StrictModel):
    """The annotate_regions stage (regionmed/annotation; docs/annotation.md)."""

    out_dir: str  # the annotated corpus every later stage reads
    # auto: nothing where the reports' findings are all boxed, the annotator (train_annotator) where one
    # was trained, else nothing (regionmed/annotation/stage.py)
    localizer: Literal["auto", "none", "prior", "self", "detector"]
    splits: list[Literal["train", "val", "test"]]  # never test: its boxes are the evaluation's truth
    kinds: list[Literal["finding", "anatomy"]]
    keep_uncertain: bool  # "possible nodule": placed only when true
    min_confidence: float = Field(ge=0, le=1)  # boxes scored under this are dropped (counted)
    prior_confidence: PriorConfidence
    # the train_annotator stage (auto): its model folder, and the given-boxed train images it needs
    annotator_dir: str
    annotator_min_boxed: int = Field(ge=1)
    # an organ the annotator places in an image without its box frames the words there only when, on up
    # to this many val images with that organ's box, it overlaps the box more than the corpus mean does
    # (regionmed/annotation/learned_anatomy.py); 0: the mean always frames them
    annotator_anatomy_check: int = Field(ge=0)
    hide_given_fraction: float = Field(ge=0, le=1)  # experiments: train images whose given regions are hidden
    max_report_chars: int = Field(ge=1)  # longer reports are read up to here (counted)
    self_model_dir: str  # the `self` localizer's trained RegionMed model
    self_levels: list[float]  # heatmap levels whose connected area around the peak is a candidate
    self_tilings: list[int]  # n x n tilings added to the candidates
    # region_score: the candidate the model's region path scores best; heatmap: the connected area around
    # the heatmap's peak at the middle self_level (no region-path scoring); sized: a box centred where the
    # heatmap peaks (sub-cell), as large as the given train boxes of the phrase's label and size word
    self_select: Literal["region_score", "heatmap", "sized"]
    # the report's location words ("right upper zone", "left kidney") bound where the `self` heatmap is
    # searched: the cells the text-only prior's box touches (phrases without location words: anywhere)
    self_location_words: bool
    # passes of the image moved by 1/n of a patch (down and right): an n-times finer heatmap, n passes' cost
    self_shifts: int = Field(ge=1, le=8)
    batch_size: int = Field(ge=1)
    detector: DetectorParams
    summary_file: str
    preview_file: str
    preview_images: int = Field(ge=0)


LossName = Literal["global", "region", "grounding", "negation", "modality", "anatomy", "finding", "box"]


class AugmentParams(StrictModel):
    max_shift: float = Field(ge=0, lt=0.5)  # fraction of the image; boxes move with it
    intensity: float = Field(ge=0, lt=1)  # +- contrast / brightness
    # share of finding phrases whose grounding query drops its location words ("a small nodule")
    location_free: float = Field(ge=0, le=1)


class PhaseParams(StrictModel):
    """One progressive phase (one DVC stage). ``steps: 0`` skips the phase (weights pass through)."""

    steps: int | None = Field(ge=0)  # None: the three progressive phases together (baseline)
    lr: float = Field(gt=0)
    loss_weights: dict[LossName, float]
    # Bottom transformer layers (plus embeddings) kept frozen; -1 freezes the whole encoder.
    freeze_image_layers: int = Field(ge=-1)
    freeze_text_layers: int = Field(ge=-1)
    global_only: bool  # the baseline: no ROI processor, global CLIP loss only


class TrainParams(StrictModel):
    batch_size: int = Field(ge=2)
    eval_batch_size: int = Field(ge=1)
    num_workers: int = Field(ge=0)
    precision: Literal["32-true", "bf16-mixed", "16-mixed", "bf16-true"]
    accelerator: str
    devices: int | str
    num_nodes: int = Field(ge=1)
    strategy: str
    accumulate_grad_batches: int = Field(ge=1)
    gradient_clip_val: float = Field(ge=0)
    weight_decay: float = Field(ge=0)
    warmup_steps: int = Field(ge=0)
    checkpoint_every_n_steps: int = Field(ge=1)
    val_every_n_steps: int = Field(ge=1)
    max_regions_per_image: int = Field(ge=1)
    # scales the region and grounding losses of annotated regions (origin "annotated"); given ones weigh 1
    annotated_region_weight: float = Field(ge=0)
    confidence_weighted: bool  # also multiply an annotated region's weight by its confidence
    # the grounding loss's target: this share on the cell holding the box's centre, the rest spread over
    # the cells by area (regionmed/model/losses.py cell_overlap_targets); 0 = by area alone
    grounding_centre_weight: float = Field(ge=0, le=1)
    # the box head's own learning rate (None: the phase's). Its inputs are detached, so it learns apart
    # from the encoders; at the phase's rate it was far from converged (docs/experiments.md)
    box_head_lr: float | None = Field(gt=0)
    deterministic: bool
    augment: AugmentParams


Severity = Literal["critical", "warning"]
Expected = Literal["auto", "required", "optional"]


class ValidationVocabulary(StrictModel):
    """Known values of a corpus; ``None`` = the source's own vocabulary (synthetic: the atlas), else
    unchecked."""

    modalities: list[str] | None
    labels: list[str] | None
    finding_labels: list[str] | None
    anatomy_labels: list[str] | None


class ValidationThresholds(StrictModel):
    min_images: int = Field(ge=0)
    min_text_chars: int = Field(ge=0)
    max_text_chars: int = Field(ge=1)
    min_box_area: float = Field(ge=0, le=1)
    split_tolerance: float = Field(ge=0, le=1)
    min_label_count: int = Field(ge=0)
    min_region_fraction: float = Field(ge=0, le=1)
    min_qa_fraction: float = Field(ge=0, le=1)
    max_annotated_fraction: float = Field(ge=0, le=1)  # images with annotated regions (a warning by default)
    max_reject_fraction: float = Field(ge=0, le=1)


class ValidationParams(StrictModel):
    """The ``validate_corpus`` stage: Great Expectations suites in ``suites_dir`` run on the corpus."""

    suites_dir: str
    metrics_file: str
    report_file: str
    regions: Expected  # auto: required for synthetic and coco corpora, else optional
    qa: Expected  # auto: required for synthetic and medpix corpora, else optional
    file_check_fraction: float = Field(ge=0, le=1)  # share of image files re-hashed (seeded sample)
    coverage_splits: list[Literal["train", "val", "test"]]
    max_examples: int = Field(ge=1)
    default_severity: Severity
    severity: dict[str, Severity]  # per check name (the `check` in each expectation's meta)
    thresholds: ValidationThresholds
    vocabulary: ValidationVocabulary


class EvaluateParams(StrictModel):
    """The ``evaluate`` stage: the candidate and the global-only baseline on the same split."""

    split: str
    candidate: str
    baseline: str
    batch_size: int = Field(ge=1)
    retrieval_ks: list[int]
    vqa_method: Literal["head", "similarity"]
    train_sample: int = Field(ge=1)  # train images for the text prior and the VQA head
    n_boot: int = Field(ge=10)
    alpha: float = Field(gt=0, lt=1)
    gallery_size: int = Field(ge=0)
    metrics_file: str
    plots_dir: str
    report_file: str


class RelativeFloors(StrictModel):
    """Floors against references measured on the same test images (regionmed/evaluation/gate.py), which
    mean the same on any corpus; a metric the test split cannot measure is skipped with a note."""

    above_chance: list[str]  # grounding views: the 95% interval above the chance level
    above_prior: list[str]  # grounding views: the paired interval of candidate - text prior above 0
    not_below_baseline: list[str]  # the paired interval of candidate - global-only baseline reaches 0


class GateParams(StrictModel):
    """The ``gate`` stage: floors, champion/challenger margin, and must-beat-baseline metrics."""

    floors: dict[str, float]  # absolute minimums: one corpus's targets
    # the corpus sources (corpus.source) the absolute floors were set for: on another they are reported
    # with a note, not enforced; null: every source
    floors_sources: list[CorpusSource] | None
    relative_floors: RelativeFloors
    # one margin for every floor and must-beat-baseline metric, or a margin per metric (exactly those
    # compared)
    champion_margin: float | dict[str, float]
    must_beat_baseline: list[str]
    # the model in production, committed with the repository so every clone and worker sees it
    # (docs/champion.md)
    champion_file: str
    require_champion: bool  # true: the gate fails (closed) when it cannot read the champion record
    decision_file: str


class PipelineParams(StrictModel):
    """The pipeline's root: the sections of ``SECTIONS["pipeline"]`` (regionmed/params_loader.py)."""

    seed: int
    cluster: ClusterParams
    corpus: CorpusParams
    annotate: AnnotateParams
    validation: ValidationParams
    model: ModelConfig
    train: TrainParams
    # One entry per progressive phase (one DVC stage each); see regionmed/training/train.py.
    phases: dict[Literal["global", "region", "joint", "baseline"], PhaseParams]
    evaluate: EvaluateParams
    gate: GateParams

    @property
    def stage_corpus(self) -> str:
        """The corpus every stage after annotate_regions reads: the annotated one."""
        return self.annotate.out_dir

    def check_model_fits_corpus(self) -> None:
        """Training needs the model's input size to be the corpus's image size (checked when it starts)."""
        v, c = self.model.vision, self.corpus
        if v.image_size != c.image_size or v.channels != c.channels:
            raise BadInput(
                f"model.vision (image_size {v.image_size}, channels {v.channels}) must match the corpus "
                f"(image_size {c.image_size}, channels {c.channels})"
            )


def load_pipeline_params(
    path: str | Path = DEFAULT_PARAMS_FILE, overrides: dict | None = None
) -> PipelineParams:
    """The pipeline's sections of ``path`` (:func:`regionmed.params_loader.load_root`)."""
    return load_root(PipelineParams, path, overrides)
