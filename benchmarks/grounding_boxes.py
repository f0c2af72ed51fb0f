"""Boxes worth drawing: ground()'s boxes and pointing before and after a change, at the default size.

One corpus (built as `dvc repro` builds it), one tokenizer and one global phase are shared by every
arm; each arm trains its own region + joint phases (timed) from that global phase and is evaluated
once on the test split with the evaluation suite. Arms are params overrides of params.yaml (YAML
values); the first arm is the reference every other arm is paired with:

    nice -n 10 python benchmarks/grounding_boxes.py --out .state/grounding_boxes \
        --arm before model.roi.box_head=null train.grounding_centre_weight=0.0 \
        --arm after

Reported per arm: box IoU > 0.3 / > 0.5 (all findings and by size), pointing (full phrase lenient
and strict, location-free), hard negatives, retrieval, zero-shot AUROC, VQA, each with its 95%
bootstrap interval over test images, paired differences against the first arm, and the seconds each
phase took. A rerun keeps every model and evaluation already made (the folder is the cache; delete an
arm's folder to retrain it); <out>/trained.json records the commit each model was trained at.
Figures go to the results file (--results; by default named after the benchmark in the results
folder), from which a docs block can render them.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from arm_cache import evaluate_cached, parse_overrides, prepare_corpus

from regionmed.env import configure_environment
from regionmed.publish.record import Record, git_commit, results_option

configure_environment()

METRICS = (
    "grounding/full/iou>0.3",
    "grounding/full/iou>0.5",
    "grounding/full/strict",
    "grounding/full/lenient",
    "grounding/locfree/lenient",
    "grounding/locfree/strict",
    "grounding/laterality",
    "hardneg/accuracy",
    "retrieval/i2t_R@5",
    "retrieval/t2i_R@5",
    "zeroshot/macro_auroc",
    "zeroshot/modality_accuracy",
    "vqa/accuracy",
)
SIZES = ("subtle", "small", "large")


def parse_arm(words: list[str]) -> tuple[str, dict]:
    """``NAME key.path=value ...`` (YAML values) → ``(NAME, nested override dict)``."""
    return words[0], parse_overrides(words[1:])


def evaluate_arm(path: Path, model_dir: Path, corpus: Path, params) -> dict:
    """Per-item values and image ids of every metric, the box IoU and finding size of each phrase;
    cached as ``.npz``."""

    def boxes(ev, test) -> dict:
        from regionmed.evaluation.grounding import box_iou
        from regionmed.evaluation.suite import finding_regions

        examples = ev.grounding_examples
        return {
            "iou": box_iou(examples["pred_boxes"], examples["true_boxes"]),
            "size": finding_regions(test)["size"].to_numpy().astype(str),
        }

    return evaluate_cached(path, model_dir, corpus, params, METRICS, extra=boxes)


def _statistic(metric: str):
    from regionmed.evaluation.zeroshot import macro_auroc_of

    return macro_auroc_of if metric == "zeroshot/macro_auroc" else "mean"


def _rounded(ci, *keys: str) -> dict:
    attrs = ("estimate", "low", "high", "p_value")
    return {k: round(float(getattr(ci, a)), 5) for k, a in zip(keys, attrs, strict=False)}


def interval(evaluated: dict, metric: str, n_boot: int, alpha: float, seed: int) -> dict:
    """The metric with its bootstrap interval over test images."""
    from regionmed.evaluation.bootstrap import bootstrap_ci

    values, groups = evaluated["items"][metric]
    ci = bootstrap_ci(values, groups, n_boot=n_boot, seed=seed, alpha=alpha, statistic=_statistic(metric))
    return _rounded(ci, "value", "low", "high")


def paired(a: dict, b: dict, metric: str, n_boot: int, alpha: float, seed: int) -> dict:
    """Arm ``a`` − arm ``b`` on the same test items, with its paired bootstrap interval."""
    from regionmed.evaluation.bootstrap import paired_difference_ci

    (va, groups), (vb, _) = a["items"][metric], b["items"][metric]
    ci = paired_difference_ci(
        va, vb, groups, n_boot=n_boot, seed=seed, alpha=alpha, statistic=_statistic(metric)
    )
    return _rounded(ci, "value", "low", "high", "p")


def iou_by_size(evaluated: dict) -> dict:
    iou, size = evaluated["iou"], evaluated["size"]
    out = {}
    for bucket in SIZES:
        keep = size == bucket
        out[bucket] = {
            "n": int(keep.sum()),
            "iou>0.3": round(float((iou[keep] > 0.3).mean()), 5),
            "iou>0.5": round(float((iou[keep] > 0.5).mean()), 5),
            "mean_iou": round(float(iou[keep].mean()), 5),
        }
    return out


def table(figures: dict) -> str:
    arms = list(figures["arms"])
    lines = ["| metric | " + " | ".join(arms) + " |", "|---" * (1 + len(arms)) + "|"]
    for metric in METRICS:
        cells = [figures["values"][a].get(metric, {}).get("value") for a in arms]
        lines.append(f"| {metric} | " + " | ".join("–" if c is None else f"{c:.3f}" for c in cells) + " |")
    for phase in ("region", "joint"):
        cells = [figures["seconds"][a].get(phase) for a in arms]
        lines.append(f"| {phase} seconds | " + " | ".join(str(c) for c in cells) + " |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=Path(".state/grounding_boxes"))
    ap.add_argument("--params", type=Path, default=Path("params.yaml"))
    ap.add_argument(
        "--arm",
        nargs="+",
        action="append",
        required=True,
        metavar=("NAME", "KEY=VALUE"),
        help="an arm: a name and params overrides; the first arm is the reference",
    )
    ap.add_argument("--n-boot", type=int, default=1000)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1 on a shared machine)")
    results_option(ap, "grounding_boxes")
    args = ap.parse_args()
    record = Record("grounding_boxes")

    import torch
    import yaml

    from regionmed.params import Params, deep_merge
    from regionmed.training.train import train

    torch.set_num_threads(args.threads)
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    raw = yaml.safe_load(args.params.read_text())
    arms = dict(parse_arm(words) for words in args.arm)
    base, corpus, tokenizer = prepare_corpus(raw, out)
    state = out / "checkpoints"
    trained_file = out / "trained.json"
    trained = json.loads(trained_file.read_text()) if trained_file.is_file() else {}

    def log(message: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)

    def note(key: str, summary: dict) -> None:
        trained[key] = {"commit": git_commit(), "seconds": summary["seconds"], "steps": summary["steps"]}
        trained_file.write_text(json.dumps(trained, indent=1))
        log(f"{key}: {summary['seconds']} s")

    if not (out / "global" / "config.json").is_file():
        note("global", train(base, "global", corpus, tokenizer, out / "global", None, state))
    evaluations = {}
    for name, override in arms.items():
        params = Params.model_validate(deep_merge(raw, override))
        if not (out / name / "model" / "config.json").is_file():
            summary = train(params, "region", corpus, tokenizer, out / name / "region", out / "global", state)
            note(f"{name}/region", summary)
            summary = train(
                params, "joint", corpus, tokenizer, out / name / "model", out / name / "region", state
            )
            note(f"{name}/joint", summary)
        evaluations[name] = evaluate_arm(
            out / "evaluations" / f"{name}.npz", out / name / "model", corpus, params
        )
        log(f"{name}: evaluated")

    reference = next(iter(arms))
    figures: dict = {"arms": arms, "reference": reference, "values": {}, "vs_reference": {}}
    boot = (args.n_boot, base.evaluate.alpha, base.seed)
    for name, ev in evaluations.items():
        figures["values"][name] = {m: interval(ev, m, *boot) for m in METRICS if m in ev["items"]}
        if name != reference:
            ref = evaluations[reference]
            shared = [m for m in METRICS if m in ev["items"] and m in ref["items"]]
            figures["vs_reference"][name] = {m: paired(ev, ref, m, *boot) for m in shared}
    figures["iou_by_size"] = {name: iou_by_size(ev) for name, ev in evaluations.items()}
    figures["seconds"] = {
        name: {phase: trained.get(f"{name}/{phase}", {}).get("seconds") for phase in ("region", "joint")}
        for name in arms
    }
    figures["trained_at"] = trained
    figures["n_findings"] = len(evaluations[reference]["iou"])
    (out / "grounding_boxes.md").write_text(table(figures) + "\n")
    print(table(figures))
    record.write(figures, args.results)


if __name__ == "__main__":
    main()
