"""A params file that cannot be used: the loader's message (file, key, expected type) and exit
status 2 from the CLI, never a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers.params import write_params

from regionmed.params import ParamsError, load_params

REPO_ROOT = Path(__file__).resolve().parents[1]
BAD = {"corpus": {"image_size": "big", "split": {"train": 2}}, "serving": {"port": -1}}


def test_the_loader_names_each_bad_key_and_what_it_expected(tmp_path):
    path = write_params(tmp_path / "params.yaml", BAD)
    with pytest.raises(ParamsError) as info:
        load_params(path)
    message = str(info.value)
    assert "3 invalid setting(s)" in message
    assert "corpus.image_size: Input should be a valid integer" in message and "(got 'big')" in message
    assert "corpus.split.train" in message and "serving.port" in message


@pytest.mark.parametrize(
    "content, words",
    [(BAD, "corpus.image_size"), ("corpus: [1, 2\n", "not valid YAML"), (None, "cannot be read")],
)
def test_the_cli_prints_the_message_and_exits_2(tmp_path, content, words):
    path = tmp_path / "params.yaml"
    if isinstance(content, dict):
        write_params(path, content)
    elif content is not None:
        path.write_text(content)
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "regionmed",
            "corpus",
            "build",
            "--params",
            str(path),
            "--out",
            str(tmp_path / "corpus"),
        ],
        check=False,
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        timeout=300,
    )
    assert run.returncode == 2, (run.returncode, run.stderr[-2000:])
    assert "Traceback" not in run.stderr and words in run.stderr, run.stderr[-2000:]
    assert len(run.stderr.strip().splitlines()) <= 6, run.stderr
