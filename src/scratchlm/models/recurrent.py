"""Stacked recurrent networks on PyTorch's fused kernels (cuDNN on a GPU).

fast.ai chapter 12, LMModel5: `nn.RNN` with several layers, each reading the hidden states of the one
below. Depth gives the model more room, and more trouble: activations multiplied by the same matrix
at every step explode or vanish, which is why it scores below the one-layer loop on human numbers and
what the gated cells (LSTM, GRU) were invented to fix. Stateful, predicting after every token.

With `cell="lstm"` or `"gru"` it is the book's LMModel6, and with `tie_weights` and `dropout` the
model of PyTorch's word_language_model example (Zaremba et al. 2014, "Recurrent Neural Network
Regularization": dropout on the non-recurrent connections only, that is on the embedded inputs,
between layers and on the last layer's outputs; the head tied to the embedding, Press and Wolf 2017,
"Using the Output Embedding to Improve Language Models").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from scratchlm.models.base import LanguageModel, State, check_stack, lm_loss

CELLS = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}


@dataclass
class FusedRNNConfig:
    vocab_size: int = 30  # number of tokens
    n_hidden: int = 64  # width of the embedding and of each layer's hidden state
    n_layers: int = 2  # stacked layers
    cell: Literal["rnn", "lstm", "gru"] = "rnn"  # which fused module
    dropout: float = 0.0  # on the non-recurrent connections: embedded inputs, between layers, last outputs
    tie_weights: bool = False  # the head's matrix is the embedding matrix (fewer parameters, better perplexity)

    def __post_init__(self) -> None:
        check_stack(self.cell, CELLS, self.n_layers, self.n_hidden, self.dropout)


class FusedRNN(LanguageModel):
    """Embedding -> dropout -> n stacked recurrent layers (fused) -> dropout -> linear head; the state is carried."""

    carries_state = True

    def __init__(self, config: FusedRNNConfig):
        super().__init__()
        self.config = config
        self.i_h = nn.Embedding(config.vocab_size, config.n_hidden)
        self.rnn = CELLS[config.cell](config.n_hidden, config.n_hidden, config.n_layers, batch_first=True,
                                      dropout=config.dropout if config.n_layers > 1 else 0.0)
        self.drop = nn.Dropout(config.dropout)  # the same rate on the inputs and outputs of the stack
        self.h_o = nn.Linear(config.n_hidden, config.vocab_size)
        if config.tie_weights:
            self.h_o.weight = self.i_h.weight  # one (V, H) tensor, read at both ends

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None,
                state: State = None) -> tuple[torch.Tensor, torch.Tensor | None, State]:
        B, T = idx.shape
        hidden, state = self.rnn(self.drop(self.i_h(idx)), state)  # (B, T, H); state (layers, B, H) or (h, c)
        logits = self.h_o(self.drop(hidden))
        return logits, None if targets is None else lm_loss(logits, targets), state
