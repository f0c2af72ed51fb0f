"""A full disk under each output in turn (a small tmpfs: tests/helpers/faults.py): the corpus, a trained
model, the embedding log and the drift report. Each stage stops with exit status 2 and one message that
names the folder and the space it wrote and found, and keeps nothing partial; the embedding log writes
whole lines or none, pauses, counts what it dropped and resumes when space is back. The service on a full
log disk: tests/faults/test_service_faults.py."""

from __future__ import annotations

import json
import re

import pytest
from helpers.drift_data import Population, make_reference, write_log
from helpers.faults import fill_disk, record_measure, small_disk, temporary_leftovers
from helpers.params import write_params
from typer.testing import CliRunner

from regionmed.cli import app
from regionmed.errors import EXIT_BAD_INPUT

pytestmark = [pytest.mark.faults, pytest.mark.timeout(300)]

CORPUS = {
    "image_size": 64,
    "synthetic": {"n_images": 480},
}  # ~2 MB of PNGs (tests/helpers/reduced_pipeline.py)
NO_SPACE = re.compile(r"no space left in (?P<folder>\S+): (?P<what>.+?); (?P<free>[\d.]+ [kM]B) free now")


@pytest.fixture
def disk(tmp_path):
    with small_disk(tmp_path / "disk", "8m") as mounted:
        yield mounted


def _cli(*args: str):
    return CliRunner().invoke(app, [str(a) for a in args])


def _said_no_space(output: str, stage: str, folder) -> re.Match:
    line = next((ln for ln in output.splitlines() if ln.startswith(f"{stage}: bad input: no space left")), "")
    found = NO_SPACE.search(line)
    assert found and found["folder"] == str(folder), output[-3000:]
    record_measure(f"{stage}: its output's disk full", said=f"{found['what']}; {found['free']} free now")
    return found


def test_build_corpus_on_a_full_disk_names_the_folder_keeps_nothing_and_builds_once_space_is_back(
    tmp_path, disk
):
    filler = fill_disk(disk, leave_bytes=400_000)
    params = write_params(tmp_path / "params.yaml", {"corpus": {**CORPUS, "out_dir": str(disk / "corpus")}})
    failed = _cli("corpus", "build", "--params", params, "--no-progress")
    assert failed.exit_code == EXIT_BAD_INPUT, failed.output
    said = _said_no_space(failed.output, "build_corpus", disk / "corpus")
    assert said["what"].startswith("wrote ") and "Traceback" not in failed.output
    assert sorted(p.name for p in disk.iterdir()) == ["filler.bin"], "nothing partial is left"

    filler.unlink()
    built = _cli("corpus", "build", "--params", params, "--no-progress")
    assert built.exit_code == 0, built.output
    assert (disk / "corpus/manifest.parquet").is_file() and temporary_leftovers(disk) == []


def test_a_training_phase_whose_model_folder_fills_names_it_and_exports_nothing(tmp_path, disk):
    from regionmed.corpus.build import build_corpus
    from regionmed.model.tokenizer import train_wordpiece_tokenizer
    from regionmed.params import load_params
    from regionmed.training.texts import corpus_texts

    overrides = {
        "corpus": {**CORPUS, "out_dir": str(tmp_path / "corpus")},
        "annotate": {"out_dir": str(tmp_path / "corpus")},  # the built corpus stands for the annotated one
        "model": {
            "vision": {"image_size": 64, "hidden": 64, "layers": 2, "heads": 2, "mlp": 128},
            "text": {"hidden": 64, "layers": 1, "heads": 2, "mlp": 128},
            "roi": {"grid_sizes": [4]},
        },
        "train": {"batch_size": 16, "val_every_n_steps": 3, "checkpoint_every_n_steps": 3, "warmup_steps": 1},
        "phases": {"global": {"steps": 3}},
    }
    params = write_params(tmp_path / "params.yaml", overrides)
    build_corpus(load_params(params), progress=False)
    train_wordpiece_tokenizer(corpus_texts(tmp_path / "corpus"), 2000, tmp_path / "tokenizer")
    fill_disk(disk, leave_bytes=100_000)  # the weights alone are ~0.7 MB
    failed = _cli(
        "train", "phase", "global", "--params", params, "--tokenizer", tmp_path / "tokenizer",
        "--out", disk / "global", "--metrics", tmp_path / "train_global.json",
        "--state-dir", tmp_path / "state",
    )  # fmt: skip
    assert failed.exit_code == EXIT_BAD_INPUT, failed.output
    said = _said_no_space(failed.output, "pretrain_global", disk / "global")
    assert re.match(r"needed ~\d+ kB", said["what"]), said["what"]  # the weights, ~0.6 MB
    assert sorted(p.name for p in disk.iterdir()) == ["filler.bin"], "no partial model folder"
    assert not (tmp_path / "train_global.json").exists(), "no metrics of a phase that did not finish"


