"""One failure policy for every stage: what went wrong decides the exit status, the same in each stage.

======  =====================================================================================
status  meaning
======  =====================================================================================
0       done
1       a failed check on usable input (:class:`CheckFailed`): the gate, a critical expectation,
        ``package`` asked to ship a model the gate did not pass, ``gate.require_champion`` with
        no champion record, drift with ``monitor --fail-on-drift``
2       bad input or settings (:class:`BadInput`, and a params file that cannot be used): a
        missing input file or folder (run the stage before), an unusable setting, an unknown
        phase, records rejected beyond ``corpus.max_reject_fraction`` (the source data is bad),
        a full disk under an output (``NoSpace``, regionmed/atomic.py: the folder, the space
        needed or written, the space free)
3       the stage broke (:class:`StageBroke`): a tool it runs failed (``bentoml build``), or a bug
        (then with its traceback)
======  =====================================================================================

Stages raise these (their own errors subclass them: ``BuildError``, ``AnnotateError``,
``PackageError``, ``ChampionUnavailable``...); the CLI (regionmed/cli.py) turns them into the status
and a message naming the stage, without a traceback. ``dvc repro`` itself exits 255 whatever the
stage's status; the flows read a verdict from the stage's outputs (flows/_dvc.py).
"""

from __future__ import annotations

from pathlib import Path

EXIT_DONE = 0
EXIT_CHECK_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_BROKE = 3


class StageError(Exception):
    """A stage did not finish; :attr:`exit_code` says why (module docstring)."""

    exit_code = EXIT_BROKE
    kind = "failed"


class CheckFailed(StageError):
    """A check the stage exists to make failed on usable input: its verdict is no."""

    exit_code = EXIT_CHECK_FAILED
    kind = "check failed"


class BadInput(StageError, ValueError):
    """The stage cannot use its input or its settings; the message names which and what to do."""

    exit_code = EXIT_BAD_INPUT
    kind = "bad input"


class StageBroke(StageError, RuntimeError):
    """Neither the input's fault nor a check: a tool the stage runs failed."""

    exit_code = EXIT_BROKE
    kind = "broke"


def require(path: str | Path, what: str, made_by: str | None = None) -> Path:
    """``path`` if it exists, else :class:`BadInput` naming it (and the stage that makes it)."""
    path = Path(path)
    if not path.exists():
        hint = f": run the {made_by} stage first" if made_by else ""
        raise BadInput(f"{what} {path} does not exist{hint}")
    return path
