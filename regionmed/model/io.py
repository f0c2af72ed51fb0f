"""The one way in and out of an exported model: a folder, never a pickle.

Layout of an exported model folder::

    model.safetensors      weights (tied tensors stored once; the aliases in its metadata)
    config.json            {"format_version", "model": ModelConfig (every field), "global_only",
                            "vocab_size", "pad_token_id", "meta": {...}}
    hf/vision/config.json  the image tower's architecture (Hugging Face config)
    hf/text/config.json    the text tower's architecture
    tokenizer/             the tokenizer (``save_pretrained``)

The towers are rebuilt from their saved HF configs, so loading never needs the original
pretrained backbone (nor the network).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from transformers import AutoConfig, AutoTokenizer

from regionmed.atomic import NoSpace, atomic_dir
from regionmed.model.config import ModelConfig
from regionmed.model.regionclip import RegionCLIP

FORMAT_VERSION = 1
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
TOKENIZER_DIR = "tokenizer"
HF_DIR = "hf"
ALIASES_KEY = "aliases"


def split_shared(state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Keep one name per shared storage (safetensors refuses shared tensors): ``(tensors, alias -> kept)``."""
    kept: dict[str, torch.Tensor] = {}
    aliases: dict[str, str] = {}
    seen: dict[tuple, str] = {}
    for name, tensor in state.items():
        key = (
            (
                tensor.untyped_storage().data_ptr(),
                tensor.storage_offset(),
                tuple(tensor.shape),
                tuple(tensor.stride()),
                tensor.dtype,
            )
            if tensor.numel()
            else None
        )
        if key is not None and key in seen:
            aliases[name] = seen[key]
            continue
        if key is not None:
            seen[key] = name
        kept[name] = tensor.detach().cpu().contiguous().clone()
    return kept, aliases


def export_model(
    model: RegionCLIP, tokenizer, config: ModelConfig, out_dir: str | Path, extra_meta: dict | None = None
) -> Path:
    """Write ``model`` (with its tokenizer and config) into ``out_dir``, whole or not at all (the folder is
    written under a temporary name and renamed: regionmed/atomic.py); returns the folder."""
    try:
        with atomic_dir(out_dir) as tmp:
            _export_into(model, tokenizer, config, tmp, extra_meta)
    except NoSpace as exc:  # the weights are most of it: say how much that is
        weights = sum(t.numel() * t.element_size() for t in model.state_dict().values())
        raise NoSpace(exc.folder, needed=weights, written=exc.written) from exc.__cause__
    return Path(out_dir)


def canonical_header(path: Path) -> None:
    """Rewrite a safetensors file's JSON header with sorted keys, in place. safetensors writes its
    metadata from a hash map whose order changes from process to process, so the same weights gave
    different bytes (and DVC hashes) on every run; sorted, the same weights give the same file."""
    with open(path, "r+b") as f:
        size = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(size))
        text = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
        if len(text) > size:  # never for a header safetensors wrote compactly; keep the file as is then
            return
        f.seek(8)
        f.write(text.ljust(size))  # the format pads its header with spaces


def _export_into(
    model: RegionCLIP, tokenizer, config: ModelConfig, out: Path, extra_meta: dict | None
) -> None:
    tensors, aliases = split_shared(model.state_dict())
    save_file(
        tensors,
        str(out / WEIGHTS_FILE),
        metadata={"format": "pt", ALIASES_KEY: json.dumps(aliases, sort_keys=True)},
    )
    canonical_header(out / WEIGHTS_FILE)
    model.image_encoder.hf_config().save_pretrained(str(out / HF_DIR / "vision"))
    model.text_encoder.hf_config().save_pretrained(str(out / HF_DIR / "text"))
    tokenizer.save_pretrained(str(out / TOKENIZER_DIR))
    document = {
        "format_version": FORMAT_VERSION,
        "model": config.model_dump(mode="json"),
        "global_only": bool(model.global_only),
        "vocab_size": int(model.text_encoder.hf_config().vocab_size),
        "pad_token_id": int(model.pad_token_id),
        "meta": extra_meta or {},
    }
    (out / CONFIG_FILE).write_text(json.dumps(document, indent=2, sort_keys=True) + "\n")


# Fields added to ModelConfig after format 1 was first written, with the value a model exported before
# the field existed was built and trained with (the code of that time; git history of model/config.py).
# ModelConfig has no defaults (params.yaml is their one home), so an older config.json is completed
# from here, never from the settings classes; a field missing from both is an error naming it.
LEGACY_MODEL_FIELDS: dict[tuple[str, ...], object] = {
    ("text", "dropout"): 0.1,  # b444ab4: before it, the text tower was BERT with its own dropout 0.1
    ("roi", "fusion_dim"): None,  # 3f84e8a: before it, the fusion ran at the image encoder's width
    ("roi", "cell_path"): "fusion",  # 73774cb: before it, every patch cell took the whole region path
    ("roi", "box_head"): None,  # before it, ground()'s box was the best-scoring proposal (no box head)
}


def complete_legacy_config(model: dict) -> tuple[dict, list[str]]:
    """``model`` (a config.json's ``model`` entry) with the fields it lacks from
    :data:`LEGACY_MODEL_FIELDS`, and the dotted names of those filled in."""
    completed = json.loads(json.dumps(model))
    filled = []
    for keys, value in LEGACY_MODEL_FIELDS.items():
        section = completed
        for key in keys[:-1]:
            section = section.setdefault(key, {})
        if keys[-1] not in section:
            section[keys[-1]] = value
            filled.append(".".join(keys))
    return completed, filled


def read_config(path: str | Path) -> tuple[ModelConfig, dict]:
    """The ModelConfig of an exported model, and the whole ``config.json`` document (fields a model
    exported before they existed lacks are filled from :data:`LEGACY_MODEL_FIELDS`)."""
    document = json.loads((Path(path) / CONFIG_FILE).read_text())
    if document.get("format_version") != FORMAT_VERSION:
        raise ValueError(
            f"{path}: format_version {document.get('format_version')!r}, expected {FORMAT_VERSION}"
        )
    model, _ = complete_legacy_config(document["model"])
    return ModelConfig.model_validate(model), document


def load_model(path: str | Path, device: str | torch.device = "cpu"):
    """Rebuild an exported model from its folder: ``(model in eval mode on device, tokenizer)``."""
    path = Path(path)
    config, document = read_config(path)
    hf_configs = {side: AutoConfig.from_pretrained(str(path / HF_DIR / side)) for side in ("vision", "text")}
    model = RegionCLIP(
        config,
        vocab_size=document["vocab_size"],
        pad_token_id=document["pad_token_id"],
        global_only=document["global_only"],
        hf_configs=hf_configs,
    )
    state = load_file(str(path / WEIGHTS_FILE))
    with safe_open(str(path / WEIGHTS_FILE), framework="pt") as f:
        aliases = json.loads((f.metadata() or {}).get(ALIASES_KEY, "{}"))
    for alias, name in aliases.items():
        state[alias] = state[name]
    model.load_state_dict(state, strict=True)
    tokenizer = AutoTokenizer.from_pretrained(str(path / TOKENIZER_DIR))
    return model.to(device).eval(), tokenizer
