"""params.yaml sections of operations: serving, monitoring and the Prefect flows (read through
:func:`regionmed.params.load_params`)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from regionmed.strict import StrictModel

# RUF012 (noqa'd on the fields below) is wrong here: these are pydantic fields (StrictModel is a
# BaseModel; ruff only recognises a direct BaseModel base), and pydantic copies a mutable default
# for each instance, so no state is shared. A ClassVar would make them stop being fields.


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
    max_request_pixels: int = Field(
        67_108_864, ge=1
    )  # all images of one request, from their headers (413 above)
    decode_threads: int = Field(2, ge=1)  # uploads decoded at once per worker, off the event loop
    torch_threads: int | None = Field(None, ge=1)  # intra-op threads per worker; None: torch's default
    device: Literal["cpu", "cuda", "auto"] = "cpu"  # auto: cuda when available
    tracing: bool = (
        False  # BentoML's OpenTelemetry spans per request (worth it only with an exporter configured)
    )
    demo_page: bool = True  # the demo page at /ui (regionmed/serving/demo/; docs/serving.md)
    # the monitor stage's summary (monitor.summary_file), shown read-only by `metadata` and the page
    drift_summary_file: str | None = "metrics/drift.json"
    batching: ServingBatching = ServingBatching()
    embedding_log: EmbeddingLogParams = EmbeddingLogParams()
    container: ContainerParams = ContainerParams()


class MonitorDescriptors(StrictModel):
    """Embedding-log descriptors compared with the reference, per kind."""

    image: list[Literal["width", "height", "mean", "std", "bytes", "channels"]] = [  # noqa: RUF012
        "width",
        "height",
        "mean",
        "std",
    ]
    text: list[Literal["n_tokens", "n_chars"]] = ["n_tokens"]  # noqa: RUF012


class MonitorParams(StrictModel):
    """Drift monitoring (``regionmed/monitoring/drift.py``; docs/monitoring.md)."""

    reference_dir: str = "models/monitor_reference"
    report_dir: str = "reports/drift"
    summary_file: str = "metrics/drift.json"
    window_hours: float = Field(24.0, gt=0)
    window_end: Literal["latest", "now"] = "latest"
    kinds: list[Literal["image", "text"]] = ["image", "text"]  # noqa: RUF012
    min_rows: int = Field(300, ge=2)
    sample_rows: int = Field(2000, ge=10)
    pca_components: int | None = Field(32, ge=2)
    plot: Literal["pca", "tsne"] = "pca"
    plot_rows: int = Field(1000, ge=10)
    match_model_version: bool = True
    embedding_methods: dict[Literal["model", "mmd", "distance", "ratio"], float] = {  # noqa: RUF012
        "model": 0.65,
        "mmd": 0.015,
    }
    descriptors: MonitorDescriptors = MonitorDescriptors()
    descriptor_method: str = "wasserstein"
    descriptor_threshold: float = 0.3
    zero_shot: bool = True
    zero_shot_method: str = "jensenshannon"
    zero_shot_threshold: float = 0.2


class RetrainFlowParams(StrictModel):
    cron: str = "0 3 * * 0"
    exclude_stages: list[str] = ["monitor"]  # noqa: RUF012
    retries: int = Field(2, ge=0)
    retry_delay_s: float = Field(60.0, ge=0)
    no_retry_stages: list[str] = ["validate_corpus", "gate", "package"]  # noqa: RUF012


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
