"""params.yaml sections of the pipeline's stages, corpus to gate (read through
:func:`regionmed.params.load_params`)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from regionmed.strict import StrictModel

# RUF012 (noqa'd on the fields below) is wrong here: these are pydantic fields (StrictModel is a
# BaseModel; ruff only recognises a direct BaseModel base), and pydantic copies a mutable default
# for each instance, so no state is shared. A ClassVar would make them stop being fields.


class SplitFractions(StrictModel):
    train: float = Field(0.8, ge=0, le=1)
    val: float = Field(0.1, ge=0, le=1)
    test: float = Field(0.1, ge=0, le=1)

    @model_validator(mode="after")
    def _sum_to_one(self) -> SplitFractions:
        total = self.train + self.val + self.test
        if abs(total - 1.0) > 1e-6:
            raise ValueError(f"split fractions must sum to 1, got {total:.4f}")
        return self


class SyntheticParams(StrictModel):
    """Knobs of the procedural phantom generator (the anatomy atlas itself is data in code)."""

    n_images: int = Field(4000, ge=1)
    modalities: list[Literal["chest_xray", "brain_mri", "abdomen_ct"]] = [  # noqa: RUF012
        "chest_xray",
        "brain_mri",
        "abdomen_ct",
    ]
    images_per_patient_max: int = Field(3, ge=1)
    max_findings: int = Field(3, ge=0)
    p_no_finding: float = Field(0.2, ge=0, le=1)
    size_weights: dict[Literal["subtle", "small", "large"], float] = {  # noqa: RUF012
        "subtle": 0.35,
        "small": 0.35,
        "large": 0.30,
    }
    noise_std: float = Field(0.04, ge=0)
    max_rotation_deg: float = Field(8.0, ge=0)
    max_scale_jitter: float = Field(0.08, ge=0, lt=0.5)
    max_shift: float = Field(0.05, ge=0, lt=0.5)
    gamma_jitter: float = Field(0.15, ge=0, lt=1)
    negatives_per_report: int = Field(2, ge=0)
    absent_presence_questions: int = Field(1, ge=0)


class ImportParams(StrictModel):
    """Settings for importing real data (JSONL, COCO, MedPix, DICOM folders)."""

    path: str | None = None
    captions_csv: str | None = None
    max_file_bytes: int = Field(64 * 1024 * 1024, ge=1)
    max_image_pixels: int = Field(40_000_000, ge=1)
    dicom_window: Literal["header", "minmax"] = "header"


# corpus.source: the built-in phantom generator or one of the importers (regionmed/corpus/importers)
IMPORTERS = ("jsonl", "coco", "medpix")
CorpusSource = Literal[("synthetic", *IMPORTERS)]


class CorpusParams(StrictModel):
    source: CorpusSource = "synthetic"
    out_dir: str = "data/corpus"
    image_size: int = Field(128, ge=16)
    channels: Literal[1, 3] = 1
    workers: int = Field(1, ge=1)
    chunk_size: int = Field(64, ge=1)
    split: SplitFractions = SplitFractions()
    max_reject_fraction: float = Field(0.05, ge=0, le=1)
    min_box_area: float = Field(1e-4, ge=0)
    max_text_chars: int = Field(8000, ge=1)
    synthetic: SyntheticParams = SyntheticParams()
    importer: ImportParams = ImportParams()


class DetectorParams(StrictModel):
    """The ``detector`` localizer (docs/annotation.md): Hugging Face hub ids or local folders."""

    model: str | None = None  # an AutoModelForZeroShotObjectDetection (OWLv2, OWL-ViT, Grounding DINO)
    sam: str | None = None  # optional SamModel (SAM, MedSAM): box -> mask -> tight box
    box_threshold: float = Field(0.0, ge=0, le=1)  # detections under this score are no answer
    batch_size: int = Field(8, ge=1)


class AnnotateParams(StrictModel):
    """The annotate_regions stage (regionmed/annotation; docs/annotation.md)."""

    out_dir: str = "data/corpus_annotated"  # the annotated corpus every later stage reads
    localizer: Literal["none", "prior", "self", "detector"] = "prior"
    splits: list[Literal["train", "val", "test"]] = [  # noqa: RUF012
        "train"
    ]  # never test: its boxes are the evaluation's truth
    kinds: list[Literal["finding", "anatomy"]] = ["finding", "anatomy"]  # noqa: RUF012
    keep_uncertain: bool = False  # "possible nodule": placed only when true
    min_confidence: float = Field(0.0, ge=0, le=1)  # boxes scored under this are dropped (counted)
    prior_confidence: float = Field(0.2, ge=0, le=1)  # the prior never looked at the image
    hide_given_fraction: float = Field(
        0.0, ge=0, le=1
    )  # experiments: train images whose given regions are hidden
    max_report_chars: int = Field(20000, ge=1)  # longer reports are read up to here (counted)
    self_model_dir: str = ".state/annotator"  # the `self` localizer's trained RegionMed model
    self_levels: list[float] = [  # noqa: RUF012
        0.25,
        0.5,
        0.75,
    ]  # heatmap levels whose connected area around the peak is a candidate
    self_tilings: list[int] = [2, 3, 4]  # n x n tilings added to the candidates  # noqa: RUF012
    # region_score: the candidate the model's region path scores best; heatmap: the connected area around
    # the heatmap's peak at the middle self_level (no region-path scoring); sized: a box centred where the
    # heatmap peaks (sub-cell), as large as the given train boxes of the phrase's label and size word
    self_select: Literal["region_score", "heatmap", "sized"] = "sized"
    # the report's location words ("right upper zone", "left kidney") bound where the `self` heatmap is
    # searched: the cells the text-only prior's box touches (phrases without location words: anywhere)
    self_location_words: bool = True
    # passes of the image moved by 1/n of a patch (down and right): an n-times finer heatmap, n passes' cost
    self_shifts: int = Field(1, ge=1, le=8)
    batch_size: int = Field(64, ge=1)
    detector: DetectorParams = DetectorParams()
    summary_file: str = "metrics/annotation.json"
    preview_file: str = "reports/annotation_preview.png"
    preview_images: int = Field(12, ge=0)


LossName = Literal["global", "region", "grounding", "negation", "modality", "anatomy", "finding"]


class AugmentParams(StrictModel):
    max_shift: float = Field(0.04, ge=0, lt=0.5)  # fraction of the image; boxes move with it
    intensity: float = Field(0.1, ge=0, lt=1)  # +- contrast / brightness
    # share of finding phrases whose grounding query drops its location words ("a small nodule")
    location_free: float = Field(0.0, ge=0, le=1)


class PhaseParams(StrictModel):
    """One progressive phase (one DVC stage). ``steps: 0`` skips the phase (weights pass through)."""

    steps: int | None = Field(None, ge=0)  # None: the three progressive phases together (baseline)
    lr: float = Field(gt=0)
    loss_weights: dict[LossName, float]
    # Bottom transformer layers (plus embeddings) kept frozen; -1 freezes the whole encoder.
    freeze_image_layers: int = Field(0, ge=-1)
    freeze_text_layers: int = Field(0, ge=-1)
    global_only: bool = False  # the baseline: no ROI processor, global CLIP loss only


class TrainParams(StrictModel):
    batch_size: int = Field(64, ge=2)
    eval_batch_size: int = Field(128, ge=1)
    num_workers: int = Field(0, ge=0)
    precision: Literal["32-true", "bf16-mixed", "16-mixed", "bf16-true"] = "bf16-mixed"
    accelerator: str = "cpu"
    devices: int | str = 1
    num_nodes: int = Field(1, ge=1)
    strategy: str = "auto"
    accumulate_grad_batches: int = Field(1, ge=1)
    gradient_clip_val: float = Field(1.0, ge=0)
    weight_decay: float = Field(0.05, ge=0)
    warmup_steps: int = Field(50, ge=0)
    checkpoint_every_n_steps: int = Field(100, ge=1)
    val_every_n_steps: int = Field(200, ge=1)
    max_regions_per_image: int = Field(6, ge=1)
    # scales the region and grounding losses of annotated regions (origin "annotated"); given ones weigh 1
    annotated_region_weight: float = Field(1.0, ge=0)
    confidence_weighted: bool = False  # also multiply an annotated region's weight by its confidence
    deterministic: bool = True
    augment: AugmentParams = AugmentParams()


Severity = Literal["critical", "warning"]
Expected = Literal["auto", "required", "optional"]


class ValidationVocabulary(StrictModel):
    """Known values of a corpus; ``None`` = the source's own vocabulary (synthetic: the atlas), else
    unchecked."""

    modalities: list[str] | None = None
    labels: list[str] | None = None
    finding_labels: list[str] | None = None
    anatomy_labels: list[str] | None = None


class ValidationThresholds(StrictModel):
    min_images: int = Field(1, ge=0)
    min_text_chars: int = Field(1, ge=0)
    max_text_chars: int = Field(8000, ge=1)
    min_box_area: float = Field(1e-4, ge=0, le=1)
    split_tolerance: float = Field(0.05, ge=0, le=1)
    min_label_count: int = Field(5, ge=0)
    min_region_fraction: float = Field(0.9, ge=0, le=1)
    min_qa_fraction: float = Field(0.9, ge=0, le=1)
    max_annotated_fraction: float = Field(
        0.9, ge=0, le=1
    )  # images with annotated regions (a warning by default)
    max_reject_fraction: float = Field(0.05, ge=0, le=1)


class ValidationParams(StrictModel):
    """The ``validate_corpus`` stage: Great Expectations suites in ``suites_dir`` run on the corpus."""

    suites_dir: str = "expectations"
    metrics_file: str = "metrics/validation.json"
    report_file: str = "reports/validation.html"
    regions: Expected = "auto"  # auto: required for synthetic and coco corpora, else optional
    qa: Expected = "auto"  # auto: required for synthetic and medpix corpora, else optional
    file_check_fraction: float = Field(1.0, ge=0, le=1)  # share of image files re-hashed (seeded sample)
    coverage_splits: list[Literal["train", "val", "test"]] = ["train", "test"]  # noqa: RUF012
    max_examples: int = Field(10, ge=1)
    default_severity: Severity = "critical"
    severity: dict[str, Severity] = {}  # per check name (the `check` in each expectation's meta)  # noqa: RUF012
    thresholds: ValidationThresholds = ValidationThresholds()
    vocabulary: ValidationVocabulary = ValidationVocabulary()


class EvaluateParams(StrictModel):
    """The ``evaluate`` stage: the candidate and the global-only baseline on the same split."""

    split: str = "test"
    candidate: str = "models/regionmed"
    baseline: str = "models/baseline"
    batch_size: int = Field(64, ge=1)
    retrieval_ks: list[int] = [1, 5, 10]  # noqa: RUF012
    vqa_method: Literal["head", "similarity"] = "head"
    train_sample: int = Field(2000, ge=1)  # train images for the text prior and the VQA head
    n_boot: int = Field(1000, ge=10)
    alpha: float = Field(0.05, gt=0, lt=1)
    gallery_size: int = Field(6, ge=0)
    metrics_file: str = "metrics/eval.json"
    plots_dir: str = "metrics/plots"
    report_file: str = "reports/eval.md"


class GateParams(StrictModel):
    """The ``gate`` stage: floors, champion/challenger margin, and must-beat-baseline metrics."""

    floors: dict[str, float] = {}  # noqa: RUF012
    # one margin for every floor and must-beat-baseline metric, or a margin per metric (exactly those
    # compared)
    champion_margin: float | dict[str, float] = 0.02
    must_beat_baseline: list[str] = []  # noqa: RUF012
    # the model in production, committed with the repository so every clone and worker sees it
    # (docs/champion.md)
    champion_file: str = "deploy/champion.json"
    require_champion: bool = False  # true: the gate fails (closed) when it cannot read the champion record
    decision_file: str = "metrics/gate.json"
