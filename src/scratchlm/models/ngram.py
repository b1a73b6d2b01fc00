"""Count-based language models: interpolated modified Kneser-Ney, and stupid backoff for large corpora.

The baseline rung every neural model must beat. An n-gram model predicts a token from the n-1 tokens
before it by counting how often each n-gram occurred in the training stream; it learns by counting
once, not by gradient steps (`fit_counts`).

Interpolated Kneser-Ney (Kneser and Ney 1995; Chen and Goodman 1998, "An Empirical Study of Smoothing
Techniques for Language Modeling", TR-10-98, sec. 3, modified Kneser-Ney) takes a discount D off every
count and hands the mass it frees to the order below, down to the uniform distribution:

    p_k(w | h) = (c_k(h w) - D_k(c_k(h w))) / c_k(h .)  +  gamma_k(h) p_{k-1}(w | h')    h' = h less its first token
    gamma_k(h) = (D_k1 N1(h .) + D_k2 N2(h .) + D_k3+ N3+(h .)) / c_k(h .)               p_0(w) = 1 / V

At the highest order c_n is the raw count. A lower order counts continuations instead, c_k(h w) =
N1+(. h w), the number of distinct tokens seen before h w: "Francisco" is frequent, but nearly always
after "San", so it should get little of the mass an unseen context leaves to the order below. N_j(h .)
is the number of tokens w with c_k(h w) = j, and a context never seen (c_k(h .) = 0) passes everything
down (gamma = 1). Modified KN's three discounts of each order come from that order's count-of-counts
n_j, the number of its n-grams with count j:

    Y = n1 / (n1 + 2 n2)     D1 = 1 - 2Y n2/n1     D2 = 2 - 3Y n3/n2     D3+ = 3 - 4Y n4/n3

A corpus too small for them (some n_j = 0, or a discount outside (0, j]) falls back, with a warning, to
one discount Y per order (Ney, Essen and Kneser 1994), or 0.5. `discount=D` instead uses one given D for
every count and order: the original Kneser-Ney, as NLTK's KneserNeyInterpolated (which, unlike this,
ends its recursion at undiscounted continuation unigrams, so a word never seen has probability 0 there).

Each p_k(. | h) sums to 1 over the vocabulary, and every token, seen or not, keeps at least
gamma_1 / V, so no text has an infinite perplexity.

Stupid backoff (Brants, Popat, Xu, Och and Dean 2007) skips discounting: the relative frequency under
the longest context that has seen w, times `backoff` (0.4) for each order backed off,
S(w | h) = c(h w) / c(h .) if c(h w) > 0 else backoff * S(w | h'), down to add-one unigrams
(c(w) + 1) / (N + V), so that no token is impossible; a context never seen at all passes down without the
factor, which changes every score of that context alike. Its scores do not sum to 1, and `forward` returns
their logarithms: the cross-entropy of the language-model task renormalises them over the vocabulary,
so its loss and perplexity are those of S / sum(S) in each context, a true distribution but not the
scores themselves.

The tables: for each order k >= 2 the distinct k-grams, sorted by key = id(context) * V + token, where a
context's id is its index in the table of order k-1 (a token is its own id). So keys fit an int64 at any
order (V^5 would not, for a 33k vocabulary), and the successors of a context are one contiguous run of
its table, found with two binary searches. Counting is numpy sorting over the whole id stream, with no
Python loop over tokens. The tables are the model's buffers, so the run's safetensors file carries them.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from scratchlm.errors import UserError, closest
from scratchlm.models.base import LanguageModel, State, lm_loss

SMOOTHINGS = ("kneser-ney", "stupid-backoff")
NOTHING = -1  # the state's token before the first one read: a context that holds it is cut after it
FALLBACK_DISCOUNT = 0.5  # when not even n1 and n2 are there to estimate one


@dataclass
class NGramConfig:
    vocab_size: int = 30  # number of tokens
    order: int = 5  # n: each token is predicted from the n-1 tokens before it
    smoothing: Literal["kneser-ney", "stupid-backoff"] = "kneser-ney"  # interpolated Kneser-Ney; or stupid
    #  backoff for large corpora, whose scores are not probabilities (src/scratchlm/models/ngram.py says why)
    discount: float | None = None  # None: modified Kneser-Ney, three discounts per order from its count-of-counts;
    #  a number in (0, 1]: that one discount for every count and order (Kneser and Ney 1995, as NLTK)
    backoff: float = 0.4  # stupid backoff: the factor for each order backed off (Brants et al. 2007)

    def __post_init__(self) -> None:
        if not 1 <= self.order <= 10:
            raise UserError(f"order {self.order} must be between 1 (unigrams) and 10")
        if self.smoothing not in SMOOTHINGS:
            near = closest(str(self.smoothing), SMOOTHINGS)
            raise UserError(f"unknown smoothing {self.smoothing!r}; "
                            + (f"did you mean {', '.join(near)}?" if near else f"choose one of {', '.join(SMOOTHINGS)}"))
        if self.discount is not None and not 0 < self.discount <= 1:
            raise UserError(f"discount {self.discount} must be in (0, 1], or none for modified Kneser-Ney")
        if not 0 < self.backoff <= 1:
            raise UserError(f"backoff {self.backoff} must be in (0, 1]")


class NGram(LanguageModel):
    """An n-gram model over its count tables; predicts after every token from the n-1 tokens before it.

    The state is those last n-1 tokens, so a row's context runs on from batch to batch, as an RNN's
    hidden state does. Buffers (order k = 2..n): keys_k, the sorted k-gram keys; alpha_k, each k-gram's
    first term above (its discounted count over its context's total); gamma_k, each (k-1)-gram's weight
    as a context of order k. alpha_1 over the vocabulary, gamma_1 the empty context's weight.
    """

    carries_state = True
    learns_by = "counting"

    def __init__(self, config: NGramConfig):
        super().__init__()
        self.config = config
        V, n = config.vocab_size, config.order
        # An empty model, before counting: uniform (stupid backoff's add-one unigrams of nothing are uniform too)
        kneser_ney = config.smoothing == "kneser-ney"
        self.register_buffer("alpha_1", torch.full((V,), 0.0 if kneser_ney else 1.0 / V))
        self.register_buffer("gamma_1", torch.ones(1))
        self.register_buffer("discounts", torch.zeros(n, 3))  # D1, D2, D3+ of each order (Kneser-Ney)
        for k in range(2, n + 1):
            self.register_buffer(f"keys_{k}", torch.zeros(0, dtype=torch.long))
            self.register_buffer(f"alpha_{k}", torch.zeros(0))
            self.register_buffer(f"gamma_{k}", torch.ones(V if k == 2 else 0))
        self.register_load_state_dict_pre_hook(adopt_saved_sizes)

    # ------------------------------------------------------------ counting

    @torch.no_grad()
    def fit_counts(self, ids: np.ndarray) -> None:
        """Count every n-gram of the id stream `ids` (a memmap is fine) and fill the tables."""
        V, n = self.config.vocab_size, self.config.order
        stream = np.asarray(ids, dtype=np.int64)
        if stream.size and (stream.min() < 0 or stream.max() >= V):
            raise UserError(f"the ids to count must lie in [0, {V}); found {stream.min()}..{stream.max()}")
        tables = count_ngrams(stream, n, V)
        if self.config.smoothing == "kneser-ney":
            filled, discounts = kneser_ney_tables(tables, V, self.config.discount)
            self.discounts = torch.from_numpy(discounts).to(self.discounts)
        else:
            filled = stupid_backoff_tables(tables, V, self.config.backoff)
        device = self.gamma_1.device
        for name, array in filled.items():
            setattr(self, name, torch.from_numpy(array).to(device))

    # ------------------------------------------------------------ the distribution

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None,
                state: State = None) -> tuple[torch.Tensor, torch.Tensor | None, State]:
        B, T = idx.shape
        n = self.config.order
        before = state if state is not None else idx.new_full((B, n - 1), NOTHING)
        tokens = torch.cat([before, idx], dim=1)  # (B, n-1+T)
        # (B, T, n-1): the n-1 tokens up to and with idx[:, t], the context of the prediction after it
        contexts = tokens.unfold(1, n - 1, 1)[:, 1:] if n > 1 else idx.new_zeros(B, T, 0)
        probs = self.distribution(contexts.reshape(B * T, n - 1))  # (B*T, V)
        logits = probs.log_().view(B, T, -1)  # log-probabilities (Kneser-Ney), log-scores (stupid backoff)
        loss = None if targets is None else lm_loss(logits, targets)
        return logits, loss, tokens[:, T:]

    def distribution(self, contexts: torch.Tensor) -> torch.Tensor:
        """(P, n-1) contexts -> (P, V): p(w | context) for every token w (stupid backoff: S(w | context)).

        The recursion unrolled: order k's own terms (its k-grams' alpha) enter times the gammas of the
        orders above it, and the bottom (alpha_1 + gamma_1 / V) times all of them, so the (P, V) table
        is written once and only the k-grams seen after each context are added to it (stupid backoff:
        set, the higher orders last, since its longest seen context decides)."""
        P, n, V = contexts.size(0), self.config.order, self.config.vocab_size
        ids = {k: self.context_ids(contexts[:, n - k:]) for k in range(2, n + 1)}  # the last k-1 tokens' id
        share, above = {}, contexts.new_ones(P, dtype=self.alpha_1.dtype)  # the gammas of the orders above k
        for k in range(n, 1, -1):
            share[k] = above
            seen = ids[k] >= 0
            weight = above.new_ones(P)  # a context never seen passes everything down
            weight[seen] = getattr(self, f"gamma_{k}")[ids[k][seen]]
            above = above * weight
        kneser_ney = self.config.smoothing == "kneser-ney"
        probs = torch.outer(above, self.alpha_1 + self.gamma_1 / V if kneser_ney else self.alpha_1)
        for k in range(2, n + 1):
            rows, words, alpha = self.successors(k, ids[k])
            if kneser_ney:
                probs.index_put_((rows, words), alpha * share[k][rows], accumulate=True)
            else:
                probs[rows, words] = alpha * share[k][rows]
        return probs

    def context_ids(self, context: torch.Tensor) -> torch.Tensor:
        """(P, j) tokens -> (P,): the id of that j-gram in the table of order j, NOTHING where it was never
        seen (or holds the state's NOTHING), found by walking the tables from its first token."""
        ids = context[:, 0].clone()  # a token is its own id in order 1
        for j in range(1, context.size(1)):
            ids = self.find(j + 1, ids, context[:, j])
        return ids

    def find(self, k: int, prefix: torch.Tensor, token: torch.Tensor) -> torch.Tensor:
        """The index in table k of the k-gram (prefix's (k-1)-gram, token), NOTHING where absent."""
        keys = getattr(self, f"keys_{k}")
        if keys.numel() == 0:
            return torch.full_like(prefix, NOTHING)
        query = prefix * self.config.vocab_size + token
        at = torch.searchsorted(keys, query).clamp_max(keys.numel() - 1)
        found = (prefix >= 0) & (token >= 0) & (keys[at] == query)
        return torch.where(found, at, NOTHING)

    def successors(self, k: int, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Every k-gram of table k whose context is ids[p]: (p, its last token, its alpha), flattened."""
        keys, alpha, V = getattr(self, f"keys_{k}"), getattr(self, f"alpha_{k}"), self.config.vocab_size
        seen = ids >= 0
        start = torch.searchsorted(keys, ids.clamp_min(0) * V)
        stop = torch.where(seen, torch.searchsorted(keys, (ids.clamp_min(0) + 1) * V), start)  # one contiguous run
        lengths = stop - start
        rows = torch.repeat_interleave(torch.arange(len(ids), device=ids.device), lengths)
        first = torch.repeat_interleave(start - (lengths.cumsum(0) - lengths), lengths)
        at = first + torch.arange(len(rows), device=ids.device)  # start of each run, plus the place in it
        return rows, keys[at] % V, alpha[at]


def adopt_saved_sizes(module: NGram, state_dict: dict, prefix: str, *args) -> None:
    """A model is built from its config with empty tables; before its counts are loaded, each table takes
    the size it was saved with (their sizes follow from the corpus, not the config)."""
    for name, buffer in list(module.named_buffers(recurse=False)):
        saved = state_dict.get(prefix + name)
        if saved is not None and saved.shape != buffer.shape:
            setattr(module, name, buffer.new_empty(saved.shape))


# ---------------------------------------------------------------- counting with numpy


@dataclass
class Table:
    """The distinct k-grams of one order."""

    keys: np.ndarray | None  # sorted id(context) * V + token; None for order 1, where a token is its own id
    counts: np.ndarray  # how often each occurred (order 1: over the whole vocabulary)
    suffix: np.ndarray | None  # the id, in the table below, of each one's last k-1 tokens; None for order 1


def count_ngrams(stream: np.ndarray, order: int, V: int) -> list[Table]:
    """The tables of orders 1..n, each from the one below: the k-gram ending at position i is the
    (k-1)-gram ending at i-1 (its id, `ending`) followed by stream[i]."""
    tables = [Table(None, np.bincount(stream, minlength=V), None)]
    ending = stream  # the id of the k-gram ending at each position, from position k-1 on
    for k in range(2, order + 1):
        keys = ending[:-1] * V + stream[k - 1:]  # (N-k+1,)
        table_keys, counts, first, inverse = unique(keys)
        tables.append(Table(table_keys, counts, ending[first + 1]))  # its suffix ends where it does
        ending = inverse
    return tables


def unique(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """np.unique's sorted values, counts and inverse, and a position of each value (any one: every
    occurrence of a k-gram has the same suffix). torch's unique sorts about twice as fast as numpy's."""
    values, inverse, counts = torch.unique(torch.from_numpy(keys), return_inverse=True, return_counts=True)
    position = torch.empty(len(values), dtype=torch.long).scatter_(0, inverse, torch.arange(len(keys)))
    return values.numpy(), counts.numpy(), position.numpy(), inverse.numpy()


def table_size(tables: list[Table], k: int, V: int) -> int:
    """How many ids order k has: the vocabulary for order 1, else its distinct k-grams."""
    return V if k == 1 else len(tables[k - 1].keys)


def kneser_ney_tables(tables: list[Table], V: int, fixed: float | None) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """alpha_k and gamma_k of every order (the module docstring's equations), and the discounts used."""
    n = len(tables)
    out, discounts, fallbacks = {}, np.zeros((n, 3), dtype=np.float32), []
    for k in range(1, n + 1):
        # raw counts at the highest order; below it, continuation counts N1+(. h w) from the order above
        counts = tables[k - 1].counts if k == n else np.bincount(tables[k].suffix, minlength=table_size(tables, k, V))
        if fixed is not None:
            discounts[k - 1] = fixed
        else:
            discounts[k - 1], why = modified_discounts(counts)
            if why:
                fallbacks.append(f"order {k} ({why})")
        d = np.select([counts == 0, counts == 1, counts == 2], [0.0, *discounts[k - 1, :2]], discounts[k - 1, 2])
        context = np.zeros(len(counts), np.int64) if k == 1 else tables[k - 1].keys // V
        contexts = 1 if k == 1 else table_size(tables, k - 1, V)
        total = np.bincount(context, weights=counts, minlength=contexts)
        freed = np.bincount(context, weights=d, minlength=contexts)
        alpha = np.divide(counts - d, total[context], out=np.zeros(len(counts)), where=counts > 0)
        gamma = np.divide(freed, total, out=np.ones(contexts), where=total > 0)
        out[f"alpha_{k}"], out[f"gamma_{k}"] = alpha.astype(np.float32), gamma.astype(np.float32)
        if k > 1:
            out[f"keys_{k}"] = tables[k - 1].keys
    if fallbacks:
        warnings.warn("too few n-grams to estimate modified Kneser-Ney's three discounts at "
                      f"{', '.join(fallbacks)}; one discount per order is used there instead", stacklevel=3)
    return out, discounts


def modified_discounts(counts: np.ndarray) -> tuple[np.ndarray, str]:
    """Chen and Goodman's D1, D2, D3+ from the count-of-counts n1..n4 of `counts`, and why not ('' when
    they could be estimated); the fallback is one discount Y = n1 / (n1 + 2 n2), or 0.5 without n1, n2."""
    n1, n2, n3, n4 = (int(np.count_nonzero(counts == j)) for j in (1, 2, 3, 4))
    if min(n1, n2, n3, n4) > 0:
        Y = n1 / (n1 + 2 * n2)
        D = np.array([1 - 2 * Y * n2 / n1, 2 - 3 * Y * n3 / n2, 3 - 4 * Y * n4 / n3])
        if all(0 < D[j] <= j + 1 for j in range(3)):
            return D.astype(np.float32), ""
    why = f"n1..n4 = {n1}, {n2}, {n3}, {n4}"
    one = n1 / (n1 + 2 * n2) if n1 > 0 and n2 > 0 else FALLBACK_DISCOUNT
    return np.full(3, one, dtype=np.float32), why


def stupid_backoff_tables(tables: list[Table], V: int, backoff: float) -> dict[str, np.ndarray]:
    """Relative frequencies at every order above add-one unigrams; gamma is the backoff factor."""
    unigrams = tables[0].counts
    out = {"alpha_1": ((unigrams + 1) / (unigrams.sum() + V)).astype(np.float32), "gamma_1": np.ones(1, np.float32)}
    for k in range(2, len(tables) + 1):
        table = tables[k - 1]
        context = table.keys // V
        total = np.bincount(context, weights=table.counts, minlength=table_size(tables, k - 1, V))
        out[f"keys_{k}"] = table.keys
        out[f"alpha_{k}"] = (table.counts / total[context]).astype(np.float32)
        out[f"gamma_{k}"] = np.full(len(total), backoff, dtype=np.float32)
    return out
