"""Wall time of the annotate_regions stage on the default synthetic corpus (4,000 images).

Cases: every image boxed (the default: nothing to add), and boxes hidden on 90% of the train
images (everything to add), with the `prior` localizer and, given --self-model, the `self` one.

    nice -n 10 python benchmarks/bench_annotate.py --self-model .state/annotation_pays/A/model
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

configure_environment()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, default=Path(".state/bench_annotate"))
    ap.add_argument("--self-model", type=Path, default=None)
    args = ap.parse_args()

    import yaml

    from regionmed.annotation.stage import run_annotation
    from regionmed.corpus.build import build_corpus
    from regionmed.params import Params, deep_merge

    base = yaml.safe_load(Path("params.yaml").read_text())
    source = args.out / "corpus"
    if not (source / "manifest.parquet").is_file():
        build_corpus(Params.model_validate(base), source, progress=False)
    cases = [("prior", 0.0), ("prior", 0.9)]
    if args.self_model:
        cases += [("self", 0.0), ("self", 0.9)]
    rows = []
    for localizer, hide in cases:
        out = args.out / f"{localizer}_{hide}"
        params = Params.model_validate(deep_merge(base, {"annotate": {
            "localizer": localizer, "hide_given_fraction": hide, "out_dir": str(out / "corpus"),
            "summary_file": str(out / "annotation.json"), "preview_file": str(out / "preview.png"),
            "self_model_dir": str(args.self_model)}}))
        start, cpu = time.perf_counter(), time.process_time()
        summary = run_annotation(params, corpus_dir=source, log=lambda *_: None)
        rows.append({"localizer": localizer, "hidden": hide, "seconds": round(time.perf_counter() - start, 1),
                     "cpu_seconds": round(time.process_time() - cpu, 1),
                     "images_considered": summary["images_considered"],
                     "regions_kept": summary["regions_kept"][localizer]["total"]})
        print(json.dumps(rows[-1]), flush=True)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False).stdout.strip()
    print(json.dumps({"commit": commit, "machine": f"{platform.machine()}, {os.cpu_count()} cores",
                      "load": os.getloadavg(), "rows": rows}))


if __name__ == "__main__":
    main()
