"""GloVe (Pennington, Socher and Manning 2014, "GloVe: Global Vectors for Word Representation").

Where word2vec reads the text pair by pair, GloVe reads it once, to count: X_ij is how often word j
appears within `window` words of word i, each occurrence weighted 1/d for its distance d (sec. 4.2), in
both directions (X is symmetric). It then fits word vectors w_i, context vectors w~_j and two biases so
that their dot product predicts the logarithm of the count, by weighted least squares over the non-zero
entries only (eq. 8):

    J = sum_{X_ij > 0} f(X_ij) (w_i . w~_j + b_i + b~_j - log X_ij)^2

    f(x) = (x / x_max)^alpha  if x < x_max,  else 1                       (eq. 9; x_max 100, alpha 3/4)

f keeps the many rare, noisy counts from dominating and stops the frequent ones from swamping the rest.
The training is AdaGrad (Duchi et al. 2011) over large batches of shuffled non-zero entries, with the
gradients written out (g = 2 f(X_ij) (w_i . w~_j + b_i + b~_j - log X_ij) for an entry):

    dJ/dw_i = g w~_j     dJ/dw~_j = g w_i     dJ/db_i = dJ/db~_j = g

summed over the entries of a batch that share a row, then each touched row steps by
lr * grad / sqrt(G), G the sum of its squared gradients so far, started at 1 as the GloVe tool does (and
as torch.optim.Adagrad with initial_accumulator_value=1 does: a test checks the two agree). Only the rows
a batch touches move, so a step costs the batch, not the vocabulary. The word vector kept is w + w~
(sec. 4.2: the two are equivalent up to their random start, and their sum is slightly better).

Counting keeps memory bounded: the stream is read a chunk of `CHUNK` words at a time; each chunk's
(i, j) pairs are packed into int64 keys i * V + j, summed per key with torch.unique, and the chunks'
tables are merged whenever they hold more than `MERGE_AT` entries, so memory follows the number of
distinct pairs, never the length of the text.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from scratchlm.data.batches import IndexedBatches
from scratchlm.data.contexts import Words
from scratchlm.errors import UserError
from scratchlm.models.base import WordVectorModel
from scratchlm.speed import PrecisionRule

CHUNK = 1 << 18  # words of the stream read at a time while counting (its pairs: ~80 MB at window 10)
MERGE_AT = 1 << 24  # merge the chunks' tables once they hold this many entries together
VALID_ENTRIES = 20_000  # the fixed sample of non-zero counts each evaluation scores
ADAGRAD_START = 1.0  # every squared-gradient sum starts here (the GloVe tool's gradsq)
ADAGRAD_EPS = 1e-10  # added to sqrt(G), as torch.optim.Adagrad does


@dataclass
class GloVeConfig:
    """GloVe's settings; the defaults are the paper's (sec. 4.2) and the GloVe tool's."""

    vocab_size: int = 1000  # rows: the word tokenizer's vocabulary (specials and the newline token never train)
    dim: int = 100  # length of a word vector
    window: int = 10  # words on each side counted as context, each weighted 1/distance
    x_max: float = 100.0  # counts at or above this get the full weight f = 1
    alpha: float = 0.75  # f(x) = (x / x_max)^alpha below x_max

    def __post_init__(self) -> None:
        if self.vocab_size < 1 or not 1 <= self.dim <= 10_000:
            raise UserError(f"dim {self.dim} must be between 1 and 10,000")
        if not 1 <= self.window <= 100:
            raise UserError(f"window {self.window} must be between 1 and 100")
        if not self.x_max > 0:
            raise UserError(f"x_max {self.x_max} must be above 0 (the paper's is 100)")
        if not 0 < self.alpha <= 1:
            raise UserError(f"alpha {self.alpha} must be in (0, 1] (the paper's is 0.75)")


# ---------------------------------------------------------------- counting


@dataclass
class Cooccurrence:
    """The non-zero entries of X, sorted by (row, col): X[rows[e], cols[e]] = values[e]."""

    rows: torch.Tensor  # (N,) int64
    cols: torch.Tensor  # (N,) int64
    values: torch.Tensor  # (N,) float64, sums of 1/distance

    def __len__(self) -> int:
        return len(self.values)


