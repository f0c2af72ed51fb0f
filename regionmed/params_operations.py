"""Operations' settings: the params.yaml sections of serving, monitoring and the Prefect flows, and
their root :class:`OperationsParams` (read with :func:`load_operations_params`;
regionmed/params_loader.py). No pipeline stage before ``package`` imports this module.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from regionmed.params_loader import DEFAULT_PARAMS_FILE, load_root
from regionmed.strict import StrictModel


class ServingBatching(StrictModel):
    """BentoML adaptive batching of the encoders."""

    max_batch_size: int = Field(ge=1)
    max_latency_ms: int = Field(ge=1)


class EmbeddingLogParams(StrictModel):
    """The monitoring log of served embeddings (``regionmed/monitoring/embedding_log.py``)."""

    enabled: bool
    dir: str
    rotate_bytes: int = Field(ge=1024)
    rotate_seconds: float = Field(gt=0)
    keep_files: int | None = Field(ge=1)


class ContainerParams(StrictModel):
    """The Docker image of the Bento (``regionmed container``; docs/serving.md#container)."""

    offline: bool  # the one switch: True = local base image + torch from a local wheel folder
    base_image: str  # online: pulled from Docker Hub
    torch_index_url: str  # online: torch's CPU wheels
    offline_base_image: str  # made by scripts/container_base.sh
    offline_torch_wheels: str  # folder with torch's CPU wheel, copied into the Bento
    image: str  # the image's name; the tag is the Bento's version
    docker: str | None  # the docker client; None: the first on PATH that can build with BuildKit


class AnnParams(StrictModel):
    """The retrieval index's HNSW graphs (``regionmed/inference/ann.py``; docs/scaling.md#retrieval)."""

    min_items: int = Field(ge=1)  # a kind (image/report) with fewer items is searched exactly: no graph
    connectivity: int = Field(ge=2)  # HNSW's M, links per node (fixed when built)
    expansion_add: int = Field(ge=1)  # efConstruction, search breadth while building
    expansion_search: int = Field(ge=1)  # ef, search breadth per query (the service's, used at load)
    build_threads: int = Field(ge=1)  # 1: the same graph every build; more: faster, builds may differ


class ServingParams(StrictModel):
    """The ``package`` stage and the BentoML service (``regionmed/serving``; docs/serving.md)."""

    model_name: str
    model_dir: str
    index_dir: str
    index_split: str
    bentoml_home: str | None  # None: $BENTOML_HOME, else .state/bentoml
    bentofile: str
    build_bento: bool
    metrics_file: str
    host: str
    port: int = Field(ge=1, le=65535)
    api_key_env: str
    timeout_s: int = Field(ge=1)
    max_upload_bytes: int = Field(ge=1024)
    max_image_pixels: int = Field(ge=1)
    max_images_per_call: int = Field(ge=1)
    max_texts_per_call: int = Field(ge=1)
    max_text_chars: int = Field(ge=1)
    max_boxes_per_call: int = Field(ge=1)
    max_top_k: int = Field(ge=1)
    max_request_pixels: int = Field(ge=1)  # all images of one request, from their headers (413 above)
    decode_threads: int = Field(ge=1)  # uploads decoded at once per worker, off the event loop
    torch_threads: int | None = Field(ge=1)  # intra-op threads per worker; None: torch's default
    device: Literal["cpu", "cuda", "auto"]  # auto: cuda when available
    tracing: bool  # BentoML's OpenTelemetry spans per request (worth it only with an exporter configured)
    demo_page: bool  # the demo page at /ui (regionmed/serving/demo/; docs/serving.md)
    # the monitor stage's summary (monitor.summary_file), shown read-only by `metadata` and the page
    drift_summary_file: str | None
    batching: ServingBatching
    embedding_log: EmbeddingLogParams
    container: ContainerParams
    ann: AnnParams


class MonitorDescriptors(StrictModel):
    """Embedding-log descriptors compared with the reference, per kind."""

    image: list[Literal["width", "height", "mean", "std", "bytes", "channels"]]
    text: list[Literal["n_tokens", "n_chars"]]


class MonitorParams(StrictModel):
    """Drift monitoring (``regionmed/monitoring/drift.py``; docs/monitoring.md)."""

    reference_dir: str
    report_dir: str
    summary_file: str
    window_hours: float = Field(gt=0)
    window_end: Literal["latest", "now"]
    kinds: list[Literal["image", "text"]]
    min_rows: int = Field(ge=2)
    sample_rows: int = Field(ge=10)
    pca_components: int | None = Field(ge=2)
    plot: Literal["pca", "tsne"]
    plot_rows: int = Field(ge=10)
    match_model_version: bool
    embedding_methods: dict[Literal["model", "mmd", "distance", "ratio"], float]
    descriptors: MonitorDescriptors
    descriptor_method: str
    descriptor_threshold: float
    zero_shot: bool
    zero_shot_method: str
    zero_shot_threshold: float


class RetrainFlowParams(StrictModel):
    cron: str
    exclude_stages: list[str]
    retries: int = Field(ge=0)
    retry_delay_s: float = Field(ge=0)
    no_retry_stages: list[str]


class ReportRetention(StrictModel):
    """How long the monitor flow keeps its drift reports (regionmed/monitoring/retention.py)."""

    keep_reports: int | None = Field(ge=1)  # full reports (HTML): at most the newest this many...
    keep_days: float | None = Field(gt=0)  # ...and none older than this (null: no limit)
    keep_summaries_days: float | None = Field(gt=0)  # summary.json of a pruned report (null: forever)


class MonitorFlowParams(StrictModel):
    cron: str
    report_root: str
    retention: ReportRetention
    trigger: Literal["auto", "deployment", "subflow", "none"]
    retrain_deployment: str


class FlowParams(StrictModel):
    """The Prefect flows (``flows/``) and their schedules."""

    timezone: str
    retrain: RetrainFlowParams
    monitor: MonitorFlowParams


class OperationsParams(StrictModel):
    """Operations' root: the sections of ``SECTIONS["operations"]`` (regionmed/params_loader.py)."""

    serving: ServingParams
    monitor: MonitorParams
    flows: FlowParams


def load_operations_params(
    path: str | Path = DEFAULT_PARAMS_FILE, overrides: dict | None = None
) -> OperationsParams:
    """Operations' sections of ``path`` (:func:`regionmed.params_loader.load_root`)."""
    return load_root(OperationsParams, path, overrides)
