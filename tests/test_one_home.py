"""Facts with one home: the telemetry switches, the importer names, the text levels."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from helpers.params import default_section

from regionmed.corpus.importers import ImporterConfigError, make_importer
from regionmed.env import QUIET_ENV, QUIET_ENV_FILE, read_env_file
from regionmed.params import IMPORTERS, CorpusParams

REPO_ROOT = Path(__file__).resolve().parents[1]


def test_make_and_python_set_the_same_telemetry_switches_from_one_file():
    assert read_env_file(QUIET_ENV_FILE) == QUIET_ENV and QUIET_ENV["DO_NOT_TRACK"] == "1"
    printed = subprocess.run(
        ["make", "-s", "-f", "-", "show"],
        cwd=REPO_ROOT,
        text=True,
        capture_output=True,
        check=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin"},
        input="include Makefile\nshow:\n\t@env\n",
    ).stdout
    seen = dict(line.split("=", 1) for line in printed.splitlines() if "=" in line)
    assert {k: seen.get(k) for k in QUIET_ENV} == QUIET_ENV


@pytest.mark.parametrize("name", IMPORTERS)
def test_every_importer_named_in_params_exists(name):
    assert name in CorpusParams.model_fields["source"].annotation.__args__
    with pytest.raises(ImporterConfigError) as err:
        make_importer(name, default_section("corpus.importer"))  # no path set: the importer itself says so
    assert "no such importer" not in str(err.value)


def test_the_text_levels_are_the_models():
    from regionmed.model import regionclip
    from regionmed.model.config import TEXT_LEVELS
    from regionmed.training import data

    assert data.TEXT_LEVELS is TEXT_LEVELS and regionclip.TEXT_LEVELS is TEXT_LEVELS
