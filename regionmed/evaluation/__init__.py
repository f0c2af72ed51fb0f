"""Model-agnostic evaluation core: metrics on embeddings, heatmaps and boxes, the bootstrap, the gate.

Every function takes numpy arrays (or torch tensors, converted on the way in) and returns plain
Python / numpy values; nothing here loads a model. Heavy imports (scipy, scikit-learn,
matplotlib) happen inside the functions that need them.
"""

from regionmed.evaluation.bootstrap import CI, bootstrap_ci, paired_difference_ci
from regionmed.evaluation.gate import Comparison, GateDecision, decide, default_direction, flatten_metrics
from regionmed.evaluation.grounding import (
    box_iou,
    iou_hit_rates,
    laterality_accuracy,
    pointing_game,
    same_phrase_alternatives,
    text_prior_box,
    text_prior_pointing,
    train_box_means,
    uniform_chance_pointing,
)
from regionmed.evaluation.hardneg import hard_negative_discrimination, pad_negatives, swap_type
from regionmed.evaluation.retrieval import (
    bidirectional_retrieval,
    metrics_from_ranks,
    retrieval_metrics,
    retrieval_ranks,
)
from regionmed.evaluation.vqa import (
    answer_by_similarity,
    closed_answer_sets,
    flatten_qa,
    majority_answers,
    qa_features,
    qa_statements,
    train_answer_head,
    vqa_accuracy,
)
from regionmed.evaluation.zeroshot import (
    auroc,
    build_prompts,
    by_size_bucket,
    class_embeddings,
    label_matrix,
    load_prompts,
    modality_prompts,
    multilabel_metrics,
    negation_similarity,
    presence_absence_embeddings,
    presence_vs_absence,
    size_matrix,
    zero_shot_scores,
)

__all__ = [
    "CI",
    "Comparison",
    "GateDecision",
    "answer_by_similarity",
    "auroc",
    "bidirectional_retrieval",
    "bootstrap_ci",
    "box_iou",
    "build_prompts",
    "by_size_bucket",
    "class_embeddings",
    "closed_answer_sets",
    "decide",
    "default_direction",
    "flatten_metrics",
    "flatten_qa",
    "hard_negative_discrimination",
    "iou_hit_rates",
    "label_matrix",
    "laterality_accuracy",
    "load_prompts",
    "majority_answers",
    "metrics_from_ranks",
    "modality_prompts",
    "multilabel_metrics",
    "negation_similarity",
    "pad_negatives",
    "paired_difference_ci",
    "pointing_game",
    "presence_absence_embeddings",
    "presence_vs_absence",
    "qa_features",
    "qa_statements",
    "retrieval_metrics",
    "retrieval_ranks",
    "same_phrase_alternatives",
    "size_matrix",
    "swap_type",
    "text_prior_box",
    "text_prior_pointing",
    "train_answer_head",
    "train_box_means",
    "uniform_chance_pointing",
    "vqa_accuracy",
    "zero_shot_scores",
]
