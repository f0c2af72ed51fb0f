"""Closed-set VQA as classification on frozen embeddings.

Two ways to answer, chosen by the caller (e.g. from params):

* by similarity (zero-shot): each candidate answer of the question's type becomes a statement
  ``"{question} {answer}"`` (templates in ``prompts/zeroshot.yaml``), and the statement whose
  text embedding is closest to the image embedding wins;
* by a trained head: a multinomial logistic regression (scikit-learn) on frozen features of the
  training split (see :func:`qa_features` for what the features are).

Accuracy is reported per question type (presence / location / modality / count) and overall,
with a majority-answer baseline (train's most common answer per type) for reference.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from regionmed.arrays import as_numpy, l2_normalize

QA_TYPES = ("presence", "location", "modality", "count")  # mirrors regionmed.corpus.schema.QA_TYPES


def _qa(item: Any) -> tuple[str, str, str]:
    if isinstance(item, Mapping):
        return item["question"], str(item["answer"]), item["type"]
    return item.question, str(item.answer), item.type


def flatten_qa(rows: Iterable[Any]) -> list[dict[str, str]]:
    """Manifest rows (with a ``qa`` list and ``image_id``) → one dict per question (``image_id``,
    ``question``, ``answer``, ``type``), so per-image grouping survives for the bootstrap."""
    out = []
    for row in rows:
        for item in row["qa"]:
            q, a, t = _qa(item)
            out.append({"image_id": row["image_id"], "question": q, "answer": a, "type": t})
    return out


def _sort_key(answer: str) -> tuple[int, float, str]:
    try:
        return (0, float(answer), answer)
    except ValueError:
        return (1, 0.0, answer)


def closed_answer_sets(qa_rows: Iterable[Any]) -> dict[str, list[str]]:
    """Question type → sorted candidate answers seen in ``qa_rows`` (numbers in numeric order).

    Build it from the training split (plus test, if the evaluation should not penalise answers
    train never saw; the caller decides)."""
    sets: dict[str, set[str]] = {}
    for item in qa_rows:
        _, a, t = _qa(item)
        sets.setdefault(t, set()).add(a)
    return {t: sorted(v, key=_sort_key) for t, v in sorted(sets.items())}


def qa_statements(question: str, answers: Sequence[str], template: str = "{question} {answer}") -> list[str]:
    """One statement per candidate answer, e.g. ``"Is there a nodule? yes"``."""
    return [" ".join(template.format(question=question, answer=a).split()) for a in answers]


def answer_by_similarity(image_emb: Any, question_answer_texts_emb: Any, mask: Any = None) -> np.ndarray:
    """Index of the best candidate statement per question, ``[N]``.

    ``image_emb`` ``[N, D]`` (the image of each question); ``question_answer_texts_emb``
    ``[N, A, D]`` (the statements of that question's candidate answers) or ``[A, D]`` shared by
    all; ``mask`` ``[N, A]`` marks real candidates when questions have different numbers of them.
    Ties go to the first candidate.
    """
    img = l2_normalize(as_numpy(image_emb, np.float32))
    st = l2_normalize(as_numpy(question_answer_texts_emb, np.float32))
    scores = img @ st.T if st.ndim == 2 else np.einsum("nd,nad->na", img, st)
    if mask is not None:
        scores = np.where(as_numpy(mask).astype(bool), scores, -np.inf)
    return scores.argmax(axis=1)


def qa_features(image_emb: Any, question_emb: Any = None, mode: str = "concat") -> np.ndarray:
    """Features for the answer head: ``"image"`` (image embedding only; enough for modality and
    count questions), ``"concat"`` (image ‖ question), or ``"product"`` (image * question ‖ image)."""
    img = l2_normalize(as_numpy(image_emb, np.float32))
    if mode == "image" or question_emb is None:
        return img
    q = l2_normalize(as_numpy(question_emb, np.float32))
    if mode == "concat":
        return np.concatenate([img, q], axis=1)
    if mode == "product":
        return np.concatenate([img * q, img], axis=1)
    raise ValueError(f"unknown feature mode {mode!r}")


@dataclass
class AnswerHead:
    """A fitted answer classifier: ``predict(features)`` → answers (strings)."""

    model: Any  # sklearn estimator, or None for a constant answer
    constant: str | None = None

    def predict(self, features: Any) -> np.ndarray:
        x = as_numpy(features, np.float32)
        if self.model is None:
            return np.full(len(x), self.constant, dtype=object)
        return self.model.predict(x).astype(object)


def train_answer_head(
    train_emb: Any,
    train_answers: Sequence[str],
    C: float = 1.0,
    max_iter: int = 1000,
    class_weight: str | None = None,
    seed: int = 0,
) -> AnswerHead:
    """Fit a multinomial logistic regression on frozen features (one head for all question types,
    or call once per type). A single distinct answer gives a constant head."""
    y = np.asarray([str(a) for a in train_answers], dtype=object)
    if len(set(y.tolist())) < 2:
        return AnswerHead(None, str(y[0]) if len(y) else "")
    from sklearn.linear_model import LogisticRegression

    clf = LogisticRegression(C=C, max_iter=max_iter, class_weight=class_weight, random_state=seed)
    clf.fit(as_numpy(train_emb, np.float32), y)
    return AnswerHead(clf)


def vqa_accuracy(predicted: Sequence[str], gold: Sequence[str], types: Sequence[str]) -> dict[str, float]:
    """``accuracy`` overall and ``accuracy/<type>`` plus ``n/<type>`` per question type."""
    p = np.asarray([str(x) for x in predicted], dtype=object)
    g = np.asarray([str(x) for x in gold], dtype=object)
    t = np.asarray(types, dtype=object)
    correct = p == g
    out = {"accuracy": float(correct.mean()) if correct.size else float("nan"), "n": int(correct.size)}
    for name in sorted(set(t.tolist())):
        sel = t == name
        out[f"accuracy/{name}"] = float(correct[sel].mean())
        out[f"n/{name}"] = int(sel.sum())
    return out


def majority_answers(train_qa: Iterable[Any]) -> dict[str, str]:
    """Type → train's most common answer (ties: the first in sorted order): the no-image baseline."""
    counts: dict[str, Counter] = {}
    for item in train_qa:
        _, a, t = _qa(item)
        counts.setdefault(t, Counter())[a] += 1
    return {t: min(c.items(), key=lambda kv: (-kv[1], kv[0]))[0] for t, c in counts.items()}
