"""Looking at a corpus: a PNG grid of samples with boxes and phrases, and count tables."""

from __future__ import annotations

import textwrap
from collections import Counter
from pathlib import Path

import pandas as pd
from PIL import Image, ImageDraw

from regionmed.corpus.images import open_stored
from regionmed.corpus.schema import read_manifest

FINDING_COLOUR = (255, 64, 64)
ANATOMY_COLOUR = (64, 200, 64)
CAPTION_LINES = 4


def preview_grid(
    corpus_dir: str | Path,
    out_png: str | Path,
    n: int = 16,
    cols: int = 4,
    tile: int = 256,
    split: str | None = None,
    seed: int = 0,
    show_anatomy: bool = False,
) -> Path:
    """Draw ``n`` random images of the corpus with their region boxes and finding phrases."""
    df = read_manifest(corpus_dir, split)
    if df.empty:
        raise ValueError(f"no images in {corpus_dir} (split={split})")
    sample = df.sample(n=min(n, len(df)), random_state=seed)
    caption_h = 14 * CAPTION_LINES
    rows = (len(sample) + cols - 1) // cols
    canvas = Image.new("RGB", (cols * tile, rows * (tile + caption_h)), (0, 0, 0))
    draw = ImageDraw.Draw(canvas)
    for k, (_, row) in enumerate(sample.iterrows()):
        x, y = (k % cols) * tile, (k // cols) * (tile + caption_h)
        img = open_stored(Path(corpus_dir) / row["image_path"]).convert("RGB").resize((tile, tile))
        canvas.paste(img, (x, y))
        phrases = []
        for r in row["regions"]:
            if r["kind"] != "finding" and not show_anatomy:
                continue
            colour = FINDING_COLOUR if r["kind"] == "finding" else ANATOMY_COLOUR
            box = [
                x + r["bbox"][0] * tile,
                y + r["bbox"][1] * tile,
                x + r["bbox"][2] * tile,
                y + r["bbox"][3] * tile,
            ]
            draw.rectangle(box, outline=colour, width=2)
            if r["kind"] == "finding":
                phrases.append(r["phrase"])
        caption = "; ".join(phrases) or ", ".join(row["labels"]) or row["modality"]
        lines = textwrap.wrap(f"{row['image_id']}: {caption}", width=tile // 6)[:CAPTION_LINES]
        draw.multiline_text((x + 2, y + tile + 1), "\n".join(lines), fill=(230, 230, 230), spacing=2)
    out = Path(out_png)
    out.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(out)
    return out


def corpus_stats(corpus_dir: str | Path) -> dict[str, pd.DataFrame]:
    """Counts per split × modality, per label × split, and the region size distribution."""
    df = read_manifest(corpus_dir)
    labels = df[["split", "labels"]].explode("labels").dropna()
    regions = [
        (
            row.split,
            r["kind"],
            r["size"] or "-",
            (r["bbox"][2] - r["bbox"][0]) * (r["bbox"][3] - r["bbox"][1]),
        )
        for row in df.itertuples()
        for r in row.regions
    ]
    reg = pd.DataFrame(regions, columns=["split", "kind", "size", "area"])
    area_quantiles = (
        reg.groupby(["kind", "size"])["area"].describe(percentiles=[0.1, 0.5, 0.9])
        if not reg.empty
        else pd.DataFrame()
    )
    return {
        "images per split and modality": pd.crosstab(df["modality"], df["split"], margins=True),
        "images per label and split": pd.crosstab(labels["labels"], labels["split"], margins=True),
        "regions per kind and size": pd.crosstab([reg["kind"], reg["size"]], reg["split"], margins=True)
        if not reg.empty
        else pd.DataFrame(),
        "region area (fraction of image)": area_quantiles.round(4),
        "regions per image": pd.Series(Counter(len(r) for r in df["regions"]))
        .sort_index()
        .to_frame("images"),
    }
