"""The one entry point. Each stage subcommand is the ``cmd`` of a DVC stage (see ``dvc.yaml``) and a thin
map onto its ``run``: parse the options, load the params root the stage reads, call ``run`` inside
:func:`_stage` (the exit-code policy of regionmed/errors.py), print the result's summary line."""

from __future__ import annotations

import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import typer
from rich.console import Console

from regionmed.env import configure_environment

configure_environment()


class _App(typer.Typer):
    """The CLI: outside a stage too, a params file that cannot be used (or another :class:`StageError`)
    is its message and its exit status (regionmed/errors.py), not a traceback."""

    def __call__(self, *args, **kwargs):
        from regionmed.errors import StageError

        try:
            return super().__call__(*args, **kwargs)
        except StageError as exc:
            typer.echo(f"{exc.kind}: {exc}", err=True)
            raise SystemExit(exc.exit_code) from None


app = _App(
    help="RegionMed: region-aware medical CLIP, as a reproducible pipeline.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
corpus_app = typer.Typer(help="Build and inspect corpora.", no_args_is_help=True)
app.add_typer(corpus_app, name="corpus")
train_app = typer.Typer(help="Train the tokenizer and the progressive phases.", no_args_is_help=True)
app.add_typer(train_app, name="train")
console = Console(stderr=True)

ParamsOption = typer.Option(Path("params.yaml"), "--params", "-p", help="The params file (params.yaml).")


def _log(line: str) -> None:
    """A stage's progress and summary lines: plain text on stderr (stdout stays free for data)."""
    typer.echo(line, err=True)


@contextmanager
def _stage(name: str) -> Iterator[None]:
    """Run a stage's body under the one failure policy (regionmed/errors.py): a :class:`StageError`
    (a params error included) is one message naming the stage and its exit status; a full disk is bad
    input (the environment's) whoever raised it, named as :class:`~regionmed.atomic.NoSpace` names it;
    anything else is a bug or a broken tool: its traceback, then status 3."""
    from regionmed.atomic import as_no_space
    from regionmed.errors import EXIT_BROKE, StageError

    try:
        yield
    except (typer.Exit, typer.Abort):
        raise
    except StageError as exc:
        _log(f"{name}: {exc.kind}: {exc}")
        raise typer.Exit(exc.exit_code) from None
    except Exception as exc:
        if (full := as_no_space(exc)) is not None:
            _log(f"{name}: {full.kind}: {full}")
            raise typer.Exit(full.exit_code) from None
        _log(traceback.format_exc().rstrip())
        _log(f"{name}: broke (the traceback above)")
        raise typer.Exit(EXIT_BROKE) from None


@corpus_app.command("build")
def corpus_build(
    params_file: Path = ParamsOption,
    out: Path = typer.Option(None, help="Output folder (default: corpus.out_dir from params)."),
    no_progress: bool = typer.Option(False, "--no-progress", help="Hide the progress bar."),
) -> None:
    """DVC stage build_corpus: build the corpus named by corpus.source (synthetic by default)."""
    from regionmed.corpus import stage
    from regionmed.params_pipeline import load_pipeline_params

    with _stage("build_corpus"):
        result = stage.run(
            load_pipeline_params(params_file), out, progress=False if no_progress else None, log=_log
        )
    _log(result.summary_line())


@corpus_app.command("preview")
def corpus_preview(
    corpus: Path = typer.Argument(None, help="Corpus folder (default: corpus.out_dir)."),
    out: Path = typer.Option(Path("reports/corpus_preview.png"), help="PNG to write."),
    n: int = typer.Option(16, help="Number of images."),
    split: str = typer.Option(None, help="Only this split."),
    anatomy: bool = typer.Option(False, help="Also draw anatomy boxes."),
) -> None:
    """Write a PNG grid of sample images with their region boxes and phrases."""
    from regionmed.corpus.inspect import preview_grid
    from regionmed.params_pipeline import load_pipeline_params

    corpus = corpus or load_pipeline_params().corpus.out_dir
    console.print(f"wrote {preview_grid(corpus, out, n=n, split=split, show_anatomy=anatomy)}")


@corpus_app.command("stats")
def corpus_stats_cmd(
    corpus: Path = typer.Argument(None, help="Corpus folder (default: corpus.out_dir)."),
) -> None:
    """Print counts per modality, label and split, and the region size distribution."""
    from regionmed.corpus.inspect import corpus_stats
    from regionmed.params_pipeline import load_pipeline_params

    corpus = corpus or load_pipeline_params().corpus.out_dir
    out = Console()
    for title, table in corpus_stats(corpus).items():
        out.rule(title)
        out.print(table.to_string())


@app.command("annotate")
def annotate_cmd(params_file: Path = ParamsOption) -> None:
    """DVC stage annotate_regions: regions from the reports of images that have none (annotate.*)."""
    from regionmed.annotation import stage
    from regionmed.params_pipeline import load_pipeline_params

    with _stage("annotate_regions"):
        result = stage.run(load_pipeline_params(params_file), log=_log)
    _log(result.summary_line())


@app.command("validate")
def validate(
    params_file: Path = ParamsOption,
    corpus: Path = typer.Option(
        None, help="Corpus folder (default: annotate.out_dir, the annotated corpus)."
    ),
    metrics: Path = typer.Option(None, help="JSON result (default: validation.metrics_file)."),
    report: Path = typer.Option(None, help="HTML report (default: validation.report_file)."),
    timings: Path = typer.Option(
        None, help="Also write the run's timings here (JSON; kept out of the metrics)."
    ),
) -> None:
    """DVC stage validate_corpus: run the expectation suites; exit 1 when a critical expectation fails."""
    from regionmed.params_pipeline import load_pipeline_params
    from regionmed.validation import stage

    with _stage("validate_corpus"):
        result = stage.run(load_pipeline_params(params_file), corpus, metrics, report, timings, log=_log)
    _log(result.summary_line())
    # The process ends here. Collecting GX's many objects at interpreter exit took ~1 s (measured, about
    # a third of a default validation); frozen objects are skipped by the final collections. Files are
    # written and atexit handlers still run.
    import gc

    gc.freeze()


@train_app.command("annotator")
def train_annotator_cmd(params_file: Path = ParamsOption) -> None:
    """DVC stage train_annotator: with annotate.localizer auto, a RegionMed model trained on the corpus's
    given boxes for annotate_regions to place the reports' findings with (when the corpus needs one)."""
    from regionmed.annotation import annotator_stage
    from regionmed.params_pipeline import load_pipeline_params

    with _stage("train_annotator"):
        result = annotator_stage.run(load_pipeline_params(params_file), log=_log)
    _log(result.summary_line())


@train_app.command("tokenizer")
def train_tokenizer(
    params_file: Path = ParamsOption,
    out: Path = typer.Option(..., help="Tokenizer folder to write (dvc.yaml: paths.tokenizer)."),
) -> None:
    """DVC stage tokenizer: a WordPiece tokenizer trained on the train split's texts."""
    from regionmed.params_pipeline import load_pipeline_params
    from regionmed.training import tokenizer_stage

    with _stage("tokenizer"):
        result = tokenizer_stage.run(load_pipeline_params(params_file), out)
    _log(result.summary_line())


@train_app.command("phase")
def train_phase(
    phase: str = typer.Argument(..., help="global | region | joint | baseline"),
    params_file: Path = ParamsOption,
    init_from: Path = typer.Option(None, help="Exported model to warm-start from."),
    out: Path = typer.Option(..., help="Folder to export the trained model to."),
    metrics: Path = typer.Option(..., help="JSON summary of the phase (DVC metrics)."),
    tokenizer: Path = typer.Option(..., help="Tokenizer folder (dvc.yaml: paths.tokenizer)."),
    state_dir: Path = typer.Option(
        Path(".state/checkpoints"), help="Resumable checkpoints (outside DVC outs)."
    ),
    log_dir: Path = typer.Option(None, help="DVCLive folder for the training curves."),
) -> None:
    """DVC stages pretrain_*: train one phase and export the model (resumes an interrupted run)."""
    from regionmed.params_pipeline import load_pipeline_params
    from regionmed.training import stage

    with _stage(f"pretrain_{phase}"):
        params = load_pipeline_params(params_file)
        result = stage.run(params, phase, tokenizer, out, metrics, init_from, state_dir, log_dir)
    _log(result.summary_line())


@app.command("evaluate")
def evaluate(params_file: Path = ParamsOption) -> None:
    """DVC stage evaluate: candidate and baseline on the test split, with bootstrap intervals."""
    from regionmed.evaluation import stage
    from regionmed.params_pipeline import load_pipeline_params

    with _stage("evaluate"):
        result = stage.run(load_pipeline_params(params_file), log=_log)
    _log(result.summary_line())


@app.command("gate")
def gate(params_file: Path = ParamsOption) -> None:
    """DVC stage gate: floors, champion/challenger and baseline checks; exit 1 when any fails."""
    from regionmed.evaluation import gate_stage
    from regionmed.params_pipeline import load_pipeline_params

    with _stage("gate"):
        result = gate_stage.run(load_pipeline_params(params_file), log=_log)
    _log(result.summary_line())


@app.command("package")
def package_cmd(
    params_file: Path = ParamsOption,
    force: bool = typer.Option(
        False, "--force", help="Package even when the gate did not pass (recorded as forced)."
    ),
    no_build: bool = typer.Option(
        False, "--no-build", help="Only save the model into the store (no bentoml build)."
    ),
) -> None:
    """DVC stage package: the gated model into the BentoML store, a Bento, and the new champion."""
    from regionmed.params import load_params
    from regionmed.serving import stage

    with _stage("package"):
        params = load_params(params_file)
        result = stage.run(params, force=force, build=False if no_build else None, log=_log)
    _log(result.summary_line())


@app.command("monitor-reference")
def monitor_reference_cmd(params_file: Path = ParamsOption) -> None:
    """DVC stage monitor_reference: the packaged model's drift reference (monitor.reference_dir)."""
    from regionmed.monitoring import reference_stage
    from regionmed.params import load_params

    with _stage("monitor_reference"):
        result = reference_stage.run(load_params(params_file), log=_log)
    _log(result.summary_line())


@app.command("container")
def container_cmd(
    params_file: Path = ParamsOption,
    base: bool = typer.Option(
        False, "--base", help="Make the local base image if the Bento needs it (offline)."
    ),
    no_build: bool = typer.Option(False, "--no-build", help="Reuse the image if it exists."),
    bento: str = typer.Option(None, help="Bento tag (default: the one the package stage built)."),
    port: int = typer.Option(None, help="Host port on 127.0.0.1 (default: a free one)."),
    log_dir: Path = typer.Option(
        None, help="Host folder for the embedding log (default: serving.embedding_log.dir)."
    ),
    keep_running: bool = typer.Option(False, "--keep-running", help="Leave the container running."),
) -> None:
    """Build the Bento's Docker image, run it on 127.0.0.1 with an API key, the embedding-log folder
    mounted and --restart unless-stopped (Docker brings it back after a crash or a daemon restart), wait
    for /readyz, check the key, stop it with SIGTERM (docs/serving.md#container)."""
    import json

    from regionmed.params import load_params
    from regionmed.serving.container import ContainerError
    from regionmed.serving.container_path import container_path

    try:
        record = container_path(
            load_params(params_file),
            make_base=base,
            build=not no_build,
            bento=bento,
            port=port,
            log_dir=log_dir,
            keep_running=keep_running,
            log=console.print,
        )
    except ContainerError as exc:
        console.print(f"container failed: {exc}", markup=False, highlight=False)
        raise typer.Exit(1) from None
    print(json.dumps(record, indent=1))


@app.command("monitor")
def monitor_cmd(
    params_file: Path = ParamsOption,
    log_dir: Path = typer.Option(None, help="Embedding log folder (default: serving.embedding_log.dir)."),
    since: str = typer.Option(
        None, help="Window start (ISO time, UTC when naive; default: end - window hours)."
    ),
    until: str = typer.Option(None, help="Window end: an ISO time or 'now' (default: monitor.window_end)."),
    window_hours: float = typer.Option(None, help="Window length in hours (default: monitor.window_hours)."),
    report_dir: Path = typer.Option(None, help="HTML folder (default: monitor.report_dir)."),
    summary: Path = typer.Option(None, help="JSON summary (default: monitor.summary_file)."),
    fail_on_drift: bool = typer.Option(
        False, "--fail-on-drift", help="Exit 1 (a failed check) when drift is found (for scripts)."
    ),
) -> None:
    """DVC stage monitor: drift of the served embeddings (a window of the embedding log) against the
    packaged model's test split; exit 0 whatever the finding (drift, no drift, not enough data)."""
    from regionmed.monitoring import stage
    from regionmed.params import load_params

    with _stage("monitor"):
        result = stage.run(
            load_params(params_file),
            log_dir=log_dir,
            since=since,
            until=until,
            window_hours=window_hours,
            report_dir=report_dir,
            summary_file=summary,
            fail_on_drift=fail_on_drift,
            log=_log,
        )
    _log(result.summary_line())


@app.command("docs")
def docs_cmd(
    write: bool = typer.Option(False, "--write", help="Rewrite the stale blocks (default: only check)."),
    root: Path = typer.Option(Path("."), help="The repository root."),
) -> None:
    """Render the numbers in the docs' marked blocks (<!-- numbers:NAME -->) from metrics/*.json and
    benchmarks/results/*.json. Exit 1 when a block is stale (with --write: rewritten, exit 0), 2 when a
    block names an unknown block or source."""
    from regionmed.publish.blocks import BLOCKS
    from regionmed.publish.render import publish

    problems = publish(root, BLOCKS, write=write)
    for problem in problems:
        console.print(str(problem), markup=False, highlight=False)
    if any(p.kind == "error" for p in problems):
        raise typer.Exit(2)
    stale = [p for p in problems if p.kind == "stale"]
    if stale and not write:
        console.print("stale blocks: run `python -m regionmed docs --write` (make docs)")
        raise typer.Exit(1)
    console.print(f"{len(stale)} block(s) rewritten" if write else "every block is current")


@app.command("dvc-deps")
def dvc_deps_cmd(
    check: bool = typer.Option(False, "--check", help="Only list the stages whose code deps differ."),
    dvc_file: Path = typer.Option(Path("dvc.yaml"), help="The pipeline file."),
) -> None:
    """Write each stage's regionmed/ code deps in dvc.yaml from its command's imports (the rest of the
    file is kept). With --check: exit 1 when a stage's declared code deps are not its imports."""
    from regionmed.devtools.stage_deps import sync_dvc_yaml

    stale = sync_dvc_yaml(dvc_file, write=not check)
    for entry in stale:
        console.print(str(entry), markup=False, highlight=False)
    if stale and check:
        console.print("stale code deps: run `python -m regionmed dvc-deps`")
        raise typer.Exit(1)
    console.print(f"{len(stale)} stage(s) rewritten" if stale else "every stage's code deps are current")


if __name__ == "__main__":
    app()
