"""Sentence pairs for translation: read, checked line by line, split by source sentence, tokenized, batched.

Two layouts:
    a TSV file (Tatoeba's, as in eng-fra.tsv)   source<TAB>target[<TAB>attribution ...]  (--columns 0,1)
    two line-aligned files (OpenNMT's)         --src train.en --tgt train.fr: line i of one translates line i

Every file goes through the same reader as a language model's (`data/read.py`): UTF-8, else a byte-order
mark, else a detected encoding, or `--encoding`; archives and binaries are named as what they are.
Before anything is tokenized, each line is screened (`data/clean.py`): Windows-1252 mojibake is repaired,
and a pair that cannot be used (a missing column, an empty side, a NUL or another control character) is
left out with one warning naming the first few places, or, with `strict`, refuses the file. Two files
must have as many lines: otherwise which line translates which is unknown.

The held-out split is grouped by source sentence. Tatoeba gives one English sentence several French
translations ("Run!" -> "Cours !", "Courez !"); split pair by pair, a test sentence would be seen in
training under another of its translations. Here whole source sentences are held out, and every
translation of a held-out source is one of its references.

Batches (`PairBatches`) hold pairs of similar length together (sorted within pools of 50 batches, so
little padding), are drawn anew each epoch from (seed, epoch) alone, and give the same batch for the
same index: a resumed run reads what the first would have.

    src      (B, S)  source ids, PAD on the right          src_lengths (B,)
    tgt_in   (B, T)  <bos> y1 y2 ... yn  PAD ...           the decoder's input: the target shifted right
    targets  (B, T)  y1 y2 ... yn <eos> PAD ...            what it must predict, <eos> included
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch

from scratchlm.data.batches import BucketedBatches, pad
from scratchlm.data.clean import Screen
from scratchlm.data.read import read_lines
from scratchlm.data.tokenize import BOS, EOS, Tokenizer, TokenizerSpec, train_tokenizer
from scratchlm.errors import UserError


@dataclass
class PairsConfig:
    """Where the pairs come from and how they are cut; saved in config.json."""

    path: str | None = None  # a TSV file of pairs (Tatoeba's layout)
    src: str | None = None  # or two line-aligned files: the sources ...
    tgt: str | None = None  # ... and their translations
    columns: tuple[int, int] = (0, 1)  # the TSV's source and target columns; others (attribution) are ignored
    reverse: bool = False  # translate the other way: target column to source column
    encoding: str | None = None  # None: UTF-8, else detected; or a codec name
    tokenizer: TokenizerSpec = field(default_factory=lambda: TokenizerSpec(kind="bpe", vocab_size=8000))
    joint: bool = True  # one vocabulary for both languages (BPE shares subwords across them), else one each
    max_length: int | None = 100  # training pairs with a side longer than this many tokens are left out
    valid_fraction: float = 0.05  # share of the pairs held out, whole source sentences at a time
    min_valid: int = 1000  # at least this many held-out pairs (at most a fifth of a small file)
    split_seed: int = 0  # which sentences are held out
    repair: bool = True  # Windows-1252 characters decoded as latin-1 (C1 controls) are repaired (data/clean.py)
    strict: bool = False  # an unusable pair refuses the file; else it is left out with a warning

    def __post_init__(self) -> None:
        if isinstance(self.tokenizer, dict):
            self.tokenizer = TokenizerSpec(**self.tokenizer)
        self.columns = tuple(self.columns)
        if (self.path is None) == (self.src is None and self.tgt is None):
            raise UserError("give the pairs as --data FILE.tsv, or as --src FILE --tgt FILE (line-aligned)")
        if self.path is None and (self.src is None or self.tgt is None):
            raise UserError("--src and --tgt go together: the sources and their translations, line by line")
        for name in ("path", "src", "tgt"):
            if getattr(self, name) is not None:
                setattr(self, name, str(Path(getattr(self, name)).expanduser().resolve()))
        if len(self.columns) != 2 or min(self.columns) < 0 or self.columns[0] == self.columns[1]:
            raise UserError(f"--columns {','.join(map(str, self.columns))}: give two different columns, e.g. 0,1")
        if not 0 < self.valid_fraction < 1:
            raise UserError(f"--valid-fraction {self.valid_fraction} must be between 0 and 1")
        if self.max_length is not None and self.max_length < 1:
            raise UserError(f"--max-length {self.max_length} must be at least 1")


@dataclass
class Pairs:
    """Sentence pairs as text, in file order, and where they came from."""

    sources: list[str]
    targets: list[str]
    content_hash: str
    encodings: list[str]
    screen: Screen  # the lines repaired and the pairs left out


def read_pairs(cfg: PairsConfig) -> Pairs:
    """Every usable pair of the TSV or of the two aligned files, each line screened (see the module docstring)."""
    screen = Screen(repair=cfg.repair, strict=cfg.strict)
    if cfg.path is not None:
        lines, encoding, digest = read_lines(cfg.path, cfg.encoding)
        sources, targets = split_columns(cfg.path, lines, cfg.columns, screen)
        encodings = [encoding]
    else:
        src_lines, src_encoding, src_digest = read_lines(cfg.src, cfg.encoding)
        tgt_lines, tgt_encoding, tgt_digest = read_lines(cfg.tgt, cfg.encoding)
        if len(src_lines) != len(tgt_lines):
            raise UserError(f"--src {cfg.src} has {len(src_lines):,} lines and --tgt {cfg.tgt} has {len(tgt_lines):,}; "
                            "line-aligned files must have as many")
        sources, targets = aligned_pairs(cfg.src, src_lines, cfg.tgt, tgt_lines, screen)
        encodings, digest = [src_encoding, tgt_encoding], hashlib.sha256((src_digest + tgt_digest).encode()).hexdigest()
    if cfg.reverse:
        sources, targets = targets, sources
    if len(sources) < 2:
        why = f" (left out: {screen.skipped[0]})" if screen.skipped else ""
        raise UserError(f"{cfg.path or cfg.src}: {len(sources)} usable sentence pair(s); translation needs more to "
                        f"learn from{why}")
    return Pairs(sources, targets, digest, encodings, screen)


def split_columns(path: str, lines: list[str], columns: tuple[int, int], screen: Screen) -> tuple[list[str], list[str]]:
    """The pairs of a TSV's lines; blank lines are passed over, unusable ones left to `screen`."""
    sources, targets = [], []
    for i, line in enumerate(lines, 1):
        if not line.strip() or (line := screen.line(line, f"{path}:{i}")) is None:
            continue
        cells = line.split("\t")
        if len(cells) <= max(columns):
            screen.reject(f"{path}:{i}", f"has {len(cells)} column(s), needs {max(columns) + 1} (a TSV of pairs is "
                          "source<TAB>target; choose the columns with --columns)")
            continue
        source, target = cells[columns[0]].strip(), cells[columns[1]].strip()
        if not source or not target:
            screen.reject(f"{path}:{i}", f"the {'source' if not source else 'target'} side is empty")
            continue
        sources.append(source)
        targets.append(target)
    return sources, targets


