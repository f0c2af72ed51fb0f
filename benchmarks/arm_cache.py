"""What the arm benchmarks share (grounding_boxes.py, seed_variance.py): params overrides given on the
command line, one default corpus + tokenizer built once into the cache folder, and a model's per-item
evaluation cached as ``.npz``. Not a benchmark itself: the scripts import it from their own folder.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def parse_overrides(settings: list[str]) -> dict:
    """``key.path=value`` strings (YAML values) into a nested override dict."""
    import yaml

    override: dict = {}
    for setting in settings:
        key, _, value = setting.partition("=")
        node = override
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = yaml.safe_load(value)
    return override


def prepare_corpus(raw: dict, out: Path):
    """The default corpus built and annotated as ``dvc repro`` does, and its tokenizer, into ``out``
    (kept when there): ``(params with the annotation files in out, corpus folder, tokenizer folder)``."""
    from regionmed.annotation import stage as annotate_stage
    from regionmed.corpus.build import build_corpus
    from regionmed.model.tokenizer import train_wordpiece_tokenizer
    from regionmed.params import Params, deep_merge
    from regionmed.training.texts import corpus_texts

    files = {
        "out_dir": str(out / "corpus"),
        "summary_file": str(out / "annotation.json"),
        "preview_file": str(out / "annotation.png"),
    }
    params = Params.model_validate(deep_merge(raw, {"annotate": files}))
    source, corpus, tokenizer = out / "source", out / "corpus", out / "tokenizer"
    if not (source / "manifest.parquet").is_file():
        build_corpus(params, source, progress=False)
    if not (corpus / "manifest.parquet").is_file():
        annotate_stage.run(params, corpus_dir=source)
    if not tokenizer.is_dir():
        train_wordpiece_tokenizer(corpus_texts(corpus), params.model.text.vocab_size, tokenizer)
    return params, corpus, tokenizer


def evaluate_cached(path: Path, model_dir: Path, corpus: Path, params, metrics, extra=None) -> dict:
    """The model scored by the evaluation suite on ``params.evaluate.split``; per-item values and image
    ids of each of ``metrics`` as ``{metric: (values, groups)}``, cached at ``path`` (arrays only, no
    pickle). ``extra(evaluation, test)`` may add arrays of its own, returned under their names."""
    if not path.is_file():
        from regionmed.corpus.schema import read_manifest
        from regionmed.evaluation.inference import Encoder, load_pixels
        from regionmed.evaluation.suite import evaluate_model
        from regionmed.model.io import load_model

        e = params.evaluate
        test, train = read_manifest(corpus, e.split), read_manifest(corpus, "train")
        train = train.sample(n=min(len(train), e.train_sample), random_state=params.seed).reset_index(
            drop=True
        )
        channels = params.model.vision.channels
        model, tokenizer = load_model(model_dir)
        ev = evaluate_model(
            Encoder(model, tokenizer, e.batch_size),
            test,
            load_pixels(corpus, test, channels),
            train,
            load_pixels(corpus, train, channels),
            tuple(e.retrieval_ks),
            e.vqa_method,
            params.seed,
        )
        arrays = {}
        for metric in metrics:
            if metric in ev.items:
                arrays[f"{metric}|values"] = ev.items[metric].values
                arrays[f"{metric}|groups"] = ev.items[metric].groups.astype(str)
        if extra is not None:
            arrays.update(extra(ev, test))
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(path, **arrays)
    with np.load(path) as z:
        items = {m: (z[f"{m}|values"], z[f"{m}|groups"]) for m in metrics if f"{m}|values" in z.files}
        return {"items": items, **{k: z[k] for k in z.files if "|" not in k}}
