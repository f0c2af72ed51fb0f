"""A WordPiece tokenizer trained on the corpus's own texts, saved in Hugging Face format.

BERT conventions, built with the ``tokenizers`` library: BertNormalizer (lowercase, strip accents),
BertPreTokenizer (whitespace and punctuation), a WordPiece model with ``##`` continuations, the
specials ``[PAD] [UNK] [CLS] [SEP] [MASK]`` (ids 0..4) and ``[CLS] text [SEP]``. Wrapped as a fast
tokenizer, so ``AutoTokenizer.from_pretrained(folder)`` reloads it offline.

Why the vocabulary is learned here and not by ``tokenizers.trainers.WordPieceTrainer``: that
trainer is not deterministic (checked with tokenizers 0.23: two runs on the same texts in one
process gave different vocabularies). It numbers new pieces in hash-map order and breaks ties
between equally frequent merges by those numbers, so the same corpus gave a different tokenizer,
hence a different model, on every run of the DVC stage. :func:`learn_wordpiece_vocab` does the
same thing (frequency-ordered merges of adjacent pieces, as that trainer does) with ties broken by
the pieces' text.
"""

from __future__ import annotations

import heapq
from collections import Counter, defaultdict
from collections.abc import Iterable
from itertools import pairwise
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
from transformers import PreTrainedTokenizerFast

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")  # ids 0..4 in this order
PREFIX = "##"
# A merge must be seen this often to become a piece: one-off strings (ids, typos) stay split.
MIN_FREQUENCY = 2
MAX_WORD_CHARS = 100  # longer "words" (base64 junk, long numbers) become [UNK]


def _bert_tokenizer(vocab: dict[str, int]) -> Tokenizer:
    tok = Tokenizer(
        models.WordPiece(
            vocab=vocab,
            unk_token="[UNK]",
            continuing_subword_prefix=PREFIX,
            max_input_chars_per_word=MAX_WORD_CHARS,
        )
    )
    # lowercase/strip accents: reports differ in case ("No effusion" / "no effusion"), not meaning
    tok.normalizer = normalizers.BertNormalizer(
        clean_text=True, handle_chinese_chars=True, strip_accents=True, lowercase=True
    )
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])],
    )
    tok.decoder = decoders.WordPiece(prefix=PREFIX)
    return tok


def count_words(texts: Iterable[str]) -> Counter:
    """Words as the tokenizer will see them (normalised, pre-tokenised), with their counts."""
    splitter = _bert_tokenizer({t: i for i, t in enumerate(SPECIAL_TOKENS)})
    counts: Counter = Counter()
    for text in texts:
        normal = splitter.normalizer.normalize_str(text)
        counts.update(w for w, _ in splitter.pre_tokenizer.pre_tokenize_str(normal))
    return counts


def learn_wordpiece_vocab(
    word_counts: dict[str, int], vocab_size: int, min_frequency: int = MIN_FREQUENCY
) -> list[str]:
    """Specials, then every character (word-initial and ``##`` form), then merged pieces in order
    of pair frequency (ties: by the pieces' text) until ``vocab_size`` pieces or no pair is left."""
    words = [w for w in sorted(word_counts) if len(w) <= MAX_WORD_CHARS]
    freq = [word_counts[w] for w in words]
    symbols = [[w[0]] + [PREFIX + c for c in w[1:]] for w in words]
    char_count: Counter = Counter()
    for w, f in zip(words, freq, strict=True):
        for c in w:
            char_count[c] += f
    # every character in both forms, so any word made of known characters can be spelled out
    # (most frequent first, in case a huge alphabet alone exceeds vocab_size)
    chars = sorted(char_count, key=lambda c: (-char_count[c], c))
    vocab = list(SPECIAL_TOKENS) + [form for c in chars for form in (c, PREFIX + c)]
    vocab = vocab[:vocab_size]
    known = set(vocab)
    pair_count: Counter = Counter()
    where: dict[tuple[str, str], set[int]] = defaultdict(set)
    for i, syms in enumerate(symbols):
        for pair in pairwise(syms):
            pair_count[pair] += freq[i]
            where[pair].add(i)
    heap = [(-c, p) for p, c in pair_count.items()]
    heapq.heapify(heap)
    while len(vocab) < vocab_size and heap:
        neg, pair = heapq.heappop(heap)
        if pair_count.get(pair, 0) != -neg:
            continue  # a stale entry: the count changed after it was pushed
        if -neg < min_frequency:
            break
        a, b = pair
        merged = a + b[len(PREFIX) :]
        if merged not in known:
            known.add(merged)
            vocab.append(merged)
        touched: set[tuple[str, str]] = set()
        for i in sorted(where.pop(pair, ())):
            old = symbols[i]
            new, k = [], 0
            while k < len(old):
                if k + 1 < len(old) and old[k] == a and old[k + 1] == b:
                    new.append(merged)
                    k += 2
                else:
                    new.append(old[k])
                    k += 1
            for p in pairwise(old):
                pair_count[p] -= freq[i]
                touched.add(p)
            for p in pairwise(new):
                pair_count[p] += freq[i]
                where[p].add(i)
                touched.add(p)
            symbols[i] = new
        pair_count.pop(pair, None)
        for p in touched:
            if p != pair and pair_count.get(p, 0) > 0:
                heapq.heappush(heap, (-pair_count[p], p))
    return vocab


def train_wordpiece_tokenizer(
    texts: Iterable[str], vocab_size: int, out_dir: str | Path | None = None, max_length: int = 512
) -> PreTrainedTokenizerFast:
    """Learn a WordPiece vocabulary of at most ``vocab_size`` pieces from ``texts``, save it to
    ``out_dir`` (``save_pretrained``) when given, and return the wrapped tokenizer.

    ``max_length`` becomes ``model_max_length``. The same texts give the same tokenizer.json.
    """
    pieces = learn_wordpiece_vocab(count_words(texts), vocab_size)
    tok = _bert_tokenizer({piece: i for i, piece in enumerate(pieces)})
    wrapped = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        model_max_length=max_length,
    )
    if out_dir is not None:
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        wrapped.save_pretrained(str(out_dir))
    return wrapped
