"""From a `--data` argument to the two id streams a language model trains and validates on."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from scratchlm.checkpoint import TOKENIZER
from scratchlm.data.batches import split_stream
from scratchlm.data.cache import tokenize_corpus
from scratchlm.data.human_numbers import NAME as HUMAN_NUMBERS
from scratchlm.data.read import Corpus, open_corpus
from scratchlm.data.tokenize import Tokenizer, TokenizerSpec


@dataclass
class DataConfig:
    """Where the text comes from and how it is cut; saved in config.json."""

    path: str = HUMAN_NUMBERS  # the built-in corpus, a text file, or a folder of text files
    encoding: str | None = None  # None: UTF-8, else detected; or a codec name
    valid_path: str | None = None  # a separate validation file; None: the end of `path`
    valid_fraction: float | None = None  # share of the stream held out, from its end (book: 0.2; else 0.1)
    tokenizer: TokenizerSpec = field(default_factory=TokenizerSpec)
    repair: bool = True  # Windows-1252 characters decoded as latin-1 (C1 controls) are repaired (data/clean.py)

    def __post_init__(self) -> None:
        if isinstance(self.tokenizer, dict):
            self.tokenizer = TokenizerSpec(**self.tokenizer)
        if self.path != HUMAN_NUMBERS:
            self.path = str(Path(self.path).expanduser().resolve())
        if self.valid_path is not None:
            self.valid_path = str(Path(self.valid_path).expanduser().resolve())
        if self.valid_fraction is None and self.valid_path is None:
            self.valid_fraction = 0.2 if self.path == HUMAN_NUMBERS else 0.1


class OneCorpus:
    """What the data of a task that reads one corpus with one tokenizer holds in common (language models,
    word embeddings): the tokenizer, saved as tokenizer.json; the content hash; the corpus' summary."""

    tokenizer: Tokenizer
    corpus: Corpus  # what was read: its content hash and encodings go into config.json

    @property
    def tokenizers(self) -> dict[str, Tokenizer]:
        return {TOKENIZER: self.tokenizer}

    @property
    def content_hash(self) -> str:
        return self.corpus.content_hash

    def corpus_summary(self) -> dict:
        return {"encodings": sorted({s.encoding for s in self.corpus.sources}), "documents": len(self.corpus.sources)}


@dataclass
class LMData(OneCorpus):
    tokenizer: Tokenizer
    train_ids: np.ndarray
    valid_ids: np.ndarray
    corpus: Corpus
    repaired_lines: int = 0  # lines whose mojibake was repaired as they were read

    def summary(self) -> dict:
        return {**self.corpus_summary(), "train_tokens": len(self.train_ids), "valid_tokens": len(self.valid_ids),
                "vocab_size": self.tokenizer.vocab_size, "lines_repaired": self.repaired_lines}


def load_lm_data(config: DataConfig, cache_dir: Path | None = None, tokenizer: Tokenizer | None = None,
                 align: int = 1) -> LMData:
    """Read, tokenize (or reuse the cache) and split at a multiple of `align`.

    A given tokenizer is used as it is (resume, eval)."""
    corpus = open_corpus(config.path, config.encoding, config.repair)
    tokenizer, ids, repaired = tokenize_corpus(corpus, tokenizer or config.tokenizer, cache_dir)
    if config.valid_path:
        valid = tokenize_corpus(open_corpus(config.valid_path, config.encoding, config.repair), tokenizer, cache_dir)
        train_ids, valid_ids, repaired = ids, valid.ids, repaired + valid.repaired_lines
    else:
        train_ids, valid_ids = split_stream(ids, config.valid_fraction, align)
    return LMData(tokenizer, train_ids, valid_ids, corpus, repaired)
