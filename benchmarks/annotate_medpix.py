"""The annotation engine on a real corpus without boxes: the MedPix 2.0 sample.

Builds the MedPix corpus (corpus.source: medpix), then runs annotate_regions with the `prior`
localizer (and `self` given --self-model): mentions per caption, negated share, what was drawn
(metrics JSON + preview PNG per localizer). Grounding has no truth here: no box quality is scored.

With --train, the MedPix evaluation before and after annotation: one global phase on the corpus
as built, then region + joint phases twice from it, on the corpus as built (no regions: the
region losses are idle) and on the prior-annotated one (train split annotated only), both
evaluated on the same test split (retrieval, zero-shot, VQA) with paired bootstrap differences.

    nice -n 10 python benchmarks/annotate_medpix.py --out .state/medpix_annotate [--train]
        [--global-steps 200 --region-steps 150 --joint-steps 450]

The figures go to ``--results`` (default benchmarks/results/annotate_medpix.json).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from regionmed.env import configure_environment
from regionmed.publish.record import Record, results_option

configure_environment()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, default=Path(".state/medpix_annotate"))
    ap.add_argument("--data", type=Path, default=Path("../shared/data/medpix2-sample"))
    ap.add_argument("--self-model", type=Path, default=None)
    ap.add_argument("--train", action="store_true", help="train and evaluate before/after (prior) annotation")
    ap.add_argument("--n-boot", type=int, default=1000)
    ap.add_argument(
        "--global-steps",
        type=int,
        default=None,
        help="with --train: phases.global.steps (default: params.yaml's)",
    )
    ap.add_argument("--region-steps", type=int, default=None)
    ap.add_argument("--joint-steps", type=int, default=None)
    results_option(ap, "annotate_medpix")
    args = ap.parse_args()
    record = Record("annotate_medpix")
    figures: dict = {"annotation": {}}
    if not args.data.is_dir():
        raise SystemExit(f"no MedPix sample at {args.data}")

    import yaml

    from regionmed.annotation import stage as annotate_stage
    from regionmed.corpus.build import build_corpus
    from regionmed.params import Params, deep_merge

    base = deep_merge(
        yaml.safe_load(Path("params.yaml").read_text()),
        {"corpus": {"source": "medpix", "importer": {"path": str(args.data)}}},
    )
    steps = {"global": args.global_steps, "region": args.region_steps, "joint": args.joint_steps}
    base = deep_merge(base, {"phases": {k: {"steps": v} for k, v in steps.items() if v is not None}})
    source = args.out / "corpus"
    if not (source / "manifest.parquet").is_file():
        build_corpus(Params.model_validate(base), source, progress=False)
    for localizer in ["prior", *(["self"] if args.self_model else [])]:
        out = args.out / localizer
        params = Params.model_validate(
            deep_merge(
                base,
                {
                    "annotate": {
                        "localizer": localizer,
                        "splits": ["train", "val", "test"],
                        "out_dir": str(out / "corpus"),
                        "summary_file": str(out / "annotation.json"),
                        "preview_file": str(out / "preview.png"),
                        "self_model_dir": str(args.self_model),
                    }
                },
            )
        )
        summary = annotate_stage.run(params, corpus_dir=source).summary
        shown = {
            k: summary[k]
            for k in (
                "localizer",
                "images_considered",
                "images_with_mentions",
                "images_annotated",
                "mentions",
                "mentions_per_image",
                "negated_share",
                "uncertain_share",
                "cases",
                "seconds_total",
            )
        }
        print(json.dumps(shown))
        print(json.dumps(summary["regions_kept"]))
        figures["annotation"][localizer] = {
            **shown,
            "regions_kept": summary["regions_kept"][localizer]["total"],
        }
    if args.train:
        figures.update(before_after(base, source, args.out, args.n_boot))
    record.write(figures, args.results)


METRICS = (
    "retrieval/i2t_R@5",
    "retrieval/t2i_R@5",
    "zeroshot/macro_auroc",
    "zeroshot/modality_accuracy",
    "vqa/accuracy",
)


def before_after(base: dict, source: Path, out: Path, n_boot: int) -> dict:
    """Train before/after prior annotation; the evaluation table and what the annotation added."""
    import torch
    from annotation_pays import evaluate_arms

    from regionmed.annotation import stage as annotate_stage
    from regionmed.model.tokenizer import train_wordpiece_tokenizer
    from regionmed.params import Params, deep_merge
    from regionmed.training.texts import corpus_texts
    from regionmed.training.train import train

    torch.set_num_threads(1)
    params = Params.model_validate(base)
    after = out / "train_prior"
    annotated = annotate_stage.run(
        Params.model_validate(
            deep_merge(
                base,
                {
                    "annotate": {
                        "localizer": "prior",
                        "out_dir": str(after / "corpus"),
                        "summary_file": str(after / "annotation.json"),
                        "preview_file": str(after / "preview.png"),
                    }
                },
            )
        ),
        corpus_dir=source,
    ).summary
    tokenizer = out / "tokenizer"
    if not tokenizer.is_dir():
        train_wordpiece_tokenizer(corpus_texts(source), params.model.text.vocab_size, tokenizer)
    state, models, log = out / "checkpoints", {}, {}
    log["global"] = train(params, "global", source, tokenizer, out / "global", None, state)
    for arm, corpus in (("as_built", source), ("prior", after / "corpus")):
        region = train(params, "region", corpus, tokenizer, out / arm / "region", out / "global", state)
        joint = train(params, "joint", corpus, tokenizer, out / arm / "model", out / arm / "region", state)
        log[arm] = {"region": region, "joint": joint}
        models[arm] = out / arm / "model"
    table = evaluate_arms(params, source, models, (("prior", "as_built"),), n_boot, METRICS)
    (out / "before_after.json").write_text(
        json.dumps({"training": log, "evaluation": table}, indent=1, default=str)
    )
    print(json.dumps(table, indent=1, default=str))
    kept = annotated["regions_kept"]["prior"]["total"]
    return {
        "train_split": {"images_annotated": annotated["images_annotated"], "regions": kept},
        "evaluation": table,
    }


if __name__ == "__main__":
    main()
