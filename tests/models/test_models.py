"""Every registry entry keeps the one model interface: logits (B, T', V), a scalar loss, a state it takes back."""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

import scratchlm
from scratchlm.config import field_comments
from scratchlm.errors import UserError
from scratchlm.models.base import detach_state, lm_loss
from scratchlm.models.registry import REGISTRY, get_spec, parse_settings, settings_of

VOCAB = 35
LANGUAGE_MODELS = [name for name, spec in REGISTRY.items() if spec.task == "lm"]  # the translators: test_seq2seq.py


def build(name: str, **overrides):
    """The model of `name`; one that learns by counting has counted a random stream, as training would."""
    spec = REGISTRY[name]
    torch.manual_seed(0)
    model = spec.build(spec.make_config({"vocab_size": VOCAB}, overrides))
    if model.learns_by == "counting":
        with warnings.catch_warnings():  # too few n-grams for its discount estimates: it says so, and copes
            warnings.simplefilter("ignore")
            model.fit_counts(np.random.default_rng(0).integers(0, VOCAB, 2_000))
    return model


def length_for(model) -> int:
    return model.window if model.window is not None else 5


@pytest.mark.parametrize("name", LANGUAGE_MODELS)
def test_forward_gives_logits_loss_and_a_state_it_takes_back(name: str):
    model = build(name)
    B, T = 4, length_for(model)
    idx = torch.randint(0, VOCAB, (B, T))
    targets = torch.randint(0, VOCAB, (B, T))

    logits, loss, state = model(idx, targets)  # training mode: the loss may add a model's regularisers
    assert logits.dim() == 3 and logits.shape[0] == B and logits.shape[2] == VOCAB
    assert logits.shape[1] in (1, T)  # after every token, or after the last only
    assert loss.dim() == 0 and torch.isfinite(loss)
    assert loss.item() == pytest.approx(math.log(VOCAB), rel=0.25)  # an untrained model is near uniform
    if model.learns_by != "counting":
        loss.backward()
        assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
    assert (state is not None) == model.carries_state

    model.eval()  # evaluation: the loss is exactly the mean cross-entropy of the logits
    logits, loss, state = model(idx, targets)
    assert loss.item() == pytest.approx(lm_loss(logits, targets).item(), rel=1e-5)
    logits2, loss2, _ = model(idx, targets, detach_state(state))  # the state goes back in
    assert logits2.shape == logits.shape and loss2.dim() == 0
    if model.carries_state:
        assert not torch.equal(logits2, logits)  # ... and it matters
    no_targets = model(idx)
    assert no_targets[1] is None and torch.equal(no_targets[0], logits)


@pytest.mark.parametrize("name", LANGUAGE_MODELS)
def test_the_model_keeps_no_hidden_state_of_its_own(name: str):
    model = build(name).eval()
    idx = torch.randint(0, VOCAB, (2, length_for(model)))
    first = model(idx)[0]
    model(torch.randint(0, VOCAB, (2, length_for(model))))
    assert torch.equal(model(idx)[0], first)


def reads_exactly_its_window(name: str) -> bool:
    """A windowed model that predicts the next token only; a Transformer reads up to its window instead."""
    model = build(name)
    return model.window is not None and model(torch.zeros(1, model.window, dtype=torch.long))[0].size(1) == 1


@pytest.mark.parametrize("name", [name for name in LANGUAGE_MODELS if reads_exactly_its_window(name)])
def test_windowed_models_read_exactly_their_window(name: str, tmp_path: Path):
    model = build(name)
    window = model.window
    assert model(torch.zeros(2, window, dtype=torch.long))[0].shape == (2, 1, VOCAB)
    for wrong in (window - 1, window + 1):
        with pytest.raises((AssertionError, RuntimeError, ValueError)):
            model(torch.zeros(2, wrong, dtype=torch.long))
    with pytest.raises(UserError, match=f"reads exactly {window} tokens"):
        scratchlm.train("human-numbers", name, tmp_path / "run", epochs=1, bptt=window + 1)


def test_mlp3_reads_three_tokens():
    assert build("mlp3").window == 3


@pytest.mark.parametrize("name", LANGUAGE_MODELS)
def test_every_entry_names_its_idea_and_task(name: str):
    spec = get_spec(name)
    assert spec.name == name and spec.idea and spec.task == "lm"


def test_unknown_model_is_refused():
    with pytest.raises(UserError, match="unknown model 'gpt-17'"):
        get_spec("gpt-17")


def test_settings_are_typed_by_the_config():
    spec = get_spec("rnn-deep")
    assert parse_settings(spec, ["n_hidden=8", "cell=gru", "dropout=0.5"]) == {"n_hidden": 8, "cell": "gru",
                                                                             "dropout": 0.5}
    model = spec.build(spec.make_config({"vocab_size": VOCAB}, parse_settings(spec, ["n_hidden=8", "cell=lstm"])))
    logits, _, state = model(torch.zeros(1, 3, dtype=torch.long))
    assert logits.shape == (1, 3, VOCAB) and isinstance(state, tuple)  # an LSTM carries (h, c)
    for bad in (["unknown_key=1"], ["n_hidden"], ["vocab_size=3"], ["n_hidden=abc"], ["cell=transformer"]):
        with pytest.raises(UserError):
            parse_settings(spec, bad)
    with pytest.raises(UserError, match="no setting"):
        spec.make_config({"vocab_size": VOCAB}, {"unknown_key": 1})


def test_field_comments_follow_continuation_lines_but_not_new_remarks():
    source = '''class C:
    a: int = 1  # first line of a,
    #             and its second
    # a remark about what follows, not about a
    b: float = 0.5  # b alone
'''
    assert field_comments(source) == {"a": "first line of a, and its second", "b": "b alone"}


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_every_setting_is_explained(name: str):
    assert all(meaning for _, _, meaning in settings_of(get_spec(name)))
