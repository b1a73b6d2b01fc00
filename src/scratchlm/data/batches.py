"""Batches for language models: the token stream cut into rows that continue from batch to batch.

The stream (here 26 tokens, a..z) is cut into `batch_size` rows, each a contiguous slice of it
(fast.ai's `group_chunks`, PyTorch word_language_model's `batchify`). With batch_size=4 and bptt=3:

    row 0: a b c | d e f  ...       batch 0 is the first 3 columns, batch 1 the next 3, ...
    row 1: g h i | j k l  ...       so row i of batch k+1 continues row i of batch k:
    row 2: m n o | p q r  ...       a stateful model can carry its hidden state across batches
    row 3: s t u | v w x  ...       (truncated back-propagation through time).

The targets are the same rows shifted one token on (`a b c` -> `b c d`). Each row has
L = (N - 1) // batch_size positions (rounded down to a multiple of bptt with drop_last, so every
window starts at a multiple of bptt, as the book's `group_chunks` over 3-token windows).

Models without a carried state read `WindowBatches` instead: the same non-overlapping windows
(3 tokens in, the 4th out for the first rungs), B consecutive windows per batch, in order, as the
book's plain DataLoader. On human numbers this order matters: training ends on the numbers nearest
the validation split, which is worth about 0.14 accuracy to mlp3 over interleaved rows. Elsewhere a
batch of B consecutive windows is one passage of the text read B times over; `--shuffle`
(`WindowBatches.for_epoch`) draws each epoch's windows in a random order from a random offset, as
nanoGPT's random windows and a shuffled DataLoader do, so a batch holds B unrelated passages.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import ClassVar

import numpy as np
import torch

from scratchlm.data.tokenize import PAD
from scratchlm.errors import UserError


class IndexedBatches:
    """The batches protocol (tasks/base.py) every task's batches follow: `len`, `batch(k)` (the same k gives
    the same batch, so a resumed run skips to its saved index), and from these `batches(start)`."""

    def __len__(self) -> int:
        raise NotImplementedError

    def batch(self, k: int) -> tuple:
        raise NotImplementedError

    def batches(self, start: int = 0) -> Iterator[tuple]:
        """Batches start, start+1, ...: resuming mid-epoch is skipping to the saved batch index."""
        for k in range(start, len(self)):
            yield self.batch(k)

    def for_epoch(self, epoch: int, seed: int) -> IndexedBatches:
        """The batches of epoch `epoch`, drawn from (seed, epoch) alone where they change from epoch to epoch."""
        return self


@dataclass(frozen=True)
class LMStream(IndexedBatches):
    """An ordered, resumable sequence of (inputs, targets) batches over a token stream."""

    ids: np.ndarray  # the token stream (a memmap: rows are read as they are needed)
    batch_size: int  # B: number of rows, each a contiguous part of the stream
    bptt: int  # T: tokens per row per batch (the back-propagation window)
    drop_last: bool = True  # drop a last, shorter window (models with a fixed window need exactly T)
    starts: tuple[int, ...] | None = None  # window boundaries of one epoch of random-length BPTT (see for_epoch)
    rows: tuple[int, int] | None = None  # (first, stop): the rows of each batch this process reads; None: all

    def __post_init__(self) -> None:
        if self.batch_size < 1 or self.bptt < 1:
            raise UserError(f"batch size ({self.batch_size}) and bptt ({self.bptt}) must be at least 1")
        if self.row_length < 1 or len(self) == 0:
            raise UserError(f"the data has {len(self.ids):,} tokens: too few for {self.batch_size} rows of "
                            f"{self.bptt} tokens; use a smaller --batch-size or --bptt, or more text")

    @property
    def row_length(self) -> int:
        """L: positions per row; row i covers stream positions i*L .. i*L+L-1 (targets one further)."""
        length = (len(self.ids) - 1) // self.batch_size
        return length - length % self.bptt if self.drop_last else length

    def __len__(self) -> int:
        if self.starts is not None:
            return len(self.starts) - 1
        full, rest = divmod(self.row_length, self.bptt)
        return full + (1 if rest and not self.drop_last else 0)

    def for_epoch(self, epoch: int, seed: int) -> LMStream:
        """This epoch's windows with random lengths (AWD-LSTM, Merity et al. 2017, section 4.1).

        Each window is bptt long with probability 0.95, else bptt/2, then jittered by N(0, 5) and kept
        in [5, bptt + 20]: over the epochs every token is a window boundary some time, instead of the
        same 1/bptt of the tokens always starting a window. The lengths follow from (seed, epoch), so a
        resumed run cuts the epoch the same way.
        """
        rng = np.random.default_rng([seed, epoch])
        starts, position = [0], 0
        while position < self.row_length:
            base = self.bptt if rng.random() < 0.95 else self.bptt / 2
            position = min(position + int(np.clip(rng.normal(base, 5), 5, self.bptt + 20)), self.row_length)
            starts.append(position)
        return replace(self, starts=tuple(starts))

    def batch(self, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Batch k: inputs and targets, both (B, T) int64; T is shorter only for a kept last window."""
        L, T = self.row_length, self.bptt
        start, stop = (self.starts[k], self.starts[k + 1]) if self.starts else (k * T, min(k * T + T, L))
        first, last = self.rows or (0, self.batch_size)
        rows = [np.asarray(self.ids[i * L + start: i * L + stop + 1]) for i in range(first, last)]
        block = np.stack(rows) if rows else np.empty((0, stop - start + 1))  # no rows: a process with no share
        block = torch.from_numpy(block.astype(np.int64))  # (B, T+1)
        return block[:, :-1], block[:, 1:]

    def shard(self, rank: int, world_size: int, even: bool = True) -> LMStream:
        """This process' share of every batch (distributed data parallel); see `share`."""
        return replace(self, rows=share(self.batch_size, rank, world_size, even))


