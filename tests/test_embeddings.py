"""Word embeddings: subsampling and negatives against their formulas, windows laid as word2vec lays them,
the written-out SGD step against autograd, training (the loss falls, a seed fixes the vectors), the
verbs on hand-made vectors, the word2vec formats in and out, and every command through the CLI with its
bad inputs as one line and exit code 2."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch

import scratchlm
from scratchlm.cli import main
from scratchlm.data.contexts import ContextBatches, draw_negatives, keep_probability, lay_windows, negative_cdf
from scratchlm.errors import UserError
from scratchlm.models.word2vec import Word2Vec, Word2VecConfig
from scratchlm.tasks.embeddings import EmbeddingData
from scratchlm.vectors import WordVectors, read_word2vec

ANIMALS = ["cat", "dog", "horse", "cow", "sheep", "goat"]
VEHICLES = ["car", "bus", "train", "truck", "van", "tram"]
ANIMAL_VERBS = ["eats", "sleeps", "runs", "grazes"]
VEHICLE_VERBS = ["drives", "stops", "parks", "brakes"]
SHARED = Path(__file__).parents[2] / "shared" / "data" / "analogies"


def toy_text(sentences: int = 5000, seed: int = 0) -> str:
    """Two topics that never share a sentence: a noun's neighbours are its topic's words."""
    rng = random.Random(seed)
    lines = []
    for _ in range(sentences):
        nouns, verbs = rng.choice([(ANIMALS, ANIMAL_VERBS), (VEHICLES, VEHICLE_VERBS)])
        lines.append(f"the {rng.choice(nouns)} {rng.choice(verbs)} and the {rng.choice(nouns)} {rng.choice(verbs)} .")
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def toy_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("text") / "toy.txt"
    path.write_text(toy_text(), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def w2v_run(toy_file: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "w2v"
    scratchlm.train(str(toy_file), "word2vec", out, epochs=3, min_count=2, batch_size=64,
                    settings={"dim": 16, "sample": 0.0})
    return out


def hand_made() -> WordVectors:
    """man : woman :: king : queen exactly, with a few bystanders."""
    g, royal, person = np.array([0, 1, 0, 0.0]), np.array([0, 0, 1, 0.0]), np.array([1, 0, 0, 0.0])
    words = {"man": person - 0.5 * g, "woman": person + 0.5 * g, "king": royal - 0.5 * g, "queen": royal + 0.5 * g,
             "apple": np.array([0, 0, 0, 1.0]), "pear": np.array([0.1, 0, 0, 1.0]), "throne": royal + 0.1 * person}
    return WordVectors(list(words), np.array(list(words.values()), dtype=np.float32), "hand-made")


# ------------------------------------------------------------------ data: the formulas


def test_subsampling_keeps_each_word_as_word2vec_computes():
    counts = np.array([0, 0, 0, 0, 0, 10_000, 1_000, 100, 10, 1])
    t = 1e-3
    total = counts.sum()
    keep = keep_probability(counts, t)
    f = counts[5:] / total
    expected = np.minimum((np.sqrt(f / t) + 1) * t / f, 1.0)
    np.testing.assert_allclose(keep[5:], expected)
    assert (keep[:5] == 0).all() and keep[5] < keep[6] < 1 and keep[-1] == 1.0
    # drawn: the share of the most frequent word that survives is its probability
    stream = np.full(200_000, 5)
    at, kept, _, _ = lay_windows(stream, keep, np.zeros(10, dtype=np.int64), 2, np.random.default_rng(0))
    assert len(at) / len(stream) == pytest.approx(keep[5], abs=0.005)
    assert (keep_probability(counts, 0.0)[5:] == 1).all()


def test_negatives_follow_the_unigram_distribution_to_the_three_quarters():
    counts = np.array([0, 0, 0, 0, 0, 5000, 2000, 500, 50, 0, 5])
    cdf = negative_cdf(counts)
    drawn = draw_negatives(cdf, np.random.default_rng(0), 400_000)
    observed = np.bincount(drawn, minlength=len(counts)) / len(drawn)
    expected = counts ** 0.75 / (counts ** 0.75).sum()
    np.testing.assert_allclose(observed, expected, atol=0.003)
    assert observed[counts == 0].sum() == 0  # the specials and the newline are never negatives


def test_windows_stay_in_their_sentence_and_favour_near_words():
    rng = np.random.default_rng(0)
    words = rng.integers(5, 20, 50_000)
    words[::25] = 4  # <doc>: a sentence end every 25 tokens
    boundary = np.zeros(20, dtype=np.int64)
    boundary[4] = 1
    keep = np.ones(20)
    keep[4] = 0
    at, kept, neighbour, valid = lay_windows(words, keep, boundary, 5, rng)
    rows, column = np.nonzero(valid)
    distance = np.abs(at[neighbour[rows, column]] - at[rows])
    assert distance.max() <= 5 and distance.min() >= 1
    sentence = np.cumsum(boundary[words])
    assert (sentence[at[rows]] == sentence[at[neighbour[rows, column]]]).all()
    by_distance = np.bincount(distance, minlength=6)[1:]
    # a word at distance d is inside a reach drawn from 1..5 with probability (5 - d + 1) / 5, and a sentence
    # of 24 words holds 24 - d pairs at distance d
    d = np.arange(1, 6)
    np.testing.assert_allclose(by_distance / by_distance[0], (6 - d) / 5 * (24 - d) / 23, atol=0.02)


def toy_data(n: int = 20_000) -> EmbeddingData:
    from scratchlm.data.tokenize import WordTokenizer

    rng = np.random.default_rng(1)
    ids = rng.integers(6, 30, n).astype(np.uint16)
    ids[::40] = 5  # the newline token
    tokens = ["<unk>", "<pad>", "<bos>", "<eos>", "<doc>", "\n"] + [f"w{i}" for i in range(24)]
    counts = np.bincount(ids, minlength=30)
    counts[:6] = 0
    boundary = np.zeros(30, dtype=np.int64)
    boundary[[4, 5]] = 1
    return EmbeddingData(WordTokenizer(tokens), ids, counts, boundary, None)


@pytest.mark.parametrize("cbow, shared", [(False, 8), (False, 0), (True, 8)])
def test_batches_are_the_same_however_they_are_reached(cbow: bool, shared: int):
    config = Word2VecConfig(vocab_size=30, dim=8, window=3, shared_negatives=shared, cbow=cbow, sample=0.0)
    data = toy_data()
    batches = ContextBatches(data.words, config, 100, seed=3)
    assert len(batches) == 200
    in_order = [batches.batch(k) for k in range(len(batches))]
    fresh = ContextBatches(data.words, config, 100, seed=3)
    for k in (150, 3, 64, 199):  # out of order: each block is drawn from (seed, epoch, block) alone
        assert all(torch.equal(a, b) for a, b in zip(fresh.batch(k), in_order[k], strict=True))
    other = batches.for_epoch(1, 3).batch(0)
    assert not all(a.shape == b.shape and torch.equal(a, b) for a, b in zip(other, in_order[0], strict=True))
    rows = sum(len(b[2]) for b in in_order)
    words = (data.counts[data.ids] > 0).sum()
    if cbow:  # a row per word with a context
        assert 0.97 * words < rows <= words
    else:  # 2 E[b] = 4 pairs a word, less the edges of 39-word sentences
        assert 3.6 * words < rows < 4 * words


# ------------------------------------------------------------------ the step, against autograd


@pytest.mark.parametrize("cbow, shared", [(False, 6), (False, 0), (True, 6), (True, 0)])
def test_the_written_out_step_is_the_gradient_of_the_loss(cbow: bool, shared: int):
    torch.manual_seed(0)
    config = Word2VecConfig(vocab_size=20, dim=5, window=2, negative=3, shared_negatives=shared, cbow=cbow)
    model = Word2Vec(config)
    with torch.no_grad():
        model.output.weight.normal_()  # word2vec starts them at zero: no gradient would reach the inputs
    B = 7
    targets = torch.randint(5, 20, (B,))
    if cbow:
        inputs = torch.randint(5, 20, (B, 4))
        mask = (torch.rand(B, 4) < 0.7).float()
        mask[:, 0] = 1
    else:
        inputs, mask = torch.randint(5, 20, (B,)), None
    negatives = torch.randint(5, 20, (shared,) if shared else (B, 3))
    reference = Word2Vec(config)
    reference.load_state_dict(model.state_dict())
    positive, negative = reference.scores(reference.hidden(inputs, mask), targets, negatives)
    loss = reference.pair_loss(positive, negative, shared > 0).sum()
    loss.backward()
    lr = 0.1
    returned = model.sgd_step(inputs, mask, targets, negatives, lr)
    assert returned == pytest.approx(loss.item(), rel=1e-6)
    torch.testing.assert_close(model.output.weight, reference.output.weight - lr * reference.output.weight.grad)
    grad_in = reference.input.weight.grad
    if cbow:  # word2vec gives each context word the whole gradient of h, not its 1/C share
        h = reference.hidden(inputs, mask).detach().requires_grad_(True)
        grad_h = torch.autograd.grad(reference.pair_loss(*reference.scores(h, targets, negatives), shared > 0).sum(), h)[0]
        expected = torch.zeros_like(grad_in).index_add_(
            0, inputs.reshape(-1), (mask.unsqueeze(2) * grad_h.unsqueeze(1)).reshape(B * 4, -1))
        torch.testing.assert_close(model.input.weight, reference.input.weight - lr * expected)
    else:
        torch.testing.assert_close(model.input.weight, reference.input.weight - lr * grad_in)


def test_a_step_whose_loss_is_not_finite_changes_nothing():
    model = Word2Vec(Word2VecConfig(vocab_size=10, dim=4))
    with torch.no_grad():
        model.input.weight[6] = float("nan")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    loss = model.sgd_step(torch.tensor([6, 7]), None, torch.tensor([7, 8]), torch.tensor([5, 9]), 0.1)
    assert loss != loss  # NaN
    assert torch.equal(model.output.weight, before["output.weight"])
    assert torch.equal(model.input.weight[:6], before["input.weight"][:6])


@pytest.mark.parametrize("cbow", [False, True])
def test_the_bf16_step_moves_the_vectors_as_the_fp32_step_does(cbow: bool):
    """The three products with the shared negatives in bf16 (the pairs padded to BF16_ROWS): the same step to
    bf16's precision, whatever the number of pairs, and the padding's rows pull no negative."""
    torch.manual_seed(0)
    config = Word2VecConfig(vocab_size=300, dim=16, window=2, shared_negatives=64, cbow=cbow)
    start = Word2Vec(config)
    with torch.no_grad():
        start.output.weight.normal_(std=0.3)
    for B in (1, 127, 129, 300):
        fp32, bf16 = Word2Vec(config), Word2Vec(config)
        fp32.load_state_dict(start.state_dict())
        bf16.load_state_dict(start.state_dict())
        targets = torch.randint(5, 300, (B,))
        inputs = torch.randint(5, 300, (B, 4) if cbow else (B,))
        mask = torch.ones(B, 4) if cbow else None
        negatives = torch.randint(5, 300, (64,))
        loss = fp32.sgd_step(inputs, mask, targets, negatives, 0.5)
        assert bf16.sgd_step(inputs, mask, targets, negatives, 0.5, bf16=True) == pytest.approx(loss, rel=1e-2)
        for before, a, b in zip(start.parameters(), fp32.parameters(), bf16.parameters(), strict=True):
            assert b.dtype == torch.float32
            step, step_in_bf16 = a - before, b - before
            assert (step_in_bf16 - step).abs().max() <= 0.02 * step.abs().max()  # bf16 keeps 8 bits of each factor
        assert not torch.equal(fp32.output.weight, bf16.output.weight)  # it is bf16's arithmetic, not fp32's


def test_a_bf16_step_whose_loss_is_not_finite_changes_nothing():
    model = Word2Vec(Word2VecConfig(vocab_size=10, dim=4))
    with torch.no_grad():
        model.input.weight[6] = float("nan")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    loss = model.sgd_step(torch.tensor([6, 7]), None, torch.tensor([7, 8]), torch.tensor([5, 9]), 0.1, bf16=True)
    assert loss != loss  # NaN
    assert torch.equal(model.output.weight, before["output.weight"])
    assert torch.equal(model.input.weight[:6], before["input.weight"][:6])


@pytest.mark.parametrize("flags, settings, expected", [
    ({"avx512_bf16"}, {}, "bf16"),  # the shared negatives' products pay where AVX-512 multiplies bf16
    (set(), {}, "fp32"),
    ({"avx512_bf16", "amx_bf16"}, {"loss": "hs"}, "fp32"),  # no products to speed up
    ({"avx512_bf16", "amx_bf16"}, {"shared_negatives": 0}, "fp32"),
])
def test_precision_auto_takes_bf16_for_word2vec_where_the_cpu_multiplies_it(flags, settings, expected, tmp_path: Path,
                                                                             monkeypatch: pytest.MonkeyPatch, toy_file: Path):
    from scratchlm import speed

    monkeypatch.setattr(speed, "cpu_flags", lambda: frozenset(flags))
    run = scratchlm.train(str(toy_file), "word2vec", tmp_path / "run", epochs=1, min_count=2, batch_size=64,
                          settings=settings)
    assert run.config["resolved"]["precision"] == expected


# ------------------------------------------------------------------ training


def test_training_lowers_the_loss_groups_the_topics_and_repeats_with_its_seed(toy_file: Path, w2v_run: Path,
                                                                              tmp_path: Path):
    run = scratchlm.load(w2v_run)
    losses = [row["train_loss"] for row in run.metrics]
    assert len(losses) == 3 and losses[0] > losses[1] > losses[2]
    assert run.metrics[-1]["valid_loss"] < run.metrics[0]["valid_loss"]
    near = [w for w, _ in run.similar("cat", 3)]
    assert set(near) <= set(ANIMALS + ANIMAL_VERBS), near
    again = scratchlm.train(str(toy_file), "word2vec", tmp_path / "again", epochs=3, min_count=2, batch_size=64,
                            settings={"dim": 16, "sample": 0.0})
    assert np.array_equal(again.word_vectors()[1], run.word_vectors()[1])
    other = scratchlm.train(str(toy_file), "word2vec", tmp_path / "other", epochs=1, min_count=2, seed=1, batch_size=64,
                            settings={"dim": 16, "sample": 0.0})
    assert not np.array_equal(other.word_vectors()[1], run.word_vectors()[1])


def test_a_resumed_run_ends_with_the_same_vectors(toy_file: Path, tmp_path: Path):
    options = dict(min_count=2, batch_size=64, schedule="constant", lr=0.01, settings={"dim": 8})  # the same rates
    straight = scratchlm.train(str(toy_file), "word2vec", tmp_path / "straight", epochs=2, **options)
    scratchlm.train(str(toy_file), "word2vec", tmp_path / "halted", epochs=1, **options)
    resumed = scratchlm.train(str(toy_file), "word2vec", tmp_path / "halted", epochs=2, resume=True)
    assert np.array_equal(resumed.word_vectors()[1], straight.word_vectors()[1])
    assert [r["train_loss"] for r in resumed.metrics] == [r["train_loss"] for r in straight.metrics]


def test_cbow_and_per_pair_negatives_train_too(toy_file: Path, tmp_path: Path):
    for name, settings in (("cbow", {"cbow": True}), ("per-pair", {"shared_negatives": 0})):
        run = scratchlm.train(str(toy_file), "word2vec", tmp_path / name, epochs=2, min_count=2,
                              settings={"dim": 16, **settings})
        losses = [row["train_loss"] for row in run.metrics]
        assert losses[1] < losses[0], (name, losses)


def test_the_learning_rate_falls_linearly_to_zero():
    from scratchlm.trainer import TrainConfig, lr_at

    cfg = TrainConfig(epochs=1, lr=0.025, schedule="linear", warmup=0.0)
    assert [lr_at(p, cfg) for p in (0, 0.5, 1)] == pytest.approx([0.025, 0.0125, 0.0])


# ------------------------------------------------------------------ the verbs, on vectors made by hand


def test_analogies_by_3cosadd_and_3cosmul_leave_the_inputs_out_unless_asked():
    vectors = hand_made()
    for method in ("3cosadd", "3cosmul"):
        assert vectors.analogy("man", "woman", "king", method=method)[0][0] == "queen"
    shown = [w for w, _ in vectors.analogy("man", "woman", "king", n=7, include_inputs=True)]
    assert {"man", "woman", "king"} & set(shown)
    assert not {"man", "woman", "king"} & {w for w, _ in vectors.analogy("man", "woman", "king", n=4)}
    assert vectors.similar("apple", 1)[0][0] == "pear"


def test_analogy_file_counts_sections_and_skipped_questions(tmp_path: Path):
    path = tmp_path / "questions.txt"
    path.write_text(": royal\nman woman king queen\nMAN WOMAN KING QUEEN\nman woman king pear\n"
                    ": fruit\nman woman apple banana\n", encoding="utf-8")
    result = hand_made().eval_analogies(path)
    assert [(s["section"], s["correct"], s["questions"], s["skipped"]) for s in result["sections"]] == [
        ("royal", 2, 3, 0), ("fruit", 0, 0, 1)]
    assert result["accuracy"] == pytest.approx(2 / 3) and result["skipped"] == 1
    assert hand_made().eval_analogies(path, restrict_vocab=3)["skipped"] == 4  # queen is not among the first 3


def test_similarity_correlations_on_a_tiny_file(tmp_path: Path):
    vectors = hand_made()
    pairs = [("man", "woman"), ("king", "queen"), ("apple", "pear"), ("man", "apple"), ("king", "throne")]
    cosines = [float(vectors.unit[vectors.index[a]] @ vectors.unit[vectors.index[b]]) for a, b in pairs]
    lines = ["# a comment"] + [f"{a}\t{b}\t{10 * c:.4f}" for (a, b), c in zip(pairs, cosines, strict=True)]
    (tmp_path / "pairs.tsv").write_text("\n".join(lines + ["man\tunicorn\t5.0"]) + "\n", encoding="utf-8")
    result = vectors.eval_similarity(tmp_path / "pairs.tsv")
    assert result["spearman"] == pytest.approx(1.0) and result["pearson"] == pytest.approx(1.0)
    assert result["pairs"] == 5 and result["oov_ratio"] == pytest.approx(1 / 6)


def test_unknown_word_names_the_closest_known_ones():
    with pytest.raises(UserError, match=r"'kings' is not in the vocabulary .*closest known words: king"):
        hand_made().similar("kings")


def test_debiasing_removes_the_projection_of_neutral_words(tmp_path: Path):
    vectors = hand_made()
    g, _ = vectors.bias_direction([("woman", "man"), ("queen", "king")])
    assert abs(g @ np.array([0, 1, 0, 0])) == pytest.approx(1.0, abs=1e-6)
    neutral = [vectors.index["throne"], vectors.index["apple"]]
    after = vectors.debiased(g, neutral, [("woman", "man")])
    assert abs(after.unit[after.index["throne"]] @ g) < 1e-6
    man, woman = after.unit[after.index["man"]], after.unit[after.index["woman"]]
    throne = after.unit[after.index["throne"]]
    assert man @ throne == pytest.approx(woman @ throne, abs=1e-6)  # equalized: the same distance from neutral words


# ------------------------------------------------------------------ files


@pytest.mark.parametrize("fmt", ["text", "binary"])
def test_export_and_import_round_trip(w2v_run: Path, tmp_path: Path, fmt: str):
    run = scratchlm.load(w2v_run)
    path = tmp_path / f"vectors.{fmt}"
    run.export(path, fmt)
    back = read_word2vec(path)  # the format is told from the file
    words, matrix = run.word_vectors()
    assert back.words == words and np.array_equal(back.matrix, matrix)
    imported = scratchlm.tasks.embeddings.import_vectors(path, tmp_path / "imported")
    assert imported.similar("cat", 3) == run.similar("cat", 3)


def test_tsv_export_writes_vectors_and_their_words(w2v_run: Path, tmp_path: Path):
    written = scratchlm.load(w2v_run).export(tmp_path / "v.tsv", "tsv")
    vectors, metadata = (Path(p).read_text(encoding="utf-8").splitlines() for p in written)
    assert len(vectors) == len(metadata) and len(vectors[0].split("\t")) == 16 and "cat" in metadata


def test_word_vectors_of_a_word_level_language_model(hn_run: Path):
    run = scratchlm.load(hn_run)
    words, matrix = run.word_vectors()
    assert "one" in words and matrix.shape[0] == len(words) and "<unk>" not in words
    assert len(run.similar("two", 3)) == 3


# ------------------------------------------------------------------ the command line


def test_every_command_through_the_cli(toy_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture):
    run = tmp_path / "run"
    assert main(["train", "--model", "word2vec", "--data", str(toy_file), "--epochs", "2", "--min-count", "2",
                 "--set", "dim=16", "--out", str(run), "--quiet"]) == 0
    assert "word2vec: final" in capsys.readouterr()[0]
    assert main(["similar", str(run), "cat", "-n", "4", "--json"]) == 0
    assert len(json.loads(capsys.readouterr()[0])) == 4
    assert main(["analogy", str(run), "cat", "dog", "car", "--method", "3cosmul"]) == 0
    assert "cat : dog :: car : ?" in capsys.readouterr()[0]
    assert main(["map", str(run), "--words", "cat,dog,car,bus,eats", "--out", str(tmp_path / "map.png")]) == 0
    assert main(["map", str(run), "--top", "12", "--method", "tsne", "--out", str(tmp_path / "tsne.png")]) == 0
    capsys.readouterr()
    assert (tmp_path / "map.png").read_bytes().startswith(b"\x89PNG") and (tmp_path / "tsne.png").exists()
    (tmp_path / "q.txt").write_text(": toy\ncat dog car bus\ncat eats car drives\nunicorn cat dog car\n", encoding="utf-8")
    (tmp_path / "s.tsv").write_text("cat\tdog\t9\ncat\tcar\t1\nbus\ttrain\t8\ncow\tvan\t2\n", encoding="utf-8")
    assert main(["eval", str(run), "--analogies", str(tmp_path / "q.txt"), "--similarity", str(tmp_path / "s.tsv")]) == 0
    out = capsys.readouterr()[0]
    assert "overall" in out and "toy" in out and "spearman" in out
    assert main(["export", str(run), "--out", str(tmp_path / "v.bin"), "--format", "binary"]) == 0
    assert main(["import-vectors", str(tmp_path / "v.bin"), "--out", str(tmp_path / "imported")]) == 0
    assert "imported into" in capsys.readouterr()[0]
    assert main(["similar", str(tmp_path / "imported"), "cat"]) == 0
    (tmp_path / "pairs.txt").write_text("# two sides\ncat car\ndog bus\ncow truck\n", encoding="utf-8")
    assert main(["debias", str(run), "--out", str(tmp_path / "debiased"), "--pairs", str(tmp_path / "pairs.txt"),
                 "--equalize", str(tmp_path / "pairs.txt"), "--words", "eats,drives,the"]) == 0
    out = capsys.readouterr()[0]
    assert "projection on the bias direction" in out and "eats" in out
    assert main(["similar", str(tmp_path / "debiased"), "cat"]) == 0


@pytest.mark.skipif(not (SHARED / "questions-words.txt").exists(), reason="the analogy files are not here")
def test_the_standard_files_read(w2v_run: Path):
    result = scratchlm.load(w2v_run).eval(analogies=str(SHARED / "questions-words.txt"),
                                           similarity=[str(SHARED / "wordsim353.tsv"), str(SHARED / "simlex999.txt")])
    assert result["analogy_questions"] == 0 and result["analogy_skipped"] == 19_544
    assert result["wordsim353_oov_ratio"] > 0.9


def bad_inputs(tmp: Path, run: Path, hn_run: Path, char_run: Path, toy_file: Path) -> list[tuple[str, list[str], str]]:
    (tmp / "empty.vec").write_bytes(b"")
    (tmp / "noheader.vec").write_text("cat 0.1 0.2\n", encoding="utf-8")
    (tmp / "short.vec").write_text("3 2\ncat 0.1 0.2\ndog 0.3 0.4\n", encoding="utf-8")
    (tmp / "ragged.vec").write_text("2 2\ncat 0.1 0.2\ndog 0.3\n", encoding="utf-8")
    (tmp / "latin1.vec").write_bytes(b"2 2\ncaf\xe9 0.1 0.2\ndog 0.3 0.4\n")
    (tmp / "q.txt").write_text(": s\ncat dog car\n", encoding="utf-8")
    (tmp / "s.tsv").write_text("cat\tdog\tmuch\n", encoding="utf-8")
    (tmp / "binary.txt").write_bytes(b"\x00\x01\x02" * 100)
    (tmp / "lonely.txt").write_text("".join(f"word{i % 50}\n" for i in range(2000)), encoding="utf-8")
    return [
        ("unknown word", ["similar", str(run), "caat"], "closest known words: cat"),
        ("analogy unknown word", ["analogy", str(run), "cat", "dog", "unicornn"], "not in the vocabulary"),
        ("analogy method", ["analogy", str(run), "cat", "dog", "car", "--method", "3cosdiv"], "unknown analogy method"),
        ("bad -n", ["similar", str(run), "cat", "-n", "0"], "-n 0 must be between"),
        ("translation-less: char run", ["similar", str(char_run), "a"], "word vectors need a word-level run"),
        ("no such run", ["similar", str(tmp / "nowhere"), "cat"], "no such run directory"),
        ("map without words", ["map", str(run)], "--words a,b,c) or --top N"),
        ("map method", ["map", str(run), "--top", "5", "--method", "umap"], "unknown map method"),
        ("export format", ["export", str(run), "--out", str(tmp / "x"), "--format", "glove"], "unknown export format"),
        ("import missing", ["import-vectors", str(tmp / "none.vec"), "--out", str(tmp / "i1")], "no such file"),
        ("import empty", ["import-vectors", str(tmp / "empty.vec"), "--out", str(tmp / "i2")], "empty"),
        ("import no header", ["import-vectors", str(tmp / "noheader.vec"), "--out", str(tmp / "i3")], "COUNT DIM"),
        ("import truncated", ["import-vectors", str(tmp / "short.vec"), "--out", str(tmp / "i4")], "ends after 2"),
        ("import ragged", ["import-vectors", str(tmp / "ragged.vec"), "--out", str(tmp / "i5")], "has 1 numbers"),
        ("import bad bytes", ["import-vectors", str(tmp / "latin1.vec"), "--out", str(tmp / "i6")],
         "--unicode-errors replace"),
        ("import onto a run", ["import-vectors", str(tmp / "short.vec"), "--out", str(run), "--limit", "2"],
         "already holds a run"),
        ("eval without files", ["eval", str(run)], "give --analogies FILE"),
        ("eval missing file", ["eval", str(run), "--analogies", str(tmp / "none.txt")], "no such file"),
        ("eval bad analogy line", ["eval", str(run), "--analogies", str(tmp / "q.txt")], "holds 4 words"),
        ("eval bad similarity line", ["eval", str(run), "--similarity", str(tmp / "s.tsv")], "word1<TAB>word2<TAB>score"),
        ("eval binary file", ["eval", str(run), "--analogies", str(tmp / "binary.txt")], "a binary file"),
        ("eval restrict", ["eval", str(run), "--analogies", str(tmp / "q.txt"), "--restrict-vocab", "0"],
         "--restrict-vocab 0"),
        ("min count", ["train", "--model", "word2vec", "--data", str(toy_file), "--min-count", "0",
                       "--out", str(tmp / "t1")], "--min-count 0"),
        ("no data", ["train", "--model", "word2vec", "--out", str(tmp / "t2")], "give --data FILE"),
        ("missing data", ["train", "--model", "word2vec", "--data", str(tmp / "none.txt"), "--out", str(tmp / "t5")],
         "none.txt"),
        ("binary data", ["train", "--model", "word2vec", "--data", str(tmp / "binary.txt"), "--out", str(tmp / "t6")],
         "binary"),
        ("lm option", ["train", "--model", "word2vec", "--data", str(toy_file), "--min-freq", "3",
                       "--out", str(tmp / "t3")], "--min-count"),
        ("setting", ["train", "--model", "word2vec", "--data", str(toy_file), "--set", "window=0",
                     "--out", str(tmp / "t4")], "window 0"),
        ("lm verb on w2v", ["generate", str(run)], "word-embedding run"),
        ("no neighbours", ["train", "--model", "word2vec", "--data", str(tmp / "lonely.txt"), "--min-count", "1",
                           "--out", str(tmp / "t7")], "no word of the text has another beside it"),
        ("debias pairs unknown", ["debias", str(run), "--out", str(tmp / "d1")], "at least 2 pairs"),
    ]


def test_bad_inputs_are_one_line_and_change_nothing(w2v_run: Path, hn_run: Path, char_run: Path, toy_file: Path,
                                                    tmp_path: Path, capsys: pytest.CaptureFixture):
    from test_translation import hashes

    cases = bad_inputs(tmp_path, w2v_run, hn_run, char_run, toy_file)
    before = hashes(w2v_run)
    for name, argv, fragment in cases:
        code = main(argv)
        out, err = capsys.readouterr()
        lines = err.strip().splitlines()
        assert code == 2, (name, err)
        assert len(lines) == 1 and lines[0].startswith("scratchlm: error: "), (name, err)
        assert fragment in lines[0], (name, lines[0])
        assert "Traceback" not in err, name
    assert hashes(w2v_run) == before
    assert main(["import-vectors", str(tmp_path / "latin1.vec"), "--out", str(tmp_path / "ok"),
                 "--unicode-errors", "replace"]) == 0
    assert "caf\ufffd" in scratchlm.load(tmp_path / "ok").word_vectors()[0]
    assert main(["train", "--model", "word2vec", "--resume", "--out", str(tmp_path / "ok")]) == 2
    assert "cannot be trained" in capsys.readouterr()[1]
