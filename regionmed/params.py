"""The one typed loader of ``params.yaml``.

Every stage reads its parameters through :func:`load_params`; DVC reads the same file (the
``params:`` lists in ``dvc.yaml``). Models are ``extra="forbid"`` so that a typo in
``params.yaml`` is an error that names the key, not a silently ignored setting.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

import yaml
from pydantic import Field, ValidationError, model_validator

from regionmed.model.config import ModelConfig
from regionmed.strict import TRACE_ENV, StrictModel, record_reads

DEFAULT_PARAMS_FILE = Path("params.yaml")


class SplitFractions(StrictModel):
    train: float = Field(0.8, ge=0, le=1)
    val: float = Field(0.1, ge=0, le=1)
    test: float = Field(0.1, ge=0, le=1)

    @model_validator(mode="after")
    def _sum_to_one(self) -> "SplitFractions":
        total = self.train + self.val + self.test
        if abs(total - 1.0) > 1e-6:
            raise ValueError(f"split fractions must sum to 1, got {total:.4f}")
        return self


class SyntheticParams(StrictModel):
    """Knobs of the procedural phantom generator (the anatomy atlas itself is data in code)."""

    n_images: int = Field(4000, ge=1)
    modalities: list[Literal["chest_xray", "brain_mri", "abdomen_ct"]] = [
        "chest_xray",
        "brain_mri",
        "abdomen_ct",
    ]
    images_per_patient_max: int = Field(3, ge=1)
    max_findings: int = Field(3, ge=0)
    p_no_finding: float = Field(0.2, ge=0, le=1)
    size_weights: dict[Literal["subtle", "small", "large"], float] = {
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

    model: str | None = None       # an AutoModelForZeroShotObjectDetection (OWLv2, OWL-ViT, Grounding DINO)
    sam: str | None = None         # optional SamModel (SAM, MedSAM): box -> mask -> tight box
    box_threshold: float = Field(0.0, ge=0, le=1)  # detections under this score are no answer
    batch_size: int = Field(8, ge=1)


class AnnotateParams(StrictModel):
    """The annotate_regions stage (regionmed/annotation; docs/annotation.md)."""

    out_dir: str = "data/corpus_annotated"     # the annotated corpus every later stage reads
    localizer: Literal["none", "prior", "self", "detector"] = "prior"
    splits: list[Literal["train", "val", "test"]] = ["train"]   # never test: its boxes are the evaluation's truth
    kinds: list[Literal["finding", "anatomy"]] = ["finding", "anatomy"]
    keep_uncertain: bool = False               # "possible nodule": placed only when true
    min_confidence: float = Field(0.0, ge=0, le=1)   # boxes scored under this are dropped (counted)
    prior_confidence: float = Field(0.2, ge=0, le=1)  # the prior never looked at the image
    hide_given_fraction: float = Field(0.0, ge=0, le=1)  # experiments: train images whose given regions are hidden
    max_report_chars: int = Field(20000, ge=1)  # longer reports are read up to here (counted)
    self_model_dir: str = ".state/annotator"   # the `self` localizer's trained RegionMed model
    self_levels: list[float] = [0.25, 0.5, 0.75]   # heatmap levels whose connected area around the peak is a candidate
    self_tilings: list[int] = [2, 3, 4]        # n x n tilings added to the candidates
    # region_score: the candidate the model's region path scores best; heatmap: the connected area around
    # the heatmap's peak at the middle self_level (no region-path scoring)
    self_select: Literal["region_score", "heatmap"] = "region_score"
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
    confidence_weighted: bool = False    # also multiply an annotated region's weight by its confidence
    deterministic: bool = True
    augment: AugmentParams = AugmentParams()


Severity = Literal["critical", "warning"]
Expected = Literal["auto", "required", "optional"]


class ValidationVocabulary(StrictModel):
    """Known values of a corpus; ``None`` = the source's own vocabulary (synthetic: the atlas), else unchecked."""

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
    max_annotated_fraction: float = Field(0.9, ge=0, le=1)  # images with annotated regions (a warning by default)
    max_reject_fraction: float = Field(0.05, ge=0, le=1)


