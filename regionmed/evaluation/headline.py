"""Which evaluation metrics are shown where: one list each, read by the report, the CLI and the flows.

Names are keys of ``metrics/eval.json`` (per model), as the gate reads them.
"""

# The report's table (reports/eval.md), in this order; every one has a per-image interval.
HEADLINE = (
    "retrieval/i2t_R@1",
    "retrieval/i2t_R@5",
    "retrieval/t2i_R@5",
    "zeroshot/modality_accuracy",
    "zeroshot/macro_auroc",
    "zeroshot/presence_accuracy",
    "zeroshot/presence_accuracy_subtle",
    "zeroshot/presence_accuracy_large",
    "grounding/full/lenient",
    "grounding/full/strict",
    "grounding/full/lenient_subtle",
    "grounding/locfree/lenient",
    "grounding/locfree/strict",
    "grounding/full/iou>0.3",
    "grounding/full/iou>0.5",
    "grounding/laterality",
    # anatomy phrases with given boxes ("the right lung"), apart from findings (blank where none)
    "grounding/anatomy/lenient",
    "grounding/anatomy/strict",
    "grounding/anatomy/iou>0.5",
    "grounding/anatomy/laterality",
    "hardneg/accuracy",
    "hardneg/accuracy_subtle",
    "vqa/accuracy",
)
# The short summary: printed by `regionmed evaluate` and shown in the retrain flow's artifact
# (beside the gate's floors and must-beat-baseline metrics).
KEY_METRICS = (
    "retrieval/i2t_R@5",
    "grounding/full/lenient",
    "grounding/locfree/lenient",
    "hardneg/accuracy",
    "zeroshot/modality_accuracy",
    "vqa/accuracy",
)
