"""A WordPiece tokenizer trained on the corpus's own texts, saved in Hugging Face format.

Trained with the ``tokenizers`` library (BERT-style: lowercase, split on whitespace and punctuation,
``[CLS] text [SEP]``) and wrapped as a fast tokenizer, so ``AutoTokenizer.from_pretrained(folder)``
reloads it offline. The same texts in the same order give the same vocabulary.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")  # ids 0..4 in this order
# Pieces seen fewer times than this are not learned: typos and one-off numbers stay [UNK]-free
# through their characters instead of taking a vocabulary slot each.
MIN_FREQUENCY = 2


def train_wordpiece_tokenizer(texts: Iterable[str], vocab_size: int, out_dir: str | Path | None = None,
                              max_length: int = 512) -> PreTrainedTokenizerFast:
    """Train a WordPiece vocabulary of at most ``vocab_size`` pieces and save it to ``out_dir``.

    ``max_length`` becomes the tokenizer's ``model_max_length``. Returns the wrapped tokenizer.
    """
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]", continuing_subword_prefix="##"))
    # strip_accents/lowercase: reports differ in case ("No effusion" / "no effusion"), not in meaning.
    tok.normalizer = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True,
                                                strip_accents=True, lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    trainer = trainers.WordPieceTrainer(vocab_size=vocab_size, min_frequency=MIN_FREQUENCY,
                                        special_tokens=list(SPECIAL_TOKENS), continuing_subword_prefix="##",
                                        show_progress=False)
    # A list, not a generator: the trainer may consume it on several threads, and a fixed order
    # keeps the vocabulary reproducible.
    tok.train_from_iterator(list(texts), trainer=trainer)
    cls_id, sep_id = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)],
    )
    tok.decoder = decoders.WordPiece(prefix="##")
    wrapped = PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
        sep_token="[SEP]", mask_token="[MASK]", model_max_length=max_length,
    )
    if out_dir is not None:
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        wrapped.save_pretrained(str(out_dir))
    return wrapped