class ValidationParams(StrictModel):
    """The ``validate_corpus`` stage: Great Expectations suites in ``suites_dir`` run on the corpus."""

    suites_dir: str = "expectations"
    metrics_file: str = "metrics/validation.json"
    report_file: str = "reports/validation.html"
    regions: Expected = "auto"  # auto: required for synthetic and coco corpora, else optional
    qa: Expected = "auto"  # auto: required for synthetic and medpix corpora, else optional
    file_check_fraction: float = Field(1.0, ge=0, le=1)  # share of image files re-hashed (seeded sample)
    coverage_splits: list[Literal["train", "val", "test"]] = ["train", "test"]
    max_examples: int = Field(10, ge=1)
    default_severity: Severity = "critical"
    severity: dict[str, Severity] = {}  # per check name (the `check` in each expectation's meta)
    thresholds: ValidationThresholds = ValidationThresholds()
    vocabulary: ValidationVocabulary = ValidationVocabulary()


class EvaluateParams(StrictModel):
    """The ``evaluate`` stage: the candidate and the global-only baseline on the same split."""

    split: str = "test"
    candidate: str = "models/regionmed"
    baseline: str = "models/baseline"
    batch_size: int = Field(64, ge=1)
    retrieval_ks: list[int] = [1, 5, 10]
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

    floors: dict[str, float] = {}
    # one margin for every floor and must-beat-baseline metric, or a margin per metric (exactly those compared)
    champion_margin: float | dict[str, float] = 0.02
    must_beat_baseline: list[str] = []
    # the model in production, committed with the repository so every clone and worker sees it (docs/champion.md)
    champion_file: str = "deploy/champion.json"
    require_champion: bool = False  # true: the gate fails (closed) when it cannot read the champion record
    decision_file: str = "metrics/gate.json"


class ServingBatching(StrictModel):
    """BentoML adaptive batching of the encoders."""

    max_batch_size: int = Field(32, ge=1)
    max_latency_ms: int = Field(10000, ge=1)


class EmbeddingLogParams(StrictModel):
    """The monitoring log of served embeddings (``regionmed/monitoring/embedding_log.py``)."""

    enabled: bool = True
    dir: str = "monitoring/embeddings"
    rotate_bytes: int = Field(16 * 1024 * 1024, ge=1024)
    rotate_seconds: float = Field(3600.0, gt=0)
    keep_files: int | None = Field(None, ge=1)


class ContainerParams(StrictModel):
    """The Docker image of the Bento (``regionmed container``; docs/serving.md#container)."""

    offline: bool = False  # the one switch: True = local base image + torch from a local wheel folder
    base_image: str = "python:3.11-slim"  # online: pulled from Docker Hub
    torch_index_url: str = "https://download.pytorch.org/whl/cpu"  # online: torch's CPU wheels
    offline_base_image: str = "regionmed-base:bookworm"  # made by scripts/container_base.sh
    offline_torch_wheels: str = "/opt/wheels"  # folder with torch's CPU wheel, copied into the Bento
    image: str = "regionmed-service"  # the image's name; the tag is the Bento's version
    docker: str | None = None  # the docker client; None: the first on PATH that can build with BuildKit


