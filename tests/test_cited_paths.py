"""Every repository file that the tree cites by path exists (a comment or doc naming a moved or never
written file sends the next reader looking for nothing)."""

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
    names = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard"],
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
