"""The whole of ``params.yaml``: :class:`Params`, the pipeline's and operations' roots together.

Every stage reads its parameters through one loader (regionmed/params_loader.py); DVC reads the
same file (the ``params:`` lists in ``dvc.yaml``). The stages corpus to gate load only the pipeline's
root (:func:`regionmed.params_pipeline.load_pipeline_params`); ``package``, the monitoring stages,
the service and the flows, which read both groups, load this one (:func:`load_params`). Models are
``extra="forbid"`` so that a typo in ``params.yaml`` is an error that names the key, not a silently
ignored setting, and have no defaults: every key is stated in ``params.yaml``.

The sections and the loader's helpers are importable from here too.
"""

from __future__ import annotations

from pathlib import Path

from regionmed.params_loader import (  # noqa: F401  (importable from here too)
    DEFAULT_PARAMS_FILE,
    ParamsError,
    deep_merge,
    describe_params_error,
    load_root,
    merge_overrides,
)
from regionmed.params_operations import (  # noqa: F401  (the sections, importable from here too)
    ContainerParams,
    EmbeddingLogParams,
    FlowParams,
    MonitorDescriptors,
    MonitorFlowParams,
    MonitorParams,
    OperationsParams,
    ReportRetention,
    RetrainFlowParams,
    ServingBatching,
    ServingParams,
)
from regionmed.params_pipeline import (  # noqa: F401  (the sections, importable from here too)
    IMPORTERS,
    AnnotateParams,
    AugmentParams,
    CorpusParams,
    DetectorParams,
    EvaluateParams,
    GateParams,
    ImportParams,
    PhaseParams,
    PipelineParams,
    SplitFractions,
    SyntheticParams,
    TrainParams,
    ValidationParams,
    ValidationThresholds,
    ValidationVocabulary,
)


class Params(OperationsParams, PipelineParams):  # this order: the fields in params.yaml's order
    """Every section: the pipeline's (:class:`PipelineParams`, whose methods it has) and operations'."""


def load_params(path: str | Path = DEFAULT_PARAMS_FILE, overrides: dict | None = None) -> Params:
    """Read ``params.yaml`` into typed, validated :class:`Params`; :class:`ParamsError` if it cannot.

    ``overrides`` is a nested dict merged over the file (:func:`merge_overrides`; tests and benchmarks).
    """
    return load_root(Params, path, overrides)
