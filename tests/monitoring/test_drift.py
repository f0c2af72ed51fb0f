"""Drift checks on synthetic embeddings written through the real embedding log (fast).

Identical and same-distribution windows must give no drift; another 'modality' with a contrast change
must; too few rows, or rows of another model, give "not enough data" and no alarm.
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers.drift_data import MODEL, Clock, Population, make_reference, write_log
from helpers.params import write_params

from regionmed.monitoring import stage
from regionmed.monitoring.drift import Window, embedding_plot, load_current, resolve_window
from regionmed.monitoring.embedding_log import EmbeddingLogWriter, log_files
from regionmed.monitoring.reference import Reference

REPO_ROOT = Path(__file__).resolve().parents[2]


def monitor(params, tmp: Path, reference: Reference, **kwargs) -> dict:
    return stage.run(
        params,
        log_dir=tmp / "log",
        reference=reference,
        report_dir=tmp / "report",
        summary_file=tmp / "drift.json",
        log=lambda *_: None,
        **kwargs,
    ).summary


def checks(summary: dict) -> dict[str, dict]:
    return {c["name"]: c for c in summary["checks"]}


@pytest.fixture(scope="module")
def identical(tmp_path_factory, reference):
    """The reference's own rows as the window (images and texts)."""
    from helpers.params import default_params

    tmp = tmp_path_factory.mktemp("identical")
    clock = write_log(tmp / "log", reference.embeddings["image"], reference.descriptors["image"])
    write_log(
        tmp / "log",
        reference.embeddings["text"],
        reference.descriptors["text"],
        kind="text",
        endpoint="encode_text",
        clock=clock,
    )
    params = default_params({"monitor": {"min_rows": 200, "sample_rows": 1000, "plot_rows": 300}})
    return tmp, monitor(params, tmp, reference)


@pytest.fixture(scope="module")
def shifted(tmp_path_factory, reference):
    """Images of one 'modality' only, with 1.6x contrast; texts as usual."""
    from helpers.params import default_params

    tmp = tmp_path_factory.mktemp("shifted")
    pop = Population(seed=7)
    emb, desc = pop.images(400, modality=0, contrast=1.6)
    clock = write_log(tmp / "log", emb, desc)
    write_log(tmp / "log", *pop.texts(400), kind="text", endpoint="encode_text", clock=clock)
    params = default_params({"monitor": {"min_rows": 200, "sample_rows": 1000, "plot_rows": 300}})
    return tmp, monitor(params, tmp, reference)


def test_identical_reference_and_current_is_no_drift(identical, reference):
    _tmp, s = identical
    assert s["status"] == "no_drift" and s["drift"] is False and s["drifted_checks"] == []
    c = checks(s)
    for kind in ("image", "text"):  # at least two embedding methods, both run
        assert c[f"{kind}/embeddings/model"]["score"] <= 0.6 and c[f"{kind}/embeddings/mmd"]["score"] < 0.005
    assert {
        "image/descriptor/width",
        "image/descriptor/mean",
        "image/descriptor/std",
        "text/descriptor/n_tokens",
        "image/zero_shot/finding",
        "image/zero_shot/modality",
    } <= set(c)
    assert all(ch["status"] == "no_drift" and ch["drift"] is False for ch in s["checks"])
    assert s["current"]["rows"] == {"image": 600, "text": 600} and s["reference"]["rows"] == {
        "image": 600,
        "text": 600,
    }


def test_a_fresh_sample_of_the_same_distribution_is_no_drift(tmp_path, reference, params):
    pop = Population(seed=3)
    emb, desc = pop.images(400)
    write_log(tmp_path / "log", emb, desc)
    s = monitor(params, tmp_path, reference)
    assert s["status"] == "no_drift", s["drifted_checks"]
    assert s["current"]["rows"]["image"] == 400


def test_another_modality_with_changed_contrast_is_drift(shifted):
    _, s = shifted
    assert s["status"] == "drift" and s["drift"] is True
    c = checks(s)
    for name in (
        "image/embeddings/model",
        "image/embeddings/mmd",
        "image/descriptor/mean",
        "image/descriptor/std",
        "image/zero_shot/finding",
        "image/zero_shot/modality",
    ):
        assert c[name]["drift"] is True, (name, c[name])
    assert c["image/embeddings/model"]["score"] > 0.8
    assert c["image/descriptor/width"]["drift"] is False  # sizes did not change
    assert not any(c[n]["drift"] for n in c if n.startswith("text/")), "texts were not shifted"
    assert "image/embeddings/model" in s["message"]


