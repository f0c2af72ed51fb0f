"""Blocks of docs/experiments.md on ground()'s boxes: arms of benchmarks/grounding_boxes.py side by side.

Sources: ``benchmarks/results/grounding_boxes.json`` (the head's first forms) and
``grounding_boxes_aligned.json`` (the head with its map cells aligned): per arm (params overrides of
the default, one shared global phase) each metric with its bootstrap interval over test images, the
paired difference against the first arm, box IoU by finding size, and the seconds each trained phase
took.
"""

from __future__ import annotations

from regionmed.publish.derive import flat_settings, fmt
from regionmed.publish.render import Block

BOXES = "benchmarks/results/grounding_boxes.json"
BOXES_ALIGNED = "benchmarks/results/grounding_boxes_aligned.json"


def _settings(override: dict) -> str:
    if not override:
        return "the settings before the box head"

    def value(v) -> str:
        return "{" + ", ".join(f"{k}: {x}" for k, x in v.items()) + "}" if isinstance(v, dict) else str(v)

    return "; ".join(f"`{k}: {value(v)}`" for k, v in flat_settings(override, whole=("box_head",)).items())


def _derive(data: dict) -> dict:
    f = data["figures"]
    arms, ref = list(f["arms"]), f["reference"]
    rows = []
    for metric in f["values"][ref]:
        cells = []
        for arm in arms:
            v = f["values"][arm].get(metric)
            cell = "–" if v is None else f"{v['value']:.3f}"
            d = f["vs_reference"].get(arm, {}).get(metric)
            if d is not None:
                cell += f" ({fmt(d, '+ci')})"
            cells.append(cell)
        rows.append({"metric": metric, "cells": " | ".join(cells)})
    for bucket in ("subtle", "small", "large"):
        cells = [f"{f['iou_by_size'][arm][bucket]['iou>0.5']:.3f}" for arm in arms]
        n = f["iou_by_size"][ref][bucket]["n"]
        rows.append({"metric": f"IoU > 0.5, {bucket} findings (n = {n})", "cells": " | ".join(cells)})
    for phase in ("region", "joint"):
        cells = [f"{f['seconds'][arm][phase]:.1f}" for arm in arms]
        rows.append({"metric": f"{phase} phase, s", "cells": " | ".join(cells)})
    return {
        "header": " | ".join(arms),
        "align": "|".join("---" for _ in arms),
        "rows": rows,
        "arm_list": "; ".join(f"**{arm}**: {_settings(f['arms'][arm])}" for arm in arms),
        "trained": ", ".join(sorted({t["commit"] for t in f["trained_at"].values()})) or "–",
    }


def _block(source: str) -> Block:
    return Block(
        (source,),
        "{run} Models trained at {trained}.\n\nArms: {arm_list}.\n\n"
        "| metric ({figures/n_findings} test finding phrases) | {header} |\n|---|{align}|\n{ROWS}\n\n"
        "95% bootstrap intervals over test images; in brackets each arm − `{figures/reference}`, paired.",
        rows="rows",
        row="| {metric} | {cells} |",
        derive=_derive,
    )


BOX_BLOCKS = {"grounding-boxes": _block(BOXES), "grounding-boxes-aligned": _block(BOXES_ALIGNED)}
