"""Training step time: RegionMed (region path) vs the global-only baseline, same backbone and batch.

    python benchmarks/bench_train.py [--steps 6] [--rounds 3] [--batch 64] [--bf16-only] [--no-crop]
        [--roi '{"cell_path": "direct"}'] [--fusion-dim 96] [--corpus data/corpus --tokenizer
        models/tokenizer] [--device cuda --peak-tflops 989]

Measures forward + backward + fused AdamW steps on a real batch of the corpus, in one process, for:
baseline (global loss), baseline with the joint phase's text levels, RegionMed region phase (all
layers trainable, and with the bottom layers that phase's params freeze) and joint (all losses),
joint with the crop branch, each in fp32 and bf16 autocast; the variants take turns in rounds so
that the machine's noise hits them alike. Prints ms/step, pairs/s and ratios to the baseline of
the same precision (joint rows also to the baseline with the same text levels). Needs a built
corpus and tokenizer (`dvc repro tokenizer`), or builds a small one.

Each row also gives the model FLOPs of one step (forward + backward, counted by torch's
FlopCounterMode: matmuls and attention, not element-wise ops or the optimizer) and the achieved
TFLOP/s; with ``--peak-tflops`` (the device's dense peak at that precision) the MFU. On a GPU
(``--device cuda``) steps are timed between ``cuda.synchronize`` calls. The figures go to
benchmarks/results/training_step.json (``--results``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch

from regionmed.env import configure_environment
from regionmed.model.config import ModelConfig
from regionmed.model.losses import ClipLoss, hierarchical_loss
from regionmed.model.regionclip import RegionCLIP
from regionmed.params import load_params
from regionmed.publish.record import Record, results_option
from regionmed.training.data import AugmentConfig, CorpusDataModule
from regionmed.training.freeze import freeze_bottom_layers
from regionmed.training.module import attention_kernels

REPO = Path(__file__).resolve().parents[1]
# the region phase with the bottom encoder layers its params freeze: what pretrain_region's steps cost
REGION_AS_STAGED = "RegionMed region phase, params' frozen layers"


def _corpus_and_tokenizer(args, params):
    if Path(args.corpus).exists() and Path(args.tokenizer).exists():
        return Path(args.corpus), Path(args.tokenizer)
    from regionmed.corpus.build import build_corpus
    from regionmed.model.tokenizer import train_wordpiece_tokenizer
    from regionmed.training.texts import corpus_texts

    tmp = Path(tempfile.mkdtemp(prefix="bench_train_"))
    small = load_params(REPO / "params.yaml", {"corpus": {"synthetic": {"n_images": 600}}})
    build_corpus(small, tmp / "corpus", progress=False)
    train_wordpiece_tokenizer(corpus_texts(tmp / "corpus"), params.model.text.vocab_size, tmp / "tokenizer")
    return tmp / "corpus", tmp / "tokenizer"


def _to_device(value, device: torch.device):
    if isinstance(value, torch.Tensor):
        return value.to(device)
    if isinstance(value, dict):
        return {k: _to_device(v, device) for k, v in value.items()}
    return value


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _forward_backward(model, batch, weights, levels, bf16, device: torch.device) -> None:
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
        with attention_kernels(device):  # what training does
            out = model(batch, text_levels=levels, ground_cells="grounding" in weights)
        loss, _ = hierarchical_loss(out, weights, ClipLoss())
    loss.backward()


def _train_step(model, opt, batch, weights, levels, bf16, device: torch.device) -> None:
    _forward_backward(model, batch, weights, levels, bf16, device)
    opt.step()
    opt.zero_grad(set_to_none=True)


def _time_steps(model, opt, batch, weights, levels, steps, bf16, device: torch.device) -> list[float]:
    times = []
    for i in range(steps + 2):  # two warm-up steps per round (caches, allocator)
        _sync(device)
        start = time.perf_counter()
        _train_step(model, opt, batch, weights, levels, bf16, device)
        _sync(device)
        if i >= 2:
            times.append(time.perf_counter() - start)
    return times


def _step_flops(model, batch, weights, levels, bf16, device: torch.device) -> int:
    """Model FLOPs of one training step (forward + backward; matmuls and attention, as torch's
    FlopCounterMode counts them): the numerator of MFU. The optimizer step is left out."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        _forward_backward(model, batch, weights, levels, bf16, device)
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops()


def _trainable(cfg: ModelConfig, weights: dict[str, float]) -> dict[str, float]:
    """The phase's loss weights a model of ``cfg`` can train: no box loss without a box head."""
    return {k: v for k, v in weights.items() if k != "box" or cfg.roi.box_head is not None}


