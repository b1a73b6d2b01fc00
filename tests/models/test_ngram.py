"""The n-gram rung: Kneser-Ney by hand and by the equations, normalised everywhere, never infinite, equal to
NLTK where NLTK is comparable, and a language model like any other through the API and the CLI."""

from __future__ import annotations

import json
import math
import shutil
import warnings
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open

import scratchlm
from scratchlm.checkpoint import BEST
from scratchlm.cli import main
from scratchlm.data.batches import split_stream
from scratchlm.data.cache import tokenize_corpus
from scratchlm.data.read import open_corpus
from scratchlm.data.tokenize import DOC, UNK, TokenizerSpec
from scratchlm.errors import UserError
from scratchlm.models.ngram import NOTHING, NGram, NGramConfig, modified_discounts

WIKITEXT = Path(__file__).parents[2].parent / "shared" / "data" / "wikitext-2" / "valid.txt"
A, B, C = 0, 1, 2  # the hand-made corpus' tokens


def fitted(stream, vocab_size: int, **settings) -> NGram:
    model = NGram(NGramConfig(vocab_size=vocab_size, **settings))
    with warnings.catch_warnings():  # small corpora: the fallback's message is tested on its own below
        warnings.simplefilter("ignore")
        model.fit_counts(np.asarray(stream))
    return model


def probabilities(model: NGram, context: list[int]) -> torch.Tensor:
    """p(. | context) over the vocabulary, the context padded on the left as a stream's start is."""
    n = model.config.order
    padded = ([NOTHING] * (n - 1) + list(context))[len(context):] if n > 1 else []
    return model.distribution(torch.tensor([padded], dtype=torch.long).reshape(1, n - 1))[0]


@pytest.fixture(scope="module")
def human_numbers() -> tuple[np.ndarray, int]:
    tokenizer, ids, _ = tokenize_corpus(open_corpus("human-numbers"), TokenizerSpec(kind="word"))
    return np.asarray(ids, dtype=np.int64), tokenizer.vocab_size


# ---------------------------------------------------------------- by hand


def test_perplexity_of_a_hand_made_corpus_equals_the_hand_computation():
    """Bigrams, one discount D = 1/2, on the corpus a b c b a b over the vocabulary {a, b, c}.

    Bigram counts: ab 2, bc 1, cb 1, ba 1. Continuation counts N1+(. w): b follows a and c -> 2; a, c -> 1
    each; 4 in all. Unigrams: gamma_1 = 3 x 1/2 / 4 = 3/8, so
        p1(a) = (1 - 1/2)/4 + (3/8)/3 = 1/4     p1(b) = (2 - 1/2)/4 + 1/8 = 1/2     p1(c) = 1/4
    Bigrams, context a: only ab (2), gamma(a) = 1/2 / 2 = 1/4:
        p(b|a) = (2 - 1/2)/2 + 1/4 x 1/2 = 7/8     p(a|a) = p(c|a) = 1/4 x 1/4 = 1/16
    context b: bc 1, ba 1, gamma(b) = 2 x 1/2 / 2 = 1/2:
        p(a|b) = p(c|b) = (1 - 1/2)/2 + 1/2 x 1/4 = 3/8     p(b|b) = 1/2 x 1/2 = 1/4
    context c: cb 1, gamma(c) = 1/2:  p(b|c) = 1/2 + 1/2 x 1/2 = 3/4     p(a|c) = p(c|c) = 1/8
    The text a b a c: p(b|a) p(a|b) p(c|a) = 7/8 x 3/8 x 1/16, perplexity (that)^(-1/3).
    """
    model = fitted([A, B, C, B, A, B], 3, order=2, discount=0.5)
    by_hand = {A: [1 / 16, 7 / 8, 1 / 16], B: [3 / 8, 1 / 4, 3 / 8], C: [1 / 8, 3 / 4, 1 / 8]}
    for context, expected in by_hand.items():
        assert probabilities(model, [context]).tolist() == pytest.approx(expected, rel=1e-6)
    assert (model.alpha_1 + model.gamma_1 / 3).tolist() == pytest.approx([1 / 4, 1 / 2, 1 / 4], rel=1e-6)

    _, loss, _ = model(torch.tensor([[A, B, A]]), torch.tensor([[B, A, C]]))
    assert math.exp(loss.item()) == pytest.approx((7 / 8 * 3 / 8 * 1 / 16) ** (-1 / 3), rel=1e-6)


def test_modified_discounts_follow_chen_and_goodman():
    """n1..n4 = 10, 4, 2, 1: Y = 10/18; D1 = 1 - 2Y 4/10 = 5/9, D2 = 2 - 3Y 2/4 = 7/6, D3+ = 3 - 4Y 1/2 = 17/9."""
    counts = np.array([1] * 10 + [2] * 4 + [3] * 2 + [4] + [7, 9])
    discounts, why = modified_discounts(counts)
    assert why == "" and discounts.tolist() == pytest.approx([5 / 9, 7 / 6, 17 / 9], rel=1e-6)


def test_stupid_backoff_is_brants_formula_and_not_normalised():
    """On a b c b a b: S(b|a) = c(ab)/c(a.) = 1; S(c|a) = 0.4 x (c(c) + 1)/(N + V) = 0.4 x 2/9 (add-one)."""
    model = fitted([A, B, C, B, A, B], 3, order=2, smoothing="stupid-backoff")
    assert probabilities(model, [A]).tolist() == pytest.approx([0.4 * 3 / 9, 1.0, 0.4 * 2 / 9], rel=1e-6)
    assert probabilities(model, [A]).sum() > 1.1  # scores, not probabilities ...
    logits = model(torch.tensor([[A]]))[0]
    assert logits.log_softmax(-1).exp().sum().item() == pytest.approx(1.0)  # ... which the loss renormalises


# ---------------------------------------------------------------- the equations, with dicts


def reference_kneser_ney(stream: list[int], order: int, vocab_size: int, discount_of):
    """p(w | context) transcribed from the module docstring's equations with Counters (slow, plain)."""
    grams = [Counter(tuple(stream[i:i + k]) for i in range(len(stream) - k + 1)) for k in range(order + 1)]
    continuations = [Counter(gram[1:] for gram in grams[k + 1]) for k in range(order)]

    def p(w: int, context: tuple[int, ...]) -> float:
        k = len(context) + 1
        counts = grams[k] if k == order else continuations[k]
        seen = {gram[-1]: c for gram, c in counts.items() if gram[:-1] == context and c > 0}
        below = 1 / vocab_size if k == 1 else p(w, context[1:])
        total = sum(seen.values())
        if total == 0:
            return below
        c = seen.get(w, 0)
        gamma = sum(discount_of(k, x) for x in seen.values()) / total
        return (c - discount_of(k, c)) / total * (c > 0) + gamma * below

    return p


@pytest.mark.parametrize("order,discount", [(1, None), (2, 0.7), (3, None), (4, None), (5, 0.3)])
def test_the_tables_give_the_equations_probabilities(human_numbers, order: int, discount: float | None):
    ids, vocab_size = human_numbers
    stream = ids[:3_000].tolist()
    model = fitted(stream, vocab_size, order=order, discount=discount)
    D = model.discounts.tolist()
    p = reference_kneser_ney(stream, order, vocab_size, lambda k, c: 0 if c == 0 else D[k - 1][min(c, 3) - 1])
    later = ids[30_000:30_040].tolist()  # contexts seen and unseen in the first 3,000 tokens
    for i in range(order - 1, len(later)):
        context = tuple(later[i - order + 1:i])
        expected = [p(w, context) for w in range(vocab_size)]
        assert probabilities(model, list(context)).tolist() == pytest.approx(expected, rel=1e-5, abs=1e-9)


# ---------------------------------------------------------------- properties


@pytest.mark.parametrize("settings", [{"order": 1}, {"order": 2}, {"order": 3, "discount": 0.1}, {"order": 5},
                                      {"order": 7}])
def test_every_context_sums_to_one_over_the_vocabulary(human_numbers, settings: dict):
    ids, vocab_size = human_numbers
    model = fitted(ids[:20_000], vocab_size, **settings)
    n = model.config.order
    rng = np.random.default_rng(0)
    starts = rng.integers(0, len(ids) - n, 300)
    contexts = torch.from_numpy(np.stack([ids[s:s + n - 1] for s in starts]).reshape(300, n - 1))  # seen, unseen
    contexts = torch.cat([contexts, torch.randint(0, vocab_size, (100, n - 1))])  # mostly never seen
    if n > 1:
        contexts[:50, : n - 2] = NOTHING  # a stream's start: shorter contexts
    totals = model.distribution(contexts).double().sum(-1)
    assert totals.tolist() == pytest.approx([1.0] * len(contexts), abs=1e-5)


def test_unknown_words_and_document_starts_never_give_an_infinite_perplexity(human_numbers):
    ids, vocab_size = human_numbers
    model = fitted(ids[:5_000], vocab_size, order=5)
    assert not (ids[:5_000] == UNK).any()  # <unk> is never counted, nor are most contexts of the last 20 tokens
    text = torch.tensor([[DOC, UNK, UNK, DOC, DOC, *ids[-20:].tolist()]])
    logits, loss, _ = model(text[:, :-1], text[:, 1:])  # from nothing read, with unseen tokens and contexts
    assert torch.isfinite(logits).all() and math.isfinite(loss.item())


