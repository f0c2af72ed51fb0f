"""Report retention of the monitor flow: keep N full reports or D days, summaries longer, then nothing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from regionmed.monitoring.retention import prune_reports
from regionmed.paths import repo_relative

NOW = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)


def report(root: Path, hours_ago: float, run: str) -> Path:
    folder = root / f"{(NOW - timedelta(hours=hours_ago)).strftime('%Y%m%dT%H%M%SZ')}-{run}"
    folder.mkdir(parents=True)
    for name in ("index.html", "image.html", "text.html"):
        (folder / name).write_text("x" * 4000)
    (folder / "summary.json").write_text('{"status": "drift"}')
    return folder


def contents(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_newest_n_full_reports_within_d_days_then_summaries_then_nothing(tmp_path):
    root = tmp_path / "reports"
    recent = [report(root, h, f"r{h}") for h in (1, 2, 3)]  # the newest three
    old_week = report(root, 24 * 8, "week")  # within N by count if N were large, but older than D
    old_year = report(root, 24 * 400, "year")  # older than the summaries' limit
    (root / "notes.txt").write_text("not a report")  # left alone
    foreign = root / "by-hand"
    foreign.mkdir()
    (foreign / "index.html").write_text("kept")

    pruned = prune_reports(root, keep_reports=2, keep_days=7, keep_summaries_days=365, now=NOW)
    full = ["image.html", "index.html", "summary.json", "text.html"]
    assert contents(recent[0]) == full and contents(recent[1]) == full
    assert contents(recent[2]) == ["summary.json"] and contents(old_week) == ["summary.json"]
    assert not old_year.exists()
    assert (root / "notes.txt").is_file() and contents(foreign) == ["index.html"]
    assert sorted(pruned.summaries_only) == sorted([recent[2].name, old_week.name])
    assert pruned.removed == [old_year.name] and pruned.bytes_freed >= 3 * 12000  # three folders of HTML
    # applied again: nothing more to do
    again = prune_reports(root, keep_reports=2, keep_days=7, keep_summaries_days=365, now=NOW)
    assert again.summaries_only == [] and again.removed == [] and again.bytes_freed == 0


def test_the_current_run_is_never_pruned_and_null_limits_keep_everything(tmp_path):
    root = tmp_path / "reports"
    folders = [report(root, 24 * d, f"d{d}") for d in (1, 30, 500)]
    prune_reports(root, keep_reports=None, keep_days=None, keep_summaries_days=None, now=NOW)
    assert all(len(contents(f)) == 4 for f in folders)
    prune_reports(root, keep_reports=1, keep_days=1, keep_summaries_days=10, now=NOW, protect=folders[2])
    assert len(contents(folders[2])) == 4 and len(contents(folders[0])) == 4  # protected; newest
    assert contents(folders[1]) == []  # 30 days > 10: gone


def test_recorded_paths_are_relative_to_the_repository_when_inside_it(tmp_path):
    repo = tmp_path / "repo"
    (repo / ".state/bentoml").mkdir(parents=True)
    assert repo_relative(repo / ".state/bentoml", repo) == ".state/bentoml"
    assert repo_relative(tmp_path / "elsewhere", repo) == str(
        tmp_path / "elsewhere"
    )  # a configured outside store