class ServingParams(StrictModel):
    """The ``package`` stage and the BentoML service (``regionmed/serving``; docs/serving.md)."""

    model_name: str = "regionmed"
    model_dir: str = "models/regionmed"
    index_dir: str = "models/retrieval_index"
    index_split: str = "test"
    bentoml_home: str | None = None  # None: $BENTOML_HOME, else .state/bentoml
    bentofile: str = "bentofile.yaml"
    build_bento: bool = True
    metrics_file: str = "metrics/package.json"
    host: str = "127.0.0.1"
    port: int = Field(3000, ge=1, le=65535)
    api_key_env: str = "REGIONMED_API_KEY"
    timeout_s: int = Field(60, ge=1)
    max_upload_bytes: int = Field(10 * 1024 * 1024, ge=1024)
    max_image_pixels: int = Field(16_777_216, ge=1)
    max_images_per_call: int = Field(32, ge=1)
    max_texts_per_call: int = Field(64, ge=1)
    max_text_chars: int = Field(1000, ge=1)
    max_boxes_per_call: int = Field(64, ge=1)
    max_top_k: int = Field(100, ge=1)
    max_request_pixels: int = Field(67_108_864, ge=1)  # all images of one request, from their headers (413 above)
    decode_threads: int = Field(2, ge=1)  # uploads decoded at once per worker, off the event loop
    torch_threads: int | None = Field(None, ge=1)  # intra-op threads per worker; None: torch's default
    device: Literal["cpu", "cuda", "auto"] = "cpu"  # auto: cuda when available
    tracing: bool = False  # BentoML's OpenTelemetry spans per request (worth it only with an exporter configured)
    demo_page: bool = True  # the demo page at /ui (regionmed/serving/demo/; docs/serving.md)
    # the monitor stage's summary (monitor.summary_file), shown read-only by `metadata` and the page
    drift_summary_file: str | None = "metrics/drift.json"
    batching: ServingBatching = ServingBatching()
    embedding_log: EmbeddingLogParams = EmbeddingLogParams()
    container: ContainerParams = ContainerParams()


class MonitorDescriptors(StrictModel):
    """Embedding-log descriptors compared with the reference, per kind."""

    image: list[Literal["width", "height", "mean", "std", "bytes", "channels"]] = ["width", "height", "mean", "std"]
    text: list[Literal["n_tokens", "n_chars"]] = ["n_tokens"]


class MonitorParams(StrictModel):
    """Drift monitoring (``regionmed/monitoring/drift.py``; docs/monitoring.md)."""

    reference_dir: str = "models/monitor_reference"
    report_dir: str = "reports/drift"
    summary_file: str = "metrics/drift.json"
    window_hours: float = Field(24.0, gt=0)
    window_end: Literal["latest", "now"] = "latest"
    kinds: list[Literal["image", "text"]] = ["image", "text"]
    min_rows: int = Field(300, ge=2)
    sample_rows: int = Field(2000, ge=10)
    pca_components: int | None = Field(32, ge=2)
    plot: Literal["pca", "tsne"] = "pca"
    plot_rows: int = Field(1000, ge=10)
    match_model_version: bool = True
    embedding_methods: dict[Literal["model", "mmd", "distance", "ratio"], float] = {"model": 0.65, "mmd": 0.015}
    descriptors: MonitorDescriptors = MonitorDescriptors()
    descriptor_method: str = "wasserstein"
    descriptor_threshold: float = 0.3
    zero_shot: bool = True
    zero_shot_method: str = "jensenshannon"
    zero_shot_threshold: float = 0.2


class RetrainFlowParams(StrictModel):
    cron: str = "0 3 * * 0"
    exclude_stages: list[str] = ["monitor"]
    retries: int = Field(2, ge=0)
    retry_delay_s: float = Field(60.0, ge=0)
    no_retry_stages: list[str] = ["validate_corpus", "gate", "package"]


class ReportRetention(StrictModel):
    """How long the monitor flow keeps its drift reports (regionmed/monitoring/retention.py)."""

    keep_reports: int | None = Field(24, ge=1)  # full reports (HTML): at most the newest this many...
    keep_days: float | None = Field(7.0, gt=0)  # ...and none older than this (null: no limit)
    keep_summaries_days: float | None = Field(365.0, gt=0)  # summary.json of a pruned report (null: forever)