@dataclass(frozen=True)
class WindowBatches(IndexedBatches):
    """Non-overlapping windows of `bptt` tokens, `batch_size` consecutive windows per batch, in order.

        stream:   a b c d e f g h i j k l m ...      batch_size=2, bptt=3
        batch 0:  [a b c] [d e f]   targets [b c d] [e f g]
        batch 1:  [g h i] [j k l]   targets [h i j] [k l m]
    """

    ids: np.ndarray  # the token stream
    batch_size: int  # B: windows per batch
    bptt: int  # T: tokens per window
    drop_last: bool = True  # drop a last batch with fewer than B windows
    rows: tuple[int, int] | None = None  # (first, stop): the windows of each batch this process reads; None: all
    offset: int = 0  # where the first window starts in the stream (for_epoch draws it)
    order: tuple[int, ...] | None = None  # the windows in reading order (for_epoch); None: 0, 1, 2, ...

    def __post_init__(self) -> None:
        if self.batch_size < 1 or self.bptt < 1:
            raise UserError(f"batch size ({self.batch_size}) and bptt ({self.bptt}) must be at least 1")
        if len(self) == 0:
            raise UserError(f"the data has {len(self.ids):,} tokens: too few for a batch of {self.batch_size} "
                            f"windows of {self.bptt} tokens; use a smaller --batch-size or --bptt, or more text")

    @property
    def windows(self) -> int:
        return len(self.order) if self.order is not None else (len(self.ids) - 1 - self.offset) // self.bptt

    def for_epoch(self, epoch: int, seed: int) -> WindowBatches:
        """This epoch's windows shuffled (--shuffle): from an offset in [0, T), then in a random order,
        both drawn from (seed, epoch), so a resumed run reads the epoch alike. Every epoch has the same
        (len - T) // T windows, the most that any offset leaves room for: at most one fewer than in order."""
        rng = np.random.default_rng([seed, epoch])
        offset = int(rng.integers(self.bptt))
        order = rng.permutation((len(self.ids) - self.bptt) // self.bptt)
        return replace(self, offset=offset, order=tuple(order.tolist()))

    def __len__(self) -> int:
        full, rest = divmod(self.windows, self.batch_size)
        return full + (1 if rest and not self.drop_last else 0)

    def batch(self, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Batch k: inputs and targets, both (B', T) int64, B' = B but for a kept last batch."""
        first, last = k * self.batch_size, min((k + 1) * self.batch_size, self.windows)
        if self.rows:
            first, last = min(first + self.rows[0], last), min(first + self.rows[1], last)
        if self.order is not None:  # shuffled: each window read on its own, T+1 tokens from its start
            starts = self.offset + self.bptt * np.asarray(self.order[first:last], dtype=np.int64)
            block = np.asarray(self.ids[starts[:, None] + np.arange(self.bptt + 1)]).astype(np.int64)  # (B', T+1)
            return torch.from_numpy(block[:, :-1]), torch.from_numpy(block[:, 1:])
        begin = self.offset + first * self.bptt
        block = np.asarray(self.ids[begin: begin + (last - first) * self.bptt + 1]).astype(np.int64)
        x = torch.from_numpy(block[:-1]).view(last - first, self.bptt)
        y = torch.from_numpy(block[1:]).view(last - first, self.bptt)
        return x, y

    def shard(self, rank: int, world_size: int, even: bool = True) -> WindowBatches:
        """This process' share of every batch (distributed data parallel); see `share`."""
        return replace(self, rows=share(self.batch_size, rank, world_size, even))


def share(batch_size: int, rank: int, world_size: int, even: bool = True) -> tuple[int, int]:
    """The rows of each batch that process `rank` of `world_size` reads: rows r*B/N .. (r+1)*B/N - 1.

        batch k, B=4, N=2:   row 0 ─┐ rank 0        A stateful model's row i continues in row i of
                             row 1 ─┘               batch k+1 on the same process, so each process
                             row 2 ─┐ rank 1        carries the state of its own rows, and the rows
                             row 3 ─┘               of all processes together are the whole batch.

    Training needs `even` shares (the gradients are averaged as means of equal parts); evaluation
    sums losses and counts, so its shares may differ by a row, or be empty.
    """
    if even and batch_size % world_size:
        raise UserError(f"--batch-size {batch_size} must be a multiple of the {world_size} processes")
    return rank * batch_size // world_size, (rank + 1) * batch_size // world_size


def split_stream(ids: np.ndarray, valid_fraction: float, align: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """The first (1 - f) of the stream for training, the rest for validation, in order (as the book).

    The cut falls on a multiple of `align` (the window length), so training and validation windows
    start at the same phase of the stream, as when the book splits its list of windows.
    """
    if not 0 < valid_fraction < 1:
        raise UserError(f"--valid-fraction {valid_fraction} must be between 0 and 1")
    cut = int(len(ids) * (1 - valid_fraction)) // align * align
    return ids[:cut + 1], ids[cut:]


Batches = LMStream | WindowBatches


def lm_batches(ids: np.ndarray, batch_size: int, bptt: int, carries_state: bool, shrink: bool = False) -> Batches:
    """Rows that continue across batches for a model that carries its state; consecutive windows otherwise.

    `shrink` lowers the batch size to what a short stream can fill (a small validation split or
    evaluation file) instead of refusing it.
    """
    if shrink:
        batch_size = max(1, min(batch_size, (len(ids) - 1) // bptt))
    return (LMStream if carries_state else WindowBatches)(ids, batch_size, bptt)


POOL = 50  # batches whose examples are sorted by length together: padding stays small, batches still vary


def bucketed_order(lengths: np.ndarray, batch_size: int, rng: np.random.Generator) -> np.ndarray:
    """One epoch's order of examples of varying length (sentence pairs, labelled texts), as fairseq and
    torchtext's BucketIterator cut them: shuffled, sorted by length within pools of POOL batches so that
    a batch holds examples of about one length and little padding, cut into batches, and the whole
    batches shuffled so that lengths do not come in order; a last, partial batch's examples stay last.
    `lengths` is each example's length; the same `rng` state gives the same order (exact resume)."""
    order = rng.permutation(len(lengths))
    pool = POOL * batch_size
    for start in range(0, len(order), pool):
        part = slice(start, start + pool)
        order[part] = order[part][np.argsort(lengths[order[part]], kind="stable")]
    n = len(order) // batch_size
    batches = order[: n * batch_size].reshape(n, batch_size)[rng.permutation(n)]
    return np.concatenate([batches.reshape(-1), order[n * batch_size:]])


def batch_indices(order: np.ndarray, k: int, batch_size: int, rows: tuple[int, int] | None) -> np.ndarray:
    """The examples of batch k of `order`: all of them, or only this process' `rows` of it (`share`)."""
    first, stop = k * batch_size, min((k + 1) * batch_size, len(order))
    if rows:
        first, stop = min(first + rows[0], stop), min(first + rows[1], stop)
    return order[first:stop]


@dataclass(frozen=True, kw_only=True)
class BucketedBatches(IndexedBatches):
    """Batches of examples of varying length (sentence pairs, labelled texts): at first (validation) longest
    first, so the first batch is the biggest; each epoch of training (`for_epoch`) in the order
    `bucketed_order` draws from (seed, epoch) alone, so a resumed run reads the same. A subclass holds the
    examples and says how long each is (`lengths`, and `epoch_lengths` where an epoch sorts by another
    length) and how its batch reads (`batch`)."""

    batch_size: int  # examples per batch
    order: np.ndarray | None = None  # the examples in batch order, batch_size at a time; None: longest first
    drop_last: bool = True  # training drops a last short batch (every process needs its even share)
    rows: tuple[int, int] | None = None  # (first, stop): the examples of each batch this process reads
    examples: ClassVar[str] = "example(s)"  # what the examples are called in a message
    stream: ClassVar[int] = 0  # the random stream of its epochs' orders, one per kind of example

    def lengths(self) -> np.ndarray:
        raise NotImplementedError

    def epoch_lengths(self) -> np.ndarray:
        return self.lengths()

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise UserError(f"--batch-size {self.batch_size} must be at least 1")
        if self.order is None:
            object.__setattr__(self, "order", np.argsort(-self.lengths(), kind="stable"))
        if len(self) == 0:
            raise UserError(f"{len(self.order)} {self.examples}: too few for a batch of {self.batch_size}; "
                            "use a smaller --batch-size or more examples")

    def __len__(self) -> int:
        full, rest = divmod(len(self.order), self.batch_size)
        return full + (1 if rest and not self.drop_last else 0)

    def for_epoch(self, epoch: int, seed: int) -> BucketedBatches:
        """This epoch's batches: the examples shuffled, sorted by length within pools of POOL batches, cut,
        and the batches shuffled; from (seed, epoch) alone, so a resumed run draws the same."""
        rng = np.random.default_rng([seed, epoch, self.stream])
        return replace(self, order=bucketed_order(self.epoch_lengths(), self.batch_size, rng))

    def indices(self, k: int) -> np.ndarray:
        return batch_indices(self.order, k, self.batch_size, self.rows)

    def shard(self, rank: int, world_size: int, even: bool = True) -> BucketedBatches:
        return replace(self, rows=share(self.batch_size, rank, world_size, even))


def pad(rows: list[np.ndarray]) -> torch.Tensor:
    """Rows of ids as one (B, longest) int64 tensor, PAD on the right, at least one column."""
    out = torch.full((len(rows), max((len(r) for r in rows), default=1)), PAD, dtype=torch.long)
    for i, row in enumerate(rows):
        out[i, : len(row)] = torch.as_tensor(row, dtype=torch.long)
    return out

