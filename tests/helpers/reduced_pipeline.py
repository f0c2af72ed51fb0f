"""The params overrides that run the whole pipeline at a reduced size (a few training steps on a
small corpus): the end-to-end tests pass them to :func:`helpers.pipeline_copy.clean_copy`."""

from __future__ import annotations

import yaml

from helpers.pipeline_copy import REPO_ROOT

TINY_STEPS = 6
REDUCED = {
    "corpus": {"image_size": 64, "synthetic": {"n_images": 480}},
    "validation": {"thresholds": {"min_label_count": 1, "split_tolerance": 0.2}},
    "model": {
        "vision": {"image_size": 64, "hidden": 64, "layers": 2, "heads": 2, "mlp": 128},
        "text": {"hidden": 64, "layers": 1, "heads": 2, "mlp": 128},
        "roi": {"grid_sizes": [4]},
    },
    "train": {
        "batch_size": 16,
        "eval_batch_size": 64,
        "val_every_n_steps": 3,
        "checkpoint_every_n_steps": 3,
        "warmup_steps": 2,
    },
    "phases": {
        "global": {"steps": TINY_STEPS},
        "region": {"steps": TINY_STEPS},
        "joint": {"steps": TINY_STEPS},
    },
    "evaluate": {"n_boot": 50, "gallery_size": 1, "train_sample": 200},
    # a 6-step model learns little: the gate checks only that the metrics exist
    # (every default floor lowered to -1, which any metric in [0, 1] or difference in [-1, 1] passes;
    # no relative floor: such a model is not above chance or the text prior)
    "gate": {
        "floors": dict.fromkeys(
            yaml.safe_load((REPO_ROOT / "params.yaml").read_text())["gate"]["floors"], -1.0
        ),
        "must_beat_baseline": [],
        "relative_floors": {"above_chance": [], "above_prior": [], "not_below_baseline": []},
    },
}
