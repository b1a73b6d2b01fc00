"""word2vec's hierarchical softmax: the Huffman codes (prefix-free, frequent words short, the tree's
shape on a hand example), the probabilities of all words summing to 1 for any context, the written-out
step against autograd, and training through the command line, resumed exactly."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

import scratchlm
from scratchlm.cli import main
from scratchlm.models.huffman import huffman_tree
from scratchlm.models.word2vec import HS_PAIRS, Word2Vec, Word2VecConfig
from test_embeddings import toy_text

COUNTS = np.array([0, 0, 0, 0, 500, 300, 200, 100, 50, 50, 20, 10, 5, 1])  # ids 0-3: no count, not in the tree


def code_strings(counts: np.ndarray) -> dict[int, str]:
    codes, _, lengths = huffman_tree(counts)
    return {i: "".join(map(str, codes[i, :lengths[i]])) for i in np.flatnonzero(counts)}


def test_codes_are_prefix_free_and_frequent_words_are_short():
    codes = code_strings(COUNTS)
    words = sorted(codes)
    for a in words:
        for b in words:
            assert a == b or not codes[b].startswith(codes[a]), (codes[a], codes[b])
    for a in words:  # a more frequent word never has the longer code (equal counts may differ)
        assert all(len(codes[a]) <= len(codes[b]) for b in words if COUNTS[a] > COUNTS[b])
    lengths = [len(codes[i]) for i in words]
    assert lengths[0] == 1 and max(lengths) == 9
    # Kraft's equality: a full binary tree's leaves satisfy sum 2^-length = 1
    assert sum(2.0 ** -n for n in lengths) == 1.0


def test_a_hand_built_tree():
    # counts 4, 2, 1, 1: merge 1+1 -> 2 (node 0), then 2+2 -> 4 (node 1), then 4+4 (node 2, the root)
    codes, points, lengths = huffman_tree(np.array([4, 2, 1, 1]))
    assert lengths.tolist() == [1, 2, 3, 3]
    assert [points[i, :lengths[i]].tolist()[0] for i in range(4)] == [2, 2, 2, 2]  # every path starts at the root
    assert points[2, :3].tolist() == [2, 1, 0] and points[3, :3].tolist() == [2, 1, 0]
    # the second-rarest of each merge takes the code 1, as in the word2vec tool
    assert [codes[i, :lengths[i]].tolist() for i in range(4)] == [[0], [1, 0], [1, 1, 0], [1, 1, 1]]


def test_one_word_or_none_gives_no_tree():
    for counts in (np.array([0, 0, 7]), np.zeros(3, dtype=int)):
        _, _, lengths = huffman_tree(counts)
        assert lengths.tolist() == [0, 0, 0]


def hs_model(seed: int = 0) -> Word2Vec:
    torch.manual_seed(seed)
    model = Word2Vec(Word2VecConfig(vocab_size=len(COUNTS), dim=5, loss="hs"))
    model.take_counts(COUNTS)
    torch.nn.init.normal_(model.inner.weight)
    torch.nn.init.normal_(model.input.weight)
    return model


def test_the_probabilities_of_all_words_sum_to_1_for_any_context():
    model = hs_model()
    h = torch.randn(7, 5) * 3
    words = np.flatnonzero(COUNTS)
    total = sum(model.log_probability(h, torch.full((7,), int(w))).exp() for w in words)
    assert torch.allclose(total, torch.ones(7), atol=1e-5)


def test_the_written_out_step_follows_autograd():
    model = hs_model()
    targets, centres = torch.tensor([4, 13, 7, 7, 9]), torch.tensor([5, 6, 5, 8, 12])
    W, U = model.input.weight.detach().clone().requires_grad_(), model.inner.weight.detach().clone().requires_grad_()
    points, codes, mask = model.path(targets)
    scores = (U[points] * W[centres].unsqueeze(1)).sum(-1)
    loss = (torch.nn.functional.softplus((2 * codes - 1) * scores) * mask).sum()
    loss.backward()
    lr = 0.1
    summed = model.sgd_step(centres, None, targets, torch.tensor([4, 5]), lr)
    assert summed == pytest.approx(loss.item(), rel=1e-5)
    assert torch.allclose(model.input.weight, W - lr * W.grad, atol=1e-5)
    assert torch.allclose(model.inner.weight, U - lr * U.grad, atol=1e-5)


def test_a_long_batch_steps_in_parts_each_from_the_last_and_reports_their_losses_before_each():
    model, replay = hs_model(), hs_model()
    replay.load_state_dict(model.state_dict())
    centres, targets = torch.randint(4, 14, (600,)), torch.randint(4, 14, (600,))
    before = -model.log_probability(model.hidden(centres), targets).sum().item()
    expected = 0.0
    with torch.no_grad():
        for part in (slice(0, HS_PAIRS), slice(HS_PAIRS, 2 * HS_PAIRS), slice(2 * HS_PAIRS, 600)):
            expected += -replay.log_probability(replay.hidden(centres[part]), targets[part]).sum().item()
            replay.sgd_step(centres[part], None, targets[part], torch.tensor([4]), 0.01)  # one step: short enough
    assert model.sgd_step(centres, None, targets, torch.tensor([4]), 0.01) == pytest.approx(expected, rel=1e-5)
    assert expected < before  # the later parts score on weights the earlier ones moved
    assert torch.allclose(model.input.weight, replay.input.weight, atol=1e-6)
    assert torch.allclose(model.inner.weight, replay.inner.weight, atol=1e-6)


def test_a_part_whose_loss_is_not_finite_leaves_the_weights_as_the_batch_found_them():
    model = hs_model()
    centres, targets = torch.randint(4, 13, (600,)), torch.randint(4, 14, (600,))
    centres[HS_PAIRS + 3] = 13  # the first part steps; the second meets an infinite score
    with torch.no_grad():
        model.input.weight[13] = math.inf
        W, U = model.input.weight.clone(), model.inner.weight.clone()
        assert not math.isfinite(model.sgd_step(centres, None, targets, torch.tensor([4]), 0.01))
    assert torch.equal(model.input.weight, W) and torch.equal(model.inner.weight, U)
    assert math.isfinite(model.sgd_step(centres[:HS_PAIRS], None, targets[:HS_PAIRS], torch.tensor([4]), 0.01))
    assert not torch.equal(model.inner.weight, U)  # the first part alone does move them


def test_cbow_in_parts_leaves_the_weights_too_when_a_part_is_not_finite():
    torch.manual_seed(0)
    model = Word2Vec(Word2VecConfig(vocab_size=len(COUNTS), dim=5, loss="hs", cbow=True))
    model.take_counts(COUNTS)
    torch.nn.init.normal_(model.inner.weight)
    contexts, mask = torch.randint(4, 13, (600, 4)), torch.ones(600, 4)
    contexts[500, 1], mask[500, 3] = 13, 0.0  # the third part reads the infinite vector
    with torch.no_grad():
        model.input.weight[13] = math.inf
        W, U = model.input.weight.clone(), model.inner.weight.clone()
        assert not math.isfinite(model.sgd_step(contexts, mask, torch.randint(4, 14, (600,)), torch.tensor([4]), 0.01))
    assert torch.equal(model.input.weight, W) and torch.equal(model.inner.weight, U)


@pytest.fixture(scope="module")
def toy_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("text") / "toy.txt"
    path.write_text(toy_text(3000), encoding="utf-8")
    return path


def test_hs_trains_through_the_cli_groups_the_topics_and_resumes_exactly(toy_file: Path, tmp_path: Path,
                                                                           capsys: pytest.CaptureFixture):
    common = ["--model", "word2vec", "--data", str(toy_file), "--min-count", "2", "--batch-size", "64",
              "--set", "loss=hs", "--set", "dim=16", "--set", "sample=0", "--quiet"]
    assert main(["train", *common, "--epochs", "4", "--out", str(tmp_path / "hs")]) == 0
    run = scratchlm.load(tmp_path / "hs")
    words = len(run.word_vectors()[0])
    assert run.metrics[-1]["valid_loss"] < 0.9 * math.log(words)  # well below a uniform guess's -log(1/V)
    near = {w for w, _ in run.similar("cat", 5)}
    assert not near & {"car", "bus", "train", "truck", "van", "tram", "drives", "stops", "parks", "brakes"}, near
    constant = [*common, "--schedule", "constant", "--lr", "0.01"]  # the same rates halted at 2 of 4 epochs as unbroken
    assert main(["train", *constant, "--epochs", "4", "--out", str(tmp_path / "straight")]) == 0
    assert main(["train", *constant, "--epochs", "2", "--out", str(tmp_path / "halted")]) == 0
    assert main(["train", "--resume", "--epochs", "4", "--out", str(tmp_path / "halted"), "--quiet"]) == 0
    assert np.array_equal(scratchlm.load(tmp_path / "halted").word_vectors()[1],
                          scratchlm.load(tmp_path / "straight").word_vectors()[1])
    capsys.readouterr()
    assert main(["train", *common, "--set", "loss=softmax", "--out", str(tmp_path / "bad")]) == 2
    err = capsys.readouterr()[1].strip().splitlines()
    assert len(err) == 1 and "choose ns (negative sampling) or hs" in err[0]
