"""Every metric of one model on one split, as per-item values grouped by image.

Per-item values (1/0 hits, ranks, ...) let the stage bootstrap confidence intervals over images
and pair two models (or a model and a no-image prior) on exactly the same items. A value of NaN
means "not scored for this item" (e.g. the subtle-only view of a large finding).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from regionmed.corpus.phrases import has_laterality, strip_location, swap_laterality
from regionmed.corpus.schema import NO_FINDING, SIZE_BUCKETS
from regionmed.evaluation.anatomy_grounding import anatomy_grounding, given_anatomy_regions
from regionmed.evaluation.grounding import (
    box_iou,
    laterality_accuracy,
    pointing_game,
    same_phrase_alternatives,
    text_prior_pointing,
    uniform_chance_pointing,
)
from regionmed.evaluation.hardneg import hard_negative_discrimination, pad_negatives
from regionmed.evaluation.inference import Encoder
from regionmed.evaluation.retrieval import retrieval_ranks
from regionmed.evaluation.vqa import flatten_qa, qa_features, train_answer_head
from regionmed.evaluation.zeroshot import (
    by_size_bucket,
    label_matrix,
    macro_auroc_of,
    multilabel_metrics,
    presence_vs_absence,
    size_matrix,
    zero_shot_scores,
)
from regionmed.prompts.templates import (
    class_embeddings,
    embed_prompt_sets,
    is_axis_label,
    label_axes,
    modality_prompts,
    presence_absence_embeddings,
)


@dataclass
class ItemValues:
    values: np.ndarray  # float per item, NaN = not scored; or rows per item for a statistic
    groups: np.ndarray  # image id per item (the bootstrap resamples images)
    statistic: Callable[[np.ndarray], float] | None = None  # of the rows (None: the mean)


@dataclass
class ModelEvaluation:
    items: dict[str, ItemValues] = field(default_factory=dict)
    point: dict[str, float] = field(default_factory=dict)  # metrics without per-item values (chance levels)
    details: dict[str, Any] = field(default_factory=dict)  # per-class tables, curves
    grounding_examples: dict[str, np.ndarray] = field(default_factory=dict)

    def add(self, name: str, values, groups, statistic: Callable[[np.ndarray], float] | None = None) -> None:
        """Per-item values (their mean is the metric), or per-item rows and the ``statistic`` of
        them (e.g. a macro AUROC); either way the bootstrap resamples the items' images."""
        self.items[name] = ItemValues(np.asarray(values, dtype=np.float64), np.asarray(groups), statistic)


def finding_regions(df: pd.DataFrame) -> pd.DataFrame:
    """One row per finding region: image row index, image id, box, phrase, negatives, label, size."""
    rows = [
        {
            "image_index": i,
            "image_id": row.image_id,
            "bbox": r["bbox"],
            "phrase": r["phrase"],
            "hard_negatives": list(r["hard_negatives"]),
            "label": r["label"],
            "size": r["size"] or "unknown",
        }
        for i, row in enumerate(df.itertuples())
        for r in row.regions
        if r["kind"] == "finding"
    ]
    return pd.DataFrame(
        rows, columns=["image_index", "image_id", "bbox", "phrase", "hard_negatives", "label", "size"]
    )


def evaluate_model(
    enc: Encoder,
    test: pd.DataFrame,
    pixels,
    train: pd.DataFrame,
    train_pixels=None,
    ks=(1, 5, 10),
    vqa_method: str = "head",
    seed: int = 0,
    *,
    image_emb: np.ndarray | None = None,
    train_emb: np.ndarray | None = None,
) -> ModelEvaluation:
    """``image_emb``/``train_emb``: the split's image embeddings when computed already (the stage's, on
    the cluster), else ``enc.images`` of ``pixels``/``train_pixels``."""
    ev = ModelEvaluation()
    image_emb = enc.images(pixels) if image_emb is None else image_emb
    ids = test["image_id"].to_numpy()
    _retrieval(ev, enc, test, image_emb, ids, ks)
    score_zero_shot(ev, enc, test, image_emb, ids)
    regions = finding_regions(test)
    if len(regions):
        _grounding(ev, enc, regions, pixels, train)
        _hard_negatives(ev, enc, regions, pixels)
    for name, (values, groups) in anatomy_grounding(enc, given_anatomy_regions(test), pixels, train).items():
        ev.add(name, values, groups)
    train_emb = enc.images(train_pixels) if train_emb is None else train_emb
    _vqa(ev, enc, test, image_emb, train, train_emb, vqa_method, seed)
    return ev


