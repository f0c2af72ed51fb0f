"""Training step time: RegionMed (region path) vs the global-only baseline, same backbone and batch.

    python benchmarks/bench_train.py [--steps 8] [--batch 64] [--corpus data/corpus --tokenizer models/tokenizer]

Measures forward + backward + fused AdamW steps on real batches of the corpus, in one process,
for: baseline (global loss), RegionMed joint (all losses), RegionMed with the crop branch, each
in fp32 and bf16 autocast. Prints ms/step, pairs/s and ratios to the baseline of the same
precision. Needs a built corpus and tokenizer (`dvc repro tokenizer`), or builds a small one.
"""

from __future__ import annotations

import argparse
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
from regionmed.training.data import AugmentConfig, CorpusDataModule
from regionmed.training.module import attention_kernels

REPO = Path(__file__).resolve().parents[1]


def _corpus_and_tokenizer(args, params):
    if Path(args.corpus).exists() and Path(args.tokenizer).exists():
        return Path(args.corpus), Path(args.tokenizer)
    from regionmed.corpus.build import build_corpus
    from regionmed.model.tokenizer import train_wordpiece_tokenizer
    from regionmed.training.data import corpus_texts

    tmp = Path(tempfile.mkdtemp(prefix="bench_train_"))
    small = load_params(REPO / "params.yaml", {"corpus": {"synthetic": {"n_images": 600}}})
    build_corpus(small, tmp / "corpus", progress=False)
    train_wordpiece_tokenizer(corpus_texts(tmp / "corpus"), params.model.text.vocab_size, tmp / "tokenizer")
    return tmp / "corpus", tmp / "tokenizer"


def _time_steps(model, batch, weights, levels, steps, bf16) -> list[float]:
    opt = torch.optim.AdamW(model.parameters(), 1e-4, fused=True)
    loss_fn = ClipLoss()
    times = []
    for i in range(steps + 2):  # two warm-up steps
        start = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            with attention_kernels(torch.device("cpu")):  # what training does
                out = model(batch, text_levels=levels, ground_cells="grounding" in weights)
            loss, _ = hierarchical_loss(out, weights, loss_fn)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if i >= 2:
            times.append(time.perf_counter() - start)
    return times


def main() -> None:
    configure_environment()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--batch", type=int, default=None)
    parser.add_argument("--corpus", default="data/corpus")
    parser.add_argument("--tokenizer", default="models/tokenizer")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--fusion-dim", type=int, action="append", default=[],
                        help="also time the region phase and joint at this model.roi.fusion_dim (repeatable)")
    parser.add_argument("--bf16-only", action="store_true", help="skip the fp32 rows")
    args = parser.parse_args()
    params = load_params(REPO / "params.yaml")
    batch_size = args.batch or params.train.batch_size
    corpus, tokenizer_dir = _corpus_and_tokenizer(args, params)
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir))
    dm = CorpusDataModule(corpus, tokenizer, params.model.vision.channels, params.model.text.max_length, batch_size,
                          params.train.max_regions_per_image,
                          AugmentConfig(**params.train.augment.model_dump()), seed=params.seed)  # as training batches are
    dm.setup()
    batch = next(iter(dm.train_dataloader()))
    joint = dict(params.phases["joint"].loss_weights)
    crop_cfg = ModelConfig.model_validate({**params.model.model_dump(), "roi": {**params.model.roi.model_dump(),
                                                                               "crop_branch": True}})
    variants = [
        ("baseline (global-only, global loss)", params.model, True, {"global": 1.0}, ("report",)),
        ("RegionMed region phase (region + global loss)", params.model, False, dict(params.phases["region"].loss_weights),
         ("report",)),
        ("RegionMed joint (all losses)", params.model, False, joint,
         ("report", "modality_text", "anatomy_text", "finding_text")),
        ("RegionMed joint + crop branch", crop_cfg, False, joint,
         ("report", "modality_text", "anatomy_text", "finding_text")),
    ]
    for width in args.fusion_dim:
        narrow = ModelConfig.model_validate({**params.model.model_dump(),
                                             "roi": {**params.model.roi.model_dump(), "fusion_dim": width}})
        variants += [
            (f"RegionMed region phase, fusion_dim {width}", narrow, False, dict(params.phases["region"].loss_weights),
             ("report",)),
            (f"RegionMed joint, fusion_dim {width}", narrow, False, joint,
             ("report", "modality_text", "anatomy_text", "finding_text")),
        ]
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads; batch {batch_size}, {args.steps} timed steps (median)")
    n_regions = len(batch["region_boxes"])
    print(f"batch holds {n_regions} annotated regions, {len(batch['text_table']['input_ids'])} distinct region texts")
    for bf16 in (True,) if args.bf16_only else (False, True):
        base = None
        for name, cfg, global_only, weights, levels in variants:
            torch.manual_seed(0)
            model = RegionCLIP(cfg, vocab_size=len(tokenizer), global_only=global_only)
            ms = statistics.median(_time_steps(model, batch, weights, levels, args.steps, bf16)) * 1000
            base = base or ms
            params_m = sum(p.numel() for p in model.parameters()) / 1e6
            print(f"{'bf16' if bf16 else 'fp32':>4}  {name:<48} {params_m:5.2f}M params  {ms:7.0f} ms/step  "
                  f"{batch_size / ms * 1000:6.0f} pairs/s  {ms / base:5.2f}x baseline", flush=True)


if __name__ == "__main__":
    main()