def _time(fn, steps: int) -> float:
    """Median ms of ``fn`` (a forward + backward) over ``steps`` calls after two warm-up calls."""
    times = []
    for i in range(steps + 2):
        start = time.perf_counter()
        fn()
        if i >= 2:
            times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def _parts(model: RegionCLIP, batch: dict, steps: int, device: torch.device) -> dict[str, float]:
    """Forward + backward ms (bf16 autocast) of the pieces a RegionMed step adds to a baseline step,
    and of the towers both share, each alone on the benchmark batch."""
    from regionmed.model.regionclip import encode_unique
    from regionmed.model.roi import cell_boxes, pack_by_image

    def run(forward):
        def fn():
            with torch.autocast(device.type, dtype=torch.bfloat16), attention_kernels(device):
                out = forward()
            sum(o.float().sum() for o in out).backward()
            model.zero_grad(set_to_none=True)
            _sync(device)

        return fn

    pixels, bsz = batch["pixels"], batch["pixels"].shape[0]
    with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16):
        _, global_feat, grid = model._features(pixels)
    global_feat, grid = global_feat.float().requires_grad_(), grid.float().requires_grad_()
    given, _, _ = pack_by_image(batch["region_boxes"], batch["region_batch"], bsz)
    cells = cell_boxes(*grid.shape[-2:], device=grid.device)
    cell_attend = model.config.roi.cell_path == "fusion"

    def text(key):
        return encode_unique(
            model._encode_text_raw,
            [(batch[key]["input_ids"], batch[key]["attention_mask"])],
            model.pad_token_id,
        )

    return {
        "image tower": _time(run(lambda: model._features(pixels)[1:]), steps),
        "report text": _time(run(lambda: text("report")), steps),
        "region texts (phrases + hard negatives)": _time(run(lambda: text("text_table")), steps),
        "ROI processor (64 cells + annotated boxes)": _time(
            run(
                lambda: model.roi.region_features(
                    grid, global_feat, [cells, given], None, [cell_attend, True]
                )
            ),
            steps,
        ),
    }