def aligned_pairs(src_path: str, src_lines: list[str], tgt_path: str, tgt_lines: list[str],
                  screen: Screen) -> tuple[list[str], list[str]]:
    """The pairs of two line-aligned files; a line blank in both is passed over, unusable ones left to `screen`."""
    sources, targets = [], []
    for i, (s, t) in enumerate(zip(src_lines, tgt_lines, strict=True), 1):
        if not s.strip() and not t.strip():
            continue
        if not s.strip() or not t.strip():
            screen.reject(f"{tgt_path if s.strip() else src_path}:{i}", "an empty line where the other file has a sentence")
            continue
        s = screen.line(s, f"{src_path}:{i}")
        t = screen.line(t, f"{tgt_path}:{i}") if s is not None else None  # one place named per pair left out
        if t is not None:
            sources.append(s)
            targets.append(t)
    return sources, targets


def held_out_sources(sources: Sequence[str], cfg: PairsConfig) -> set[str]:
    """Whole source sentences, drawn with the split seed, until they cover the held-out share of pairs."""
    counts: dict[str, int] = {}
    for s in sources:
        counts[s] = counts.get(s, 0) + 1
    unique = list(counts)
    order = np.random.default_rng(cfg.split_seed).permutation(len(unique))
    wanted = max(math.ceil(cfg.valid_fraction * len(sources)), min(cfg.min_valid, len(sources) // 5), 1)
    held, taken = set(), 0
    for i in order:
        if taken >= wanted or len(held) == len(unique) - 1:
            break
        held.add(unique[i])
        taken += counts[unique[i]]
    return held


def train_tokenizers(pairs: Pairs, train_index: np.ndarray, cfg: PairsConfig) -> tuple[Tokenizer, Tokenizer]:
    """The source and target tokenizers, trained on the training pairs only (the same one if joint)."""
    sources = [pairs.sources[i] + "\n" for i in train_index]
    targets = [pairs.targets[i] + "\n" for i in train_index]
    if cfg.joint:
        tokenizer = train_tokenizer([sources, targets], cfg.tokenizer)
        return tokenizer, tokenizer
    return train_tokenizer([sources], cfg.tokenizer), train_tokenizer([targets], cfg.tokenizer)


def encode_lines(tokenizer: Tokenizer, lines: Sequence[str]) -> list[np.ndarray]:
    """Each line's ids (no line end, no specials), in one batched call for BPE."""
    hf = getattr(tokenizer, "hf", None)
    if hf is not None:
        return [np.asarray(e.ids, dtype=np.int64) for e in hf.encode_batch(list(lines))]
    return [tokenizer.encode_block(line) for line in lines]


@dataclass(frozen=True)
class References:
    """The last part of a validation batch: every reference of each source, and how to turn the model's
    target ids into text to compare with them."""

    texts: list[tuple[str, ...]]
    decode: Callable[[list[int]], str]


@dataclass(frozen=True)
class PairBatches(BucketedBatches):
    """Batches of pairs, bucketed by length; see the module docstring."""

    src: tuple[np.ndarray, ...]  # each pair's source ids
    tgt: tuple[np.ndarray, ...]  # each pair's target ids (for validation: the first reference)
    references: tuple[tuple[str, ...], ...] | None = None  # validation: every reference of each source
    decode: Callable[[list[int]], str] | None = None  # validation: the target tokenizer's decode
    processes: int = 1  # how many processes share each batch
    examples: ClassVar[str] = "pair(s)"
    stream: ClassVar[int] = 7

    def lengths(self) -> np.ndarray:
        return np.array([len(s) for s in self.src])

    def epoch_lengths(self) -> np.ndarray:
        return np.array([len(s) + len(t) for s, t in zip(self.src, self.tgt, strict=True)])

    def batch(self, k: int) -> tuple:
        """(src, src_lengths, tgt_in, targets), then for training this process' weight (below), for
        validation the references of each source.

        The weight makes the processes' gradients average to one process' whole-batch gradient: each
        process' mean loss is over its own target tokens, and DistributedDataParallel averages them
        equally, so each is weighted by its share of the batch's tokens times the number of processes
        (1 for a single process)."""
        index = self.indices(k)
        src = pad([self.src[i] for i in index])
        tgt_in = pad([np.concatenate([[BOS], self.tgt[i]]) for i in index])
        targets = pad([np.concatenate([self.tgt[i], [EOS]]) for i in index])
        lengths = torch.tensor([len(self.src[i]) for i in index], dtype=torch.long)
        if self.references is None:
            whole = self.order[k * self.batch_size: (k + 1) * self.batch_size]
            share = sum(len(self.tgt[i]) + 1 for i in index) / sum(len(self.tgt[i]) + 1 for i in whole)
            return src, lengths, tgt_in, targets, torch.tensor(share * self.processes)
        return src, lengths, tgt_in, targets, References([self.references[i] for i in index], self.decode)

    def shard(self, rank: int, world_size: int, even: bool = True) -> PairBatches:
        return replace(super().shard(rank, world_size, even), processes=world_size)
