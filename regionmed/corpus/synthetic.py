"""Procedural medical phantoms with exact region boxes: the embedded default corpus.

Each image is a function of ``(seed, index)`` alone, so a corpus is byte-identical for the same
params whatever the number of worker processes. Shapes live in a canonical frame (see
:mod:`regionmed.corpus.atlas`); a random affine, a smooth bias field, gamma and noise are applied
on top so that no single pixel separates the classes. Boxes are the tight boxes of the rendered
masks, so they are exact after the affine.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from regionmed.corpus.atlas import MODALITIES, FindingType, Modality, Organ
from regionmed.corpus.phrases import LOCATION_TEMPLATES, VERTICAL_ZONES, Location, zone_of
from regionmed.params_pipeline import SyntheticParams

# Values of soft masks above this count as inside a shape when boxes are taken.
MASK_THRESHOLD = 0.5
PLACEMENT_TRIES = 8


@dataclass
class PlacedFinding:
    finding: FindingType
    size: str
    host: Organ
    location: Location | None
    bbox: tuple[float, float, float, float]


@dataclass
class PlacedOrgan:
    organ: Organ
    bbox: tuple[float, float, float, float]


@dataclass
class Phantom:
    modality: Modality
    pixels: np.ndarray  # uint8, (size, size)
    findings: list[PlacedFinding] = field(default_factory=list)
    anatomy: list[PlacedOrgan] = field(default_factory=list)


class _Canvas:
    """Canonical coordinates of every pixel under a random affine, and soft shape masks."""

    def __init__(self, size: int, rng: np.random.Generator, p: SyntheticParams):
        self.size = size
        theta = math.radians(rng.uniform(-p.max_rotation_deg, p.max_rotation_deg))
        sx = 1 + rng.uniform(-p.max_scale_jitter, p.max_scale_jitter)
        sy = sx * (1 + rng.uniform(-p.max_scale_jitter, p.max_scale_jitter) / 2)
        tx, ty = rng.uniform(-p.max_shift, p.max_shift, size=2)
        self.scale = min(sx, sy)
        ys, xs = (np.mgrid[0:size, 0:size].astype(np.float32) + 0.5) / size
        dx, dy = xs - 0.5 - tx, ys - 0.5 - ty
        c, s = math.cos(theta), math.sin(theta)
        self.u = 0.5 + (c * dx + s * dy) / sx
        self.v = 0.5 + (-s * dx + c * dy) / sy

    def ellipse(self, center, radii) -> np.ndarray:
        """Anti-aliased mask of an ellipse (1 inside, 0 outside, a one-pixel ramp at the edge)."""
        d = np.sqrt(((self.u - center[0]) / radii[0]) ** 2 + ((self.v - center[1]) / radii[1]) ** 2)
        edge_px = max(min(radii) * self.size * self.scale, 1.0)
        return np.clip((1.0 - d) * edge_px + 0.5, 0.0, 1.0)

    def box(self, mask: np.ndarray) -> tuple[float, float, float, float] | None:
        rows = np.flatnonzero((mask > MASK_THRESHOLD).any(axis=1))
        cols = np.flatnonzero((mask > MASK_THRESHOLD).any(axis=0))
        if rows.size == 0:
            return None
        n = float(self.size)
        return (cols[0] / n, rows[0] / n, (cols[-1] + 1) / n, (rows[-1] + 1) / n)


def generate_phantom(index: int, seed: int, size: int, p: SyntheticParams) -> Phantom:
    rng = np.random.default_rng([seed, index])
    modality = MODALITIES[p.modalities[int(rng.integers(len(p.modalities)))]]
    canvas = _Canvas(size, rng, p)
    organs = {o.name: o for o in modality.body}
    plans = _plan_findings(modality, rng, p)
    # Cardiomegaly is an enlarged organ, so it changes the body before anything is drawn.
    for finding, size_bucket, _ in plans:
        if finding.shape == "enlarge":
            host = organs[finding.hosts[0]]
            factor = rng.uniform(*finding.radius[size_bucket])
            organs[host.name] = Organ(
                host.name,
                host.center,
                (host.radii[0] * factor, host.radii[1] * factor * 0.9),
                host.value,
                host.side,
                host.annotate,
            )

    image = np.full((size, size), modality.background, dtype=np.float32)
    organ_masks: dict[str, np.ndarray] = {}
    for organ in organs.values():
        mask = canvas.ellipse(organ.center, organ.radii)
        value = organ.value + rng.normal(0, 0.03)
        image = image * (1 - mask) + value * mask
        organ_masks[organ.name] = mask
    _add_texture(image, canvas, modality, organ_masks, rng)

    phantom = Phantom(modality=modality, pixels=np.empty(0))
    for finding, size_bucket, host_name in plans:
        host = organs[host_name]
        placed = _draw_finding(
            image, canvas, finding, size_bucket, host, organ_masks[host_name], rng, phantom
        )
        if placed is not None:
            phantom.findings.append(placed)
    for organ in organs.values():
        if organ.annotate and (bbox := canvas.box(organ_masks[organ.name])) is not None:
            phantom.anatomy.append(PlacedOrgan(organ, bbox))
    phantom.pixels = _finish(image, canvas, rng, p)
    return phantom


def _plan_findings(modality: Modality, rng: np.random.Generator, p: SyntheticParams):
    if p.max_findings == 0 or rng.random() < p.p_no_finding:
        return []
    n = int(rng.integers(1, p.max_findings + 1))
    buckets = list(p.size_weights)
    weights = np.array([p.size_weights[b] for b in buckets], dtype=float)
    plans, used = [], set()
    for _ in range(n):
        finding = modality.findings[int(rng.integers(len(modality.findings)))]
        host = finding.hosts[int(rng.integers(len(finding.hosts)))]
        size_bucket = buckets[int(rng.choice(len(buckets), p=weights / weights.sum()))]
        # Whole-organ findings (enlargement, fluid) happen once per organ.
        key = (finding.label, host) if finding.shape in ("enlarge", "fluid") else None
        if key is not None and key in used:
            continue
        used.add(key)
        plans.append((finding, size_bucket, host))
    return plans


def _draw_finding(image, canvas, finding, size_bucket, host, host_mask, rng, phantom):
    if finding.shape == "enlarge":
        bbox = canvas.box(host_mask)
        return PlacedFinding(finding, size_bucket, host, None, bbox) if bbox else None
    lo, hi = finding.radius[size_bucket]
    contrast = finding.contrast[size_bucket] * rng.uniform(0.85, 1.15)
    for _ in range(PLACEMENT_TRIES):
        radius = rng.uniform(lo, hi)
        if finding.shape == "fluid":
            center = (host.center[0], host.center[1] + host.radii[1] - radius)
            # Fluid fills the base of the host, below a meniscus.
            edge_px = max(canvas.size * canvas.scale * 0.01, 1.0)
            mask = host_mask * np.clip((canvas.v - center[1]) * canvas.size / edge_px, 0, 1)
        else:
            angle, rho = rng.uniform(0, 2 * math.pi), math.sqrt(rng.uniform(0, 1)) * 0.6
            center = (
                host.center[0] + rho * host.radii[0] * math.cos(angle),
                host.center[1] + rho * host.radii[1] * math.sin(angle),
            )
            mask = _lesion_mask(canvas, finding.shape, center, radius, rng)
        bbox = canvas.box(mask)
        if bbox is None or any(_intersects(bbox, f.bbox) for f in phantom.findings):
            continue
        location = _location(finding, host, center, phantom.modality)
        # Two findings that read the same ("a small nodule in the right upper zone" twice) would
        # make one phrase name two boxes; place this one elsewhere.
        if any(
            f.finding.label == finding.label and f.size == size_bucket and f.location == location
            for f in phantom.findings
        ):
            continue
        if finding.shape == "rimmed":
            rim = np.clip(canvas.ellipse(center, (radius * 1.3, radius * 1.3)) - mask, 0, 1)
            image += -0.6 * contrast * rim
            bbox = canvas.box(mask + rim)
        image += contrast * mask
        return PlacedFinding(finding, size_bucket, host, location, bbox)
    return None


def _lesion_mask(canvas, shape, center, radius, rng) -> np.ndarray:
    aspect = rng.uniform(0.8, 1.25)
    mask = canvas.ellipse(center, (radius * aspect, radius / aspect))
    if shape == "lobulated":
        for _ in range(2):
            a = rng.uniform(0, 2 * math.pi)
            c2 = (center[0] + 0.6 * radius * math.cos(a), center[1] + 0.6 * radius * math.sin(a))
            mask = np.maximum(mask, canvas.ellipse(c2, (radius * 0.6, radius * 0.6)))
    elif shape == "patchy":
        phase = rng.uniform(0, 2 * math.pi, size=2)
        texture = 0.7 + 0.3 * np.sin(canvas.u * 90 + phase[0]) * np.sin(canvas.v * 70 + phase[1])
        mask = mask * texture
    return mask


def _location(finding: FindingType, host: Organ, center, modality: Modality) -> Location | None:
    if finding.location_style == "none":
        return None
    if finding.location_style == "organ":
        if host.side and host.side in host.name:  # paired organ: "the left kidney"
            return Location(
                "the " + host.name.replace(host.side, "{side}"), side=host.side, body_part=modality.body_part
            )
        # single organ: its lobe on the patient's side of the organ's centre ("the right lobe of the liver")
        side = "right" if center[0] < host.center[0] else "left"
        return Location("the {side} lobe of the " + host.name, side=side, body_part=modality.body_part)
    rel_y = (center[1] - (host.center[1] - host.radii[1])) / (2 * host.radii[1])
    zone = zone_of(min(max(rel_y, 0.0), 0.999), VERTICAL_ZONES[modality.body_part])
    return Location(
        LOCATION_TEMPLATES[modality.body_part], side=host.side, zone=zone, body_part=modality.body_part
    )


def _add_texture(image, canvas, modality, masks, rng) -> None:
    """Modality-specific structure: ribs over the lungs, a falx in the brain."""
    if modality.name == "chest_xray":
        lungs = masks["right lung"] + masks["left lung"]
        start = rng.uniform(0.17, 0.22)
        for k in range(7):
            y = start + 0.095 * k + 0.035 * np.cos((canvas.u - 0.5) * 5.0)
            image += 0.09 * np.exp(-(((canvas.v - y) / 0.011) ** 2)) * np.clip(lungs, 0, 1)
    elif modality.name == "brain_mri":
        brain = masks["right hemisphere"] + masks["left hemisphere"]
        image += 0.22 * np.exp(-(((canvas.u - 0.5) / 0.006) ** 2)) * np.clip(brain, 0, 1)


def _finish(image, canvas, rng, p: SyntheticParams) -> np.ndarray:
    """Bias field, gamma and noise, then 8-bit."""
    fx, fy, phase = rng.uniform(0.5, 1.5), rng.uniform(0.5, 1.5), rng.uniform(0, 2 * math.pi)
    bias = 1 + 0.08 * np.cos(2 * math.pi * (fx * canvas.u + fy * canvas.v) + phase)
    image = np.clip(image * bias, 0, 1) ** (1 + rng.uniform(-p.gamma_jitter, p.gamma_jitter))
    image = image + rng.normal(0, p.noise_std, size=image.shape)
    return (np.clip(image, 0, 1) * 255 + 0.5).astype(np.uint8)


def _intersects(a, b) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]
