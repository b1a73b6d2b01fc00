"""GloVe: the co-occurrence counts against a hand count (1/d weights, symmetry, sentences, chunks), the
weighting f(x), the written-out AdaGrad step against torch.optim.Adagrad on autograd's gradients, the
loss falling, a resumed run ending where an unbroken one does, and every verb of word vectors on a GloVe
run through the command line, with its bad inputs as one line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import scratchlm
from scratchlm.cli import main
from scratchlm.models.glove import GloVe, GloVeConfig, count_cooccurrence, weighting
from test_embeddings import ANIMAL_VERBS, ANIMALS, VEHICLE_VERBS, VEHICLES, toy_text

# ids 0..2 are not words (a special, <unk>, and the sentence end, 2), 3.. are words
IS_WORD = np.array([0, 0, 0, 1, 1, 1, 1], dtype=bool)
BOUNDARY = np.array([0, 0, 1, 0, 0, 0, 0])


def as_dict(X) -> dict[tuple[int, int], float]:
    return {(int(i), int(j)): float(v) for i, j, v in zip(X.rows, X.cols, X.values, strict=True)}


def test_counts_match_a_hand_count_with_1_over_distance_both_ways():
    # 3 4 5 | 3 3, window 2: the sentence end (2) stops the windows, <unk> (1) is dropped before they are laid
    ids = np.array([3, 4, 1, 5, 2, 3, 3])
    X = as_dict(count_cooccurrence(ids, IS_WORD, BOUNDARY, window=2))
    expected = {(3, 4): 1.0, (4, 3): 1.0, (4, 5): 1.0, (5, 4): 1.0, (3, 5): 0.5, (5, 3): 0.5, (3, 3): 2.0}
    assert pytest.approx(expected) == X and X.keys() == expected.keys()


def test_counts_are_symmetric_and_the_same_in_any_chunk_size():
    rng = np.random.default_rng(0)
    ids = rng.choice(7, size=3000, p=[0.02, 0.05, 0.08, 0.4, 0.25, 0.15, 0.05])
    whole = count_cooccurrence(ids, IS_WORD, BOUNDARY, window=4)
    for chunk in (5, 64, 999):
        part = count_cooccurrence(ids, IS_WORD, BOUNDARY, window=4, chunk=chunk)
        assert torch.equal(part.rows, whole.rows) and torch.equal(part.cols, whole.cols)
        assert torch.allclose(part.values, whole.values)
    X = as_dict(whole)
    assert all(X[(j, i)] == pytest.approx(v) for (i, j), v in X.items())
    # the total: every pair d apart in a sentence adds 2/d (both ways)
    words = ids[IS_WORD[ids]]
    sentence = np.cumsum(BOUNDARY[ids])[IS_WORD[ids]]
    total = sum(2 / d * (sentence[:-d] == sentence[d:]).sum() for d in range(1, 5))
    assert sum(X.values()) == pytest.approx(total)
    assert len(words) > 2000


def test_weighting_is_x_over_x_max_to_the_alpha_capped_at_1():
    x = torch.tensor([1.0, 10.0, 100.0, 1000.0], dtype=torch.float64)
    assert torch.allclose(weighting(x, 100.0, 0.75), torch.tensor([0.01 ** 0.75, 0.1 ** 0.75, 1.0, 1.0], dtype=torch.float64))


def tiny_batch():
    rows, cols = torch.tensor([3, 4, 3, 5, 3]), torch.tensor([4, 3, 5, 3, 3])
    x = torch.tensor([2.0, 2.0, 0.5, 0.5, 120.0])
    return rows, cols, x.log(), weighting(x, 100.0, 0.75)


def test_the_written_out_adagrad_step_is_torch_adagrad_on_autograd_gradients():
    torch.manual_seed(0)
    model = GloVe(GloVeConfig(vocab_size=7, dim=3))
    reference = GloVe(GloVeConfig(vocab_size=7, dim=3))
    reference.load_state_dict(model.state_dict())
    optimizer = torch.optim.Adagrad(reference.parameters(), lr=0.1, initial_accumulator_value=1.0, eps=1e-10)
    batch = tiny_batch()
    for _ in range(3):  # three steps, so the squared-gradient sums carry over
        loss, n = reference.batch_loss(batch)
        optimizer.zero_grad()
        (loss * n).backward()  # the step follows the summed J
        optimizer.step()
        summed, entries = model.take_step(batch, 0.1)
        assert entries == 5 and summed == pytest.approx(loss.item() * n, rel=1e-5)
    for name, p in model.named_parameters():
        assert torch.allclose(p, dict(reference.named_parameters())[name], atol=1e-6), name
    assert torch.allclose(model.word_sq, optimizer.state[reference.word]["sum"], atol=1e-6)


def test_a_loss_that_is_not_finite_moves_nothing():
    model = GloVe(GloVeConfig(vocab_size=7, dim=3))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rows, cols, log_x, weight = tiny_batch()
    loss, _ = model.take_step((rows, cols, log_x * float("nan"), weight), 0.1)
    assert not np.isfinite(loss)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


def test_word_vectors_are_w_plus_w_tilde():
    model = GloVe(GloVeConfig(vocab_size=7, dim=3))
    assert torch.equal(model.word_matrix(), model.word + model.context)


@pytest.fixture(scope="module")
def toy_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("text") / "toy.txt"
    path.write_text(toy_text(3000), encoding="utf-8")
    return path


def test_training_lowers_the_loss_groups_the_topics_and_resumes_exactly(toy_file: Path, tmp_path: Path):
    # GloVe fits only the counts that are not zero, and cat and car never share a sentence here: at a high
    # rate 8 dimensions fit the 24 words' counts nearly exactly and leave the topics apart unconstrained
    options = dict(min_count=2, batch_size=64, lr=0.05, settings={"dim": 8, "window": 4})
    run = scratchlm.train(str(toy_file), "glove", tmp_path / "straight", epochs=6, **options)
    losses = [r["valid_loss"] for r in run.metrics]
    assert losses[-1] < 0.7 * losses[0]
    for word, other_topic in (("cat", VEHICLES + VEHICLE_VERBS), ("car", ANIMALS + ANIMAL_VERBS)):
        near = [w for w, _ in run.similar(word, 5)]
        assert not set(near) & set(other_topic), (word, near)
    scratchlm.train(str(toy_file), "glove", tmp_path / "halted", epochs=3, **options)
    resumed = scratchlm.train(str(toy_file), "glove", tmp_path / "halted", epochs=6, resume=True)
    assert np.array_equal(resumed.word_vectors()[1], run.word_vectors()[1])


def test_every_verb_works_on_a_glove_run_through_the_cli(toy_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture):
    run = tmp_path / "glove"
    assert main(["train", "--model", "glove", "--data", str(toy_file), "--epochs", "3", "--min-count", "2",
                 "--batch-size", "128", "--set", "dim=8", "--out", str(run), "--quiet"]) == 0
    assert "glove: final" in capsys.readouterr()[0]
    assert main(["similar", str(run), "cat", "-n", "3", "--json"]) == 0
    assert len(json.loads(capsys.readouterr()[0])) == 3
    assert main(["analogy", str(run), "cat", "dog", "car"]) == 0
    (tmp_path / "q.txt").write_text(": toy\ncat dog car bus\n", encoding="utf-8")
    (tmp_path / "s.tsv").write_text("cat\tdog\t9\ncat\tcar\t1\nbus\ttrain\t8\n", encoding="utf-8")
    assert main(["eval", str(run), "--analogies", str(tmp_path / "q.txt"), "--similarity", str(tmp_path / "s.tsv")]) == 0
    assert "spearman" in capsys.readouterr()[0]
    assert main(["map", str(run), "--top", "8", "--out", str(tmp_path / "map.png")]) == 0
    assert main(["export", str(run), "--out", str(tmp_path / "v.txt")]) == 0
    capsys.readouterr()
    words, matrix = scratchlm.load(run).word_vectors()
    lines = (tmp_path / "v.txt").read_text(encoding="utf-8").splitlines()
    assert lines[0] == f"{len(words)} 8" and lines[1].split()[0] == words[0]
    assert np.allclose([float(v) for v in lines[1].split()[1:]], matrix[0], atol=1e-5)
    (tmp_path / "pairs.txt").write_text("cat car\ndog bus\n", encoding="utf-8")
    assert main(["debias", str(run), "--out", str(tmp_path / "debiased"), "--pairs", str(tmp_path / "pairs.txt"),
                 "--equalize", str(tmp_path / "pairs.txt")]) == 0
    assert main(["similar", str(tmp_path / "debiased"), "cat"]) == 0
    capsys.readouterr()
    for argv, fragment in [(["train", "--model", "glove", "--data", str(toy_file), "--set", "x_max=0",
                             "--out", str(tmp_path / "bad1")], "x_max 0"),
                           (["train", "--model", "glove", "--data", str(toy_file), "--set", "alpha=2",
                             "--out", str(tmp_path / "bad2")], "alpha 2"),
                           (["train", "--model", "glove", "--data", str(toy_file), "--set", "negative=5",
                             "--out", str(tmp_path / "bad3")], "one of alpha, dim, window, x_max"),
                           (["generate", str(run)], "word-embedding run")]:
        assert main(argv) == 2
        err = capsys.readouterr()[1].strip().splitlines()
        assert len(err) == 1 and fragment in err[0], (argv, err)


def test_the_first_line_names_the_update_rule_and_the_batches_glove_takes(toy_file: Path, tmp_path: Path,
                                                                            capsys: pytest.CaptureFixture):
    scratchlm.train(str(toy_file), "glove", tmp_path / "run", epochs=1, min_count=2, batch_size=128, progress=True,
                    settings={"dim": 8})
    first = capsys.readouterr().err.splitlines()[0]
    assert first.startswith("glove: ") and "AdaGrad, gradients written out, lr 0.5 constant" in first
    assert "batch 128 co-occurrence entries" in first and "weight decay" not in first and "adamw" not in first
