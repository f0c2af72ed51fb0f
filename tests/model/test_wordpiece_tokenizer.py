"""The trained WordPiece tokenizer: BERT conventions, offline reload, determinism."""

from __future__ import annotations

from helpers.model_batches import all_texts, phantom_samples
from transformers import AutoTokenizer

from regionmed.model.tokenizer import SPECIAL_TOKENS, train_wordpiece_tokenizer

TEXTS = all_texts(phantom_samples(40))


def test_round_trip_through_autotokenizer(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    tok = train_wordpiece_tokenizer(TEXTS, 500, tmp_path / "tok", max_length=64)
    again = AutoTokenizer.from_pretrained(str(tmp_path / "tok"))
    text = "No effusion. There is a SMALL nodule in the right upper zone."
    ids = tok(text)["input_ids"]
    assert again(text)["input_ids"] == ids
    assert ids[0] == tok.cls_token_id and ids[-1] == tok.sep_token_id
    assert [tok.convert_ids_to_tokens(i) for i in range(5)] == list(SPECIAL_TOKENS)
    assert tok.pad_token_id == 0 and again.pad_token_id == 0 and again.model_max_length == 64
    assert tok.decode(ids, skip_special_tokens=True) == text.lower()  # lowercased, words intact
    assert tok("No Effusion")["input_ids"] == tok("no effusion")["input_ids"]
    batch = again(["a", "the left lung"], padding=True, return_tensors="pt")
    assert batch["attention_mask"][0].tolist() == [1, 1, 1, 0, 0]


def test_same_texts_give_the_same_vocabulary(tmp_path):
    train_wordpiece_tokenizer(TEXTS, 300, tmp_path / "a")
    train_wordpiece_tokenizer(TEXTS, 300, tmp_path / "b")
    assert (tmp_path / "a" / "tokenizer.json").read_bytes() == (
        tmp_path / "b" / "tokenizer.json"
    ).read_bytes()


def test_vocabulary_is_capped_and_unknown_words_split_not_lost():
    tok = train_wordpiece_tokenizer(TEXTS, 120)
    assert len(tok) <= 120
    pieces = tok.tokenize("pneumothorax")
    assert pieces and "[UNK]" not in pieces  # rare words fall back to sub-word pieces
