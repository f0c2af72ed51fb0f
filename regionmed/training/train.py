"""``train(...)``: one progressive phase, from params to an exported model folder.

Phases (one DVC stage each): ``global`` (encoders, global loss; a global-only model),
``region`` (warm-started from global; ROI processor and region loss, encoders partly frozen),
``joint`` (warm-started from region; every loss) and ``baseline`` (a global-only CLIP with as many
steps as the three phases together). ``steps: 0`` passes the warm-start weights through, so a
zero-step global phase gives joint-from-start training.

Resumable: Lightning checkpoints go to ``state_dir`` (outside the stage's DVC outs, which DVC
deletes before a rerun) under :func:`run_fingerprint`, a hash of everything that defines the run
(the phase's own params, its step budget, seed, model and train params, the corpus manifest,
the tokenizer and the warm-start weights); a rerun with the same fingerprint resumes from
the last checkpoint, any other starts from step 0, and a finished run removes its checkpoints.
A resumed run goes on exactly where the checkpoint was taken (the same batches in the same order,
the same weights at the end as an uninterrupted run); a checkpoint that cannot be read is set aside
and the phase starts over (regionmed/training/resume.py).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
import time
from pathlib import Path

import lightning as L
from lightning.pytorch.callbacks import ModelCheckpoint

from regionmed.corpus.images import sha256_file
from regionmed.corpus.schema import MANIFEST_FILE
from regionmed.model.io import WEIGHTS_FILE, export_model, load_model
from regionmed.model.regionclip import RegionCLIP
from regionmed.params_pipeline import PhaseParams, PipelineParams
from regionmed.progress import LOG_EVERY_PERCENT, on_terminal
from regionmed.training.data import AugmentConfig, CorpusDataModule, RegionWeighting
from regionmed.training.freeze import freeze_bottom_layers
from regionmed.training.module import OptimConfig, RegionMedModule, seed_everything
from regionmed.training.resume import AtomicCheckpointIO, usable_checkpoint

PHASE_ORDER = ("global", "region", "joint")
CHECKPOINT_NAME = "last"


def phase_steps(params: PipelineParams, phase: str) -> int:
    """The baseline's ``steps: null`` means the three progressive phases together (a fair budget)."""
    spec = params.phases[phase]
    if spec.steps is None:
        return sum(params.phases[p].steps or 0 for p in PHASE_ORDER)
    return spec.steps


def build_model(params: PipelineParams, tokenizer, spec: PhaseParams, init_from: Path | None) -> RegionCLIP:
    """A fresh model for the phase; with ``init_from``, the shared weights of an exported model."""
    model = RegionCLIP(
        params.model,
        vocab_size=len(tokenizer),
        pad_token_id=tokenizer.pad_token_id or 0,
        global_only=spec.global_only,
    )
    if init_from is not None:
        source, _ = load_model(init_from)
        missing, unexpected = model.load_state_dict(source.state_dict(), strict=False)
        region_only = ("roi.", "region_proj.", "box_head.")
        if unexpected or any(not k.startswith(region_only) for k in missing):
            raise ValueError(
                f"{init_from} does not fit this model: missing {missing[:5]}, unexpected {unexpected[:5]}"
            )
    return model


