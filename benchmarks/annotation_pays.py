"""Does training on engine-annotated regions pay? Boxes hidden on 90% of the synthetic train images.

Arms (same total steps, same tokenizer, same global phase, same test split):
  A   boxes on the 10% of train images that keep them (annotate.localizer none)
  Bp  A + regions the `prior` localizer drew on the other 90%
  Bs  A + regions the `self` localizer drew there with A's model (one self-training round),
      candidates scored by the region path (annotate.self_select region_score)
  Bz  the same round with annotate.self_select sized: a train-sized box where A's heatmap peaks
  Bz2 (--second-round) Bz's model annotates the hidden 90% again (sized), retrained from the global phase
  Bzw (--down-weighted W) Bz's regions at train.annotated_region_weight W, confidence-weighted
  Bzc (--min-confidence C) the sized round with A's model, boxes under confidence C dropped
  Bzl (--location-words) the sized round with A's model, its heatmap searched only where the phrase's
      location words allow (annotate.self_location_words)
  Bzl2 (--location-words --second-round) Bzl's model annotates the hidden 90% again, bounded the same way
  C   boxes on every train image (the default corpus)
  D   the global-only baseline
Box quality of each localizer against the hidden truth comes from its metrics/annotation.json.
Every model is evaluated once on the test split (evaluation.suite); paired 95% bootstrap
differences come from the evaluation's own summarise(). Writes ``evaluation.json`` in ``--out`` and
the same figures to ``--results`` (default benchmarks/results/annotation_pays.json), which
docs/experiments.md renders.

    nice -n 10 python benchmarks/annotation_pays.py --out .state/annotation_pays \
        --region-steps 150 --joint-steps 450

``--arms A,Bzl`` trains and evaluates only those arms (with ``--self-arms ''`` and ``--location-words``:
the one round the default ``self`` settings make, against boxes on 10% alone).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from regionmed.env import configure_environment
from regionmed.publish.record import Record, results_option

configure_environment()

METRICS = (
    "grounding/full/lenient",
    "grounding/full/strict",
    "grounding/locfree/lenient",
    "grounding/locfree/strict",
    "hardneg/accuracy",
    "retrieval/i2t_R@5",
    "zeroshot/macro_auroc",
)
SMALL = {
    "corpus": {"image_size": 64},
    "model": {
        "vision": {"image_size": 64, "hidden": 64, "layers": 2, "heads": 2, "mlp": 128},
        "text": {"hidden": 64, "layers": 2, "heads": 2, "mlp": 128},
        "roi": {"fusion_heads": 2},
        "embed_dim": 64,
    },
}
PAIRS = (("Bp", "A"), ("Bs", "A"), ("Bz", "A"), ("C", "A"), ("A", "D"), ("Bz", "Bs"), ("C", "Bz"))
ARMS = ("A", "Bp", "Bs", "Bz", "C", "D")
# what each arm is, written into the results file beside its figures
ARM_NAMES = {
    "A": "boxes on 10%",
    "Bp": "A + prior regions",
    "Bs": "A + self regions (region score, one round)",
    "Bz": "A + self regions (sized, one round)",
    "Bz2": "a second round (Bz's model annotates)",
    "Bzw": "Bz's regions at weight W x confidence",
    "Bzc": "Bz's round keeping confidence ≥ C",
    "Bzl": "A + self regions bounded by location words (one round)",
    "Bzl2": "a second round (Bzl's model annotates)",
    "C": "boxes on all",
    "D": "global-only",
}


def params_for(base: dict, out: Path, **annotate):
    from regionmed.params import Params, deep_merge

    return Params.model_validate(
        deep_merge(
            base,
            {
                "annotate": {
                    "out_dir": str(out / "corpus"),
                    "summary_file": str(out / "annotation.json"),
                    "preview_file": str(out / "preview.png"),
                    **annotate,
                }
            },
        )
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, default=Path(".state/annotation_pays"))
    ap.add_argument("--params", type=Path, default=Path("params.yaml"))
    ap.add_argument("--hide", type=float, default=0.9)
    ap.add_argument("--global-steps", type=int, default=200)
    ap.add_argument("--region-steps", type=int, default=150)
    ap.add_argument("--joint-steps", type=int, default=450)
    ap.add_argument("--n-boot", type=int, default=1000)
    ap.add_argument("--n-images", type=int, default=None, help="corpus size (default: params.yaml's)")
    ap.add_argument(
        "--small",
        action="store_true",
        help="64 px images and a small model (the end-to-end tests' size) for a loaded CPU",
    )
    ap.add_argument(
        "--second-round",
        action="store_true",
        help="a second self-training round: Bz's model annotates the hidden 90% again (arm Bz2)",
    )
    ap.add_argument(
        "--down-weighted",
        type=float,
        default=None,
        metavar="W",
        help="arm Bzw: Bz's regions trained at train.annotated_region_weight W, confidence-weighted",
    )
    ap.add_argument(
        "--min-confidence",
        type=float,
        default=None,
        metavar="C",
        help="arm Bzc: the sized self round keeping only boxes of confidence >= C (annotate.min_confidence)",
    )
    ap.add_argument(
        "--location-words",
        action="store_true",
        help="arm Bzl: the sized self round with A's model searching only where the location words allow",
    )
    ap.add_argument(
        "--self-arms",
        default="Bs,Bz",
        help="which one-round self arms to train, comma-separated (Bs, Bz; Bz2 needs Bz)",
    )
    ap.add_argument(
        "--arms",
        default=None,
        help="train and evaluate only these arms, comma-separated (e.g. A,Bzl); default: all that apply",
    )
    results_option(ap, "annotation_pays")
    args = ap.parse_args()
    only = set(args.arms.split(",")) if args.arms else None
    record = Record("annotation_pays")

    import torch
    import yaml

    from regionmed.annotation import stage as annotate_stage
    from regionmed.corpus.build import build_corpus
    from regionmed.corpus.schema import read_manifest
    from regionmed.model.tokenizer import train_wordpiece_tokenizer
    from regionmed.params import deep_merge
    from regionmed.training.texts import corpus_texts
    from regionmed.training.train import train

    torch.set_num_threads(1)  # on the shared 2 cores, 2 threads oversubscribe (BENCHMARKS.md, serving)
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    base = deep_merge(
        yaml.safe_load(args.params.read_text()),
        {
            "phases": {
                "global": {"steps": args.global_steps},
                "region": {"steps": args.region_steps},
                "joint": {"steps": args.joint_steps},
                "baseline": {"steps": args.global_steps + args.region_steps + args.joint_steps},
            }
        },
    )
    if args.small:
        base = deep_merge(base, SMALL)
    if args.n_images:
        base = deep_merge(base, {"corpus": {"synthetic": {"n_images": args.n_images}}})
    # a rerun (after an interruption, or with --second-round) keeps every corpus and model already made
    log_file = out / "log.json"
    log = json.loads(log_file.read_text()) if log_file.is_file() else {"seconds": {}}
    log["args"] = {k: str(v) for k, v in vars(args).items()}
    clock = time.perf_counter()

    def lap(name):
        nonlocal clock
        log["seconds"][name] = round(time.perf_counter() - clock, 1)
        clock = time.perf_counter()
        log_file.write_text(json.dumps(log, indent=1, default=str))
        print(f"[{time.strftime('%H:%M:%S')}] {name}: {log['seconds'][name]} s", flush=True)

    def exported(folder: Path) -> bool:
        return (folder / "config.json").is_file()

    def annotate(arm: str, **settings) -> None:
        if not (out / arm / "corpus" / "manifest.parquet").is_file():
            log[f"annotation_{arm}"] = annotate_stage.run(
                params_for(base, out / arm, **settings), corpus_dir=source
            ).summary
            lap(f"annotate_{arm}")

    source = out / "source"
    if not (source / "manifest.parquet").is_file():
        build_corpus(params_for(base, out / "C"), source, progress=False)
        lap("build_corpus")
    annotate("C", localizer="none")
    annotate("A", localizer="none", hide_given_fraction=args.hide)
    if only is None or "Bp" in only:
        annotate("Bp", localizer="prior", hide_given_fraction=args.hide)
    params_c = params_for(base, out / "C")
    tokenizer = out / "tokenizer"
    if not tokenizer.is_dir():
        train_wordpiece_tokenizer(
            corpus_texts(out / "C" / "corpus"), params_c.model.text.vocab_size, tokenizer
        )
    state = out / "checkpoints"
    # the global phase sees images and reports only: the same for every arm
    if not exported(out / "global"):
        log["train_global"] = train(
            params_c, "global", out / "C" / "corpus", tokenizer, out / "global", None, state
        )
        lap("train_global")
    if (only is None or "D" in only) and not exported(out / "D" / "model"):
        log["train_D"] = train(
            params_c, "baseline", out / "C" / "corpus", tokenizer, out / "D" / "model", None, state
        )
        lap("train_D")

    def train_arm(arm: str, corpus_of: str | None = None, train_settings: dict | None = None) -> None:
        if exported(out / arm / "model"):
            return
        p = params_for(deep_merge(base, {"train": train_settings or {}}), out / arm)
        corpus = out / (corpus_of or arm) / "corpus"
        region = train(p, "region", corpus, tokenizer, out / arm / "region", out / "global", state)
        joint = train(p, "joint", corpus, tokenizer, out / arm / "model", out / arm / "region", state)
        log[f"train_{arm}"] = {"region": region, "joint": joint}
        lap(f"train_{arm}")

    for arm in ("A", "Bp", "C"):
        if only is None or arm in only:
            train_arm(arm)
    # self-training rounds: A's model annotates the hidden 90% (Bs, Bz); Bz's model annotates it again (Bz2)
    chosen = {a for a in args.self_arms.split(",") if a} | ({"Bz", "Bz2"} if args.second_round else set())
    rounds = [
        r
        for r in (("Bs", "region_score", "A"), ("Bz", "sized", "A"), ("Bz2", "sized", "Bz"))
        if r[0] in chosen
    ]
    for arm, select, annotator in rounds:
        annotate(
            arm,
            localizer="self",
            hide_given_fraction=args.hide,
            self_model_dir=str(out / annotator / "model"),
            self_select=select,
        )
        train_arm(arm)
    if args.down_weighted is not None:  # the same regions as Bz, weighed down and by their confidence
        chosen.add("Bzw")
        train_arm("Bzw", "Bz", {"annotated_region_weight": args.down_weighted, "confidence_weighted": True})
    if args.min_confidence is not None:  # the round with A's model again, its weak boxes dropped
        chosen.add("Bzc")
        annotate(
            "Bzc",
            localizer="self",
            hide_given_fraction=args.hide,
            self_model_dir=str(out / "A" / "model"),
            self_select="sized",
            min_confidence=args.min_confidence,
        )
        train_arm("Bzc")
    if args.location_words:  # the round with A's model again, the report's location words bounding the search
        for arm, annotator in (("Bzl", "A"), ("Bzl2", "Bzl"))[: 2 if args.second_round else 1]:
            chosen.add(arm)
            annotate(
                arm,
                localizer="self",
                hide_given_fraction=args.hide,
                self_model_dir=str(out / annotator / "model"),
                self_select="sized",
                self_location_words=True,
            )
            train_arm(arm)
    arms = tuple(
        a
        for a in (*ARMS, "Bz2", "Bzw", "Bzc", "Bzl", "Bzl2")
        if (a in chosen or a in ("A", "Bp", "C", "D")) and (only is None or a in only)
    )
    pairs = tuple(
        (c, r)
        for c, r in (
            *PAIRS,
            ("Bz2", "A"),
            ("Bz2", "Bz"),
            ("Bzw", "A"),
            ("Bzw", "Bz"),
            ("Bzc", "A"),
            ("Bzc", "Bz"),
            ("Bzl", "A"),
            ("Bzl", "Bz"),
            ("C", "Bzl"),
            ("Bzl2", "A"),
            ("Bzl2", "Bzl"),
            ("C", "Bzl2"),
        )
        if c in arms and r in arms
    )
    params = params_for(base, out / "C")
    # the full-box corpus: same test split, same train sample for every model
    table = evaluate_arms(
        params, out / "C" / "corpus", {arm: out / arm / "model" for arm in arms}, pairs, args.n_boot
    )
    table["box_quality"] = arm_box_quality(out, arms, params)
    log["evaluation"] = table
    (out / "evaluation.json").write_text(json.dumps(table, indent=1, default=str))
    lap("evaluate")
    arm_names = {arm: ARM_NAMES[arm] for arm in arms}
    settings = {k: v for k, v in vars(args).items() if k not in ("out", "params", "results")}
    split = {
        f"{name}_images": len(read_manifest(out / "C" / "corpus", name))
        for name in ("train", params.evaluate.split)
    }
    record.write({"settings": settings, "split": split, "arms": arm_names, **table}, args.results)


def arm_box_quality(out: Path, arms, params) -> dict:
    """Box quality of each annotated arm against its hidden truth, recomputed from the arm's corpus
    (so arms annotated by older code get the same measures, cell pointing included)."""
    from regionmed.annotation.annotate import HIDDEN_FILE
    from regionmed.annotation.quality import box_quality
    from regionmed.corpus.schema import read_manifest

    grid = params.model.vision.image_size // params.model.vision.patch_size
    quality = {}
    for arm in arms:
        corpus = out / arm / "corpus"
        hidden_file = corpus / HIDDEN_FILE
        if not hidden_file.is_file() or not hidden_file.stat().st_size:
            continue
        hidden = {}
        for line in hidden_file.read_text().splitlines():
            row = json.loads(line)
            hidden[row["image_id"]] = row["regions"]
        df = read_manifest(corpus, "train")
        quality[arm] = box_quality(
            dict(zip(df["image_id"], df["regions"], strict=True)), hidden, params.seed, grid=grid
        )
    return quality


def evaluate_arms(
    params, corpus: Path, models: dict[str, Path], pairs, n_boot: int, metrics: tuple[str, ...] = METRICS
) -> dict:
    """Each model evaluated once on ``corpus``'s test split (evaluation.suite); for each (candidate,
    reference) pair the paired bootstrap difference from the evaluation's own summarise()."""
    from regionmed.corpus.schema import read_manifest
    from regionmed.evaluation.inference import Encoder, load_pixels
    from regionmed.evaluation.suite import evaluate_model
    from regionmed.evaluation.summary import summarise
    from regionmed.model.io import load_model

    e = params.evaluate
    test, train_df = read_manifest(corpus, e.split), read_manifest(corpus, "train")
    train_df = train_df.sample(n=min(e.train_sample, len(train_df)), random_state=params.seed).reset_index(
        drop=True
    )
    channels = params.model.vision.channels
    pixels, train_pixels = load_pixels(corpus, test, channels), load_pixels(corpus, train_df, channels)
    results = {}
    for arm, folder in models.items():
        model, tokenizer = load_model(folder)
        results[arm] = evaluate_model(
            Encoder(model, tokenizer, e.batch_size),
            test,
            pixels,
            train_df,
            train_pixels,
            tuple(e.retrieval_ks),
            e.vqa_method,
            params.seed,
        )
    table: dict = {"values": {}}
    for cand, ref in pairs:
        s = summarise({"regionmed": results[cand], "baseline": results[ref]}, n_boot, e.alpha, params.seed)
        table[f"{cand}-{ref}"] = {m: s["difference"].get(m) for m in metrics}
        table["values"][cand] = {m: s["regionmed"].get(m) for m in metrics}
        table["values"][ref] = {m: s["baseline"].get(m) for m in metrics}
    return table


if __name__ == "__main__":
    main()
