"""AWD-LSTM: an LSTM language model regularized in every place it can overfit.

Merity, Keskar and Socher 2017, "Regularizing and Optimizing LSTM Language Models" (ASGD Weight-Dropped
LSTM); fast.ai chapter 12's LMModel7 and fastai's `AWD_LSTM`. The network is the stacked LSTM of
`lstm`; what is new is where the noise goes and what the loss penalises:

    e      = embedding_dropout(E)[x]              whole words dropped: their rows of E zeroed, the rest
                                                  scaled by 1/(1-p) (Gal and Ghahramani 2016)
    h^0    = locked_dropout(e)                    one mask per sequence, the same at every time step
    h^l    = LSTM_l(h^{l-1}; dropconnect(W_hh^l))  DropConnect (Wan et al. 2013) on the hidden-to-hidden
                                                  matrix, one dropped matrix per batch, so the fused
                                                  kernel still runs; locked dropout between layers
    y      = locked_dropout(h^L)                  on the last layer's outputs
    logits = E y + b                              weight tying (Press and Wolf 2017; Inan et al. 2017):
                                                  the head is the embedding matrix, so h^L is E wide

    loss   = CE(logits, targets)
           + alpha * mean(y^2)                                AR: activation regularization
           + beta  * mean((h^L_t - h^L_{t-1})^2)              TAR: temporal activation regularization

AR keeps the dropped outputs small; TAR keeps the undropped outputs from jumping between steps.
`forward` returns this sum as the loss in training mode (the objective the trainer minimises); in eval
mode, and always in `evaluate()`, which computes it from the logits, the loss is the plain
cross-entropy. Every dropout is the identity in eval mode. The state is carried between batches,
one (h, c) per layer, flattened: (h_1, c_1, h_2, c_2, ...), each (1, B, H_l).

What pays depends on the data. On human numbers (a 64-wide model, 50k training tokens) the registry's
`awd-lstm` keeps only the locked output dropout, with strong weight decay (0.7): each of the other four
dropouts, even at 0.05, cost accuracy there, and so did random-length BPTT (`--random-bptt`), whereas
the weight decay took the validation accuracy from about 0.87 (the book's 0.1) to 0.90-0.96, and a peak
rate of 5e-3 rather than the book's 1e-2 lifted the median of five seeds from 0.91 to 0.93. Turn the
dropouts on with `--set weight_p=0.5` and so on for larger text.

Not here: the paper's optimiser (non-monotonically triggered averaged SGD; the trainer's AdamW with
one-cycle is used instead).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from scratchlm.errors import UserError
from scratchlm.models.base import LanguageModel, State, lm_loss

DROPOUTS = ("embed_p", "input_p", "hidden_p", "weight_p", "output_p")


@dataclass
class AWDLSTMConfig:
    vocab_size: int = 30  # number of tokens
    n_embed: int = 64  # width of the embedding, and of the last layer's output (the tied head reads it)
    n_hidden: int = 64  # hidden width of the layers below the last
    n_layers: int = 2  # stacked single-layer LSTMs, so each layer has its own width and weight dropout
    tie_weights: bool = True  # the head's matrix is the embedding matrix: fewer parameters, better perplexity
    # The dropout probabilities, each multiplied by drop_mult; the defaults are the paper's for Penn Treebank.
    embed_p: float = 0.1  # whole words dropped from the embedding: no prediction may rest on one word being seen
    input_p: float = 0.4  # locked, on the embedded inputs: the same units missing at every step, so the
    #                       recurrence cannot average the noise away as it can per-step masks
    hidden_p: float = 0.25  # locked, between layers: each layer learns from an unreliable one below
    weight_p: float = 0.5  # DropConnect on W_hh: regularizes the recurrence itself, which a mask on h cannot
    #                        without breaking the memory from step to step
    output_p: float = 0.4  # locked, on the last layer's outputs before the head (the book's LMModel7 dropout)
    drop_mult: float = 1.0  # one scale for all five (fastai's drop_mult): the first knob to turn
    alpha: float = 2.0  # AR weight: penalises large (dropped) outputs
    beta: float = 1.0  # TAR weight: penalises outputs that change quickly from one step to the next

    def __post_init__(self) -> None:
        if min(self.n_embed, self.n_hidden, self.n_layers) < 1:
            raise UserError("n_embed, n_hidden and n_layers must be at least 1")
        for name in DROPOUTS:
            if not 0 <= self.p(name) < 1:
                raise UserError(f"{name} x drop_mult = {self.p(name)} must be in [0, 1)")
        if self.alpha < 0 or self.beta < 0:
            raise UserError("alpha and beta must be at least 0")

    def p(self, name: str) -> float:
        """A dropout probability as used: the field times drop_mult."""
        return getattr(self, name) * self.drop_mult


class EmbeddingDropout(nn.Embedding):
    """An embedding that, in training, drops whole rows (words) and scales the kept ones by 1/(1-p)."""

    def __init__(self, vocab_size: int, n_embed: int, p: float):
        super().__init__(vocab_size, n_embed)
        self.p = p

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        weight = self.weight  # (V, E)
        if self.training and self.p > 0:
            mask = weight.new_empty(weight.size(0), 1).bernoulli_(1 - self.p) / (1 - self.p)  # (V, 1)
            weight = weight * mask
        return F.embedding(idx, weight)  # (B, T, E)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, p={self.p}"


class LockedDropout(nn.Module):
    """Variational dropout (Gal and Ghahramani 2016): one mask per sequence, shared by all its time steps."""

    def __init__(self, p: float):
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return x
        mask = x.new_empty(x.size(0), 1, x.size(2)).bernoulli_(1 - self.p) / (1 - self.p)  # (B, 1, H)
        return x * mask  # (B, T, H)

    def extra_repr(self) -> str:
        return f"p={self.p}"


class WeightDropout(nn.Module):
    """DropConnect on some weights of a module, which still runs its own (fused) forward.

    The module keeps its parameters as they are (so its state dict is an ordinary one); in training,
    each forward computes the dropped weights from them and calls the module with those in their place
    (`torch.func.functional_call`), so the gradient reaches the raw weights through the mask. In eval
    mode the module is called as it is. On a GPU, cuDNN then finds weights outside its flattened buffer
    and says so: that warning is expected here and silenced.
    """

    def __init__(self, module: nn.Module, names: tuple[str, ...], p: float):
        super().__init__()
        self.module, self.names, self.p = module, names, p

    def forward(self, *args):
        if not self.training or self.p == 0:
            return self.module(*args)
        dropped = {name: F.dropout(getattr(self.module, name), self.p, training=True) for name in self.names}
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*contiguous chunk of memory.*")
            return functional_call(self.module, dropped, args)

    def extra_repr(self) -> str:
        return f"names={self.names}, p={self.p}"


class AWDLSTM(LanguageModel):
    """Dropped embedding -> locked dropout -> LSTM layers (weight-dropped, locked dropout between) ->
    locked dropout -> tied head; loss = CE + AR + TAR in training. See the module docstring."""

    carries_state = True

    def __init__(self, config: AWDLSTMConfig):
        super().__init__()
        self.config = c = config
        self.encoder = EmbeddingDropout(c.vocab_size, c.n_embed, c.p("embed_p"))
        self.input_drop = LockedDropout(c.p("input_p"))
        sizes = [c.n_embed] + [c.n_hidden] * (c.n_layers - 1) + [c.n_embed]
        self.rnns = nn.ModuleList(
            WeightDropout(nn.LSTM(sizes[k], sizes[k + 1], batch_first=True), ("weight_hh_l0",), c.p("weight_p"))
            for k in range(c.n_layers))
        self.hidden_drop = LockedDropout(c.p("hidden_p"))
        self.output_drop = LockedDropout(c.p("output_p"))
        self.decoder = nn.Linear(c.n_embed, c.vocab_size)
        if c.tie_weights:
            self.decoder.weight = self.encoder.weight  # one (V, E) tensor, read at both ends

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None,
                state: State = None) -> tuple[torch.Tensor, torch.Tensor | None, State]:
        x = self.input_drop(self.encoder(idx))  # (B, T, E)
        new_state = []
        for k, rnn in enumerate(self.rnns):
            layer_state = None if state is None else (state[2 * k], state[2 * k + 1])  # (1, B, H_k) each
            raw, (h, c) = rnn(x, layer_state)  # (B, T, H_k)
            new_state += [h, c]
            x = self.hidden_drop(raw) if k < len(self.rnns) - 1 else raw
        dropped = self.output_drop(raw)  # (B, T, E)
        logits = self.decoder(dropped)  # (B, T, V)
        loss = None
        if targets is not None:
            loss = lm_loss(logits, targets)
            if self.training:
                loss = loss + self.config.alpha * dropped.float().pow(2).mean()
                if raw.size(1) > 1:
                    loss = loss + self.config.beta * (raw[:, 1:] - raw[:, :-1]).float().pow(2).mean()
        return logits, loss, tuple(new_state)

