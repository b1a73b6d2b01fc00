"""The cells written from their equations compute what PyTorch's fused nn.LSTM and nn.GRU compute.

With the weights copied from a fused module, the outputs, the final states and every gradient agree
within 1e-5 in float32, whatever the batch size, length, width and depth (drawn by hypothesis).
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from scratchlm.errors import UserError
from scratchlm.models.cells import (
    GRUCell,
    LSTMCell,
    ScratchRNN,
    ScratchRNNConfig,
    StackedRNN,
    fused_from_scratch,
    scratch_from_fused,
)
from scratchlm.models.recurrent import FusedRNN, FusedRNNConfig

TOL = {"atol": 1e-5, "rtol": 1e-5}
FUSED = {"lstm": nn.LSTM, "gru": nn.GRU}

sizes = st.fixed_dictionaries({
    "batch": st.integers(1, 4),
    "length": st.integers(1, 6),
    "n_in": st.integers(1, 8),
    "hidden": st.integers(1, 8),
    "layers": st.integers(1, 3),
})


def copy_of_fused(cell: str, n_in: int, hidden: int, layers: int) -> tuple[nn.Module, StackedRNN]:
    fused = FUSED[cell](n_in, hidden, layers, batch_first=True)
    scratch = StackedRNN(cell, n_in, hidden, layers)
    scratch.load_state_dict(scratch_from_fused(fused.state_dict()))
    return fused, scratch


def random_state(cell: str, layers: int, batch: int, hidden: int):
    h = torch.randn(layers, batch, hidden)
    return (h, torch.randn(layers, batch, hidden)) if cell == "lstm" else h


def flat(state) -> list[torch.Tensor]:
    return list(state) if isinstance(state, tuple) else [state]


@pytest.mark.parametrize("cell", ["lstm", "gru"])
@settings(max_examples=12, deadline=None)
@given(sizes=sizes, seed=st.integers(0, 2**16))
def test_stacked_cells_equal_the_fused_module(cell: str, sizes: dict, seed: int):
    torch.manual_seed(seed)
    B, T, L = sizes["batch"], sizes["length"], sizes["layers"]
    fused, scratch = copy_of_fused(cell, sizes["n_in"], sizes["hidden"], L)
    x = torch.randn(B, T, sizes["n_in"], requires_grad=True)
    x2 = x.detach().clone().requires_grad_(True)
    state = random_state(cell, L, B, sizes["hidden"])

    out_f, state_f = fused(x, state)
    out_s, state_s = scratch(x2, state)
    torch.testing.assert_close(out_s, out_f, **TOL)  # (B, T, H)
    for s, f in zip(flat(state_s), flat(state_f), strict=True):
        torch.testing.assert_close(s, f, **TOL)  # (L, B, H) each

    # One loss over the outputs and the final state, so the gradient runs through every step and layer.
    weights = torch.randn_like(out_f)
    (out_f * weights).sum().add(sum(s.sum() for s in flat(state_f))).backward()
    (out_s * weights).sum().add(sum(s.sum() for s in flat(state_s))).backward()
    torch.testing.assert_close(x2.grad, x.grad, **TOL)
    grads_s = {k: p.grad for k, p in scratch.named_parameters()}
    for name, grad in fused_from_scratch(grads_s).items():
        torch.testing.assert_close(grad, dict(fused.named_parameters())[name].grad, **TOL)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_no_state_means_zeros(cell: str):
    torch.manual_seed(0)
    fused, scratch = copy_of_fused(cell, 3, 5, 2)
    x = torch.randn(2, 4, 3)
    torch.testing.assert_close(scratch(x)[0], fused(x)[0], **TOL)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
@settings(max_examples=6, deadline=None)
@given(batch=st.integers(1, 3), length=st.integers(1, 5), hidden=st.integers(1, 8), layers=st.integers(1, 3),
       seed=st.integers(0, 2**16))
def test_scratch_language_model_equals_the_fused_one(cell: str, batch: int, length: int, hidden: int, layers: int,
                                                     seed: int):
    """ScratchRNN loads FusedRNN's state dict (keys renamed) and gives the same logits, loss and state."""
    torch.manual_seed(seed)
    vocab = 11
    fused = FusedRNN(FusedRNNConfig(vocab_size=vocab, n_hidden=hidden, n_layers=layers, cell=cell))
    scratch = ScratchRNN(ScratchRNNConfig(vocab_size=vocab, n_hidden=hidden, n_layers=layers, cell=cell))
    scratch.load_state_dict(scratch_from_fused(fused.state_dict()))
    assert set(fused_from_scratch(scratch.state_dict())) == set(fused.state_dict())

    idx = torch.randint(0, vocab, (batch, length))
    state = None
    for _ in range(2):  # the second call carries the state the first returned
        logits_f, loss_f, state_f = fused(idx, idx, state)
        logits_s, loss_s, state_s = scratch(idx, idx, state)
        torch.testing.assert_close(logits_s, logits_f, **TOL)
        torch.testing.assert_close(loss_s, loss_f, **TOL)
        for s, f in zip(flat(state_s), flat(state_f), strict=True):
            torch.testing.assert_close(s, f, **TOL)
        state = tuple(s.detach() for s in state_f) if cell == "lstm" else state_f.detach()


def test_one_step_follows_the_equations():
    """A single LSTM step against nn.LSTMCell, and a GRU step against nn.GRUCell (same gate order)."""
    torch.manual_seed(0)
    x, h, c = torch.randn(3, 4), torch.randn(3, 5), torch.randn(3, 5)
    ours, theirs = LSTMCell(4, 5), nn.LSTMCell(4, 5)
    ours.ih.weight.data, ours.ih.bias.data = theirs.weight_ih.data, theirs.bias_ih.data
    ours.hh.weight.data, ours.hh.bias.data = theirs.weight_hh.data, theirs.bias_hh.data
    for a, b in zip(ours(x, (h, c)), theirs(x, (h, c)), strict=True):
        torch.testing.assert_close(a, b, **TOL)
    ours, theirs = GRUCell(4, 5), nn.GRUCell(4, 5)
    ours.ih.weight.data, ours.ih.bias.data = theirs.weight_ih.data, theirs.bias_ih.data
    ours.hh.weight.data, ours.hh.bias.data = theirs.weight_hh.data, theirs.bias_hh.data
    torch.testing.assert_close(ours(x, h), theirs(x, h), **TOL)


def test_dropout_between_layers_only_in_training():
    torch.manual_seed(0)
    model = ScratchRNN(ScratchRNNConfig(vocab_size=7, n_hidden=6, n_layers=2, dropout=0.5))
    idx = torch.randint(0, 7, (2, 5))
    model.eval()
    torch.testing.assert_close(model(idx)[0], model(idx)[0], rtol=0, atol=0)
    model.train()
    assert not torch.equal(model(idx)[0], model(idx)[0])


def test_config_is_checked():
    with pytest.raises(UserError, match="unknown cell"):
        ScratchRNNConfig(cell="rnn")
    with pytest.raises(UserError):
        ScratchRNNConfig(n_layers=0)
    with pytest.raises(UserError):
        ScratchRNNConfig(dropout=1.0)
