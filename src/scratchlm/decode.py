"""Decoding an encoder-decoder: greedy search and beam search, batched over sentences.

Both are written against the interface every scratchlm encoder-decoder offers (the RNN ones of
`models/seq2seq.py`, a Transformer's as well):

    memory = model.encode(src, src_lengths)          # memory.select(index) picks rows of the batch
    state = model.init_state(memory)
    logits, state, attention = model.decode_step(y_prev, state, memory, need_weights=False)
    state = model.select_state(state, index)

`attention` is (B, S) for the RNNs' one attention, (B, layers, heads, S) for a Transformer's
cross-attention, or None; a model may leave it out (None) unless `need_weights` asks for it.

Decoding starts from BOS. A hypothesis ends at its own EOS (not included in its tokens) or after
`max_len` steps, an int or one per sentence (e.g. 2 * source length + 10).

Beam search (as in fairseq) keeps `beam` live hypotheses per sentence. At each step it scores every
extension of every live hypothesis by its summed log-probability, looks at the best 2 * beam: those of
the best `beam` that end in EOS are finished, and the best `beam` that do not go on. A sentence is done
once `beam` hypotheses have finished (or at its max_len, where the live ones are finished as they are);
they are ranked by their log-probability divided by GNMT's length penalty (Wu et al. 2016, eq. 14),

    lp(Y) = ((5 + |Y|) / 6) ** alpha       |Y| counting the EOS; alpha = 0 ranks by log-probability

since an unnormalised sum favours short hypotheses. With beam 1 this is greedy search.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from torch import nn

from scratchlm.data.tokenize import BOS, EOS
from scratchlm.errors import UserError


class EncoderDecoder(Protocol):
    """What the search needs from a model (see the module docstring)."""

    def encode(self, src: torch.Tensor, src_lengths: torch.Tensor) -> Any: ...
    def init_state(self, memory: Any) -> Any: ...
    def decode_step(self, y_prev: torch.Tensor, state: Any, memory: Any,
                    need_weights: bool = False) -> tuple[torch.Tensor, Any, torch.Tensor | None]: ...
    def select_state(self, state: Any, index: torch.Tensor) -> Any: ...


@contextmanager
def evaluating(model: nn.Module) -> Iterator[None]:
    """Dropout off and no autograd inside; the model's train/eval mode as it was afterwards."""
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            yield
    finally:
        model.train(was_training)


def step_limits(max_len: int | torch.Tensor, batch_size: int) -> list[int]:
    """max_len, an int or a (B,) tensor, as one limit per sentence."""
    if isinstance(max_len, torch.Tensor) and max_len.dim() > 0:
        limits = [int(n) for n in max_len.tolist()]
    else:
        limits = [int(max_len)] * batch_size
    if len(limits) != batch_size or min(limits, default=1) < 1:
        raise UserError(f"max_len must be at least 1, one per sentence; got {max_len}")
    return limits


def lp(length: int, alpha: float) -> float:
    """GNMT's lp(Y) = ((5 + |Y|) / 6) ** alpha (Wu et al. 2016, eq. 14); 1 for alpha = 0."""
    return ((5 + length) / 6) ** alpha


def greedy(model: EncoderDecoder, src: torch.Tensor, src_lengths: torch.Tensor, max_len: int | torch.Tensor,
           attention: bool = False) -> list[list[int]] | tuple[list[list[int]], list[torch.Tensor | None]]:
    """The most likely token at each step, for each sentence of src (B, S).

    Returns the token lists (without EOS); with `attention`, also per sentence the attention rows of
    those tokens, (len(tokens), ..., source length), or None for a model without attention.
    """
    B = src.size(0)
    limits = step_limits(max_len, B)
    with evaluating(model):
        memory = model.encode(src, src_lengths)
        state = model.init_state(memory)
        y = torch.full((B,), BOS, dtype=torch.long, device=src.device)
        ended = torch.zeros(B, dtype=torch.bool, device=src.device)
        last = torch.tensor(limits, device=src.device) - 1  # (B,) the step of each sentence's last token
        steps, rows = [], []
        for t in range(max(limits)):
            logits, state, weights = model.decode_step(y, state, memory, need_weights=attention)
            y = F.log_softmax(logits.float(), dim=-1).argmax(-1)  # the same numbers beam search ranks
            steps.append(y)
            rows.append(weights)
            ended |= (y == EOS) | (last == t)
            if ended.all():
                break
        tokens = torch.stack(steps, dim=1).tolist()  # (B, steps)
        hyps = []
        for i, seq in enumerate(tokens):
            seq = seq[: limits[i]]
            hyps.append(seq[: seq.index(EOS)] if EOS in seq else seq)
        if not attention:
            return hyps
        if rows[0] is None:
            return hyps, [None] * B
        weights = torch.stack(rows, dim=1)  # (B, steps, ..., S)
        return hyps, [weights[i, : len(h), ..., : int(src_lengths[i])].float().cpu() for i, h in enumerate(hyps)]