def test_the_state_carries_the_context_from_one_batch_to_the_next(human_numbers):
    ids, vocab_size = human_numbers
    model = fitted(ids[:10_000], vocab_size, order=4)
    x = torch.from_numpy(ids[10_000:10_024]).reshape(2, 12)
    whole, _, state = model(x)
    first, _, carried = model(x[:, :5])
    rest, _, carried = model(x[:, 5:], state=carried)
    assert torch.equal(torch.cat([first, rest], 1), whole) and torch.equal(carried, state)
    assert torch.equal(state, x[:, -3:])  # the state is the last n-1 tokens


def test_a_corpus_too_small_for_the_discounts_falls_back_with_a_message():
    model = NGram(NGramConfig(vocab_size=3, order=3))
    with pytest.warns(UserWarning, match=r"too few n-grams .* order 3 \(n1..n4 = 4, 0, 0, 0\)"):
        model.fit_counts(np.array([A, B, C, B, A, B]))
    assert model.discounts[2].tolist() == [0.5, 0.5, 0.5]  # neither n1 nor n2 for Y: one half
    assert model.distribution(torch.tensor([[A, B], [C, C]])).sum(-1).tolist() == pytest.approx([1.0, 1.0])
    empty = NGram(NGramConfig(vocab_size=3, order=3))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        empty.fit_counts(np.array([], dtype=np.int64))  # nothing at all: uniform
    assert empty.distribution(torch.tensor([[A, B]]))[0].tolist() == pytest.approx([1 / 3] * 3)


def test_bad_settings_are_one_line_errors():
    for settings, fragment in [({"order": 0}, "order 0"), ({"discount": 1.5}, "discount 1.5"),
                               ({"smoothing": "kneser"}, "did you mean kneser-ney"), ({"backoff": 0}, "backoff 0")]:
        with pytest.raises(UserError, match=fragment):
            NGramConfig(vocab_size=5, **settings)
    with pytest.raises(UserError, match=r"ids to count must lie in \[0, 5\)"):
        NGram(NGramConfig(vocab_size=5)).fit_counts(np.array([1, 7]))


# ---------------------------------------------------------------- against NLTK


@pytest.mark.skipif(not WIKITEXT.exists(), reason="needs ../shared/data/wikitext-2")
def test_equals_nltk_kneser_ney_interpolated_where_it_is_finite():
    """NLTK's KneserNeyInterpolated (one discount, 0.1 by default) on the first 20,000 words of WikiText-2's
    validation text. NLTK ends its recursion at undiscounted continuation unigrams N1+(. w) / N1+(. .),
    where this model discounts them too and adds gamma_1 / V: the two differ there only, so for bigrams
    ours - NLTK's = gamma(h) (p1(w) - N1+(. w) / N1+(. .)) exactly, and overall by under 1%. NLTK gives
    probability 0 to words it has not seen (12% of the next 150); this model never does."""
    nltk_lm = pytest.importorskip("nltk.lm")
    from nltk.util import everygrams

    tokenizer, ids, _ = tokenize_corpus(open_corpus(str(WIKITEXT)), TokenizerSpec(kind="word"))
    train, test = np.asarray(ids[:20_000]).tolist(), np.asarray(ids[20_000:20_150]).tolist()
    for order in (2, 3):
        reference = nltk_lm.KneserNeyInterpolated(order, discount=0.1)
        words = [str(token) for token in train]
        reference.fit([list(everygrams(words, max_len=order))], vocabulary_text=words)
        model = fitted(train, tokenizer.vocab_size, order=order, discount=0.1)
        at = range(order - 1, len(test))
        contexts = torch.tensor([test[i - order + 1:i] for i in at])
        ours = model.distribution(contexts)[torch.arange(len(at)), torch.tensor(test[order - 1:])].double()
        theirs = torch.tensor([reference.score(str(test[i]), [str(t) for t in test[i - order + 1:i]]) for i in at],
                              dtype=torch.float64)
        finite = theirs > 0
        assert 0.8 < finite.double().mean() < 0.95 and (ours > 0).all()
        perplexity = ours[finite].log().mean().neg().exp(), theirs[finite].log().mean().neg().exp()
        assert perplexity[0].item() == pytest.approx(perplexity[1].item(), rel=0.01)
        if order == 2:
            unigram = torch.tensor([reference.estimator.unigram_score(str(test[i])) for i in at], dtype=torch.float64)
            p1 = (model.alpha_1 + model.gamma_1 / tokenizer.vocab_size).double()[torch.tensor(test[1:])]
            gamma = model.gamma_2.double()[contexts[:, 0]]
            assert ours[finite].tolist() == pytest.approx((theirs + gamma * (p1 - unigram))[finite].tolist(), rel=1e-5)


