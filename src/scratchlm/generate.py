"""Sampling the next token, and the loop that turns a model into a stream of tokens.

The sampling maths is split into small pure functions (litgpt's `sample_top_p`, `sample`), each easy
to test on its own: the repetition penalty (Keskar et al. 2019, CTRL, sec. 4.1) lowers the tokens
already seen; temperature scales the logits; top-k keeps the k largest; top-p (nucleus sampling,
Holtzman et al. 2020) keeps the smallest set of tokens whose probabilities reach p. Stop strings are
found in the decoded text by `find_stop` and `stop_prefix_length`.

Three kinds of model are driven here: one that carries a state (an RNN) reads each new token once;
one that offers a cache (`new_cache`, a Transformer) reads the prompt once into its cache and then
one token per step, within its context of `window` tokens; any other re-reads its last `window`
tokens for each prediction.

When a Transformer's context is full, it cannot simply slide along its cache: a learned position is
part of every cached key, so the tokens kept must be read again from position 0. Re-reading the last
`window` tokens for every new token would cost a whole context per token. Instead the context jumps
(`context_start`): the older half is dropped, the newer half read once into the emptied cache, and the
next half-window of tokens is read one at a time again. Each prediction then sees between half and all
of the context, and a long text costs one half-window prefill per half-window of tokens. Generation
without the cache crops its context the same way, so both read exactly the same tokens at every step.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Sequence

import torch

from scratchlm.data.tokenize import DOC
from scratchlm.models.base import LanguageModel, State, model_device


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


def repetition_penalty(logits: torch.Tensor, previous: torch.Tensor, penalty: float) -> torch.Tensor:
    """CTRL's penalty (Keskar et al. 2019): the logits of the tokens in `previous` divided by `penalty`
    where positive and multiplied by it where negative, so that a penalty > 1 lowers them either way
    (dividing a negative logit would raise it). `previous` holds ids, repeats allowed; 1 changes nothing."""
    if penalty == 1 or previous.numel() == 0:
        return logits
    seen = logits.gather(-1, previous)
    return logits.scatter(-1, previous, torch.where(seen > 0, seen / penalty, seen * penalty))


def find_stop(text: str, stops: Sequence[str]) -> int | None:
    """Where the first of the `stops` found in `text` begins, or None if none is there."""
    found = [i for i in (text.find(stop) for stop in stops) if i >= 0]
    return min(found) if found else None


def stop_prefix_length(text: str, stops: Sequence[str]) -> int:
    """How many characters at the end of `text` could be the start of a stop string: text to hold back
    until the next tokens tell whether the stop string comes."""
    longest = 0
    for stop in stops:
        for n in range(min(len(stop) - 1, len(text)), longest, -1):
            if text.endswith(stop[:n]):
                longest = n
                break
    return longest


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


def context_start(start: int, length: int, window: int) -> int:
    """Where the context of a cache-offering model begins in a text of `length` ids, given where it began
    before: unchanged while the last `length - start` ids fit the window; once they overflow it, moved on
    so that only the newest half of the window (rounded up) is kept, the new id included."""
    if length - start <= window:
        return start
    return length - (window + 1) // 2


def offers_cache(model: LanguageModel) -> bool:
    """A model that reads a context of up to `window` tokens, predicts after each, and can cache them."""
    return model.caches


def context_of(model: torch.nn.Module, window: int | None) -> int:
    """The most tokens a cache-offering model reads: its own window, or a smaller one asked for."""
    return model.window if window is None else min(window, model.window)


@torch.inference_mode()  # no autograd bookkeeping at all (no_grad still counts versions): ~8% faster a token
def generate_ids(model: torch.nn.Module, prompt: list[int], n_tokens: int, window: int | None,
                 temperature: float = 0.0, top_k: int | None = None, top_p: float | None = None,
                 seed: int | None = None, penalty: float = 1.0, use_cache: bool = True) -> Iterator[int]:
    """New token ids, one at a time, after `prompt` (which should start with <doc>).

    A model that returns a state (an RNN's hidden state) reads each new token once, carrying the state.
    A model that offers a cache reads the prompt once into it (its last `window` tokens: a longer
    prompt is cropped, with a warning), then each new token once; when the context is full, it keeps
    its newest half and reads that anew into the emptied cache (`context_start`, the module docstring).
    `use_cache=False` reads the whole context every time instead: the same contexts, the same tokens,
    slower. Any other model re-reads its last `window` tokens each time.
    `penalty` is the repetition penalty over the prompt and the tokens generated so far.
    """
    device = model_device(model)
    generator = torch.Generator(device=device)
    generator.manual_seed(seed if seed is not None else int(torch.randint(0, 2**62, ()).item()))
    was_training = model.training
    model.eval()
    try:
        ids = list(prompt)
        seen = torch.tensor(sorted(set(ids)), dtype=torch.long, device=device)  # for the repetition penalty
        cached = offers_cache(model)
        if cached:
            window = context_of(model, window)
            if len(ids) - 1 > window:  # the prompt's own tokens, after <doc>
                warnings.warn(f"the prompt is {len(ids) - 1} tokens, longer than the model's context of {window}; "
                              f"only its last {window} are read", stacklevel=2)
            cache = model.new_cache(1, device) if use_cache else None
            start = max(0, len(ids) - window)  # where the context begins in `ids`
            logits, _, _ = model(context_tensor(ids[start:], None, device), state=cache)
        else:
            logits, _, state = model(context_tensor(ids, window, device), state=None)
        for _ in range(n_tokens):
            token = int(sample_next(repetition_penalty(logits[0, -1], seen, penalty), temperature, top_k, top_p,
                                    generator))
            yield token
            ids.append(token)
            if penalty != 1 and not (seen == token).any():
                seen = torch.cat([seen, seen.new_tensor([token])])
            if cached:
                moved = context_start(start, len(ids), window)
                if cache is not None and moved == start:
                    logits, _, _ = model(context_tensor([token], None, device), state=cache)
                else:  # no cache, or a context that jumped on: read it whole, from position 0
                    if cache is not None:
                        cache.clear()
                    start = moved
                    logits, _, _ = model(context_tensor(ids[start:], None, device), state=cache)
            elif state is not None:
                logits, _, state = model(context_tensor([token], None, device), state=state)
            else:
                logits, _, _ = model(context_tensor(ids, window, device))
    finally:
        model.train(was_training)


@torch.no_grad()
def token_logprobs(model: torch.nn.Module, ids: list[int], window: int | None) -> torch.Tensor:
    """log p(ids[i] | ids[:i]) for i = 1 .. len(ids)-1.

    Models with a state read the sequence once, token by token. A model that offers a cache predicts
    after every token of its context, so it reads the sequence in context-sized chunks, one forward
    pass each: the first chunk is scored whole; each next one moves half a context on and scores only
    its new half, so every token after the first context is read with at least half a context before
    it. Other windowed models read every position's window in one batch.
    """
    was_training = model.training
    model.eval()
    try:
        device = model_device(model)
        targets = torch.tensor(ids[1:], device=device)
        if offers_cache(model):
            window = context_of(model, window)
            inputs, rows, done = ids[:-1], [], 0  # `done`: positions of `inputs` scored so far
            while done < len(inputs):
                stop = min(len(inputs), window if done == 0 else done + max(1, window // 2))
                logits = model(context_tensor(inputs[max(0, stop - window):stop], None, device))[0]  # (1, T, V)
                rows.append(logits[0, -(stop - done):])
                done = stop
            logits = torch.cat(rows)
        elif window is None:
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
