"""Text bookkeeping: encode each distinct text once, and stable ids for "same text".

Region phrases and hard negatives repeat a lot in a batch ("the left lung" in every chest image;
nine modality sentences in all), and running the text tower on them is most of the region path's
extra cost. Rows of token ids are deduplicated before the tower and indexed back after.

Text ids are a hash of the token ids, so two ranks of a distributed run (same tokenizer) give the
same id to the same text without exchanging strings: the losses use them to stop a text from
being a negative of an identical one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

# Two hashes modulo primes below 2**31, combined into one int64: no overflow, ~1e-18 collisions.
_PRIMES = (2_147_483_647, 2_147_483_629)
_BASES = (1_000_003, 999_983)


def token_ids_hash(input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """``[B, L]`` ids and mask → ``[B]`` int64, equal for equal texts whatever the padding."""
    ids = input_ids.long() + 1
    keep = attention_mask.bool()
    parts = []
    for prime, base in zip(_PRIMES, _BASES):
        h = torch.zeros(ids.shape[0], dtype=torch.long, device=ids.device)
        for t in range(ids.shape[1]):
            h = torch.where(keep[:, t], (h * base + ids[:, t]) % prime, h)
        parts.append(h)
    return parts[0] * _PRIMES[1] + parts[1]


def pad_to(input_ids: torch.Tensor, attention_mask: torch.Tensor, length: int, pad_id: int = 0):
    extra = length - input_ids.shape[1]
    if extra <= 0:
        return input_ids, attention_mask
    return (torch.nn.functional.pad(input_ids, (0, extra), value=pad_id),
            torch.nn.functional.pad(attention_mask, (0, extra), value=0))


def encode_unique(encode: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
                  batches: Sequence[tuple[torch.Tensor, torch.Tensor]], pad_id: int = 0) -> list[torch.Tensor]:
    """Encode several tokenised batches with one call of ``encode`` on their distinct rows.

    Rows are padded to a common length (padding is masked, so an encoding does not depend on it),
    deduplicated, grouped by length (1, 2, 3-4, 5-8, ... tokens), each group trimmed to its longest
    text and encoded, then indexed back per batch.
    """
    if not batches:
        return []
    length = max(ids.shape[1] for ids, _ in batches)
    padded = [pad_to(ids, mask, length, pad_id) for ids, mask in batches]
    ids = torch.cat([p[0] for p in padded])
    mask = torch.cat([p[1] for p in padded]).long()
    if ids.shape[0] == 0:
        return list(encode(ids, mask).split([0] * len(batches)))
    key = torch.where(mask.bool(), ids, torch.full_like(ids, pad_id))
    unique, inverse = torch.unique(torch.cat([key, mask], dim=1), dim=0, return_inverse=True)
    u_ids, u_mask = unique[:, :length], unique[:, length:]
    lengths = u_mask.sum(1)
    # Encode by length bucket: a batch of short phrases padded to a report's length would cost
    # as much as the reports (a benchmark batch: 127 phrases of <= 13 tokens padded to 64).
    bucket = torch.ceil(torch.log2(lengths.clamp(min=1).float())).long()
    parts, order = [], []
    for value in torch.unique(bucket).tolist():
        rows = (bucket == value).nonzero().squeeze(1)
        width = max(int(lengths[rows].max()), 1)
        parts.append(encode(u_ids[rows, :width], u_mask[rows, :width]))
        order.append(rows)
    encoded = torch.cat(parts)[torch.argsort(torch.cat(order))][inverse]
    return list(encoded.split([ids.shape[0] for ids, _ in batches]))


def encode_text_list(model, tokenizer, texts: Sequence[str], max_length: int | None = None,
                     batch_size: int = 256) -> torch.Tensor:
    """Strings → normalised text embeddings ``[len(texts), D]``, each distinct string encoded once."""
    index: dict[str, int] = {}
    positions = [index.setdefault(t, len(index)) for t in texts]
    distinct = list(index)
    max_length = max_length or model.config.text.max_length
    device = next(model.parameters()).device
    out = []
    for start in range(0, len(distinct), batch_size):
        enc = tokenizer(distinct[start:start + batch_size], padding=True, truncation=True,
                        max_length=max_length, return_tensors="pt")
        out.append(model.encode_text(enc["input_ids"].to(device), enc["attention_mask"].to(device)))
    if not out:
        return torch.zeros(0, model.config.embed_dim, device=device)
    return torch.cat(out)[torch.tensor(positions, device=device)]
