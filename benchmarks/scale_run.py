"""The pipeline at scale, end to end: a synthetic corpus of ``--images`` through every stage, on a
LocalCluster of ``--workers`` Dask workers, timed stage by stage (docs/scaling.md).

    python benchmarks/scale_run.py --images 100000 --workers 2 --compare-workers 1 --steps 20

A clean copy of the repository (tracked files only) in ``--dir`` gets the params below and runs
``dvc repro -s <stage>`` for each stage in order: build → annotate → validate → tokenizer → four
short training stages (``--steps`` each, the baseline as many as the three phases) → evaluate → gate
→ package (with the ANN index) → monitor reference. Per stage: wall time and the peak RSS of the
largest process it started (``getrusage`` of the children, measured in a wrapper process per stage).
Then the disk each output takes, ``dvc status`` with nothing changed, ``dvc add`` of a copy of the
corpus, and ``dvc push`` of every output to a folder remote. With ``--compare-workers`` the per-image
stages (build, annotate, validate) run again on that many workers, and their outputs' hashes in
``dvc.lock`` are compared with the first run's. The gate's floors are lowered (a short run learns
little; the gate still runs); evaluation bootstraps ``--n-boot`` resamples.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import yaml

from regionmed.params import deep_merge
from regionmed.publish.record import Record, results_option

REPO = Path(__file__).resolve().parents[1]
STAGES = (
    *("build_corpus", "train_annotator", "annotate_regions", "validate_corpus", "tokenizer"),
    *("pretrain_global", "pretrain_region", "pretrain_joint", "pretrain_baseline"),
    *("evaluate", "gate", "package", "monitor_reference"),
)
PER_IMAGE = ("build_corpus", "annotate_regions", "validate_corpus")
BUDGETS = {"build_annotate_validate_s": 1800, "peak_rss_mb": 4096, "dvc_status_s": 10}
# A wrapper per stage: the peak RSS of the largest process below it (dvc, the stage, its workers).
WRAP = (
    "import resource, subprocess, sys; rc = subprocess.run(sys.argv[2:]).returncode; "
    "open(sys.argv[1], 'w').write(str(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)); "
    "sys.exit(rc)"
)


def overrides(images: int, workers: int, steps: int, n_boot: int) -> dict:
    floors = yaml.safe_load((REPO / "params.yaml").read_text())["gate"]["floors"]
    return {
        "cluster": {"workers": workers},
        "corpus": {"synthetic": {"n_images": images}},
        "phases": {name: {"steps": steps} for name in ("global", "region", "joint")},
        "evaluate": {"n_boot": n_boot},
        "gate": {
            "floors": dict.fromkeys(floors, -1.0),
            "must_beat_baseline": [],
            "relative_floors": {"above_chance": [], "above_prior": [], "not_below_baseline": []},
            "require_champion": False,
        },
    }


def clean_copy(dest: Path, params: dict) -> None:
    files = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO, check=True, capture_output=True, text=True
    ).stdout.split("\n")
    for rel in filter(None, files):
        if (REPO / rel).is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / rel, dest / rel)
    for stale in ("dvc.lock", "deploy/champion.json"):
        (dest / stale).unlink(missing_ok=True)
    set_params(dest, params)
    for cmd in (["git", "init", "-q"], ["git", "add", "-A"], ["git", "commit", "-qm", "copy"]):
        subprocess.run(cmd, cwd=dest, check=True, env=_env())
    # a remote of this run's own, not the folder beside the repository
    subprocess.run(["dvc", "remote", "add", "--local", "-d", "bench", str(dest.parent / "remote")], cwd=dest)


def set_params(repo: Path, params: dict) -> None:
    current = yaml.safe_load((repo / "params.yaml").read_text())
    (repo / "params.yaml").write_text(yaml.safe_dump(deep_merge(current, params), sort_keys=False))


def _env() -> dict[str, str]:
    git = {"GIT_AUTHOR_NAME": "bench", "GIT_AUTHOR_EMAIL": "bench@localhost"}
    return {**os.environ, **git, "GIT_COMMITTER_NAME": "bench", "GIT_COMMITTER_EMAIL": "bench@localhost"}


def timed(cmd: list[str], repo: Path, log: Path) -> dict:
    rss = log.with_suffix(".rss")
    started = time.perf_counter()
    with open(log, "ab") as out:
        rc = subprocess.run(
            [sys.executable, "-c", WRAP, str(rss), *cmd], cwd=repo, env=_env(), stdout=out, stderr=out
        ).returncode
    seconds = time.perf_counter() - started
    if rc != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({rc}): see {log}")
    return {"seconds": round(seconds, 1), "peak_rss_mb": round(int(rss.read_text()) / 1024)}


def run_stages(repo: Path, stages, workers: int, log: Path, done: Path) -> list[dict]:
    """Each stage in turn; a row per stage appended to ``done`` as it ends (``--resume`` reads it)."""
    rows = [json.loads(line) for line in done.read_text().splitlines()] if done.is_file() else []
    for stage in stages:
        if any(r["stage"] == stage and r["workers"] == workers for r in rows):
            continue
        # -f: DVC's run cache would restore outputs of a setting that ran before instead of running
        cmd = ["dvc", "repro", "-s", "-f", stage]
        row = {"stage": stage, "workers": workers, **timed(cmd, repo, log)}
        with open(done, "a") as f:
            f.write(json.dumps(row) + "\n")
        rows.append(row)
        print(
            f"{stage:<18} {workers} worker(s) {row['seconds']:8.1f} s {row['peak_rss_mb']:6d} MB", flush=True
        )
    return [r for r in rows if r["workers"] == workers and r["stage"] in stages]


def disk(repo: Path) -> dict:
    def size(path: Path) -> tuple[int, int]:
        files = [p for p in path.rglob("*") if p.is_file()] if path.is_dir() else [path]
        return sum(p.stat().st_size for p in files), len(files)

    out = {}
    for rel in ("data/corpus", "data/corpus_annotated", "models", "build", ".dvc/cache"):
        if (repo / rel).exists():
            n_bytes, n_files = size(repo / rel)
            out[rel] = {"mb": round(n_bytes / 2**20, 1), "files": n_files}
    return out


def dvc_times(repo: Path, log: Path) -> dict:
    status = [timed(["dvc", "status"], repo, log)["seconds"] for _ in range(3)]
    shutil.rmtree(repo / "corpus_copy", ignore_errors=True)  # a resumed run's earlier copy
    (repo / "corpus_copy.dvc").unlink(missing_ok=True)
    shutil.copytree(repo / "data/corpus", repo / "corpus_copy")
    added = timed(["dvc", "add", "corpus_copy"], repo, log)["seconds"]
    pushed = timed(["dvc", "push"], repo, log)["seconds"]
    return {"status_s": sorted(status)[1], "add_corpus_copy_s": added, "push_all_s": pushed}


def lock_outs(repo: Path) -> dict:
    """The data outputs' hashes in ``dvc.lock`` (metrics and reports carry timings)."""
    stages = yaml.safe_load((repo / "dvc.lock").read_text())["stages"]
    return {
        name: [out for out in stages[name]["outs"] if out["path"].startswith("data/")] for name in PER_IMAGE
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--images", type=int, default=100_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--compare-workers", type=int, nargs="*", default=[1])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--n-boot", type=int, default=200)
    # not under a hidden folder: `bentoml build` refuses a build context below one (`.state/...`)
    parser.add_argument("--dir", type=Path, default=REPO.parent / "regionmed-scale-run")
    parser.add_argument("--resume", action="store_true", help="keep --dir's run, run only the stages left")
    results_option(parser, "scale_run")
    args = parser.parse_args()
    record = Record("scale_run")
    repo, log, done = args.dir / "repo", args.dir / "run.log", args.dir / "stages.jsonl"
    if not args.resume:
        if args.dir.exists():
            shutil.rmtree(args.dir)
        repo.mkdir(parents=True)
        clean_copy(repo, overrides(args.images, args.workers, args.steps, args.n_boot))
    print(f"{args.images:,} images, {args.workers} Dask worker(s); log: {log}", flush=True)
    # a resumed run whose compared stages already ran: their outputs are the lock's now
    prior = lock_outs(repo) if args.resume and (repo / "dvc.lock").is_file() else None
    set_params(repo, {"cluster": {"workers": args.workers}})
    rows = run_stages(repo, STAGES, args.workers, log, done)
    figures = {
        "resumed": args.resume,
        "images": args.images,
        "steps_per_phase": args.steps,
        "n_boot": args.n_boot,
        "summary": json.loads((repo / "data/corpus/build.json").read_text()),
        "disk": disk(repo),
        "dvc": dvc_times(repo, log),
    }
    first = lock_outs(repo)
    for workers in args.compare_workers:
        set_params(repo, {"cluster": {"workers": workers}})
        lines = len(done.read_text().splitlines())
        rows += run_stages(repo, PER_IMAGE, workers, log, done)
        ran = len(done.read_text().splitlines()) > lines
        figures[f"outputs_equal_with_{workers}_workers"] = (lock_outs(repo) if ran else prior) == first
    figures["stages"] = rows
    main_rows = [r for r in rows if r["workers"] == args.workers]
    per_image = sum(r["seconds"] for r in main_rows if r["stage"] in PER_IMAGE)
    figures["budgets"] = {
        **BUDGETS,
        "build_annotate_validate_s_measured": round(per_image, 1),
        "peak_rss_mb_measured": max(r["peak_rss_mb"] for r in rows),
        "dvc_status_s_measured": figures["dvc"]["status_s"],
    }
    print(json.dumps(figures["budgets"], indent=1))
    record.write(figures, args.results)


if __name__ == "__main__":
    main()
