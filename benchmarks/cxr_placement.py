"""Chest findings placed on real chest X-rays: the development set ../shared/data/covid-cxr-dev.

Imports the set (corpus.source jsonl; 5 images carry right- and left-lung boxes, no finding has one),
reads every train report's mentions, and places each finding two ways on the same queries:

* ``now``: the ``prior`` localizer inside this image's anatomy (annotation/anatomy.py): the image's
  own lung boxes, else the corpus's mean lung boxes (what the annotator's first round trains on, and
  what ``annotate.localizer: prior`` gives);
* ``before``: the rule the ``prior`` localizer followed until then, the text-only prior of the
  evaluation (corpus/location_prior.py ``text_prior_box``, unchanged) over the whole image: side and
  zone words halve and cut the image, a phrase without them takes its label's mean box.

Reported: finding boxes placed, how many overlap both lungs (one box across the mediastinum: every
finding that names both sides is two mentions, so none is asked for), location-free phrases placed,
and on the train images with lung boxes, how often a finding box that names a side lies in that
lung (centre inside and 90% of its area), with the image's own boxes and - as an image without boxes
gets it - with them left out (the corpus mean of the others; leave-one-out). CT images (no lung box
in the set) are counted apart. Writes a preview PNG (``--preview``) and ``--results``
(default benchmarks/results/cxr_placement.json).

    python benchmarks/cxr_placement.py --out .state/cxr_placement --preview docs/annotation-cxr.png
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

from regionmed.env import configure_environment
from regionmed.publish.record import Record, results_option

configure_environment()
COLOURS = {"given": (64, 200, 64), "mean": (150, 150, 150), "now": (255, 160, 0), "before": (230, 60, 60)}


class Recorder:
    """A localizer that places nothing and keeps the queries (what the stage would ask any localizer)."""

    name = "recorder"

    def __init__(self):
        self.queries = []

    def locate(self, queries):
        self.queries.extend(queries)
        return [None] * len(queries)


def old_rule(queries, train_regions):
    """The boxes the prior placed before: text_prior_box over the whole image (None where it had none)."""
    from regionmed.corpus.location_prior import text_prior_box, train_box_means

    means = train_box_means(train_regions)
    out = []
    for q in queries:
        if q.kind == "anatomy" and q.label not in means["organ"]:
            out.append(None)
            continue
        box, source = text_prior_box(q.phrase, means, q.label)
        out.append(None if source == "image" else tuple(float(v) for v in box))
    return out


def place(df, corpus_dir, a, extractor):
    """(image index per query, queries, now boxes, before boxes) for the train split as the stage reads it."""
    from regionmed.annotation.anatomy import CorpusAnatomy, keep_in_one_of_the_pair
    from regionmed.annotation.annotate import annotate_frame
    from regionmed.annotation.localizers import PriorLocalizer
    from regionmed.annotation.summary import AnnotationCounts

    recorder = Recorder()
    annotate_frame(df, corpus_dir, a, recorder, extractor, AnnotationCounts("prior"))
    by_path = {str(corpus_dir / p): i for i, p in zip(df.index, df["image_path"], strict=True)}
    owners = [by_path[str(q.image_path)] for q in recorder.queries]
    corpus = CorpusAnatomy(df[df["split"] == "train"])
    now = []
    for i, q, p in zip(
        owners,
        recorder.queries,
        PriorLocalizer(a.prior_confidence.model_dump()).locate(recorder.queries),
        strict=True,
    ):
        anatomy = corpus.for_image(df.at[i, "modality"], df.at[i, "regions"])
        now.append(
            None
            if p is None
            else (keep_in_one_of_the_pair(p.bbox, anatomy, q.frames), p.placed_by, p.confidence)
        )
    train_regions = [r for rs in df[df["split"] == "train"]["regions"] for r in rs]
    return owners, recorder.queries, now, old_rule(recorder.queries, train_regions), corpus


def stats(df, owners, queries, boxes, corpus, views):
    """Finding boxes placed, per kind of image: frontal chest films (their lungs: given, else the corpus
    mean), lateral ones (no right and left lung to hold the words; the corpus has no view column), CT."""
    from regionmed.annotation.placement_audit import lungs_of, spans_both

    out = {
        "chest_xray_frontal": {"placed": 0, "across_both_lungs": 0, "location_free_placed": 0},
        "chest_xray_lateral": {"placed": 0},
        "ct": {"placed": 0},
    }
    for i, q, b in zip(owners, queries, boxes, strict=True):
        if b is None or q.kind != "finding":
            continue
        modality = df.at[i, "modality"]
        if modality != "chest_xray":
            out["ct"]["placed"] += 1
            continue
        if views.get(df.at[i, "image_id"]) == "L":
            out["chest_xray_lateral"]["placed"] += 1
            continue
        chest = out["chest_xray_frontal"]
        chest["placed"] += 1
        chest["location_free_placed"] += not q.frames
        chest["across_both_lungs"] += spans_both(b, lungs_of(df.at[i, "regions"], modality, corpus))
    return out


def inside_named_lung(df, corpus_dir, a, extractor, boxed):
    """On the boxed train images: located finding boxes in the lung they name, with the image's own lung
    boxes (now), and with them left out (now: the others' mean; before: the old rule on the others)."""
    from regionmed.annotation.placement_audit import INSIDE_SHARE, centre_inside, named_side, share_inside

    rows = {k: [] for k in ("now_own_lungs", "now_left_out", "before_left_out")}
    for i in boxed:
        truth = {r["label"]: r["bbox"] for r in df.at[i, "regions"] if r["kind"] == "anatomy"}
        for key, hide in (("now_own_lungs", False), ("now_left_out", True)):
            frame = df.copy()
            if hide:
                frame.at[i, "regions"] = []
            owners, queries, now, before, _ = place(frame, corpus_dir, a, extractor)
            for owner, q, n, b in zip(owners, queries, now, before, strict=True):
                side = named_side(q.phrase)
                if owner != i or q.kind != "finding" or side is None:
                    continue
                lung = truth[f"{side} lung"]
                for name, box in ((key, n and n[0]), *((("before_left_out", b),) if hide else ())):
                    rows[name].append(
                        (bool(box) and centre_inside(box, lung), share_inside(box, lung) if box else 0.0)
                    )
    return {
        k: {
            "n": len(v),
            "centre_inside": sum(c for c, _ in v),
            "mean_area_share_inside": round(sum(s for _, s in v) / len(v), 3) if v else None,
            f"contained_{INSIDE_SHARE}": sum(c and s >= INSIDE_SHARE for c, s in v),
        }
        for k, v in rows.items()
    }


def preview(df, corpus_dir, owners, queries, now, before, corpus, out_png, licences, views, n=4, tile=200):
    """Before (red) and now (orange) on the same images; given lungs green, the corpus-mean lungs grey."""
    import textwrap

    from PIL import Image, ImageDraw

    from regionmed.annotation.placement_audit import lungs_of

    chest = [
        i
        for i in sorted(set(owners), key=lambda i: df.at[i, "image_id"])
        if df.at[i, "modality"] == "chest_xray"
        and views.get(df.at[i, "image_id"], "").startswith(("PA", "AP"))
    ]
    per = {
        i: [
            (q, nw, bf)
            for o, q, nw, bf in zip(owners, queries, now, before, strict=True)
            if o == i and q.kind == "finding"
        ]
        for i in chest
    }
    boxed = [i for i in chest if df.at[i, "regions"] and sum(nw is not None for _, nw, _ in per[i]) >= 1]
    two_sided = [i for i in chest if i not in boxed and sum(nw is not None for _, nw, _ in per[i]) >= 2]
    picks = (boxed[:2] + two_sided)[:n]
    from regionmed.corpus.images import open_stored

    caption_h = 4 * 13
    band = tile + caption_h + 14  # a title line, the films, their captions
    canvas = Image.new("RGB", (len(picks) * tile, 2 * band), (0, 0, 0))
    draw = ImageDraw.Draw(canvas)
    draw.text((4, 1), "before: the old prior rule over the whole image (red)", fill=(230, 230, 230))
    draw.text(
        (4, band + 1),
        "now: inside this image's lungs (orange; lungs given green, corpus mean grey)",
        fill=(230, 230, 230),
    )
    for col, i in enumerate(picks):
        image = open_stored(corpus_dir / df.at[i, "image_path"]).convert("RGB").resize((tile, tile))
        lungs = lungs_of(df.at[i, "regions"], "chest_xray", corpus)
        given = {r["label"] for r in df.at[i, "regions"]}
        for row, which in enumerate(("before", "now")):
            x, y = col * tile, 14 + row * band
            canvas.paste(image, (x, y))
            words = []
            if which == "now":
                for name, box in lungs.items():
                    colour = COLOURS["given"] if name in given else COLOURS["mean"]
                    draw.rectangle(
                        [x + box[0] * tile, y + box[1] * tile, x + box[2] * tile, y + box[3] * tile],
                        outline=colour,
                        width=1,
                    )
            for q, nw, bf in per[i]:
                placed = nw[0] if which == "now" and nw else (bf if which == "before" else None)
                if placed is None:
                    continue
                b = placed
                draw.rectangle(
                    [x + b[0] * tile, y + b[1] * tile, x + b[2] * tile, y + b[3] * tile],
                    outline=COLOURS[which],
                    width=2,
                )
                words.append(f"[{nw[1]} {nw[2]:.1f}] {q.phrase}" if which == "now" else q.phrase)
            lines = textwrap.wrap("; ".join(words) or "-", width=tile // 6)[:4]
            draw.multiline_text((x + 2, y + tile + 1), "\n".join(lines), fill=(230, 230, 230), spacing=1)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    # a small file: 59 grey levels for the films and the box and caption colours, no dithering
    palette = Image.new("P", (1, 1))
    greys = [(g, g, g) for g in (round(k * 255 / 58) for k in range(59))]
    colours = [*greys, *COLOURS.values(), (230, 230, 230)]
    palette.putpalette([v for c in colours for v in c])
    canvas.quantize(palette=palette, dither=Image.Dither.NONE).save(out_png, optimize=True)
    return [{"image_id": df.at[i, "image_id"], **licences.get(df.at[i, "image_id"], {})} for i in picks]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, default=Path(".state/cxr_placement"))
    ap.add_argument("--data", type=Path, default=Path("../shared/data/covid-cxr-dev"))
    ap.add_argument("--preview", type=Path, default=None, help="PNG of before/now boxes on 4 chest X-rays")
    results_option(ap, "cxr_placement")
    args = ap.parse_args()
    record = Record("cxr_placement")
    if not (args.data / "records.jsonl").is_file():
        raise SystemExit(f"no development set at {args.data}")

    import yaml

    from regionmed.annotation.mentions import MentionExtractor
    from regionmed.corpus.build import build_corpus
    from regionmed.corpus.schema import read_manifest
    from regionmed.params import Params, deep_merge

    params = Params.model_validate(
        deep_merge(
            yaml.safe_load(Path("params.yaml").read_text()),
            {
                "corpus": {"source": "jsonl", "importer": {"path": str(args.data / "records.jsonl")}},
                "annotate": {"localizer": "prior"},
            },
        )
    )
    corpus_dir = args.out / "corpus"
    build_corpus(params, corpus_dir, progress=False)
    df, a, extractor = read_manifest(corpus_dir), params.annotate, MentionExtractor()
    owners, queries, now, before, corpus = place(df, corpus_dir, a, extractor)
    with open(args.data / "records.jsonl") as f:  # the view (PA, AP, L...): in the records, not the corpus
        views = {r["id"]: r.get("meta", {}).get("view", "") for r in map(json.loads, f)}
    boxed = [i for i in df.index if df.at[i, "split"] == "train" and df.at[i, "regions"]]
    figures = {
        "images": {
            "all": len(df),
            "train": int((df["split"] == "train").sum()),
            "train_with_lung_boxes": len(boxed),
        },
        "finding_queries": sum(q.kind == "finding" for q in queries),
        "now": stats(df, owners, queries, [n and n[0] for n in now], corpus, views),
        "before": stats(df, owners, queries, before, corpus, views),
        "now_by_placement": {},
        "inside_named_lung": inside_named_lung(df, corpus_dir, a, extractor, boxed),
    }
    for q, n in zip(queries, now, strict=True):
        if n is not None and q.kind == "finding":
            figures["now_by_placement"][n[1]] = figures["now_by_placement"].get(n[1], 0) + 1
    if args.preview:
        with open(args.data / "LICENSES.csv") as f:
            licences = {
                Path(r["image"]).stem: {"license": r["license"], "url": r["url"] or r["doi"]}
                for r in csv.DictReader(f)
            }
        figures["preview"] = {
            "file": str(args.preview),
            "images": preview(
                df, corpus_dir, owners, queries, now, before, corpus, args.preview, licences, views
            ),
        }
    print(json.dumps(figures, indent=1))
    record.write(figures, args.results, conditions="OMP_NUM_THREADS=1 nice -n 10")


if __name__ == "__main__":
    main()