def test_the_json_summary_and_the_html_reports(shifted):
    tmp, s = shifted
    on_disk = json.loads((tmp / "drift.json").read_text())
    assert on_disk["status"] == "drift" and on_disk["checks"] == s["checks"]
    assert (
        set(on_disk["window"]) == {"start", "end", "hours", "anchor"}
        and on_disk["window"]["anchor"] == "latest"
    )
    assert on_disk["current"]["rows_in_window"] == {"image": 400, "text": 400}
    assert on_disk["rows_used"]["image"] == {"reference": 600, "current": 400}
    for ch in on_disk["checks"]:
        assert {"name", "method", "score", "threshold", "drift", "status"} <= set(ch)
    index = (tmp / "report/index.html").read_text()
    assert "<b>drift</b>" in index and "image.html" in index and "text.html" in index
    for kind in ("image", "text"):
        page = (tmp / f"report/{kind}.html").read_text()
        assert (page.startswith("<") and "Drift in embeddings" in page) or "embeddings" in page
    assert s["reports"]["image"].endswith("image.html")


def test_too_few_current_rows_is_not_enough_data_not_an_alarm(tmp_path, reference, params):
    emb, desc = Population(seed=5).images(50, modality=0, contrast=2.0)  # heavily shifted, but only 50 rows
    write_log(tmp_path / "log", emb, desc)
    s = monitor(params, tmp_path, reference)
    assert s["status"] == "not_enough_data" and s["drift"] is False
    assert "not enough data" in s["message"] and "image 50" in s["message"]
    assert all(c["status"] == "not_enough_data" and c["drift"] is None for c in s["checks"])
    assert not (tmp_path / "report/image.html").exists()
    assert "not enough data" in (tmp_path / "report/index.html").read_text()


def test_an_empty_or_missing_log_is_not_enough_data(tmp_path, reference, params):
    s = monitor(params, tmp_path, reference)
    assert s["status"] == "not_enough_data" and s["window"]["end"] is None
    assert s["current"]["rows"] == {"image": 0, "text": 0}


def test_rows_of_another_model_are_left_out_and_named(tmp_path, reference, params):
    emb, desc = Population(seed=2).images(300)
    write_log(tmp_path / "log", emb, desc, model="regionmed:newer999")
    s = monitor(params, tmp_path, reference)
    assert s["status"] == "not_enough_data"
    assert s["current"]["rows_other_model"]["image"] == 300
    assert "regionmed:newer999" in s["message"] and "rebuild the reference" in s["message"]


def test_the_window_ends_at_the_newest_record_and_leaves_older_rows_out(tmp_path, reference, params):
    pop = Population(seed=4)
    old, old_desc = pop.images(300, modality=0, contrast=2.0)  # drifted, but two days old
    clock = write_log(tmp_path / "log", old, old_desc, clock=Clock("2026-11-26T08:00:00"))
    new, new_desc = pop.images(250)
    clock.t = Clock("2026-11-28T09:00:00").t
    write_log(tmp_path / "log", new, new_desc, clock=clock, seconds_apart=10)
    s = monitor(params, tmp_path, reference)
    assert s["current"]["rows_in_window"]["image"] == 250 and s["status"] == "no_drift"
    assert s["window"]["end"].startswith("2026-11-28T09:41:30") and s["window"]["hours"] == 24
    # an explicit window over the old rows only
    s = monitor(params, tmp_path, reference, since="2026-11-26T00:00:00", until="2026-11-27T00:00:00")
    assert (
        s["current"]["rows"]["image"] == 300 and s["status"] == "drift" and s["window"]["anchor"] == "given"
    )


def test_the_window_holds_every_record_up_to_its_end_across_rotations(tmp_path):
    # The clock moves on each time it is read (like a real one): a new file starts at the time its
    # first record gets. A window ending right at a file's start holds every record before it.
    class Stepping(Clock):
        def __call__(self) -> float:
            self.t += 0.5
            return self.t

    clock = Stepping()
    w = EmbeddingLogWriter(tmp_path / "log", rotate_seconds=2.0, clock=clock)
    for e in Population(seed=5).images(40)[0]:
        w.log(
            endpoint="encode_image",
            model_version=MODEL,
            request="0123456789abcdef",
            kind="image",
            embeddings=e[None],
        )
    w.close()
    names = [p.name.split("-")[1] for p in log_files(tmp_path / "log")]
    starts = [pd.Timestamp(datetime.strptime(n, "%Y%m%dT%H%M%S%fZ"), tz="UTC") for n in names]
    assert len(starts) >= 5
    t0 = starts[0]
    for end in starts[1:]:
        cur = load_current(tmp_path / "log", Window(t0, end, 0.0, "given"), ["image"], [MODEL])
        ts = cur.frames["image"]["ts"]
        assert cur.rows_in_window["image"] == round((end - t0).total_seconds() / 0.5)
        assert ts.min() == t0 and ts.max() < end