def beam_search(model: EncoderDecoder, src: torch.Tensor, src_lengths: torch.Tensor, beam: int,
                max_len: int | torch.Tensor, length_penalty: float = 1.0, n_best: int = 1,
                attention: bool = False) -> list[list[tuple]]:
    """The n_best hypotheses of each sentence of src (B, S), best first, as (tokens, score) tuples.

    tokens exclude EOS; score is the log-probability divided by the length penalty (see the module
    docstring). With `attention`, each tuple ends with the attention rows of its tokens,
    (len(tokens), ..., source length), or None for a model without attention.
    """
    if beam < 1 or not 1 <= n_best <= beam:
        raise UserError(f"beam {beam} must be at least 1, and n_best {n_best} between 1 and the beam")
    B, K = src.size(0), beam
    limits = step_limits(max_len, B)
    alpha = length_penalty
    with evaluating(model):
        rows = torch.arange(B, device=src.device).repeat_interleave(K)  # row b * K + k: beam k of sentence b
        memory = model.encode(src, src_lengths).select(rows)
        state = model.init_state(memory)
        y = torch.full((B * K,), BOS, dtype=torch.long, device=src.device)
        scores = torch.full((B, K), float("-inf"), device=src.device)
        scores[:, 0] = 0  # the K beams start equal: keep one, or the first step would fill the beam K times over
        history = torch.empty(B * K, 0, dtype=torch.long, device=src.device)  # (B * K, t) tokens so far
        seen = None  # (B * K, t, ..., S) their attention rows, when asked for
        finished: list[list[tuple[float, list[int], torch.Tensor | None]]] = [[] for _ in range(B)]
        done = [False] * B

        def finish(b: int, row: int, logp: float, tokens: list[int], steps: int) -> None:
            """Hypothesis `row` of sentence b is finished: ranked by logp / lp(steps), steps counting its EOS."""
            kept = None if seen is None else seen[row, : len(tokens), ..., : int(src_lengths[b])].float().cpu()
            finished[b].append((logp / lp(steps, alpha), tokens, kept))

        for t in range(max(limits)):
            logits, state, weights = model.decode_step(y, state, memory, need_weights=attention)
            logp = F.log_softmax(logits.float(), dim=-1)  # (B * K, V)
            V = logp.size(-1)
            if attention and weights is not None:
                seen = torch.cat([weights.new_zeros(B * K, 0, *weights.shape[1:]) if seen is None else seen,
                                  weights[:, None]], dim=1)  # (B * K, t + 1, ..., S)
            candidates = (scores.view(B * K, 1) + logp).view(B, K * V)  # every extension of every beam
            top, index = candidates.topk(min(2 * K, K * V), dim=1)  # (B, 2K), best first: enough to refill K after EOS
            top, index = top.tolist(), index.tolist()
            keep_rows, keep_tokens, keep_scores = [], [], []
            for b in range(B):
                alive: list[tuple[int, int, float]] = []  # (row, token, score) of the hypotheses that go on
                for j, (score, flat) in enumerate(zip(top[b], index[b], strict=True)):
                    if done[b] or len(alive) == K or score == float("-inf"):
                        break
                    row, token = b * K + flat // V, flat % V
                    if token != EOS:
                        alive.append((row, token, score))
                    elif j < K:  # an EOS among the best K: a finished hypothesis
                        finish(b, row, score, history[row].tolist(), t + 1)
                if not done[b] and t + 1 == limits[b]:  # out of steps: the live ones finish as they are
                    for row, token, score in alive[: K - len(finished[b])]:
                        finish(b, row, score, [*history[row].tolist(), token], t + 1)
                done[b] = done[b] or len(finished[b]) >= K or t + 1 == limits[b]
                alive += [(b * K, EOS, float("-inf"))] * (K - len(alive))  # a done sentence's rows idle on
                for row, token, score in alive:
                    keep_rows.append(row)
                    keep_tokens.append(token)
                    keep_scores.append(score)
            if all(done):
                break
            index_rows = torch.tensor(keep_rows, device=src.device)
            y = torch.tensor(keep_tokens, device=src.device)
            scores = torch.tensor(keep_scores, device=src.device).view(B, K)
            history = torch.cat([history[index_rows], y[:, None]], dim=1)
            seen = None if seen is None else seen[index_rows]
            state = model.select_state(state, index_rows)

        results = []
        for b in range(B):
            ranked = sorted(finished[b], key=lambda h: -h[0])[:n_best]
            results.append([(tokens, score, weights) if attention else (tokens, score)
                            for score, tokens, weights in ranked])
        return results

