"""What every language model in scratchlm shares: the loss, and how recurrent state is passed around.

The one interface (makemore's idea: one `generate()` and one `evaluate()` serve every model):

    logits, loss, state = model(idx, targets=None, state=None)

    idx      (B, T) token ids
    logits   (B, T', V): the predictions for the last T' targets; T' = T for models that predict after
             every token, 1 for the first rungs that read a window and predict the next token only
    loss     mean cross-entropy against targets[:, -T':], or None without targets
    state    the recurrent state after the last token (None for models without one); passed back in
             on the next call. It is never kept on `self`, so a model holds no hidden state of its own.
             A tensor or a tuple of tensors laid out (..., B, H), as nn.RNN's (layers, B, H): the rows
             are the second-last dimension (distributed training splits and gathers them there).

Class attributes tell the trainer and the inference verbs how to drive a model:
    carries_state  training passes the state from one batch to the next (truncated BPTT)
    window         the tokens the model reads: exactly this many for a model that predicts the next token
                   only (T' = 1); at most this many, its context, for one that predicts after every token
                   (a Transformer); None if it reads any length

A model may also offer `new_cache(batch_size, device)`: an inference-only state (a Transformer's
keys and values) that `forward` fills and returns when it is passed as the state. Training never
passes one, so such a model returns None there, as one without a state.

A model that learns by counting (an n-gram model) has no trainable parameters and offers
`fit_counts(ids)`: the trainer takes no optimizer steps for it, but has the task hand it the training
data once (`Task.count`), then evaluates and saves it as it would a trained model after its last epoch
(`fits_by_counting` asks). Its tables are buffers, so the checkpoint carries them as it carries weights.
"""

from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F
from torch import nn

from scratchlm.errors import UserError

State = torch.Tensor | tuple[torch.Tensor, ...] | None


class LanguageModel(nn.Module):
    """Base class: the defaults below describe a model that reads any length and keeps no state."""

    carries_state: bool = False
    window: int | None = None


def fits_by_counting(model: nn.Module) -> bool:
    """Does the model learn by counting its training data once (`fit_counts`), not by gradient steps?"""
    return callable(getattr(model, "fit_counts", None))


def model_device(model: nn.Module) -> torch.device:
    """Where the model's tensors live: its parameters', or its buffers' for a model of counts."""
    for tensor in itertools.chain(model.parameters(), model.buffers()):
        return tensor.device
    return torch.device("cpu")


def parameter_count(model: nn.Module) -> int:
    """Every parameter, counted once (a tied weight is one tensor under two names)."""
    return sum(p.numel() for p in model.parameters())


def check_stack(cell: str, cells: dict, n_layers: int, n_hidden: int, dropout: float) -> None:
    """The checks every stacked recurrent config shares: a known cell, positive sizes, a dropout in [0, 1)."""
    if cell not in cells:
        raise UserError(f"unknown cell {cell!r}; choose one of {', '.join(cells)}")
    if n_layers < 1 or n_hidden < 1:
        raise UserError("n_layers and n_hidden must be at least 1")
    if not 0 <= dropout < 1:
        raise UserError(f"dropout {dropout} must be in [0, 1)")


def lm_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of the predictions against the last T' targets (T' = logits.size(1))."""
    targets = targets[:, -logits.size(1):]
    return F.cross_entropy(logits.reshape(-1, logits.size(-1)).float(), targets.reshape(-1))


def detach_state(state: State) -> State:
    """Cut the graph behind the state: gradients flow back through this batch only (truncated BPTT).

    Without it, each backward pass would reach through every batch since the start of the epoch,
    growing slower and hungrier with each step.
    """
    if state is None:
        return None
    if isinstance(state, torch.Tensor):
        return state.detach()
    return tuple(s.detach() for s in state)