# ---------------------------------------------------------------- a language model like any other


@pytest.fixture(scope="module")
def ngram_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("ngram")
    scratchlm.train("human-numbers", "ngram", folder / "run", settings={"order": 4})
    return folder / "run"


def test_a_run_holds_its_tables_and_loads_them_back(ngram_run: Path, human_numbers):
    run = scratchlm.load(ngram_run, device="cpu")
    with safe_open(str(ngram_run / BEST), framework="pt") as f:
        assert {"keys_2", "keys_3", "keys_4", "alpha_4", "gamma_4", "discounts"} <= set(f.keys())
    ids, vocab_size = human_numbers
    counted = fitted(split_stream(ids, 0.2, align=16)[0], vocab_size, order=4)  # the run's training split
    x = torch.from_numpy(ids[-40:]).reshape(2, 20)
    assert torch.equal(run.model(x)[0], counted(x)[0])
    row = run.metrics[-1]
    assert row["step"] == 1 and math.isnan(row["train_loss"]) and row["tokens"] == run.config["data"]["train_tokens"]
    assert run.config["model"]["parameters"] == 0


def test_train_score_generate_and_eval_through_the_cli(ngram_run: Path, tmp_path: Path, capsys):
    run = scratchlm.load(ngram_run, device="cpu")
    assert main(["generate", str(ngram_run), "--prompt", "one . two .", "--tokens", "8"]) == 0
    assert capsys.readouterr().out == "one . two ." + run.generate("one . two .", tokens=8) + "\n"
    real = "five thousand six hundred . five thousand six hundred one"
    scrambled = "hundred six . five thousand one five six hundred thousand"  # the same words, out of order
    assert main(["score", str(ngram_run), real, scrambled, "--json"]) == 0
    scores = json.loads(capsys.readouterr().out)
    assert scores[0]["logprob"] > scores[1]["logprob"] and all(math.isfinite(s["logprob"]) for s in scores)
    assert [s["logprob"] for s in scores] == pytest.approx([s["logprob"] for s in run.score([real, scrambled])])
    assert main(["eval", str(ngram_run), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["loss"] == pytest.approx(run.metrics[-1]["valid_loss"], rel=1e-6) and result["perplexity"] < 40

    out = tmp_path / "trigram"
    assert main(["train", "--model", "ngram", "--set", "order=3", "--set", "smoothing=stupid-backoff",
                 "--out", str(out), "--quiet"]) == 0
    assert "ngram: final accuracy" in capsys.readouterr().out
    assert json.loads((out / "config.json").read_text())["model"]["config"]["order"] == 3
    assert main(["lr-find", "--model", "ngram"]) == 2
    assert capsys.readouterr().err.strip() == ("scratchlm: error: ngram learns by counting, not by gradient steps: "
                                               "it has no learning rate to find")
    assert main(["train", "--model", "ngram", "--set", "order=0", "--out", str(tmp_path / "bad")]) == 2
    assert "order 0 must be between 1 (unigrams) and 10" in capsys.readouterr().err


def test_resuming_a_counted_run_changes_nothing(ngram_run: Path, tmp_path: Path):
    copy = shutil.copytree(ngram_run, tmp_path / "run")
    before = (copy / BEST).read_bytes()
    run = scratchlm.train(out=copy, resume=True)
    assert (copy / BEST).read_bytes() == before and len(run.metrics) == 1


def test_the_ladder_starts_from_the_ngram_rung(tmp_path: Path, capsys):
    assert main(["ladder", "--data", "human-numbers", "--models", "ngram,mlp3", "--time", "3s",
                 "--out", str(tmp_path / "ladder"), "--quiet"]) == 0
    rows = json.loads((tmp_path / "ladder" / "ladder.json").read_text())
    assert [row["rung"] for row in rows] == ["ngram", "mlp3"]
    assert rows[0]["parameters"] == 0 and 0 < rows[0]["accuracy"] < 1 and rows[0]["tokens_per_second"] > 0
    assert "ngram" in capsys.readouterr().out


def test_models_says_no_optimizer_applies(capsys):
    assert main(["models", "ngram"]) == 0
    out = capsys.readouterr().out
    assert "learns by counting its training data once" in out and "--lr" not in out and "--schedule" not in out