def _retrieval(ev, enc, test, image_emb, ids, ks) -> None:
    report_emb = enc.texts(list(test["report"]))
    groups = list(test["report"])  # identical reports are all correct answers
    for direction, q, g in (("i2t", image_emb, report_emb), ("t2i", report_emb, image_emb)):
        ranks = retrieval_ranks(q, g, query_groups=groups, gallery_groups=groups)
        ev.add(f"retrieval/{direction}_median_rank", ranks, ids)
        for k in ks:
            ev.add(f"retrieval/{direction}_R@{k}", (ranks <= k).astype(float), ids)
    ev.details["retrieval_chance_R@5"] = min(1.0, 5 / len(test))


def score_zero_shot(ev, enc, test, image_emb, ids) -> None:
    """Adds the zero-shot metrics of ``image_emb`` (modality, finding AUROC overall and by size, one
    accuracy per ``axis:class`` axis, presence vs absence) to ``ev``; ``enc`` embeds the prompts."""
    rows = test.to_dict("records")
    scale = enc.logit_scale
    modalities = sorted(test["modality"].unique())
    mod_emb = embed_prompt_sets(enc.texts, modality_prompts(modalities))
    predicted = np.asarray(modalities)[zero_shot_scores(image_emb, mod_emb, scale).argmax(1)]
    ev.add("zeroshot/modality_accuracy", predicted == test["modality"].to_numpy(), ids)

    classes = sorted({c for labels in test["labels"] for c in labels})
    findings = [c for c in classes if c != NO_FINDING and not is_axis_label(c)]
    targets = label_matrix(rows, classes)
    scores = zero_shot_scores(image_emb, class_embeddings(enc.texts, classes), scale)
    # axis:class labels (MedPix: modality, plane, body part): single-label accuracy per axis, over
    # the images that carry a label on that axis (NaN for the others)
    for axis, axis_classes in label_axes(classes).items():
        cols = [classes.index(c) for c in axis_classes]
        truth = targets[:, cols]
        hit = (truth[np.arange(len(rows)), scores[:, cols].argmax(1)] > 0).astype(float)
        ev.add(f"zeroshot/axis_{axis}_accuracy", np.where(truth.any(1), hit, np.nan), ids)
        ev.point[f"zeroshot/axis_{axis}_chance"] = 1 / len(axis_classes)
    overall = multilabel_metrics(scores, targets, classes)
    # one row per image: its class scores, then its 0/1 targets; the interval resamples images
    ev.add("zeroshot/macro_auroc", np.c_[scores, targets], ids, statistic=macro_auroc_of)
    ev.details["zeroshot"] = overall
    ev.details["zeroshot_scores"] = (scores, targets, classes)
    sizes = by_size_bucket(scores, targets, size_matrix(rows, classes), classes)
    for bucket, m in sizes.items():
        ev.point[f"zeroshot/macro_auroc_{bucket}"] = m["macro_auroc"]
    ev.details["zeroshot_by_size"] = sizes
    if not findings:  # e.g. MedPix: axis labels only, nothing to be present or absent
        return
    # presence vs absence ("there is X" vs "no X") for each finding of the image's own modality:
    # a per-item, negation-aware zero-shot accuracy that can be broken down by finding size
    present, absent = presence_absence_embeddings(enc.texts, findings)
    prob = presence_vs_absence(image_emb, present, absent, scale)
    size_of = size_matrix(rows, findings)
    modality_findings = {
        m: {c for labels, mm in zip(test["labels"], test["modality"], strict=True) if mm == m for c in labels}
        for m in modalities
    }
    values, groups, buckets = [], [], []
    for i, row in enumerate(rows):
        for j, c in enumerate(findings):
            if c not in modality_findings[row["modality"]]:
                continue
            truth = c in row["labels"]
            values.append(float((prob[i, j] > 0.5) == truth))
            groups.append(row["image_id"])
            buckets.append(_largest(size_of[i, j]) if truth else "absent")
    values, buckets = np.asarray(values), np.asarray(buckets)
    ev.add("zeroshot/presence_accuracy", values, groups)
    for bucket in (*SIZE_BUCKETS, "absent"):
        ev.add(f"zeroshot/presence_accuracy_{bucket}", np.where(buckets == bucket, values, np.nan), groups)


def _largest(sizes: set) -> str:
    for bucket in reversed(SIZE_BUCKETS):
        if bucket in sizes:
            return bucket
    return "unknown"


