"""The contract between the models and the layers above them: what the trainer, the API and the tasks may
ask of any model, each ability declared once here with its default, and called unconditionally. A model
says what it can do by overriding a method, never by having an attribute or not (docs/architecture.md
has the table).

    Model                every model: how it learns, its precision rule, its layer groups, its output size,
                         how it follows the run's progress, whether it trains in several processes, its
                         word vectors, its batch as the run's first line shows it, its Hugging Face export
    LanguageModel        the next-token models: their one interface (below), carried state, window, cache
    WordVectorModel      word2vec and GloVe: they make their own batches from the word stream and take their
                         own written-out steps

The language models' one interface (makemore's idea: one `generate()` and one `evaluate()` serve every model):

    logits, loss, state = model(idx, targets=None, state=None)

    idx      (B, T) token ids
    logits   (B, T', V): the predictions for the last T' targets; T' = T for models that predict after
             every token, 1 for the first rungs that read a window and predict the next token only
    loss     mean cross-entropy against targets[:, -T':], or None without targets
    state    the recurrent state after the last token (None for models without one); passed back in
             on the next call. It is never kept on `self`, so a model holds no hidden state of its own.
             A tensor or a tuple of tensors laid out (..., B, H), as nn.RNN's (layers, B, H): the rows
             are the second-last dimension (distributed training splits and gathers them there).

A model that learns by counting (an n-gram model) has no trainable parameters: the trainer takes no steps
for it but hands it the training data once (`fit_counts`), then evaluates and saves it as after a last
epoch. Its tables are buffers, so the checkpoint carries them as it carries weights.
"""

from __future__ import annotations

import itertools
from typing import Any, ClassVar, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from scratchlm.errors import UserError
from scratchlm.speed import UNDER_AUTOCAST, PrecisionRule

State = torch.Tensor | tuple[torch.Tensor, ...] | None
Learning = Literal["gradient", "own_step", "counting"]


class Model(nn.Module):
    """The base of every model; the defaults describe a model trained by gradient steps under autocast."""

    # How it learns, which picks the trainer's stepper: gradient steps through autograd and an optimizer,
    # its own written-out steps (`WordVectorModel.take_step`), or one count of its data (`fit_counts`)
    learns_by: ClassVar[Learning] = "gradient"
    # The update it takes itself, in words for the run's first line; None: the optimizer's
    update_rule: ClassVar[str | None] = None

    def precision_rule(self) -> PrecisionRule:
        """When `--precision auto` takes bf16 (scratchlm.speed.resolve_precision)."""
        return UNDER_AUTOCAST

    def layer_groups(self) -> list[tuple[list[nn.Parameter], float]]:
        """(parameters, learning-rate factor) of each group: one group at the full rate, unless a model
        fine-tunes its layers at rates of their own (discriminative fine-tuning, Howard and Ruder 2018, 3.2)."""
        return [(list(self.parameters()), 1.0)]

    def output_size(self) -> int | None:
        """The width of the layer that writes tokens out (Muon leaves it to AdamW with the embeddings), or None."""
        return None

    def follow_progress(self, progress: float) -> None:
        """Called before each training step with the share of the run done, in [0, 1], for a model that changes
        as the run goes (gradual unfreezing, scheduled sampling)."""

    def several_processes(self) -> str | None:
        """Why this model cannot train in several processes (torchrun), or None when it can."""
        return None

    def word_matrix(self) -> torch.Tensor | None:
        """Its word vectors, one row per token of its vocabulary, or None when it has none."""
        return None

    def batch_shape(self, cfg: Any) -> str | None:
        """A batch as the run's first line shows it, where the model's batches are not its task's."""
        return None

    def fit_counts(self, ids: np.ndarray) -> None:
        """Learn from the whole training stream at once (a model with `learns_by = "counting"`)."""
        raise NotImplementedError(f"{type(self).__name__} does not learn by counting")

    def to_hf(self) -> tuple[dict, dict[str, torch.Tensor]] | None:
        """The model as a Hugging Face config and weights that `transformers` loads with equal logits; None for a
        model with no such counterpart."""
        return None


class LanguageModel(Model):
    """Base class of the next-token models: the defaults describe one that reads any length and keeps no state."""

    carries_state: ClassVar[bool] = False  # training passes the state from one batch to the next (truncated BPTT)
    # The tokens the model reads: exactly this many for a model that predicts the next token only (T' = 1);
    # at most this many, its context, for one that predicts after every token (a Transformer); None: any length
    window: int | None = None
    # It offers an inference-only state (a Transformer's keys and values, `new_cache`) that forward fills and
    # returns when passed as the state; training never passes one
    caches: ClassVar[bool] = False

    def new_cache(self, batch_size: int = 1, device: torch.device | str | None = None) -> Any:
        raise NotImplementedError(f"{type(self).__name__} keeps no cache")

    def output_size(self) -> int:
        return self.config.vocab_size

    def word_matrix(self) -> torch.Tensor | None:
        """The input embedding: the first embedding with a row per token of the vocabulary."""
        embedding = next((m for m in self.modules() if isinstance(m, nn.Embedding)
                          and m.num_embeddings == self.config.vocab_size), None)
        return None if embedding is None else embedding.weight


class WordVectorModel(Model):
    """word2vec and GloVe: each makes its batches from the word stream (the centre and context words of the
    pairs, or the non-zero co-occurrence counts) and takes its own written-out steps, whose per-step cost
    autograd and an optimizer would dwarf. `word_matrix` is what the verbs read."""

    learns_by: ClassVar[Learning] = "own_step"

    def take_counts(self, counts: np.ndarray) -> None:
        """A new run's model before its first step, given the words' counts (V,): the hierarchical softmax's
        Huffman tree is built from them."""

    def training_batches(self, words: Any, batch_size: int, seed: int) -> tuple[Any, Any]:
        """(train, validation) batches from `words` (scratchlm.data.contexts.Words), as the batches protocol
        of tasks/base.py has them."""
        raise NotImplementedError

    def take_step(self, batch: tuple, lr: float, precision: str = "fp32") -> tuple[float, int]:
        """One step at rate `lr` on the batch: (its summed loss before the step, the pairs or entries it read).
        A loss that is not finite must leave every weight as it was, so that the trainer's NaN policy holds."""
        raise NotImplementedError

    def batch_loss(self, batch: tuple) -> tuple[torch.Tensor, int]:
        """The batch's mean loss through autograd (what the written-out step follows), and its size."""
        raise NotImplementedError

    def eval_sums(self, batch: tuple) -> tuple[torch.Tensor, torch.Tensor, int]:
        """A validation batch: (summed loss, the pairs or entries predicted right, how many)."""
        raise NotImplementedError

    def several_processes(self) -> str | None:
        return "its steps are too small to split"


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
