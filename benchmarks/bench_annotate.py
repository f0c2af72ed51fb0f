"""Wall time of the annotate_regions stage on the default synthetic corpus (4,000 images).

Cases: every image boxed (the default: nothing to add), and boxes hidden on 90% of the train
images (everything to add), with the `prior` localizer and, given --self-model, the `self` one (with
params.yaml's self settings, once per --self-shifts value). With boxes hidden, the box quality
against the hidden truth (pointing, cell pointing, IoU > 0.3) is printed beside the time.

    nice -n 10 python benchmarks/bench_annotate.py --self-model .state/annotation_pays_default/A/model \
        --self-shifts 1 2

The figures go to ``--results`` (default benchmarks/results/annotate_stage.json).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import time
from pathlib import Path

from regionmed.env import configure_environment
from regionmed.publish.record import Record, results_option

configure_environment()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, default=Path(".state/bench_annotate"))
    ap.add_argument("--self-model", type=Path, default=None)
    ap.add_argument(
        "--self-shifts", type=int, nargs="+", default=[1], help="annotate.self_shifts values to time"
    )
    results_option(ap, "annotate_stage")
    args = ap.parse_args()
    record = Record("annotate_stage")

    import yaml

    from regionmed.annotation import stage as annotate_stage
    from regionmed.corpus.build import build_corpus
    from regionmed.params import Params, deep_merge

    base = yaml.safe_load(Path("params.yaml").read_text())
    source = args.out / "corpus"
    if not (source / "manifest.parquet").is_file():
        build_corpus(Params.model_validate(base), source, progress=False)
    cases = [("prior", 0.0, 1), ("prior", 0.9, 1)]
    if args.self_model:
        cases += [("self", hide, shifts) for shifts in args.self_shifts for hide in (0.0, 0.9)]
    rows = []
    for localizer, hide, shifts in cases:
        out = args.out / f"{localizer}_{hide}_{shifts}"
        params = Params.model_validate(
            deep_merge(
                base,
                {
                    "annotate": {
                        "localizer": localizer,
                        "hide_given_fraction": hide,
                        "out_dir": str(out / "corpus"),
                        "summary_file": str(out / "annotation.json"),
                        "preview_file": str(out / "preview.png"),
                        "self_model_dir": str(args.self_model),
                        "self_shifts": shifts,
                    }
                },
            )
        )
        start, cpu = time.perf_counter(), time.process_time()
        summary = annotate_stage.run(params, corpus_dir=source, log=lambda *_: None).summary
        rows.append(
            {
                "localizer": localizer,
                "hidden": hide,
                "seconds": round(time.perf_counter() - start, 1),
                "cpu_seconds": round(time.process_time() - cpu, 1),
                "images_considered": summary["images_considered"],
                "regions_kept": summary["regions_kept"][localizer]["total"],
                "self_shifts": shifts,
            }
        )
        if "box_quality" in summary:
            q = summary["box_quality"]["all"]
            rows[-1].update({m: q[m]["value"] for m in ("pointing", "cell_pointing", "iou>0.3")})
        print(json.dumps(rows[-1]), flush=True)
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
    ).stdout.strip()
    print(
        json.dumps(
            {
                "commit": commit,
                "machine": f"{platform.machine()}, {os.cpu_count()} cores",
                "load": os.getloadavg(),
                "rows": rows,
            }
        )
    )
    record.write({"rows": rows}, args.results)


if __name__ == "__main__":
    main()
