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
    """``[B, L]`` ids and mask → ``[B]`` int64, equal for equal texts whatever the padding.

    A polynomial hash of the kept tokens, ``sum(id_t * base ** (n - 1 - rank_t)) mod prime`` over
    the ``n`` kept tokens of a row (``rank_t``: the token's place among them), computed at once for
    every position: each term is below ``prime ** 2 < 2 ** 62`` and ``L`` of them below ``2 ** 63``.
    """
    ids = input_ids.long() + 1
    keep = attention_mask.bool()
    rank = keep.long().cumsum(1) - 1
    exponent = (keep.sum(1, keepdim=True) - 1 - rank).clamp(min=0)
    parts = []
    for prime, base in zip(_PRIMES, _BASES, strict=True):
        powers = torch.tensor(_powers(base, prime, ids.shape[1]), dtype=torch.long, device=ids.device)
        terms = torch.where(keep, (ids % prime) * powers[exponent] % prime, 0)
        parts.append(terms.sum(1) % prime)
    return parts[0] * _PRIMES[1] + parts[1]


def _powers(base: int, prime: int, n: int) -> list[int]:
    out = [1] * max(n, 1)
    for k in range(1, n):
        out[k] = out[k - 1] * base % prime
    return out


def pad_to(input_ids: torch.Tensor, attention_mask: torch.Tensor, length: int, pad_id: int = 0):
    extra = length - input_ids.shape[1]
    if extra <= 0:
        return input_ids, attention_mask
    return (
        torch.nn.functional.pad(input_ids, (0, extra), value=pad_id),
        torch.nn.functional.pad(attention_mask, (0, extra), value=0),
    )


# What one more call of the text tower costs, in padded tokens: on a 2-core CPU a forward + backward
# of a tiny batch takes ~3 ms, as long as ~300 tokens of a report batch (BENCHMARKS.md "Training step").
CALL_COST_TOKENS = 256


def length_buckets(lengths: torch.Tensor, call_cost_tokens: int = CALL_COST_TOKENS) -> torch.Tensor:
    """A bucket number per text (``lengths [N]``), for encoding each bucket padded to its longest.

    Power-of-two buckets (1, 2, 3-4, 5-8, ... tokens), then neighbours merged while merging pads
    fewer than ``call_cost_tokens`` extra tokens: a batch of short phrases padded to a report's
    length would cost as much as the reports, but so does a call per handful of phrases.
    """
    pow2 = torch.ceil(torch.log2(lengths.clamp(min=1).float())).long()
    values = torch.unique(pow2).tolist()
    groups = [[v] for v in values]  # ascending; merge the shorter group into its longer neighbour
    stats = {v: (int((pow2 == v).sum()), int(lengths[pow2 == v].max())) for v in values}
    merged = True
    while merged and len(groups) > 1:
        merged = False
        for i in range(len(groups) - 1):
            count = sum(stats[v][0] for v in groups[i])
            width, next_width = max(stats[v][1] for v in groups[i]), max(stats[v][1] for v in groups[i + 1])
            if count * (next_width - width) < call_cost_tokens:
                groups[i : i + 2] = [groups[i] + groups[i + 1]]
                merged = True
                break
    label = {v: k for k, group in enumerate(groups) for v in group}
    return torch.tensor([label[v] for v in pow2.tolist()], dtype=torch.long, device=lengths.device)


def encode_unique(
    encode: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    batches: Sequence[tuple[torch.Tensor, torch.Tensor]],
    pad_id: int = 0,
) -> list[torch.Tensor]:
    """Encode several tokenised batches with one call of ``encode`` per length bucket of their
    distinct rows.

    Rows are padded to a common length (padding is masked, so an encoding does not depend on it),
    deduplicated, grouped by :func:`length_buckets`, each group trimmed to its longest text and
    encoded, then indexed back per batch.
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
    bucket = length_buckets(lengths)
    parts, order = [], []
    for value in torch.unique(bucket).tolist():
        rows = (bucket == value).nonzero().squeeze(1)
        width = max(int(lengths[rows].max()), 1)
        parts.append(encode(u_ids[rows, :width], u_mask[rows, :width]))
        order.append(rows)
    encoded = torch.cat(parts)[torch.argsort(torch.cat(order))][inverse]
    return list(encoded.split([ids.shape[0] for ids, _ in batches]))


def encode_text_list(
    model, tokenizer, texts: Sequence[str], max_length: int | None = None, batch_size: int = 256
) -> torch.Tensor:
    """Strings → normalised text embeddings ``[len(texts), D]``, each distinct string encoded once."""
    index: dict[str, int] = {}
    positions = [index.setdefault(t, len(index)) for t in texts]
    distinct = list(index)
    max_length = max_length or model.config.text.max_length
    device = next(model.parameters()).device
    out = []
    for start in range(0, len(distinct), batch_size):
        enc = tokenizer(
            distinct[start : start + batch_size],
            padding=True,
            truncation=True,
            max_length=max_length,
            return_tensors="pt",
        )
        out.append(model.encode_text(enc["input_ids"].to(device), enc["attention_mask"].to(device)))
    if not out:
        return torch.zeros(0, model.config.embed_dim, device=device)
    return torch.cat(out)[torch.tensor(positions, device=device)]
