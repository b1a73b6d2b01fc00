"""Sampling the next token, and the loop that turns a model into a stream of tokens.

The sampling maths is split into small pure functions (litgpt's `sample_top_p`, `sample`), each easy
to test on its own: temperature scales the logits; top-k keeps the k largest; top-p (nucleus
sampling, Holtzman et al. 2020) keeps the smallest set of tokens whose probabilities reach p.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch

from scratchlm.data.tokenize import DOC
from scratchlm.models.base import State


def top_k_filter(logits: torch.Tensor, k: int) -> torch.Tensor:
    """Logits outside the k largest set to -inf; exactly k survive even when values tie."""
    if k >= logits.size(-1):
        return logits
    keep = torch.topk(logits, k, dim=-1).indices
    return torch.full_like(logits, float("-inf")).scatter(-1, keep, logits.gather(-1, keep))


def top_p_filter(logits: torch.Tensor, p: float) -> torch.Tensor:
    """Keep the smallest set of most likely tokens whose total probability reaches p (at least one)."""
    sorted_logits, order = torch.sort(logits, descending=True, dim=-1)
    cumulative = sorted_logits.softmax(-1).cumsum(-1)
    drop_sorted = cumulative - sorted_logits.softmax(-1) >= p  # the mass before this token already reached p
    drop = drop_sorted.scatter(-1, order, drop_sorted)
    return logits.masked_fill(drop, float("-inf"))


def sample_next(logits: torch.Tensor, temperature: float = 0.0, top_k: int | None = None,
                top_p: float | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
    """One token id per row of `logits` (..., V). Temperature 0 is greedy: the argmax."""
    if temperature <= 0:
        return logits.argmax(-1)
    logits = logits.float() / temperature
    if top_k is not None:
        logits = top_k_filter(logits, top_k)
    if top_p is not None and top_p < 1:
        logits = top_p_filter(logits, top_p)
    probs = logits.softmax(-1)
    flat = probs.reshape(-1, probs.size(-1))
    return torch.multinomial(flat, 1, generator=generator).reshape(probs.shape[:-1])


def context_tensor(ids: list[int], window: int | None, device: torch.device) -> torch.Tensor:
    """The last `window` ids as a (1, T) batch, left-padded with the document separator when short."""
    if window is not None:
        ids = [DOC] * (window - len(ids)) + ids[-window:]
    return torch.tensor([ids], dtype=torch.long, device=device)


@torch.no_grad()
def generate_ids(model: torch.nn.Module, prompt: list[int], n_tokens: int, window: int | None,
                 temperature: float = 0.0, top_k: int | None = None, top_p: float | None = None,
                 seed: int | None = None) -> Iterator[int]:
    """New token ids, one at a time, after `prompt` (which should start with <doc>).

    A model that returns a state (an RNN's hidden state) reads each new token once, carrying the
    state; one that does not re-reads its last `window` tokens for each prediction.
    """
    device = next(model.parameters()).device
    generator = torch.Generator(device=device)
    generator.manual_seed(seed if seed is not None else int(torch.randint(0, 2**62, ()).item()))
    was_training = model.training
    model.eval()
    try:
        ids = list(prompt)
        logits, _, state = model(context_tensor(ids, window, device), state=None)
        for _ in range(n_tokens):
            token = int(sample_next(logits[0, -1], temperature, top_k, top_p, generator))
            yield token
            ids.append(token)
            if state is not None:
                logits, _, state = model(context_tensor([token], None, device), state=state)
            else:
                logits, _, _ = model(context_tensor(ids, window, device))
    finally:
        model.train(was_training)


@torch.no_grad()
def token_logprobs(model: torch.nn.Module, ids: list[int], window: int | None) -> torch.Tensor:
    """log p(ids[i] | ids[:i]) for i = 1 .. len(ids)-1.

    Models with a state read the sequence once, token by token; windowed models read every position's
    window in one batch.
    """
    was_training = model.training
    model.eval()
    try:
        device = next(model.parameters()).device
        targets = torch.tensor(ids[1:], device=device)
        if window is None:
            state: State = None
            rows = []
            for token in ids[:-1]:
                logits, _, state = model(context_tensor([token], None, device), state=state)
                rows.append(logits[0, -1])
            logits = torch.stack(rows)
        else:
            contexts = torch.cat([context_tensor(ids[:i], window, device) for i in range(1, len(ids))])
            logits = model(contexts)[0][:, -1]
        return logits.float().log_softmax(-1).gather(-1, targets[:, None])[:, 0]
    finally:
        model.train(was_training)
