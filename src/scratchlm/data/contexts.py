"""word2vec's training pairs, laid from a word stream with numpy a block at a time.

    stream      ... the cat sat on the mat \\n a dog ...      (a block: 64 batches of batch_size words)
    subsample   ... cat sat on mat \\n dog ...                 word w kept with p = (sqrt(f/t) + 1) t/f
    windows     each kept word draws its reach b in 1..window (word2vec's dynamic window, which weights
                near words more) and pairs with the kept words within b of it in its sentence
    negatives   drawn from the counts^(3/4), once per batch (shared) or k per pair

Batch k holds the pairs whose centre lies in words [k * batch_size, (k + 1) * batch_size) of the
stream; its block is drawn from (seed, epoch, block) alone, so a resumed run rebuilds it exactly and
memory stays flat whatever the corpus size. A newline or a document start ends a sentence, which no
window crosses; rare words (count 0 here: `<unk>`) are left out before the windows are laid, as the
word2vec tool drops them. Validation pairs are a fixed sample of 20,000 pairs of the text itself, with k
negatives each: word2vec has no held-out text, so this checks that the objective falls.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from scratchlm.data.batches import IndexedBatches
from scratchlm.data.tokenize import PAD

Batch = tuple[torch.Tensor, ...]
BLOCK = 64  # batches made together: one numpy pass lays the windows of 64 x batch_size words
VALID_PAIRS = 20_000  # the fixed sample of pairs each evaluation scores
VALID_BLOCKS = 8  # ... taken from this many blocks spread over the stream
NEGATIVE_POWER = 0.75  # the unigram distribution raised to 3/4 (Mikolov et al. 2013b, 2.2)


@dataclass(frozen=True)
class Words:
    """A word stream as the word-vector models learn from it."""

    ids: np.ndarray  # the whole stream of token ids (a memmap)
    counts: np.ndarray  # (V,) occurrences of each word; 0 for the specials and the newline token
    boundary: np.ndarray  # (V,) 1 for the ids that end a sentence: the newline token and <doc>


def keep_probability(counts: np.ndarray, sample: float) -> np.ndarray:
    """The chance each word survives subsampling: (sqrt(f / t) + 1) t / f for frequency f (the word2vec
    tool's form of Mikolov et al. 2013b, eq. 5, which keeps a word of frequency t with probability 1 + ...
    capped at 1); 0 for what is not a word, 1 for every word when `sample` is 0."""
    keep = np.zeros(len(counts))
    words = counts > 0
    if sample == 0:
        keep[words] = 1.0
        return keep
    threshold = sample * counts.sum()
    c = counts[words].astype(np.float64)
    keep[words] = np.minimum((np.sqrt(c / threshold) + 1) * threshold / c, 1.0)
    return keep


def negative_cdf(counts: np.ndarray) -> np.ndarray:
    """The cumulative distribution of counts^(3/4): a uniform draw u is the word searchsorted(cdf, u)."""
    weights = counts.astype(np.float64) ** NEGATIVE_POWER
    return np.cumsum(weights / weights.sum())


def draw_negatives(cdf: np.ndarray, rng: np.random.Generator, shape) -> np.ndarray:
    return np.minimum(np.searchsorted(cdf, rng.random(shape), side="right"), len(cdf) - 1)


def lay_windows(words: np.ndarray, keep: np.ndarray, boundary: np.ndarray, window: int,
                rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Subsample a piece of the stream and lay each kept word's dynamic window over it.

    Returns (at, kept, neighbour, valid): the positions of the kept words in the piece, their ids, and
    (kept x 2 window) the index into `kept` of each neighbour at offsets -window..-1, 1..window, with
    `valid` marking those within the word's reach b (drawn in 1..window) and in its sentence.
    """
    sentence = np.cumsum(boundary[words])
    at = np.flatnonzero(rng.random(len(words)) < keep[words])
    kept, sentence = words[at].astype(np.int64), sentence[at]
    n = len(kept)
    reach = rng.integers(1, window + 1, n)
    offsets = np.concatenate([np.arange(-window, 0), np.arange(1, window + 1)])
    neighbour = np.arange(n)[:, None] + offsets  # (n, 2 window)
    valid = (np.abs(offsets) <= reach[:, None]) & (neighbour >= 0) & (neighbour < n)
    neighbour = np.where(valid, neighbour, 0)
    valid &= sentence[neighbour] == sentence[:, None]
    return at, kept, neighbour, valid


