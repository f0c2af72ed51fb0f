"""A benchmark's results file: its figures with the machine, date, commit and exact command.

Each script in ``benchmarks/`` starts a :class:`Record` before it measures and writes it at the end,
to ``benchmarks/results/<name>.json`` by default; the tables of BENCHMARKS.md and docs/experiments.md
are rendered from those files (``python -m regionmed docs --write``). Figures measured before the
scripts wrote such files were transcribed once, with the date, commit, machine and command written
beside them then, and carry a ``transcribed`` note.
"""

from __future__ import annotations

import json
import os
import platform
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
RESULTS_DIR = REPO_ROOT / "benchmarks" / "results"
# the keys every results file has besides ``figures``; the docs' check refuses a file without them
PROVENANCE_KEYS = ("benchmark", "command", "date", "commit", "machine")


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _ram_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    return None


def _gpus() -> list[str]:
    """GPU names from torch when the script imported it (no CUDA init otherwise), else nvidia-smi."""
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        return [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.strip() for line in out.stdout.splitlines() if line.strip()] if out.returncode == 0 else []


def machine() -> dict:
    """What ran the benchmark: CPU model, cores, RAM, GPUs, Python (and torch when imported)."""
    info = {
        "arch": platform.machine(),
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "ram_gib": _ram_gib(),
        "gpu": _gpus() or None,
        "python": platform.python_version(),
    }
    if "torch" in sys.modules:
        info["torch"] = sys.modules["torch"].__version__
    return info


def git_commit(repo: Path = REPO_ROOT) -> str:
    """The short commit of the checkout, with ``+changes`` when tracked code differs from it."""

    def git(*args: str) -> str:
        proc = subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, check=False)
        return proc.stdout.strip() if proc.returncode == 0 else ""

    commit = git("rev-parse", "--short", "HEAD") or "unknown"
    code = ("regionmed", "benchmarks", "params.yaml")
    changed = git("status", "--porcelain", "--untracked-files=no", "--", *code)
    return f"{commit}+changes" if changed else commit


def command_line(argv: list[str] | None = None) -> str:
    """The command as typed from the repository root: ``python benchmarks/bench_corpus.py --sizes 4000``."""
    argv = list(sys.argv if argv is None else argv)
    script = Path(argv[0]).resolve() if argv else Path("?")
    shown = script.relative_to(REPO_ROOT).as_posix() if script.is_relative_to(REPO_ROOT) else argv[0]
    return shlex.join(["python", shown, *argv[1:]])


def _plain(value):
    """JSON for what a script's figures may hold besides plain types: numpy numbers, paths."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return str(value)


def utc_now() -> str:
    return time.strftime("%Y-%m-%dT%H:%MZ", time.gmtime())


@dataclass
class Record:
    """Start before measuring (date, load and command are taken then); :meth:`write` at the end."""

    benchmark: str
    command: str = field(default_factory=command_line)
    date: str = field(default_factory=utc_now)
    load_before: float = field(default_factory=lambda: round(os.getloadavg()[0], 2))

    def document(self, figures: dict, conditions: str | None = None, name: str | None = None) -> dict:
        doc = {
            "benchmark": name or self.benchmark,
            "command": self.command,
            "date": self.date,
            "commit": git_commit(),
            "machine": machine(),
            "load_average": [self.load_before, round(os.getloadavg()[0], 2)],
        }
        if conditions:
            doc["conditions"] = conditions
        return {**doc, "figures": figures}

    def write(self, figures: dict, path: Path | str | None = None, conditions: str | None = None) -> Path:
        """Write the results file (default ``benchmarks/results/<benchmark>.json``, named after its file)
        and return its path."""
        path = Path(path) if path else RESULTS_DIR / f"{self.benchmark}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        doc = self.document(figures, conditions, name=path.stem)
        text = json.dumps(doc, indent=1, ensure_ascii=False, default=_plain)
        path.write_text(text + "\n", encoding="utf-8")
        print(f"results: {path}", file=sys.stderr)
        return path


def results_option(parser, benchmark: str, *aliases: str) -> None:
    """``--results PATH`` (and ``aliases``) on a benchmark's argparse parser (default: the committed
    results file)."""
    parser.add_argument(
        "--results",
        *aliases,
        dest="results",
        type=Path,
        default=RESULTS_DIR / f"{benchmark}.json",
        help=f"where the figures go (default: benchmarks/results/{benchmark}.json, rendered into the docs)",
    )
