"""The ``tokenizer`` stage: a WordPiece tokenizer trained on the train split's texts, or the tokenizer
of the pretrained text backbone (``model.text.backbone``) copied as it is."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from regionmed.atomic import atomic_dir
from regionmed.corpus.schema import MANIFEST_FILE
from regionmed.errors import require
from regionmed.model.tokenizer import train_wordpiece_tokenizer
from regionmed.params_pipeline import PipelineParams
from regionmed.training.texts import corpus_texts


@dataclass(frozen=True)
class TokenizerResult:
    out: Path
    pieces: int
    copied_from: str | None  # the pretrained backbone whose tokenizer was copied; None: trained here

    def summary_line(self) -> str:
        if self.copied_from:
            return f"copied the tokenizer of {self.copied_from} ({self.pieces} pieces) to {self.out}"
        return f"trained a WordPiece tokenizer of {self.pieces} pieces into {self.out}"


def run(params: PipelineParams, out: str | Path) -> TokenizerResult:
    """Write the tokenizer folder ``out`` (dvc.yaml: paths.tokenizer), whole or not at all."""
    out, backbone = Path(out), params.model.text.backbone
    if backbone is not None:
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(backbone)
        with atomic_dir(out) as tmp:
            tokenizer.save_pretrained(str(tmp))
        return TokenizerResult(out, len(tokenizer), backbone)
    require(Path(params.stage_corpus) / MANIFEST_FILE, "the annotated corpus manifest", "annotate_regions")
    texts = corpus_texts(params.stage_corpus)
    with atomic_dir(out) as tmp:
        tokenizer = train_wordpiece_tokenizer(texts, params.model.text.vocab_size, tmp)
    return TokenizerResult(out, len(tokenizer), None)
