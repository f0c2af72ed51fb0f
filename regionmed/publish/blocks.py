"""Every block the docs may hold: name → sources + template (see :mod:`regionmed.publish.render`).

A name in a doc that is not here, or a block whose source file is missing, fails the check; so does
a block whose text differs from what its sources render (``python -m regionmed docs --check``).
"""

from __future__ import annotations

from regionmed.publish.annotation_blocks import ANNOTATION_BLOCKS
from regionmed.publish.bench_blocks import BENCH_BLOCKS
from regionmed.publish.box_blocks import BOX_BLOCKS
from regionmed.publish.experiment_blocks import EXPERIMENT_BLOCKS
from regionmed.publish.real_cxr_blocks import REAL_CXR_BLOCKS
from regionmed.publish.reliability_blocks import RELIABILITY_BLOCKS
from regionmed.publish.scale_blocks import SCALE_BLOCKS
from regionmed.publish.seed_blocks import SEED_BLOCKS
from regionmed.publish.service_blocks import SERVICE_BLOCKS

TABLES = (
    EXPERIMENT_BLOCKS,
    ANNOTATION_BLOCKS,
    BENCH_BLOCKS,
    SERVICE_BLOCKS,
    RELIABILITY_BLOCKS,
    REAL_CXR_BLOCKS,
    SEED_BLOCKS,
    SCALE_BLOCKS,
    BOX_BLOCKS,
)
BLOCKS = {name: block for table in TABLES for name, block in table.items()}
assert len(BLOCKS) == sum(map(len, TABLES)), "a block name in two tables"
