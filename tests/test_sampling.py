"""The sampling functions of generate.py, each on its own: temperature, top-k, top-p, the repetition
penalty and the stop strings."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from scratchlm.generate import find_stop, repetition_penalty, sample_next, stop_prefix_length, top_k_filter, top_p_filter

logit_rows = st.lists(st.floats(-20, 20, allow_nan=False), min_size=2, max_size=30).map(torch.tensor)


@settings(max_examples=100, deadline=None)
@given(logit_rows)
def test_temperature_towards_zero_is_the_argmax(logits: torch.Tensor):
    top2 = logits.topk(2).values
    if top2[0] - top2[1] < 1e-2:  # a near tie: any temperature may pick either
        return
    generator = torch.Generator().manual_seed(0)
    for temperature in (1e-3, 1e-4):
        assert sample_next(logits, temperature, generator=generator) == logits.argmax()
    assert sample_next(logits, 0.0) == logits.argmax()


def test_top_k_keeps_exactly_k_even_with_ties_in_every_row():
    logits = torch.tensor([[2.0, 2.0, 2.0, 2.0, 1.0], [0.0, 5.0, 5.0, -1.0, 5.0]])
    for k in (1, 2, 3, 4):
        kept = torch.isfinite(top_k_filter(logits, k))
        assert kept.sum(-1).tolist() == [k, k]
    kept = torch.isfinite(top_k_filter(logits, 3))
    assert kept[1].tolist() == [False, True, True, False, True]  # the three tied at the top, none below


def test_top_p_keeps_the_smallest_set_reaching_p():
    probs = torch.tensor([0.05, 0.4, 0.25, 0.3])
    kept = lambda p: torch.isfinite(top_p_filter(probs.log(), p)).nonzero().flatten().tolist()
    assert kept(0.3) == [1]  # 0.4 alone reaches it
    assert kept(0.39) == [1]
    assert kept(0.5) == [1, 3]  # 0.4 + 0.3
    assert kept(0.69) == [1, 3]
    assert kept(0.71) == [1, 2, 3]
    assert kept(1.0) == [0, 1, 2, 3]


def test_repetition_penalty_lowers_seen_tokens_positive_and_negative():
    logits = torch.tensor([2.0, -2.0, 1.0, -1.0, 0.0])
    out = repetition_penalty(logits, torch.tensor([0, 1, 1, 4]), 2.0)  # repeats allowed
    assert out.tolist() == [1.0, -4.0, 1.0, -1.0, 0.0]  # 2 / 2 and -2 * 2: both lower; unseen ones unchanged
    assert (out <= logits).all()
    assert repetition_penalty(logits, torch.tensor([0, 1]), 1.0).tolist() == logits.tolist()
    assert repetition_penalty(logits, torch.tensor([], dtype=torch.long), 2.0).tolist() == logits.tolist()
    assert logits.tolist() == [2.0, -2.0, 1.0, -1.0, 0.0]  # pure: the input is not changed


@settings(max_examples=100, deadline=None)
@given(logits=logit_rows, penalty=st.floats(1.01, 10), data=st.data())
def test_repetition_penalty_never_raises_a_seen_token(logits: torch.Tensor, penalty: float, data):
    seen = data.draw(st.lists(st.integers(0, len(logits) - 1), min_size=1, max_size=5))
    out = repetition_penalty(logits, torch.tensor(seen), penalty)
    assert (out[seen] <= logits[seen]).all()
    others = [i for i in range(len(logits)) if i not in seen]
    assert torch.equal(out[others], logits[others])
    mask = torch.zeros(len(logits), dtype=torch.bool)
    mask[seen] = True
    assert out.softmax(-1)[mask].sum() <= logits.softmax(-1)[mask].sum() + 1e-6  # together, never more likely


def test_repetition_penalty_changes_what_is_sampled():
    logits = torch.tensor([3.0, 2.9, -5.0])
    assert sample_next(logits) == 0
    assert sample_next(repetition_penalty(logits, torch.tensor([0]), 1.2)) == 1


@pytest.mark.parametrize("text, stops, expected", [
    ("ROMEO: hi\n\nJULIET: yo", ["\n\n"], 9),
    ("ROMEO: hi\n\nJULIET: yo", ["JULIET", "\n\n"], 9),  # the first found in the text, not in the list
    ("ROMEO: hi", ["JULIET"], None),
    ("", ["x"], None),
])
def test_find_stop(text: str, stops: list[str], expected: int | None):
    assert find_stop(text, stops) == expected


@pytest.mark.parametrize("text, stops, held", [
    ("ROMEO: hi\n", ["\n\n"], 1),  # the newline may begin the stop string
    ("ROMEO: hi", ["\n\n"], 0),
    ("the JULI", ["JULIET:", "\n\n"], 4),
    ("aa", ["aab"], 2),
    ("ab", ["b", "bc"], 1),  # the longest possible start
    ("xyz", [], 0),
])
def test_stop_prefix_length(text: str, stops: list[str], held: int):
    assert stop_prefix_length(text, stops) == held