class ContextBatches(IndexedBatches):
    """One epoch's batches, made a block at a time from the stream (see the module docstring).

    A batch is (inputs, mask, targets, negatives): skip-gram's centres, an empty mask and the context
    words; CBOW's context words (B x 2 window, padded, `mask` marking the real ones) and the centres.
    `negatives` is (M,) shared by the batch's pairs, or (B, k).
    """

    def __init__(self, words: Words, config: Any, batch_size: int, seed: int, epoch: int = 0):
        self.ids, self.boundary, self.config, self.batch_size = words.ids, words.boundary, config, batch_size
        self.seed, self.epoch = seed, epoch
        self.keep = keep_probability(words.counts, config.sample)
        self.cdf = negative_cdf(words.counts)
        self.cached: tuple[int, list[Batch]] | None = None

    def __len__(self) -> int:
        return math.ceil(len(self.ids) / self.batch_size)

    def for_epoch(self, epoch: int, seed: int) -> ContextBatches:
        batches = ContextBatches.__new__(ContextBatches)
        batches.__dict__.update(self.__dict__, epoch=epoch, seed=seed, cached=None)
        return batches

    def batch(self, k: int) -> Batch:
        block = k // BLOCK
        if self.cached is None or self.cached[0] != block:
            self.cached = (block, self.make_block(block))
        return self.cached[1][k % BLOCK]

    def make_block(self, block: int) -> list[Batch]:
        cfg, size = self.config, self.batch_size
        first = block * BLOCK * size
        words = np.asarray(self.ids[first:first + BLOCK * size])
        rng = np.random.default_rng([self.seed, self.epoch, block])
        at, kept, neighbour, valid = lay_windows(words, self.keep, self.boundary, cfg.window, rng)
        n_batches = min(BLOCK, len(self) - block * BLOCK)
        if cfg.cbow:
            rows = np.flatnonzero(valid.any(1))
            inputs = np.where(valid[rows], kept[neighbour[rows]], PAD)
            mask, targets = valid[rows].astype(np.float32), kept[rows]
        else:
            rows, column = np.nonzero(valid)  # row-major: the pairs come centre by centre, in text order
            inputs, targets = kept[rows], kept[neighbour[rows, column]]
            mask = None
        ends = np.searchsorted(at[rows] // size, np.arange(1, n_batches + 1))  # pairs up to each batch's end
        starts = np.concatenate([[0], ends[:-1]])
        if cfg.shared_negatives:
            negatives = draw_negatives(self.cdf, rng, (n_batches, cfg.shared_negatives))
        else:
            negatives = draw_negatives(self.cdf, rng, (len(rows), cfg.negative))
        empty = torch.empty(0)
        out = []
        for b, (s, e) in enumerate(zip(starts, ends, strict=True)):
            out.append((torch.from_numpy(inputs[s:e]), empty if mask is None else torch.from_numpy(mask[s:e]),
                        torch.from_numpy(targets[s:e]),
                        torch.from_numpy(negatives[b] if cfg.shared_negatives else negatives[s:e])))
        return out


class ValidationPairs(IndexedBatches):
    """A fixed sample of (centre, context) pairs with k negatives each, the same at every evaluation."""

    def __init__(self, words: Words, config: Any, seed: int, batch_size: int = 4096):
        ids, boundary = words.ids, words.boundary
        keep, cdf = keep_probability(words.counts, config.sample), negative_cdf(words.counts)
        span = BLOCK * 512
        starts = np.linspace(0, max(len(ids) - span, 0), VALID_BLOCKS).astype(np.int64)
        centres, contexts = [], []
        for i, start in enumerate(dict.fromkeys(starts.tolist())):
            rng = np.random.default_rng([seed, 7919, i])
            _, kept, neighbour, valid = lay_windows(np.asarray(ids[start:start + span]), keep, boundary, config.window, rng)
            rows, column = np.nonzero(valid)
            pick = rng.permutation(len(rows))[:VALID_PAIRS // VALID_BLOCKS]
            centres.append(kept[rows[pick]])
            contexts.append(kept[neighbour[rows[pick], column[pick]]])
        centre, context = np.concatenate(centres), np.concatenate(contexts)
        negatives = draw_negatives(cdf, np.random.default_rng([seed, 7919, VALID_BLOCKS]), (len(centre), config.negative))
        self.items = [tuple(torch.from_numpy(a[s:s + batch_size]) for a in (centre, context, negatives))
                      for s in range(0, len(centre), batch_size)]

    def __len__(self) -> int:
        return len(self.items)

    def batch(self, k: int) -> Batch:
        return self.items[k]
