"""One self-training round of the region annotation engine (docs/annotation.md).

After the pipeline has trained a model (any ``annotate.localizer``; the default ``auto`` has already
run one round inside ``dvc repro``, the train_annotator stage, where the corpus needed one), the round
copies that model (``evaluate.candidate``) to ``annotate.self_model_dir``, sets
``annotate.localizer: self`` in the params file and reruns ``train_annotator`` (the localizer is
one of its params: it now records that ``self`` trains no annotator), then forces ``annotate_regions``
(its model is outside DVC's outs, so DVC cannot see it change) and reruns every later stage: train on
the boxed part, annotate the rest, retrain. After the round ``dvc repro`` finds nothing to do.
The retrain flow runs it with ``self_training_round=True``; by hand:

    python -m flows.self_training --root . --params-file params.yaml
"""

from __future__ import annotations

import argparse
import re
import shutil
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from flows._dvc import pipeline_stages, run_stage

_LOCALIZER = re.compile(r"^(annotate:.*\n(?:[ \t].*\n|\n)*?[ \t]+localizer:[ \t]*)([A-Za-z_]+)", re.MULTILINE)


def set_localizer(params_text: str, localizer: str) -> str:
    """``params.yaml`` text with ``annotate.localizer`` set (comments and layout kept)."""
    new, n = _LOCALIZER.subn(lambda m: m.group(1) + localizer, params_text, count=1)
    if n != 1:
        raise ValueError("params file has no annotate.localizer line to set")
    return new


@task(cache_policy=NO_CACHE, persist_result=False)
def hand_over_annotator(root: str, params_file: str) -> str:
    """Copy the trained model to ``annotate.self_model_dir`` and switch the localizer to ``self``."""
    from regionmed.params import load_params

    root_path = Path(root)
    params = load_params(root_path / params_file)
    source, target = root_path / params.evaluate.candidate, root_path / params.annotate.self_model_dir
    if not (source / "config.json").is_file():
        raise FileNotFoundError(f"no trained model at {source} (evaluate.candidate): run the pipeline first")
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(source, target)
    path = root_path / params_file
    path.write_text(set_localizer(path.read_text(), "self"))
    get_run_logger().info("annotator: %s -> %s; annotate.localizer: self", source, target)
    return str(target)


@task(cache_policy=NO_CACHE, persist_result=False)
def rerun_stage(root: str, stage: str, params_file: str, force: bool) -> dict[str, Any]:
    return run_stage(root, stage, get_run_logger().info, params_file=params_file, force=force).to_dict()


@flow(name="self-training-round", log_prints=True)
def self_training_round(root: str = ".", params_file: str = "params.yaml") -> list[dict[str, Any]]:
    """Annotate the unboxed images with the model trained on the boxed ones, then retrain."""
    from regionmed.params import load_params

    root_path = Path(root).resolve()
    hand_over_annotator(str(root_path), params_file)
    exclude = load_params(root_path / params_file).flows.retrain.exclude_stages
    stages = pipeline_stages(root_path, exclude)
    # from the first stage that reads annotate.localizer: one left behind would rerun at the next repro
    first = "train_annotator" if "train_annotator" in stages else "annotate_regions"
    later = stages[stages.index(first) :]
    return [
        rerun_stage.with_options(name=s)(str(root_path), s, params_file, s == "annotate_regions")
        for s in later
    ]


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--root", default=".")
    ap.add_argument("--params-file", default="params.yaml")
    args = ap.parse_args()
    self_training_round(args.root, args.params_file)
