"""A fixed-window neural language model: 3 words in, the 4th out.

Bengio, Ducharme, Vincent and Jauvin 2003, "A Neural Probabilistic Language Model": embed the previous
words and predict the next with a neural network. This is the first model of fast.ai's chapter 12
(LMModel1), whose twist is weight sharing: one embedding and one hidden layer serve all three positions,

    h1 = relu(W_hh e(x1))
    h2 = relu(W_hh (h1 + e(x2)))
    h3 = relu(W_hh (h2 + e(x3)))      logits = W_ho h3

which, written out like this, is already a recurrent network unrolled by hand (see `rnn.py`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from scratchlm.models.base import LanguageModel, State, lm_loss


@dataclass
class MLPConfig:
    vocab_size: int = 30  # number of tokens
    n_hidden: int = 64  # width of the embedding and the hidden layer


class MLP3(LanguageModel):
    """The book's LMModel1: three positions, each through the same hidden layer."""

    window = 3

    def __init__(self, config: MLPConfig):
        super().__init__()
        self.config = config
        self.i_h = nn.Embedding(config.vocab_size, config.n_hidden)  # input to hidden
        self.h_h = nn.Linear(config.n_hidden, config.n_hidden)  # hidden to hidden, shared
        self.h_o = nn.Linear(config.n_hidden, config.vocab_size)  # hidden to output

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None,
                state: State = None) -> tuple[torch.Tensor, torch.Tensor | None, State]:
        B, T = idx.shape
        assert T == 3, "mlp3 reads exactly 3 tokens"
        h = F.relu(self.h_h(self.i_h(idx[:, 0])))
        h = h + self.i_h(idx[:, 1])
        h = F.relu(self.h_h(h))
        h = h + self.i_h(idx[:, 2])
        h = F.relu(self.h_h(h))
        logits = self.h_o(h)[:, None]  # (B, 1, V): the next token only
        return logits, None if targets is None else lm_loss(logits, targets), None