def _grounding(ev, enc, regions, pixels, train) -> None:
    index = regions["image_index"].to_numpy()
    boxes = np.asarray(regions["bbox"].tolist(), dtype=np.float64)
    groups = regions["image_id"].to_numpy()
    sizes = regions["size"].to_numpy()
    train_regions = [r for rs in train["regions"] for r in rs]
    for variant, phrases in (
        ("full", list(regions["phrase"])),
        ("locfree", [strip_location(p) for p in regions["phrase"]]),
    ):
        heat, pred = enc.ground(pixels, index, phrases)
        grid = heat.shape[-2:]
        # "a small nodule" in an image with two small nodules names both: either one is a hit
        alternatives = same_phrase_alternatives(index, phrases)
        hits = pointing_game(heat, boxes, alternatives)
        # empirical: the mean train box of the same location words (the stronger no-image prior)
        prior = text_prior_pointing(
            phrases,
            boxes,
            train_regions,
            grid,
            labels=list(regions["label"]),
            mode="empirical",
            alternatives=alternatives,
        )
        chance = uniform_chance_pointing(boxes, grid, alternatives)
        for rule in ("lenient", "strict"):
            model_hits = hits[rule].astype(float)
            ev.add(f"grounding/{variant}/{rule}", model_hits, groups)
            ev.add(
                f"grounding/{variant}/{rule}_subtle", np.where(sizes == "subtle", model_hits, np.nan), groups
            )
            ev.add(f"prior/{variant}/{rule}", prior[rule].astype(float), groups)
            ev.add(f"chance/{variant}/{rule}", chance[rule].astype(float), groups)
        if variant == "full":
            iou = box_iou(pred, boxes)
            ev.add("grounding/full/iou>0.3", (iou > 0.3).astype(float), groups)
            ev.add("grounding/full/iou>0.5", (iou > 0.5).astype(float), groups)
            ev.grounding_examples = {
                "heatmaps": heat,
                "pred_boxes": pred,
                "true_boxes": boxes,
                "image_index": index,
                "phrases": np.asarray(phrases, dtype=object),
            }
    sided = np.array([has_laterality(p) for p in regions["phrase"]])
    if sided.any():
        swapped = [swap_laterality(p) for p in regions["phrase"][sided]]
        heat_true = ev.grounding_examples["heatmaps"][sided]
        heat_swap, _ = enc.ground(pixels, index[sided], swapped)
        lat = laterality_accuracy(heat_true, heat_swap, boxes[sided])
        ev.add("grounding/laterality", np.asarray(lat["swapped_opposite"], dtype=float), groups[sided])


def _hard_negatives(ev, enc, regions, pixels) -> None:
    index = regions["image_index"].to_numpy()
    boxes = np.asarray(regions["bbox"].tolist(), dtype=np.float32)
    region_emb = enc.regions(pixels, index, boxes)
    phrase_emb = enc.texts(list(regions["phrase"]))
    padded, mask = pad_negatives(list(regions["hard_negatives"]))
    flat = [n for row in padded for n in row]
    neg_emb = (
        enc.texts(flat).reshape(len(padded), -1, phrase_emb.shape[1])
        if flat
        else np.zeros((len(padded), 0, 1))
    )
    result = hard_negative_discrimination(region_emb, phrase_emb, neg_emb, mask)
    success, groups, sizes = result["per_region"], regions["image_id"].to_numpy(), regions["size"].to_numpy()
    ev.add("hardneg/accuracy", success, groups)
    ev.add("hardneg/accuracy_subtle", np.where(sizes == "subtle", success, np.nan), groups)


def _vqa(ev, enc, test, test_emb, train, train_emb, method: str, seed: int) -> None:
    test_qa, train_qa = flatten_qa(test.to_dict("records")), flatten_qa(train.to_dict("records"))
    if not test_qa or not train_qa:
        return
    row_of = {iid: i for i, iid in enumerate(test["image_id"])}
    train_row = {iid: i for i, iid in enumerate(train["image_id"])}
    questions = sorted({q["question"] for q in test_qa + train_qa})
    q_emb = dict(zip(questions, enc.texts(questions), strict=True))
    correct, groups, types = [], [], []
    for qtype in sorted({q["type"] for q in test_qa}):
        tr = [q for q in train_qa if q["type"] == qtype]
        te = [q for q in test_qa if q["type"] == qtype]
        if not tr:
            continue
        x_te = qa_features(
            test_emb[[row_of[q["image_id"]] for q in te]], np.stack([q_emb[q["question"]] for q in te])
        )
        if method == "head":
            x_tr = qa_features(
                train_emb[[train_row[q["image_id"]] for q in tr]],
                np.stack([q_emb[q["question"]] for q in tr]),
            )
            predicted = train_answer_head(x_tr, [q["answer"] for q in tr], seed=seed).predict(x_te)
        else:  # similarity: the answer whose "question answer" statement is closest to the image
            answers = sorted({q["answer"] for q in tr})
            predicted = []
            for q in te:
                statements = enc.texts([f"{q['question']} {a}" for a in answers])
                predicted.append(answers[int((statements @ test_emb[row_of[q["image_id"]]]).argmax())])
        for q, p in zip(te, predicted, strict=True):
            correct.append(float(p == q["answer"]))
            groups.append(q["image_id"])
            types.append(qtype)
    correct, types = np.asarray(correct), np.asarray(types)
    ev.add("vqa/accuracy", correct, groups)
    for qtype in sorted(set(types)):
        ev.add(f"vqa/accuracy_{qtype}", np.where(types == qtype, correct, np.nan), groups)