class MonitorFlowParams(StrictModel):
    cron: str = "0 * * * *"
    report_root: str = "monitoring/reports"
    retention: ReportRetention = ReportRetention()
    trigger: Literal["auto", "deployment", "subflow", "none"] = "auto"
    retrain_deployment: str = "retrain/retrain"


class FlowParams(StrictModel):
    """The Prefect flows (``flows/``) and their schedules."""

    timezone: str = "UTC"
    retrain: RetrainFlowParams = RetrainFlowParams()
    monitor: MonitorFlowParams = MonitorFlowParams()


class Params(StrictModel):
    seed: int = 0
    corpus: CorpusParams = CorpusParams()
    annotate: AnnotateParams = AnnotateParams()
    validation: ValidationParams = ValidationParams()
    model: ModelConfig = ModelConfig()
    train: TrainParams = TrainParams()
    evaluate: EvaluateParams = EvaluateParams()
    gate: GateParams = GateParams()
    serving: ServingParams = ServingParams()
    monitor: MonitorParams = MonitorParams()
    flows: FlowParams = FlowParams()
    # One entry per progressive phase (one DVC stage each); see regionmed/training/train.py.
    phases: dict[Literal["global", "region", "joint", "baseline"], PhaseParams] = {}

    @property
    def stage_corpus(self) -> str:
        """The corpus every stage after annotate_regions reads: the annotated one."""
        return self.annotate.out_dir

    def check_model_fits_corpus(self) -> None:
        """Training needs the model's input size to be the corpus's image size (checked when it starts)."""
        v, c = self.model.vision, self.corpus
        if v.image_size != c.image_size or v.channels != c.channels:
            raise ValueError(f"model.vision (image_size {v.image_size}, channels {v.channels}) must match the corpus "
                             f"(image_size {c.image_size}, channels {c.channels})")


class ParamsError(ValueError):
    """A params file that cannot be used; the message names the file, each bad key and what it
    expected (the CLI prints it and exits 2, no traceback)."""


def load_params(path: str | Path = DEFAULT_PARAMS_FILE, overrides: dict | None = None) -> Params:
    """Read ``params.yaml`` into typed, validated :class:`Params`; :class:`ParamsError` if it cannot.

    ``overrides`` is a nested dict merged over the file (used by tests and benchmarks).
    """
    try:
        raw = yaml.safe_load(Path(path).read_text()) or {}
    except OSError as exc:
        raise ParamsError(f"params file {path} cannot be read ({exc.strerror or type(exc).__name__})") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise ParamsError(f"params file {path} is not valid YAML{where}: "
                          f"{getattr(exc, 'problem', None) or type(exc).__name__}") from None
    if not isinstance(raw, dict):
        raise ParamsError(f"params file {path} must hold a mapping of sections, not {type(raw).__name__}")
    if overrides:
        raw = deep_merge(raw, overrides)
    try:
        params = Params.model_validate(raw)
    except ValidationError as exc:
        raise ParamsError(describe_params_error(exc, path)) from None
    if os.environ.get(TRACE_ENV):  # which keys this process reads (regionmed/strict.py; tests/test_dvc_deps.py)
        record_reads(params, os.environ[TRACE_ENV])
    return params


def describe_params_error(exc: ValidationError, path: str | Path, max_errors: int = 20) -> str:
    """One line per bad key: ``corpus.image_size: Input should be a valid integer (got 'big')``."""
    lines = [f"params file {path}: {exc.error_count()} invalid setting(s)"]
    for err in exc.errors(include_url=False)[:max_errors]:
        key = ".".join(str(part) for part in err["loc"]) or "(top level)"
        given = repr(err.get("input"))
        given = given if len(given) <= 80 else given[:77] + "..."
        lines.append(f"  {key}: {err['msg']} (got {given})")
    return "\n".join(lines)


def deep_merge(base: dict, extra: dict) -> dict:
    """``extra`` merged over ``base`` key by key (nested dicts merged, other values replaced); a new dict."""
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged
