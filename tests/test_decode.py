"""Greedy and beam search: beam 1 is greedy, the n-best list starts with the 1-best, a sentence's result
does not depend on its batch, hypotheses stop at their own EOS, and on a model whose probabilities are
known the beam finds exactly the best hypotheses an exhaustive search finds."""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from scratchlm.data.tokenize import BOS, EOS
from scratchlm.decode import beam_search, greedy, lp
from scratchlm.errors import UserError
from scratchlm.models.seq2seq import Seq2Seq, Seq2SeqConfig, pad_batch

VARIANTS = {
    "plain": {"bidirectional": False},
    "bahdanau": {"attention": "bahdanau"},
    "general-input-feeding-lstm": {"attention": "general", "input_feeding": True, "cell": "lstm", "n_layers": 2},
}


def random_model(seed: int = 0, **overrides) -> Seq2Seq:
    """An untrained model, its weights scaled up so that sentences end (EOS) at varied steps."""
    torch.manual_seed(seed)
    config = Seq2SeqConfig(src_vocab_size=12, tgt_vocab_size=9, n_embed=8, n_hidden=16, dropout=0.0, **overrides)
    model = Seq2Seq(config)
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(4)  # as initialised, every source gives nearly the same output
    return model


def sources(lengths=(4, 1, 6, 3, 5), seed=0):
    g = torch.Generator().manual_seed(seed)
    return pad_batch([torch.randint(4, 12, (n,), generator=g).tolist() for n in lengths])


# ---------------------------------------------------------------- a model with known probabilities


@dataclass
class NoMemory:
    rows: int

    def select(self, index: torch.Tensor) -> NoMemory:
        return NoMemory(len(index))


class Markov(nn.Module):
    """A decoder whose next-token distribution depends on the previous token only: table[y_prev]."""

    def __init__(self, table: torch.Tensor):
        super().__init__()
        self.table = nn.Parameter(table.log_softmax(-1))

    def encode(self, src, src_lengths):
        return NoMemory(src.size(0))

    def init_state(self, memory):
        return None

    def decode_step(self, y_prev, state, memory, need_weights=False):
        return self.table[y_prev], None, None

    def select_state(self, state, index):
        return None


def exhaustive(table: torch.Tensor, max_len: int, alpha: float) -> list[tuple[list[int], float]]:
    """Every hypothesis up to max_len steps, with its score, best first."""
    logp = table.log_softmax(-1).tolist()
    found = []
    for n in range(max_len + 1):
        for tokens in itertools.product([t for t in range(table.size(0)) if t != EOS], repeat=n):
            path = [BOS, *tokens] + ([EOS] if n < max_len else [])
            total = sum(logp[a][b] for a, b in itertools.pairwise(path))
            found.append((list(tokens), total / lp(len(path) - 1, alpha)))
    return sorted(found, key=lambda h: -h[1])


@settings(max_examples=15, deadline=None)
@given(st.integers(0, 2**16), st.sampled_from([0.0, 1.0]), st.integers(1, 3))
def test_a_wide_beam_finds_what_an_exhaustive_search_finds(seed, alpha, max_len):
    table = torch.randn(5, 5, generator=torch.Generator().manual_seed(seed)) * 2  # 5 tokens, EOS among them
    model = Markov(table)
    src, lengths = pad_batch([[4]])
    every = exhaustive(table, max_len, alpha)
    got = beam_search(model, src, lengths, beam=4**max_len + 1, max_len=max_len, length_penalty=alpha, n_best=3)[0]
    # The three best scores, each for a hypothesis that has it; hypotheses of equal score (BOS -> 4 -> 2 -> 2
    # and BOS -> 2 -> 4 -> 2 when BOS is 2, say) may come in either order.
    score_of = {tuple(tokens): score for tokens, score in every}
    assert len({tuple(tokens) for tokens, _ in got}) == 3
    for (tokens, score), (_, expected) in zip(got, every[:3], strict=True):
        assert math.isclose(score, expected, rel_tol=1e-5, abs_tol=1e-6)
        assert math.isclose(score_of[tuple(tokens)], score, rel_tol=1e-5, abs_tol=1e-6)


def test_a_hypothesis_that_ends_is_kept_while_the_others_go_on():
    p = torch.full((6, 6), 1e-9)
    p[BOS, EOS], p[BOS, 5] = 0.4, 0.6  # first step: the empty hypothesis ends, 5 goes on
    p[5, 5], p[5, EOS] = 0.3, 0.7  # second step: 5 ends, above the empty one
    model = Markov(p.log())
    src, lengths = pad_batch([[4]])
    best = beam_search(model, src, lengths, beam=2, max_len=4, length_penalty=0.0, n_best=2)[0]
    assert [tokens for tokens, _ in best] == [[5], []]  # EOS never among the tokens
    assert best[0][1] == pytest.approx(math.log(0.6 * 0.7), rel=1e-4)
    assert best[1][1] == pytest.approx(math.log(0.4), rel=1e-4)
    one = beam_search(model, src, lengths, beam=1, max_len=4, length_penalty=0.0)[0]
    assert one[0][0] == [5]  # greedy's path: 5 (0.6), then EOS (0.7)


# ---------------------------------------------------------------- on real models


@pytest.mark.parametrize("name", VARIANTS)
def test_beam_one_is_greedy(name):
    model = random_model(**VARIANTS[name])
    src, lengths = sources()
    limits = 2 * lengths + 1
    want = greedy(model, src, lengths, max_len=limits)
    got = beam_search(model, src, lengths, beam=1, max_len=limits)
    assert [b[0][0] for b in got] == want
    assert len({len(h) for h in want}) > 1  # the sentences did end at different steps
    assert all(EOS not in h and len(h) <= n for h, n in zip(want, limits.tolist(), strict=True))


@pytest.mark.parametrize("name", VARIANTS)
def test_the_n_best_list_starts_with_the_one_best(name):
    model = random_model(**VARIANTS[name])
    src, lengths = sources()
    one = beam_search(model, src, lengths, beam=4, max_len=12)
    many = beam_search(model, src, lengths, beam=4, max_len=12, n_best=4)
    for first, n_best in zip(one, many, strict=True):
        assert len(n_best) == 4 and n_best[0] == first[0]
        assert [s for _, s in n_best] == sorted((s for _, s in n_best), reverse=True)
        assert len({tuple(t) for t, _ in n_best}) == 4  # four different hypotheses


@pytest.mark.parametrize("name", VARIANTS)
def test_a_sentences_result_does_not_depend_on_its_batch(name):
    model = random_model(**VARIANTS[name])
    src, lengths = sources()
    together_greedy = greedy(model, src, lengths, max_len=10)
    together = beam_search(model, src, lengths, beam=3, max_len=10, n_best=2)
    order = torch.tensor([3, 0, 4, 2, 1])
    shuffled = beam_search(model, src[order], lengths[order], beam=3, max_len=10, n_best=2)
    for i, n in enumerate(lengths.tolist()):
        alone_src, alone_lengths = src[i : i + 1, :n], lengths[i : i + 1]
        assert greedy(model, alone_src, alone_lengths, max_len=10)[0] == together_greedy[i]
        alone = beam_search(model, alone_src, alone_lengths, beam=3, max_len=10, n_best=2)[0]
        elsewhere = shuffled[order.tolist().index(i)]
        for a, b, c in zip(alone, together[i], elsewhere, strict=True):
            assert a[0] == b[0] == c[0]
            assert a[1] == pytest.approx(b[1], abs=1e-5) and b[1] == pytest.approx(c[1], abs=1e-5)


def test_per_sentence_max_len_and_attention_rows():
    model = random_model(attention="bahdanau")
    with torch.no_grad():
        model.out.bias[EOS] = -1e4  # never ends: every hypothesis runs to its limit
    src, lengths = sources()
    limits = lengths + 2
    hyps, rows = greedy(model, src, lengths, max_len=limits, attention=True)
    assert [len(h) for h in hyps] == limits.tolist()
    beams = beam_search(model, src, lengths, beam=2, max_len=limits, n_best=2, attention=True)
    for weights, best, n, m in zip(rows, beams, lengths.tolist(), limits.tolist(), strict=True):
        assert weights.shape == (m, n)
        torch.testing.assert_close(weights.sum(-1), torch.ones(m))
        for tokens, _, attention in best:
            assert len(tokens) == m and attention.shape == (m, n)


def test_decoding_restores_the_mode_and_builds_no_graph():
    model = random_model(attention="bahdanau").train()
    src, lengths = sources()
    hyps, rows = greedy(model, src, lengths, max_len=5, attention=True)
    beam_search(model, src, lengths, beam=2, max_len=5)
    assert model.training
    assert not any(r.requires_grad for r in rows)
    assert greedy(model.eval(), src, lengths, max_len=5) == hyps  # dropout was off inside


def test_length_penalty_favours_longer_hypotheses():
    assert lp(1, 0.0) == 1.0 and lp(1, 1.0) == 1.0
    assert lp(7, 1.0) == 2.0 and lp(7, 0.5) == pytest.approx(math.sqrt(2))


@pytest.mark.parametrize("kwargs", [{"beam": 0}, {"beam": 2, "n_best": 3}, {"beam": 2, "max_len": 0}])
def test_bad_search_settings_are_user_errors(kwargs):
    model = random_model()
    src, lengths = sources()
    with pytest.raises(UserError):
        beam_search(model, src, lengths, **{"max_len": 5, **kwargs})