def count_cooccurrence(ids: np.ndarray, is_word: np.ndarray, boundary: np.ndarray, window: int,
                       chunk: int = CHUNK) -> Cooccurrence:
    """X from a stream of token ids: `is_word` (V,) marks the ids that count (the others, <unk> and the
    specials, are dropped before the windows are laid, as the GloVe tool skips unknown words), and
    `boundary` (V,) the ids that end a sentence, which no window crosses."""
    V = len(is_word)
    tables: list[tuple[torch.Tensor, torch.Tensor]] = []
    held = 0
    carried = np.zeros(0, dtype=np.int64)  # the last `window` kept words of the chunk before, and their sentences
    carried_sentence = np.zeros(0, dtype=np.int64)
    sentence_base = 0
    for start in range(0, len(ids), chunk):
        words = np.asarray(ids[start:start + chunk]).astype(np.int64)
        sentence = np.cumsum(boundary[words]) + sentence_base
        sentence_base = int(sentence[-1])
        kept = is_word[words].astype(bool)
        stream = np.concatenate([carried, words[kept]])
        sentences = np.concatenate([carried_sentence, sentence[kept]])
        keys, values = window_pairs(stream, sentences, len(carried), window, V)
        tables.append(sum_by_key(keys, values))
        held += len(tables[-1][0])
        if held > MERGE_AT:
            tables, held = [merge(tables)], len(tables[0][0])
        carried, carried_sentence = stream[-window:], sentences[-window:]
    keys, values = merge(tables) if tables else (torch.zeros(0, dtype=torch.int64), torch.zeros(0, dtype=torch.float64))
    return Cooccurrence(keys // V, keys % V, values)


def window_pairs(stream: np.ndarray, sentences: np.ndarray, carried: int, window: int,
                 V: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The keys i * V + j and weights 1/d of every pair d <= window apart in one sentence, both ways;
    the first `carried` words are the chunk before's, so only pairs that end after them are new."""
    keys, weights = [], []
    for d in range(1, window + 1):
        left, right = stream[:-d], stream[d:]
        same = sentences[:-d] == sentences[d:]
        same[: max(carried - d, 0)] = False  # both words in the carried part: counted with the chunk before
        a, b = left[same], right[same]
        keys += [a * V + b, b * V + a]
        weights.append(np.full(2 * len(a), 1.0 / d))
    if not keys:
        return torch.zeros(0, dtype=torch.int64), torch.zeros(0, dtype=torch.float64)
    return torch.from_numpy(np.concatenate(keys)), torch.from_numpy(np.concatenate(weights))


def sum_by_key(keys: torch.Tensor, values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The distinct keys, sorted, and the sum of the values of each."""
    distinct, inverse = torch.unique(keys, sorted=True, return_inverse=True)
    return distinct, torch.zeros(len(distinct), dtype=torch.float64).index_add_(0, inverse, values)


def merge(tables: list[tuple[torch.Tensor, torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor]:
    return sum_by_key(torch.cat([k for k, _ in tables]), torch.cat([v for _, v in tables]))


def weighting(x: torch.Tensor, x_max: float, alpha: float) -> torch.Tensor:
    """f(x) = min((x / x_max)^alpha, 1) (eq. 9)."""
    return (x / x_max).pow(alpha).clamp(max=1.0)


# ---------------------------------------------------------------- batches


class EntryBatches(IndexedBatches):
    """One epoch's batches of non-zero entries (rows, cols, log X, f(X)), in an order drawn from
    (seed, epoch) alone: the same k gives the same batch, so a resumed run reads what the first did."""

    def __init__(self, rows: torch.Tensor, cols: torch.Tensor, log_x: torch.Tensor, weight: torch.Tensor,
                 batch_size: int, seed: int, epoch: int = 0, shuffle: bool = True):
        self.rows, self.cols, self.log_x, self.weight = rows, cols, log_x, weight
        self.batch_size, self.seed, self.epoch, self.shuffle = batch_size, seed, epoch, shuffle
        self.order = (torch.from_numpy(np.random.default_rng([seed, epoch]).permutation(len(rows)))
                      if shuffle else torch.arange(len(rows)))

    def __len__(self) -> int:
        return math.ceil(len(self.rows) / self.batch_size)

    def for_epoch(self, epoch: int, seed: int) -> EntryBatches:
        return EntryBatches(self.rows, self.cols, self.log_x, self.weight, self.batch_size, seed, epoch, self.shuffle)

    def batch(self, k: int) -> tuple[torch.Tensor, ...]:
        pick = self.order[k * self.batch_size:(k + 1) * self.batch_size]
        return self.rows[pick], self.cols[pick], self.log_x[pick], self.weight[pick]


# ---------------------------------------------------------------- the model


class GloVe(WordVectorModel):
    """Word vectors w, context vectors w~ and their biases, with AdaGrad's squared-gradient sums as
    buffers (saved with the weights, so a resumed run steps exactly as an unbroken one)."""

    update_rule = "AdaGrad, gradients written out"

    def __init__(self, config: GloVeConfig):
        super().__init__()
        self.config = config
        V, D = config.vocab_size, config.dim
        # the GloVe tool's start: every weight uniform in [-0.5/D, 0.5/D]
        self.word = nn.Parameter(torch.empty(V, D).uniform_(-0.5 / D, 0.5 / D))  # w
        self.context = nn.Parameter(torch.empty(V, D).uniform_(-0.5 / D, 0.5 / D))  # w~
        self.word_bias = nn.Parameter(torch.empty(V).uniform_(-0.5 / D, 0.5 / D))  # b
        self.context_bias = nn.Parameter(torch.empty(V).uniform_(-0.5 / D, 0.5 / D))  # b~
        for name, p in self.named_parameters():
            self.register_buffer(f"{name}_sq", torch.full_like(p, ADAGRAD_START))

    def word_matrix(self) -> torch.Tensor:
        """The word vectors kept: w + w~ (V x D)."""
        return self.word + self.context

    # -- the word-vector models' protocol (models/base.py): GloVe learns from the counts, not from the pairs

    def precision_rule(self) -> PrecisionRule:
        """fp32 everywhere: the step has no matrix product for bf16 to speed up."""
        return PrecisionRule(None, on_gpu=False)

    def batch_shape(self, cfg) -> str:
        """Entries of X, not the pairs of words of word2vec."""
        return f"{cfg.batch_size:,} co-occurrence entries"

    def training_batches(self, words: Words, batch_size: int, seed: int) -> tuple[EntryBatches, EntryBatches]:
        """X counted from the stream (once), and the batches of its non-zero entries: every entry, shuffled
        each epoch, for training; a fixed sample of `VALID_ENTRIES` for the evaluations."""
        cfg = self.config
        X = count_cooccurrence(words.ids, words.counts > 0, words.boundary, cfg.window)
        if len(X) == 0:
            raise UserError("no two words are seen within a window of each other: GloVe has nothing to count")
        log_x, weight = X.values.log().float(), weighting(X.values, cfg.x_max, cfg.alpha).float()
        train = EntryBatches(X.rows, X.cols, log_x, weight, batch_size, seed)
        sample = torch.from_numpy(np.random.default_rng([seed, 7919]).permutation(len(X))[:VALID_ENTRIES])
        valid = EntryBatches(X.rows[sample], X.cols[sample], log_x[sample], weight[sample], 4096, seed, shuffle=False)
        return train, valid

    def residual(self, rows: torch.Tensor, cols: torch.Tensor, log_x: torch.Tensor) -> torch.Tensor:
        """w_i . w~_j + b_i + b~_j - log X_ij for each entry (B,)."""
        w, c = self.word.index_select(0, rows), self.context.index_select(0, cols)
        return (w * c).sum(1) + self.word_bias.index_select(0, rows) + self.context_bias.index_select(0, cols) - log_x

    def batch_loss(self, batch: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, int]:
        """The batch's mean of f(X_ij) (residual)^2, through autograd (what the written-out step follows)."""
        rows, cols, log_x, weight = batch
        return (weight * self.residual(rows, cols, log_x).square()).mean(), len(rows)

    @torch.no_grad()
    def take_step(self, batch: tuple[torch.Tensor, ...], lr: float, precision: str = "fp32") -> tuple[float, int]:
        """One AdaGrad step on the batch's summed J at rate `lr`; (J before the step, entries read). A
        loss that is not finite leaves every weight as it was (the trainer's NaN policy)."""
        rows, cols, log_x, weight = batch
        if len(rows) == 0:
            return 0.0, 0
        w, c = self.word.index_select(0, rows), self.context.index_select(0, cols)  # (B, D)
        residual = (w * c).sum(1) + self.word_bias.index_select(0, rows) + self.context_bias.index_select(0, cols) - log_x
        loss = (weight * residual.square()).sum().item()
        if not math.isfinite(loss):
            return loss, len(rows)
        g = 2 * weight * residual  # (B,): dJ/d(prediction) for each entry
        self.adagrad(self.word, self.word_sq, rows, g.unsqueeze(1) * c, lr)
        self.adagrad(self.context, self.context_sq, cols, g.unsqueeze(1) * w, lr)
        self.adagrad(self.word_bias, self.word_bias_sq, rows, g, lr)
        self.adagrad(self.context_bias, self.context_bias_sq, cols, g, lr)
        return loss, len(rows)

    @staticmethod
    def adagrad(param: torch.Tensor, squares: torch.Tensor, index: torch.Tensor, grads: torch.Tensor, lr: float) -> None:
        """Sum the entries' gradients per row, add their squares to G, step the rows by lr * grad / sqrt(G)."""
        touched, inverse = torch.unique(index, return_inverse=True)
        grad = torch.zeros((len(touched), *param.shape[1:]), dtype=param.dtype).index_add_(0, inverse, grads)
        G = squares.index_select(0, touched) + grad.square()
        squares.index_copy_(0, touched, G)
        param.index_add_(0, touched, grad / (G.sqrt() + ADAGRAD_EPS), alpha=-lr)

    @torch.no_grad()
    def eval_sums(self, batch: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, torch.Tensor, int]:
        """(summed J, entries whose count is predicted within a factor of 2, entries) on a validation batch."""
        rows, cols, log_x, weight = batch
        residual = self.residual(rows, cols, log_x)
        return (weight * residual.square()).sum(), (residual.abs() < math.log(2)).sum(), len(rows)
