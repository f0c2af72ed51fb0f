"""RegionMed vs the global-only baseline over training seeds: what holds beyond one run's luck.

For each training seed the global phase, the baseline and each arm's region + joint phases are trained
on one corpus (built once, seed 0, as `dvc repro` builds it) with one tokenizer, and every model is
evaluated on the same test split. Per headline metric it reports each model's mean +- sd over seeds,
the paired difference arm − baseline per seed, and a two-level bootstrap interval over seeds and test
images (regionmed/evaluation/seed_bootstrap.py). Arms are params overrides of the default:

    nice -n 10 python benchmarks/seed_variance.py --out .state/seeds --seeds 0 1 2
    python benchmarks/seed_variance.py --out .state/seeds --seeds 0 1 2 \
        --arm decay phases.joint.loss_weights.region=1.0 --arm ...

A rerun keeps every model and evaluation already made (the folder is the cache), so arms can be
added later; <out>/trained.json records the commit each model was trained at. Results:
<out>/seed_variance.md and benchmarks/results/seed_variance.json (--results).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from arm_cache import evaluate_cached, parse_overrides, prepare_corpus

from regionmed.env import configure_environment
from regionmed.publish.record import Record, git_commit, results_option

configure_environment()

METRICS = (
    "zeroshot/macro_auroc",
    "zeroshot/presence_accuracy",
    "zeroshot/presence_accuracy_absent",
    "zeroshot/modality_accuracy",
    "retrieval/i2t_R@5",
    "retrieval/t2i_R@5",
    "grounding/full/lenient",
    "grounding/full/strict",
    "grounding/full/iou>0.5",
    "grounding/locfree/lenient",
    "hardneg/accuracy",
    "vqa/accuracy",
)
GLOBAL_ONLY = ("zeroshot/", "retrieval/", "vqa/")  # what the baseline is scored on too


def evaluation_file(out: Path, model: str, seed: int) -> Path:
    return out / "evaluations" / f"{model}-seed{seed}.npz"


def evaluate(out: Path, model_dir: Path, name: str, seed: int, corpus: Path, params) -> dict:
    """Per-item values of every metric, cached as ``.npz`` (``params.seed`` is ``seed``)."""
    return evaluate_cached(evaluation_file(out, name, seed), model_dir, corpus, params, METRICS)["items"]


def summarise(evals: dict[str, dict[int, dict]], arms: list[str], seeds: list[int], n_boot: int) -> dict:
    from regionmed.evaluation.seed_bootstrap import paired_seed_bootstrap, seed_bootstrap
    from regionmed.evaluation.zeroshot import macro_auroc_of

    def statistic(metric):
        return macro_auroc_of if metric == "zeroshot/macro_auroc" else None

    out: dict = {"models": {}, "vs_baseline": {}, "vs_default": {}}
    for model, by_seed in evals.items():
        out["models"][model] = {}
        for metric in METRICS:
            if all(metric in by_seed[s] for s in seeds):
                values = [by_seed[s][metric][0] for s in seeds]
                groups = by_seed[seeds[0]][metric][1]
                ci = seed_bootstrap(values, groups, n_boot, statistic=statistic(metric))
                out["models"][model][metric] = ci.to_dict()
    for reference, key in (("baseline", "vs_baseline"), (arms[0], "vs_default")):
        for arm in arms:
            if arm == reference:
                continue
            out[key][arm] = {}
            for metric in METRICS:
                if not all(metric in evals[m][s] for m in (arm, reference) for s in seeds):
                    continue
                a = [evals[arm][s][metric][0] for s in seeds]
                b = [evals[reference][s][metric][0] for s in seeds]
                groups = evals[arm][seeds[0]][metric][1]
                ci = paired_seed_bootstrap(a, b, groups, n_boot, statistic=statistic(metric))
                out[key][arm][metric] = ci.to_dict()
    return out


def table(summary: dict, arms: list[str]) -> str:
    lines = [
        "| metric | "
        + " | ".join(["baseline", *arms])
        + " | "
        + " | ".join(f"{a} − baseline" for a in arms)
        + " |"
    ]
    lines.append("|---" * (2 + 2 * len(arms)) + "|")
    for metric in METRICS:
        cells = []
        for model in ("baseline", *arms):
            ci = summary["models"].get(model, {}).get(metric)
            cells.append(f"{ci['estimate']:.3f} ± {ci['sd']:.3f}" if ci else "–")
        for arm in arms:
            ci = summary["vs_baseline"].get(arm, {}).get(metric)
            cells.append(f"{ci['estimate']:+.3f} [{ci['low']:+.3f}, {ci['high']:+.3f}]" if ci else "–")
        lines.append(f"| {metric} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=Path(".state/seed_variance"))
    ap.add_argument("--params", type=Path, default=Path("params.yaml"))
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument(
        "--arm",
        nargs="+",
        action="append",
        default=[],
        metavar=("NAME", "KEY=VALUE"),
        help="an arm: a name and params overrides (the default arm 'regionmed' is always run)",
    )
    ap.add_argument("--n-boot", type=int, default=1000)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1 on a shared machine)")
    results_option(ap, "seed_variance")
    args = ap.parse_args()
    record = Record("seed_variance")

    import torch
    import yaml

    from regionmed.params import Params, deep_merge
    from regionmed.training.train import train

    torch.set_num_threads(args.threads)
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    raw = yaml.safe_load(args.params.read_text())
    arms = {"regionmed": {}, **{a[0]: parse_overrides(a[1:]) for a in args.arm}}
    started = time.perf_counter()
    _, corpus, tokenizer = prepare_corpus(raw, out)
    state = out / "checkpoints"

    trained_file = out / "trained.json"
    trained = json.loads(trained_file.read_text()) if trained_file.is_file() else {}

    def exported(folder: Path) -> bool:
        return (folder / "config.json").is_file()

    def note_trained(key: str) -> None:
        # re-read first: another run on the same cache (other seeds or arms) may have noted its models
        if trained_file.is_file():
            trained.update(json.loads(trained_file.read_text()))
        trained[key] = git_commit()
        trained_file.write_text(json.dumps(trained, indent=1))

    def log(message: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)

    evals: dict[str, dict[int, dict]] = {name: {} for name in ("baseline", *arms)}
    for seed in args.seeds:
        base = Params.model_validate(deep_merge(raw, {"seed": seed}))
        run = out / f"seed{seed}"
        if not exported(run / "global"):
            train(base, "global", corpus, tokenizer, run / "global", None, state)
            note_trained(f"seed{seed}/global")
            log(f"seed {seed}: global")
        if not exported(run / "baseline"):
            train(base, "baseline", corpus, tokenizer, run / "baseline", None, state)
            note_trained(f"seed{seed}/baseline")
            log(f"seed {seed}: baseline")
        evals["baseline"][seed] = evaluate(out, run / "baseline", "baseline", seed, corpus, base)
        for name, override in arms.items():
            p = Params.model_validate(deep_merge(raw, deep_merge(override, {"seed": seed})))
            start = run / "global"
            if "global" in override.get("phases", {}):  # an arm that changes the global phase trains its own
                start = run / name / "global"
                if not exported(start):
                    train(p, "global", corpus, tokenizer, start, None, state)
            if not exported(run / name / "model"):
                train(p, "region", corpus, tokenizer, run / name / "region", start, state)
                train(p, "joint", corpus, tokenizer, run / name / "model", run / name / "region", state)
                note_trained(f"seed{seed}/{name}")
                log(f"seed {seed}: {name}")
            evals[name][seed] = evaluate(out, run / name / "model", name, seed, corpus, p)
    summary = summarise(evals, list(arms), args.seeds, args.n_boot)
    summary["arms"] = arms
    summary["seeds"] = args.seeds
    summary["n_test_images"] = len(set(evals["baseline"][args.seeds[0]]["retrieval/i2t_R@5"][1]))
    summary["trained_at"] = trained
    summary["seconds"] = round(time.perf_counter() - started)
    (out / "seed_variance.md").write_text(table(summary, list(arms)) + "\n")
    print(table(summary, list(arms)))
    threads = f"torch threads {args.threads}, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}"
    record.write(summary, args.results, conditions=threads)


if __name__ == "__main__":
    main()
