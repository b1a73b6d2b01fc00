"""A recurrent neural network written as a loop, and the steps that made it a good language model.

Elman 1990; fast.ai chapter 12, LMModel2-4. The hidden state h carries what was read so far:

    h_t = relu(W_hh (h_{t-1} + W_ih x_t))        y_t = W_ho h_t

Three rungs of the ladder are this one loop with two switches:
    rnn3          (LMModel2) h starts at zero for every window of 3 tokens; predicts the 4th.
    rnn-stateful  (LMModel3) h is carried from batch to batch, detached: truncated back-propagation
                  through time. The batches must then be ordered so row i continues row i (see
                  `data/batches.py`).
    rnn           (LMModel4) also predicts after every token, not only the last: T times the signal.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from scratchlm.models.base import LanguageModel, State, lm_loss


@dataclass
class LoopRNNConfig:
    vocab_size: int = 30  # number of tokens
    n_hidden: int = 64  # width of the hidden state
    stateful: bool = True  # carry h across batches (truncated BPTT) instead of starting at zero
    every_token: bool = True  # predict after every token, not only after the last


class LoopRNN(LanguageModel):
    """One hidden layer applied in a loop over the tokens; see the module docstring for the switches."""

    def __init__(self, config: LoopRNNConfig):
        super().__init__()
        self.config = config
        self.carries_state = config.stateful
        self.i_h = nn.Embedding(config.vocab_size, config.n_hidden)
        self.h_h = nn.Linear(config.n_hidden, config.n_hidden)
        self.h_o = nn.Linear(config.n_hidden, config.vocab_size)

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None,
                state: State = None) -> tuple[torch.Tensor, torch.Tensor | None, State]:
        B, T = idx.shape
        x = self.i_h(idx)  # (B, T, H): all inputs embedded at once; only the recurrence is a loop
        h = state if state is not None else x.new_zeros(B, self.config.n_hidden)
        outputs = []
        for t in range(T):
            h = F.relu(self.h_h(h + x[:, t]))
            outputs.append(h)
        hidden = torch.stack(outputs, dim=1) if self.config.every_token else h[:, None]  # (B, T', H)
        logits = self.h_o(hidden)
        loss = None if targets is None else lm_loss(logits, targets)
        return logits, loss, h if self.config.stateful else None