def test_window_now_and_window_hours(tmp_path):
    w = resolve_window(tmp_path / "none", 6, "now")
    assert w.anchor == "now" and (w.end - w.start).total_seconds() == 6 * 3600
    assert resolve_window(tmp_path / "none", 6, "latest").end is None


def test_reference_round_trip_holds_numbers_and_label_names_only(tmp_path):
    ref = make_reference(Population(seed=9), n=50)
    ref.save(tmp_path / "ref")
    back = Reference.load(tmp_path / "ref")
    np.testing.assert_array_equal(back.embeddings["image"], ref.embeddings["image"])
    assert back.model_versions == [MODEL, "dir-abc"] and back.classes["finding"] == ["a", "b", "c"]
    assert list(back.descriptors["text"].columns) == ["n_chars", "n_tokens", "truncated"]
    meta = json.loads((tmp_path / "ref/reference.json").read_text())
    assert meta["rows"] == {"image": 50, "text": 50}
    with pytest.raises(FileNotFoundError, match="monitor_reference"):
        Reference.load(tmp_path / "nowhere")


def test_the_evidently_internals_the_plot_switch_relies_on_exist_and_are_restored():
    from evidently.legacy.metrics.data_drift import embeddings_drift as ed

    before = ed.SAMPLE_CONSTANT, ed.TSNE
    with embedding_plot("pca", 123):
        assert ed.SAMPLE_CONSTANT == 123 and ed.TSNE is not before[1]
    assert before == (ed.SAMPLE_CONSTANT, ed.TSNE)
    with embedding_plot("tsne", 50):
        assert ed.TSNE is before[1]


def test_params_dvc_stage_and_cli_agree(tmp_path):
    from helpers.stage_closure import resolved_stages

    from regionmed.params import load_params

    params = load_params(REPO_ROOT / "params.yaml")
    m = params.monitor
    assert len(m.embedding_methods) >= 2 and {"model", "mmd"} <= set(m.embedding_methods)
    stages = resolved_stages()
    mon, ref = stages["monitor"], stages["monitor_reference"]
    assert params.serving.embedding_log.dir in mon["deps"] and m.reference_dir in mon["deps"]
    assert mon["outs"] == [m.report_dir] and mon["metrics"] == [m.summary_file]
    assert ref["outs"] == [m.reference_dir] and params.serving.index_dir in ref["deps"]
    assert re.search(r"regionmed monitor\b", mon["cmd"]) and "regionmed monitor-reference" in ref["cmd"]


def test_cli_exits_0_with_not_enough_data_and_3_on_drift_when_asked(tmp_path, reference, monkeypatch):
    from typer.testing import CliRunner

    from regionmed.cli import app

    reference.save(tmp_path / "ref")
    params = {
        "monitor": {
            "reference_dir": str(tmp_path / "ref"),
            "report_dir": str(tmp_path / "rep"),
            "summary_file": str(tmp_path / "drift.json"),
            "kinds": ["image"],
            "min_rows": 100,
            "plot_rows": 200,
        },
        "serving": {"embedding_log": {"dir": str(tmp_path / "log")}},
    }
    write_params(tmp_path / "params.yaml", params)
    runner = CliRunner()
    r = runner.invoke(app, ["monitor", "--params", str(tmp_path / "params.yaml"), "--fail-on-drift"])
    assert r.exit_code == 0, r.output
    assert json.loads((tmp_path / "drift.json").read_text())["status"] == "not_enough_data"
    emb, desc = Population(seed=11).images(150, modality=2, contrast=1.8)
    write_log(tmp_path / "log", emb, desc)
    r = runner.invoke(app, ["monitor", "--params", str(tmp_path / "params.yaml")])
    assert r.exit_code == 0 and json.loads((tmp_path / "drift.json").read_text())["status"] == "drift"
    r = runner.invoke(app, ["monitor", "--params", str(tmp_path / "params.yaml"), "--fail-on-drift"])
    assert r.exit_code == 1 and "monitor: check failed: drift found" in r.output  # a failed check
    r = runner.invoke(app, ["monitor", "--params", str(tmp_path / "params.yaml"), "--until", "2020-01-01"])
    assert (
        r.exit_code == 0 and json.loads((tmp_path / "drift.json").read_text())["status"] == "not_enough_data"
    )
