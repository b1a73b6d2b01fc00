"""The gated recurrent cells written from their equations, and a language model stacked from them.

LSTM: Hochreiter and Schmidhuber 1997, "Long Short-Term Memory", with the forget gate of Gers,
Schmidhuber and Cummins 2000, "Learning to Forget". A cell state c runs alongside h and is changed
only by gated, additive updates, so the gradient along c is not multiplied by a weight matrix at every
step (the vanishing and exploding gradients that hold `rnn-deep` back):

    i_t = sigmoid(W_ii x_t + b_ii + W_hi h_{t-1} + b_hi)      input gate: how much to write
    f_t = sigmoid(W_if x_t + b_if + W_hf h_{t-1} + b_hf)      forget gate: how much to keep
    g_t = tanh(W_ig x_t + b_ig + W_hg h_{t-1} + b_hg)         candidate values to write
    o_t = sigmoid(W_io x_t + b_io + W_ho h_{t-1} + b_ho)      output gate: how much to show
    c_t = f_t * c_{t-1} + i_t * g_t
    h_t = o_t * tanh(c_t)

GRU: Cho et al. 2014, "Learning Phrase Representations using RNN Encoder-Decoder for Statistical
Machine Translation": one state, two gates. Written in PyTorch's convention (the reset gate applied
after the hidden-to-hidden product, as cuDNN does), so that it computes exactly what `nn.GRU` does:

    r_t = sigmoid(W_ir x_t + b_ir + W_hr h_{t-1} + b_hr)      reset gate: how much of the past to read
    z_t = sigmoid(W_iz x_t + b_iz + W_hz h_{t-1} + b_hz)      update gate: how much of the past to keep
    n_t = tanh(W_in x_t + b_in + r_t * (W_hn h_{t-1} + b_hn))
    h_t = (1 - z_t) * n_t + z_t * h_{t-1}

As fast.ai's LSTMCell, all gates come from one linear layer on the input and one on the hidden state,
chunked: two matrix products per step instead of eight. The rows of these layers are in PyTorch's gate
order (LSTM: i, f, g, o; GRU: r, z, n), so `nn.LSTM`'s `weight_ih_l0` is `layers.0.cell.ih.weight`
here; `scratch_from_fused` and `fused_from_scratch` rename a whole state dict, and `ScratchRNN` has
`FusedRNN`'s embedding -> layers -> linear head and its state layout, so the weights copy across and
the two give the same outputs. The loop over time is plain Python: slower than the fused kernels, but
every step is visible.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from scratchlm.models.base import LanguageModel, State, check_stack, lm_loss


class LSTMCell(nn.Module):
    """One LSTM step: (x_t, (h_{t-1}, c_{t-1})) -> (h_t, c_t)."""

    def __init__(self, n_in: int, n_hidden: int):
        super().__init__()
        self.ih = nn.Linear(n_in, 4 * n_hidden)  # input to the four gates (i, f, g, o)
        self.hh = nn.Linear(n_hidden, 4 * n_hidden)  # hidden state to the four gates
        init_uniform(self, n_hidden)

    def forward(self, x: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        h, c = state  # (B, H) each
        i, f, g, o = (self.ih(x) + self.hh(h)).chunk(4, dim=-1)  # (B, H) each, before their nonlinearity
        i = torch.sigmoid(i)
        f = torch.sigmoid(f)
        g = torch.tanh(g)
        o = torch.sigmoid(o)
        c = f * c + i * g
        h = o * torch.tanh(c)
        return h, c


class GRUCell(nn.Module):
    """One GRU step: (x_t, h_{t-1}) -> h_t."""

    def __init__(self, n_in: int, n_hidden: int):
        super().__init__()
        self.ih = nn.Linear(n_in, 3 * n_hidden)  # input to the reset, update and new parts (r, z, n)
        self.hh = nn.Linear(n_hidden, 3 * n_hidden)  # hidden state to the same three
        init_uniform(self, n_hidden)

    def forward(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        x_r, x_z, x_n = self.ih(x).chunk(3, dim=-1)  # (B, H) each: W_i* x_t + b_i*
        h_r, h_z, h_n = self.hh(h).chunk(3, dim=-1)  # (B, H) each: W_h* h_{t-1} + b_h*
        r = torch.sigmoid(x_r + h_r)
        z = torch.sigmoid(x_z + h_z)
        n = torch.tanh(x_n + r * h_n)
        h = (1 - z) * n + z * h
        return h


def init_uniform(cell: nn.Module, n_hidden: int) -> None:
    """PyTorch's initialisation for its recurrent modules: every weight and bias from U(-1/sqrt(H), 1/sqrt(H))."""
    bound = n_hidden ** -0.5
    for p in cell.parameters():
        nn.init.uniform_(p, -bound, bound)


CELLS = {"lstm": LSTMCell, "gru": GRUCell}


