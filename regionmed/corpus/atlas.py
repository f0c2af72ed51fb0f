"""The phantom atlas: anatomy and findings of each synthetic modality, as data.

Shapes are ellipses in a canonical frame (x right on the image, y down, both 0..1); the
renderer applies a random affine, noise and intensity changes on top. Images follow the
radiological convention: the patient's right lung/kidney/hemisphere is on the image left.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Organ:
    name: str  # anatomy label, e.g. "right lung"
    center: tuple[float, float]
    radii: tuple[float, float]
    value: float  # intensity in 0..1 before windowing
    side: str | None = None  # patient side: "right" / "left" / None
    annotate: bool = True  # gets an anatomy region (box + phrase)


@dataclass(frozen=True)
class FindingType:
    label: str  # class name used for zero-shot and QA, e.g. "nodule"
    hosts: tuple[str, ...]  # organ names it may appear in
    # radius (fraction of image) and contrast (signed intensity change) per size bucket
    radius: dict[str, tuple[float, float]]
    contrast: dict[str, float]
    shape: str = "round"  # round | lobulated | patchy | fluid | enlarge | rimmed
    location_style: str = "zone"  # zone | organ | none


@dataclass(frozen=True)
class Modality:
    name: str
    short: str  # answer to "what modality is this?"
    body_part: str
    background: float
    body: tuple[Organ, ...]  # drawn in order, the later over the earlier
    findings: tuple[FindingType, ...]


_SIZES_SMALL = {"subtle": (0.014, 0.02), "small": (0.026, 0.038), "large": (0.05, 0.07)}
_SIZES_MASS = {"subtle": (0.025, 0.032), "small": (0.04, 0.05), "large": (0.07, 0.09)}

CHEST = Modality(
    name="chest_xray",
    short="x-ray",
    body_part="chest",
    background=0.04,
    body=(
        Organ("thorax", (0.5, 0.55), (0.46, 0.47), 0.42, annotate=False),
        Organ("right lung", (0.31, 0.47), (0.15, 0.31), 0.14, side="right"),
        Organ("left lung", (0.69, 0.47), (0.14, 0.31), 0.14, side="left"),
        Organ("spine", (0.5, 0.55), (0.035, 0.44), 0.62, annotate=False),
        Organ("heart", (0.56, 0.62), (0.12, 0.11), 0.58),
    ),
    findings=(
        FindingType(
            "nodule", ("right lung", "left lung"), _SIZES_SMALL, {"subtle": 0.1, "small": 0.28, "large": 0.36}
        ),
        FindingType(
            "mass",
            ("right lung", "left lung"),
            _SIZES_MASS,
            {"subtle": 0.1, "small": 0.26, "large": 0.34},
            shape="lobulated",
        ),
        FindingType(
            "pleural effusion",
            ("right lung", "left lung"),
            {"subtle": (0.05, 0.07), "small": (0.09, 0.12), "large": (0.16, 0.22)},
            {"subtle": 0.12, "small": 0.32, "large": 0.4},
            shape="fluid",
        ),
        FindingType(
            "consolidation",
            ("right lung", "left lung"),
            {"subtle": (0.04, 0.05), "small": (0.06, 0.075), "large": (0.09, 0.11)},
            {"subtle": 0.09, "small": 0.2, "large": 0.28},
            shape="patchy",
        ),
        FindingType(
            "cardiomegaly",
            ("heart",),
            {"subtle": (1.18, 1.25), "small": (1.3, 1.38), "large": (1.45, 1.55)},
            {"subtle": 0.0, "small": 0.0, "large": 0.0},
            shape="enlarge",
            location_style="none",
        ),
    ),
)

BRAIN = Modality(
    name="brain_mri",
    short="mri",
    body_part="head",
    background=0.02,
    body=(
        Organ("scalp", (0.5, 0.5), (0.42, 0.47), 0.78, annotate=False),
        Organ("skull", (0.5, 0.5), (0.4, 0.45), 0.08, annotate=False),
        Organ("right hemisphere", (0.35, 0.5), (0.15, 0.42), 0.46, side="right"),
        Organ("left hemisphere", (0.65, 0.5), (0.15, 0.42), 0.46, side="left"),
        Organ("white matter", (0.5, 0.5), (0.28, 0.34), 0.36, annotate=False),
        Organ("lateral ventricles", (0.5, 0.48), (0.09, 0.11), 0.88),
    ),
    findings=(
        FindingType(
            "brain lesion",
            ("right hemisphere", "left hemisphere"),
            _SIZES_SMALL,
            {"subtle": 0.1, "small": 0.3, "large": 0.38},
        ),
        FindingType(
            "hemorrhage",
            ("right hemisphere", "left hemisphere"),
            _SIZES_MASS,
            {"subtle": -0.1, "small": -0.24, "large": -0.3},
            shape="rimmed",
        ),
    ),
)

ABDOMEN = Modality(
    name="abdomen_ct",
    short="ct",
    body_part="abdomen",
    background=0.0,
    body=(
        Organ("body", (0.5, 0.52), (0.46, 0.37), 0.3, annotate=False),
        Organ("soft tissue", (0.5, 0.52), (0.42, 0.33), 0.44, annotate=False),
        Organ("liver", (0.33, 0.42), (0.17, 0.15), 0.56, side="right"),
        Organ("spleen", (0.73, 0.42), (0.07, 0.09), 0.53, side="left"),
        Organ("right kidney", (0.34, 0.63), (0.065, 0.085), 0.62, side="right"),
        Organ("left kidney", (0.66, 0.63), (0.065, 0.085), 0.62, side="left"),
        Organ("vertebra", (0.5, 0.7), (0.065, 0.065), 0.92, annotate=False),
        Organ("aorta", (0.5, 0.58), (0.025, 0.025), 0.68, annotate=False),
    ),
    findings=(
        FindingType(
            "kidney cyst",
            ("right kidney", "left kidney"),
            {"subtle": (0.016, 0.022), "small": (0.026, 0.034), "large": (0.042, 0.052)},
            {"subtle": -0.1, "small": -0.3, "large": -0.38},
            location_style="organ",
        ),
        FindingType(
            "liver lesion",
            ("liver",),
            _SIZES_SMALL,
            {"subtle": -0.08, "small": -0.24, "large": -0.3},
            location_style="organ",
        ),
    ),
)

MODALITIES: dict[str, Modality] = {m.name: m for m in (CHEST, BRAIN, ABDOMEN)}
ALL_FINDINGS: tuple[str, ...] = tuple(f.label for m in MODALITIES.values() for f in m.findings)
