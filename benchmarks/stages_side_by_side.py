"""Stage wall times of two commits, side by side on this machine: the default settings, each stage's
own command (as `dvc.yaml` runs it) in a git worktree of each commit, alternating, ``--repeats`` times.

    python benchmarks/stages_side_by_side.py --old 283477a --new HEAD --models models

Each worktree builds its own corpus (``build_corpus``, ``train_annotator``, ``annotate_regions``,
``validate_corpus``); ``evaluate`` scores the same trained models in both (``--models``: a folder
holding ``regionmed``, ``baseline`` and ``tokenizer``, e.g. the default run's), so what differs is the
code of the stages. Order per repeat: old then new, then new then old on the next, so a drift in the
machine's load falls on both. Writes benchmarks/results/stages_side_by_side.json (``--results``).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from regionmed.publish.record import Record, results_option

REPO = Path(__file__).resolve().parents[1]
STAGES = ("build_corpus", "train_annotator", "annotate_regions", "validate_corpus", "evaluate")


def stage_command(tree: Path, stage: str) -> list[str]:
    """The stage's `cmd` from the worktree's own dvc.yaml (one line, `${...}` left to the CLI's defaults)."""
    import yaml

    cmd = yaml.safe_load((tree / "dvc.yaml").read_text())["stages"][stage]["cmd"]
    return cmd.split() if isinstance(cmd, str) else " ".join(cmd).split()


def worktree(rev: str, dest: Path, models: Path) -> Path:
    if dest.exists():
        subprocess.run(["git", "worktree", "remove", "--force", str(dest)], cwd=REPO, check=False)
        shutil.rmtree(dest, ignore_errors=True)
    subprocess.run(["git", "worktree", "add", "-q", "--detach", str(dest), rev], cwd=REPO, check=True)
    (dest / "models").mkdir()
    for name in ("regionmed", "baseline", "tokenizer"):
        (dest / "models" / name).symlink_to((models / name).resolve())
    return dest


def run_stage(tree: Path, stage: str) -> float:
    cmd = stage_command(tree, stage)
    assert cmd[:3] == ["python", "-m", "regionmed"], cmd
    env = {**os.environ, "PYTHONPATH": str(tree)}
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, *cmd[1:]],
        cwd=tree,
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--old", required=True)
    parser.add_argument("--new", default="HEAD")
    parser.add_argument("--models", type=Path, default=REPO / "models")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--dir", type=Path, default=REPO / ".state/side_by_side")
    results_option(parser, "stages_side_by_side")
    args = parser.parse_args()
    record = Record("stages_side_by_side")
    revs = {
        label: subprocess.run(
            ["git", "rev-parse", "--short", rev], cwd=REPO, check=True, capture_output=True, text=True
        ).stdout.strip()
        for label, rev in (("old", args.old), ("new", args.new))
    }
    trees = {label: worktree(rev, args.dir / label, args.models) for label, rev in revs.items()}
    times: dict[str, dict[str, list[float]]] = {label: {s: [] for s in STAGES} for label in trees}
    try:
        for repeat in range(args.repeats):
            for label in ("old", "new") if repeat % 2 == 0 else ("new", "old"):
                for stage in STAGES:
                    seconds = run_stage(trees[label], stage)
                    times[label][stage].append(round(seconds, 1))
                    print(
                        f"repeat {repeat + 1} {label} ({revs[label]}) {stage:<17} {seconds:7.1f} s",
                        flush=True,
                    )
    finally:
        for tree in trees.values():
            subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=REPO, check=False)
    rows = []
    for stage in STAGES:
        old, new = min(times["old"][stage]), min(times["new"][stage])
        rows.append(
            {
                "stage": stage,
                "old_s": old,
                "new_s": new,
                "ratio": round(new / old, 3),
                "all": {k: times[k][stage] for k in times},
            }
        )
    total_old, total_new = sum(r["old_s"] for r in rows), sum(r["new_s"] for r in rows)
    figures = {
        "revs": revs,
        "repeats": args.repeats,
        "rows": rows,
        "total_old_s": round(total_old, 1),
        "total_new_s": round(total_new, 1),
        "total_ratio": round(total_new / total_old, 3),
    }
    for r in rows:
        print(f"{r['stage']:<17} old {r['old_s']:7.1f} s  new {r['new_s']:7.1f} s  {r['ratio']:.2f}x")
    print(f"{'in all':<17} old {total_old:7.1f} s  new {total_new:7.1f} s  {total_new / total_old:.2f}x")
    record.write(figures, args.results)


if __name__ == "__main__":
    main()
