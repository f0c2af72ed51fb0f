"""The vocabulary YAML: it covers the synthetic corpus, its forms are generated right, bad files are named."""

from __future__ import annotations

import pytest
import yaml

from regionmed.annotation.mentions import MentionExtractor
from regionmed.annotation.vocabulary import DEFAULT_VOCABULARY, load_vocabulary, variants
from regionmed.corpus.atlas import ALL_FINDINGS, MODALITIES

ANATOMY_LABELS = sorted({o.name for m in MODALITIES.values() for o in m.body if o.annotate})


def test_the_default_vocabulary_ships_with_the_package():
    assert DEFAULT_VOCABULARY.is_file() and DEFAULT_VOCABULARY.parent.name == "prompts"


@pytest.mark.parametrize("label", ALL_FINDINGS)
def test_every_synthetic_finding_is_read_with_its_own_label(extractor, label):
    (m,) = extractor.extract(f"There is a {label}.")
    assert (m.kind, m.label) == ("finding", label)


@pytest.mark.parametrize("label", ANATOMY_LABELS)
def test_every_synthetic_anatomy_label_is_read_with_its_own_label(extractor, label):
    (m,) = extractor.extract(f"Seen: the {label}.")
    assert (m.kind, m.label) == ("anatomy", label)


def test_variants_cover_hyphens_and_plurals():
    assert {
        "ground-glass opacity",
        "ground glass opacity",
        "ground-glass opacities",
        "ground glass opacities",
    } <= set(variants("ground-glass opacity"))
    assert "mass-effect" in variants("mass effect")
    assert "metastases" in variants("metastasis") and "emboli" in variants("embolus")
    assert "masses" in variants("mass")


def test_a_custom_vocabulary_is_used(tmp_path):
    data = yaml.safe_load(DEFAULT_VOCABULARY.read_text())
    data.update(findings={"bleb": ["bleb", "bulla"]}, refine={})
    (tmp_path / "v.yaml").write_text(yaml.safe_dump(data))
    extractor = MentionExtractor(tmp_path / "v.yaml")
    assert [m.label for m in extractor.extract("A bulla. A nodule.") if m.kind == "finding"] == ["bleb"]


def test_a_missing_vocabulary_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nope\.yaml"):
        load_vocabulary(tmp_path / "nope.yaml")


def test_a_malformed_vocabulary_names_the_field(tmp_path):
    text = DEFAULT_VOCABULARY.read_text().replace("  nodule: [nodule,", "  nodule: [7,", 1)
    (tmp_path / "v.yaml").write_text(text)
    with pytest.raises(ValueError, match=r"findings\.nodule"):
        load_vocabulary(tmp_path / "v.yaml")
    (tmp_path / "r.yaml").write_text(
        DEFAULT_VOCABULARY.read_text().replace("cyst: {kidney: kidney cyst}", "cyst: {kidney: renal stone}")
    )
    with pytest.raises(ValueError, match=r"refine\.cyst\.kidney"):
        load_vocabulary(tmp_path / "r.yaml")
    (tmp_path / "w.yaml").write_text("findings: {}\n")
    with pytest.raises(ValueError, match="anatomy"):
        load_vocabulary(tmp_path / "w.yaml")


def test_the_vocabulary_is_packaged_in_the_wheel_and_the_bento():
    import fnmatch
    import tomllib

    repo = DEFAULT_VOCABULARY.parents[2]
    relative = DEFAULT_VOCABULARY.relative_to(repo).as_posix()
    bento = yaml.safe_load((repo / "bentofile.yaml").read_text())["include"]
    assert any(fnmatch.fnmatch(relative, pattern) for pattern in bento), bento
    package_data = tomllib.loads((repo / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    inside = DEFAULT_VOCABULARY.relative_to(repo / "regionmed").as_posix()
    assert any(fnmatch.fnmatch(inside, pattern) for pattern in package_data["regionmed"]), package_data


def test_a_vocabulary_without_the_newer_location_keys_still_loads(tmp_path):
    """Files written before "both", zone spans and joins: null still names both sides, the rest is off."""
    data = yaml.safe_load(DEFAULT_VOCABULARY.read_text())
    for key in ("zone_order", "both_unless_sided", "all_zones_unless_zoned", "joins", "determiners"):
        del data["location"][key]
    data["location"]["sides"] = {"right": "right", "left": "left", "bilateral": None}
    (tmp_path / "old.yaml").write_text(yaml.safe_dump(data))
    extractor = MentionExtractor(tmp_path / "old.yaml")
    assert extractor.vocabulary.location.sides["bilateral"] == "both"
    found = extractor.extract("Bilateral pleural effusions. Opacity in the mid and lower zones.")
    assert [(m.side, m.zone) for m in found] == [("right", None), ("left", None), (None, "middle")]


@pytest.mark.parametrize(
    "old, new, field",
    [
        ("sides: {right: right,", "sides: {right: up,", r"location\.sides\.right"),
        ("zone_order: [upper, middle, lower]", "zone_order: [upper, central]", r"location\.zone_order"),
        ("abbreviations: {rul: [right, upper]", "abbreviations: {rul: [top, upper]", "abbreviations"),
    ],
)
def test_a_malformed_location_word_names_the_field(tmp_path, old, new, field):
    text = DEFAULT_VOCABULARY.read_text()
    assert old in text
    (tmp_path / "v.yaml").write_text(text.replace(old, new, 1))
    with pytest.raises(ValueError, match=field):
        load_vocabulary(tmp_path / "v.yaml")