def train(
    params: PipelineParams,
    phase: str,
    corpus_dir: Path,
    tokenizer_dir: Path,
    out_dir: Path,
    init_from: Path | None = None,
    state_dir: Path = Path(".state/checkpoints"),
    log_dir: Path | None = None,
) -> dict:
    """Train one phase and export the model to ``out_dir``; returns the phase's summary metrics."""
    from transformers import AutoTokenizer

    params.check_model_fits_corpus()
    t, spec = params.train, params.phases[phase]
    steps = phase_steps(params, phase)
    seed_everything(params.seed)
    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir))
    model = build_model(params, tokenizer, spec, init_from)
    freeze_bottom_layers(model.image_encoder, spec.freeze_image_layers)
    freeze_bottom_layers(model.text_encoder, spec.freeze_text_layers)
    started = time.perf_counter()
    summary = {
        "phase": phase,
        "steps": steps,
        "global_only": spec.global_only,
        "parameters": sum(p.numel() for p in model.parameters()),
        "trainable_parameters": sum(p.numel() for p in model.parameters() if p.requires_grad),
    }
    if steps > 0:
        datamodule = CorpusDataModule(
            corpus_dir,
            tokenizer,
            params.model.vision.channels,
            params.model.text.max_length,
            t.batch_size,
            t.max_regions_per_image,
            AugmentConfig(t.augment.max_shift, t.augment.intensity, t.augment.location_free),
            t.num_workers,
            params.seed,
            t.eval_batch_size,
            RegionWeighting(t.annotated_region_weight, t.confidence_weighted),
        )
        module = RegionMedModule(
            model,
            spec.loss_weights,
            OptimConfig(
                spec.lr,
                t.weight_decay,
                min(t.warmup_steps, steps // 2),
                steps,
                t.gradient_clip_val,
                fused=t.precision != "16-mixed",
                box_head_lr=t.box_head_lr,
            ),
            grounding_centre=t.grounding_centre_weight,
        )
        ckpt_dir = _checkpoint_dir(
            state_dir, phase, run_fingerprint(params, phase, corpus_dir, tokenizer_dir, init_from)
        )
        trainer = _trainer(params, steps, ckpt_dir, log_dir)
        resume, summary["resumed_from_step"] = usable_checkpoint(ckpt_dir / f"{CHECKPOINT_NAME}.ckpt", _say)
        if resume is not None:
            _say(f"resuming phase {phase} from step {summary['resumed_from_step']} ({resume})")
        trainer.fit(
            module,
            datamodule=datamodule,
            ckpt_path=str(resume) if resume is not None else None,
            weights_only=True,
        )
        summary.update({k: round(float(v), 6) for k, v in trainer.callback_metrics.items()})
        shutil.rmtree(ckpt_dir, ignore_errors=True)
    elif log_dir is not None:
        # a skipped phase has no curves, but its stage still declares the log folder as an output
        Path(log_dir).mkdir(parents=True, exist_ok=True)
        (Path(log_dir) / "SKIPPED").write_text(f"phase {phase} ran 0 steps: the weights passed through\n")
    summary["seconds"] = round(time.perf_counter() - started, 1)
    model.requires_grad_(True)
    export_model(
        model.cpu().eval(),
        tokenizer,
        params.model,
        out_dir,
        extra_meta={"phase": phase, "steps": steps, "init_from": str(init_from) if init_from else None},
    )
    return summary


class LogProgress(L.Callback):
    """Without a terminal (dvc repro, Prefect logs): a line with the step and the training loss every
    ``LOG_EVERY_PERCENT`` per cent of the steps, instead of a progress bar."""

    def __init__(self, total_steps: int):
        self.total, self.last = max(total_steps, 1), -1
        self.every = max(1, self.total * LOG_EVERY_PERCENT // 100)
        self.start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        step = trainer.global_step
        if step != self.last and (step % self.every == 0 or step == self.total):
            self.last = step
            loss = trainer.callback_metrics.get("train/loss")
            shown = f", loss {float(loss):.4f}" if loss is not None else ""
            print(
                f"step {step}/{self.total} ({100 * step // self.total}%{shown}, "
                f"{time.perf_counter() - self.start:.0f} s)",
                file=sys.stderr,
                flush=True,
            )


def _trainer(params: PipelineParams, steps: int, ckpt_dir: Path, log_dir: Path | None) -> L.Trainer:
    t = params.train
    # last.ckpt every N steps: what an interrupted run resumes from
    callbacks = [
        ModelCheckpoint(
            dirpath=ckpt_dir, save_top_k=0, save_last=True, every_n_train_steps=t.checkpoint_every_n_steps
        )
    ]
    bar = on_terminal()
    if not bar:
        callbacks.append(LogProgress(steps))
    loggers = []
    if log_dir is not None:
        from dvclive.lightning import DVCLiveLogger

        loggers.append(DVCLiveLogger(dir=str(log_dir), save_dvc_exp=False, dvcyaml=False))
    return L.Trainer(
        max_steps=steps,
        accelerator=t.accelerator,
        devices=t.devices,
        num_nodes=t.num_nodes,
        strategy=t.strategy,
        precision=t.precision,
        accumulate_grad_batches=t.accumulate_grad_batches,
        val_check_interval=min(t.val_every_n_steps, steps),
        check_val_every_n_epoch=None,
        num_sanity_val_steps=0,
        callbacks=callbacks,
        plugins=[AtomicCheckpointIO()],  # a killed run leaves the last whole checkpoint, never a torn one
        logger=loggers or False,
        enable_progress_bar=bar,
        enable_model_summary=False,
        deterministic=t.deterministic and t.accelerator == "cpu",
        log_every_n_steps=min(10, steps),
        default_root_dir=str(ckpt_dir),
    )


def run_fingerprint(
    params: PipelineParams, phase: str, corpus_dir: Path, tokenizer_dir: Path, init_from: Path | None
) -> str:
    """The identity of a training run: a checkpoint is resumed only by a run with the same one."""
    identity = {
        "phase": phase,
        "phase_params": params.phases[phase].model_dump(mode="json"),
        "steps": phase_steps(params, phase),
        "seed": params.seed,
        "model": params.model.model_dump(mode="json"),
        "train": params.train.model_dump(mode="json"),
        # the corpus as built (its manifest holds every image's hash), not the params that built it
        "manifest": sha256_file(Path(corpus_dir) / MANIFEST_FILE),
        "tokenizer": {f.name: sha256_file(f) for f in sorted(Path(tokenizer_dir).iterdir()) if f.is_file()},
        "init": None if init_from is None else sha256_file(Path(init_from) / WEIGHTS_FILE),
    }
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]


def _checkpoint_dir(state_dir: Path, phase: str, fingerprint: str) -> Path:
    """The run's own folder; checkpoints of the phase's other runs (other fingerprints) are removed."""
    phase_dir = state_dir / phase
    for stale in phase_dir.glob("*"):
        if stale.name != fingerprint:
            shutil.rmtree(stale, ignore_errors=True)
    return phase_dir / fingerprint


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)