def main() -> None:
    configure_environment()
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch", type=int, default=None)
    parser.add_argument("--corpus", default="data/corpus")
    parser.add_argument("--tokenizer", default="models/tokenizer")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")
    parser.add_argument(
        "--peak-tflops",
        type=float,
        default=None,
        help="the device's peak dense TFLOP/s at the benchmark's precision (e.g. 989 for an "
        "H100 SXM in bf16): prints MFU = model FLOPs per second / peak",
    )
    parser.add_argument(
        "--fusion-dim",
        type=int,
        action="append",
        default=[],
        help="also time the region phase and joint at this model.roi.fusion_dim (repeatable)",
    )
    parser.add_argument(
        "--roi",
        action="append",
        default=[],
        type=json.loads,
        help="also time the region phase and joint with these model.roi settings, as JSON "
        '(repeatable), e.g. \'{"cell_path": "direct", "grid_sizes": [2, 3, 4]}\'',
    )
    parser.add_argument(
        "--model",
        type=json.loads,
        default=None,
        help="overrides of the params model block for every variant, as JSON, e.g. a wider and "
        'deeper ViT: \'{"vision": {"hidden": 384, "layers": 12, "heads": 6, "mlp": 1536}}\'',
    )
    parser.add_argument("--no-crop", action="store_true", help="skip the (slow) crop-branch row")
    parser.add_argument("--bf16-only", action="store_true", help="skip the fp32 rows")
    parser.add_argument(
        "--parts",
        action="store_true",
        help="also time the pieces of a RegionMed step alone (bf16): towers, region texts, ROI",
    )
    results_option(parser, "training_step")
    args = parser.parse_args()
    record = Record("training_step")
    figures: dict = {"batch": None, "rows": [], "parts": []}
    params = load_params(REPO / "params.yaml", {"model": args.model} if args.model else None)
    batch_size = args.batch or params.train.batch_size
    corpus, tokenizer_dir = _corpus_and_tokenizer(args, params)
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir))
    dm = CorpusDataModule(
        corpus,
        tokenizer,
        params.model.vision.channels,
        params.model.text.max_length,
        batch_size,
        params.train.max_regions_per_image,
        AugmentConfig(**params.train.augment.model_dump()),
        seed=params.seed,
    )  # as training batches are
    dm.setup()
    device = torch.device(args.device)
    batch = _to_device(next(iter(dm.train_dataloader())), device)
    joint = dict(params.phases["joint"].loss_weights)
    crop_cfg = ModelConfig.model_validate(
        {**params.model.model_dump(), "roi": {**params.model.roi.model_dump(), "crop_branch": True}}
    )
    levels4 = ("report", "modality_text", "anatomy_text", "finding_text")
    # the joint phase's text-level losses without the region path: what the region path adds to a joint step
    text_levels_only = {k: v for k, v in joint.items() if k not in ("region", "grounding", "negation")}
    variants = [
        ("baseline (global-only, global loss)", params.model, True, {"global": 1.0}, ("report",)),
        ("baseline + joint's text levels (global-only)", params.model, True, text_levels_only, levels4),
        (
            "RegionMed region phase (region + global loss)",
            params.model,
            False,
            dict(params.phases["region"].loss_weights),
            ("report",),
        ),
        (REGION_AS_STAGED, params.model, False, dict(params.phases["region"].loss_weights), ("report",)),
        ("RegionMed joint (all losses)", params.model, False, joint, levels4),
        ("RegionMed joint + crop branch", crop_cfg, False, joint, levels4),
    ]
    for overrides in [{"fusion_dim": width} for width in args.fusion_dim] + args.roi:
        cfg = ModelConfig.model_validate(
            {**params.model.model_dump(), "roi": {**params.model.roi.model_dump(), **overrides}}
        )
        label = ", ".join(f"{k} {v}" for k, v in overrides.items())
        variants += [
            (
                f"RegionMed region phase, {label}",
                cfg,
                False,
                _trainable(cfg, params.phases["region"].loss_weights),
                ("report",),
            ),
            (f"RegionMed joint, {label}", cfg, False, _trainable(cfg, joint), levels4),
        ]
    if args.no_crop:
        variants = [v for v in variants if "crop" not in v[0]]
    gpu = f", {torch.cuda.get_device_name(device)}" if device.type == "cuda" else ""
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores{gpu}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads; batch {batch_size}; {args.rounds} rounds of {args.steps} timed "
        f"steps per variant, the variants taking turns (median of all timed steps)"
    )
    n_regions = len(batch["region_boxes"])
    figures.update(
        batch=batch_size,
        steps=args.steps,
        rounds=args.rounds,
        regions=n_regions,
        region_texts=len(batch["text_table"]["input_ids"]),
        device=args.device,
        threads=torch.get_num_threads(),
    )
    print(
        f"batch holds {n_regions} annotated regions, "
        f"{len(batch['text_table']['input_ids'])} distinct region texts"
    )
    for bf16 in (True,) if args.bf16_only else (False, True):
        runs = []
        for name, cfg, global_only, weights, levels in variants:
            torch.manual_seed(0)
            model = RegionCLIP(cfg, vocab_size=len(tokenizer), global_only=global_only).to(device)
            if name == REGION_AS_STAGED:
                freeze_bottom_layers(model.image_encoder, params.phases["region"].freeze_image_layers)
                freeze_bottom_layers(model.text_encoder, params.phases["region"].freeze_text_layers)
            runs.append(
                (
                    name,
                    model,
                    weights,
                    levels,
                    torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], 1e-4, fused=True),
                    [],
                )
            )
        # rounds in turn: a slow minute on this shared machine then hits every variant alike
        for _ in range(args.rounds):
            for _name, model, weights, levels, opt, times in runs:
                times += _time_steps(model, opt, batch, weights, levels, args.steps, bf16, device)
        ms = {name: statistics.median(times) * 1000 for name, *_, times in runs}
        base, text_base = ms[variants[0][0]], ms[variants[1][0]]
        for name, model, weights, levels, *_ in runs:
            params_m = sum(p.numel() for p in model.parameters()) / 1e6
            vs_text = f"  {ms[name] / text_base:5.2f}x baseline+levels" if "joint" in name else ""
            flops = _step_flops(model, batch, weights, levels, bf16, device)
            achieved = flops / ms[name] / 1e9  # TFLOP/s
            mfu = f"  MFU {achieved / args.peak_tflops:6.1%}" if args.peak_tflops else ""
            figures["rows"].append(
                {
                    "precision": "bf16" if bf16 else "fp32",
                    "model": name,
                    "params_m": round(params_m, 2),
                    "ms": round(ms[name], 1),
                    "pairs_per_s": round(batch_size / ms[name] * 1000),
                    "vs_baseline": round(ms[name] / base, 2),
                    "vs_text_levels": round(ms[name] / text_base, 2) if "joint" in name else None,
                    "gflop": round(flops / 1e9, 1),
                    "tflops": round(achieved, 3),
                    "mfu": round(achieved / args.peak_tflops, 3) if args.peak_tflops else None,
                }
            )
            print(
                f"{'bf16' if bf16 else 'fp32':>4}  {name:<60} {params_m:5.2f}M params  "
                f"{ms[name]:7.1f} ms/step  "
                f"{batch_size / ms[name] * 1000:6.0f} pairs/s  {ms[name] / base:5.2f}x baseline{vs_text}  "
                f"{flops / 1e9:6.1f} GFLOP/step  {achieved:6.3f} TFLOP/s{mfu}",
                flush=True,
            )
        if args.parts and bf16:
            region_model = next(
                model for name, model, *_ in runs if name.startswith("RegionMed region phase")
            )
            for part, part_ms in _parts(region_model, batch, args.steps * args.rounds, device).items():
                share = round(part_ms / base, 2)
                figures["parts"].append({"part": part, "ms": round(part_ms, 1), "share": share})
                print(
                    f"bf16  part: {part:<54} {part_ms:7.1f} ms fwd+bwd  "
                    f"{part_ms / base:5.2f} of a baseline step",
                    flush=True,
                )
    record.write(figures, args.results)


if __name__ == "__main__":
    main()