def test_the_embedding_log_writes_whole_lines_pauses_on_a_full_disk_and_resumes(tmp_path, disk, caplog):
    from regionmed.monitoring.embedding_log import EmbeddingLogWriter, read_log

    emb, desc = Population(seed=3).images(40)
    filler = fill_disk(disk, leave_bytes=24_000)  # a few dozen ~1 kB lines, then full
    log = EmbeddingLogWriter(disk / "log")
    rows = desc.to_dict("records")
    written = [
        log.log(
            endpoint="encode_image",
            model_version="regionmed:test",
            request="0123456789abcdef",
            kind="image",
            embeddings=emb[i : i + 1],
            descriptors=[{k: v.item() if hasattr(v, "item") else v for k, v in rows[i].items()}],
        )
        for i in range(len(emb))
    ]
    assert written[0] == 1 and 0 in written, written
    assert log.paused and log.rows_dropped == written.count(0)
    warnings = [r.getMessage() for r in caplog.records if "logging paused" in r.getMessage()]
    assert len(warnings) == 1 and str(disk / "log") in warnings[0], "one warning per pause"
    on_disk = read_log(disk / "log")
    assert len(on_disk) == sum(written) and on_disk.attrs["skipped_lines"] == 0, "only whole lines"

    filler.unlink()  # space is back: the next write goes through and says so
    assert log.log(
        endpoint="encode_image", model_version="regionmed:test", request="0123456789abcdef",
        kind="image", embeddings=emb[:1],
    ) == 1  # fmt: skip
    assert not log.paused and any("logging resumed" in r.getMessage() for r in caplog.records)
    log.close()
    assert len(read_log(disk / "log")) == sum(written) + 1
    record_measure(
        "embedding-log disk full (writer)", rows_written=sum(written), rows_dropped=log.rows_dropped
    )


def test_a_drift_report_that_does_not_fit_names_the_folder_and_leaves_no_report(tmp_path, disk):
    pop = Population(seed=0)
    make_reference(pop).save(tmp_path / "ref")
    emb, desc = pop.images(320)
    write_log(tmp_path / "log", emb, desc)
    params = write_params(
        tmp_path / "params.yaml",
        {
            "monitor": {
                "reference_dir": str(tmp_path / "ref"),
                "report_dir": str(disk / "drift"),
                "summary_file": str(tmp_path / "drift.json"),
                "kinds": ["image"],
            },
            "serving": {"embedding_log": {"dir": str(tmp_path / "log")}},
        },
    )
    fill_disk(disk, leave_bytes=300_000)  # Evidently's page is megabytes
    failed = _cli("monitor", "--params", params)
    assert failed.exit_code == EXIT_BAD_INPUT, failed.output
    _said_no_space(failed.output, "monitor", disk / "drift")
    assert not (disk / "drift/index.html").exists(), "a report folder without its index is not a report"
    assert temporary_leftovers(disk) == [] and not (tmp_path / "drift.json").exists()
    assert json.loads((tmp_path / "ref/reference.json").read_text())["rows"]["image"] > 0  # inputs untouched