class RecurrentLayer(nn.Module):
    """One layer: its cell applied to each time step in turn, the state carried from step to step."""

    def __init__(self, cell: nn.Module):
        super().__init__()
        self.cell = cell

    def forward(self, x: torch.Tensor, state: torch.Tensor | tuple[torch.Tensor, ...]):
        outputs = []
        for t in range(x.size(1)):
            state = self.cell(x[:, t], state)  # LSTM: (h, c); GRU: h, each (B, H)
            outputs.append(state[0] if isinstance(state, tuple) else state)
        return torch.stack(outputs, dim=1), state  # (B, T, H), the state after the last step


class StackedRNN(nn.Module):
    """Layers stacked as `nn.LSTM`/`nn.GRU` stack them: each reads the outputs of the one below.

    The state has their layout: a GRU's h is (L, B, H); an LSTM's is (h, c), each (L, B, H). Dropout,
    when given, is applied to every layer's outputs but the last's, in training only, as theirs is.
    """

    def __init__(self, cell: str, n_in: int, n_hidden: int, n_layers: int, dropout: float = 0.0):
        super().__init__()
        self.cell, self.n_hidden, self.dropout = cell, n_hidden, dropout
        self.layers = nn.ModuleList(RecurrentLayer(CELLS[cell](n_in if k == 0 else n_hidden, n_hidden))
                                    for k in range(n_layers))

    def forward(self, x: torch.Tensor, state: State = None) -> tuple[torch.Tensor, State]:
        B, L = x.size(0), len(self.layers)
        if state is None:
            zeros = x.new_zeros(L, B, self.n_hidden)
            state = (zeros, zeros) if self.cell == "lstm" else zeros
        finals = []
        for k, layer in enumerate(self.layers):
            layer_state = tuple(s[k] for s in state) if self.cell == "lstm" else state[k]  # (B, H) each
            x, layer_state = layer(x, layer_state)  # x: (B, T, H)
            finals.append(layer_state)
            if k < L - 1:
                x = F.dropout(x, self.dropout, self.training)
        if self.cell == "lstm":
            return x, (torch.stack([h for h, _ in finals]), torch.stack([c for _, c in finals]))
        return x, torch.stack(finals)  # (B, T, H); state (L, B, H) or (h, c)


@dataclass
class ScratchRNNConfig:
    vocab_size: int = 30  # number of tokens
    n_hidden: int = 64  # width of the embedding and of each layer's hidden state
    n_layers: int = 2  # stacked layers
    cell: Literal["lstm", "gru"] = "lstm"  # which cell, written from its equations above
    dropout: float = 0.0  # between layers, on every layer's outputs but the last (as nn.LSTM's dropout)

    def __post_init__(self) -> None:
        check_stack(self.cell, CELLS, self.n_layers, self.n_hidden, self.dropout)


class ScratchRNN(LanguageModel):
    """Embedding -> n stacked LSTM or GRU layers, looped in Python -> linear head; the state is carried.

    The same model as `FusedRNN` with cell="lstm" or "gru" (fast.ai's LMModel6), with every gate visible.
    """

    carries_state = True

    def __init__(self, config: ScratchRNNConfig):
        super().__init__()
        self.config = config
        self.i_h = nn.Embedding(config.vocab_size, config.n_hidden)
        self.rnn = StackedRNN(config.cell, config.n_hidden, config.n_hidden, config.n_layers, config.dropout)
        self.h_o = nn.Linear(config.n_hidden, config.vocab_size)

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None,
                state: State = None) -> tuple[torch.Tensor, torch.Tensor | None, State]:
        hidden, state = self.rnn(self.i_h(idx), state)  # (B, T, H); state (layers, B, H) or (h, c)
        logits = self.h_o(hidden)  # (B, T, V)
        return logits, None if targets is None else lm_loss(logits, targets), state


FUSED_KEY = re.compile(r"(?P<prefix>.*)(?P<kind>weight|bias)_(?P<side>ih|hh)_l(?P<layer>\d+)$")
SCRATCH_KEY = re.compile(r"(?P<prefix>.*)layers\.(?P<layer>\d+)\.cell\.(?P<side>ih|hh)\.(?P<kind>weight|bias)$")


def scratch_from_fused(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A `FusedRNN` (or `nn.LSTM`/`nn.GRU`) state dict with the keys of `ScratchRNN` (or `StackedRNN`).

    `rnn.weight_ih_l1` -> `rnn.layers.1.cell.ih.weight`; the tensors are the same, other keys unchanged.
    """
    return {FUSED_KEY.sub(r"\g<prefix>layers.\g<layer>.cell.\g<side>.\g<kind>", k): v for k, v in state_dict.items()}


def fused_from_scratch(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The inverse of `scratch_from_fused`: `rnn.layers.1.cell.ih.weight` -> `rnn.weight_ih_l1`."""
    return {SCRATCH_KEY.sub(r"\g<prefix>\g<kind>_\g<side>_l\g<layer>", k): v for k, v in state_dict.items()}
