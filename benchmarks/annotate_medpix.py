"""The annotation engine on a real corpus without boxes: the MedPix 2.0 sample.

Builds the MedPix corpus (corpus.source: medpix), then runs annotate_regions with the `prior`
localizer (and `self` given --self-model): mentions per caption, negated share, what was drawn
(metrics JSON + preview PNG per localizer). Grounding has no truth here: no box quality is scored.

    nice -n 10 python benchmarks/annotate_medpix.py --out .state/medpix_annotate
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from regionmed.env import configure_environment

configure_environment()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, default=Path(".state/medpix_annotate"))
    ap.add_argument("--data", type=Path, default=Path("../shared/data/medpix2-sample"))
    ap.add_argument("--self-model", type=Path, default=None)
    args = ap.parse_args()
    if not args.data.is_dir():
        raise SystemExit(f"no MedPix sample at {args.data}")

    import yaml

    from regionmed.annotation.stage import run_annotation
    from regionmed.corpus.build import build_corpus
    from regionmed.params import Params, deep_merge

    base = deep_merge(yaml.safe_load(Path("params.yaml").read_text()),
                       {"corpus": {"source": "medpix", "importer": {"path": str(args.data)}}})
    source = args.out / "corpus"
    if not (source / "manifest.parquet").is_file():
        build_corpus(Params.model_validate(base), source, progress=False)
    for localizer in ["prior", *(["self"] if args.self_model else [])]:
        out = args.out / localizer
        params = Params.model_validate(deep_merge(base, {"annotate": {
            "localizer": localizer, "splits": ["train", "val", "test"], "out_dir": str(out / "corpus"),
            "summary_file": str(out / "annotation.json"), "preview_file": str(out / "preview.png"),
            "self_model_dir": str(args.self_model)}}))
        summary = run_annotation(params, corpus_dir=source)
        print(json.dumps({k: summary[k] for k in ("localizer", "images_considered", "images_with_mentions",
                                                   "images_annotated", "mentions", "mentions_per_image",
                                                   "negated_share", "uncertain_share", "cases", "seconds_total")}))
        print(json.dumps(summary["regions_kept"]))


if __name__ == "__main__":
    main()
