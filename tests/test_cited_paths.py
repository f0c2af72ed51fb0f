"""The tree as its files describe it: every repository file cited by path exists (a comment or doc
naming a moved or never written file sends the next reader looking for nothing), and the README's
Layout names every folder."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
# a path under one of the repository's own folders, ending in a file type the tree holds
CITED = re.compile(
    r"\b(?:tests|regionmed|scripts|benchmarks|flows|docs|docker|deploy|expectations|requirements)"
    r"/[\w/.-]*\w\.(?:py|md|yaml|yml|sh|txt|j2|json)\b"
)


def tracked_text_files() -> list[Path]:
    """The committed or staged files (work in progress elsewhere in the tree is not judged)."""
    names = subprocess.run(
        ["git", "ls-files"],
        cwd=REPO_ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.splitlines()
    return [REPO_ROOT / name for name in names if (REPO_ROOT / name).is_file()]


def cited_paths(text: str) -> set[str]:
    return set(CITED.findall(text))


def test_the_pattern_finds_paths_in_comments_and_docs():
    text = "checks them (tests/conftest.py, `docs/serving.md#container`); regionmed/**/*.py is a glob"
    assert cited_paths(text) == {"tests/conftest.py", "docs/serving.md"}


def test_every_cited_repository_path_exists():
    missing = {}
    for path in tracked_text_files():
        try:
            text = path.read_text()
        except (UnicodeDecodeError, OSError):
            continue  # binary files cite nothing
        for cited in cited_paths(text):
            if not (REPO_ROOT / cited).exists():
                missing.setdefault(cited, []).append(str(path.relative_to(REPO_ROOT)))
    assert not missing, f"cited but not in the tree: {missing}"


def layout_entries() -> list[str]:
    """The first word of each unindented line of the README's Layout block."""
    readme = (REPO_ROOT / "README.md").read_text()
    block = readme.split("## Layout", 1)[1].split("```", 2)[1]
    return [line.split()[0] for line in block.splitlines() if line[:1].strip()]


def test_the_readme_layout_names_every_package_and_folder():
    entries = layout_entries()
    tracked = [f.relative_to(REPO_ROOT) for f in tracked_text_files()]
    packages = sorted({f"regionmed/{f.parts[1]}/" for f in tracked if f.match("regionmed/*/__init__.py")})
    missing = [p for p in packages if p not in entries]
    assert not missing, f"packages missing from the Layout: {missing}"
    # the tracked top-level folders (regionmed/ is named package by package), hidden ones aside
    tops = {f.parts[0] for f in tracked}
    folders = sorted(f"{t}/" for t in tops if (REPO_ROOT / t).is_dir() and not t.startswith("."))
    missing = [f for f in folders if not any(e.startswith(f) for e in entries)]
    assert not missing, f"folders missing from the Layout: {missing}"
    gone = [e for e in entries if not (REPO_ROOT / e).exists()]
    assert not gone, f"the Layout names what is not in the tree: {gone}"
