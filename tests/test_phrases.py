"""Phrases: the scores against the formula by hand, a pair above the threshold joined and one below
left, greedy joins from the left, a second pass joining a phrase with a word, the numpy learning and the
encoder's `join` agreeing, and the phrases saved with the tokenizer so a resumed run and the verbs see them."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest

import scratchlm
from scratchlm.cli import main
from scratchlm.data.phrases import greedy_starts, join, learn_phrases, phrase_scores
from scratchlm.data.tokenize import TokenizerSpec, tokenizer_from_json, train_tokenizer
from scratchlm.errors import UserError


def test_scores_follow_the_formula():
    # count(ab) 10, count(a) 20, count(b) 40, delta 5, N 1000: (10 - 5) / (20 * 40) * 1000 = 6.25
    assert phrase_scores(np.array([10]), np.array([20]), np.array([40]), 5, 1000) == pytest.approx([6.25])


def test_a_pair_above_the_threshold_is_joined_and_one_below_is_not():
    # "new york" 10 times, "new" and "york" never apart; "the cat" 10 times but "the" everywhere
    lines = [["new", "york", "is", "big"]] * 10 + [["the", "cat", "the", "dog", "the", "end"]] * 10
    N = 40 + 60
    new_york = (10 - 5) / (10 * 10) * N  # 5.0
    the_cat = (10 - 5) / (30 * 10) * N  # 1.67
    passes = learn_phrases(lines, 1, threshold=3.0, delta=5, min_count=5)
    assert new_york > 3.0 > the_cat
    assert ("new", "york") in passes[0] and ("the", "cat") not in passes[0]
    assert ("is", "big") in passes[0]  # also 10 of 10: (10 - 5) / 100 * 100 = 5


def test_rare_words_never_join():
    lines = [["rare", "pair"]] * 3 + [["x"]] * 100
    assert learn_phrases(lines, 1, threshold=0.1, delta=0, min_count=5) == [[]]


def test_joins_are_greedy_from_the_left():
    assert greedy_starts(np.array([True, True, True, False, True, True])).tolist() == [0, 2, 4]
    assert join(["a", "b", "c"], [{("a", "b"), ("b", "c")}]) == ["a_b", "c"]


def test_a_second_pass_joins_a_phrase_with_a_word_and_learning_agrees_with_join():
    rng = random.Random(0)
    lines = []
    for _ in range(400):
        line = [rng.choice(["a", "b", "c", "d", "e", "f"]) for _ in range(6)]
        if rng.random() < 0.3:
            line[2:2] = ["new", "york", "times"]
        lines.append(line)
    passes = learn_phrases(lines, 2, threshold=5.0, delta=5, min_count=5)
    assert ("new", "york") in passes[0] or ("york", "times") in passes[0]
    assert any("_" in a or "_" in b for a, b in passes[1])
    joined = [join(line, [set(p) for p in passes]) for line in lines]
    assert sum("new_york_times" in line for line in joined) == sum("new" in line for line in lines)


def test_the_tokenizer_saves_its_phrases_and_encodes_with_them():
    text = ["new york is big\n"] * 20 + ["a dog in new york\n"] * 5 + ["the end\n"] * 30
    spec = TokenizerSpec(kind="word", min_freq=5, phrases=1, phrase_threshold=2.0)
    tokenizer = train_tokenizer([text], spec)
    assert "new_york" in tokenizer.stoi and "new" not in tokenizer.stoi
    back = tokenizer_from_json(tokenizer.to_json())
    assert back.phrases == tokenizer.phrases
    assert back.decode(back.encode_block("we saw new york\n").tolist()).endswith("new_york\n")
    with pytest.raises(UserError, match="word tokenizer"):
        TokenizerSpec(kind="char", phrases=1)
    broken = {**tokenizer.to_json(), "phrases": [["new york"]]}
    with pytest.raises(UserError, match="not a scratchlm tokenizer"):
        tokenizer_from_json(broken)


def test_phrases_through_the_cli_reach_the_verbs_and_a_resumed_run(tmp_path: Path, capsys: pytest.CaptureFixture):
    rng = random.Random(0)
    cities = ["new york", "los angeles", "san francisco"]
    lines = [f"she flew to {rng.choice(cities)} and then to {rng.choice(['paris', 'rome', 'lima'])} ." for _ in range(800)]
    data = tmp_path / "trips.txt"
    data.write_text("\n".join(lines) + "\n", encoding="utf-8")
    common = ["--model", "word2vec", "--data", str(data), "--phrases", "1", "--phrase-threshold", "5",
              "--set", "dim=8", "--quiet"]
    assert main(["train", *common, "--epochs", "1", "--out", str(tmp_path / "run")]) == 0
    run = scratchlm.load(tmp_path / "run")
    words = run.word_vectors()[0]
    assert {"new_york", "los_angeles", "san_francisco"} <= set(words) and "york" not in words
    capsys.readouterr()
    assert main(["similar", str(tmp_path / "run"), "new_york", "-n", "3"]) == 0
    assert len(capsys.readouterr()[0].strip().splitlines()) == 4  # a header and the phrase's 3 neighbours
    assert main(["train", "--resume", "--epochs", "2", "--out", str(tmp_path / "run"), "--quiet"]) == 0
    assert scratchlm.load(tmp_path / "run").word_vectors()[0] == words
    capsys.readouterr()
    for argv, fragment in [(["train", "--resume", "--out", str(tmp_path / "run"), "--phrases", "2"], "phrases"),
                           (["train", *common, "--phrases", "11", "--out", str(tmp_path / "bad")], "--phrases 11"),
                           (["train", *common, "--phrase-threshold", "0", "--out", str(tmp_path / "bad2")],
                            "--phrase-threshold 0")]:
        assert main(argv) == 2
        err = capsys.readouterr()[1].strip().splitlines()
        assert len(err) == 1 and fragment in err[0], (argv, err)
