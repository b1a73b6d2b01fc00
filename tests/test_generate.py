"""Sampling maths, and generation and scoring with a trained run."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from scratchlm.data.tokenize import DOC
from scratchlm.errors import UserError
from scratchlm.generate import generate_ids, sample_next, token_logprobs, top_k_filter, top_p_filter
from scratchlm.run import Run

logit_rows = st.lists(st.floats(-20, 20, allow_nan=False), min_size=1, max_size=30).map(torch.tensor)


@settings(max_examples=100, deadline=None)
@given(logit_rows)
def test_temperature_zero_is_the_argmax(logits: torch.Tensor):
    assert sample_next(logits, temperature=0) == logits.argmax()
    batch = torch.stack([logits, -logits])
    assert torch.equal(sample_next(batch, temperature=0.0), batch.argmax(-1))


def test_top_k_keeps_exactly_k_even_with_ties():
    logits = torch.tensor([1.0, 3.0, 3.0, 3.0, 3.0, 0.0])
    for k in (1, 2, 3):
        kept = torch.isfinite(top_k_filter(logits, k))
        assert kept.sum() == k
        assert logits[kept].eq(3.0).all()
    assert torch.equal(top_k_filter(logits, 6), logits) and torch.equal(top_k_filter(logits, 99), logits)


@settings(max_examples=100, deadline=None)
@given(logits=logit_rows, k=st.integers(1, 40))
def test_top_k_keeps_the_k_largest(logits: torch.Tensor, k: int):
    filtered = top_k_filter(logits, k)
    kept = torch.isfinite(filtered)
    assert kept.sum() == min(k, len(logits))
    assert torch.equal(filtered[kept], logits[kept])  # survivors keep their values
    if not kept.all():
        assert logits[kept].min() >= logits[~kept].max()


def test_top_p_keeps_the_smallest_set_reaching_p():
    logits = torch.tensor([0.5, 0.3, 0.15, 0.05]).log()
    kept = lambda p: torch.isfinite(top_p_filter(logits, p)).nonzero().flatten().tolist()
    assert kept(0.45) == [0]
    assert kept(0.55) == [0, 1]
    assert kept(0.9) == [0, 1, 2]
    assert kept(0.99) == [0, 1, 2, 3]
    assert kept(1e-9) == [0]  # always at least one
    shuffled = torch.tensor([0.15, 0.5, 0.05, 0.3]).log()
    assert torch.isfinite(top_p_filter(shuffled, 0.55)).nonzero().flatten().tolist() == [1, 3]


@settings(max_examples=200, deadline=None)
@given(logits=logit_rows, p=st.floats(0.01, 0.99))
def test_top_p_property(logits: torch.Tensor, p: float):
    probs = logits.double().softmax(-1)
    kept = torch.isfinite(top_p_filter(logits, p))
    assert kept.any()
    mass = probs[kept].sum().item()
    assert mass >= p - 1e-5  # reaches p ...
    assert mass - probs[kept].min().item() < p + 1e-5  # ... and without its least likely token it would not
    if not kept.all():
        assert probs[kept].min() >= probs[~kept].max() - 1e-7  # the most likely ones are kept


def test_sampling_follows_the_filters_and_the_seed():
    logits = torch.tensor([2.0, 1.9, 1.8, -5.0, -5.0])
    draw = lambda seed, **kw: [int(sample_next(logits, 1.0, generator=torch.Generator().manual_seed(seed), **kw))
                               for _ in range(1)]
    assert all(draw(s, top_k=2)[0] in (0, 1) for s in range(50))
    assert all(draw(s, top_p=0.1)[0] == 0 for s in range(20))
    generator = torch.Generator().manual_seed(3)
    first = [int(sample_next(logits, 1.0, generator=generator)) for _ in range(30)]
    generator = torch.Generator().manual_seed(3)
    assert [int(sample_next(logits, 1.0, generator=generator)) for _ in range(30)] == first
    assert len(set(first)) > 1  # it does sample


@pytest.fixture(scope="module")
def run(hn_run: Path) -> Run:
    return Run.load(hn_run, device="cpu")


def test_same_seed_same_tokens(run: Run):
    prompt = [DOC] + run.tokenizer.encode("one . two .")
    sample = lambda seed: list(generate_ids(run.model, prompt, 30, run.window, temperature=1.0, top_k=10, seed=seed))
    assert sample(7) == sample(7)
    assert sample(7) != sample(8)


def test_greedy_generation_is_deterministic(run: Run, hn_run: Path):
    text = run.generate("one thousand one . one thousand two .", tokens=20)
    assert text == run.generate("one thousand one . one thousand two .", tokens=20)
    assert text == Run.load(hn_run, device="cpu").generate("one thousand one . one thousand two .", tokens=20)
    assert len(text.split()) == 20
    assert set(text.split()) <= set(run.tokenizer.itos)
    assert "".join(run.stream("one .", tokens=20)) == run.generate("one .", tokens=20)


def test_greedy_generation_follows_the_argmax(run: Run):
    """The state-carrying loop predicts the same tokens as re-reading the whole sequence each time."""
    prompt = [DOC] + run.tokenizer.encode("five . six .")
    ids = list(generate_ids(run.model, prompt, 8, run.window))
    sequence = list(prompt)
    for token in ids:
        logits, _, _ = run.model(torch.tensor([sequence]))
        assert token == int(logits[0, -1].argmax())
        sequence.append(token)


def test_score_is_the_sum_of_token_logprobs(run: Run):
    text = "five thousand six hundred . five thousand six hundred one"
    [result] = run.score([text])
    ids = [DOC] + run.tokenizer.encode(text)
    logprobs = token_logprobs(run.model, ids, run.window)
    assert result["tokens"] == len(ids) - 1 == len(logprobs)
    assert result["logprob"] == pytest.approx(logprobs.sum().item(), rel=1e-6)
    assert result["perplexity"] == pytest.approx(math.exp(-result["logprob"] / result["tokens"]), rel=1e-6)
    logits, _, _ = run.model(torch.tensor([ids[:-1]]))
    by_hand = logits[0].log_softmax(-1).gather(-1, torch.tensor(ids[1:])[:, None]).sum().item()
    assert result["logprob"] == pytest.approx(by_hand, rel=1e-5)
    scrambled = run.score(["hundred six . five thousand one five six hundred thousand"])[0]
    assert scrambled["logprob"] < result["logprob"]  # a trained model prefers real numbers


def test_windowed_logprobs_match_the_model(tmp_path: Path):
    import scratchlm

    run = scratchlm.train("human-numbers", "mlp3", tmp_path / "mlp3", epochs=1, batch_size=64, device="cpu")
    ids = [DOC] + run.tokenizer.encode("one . two . three")
    logprobs = token_logprobs(run.model, ids, 3)
    first = run.model(torch.tensor([[DOC, DOC, DOC]]))[0][0, -1].log_softmax(-1)[ids[1]]
    last = run.model(torch.tensor([ids[-4:-1]]))[0][0, -1].log_softmax(-1)[ids[-1]]
    assert logprobs[0].item() == pytest.approx(first.item(), rel=1e-5)
    assert logprobs[-1].item() == pytest.approx(last.item(), rel=1e-5)
    assert run.generate("one .", tokens=5) == run.generate("one .", tokens=5)


@pytest.mark.parametrize("kwargs, match", [
    ({"tokens": -1}, "--tokens -1"),
    ({"temperature": -0.5}, "--temperature"),
    ({"temperature": 1.0, "top_k": 0}, "--top-k 0"),
    ({"temperature": 1.0, "top_p": 0.0}, "--top-p"),
    ({"prompt": "one zork"}, "outside the vocabulary"),
])
def test_bad_sampling_arguments_fail_at_the_call(run: Run, kwargs: dict, match: str):
    with pytest.raises(UserError, match=match):
        run.stream(**kwargs)  # at the call, before any piece is asked for


def test_char_run_refuses_a_prompt_outside_its_vocabulary(char_run: Path):
    run = Run.load(char_run, device="cpu")
    with pytest.raises(UserError, match="outside the vocabulary") as e:
        run.generate("hello ☃ world", tokens=5)
    assert "'☃'" in str(e.value)
    with pytest.warns(UserWarning, match="1 empty text"):  # one text in, one result out
        assert run.score([""]) == [{"text": "", "tokens": 0, "logprob": 0.0, "perplexity": None}]
