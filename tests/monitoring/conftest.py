"""Fixtures of the drift tests (their data: drift_data.py)."""

from __future__ import annotations

import pytest
from helpers.drift_data import Population, make_reference

from regionmed.monitoring.reference import Reference


@pytest.fixture(scope="module")
def population() -> Population:
    return Population(seed=0)


@pytest.fixture(scope="module")
def reference(population) -> Reference:
    return make_reference(population)


@pytest.fixture
def params():
    from helpers.params import default_params

    # the module's default thresholds, fewer rows needed; two plot rows settings keep it fast
    return default_params({"monitor": {"min_rows": 200, "sample_rows": 1000, "plot_rows": 300}})
