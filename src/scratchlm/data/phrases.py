"""Phrases: frequent word pairs joined into one token before training (Mikolov et al. 2013b, sec. 4).

"New York Times" is not "New" + "York" + "Times", nor "Air Canada" the airline "Air" + "Canada". The
word2vec paper finds such phrases from the counts alone, scoring each pair of adjacent words

    score(a, b) = (count(a b) - delta) / (count(a) count(b)) * N                      (eq. 6; N: the words)

and joining the pairs that score above a threshold into one token, `a_b`, as the word2vec tool's
word2phrase does. delta discounts the pairs seen only a few times, which would otherwise score high
for being rare. Passes repeat it on the joined text, so a second pass can join `new_york` and `times`.
The word2vec tool's defaults: delta = the minimum count (5), threshold 100.

Joining is greedy from the left within a line: where `a b c` holds two joinable pairs that overlap,
`a_b c` is kept, as word2phrase does. Learning runs over the text as integer ids in numpy (one array, the
lines separated by -1): bigrams are packed into int64 keys and counted with np.unique, and the joins of
a pass are found for every position at once. `join` applies the same passes to a line's words when a
tokenizer encodes text, so the text and the vocabulary agree.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

JOINER = "_"
BREAK = -1  # the id between two lines in the learning stream: no phrase crosses it
DEFAULT_THRESHOLD = 100.0  # word2phrase's


def phrase_scores(pair_counts: np.ndarray, first_counts: np.ndarray, second_counts: np.ndarray, delta: float,
                  total: int) -> np.ndarray:
    """score(a, b) = (count(a b) - delta) / (count(a) count(b)) * N, elementwise."""
    return (pair_counts - delta) / (first_counts.astype(np.float64) * second_counts) * total


def learn_phrases(lines: Iterable[Sequence[str]], passes: int, threshold: float = DEFAULT_THRESHOLD,
                  delta: float = 5.0, min_count: int = 5) -> list[list[tuple[str, str]]]:
    """The pairs each pass joins, pass by pass, learnt from `lines` (each a list of words). A word seen
    fewer than `min_count` times is never part of a phrase (as in word2phrase)."""
    vocab: dict[str, int] = {}
    pieces: list[np.ndarray] = []
    for words in lines:
        pieces.append(np.fromiter((vocab.setdefault(w, len(vocab)) for w in words), dtype=np.int64, count=len(words)))
        pieces.append(np.array([BREAK]))
    stream = np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.int64)
    names = list(vocab)
    found = []
    for _ in range(passes):
        joined, stream, names = one_pass(stream, names, threshold, delta, min_count)
        found.append(joined)
        if not joined:
            break
    return found


def one_pass(stream: np.ndarray, names: list[str], threshold: float, delta: float,
             min_count: int) -> tuple[list[tuple[str, str]], np.ndarray, list[str]]:
    """One pass of scoring and joining: (the pairs joined, the new stream, the new names of the ids)."""
    V = len(names)
    words = stream[stream != BREAK]
    counts = np.bincount(words, minlength=V)
    a, b = stream[:-1], stream[1:]
    inside = (a != BREAK) & (b != BREAK)
    keys, pair_counts = np.unique(a[inside] * V + b[inside], return_counts=True)
    first, second = keys // V, keys % V
    score = phrase_scores(pair_counts, counts[first], counts[second], delta, len(words))
    chosen = (score > threshold) & (counts[first] >= min_count) & (counts[second] >= min_count)
    keys, first, second = keys[chosen], first[chosen], second[chosen]
    if len(keys) == 0:
        return [], stream, names
    joinable = np.zeros(len(stream), dtype=bool)  # position i starts a chosen pair (i, i + 1)
    position_keys = np.where(inside, a * V + b, -1)
    joinable[:-1] = np.isin(position_keys, keys)
    starts = greedy_starts(joinable)
    new_id = {int(k): V + i for i, k in enumerate(keys)}
    out = stream.copy()
    out[starts] = [new_id[int(k)] for k in position_keys[starts]]
    keep = np.ones(len(stream), dtype=bool)
    keep[starts + 1] = False
    pairs = [(names[i], names[j]) for i, j in zip(first.tolist(), second.tolist(), strict=True)]
    return pairs, out[keep], names + [x + JOINER + y for x, y in pairs]


def greedy_starts(joinable: np.ndarray) -> np.ndarray:
    """The positions where a join starts, reading left to right: in each run of consecutive joinable
    positions the 1st, 3rd, 5th, ... (a position joined with the next cannot start a pair of its own)."""
    at = np.flatnonzero(joinable)
    if len(at) == 0:
        return at
    run_start = np.concatenate([[True], np.diff(at) != 1])
    first_of_run = np.maximum.accumulate(np.where(run_start, np.arange(len(at)), 0))
    return at[(np.arange(len(at)) - first_of_run) % 2 == 0]


def join(words: list[str], passes: Sequence[set[tuple[str, str]]]) -> list[str]:
    """`words` with each pass's pairs joined, greedily from the left (what learning did to the text)."""
    for pairs in passes:
        out, i = [], 0
        while i < len(words):
            if i + 1 < len(words) and (words[i], words[i + 1]) in pairs:
                out.append(words[i] + JOINER + words[i + 1])
                i += 2
            else:
                out.append(words[i])
                i += 1
        words = out
    return words
