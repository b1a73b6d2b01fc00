"""Text classification: the readers and their errors, folds, metrics against scikit-learn, what the models
learn (a many-to-one RNN tells word order apart where a bag of embeddings cannot), ULMFiT from a
language-model run, cross-validation, and the commands end to end."""

from __future__ import annotations

import csv
import hashlib
import json
import os
import random
import signal
from pathlib import Path

import numpy as np
import pytest
import torch

import scratchlm
from scratchlm.checkpoint import TOKENIZER
from scratchlm.cli import main
from scratchlm.data.labelled import LabelledBatches, LabelledConfig, fold_assignment, read_labelled, split_examples
from scratchlm.data.tokenize import UNK
from scratchlm.errors import UserError
from scratchlm.models.classifier import BagConfig, BagOfEmbeddings, RNNClassifier, RNNClassifierConfig
from scratchlm.tasks.classification import LABELS, ClassificationRun

RT_POLARITY = Path(__file__).parents[2] / "shared" / "data" / "rt-polarity"
NOUNS = ["food", "service", "taste", "ambience", "staff", "music", "view", "price", "room", "wine"]
GOOD = ["good", "great", "lovely", "fine"]
BAD = ["bad", "awful", "poor", "dull"]
TINY = {"n_embed": 16, "n_hidden": 16, "n_head": 16}


def polar(n: int, seed: int = 0) -> list[tuple[str, str]]:
    """Separable sentences: a positive word makes the label pos, a negative one neg."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        label = "pos" if i % 2 == 0 else "neg"
        word = rng.choice(GOOD if label == "pos" else BAD)
        out.append((f"the {rng.choice(NOUNS)} was {word}", label))
    return out


def ordered(n: int) -> list[tuple[str, str]]:
    """Pairs of sentences with the same words in another order and the other label (the seed notes'
    "completely lacking in good taste"): a bag of their words is the same for both."""
    out = []
    for i in range(n // 2):
        noun = NOUNS[i % len(NOUNS)]
        good = GOOD[(i // len(NOUNS)) % len(GOOD)]
        out.append((f"the {noun} was {good} , not lacking", "pos"))
        out.append((f"the {noun} was lacking , not {good}", "neg"))
    return out


def write_folders(root: Path, examples: list[tuple[str, str]]) -> Path:
    for i, (text, label) in enumerate(examples):
        (root / label).mkdir(parents=True, exist_ok=True)
        (root / label / f"{i:04d}.txt").write_text(text + "\n", encoding="utf-8")
    return root


def write_files(root: Path, examples: list[tuple[str, str]], encoding: str = "utf-8") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for label in sorted({label for _, label in examples}):
        lines = "".join(text + "\n" for text, lab in examples if lab == label)
        (root / f"reviews.{label}").write_bytes(lines.encode(encoding))
    return root


def write_table(path: Path, examples: list[tuple[str, str]], header=("id", "text", "label")) -> Path:
    delimiter = "\t" if path.suffix == ".tsv" else ","
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, delimiter=delimiter)
        writer.writerow(header)
        for i, (text, label) in enumerate(examples):
            writer.writerow([i, text, label])
    return path


def read(path: Path, **options) -> tuple[list[str], list[str]]:
    labelled = read_labelled(LabelledConfig(path=str(path), **options))
    return labelled.texts, [labelled.classes[k] for k in labelled.labels]


# ------------------------------------------------------------------ readers


def test_the_three_layouts_read_the_same_examples(tmp_path: Path):
    examples = polar(12)
    expected = sorted(examples)
    for texts, labels in [read(write_folders(tmp_path / "folders", examples)),
                          read(write_files(tmp_path / "files", examples), label_from_filename=True),
                          read(write_table(tmp_path / "t.csv", examples)),
                          read(write_table(tmp_path / "t.tsv", examples)),
                          read(write_table(tmp_path / "n.csv", examples, ("id", "body", "y")), text_column="body",
                               label_column="2")]:
        assert sorted(zip(texts, labels, strict=True)) == expected


def test_a_windows_1252_file_is_read_as_such(tmp_path: Path):
    examples = [("un café très réussi", "pos"), ("a 'so-so' film \u2013 no", "neg")] * 3
    texts, _ = read(write_files(tmp_path / "cp", examples, encoding="cp1252"), label_from_filename=True)
    assert "un café très réussi" in texts and "a 'so-so' film \u2013 no" in texts  # not UTF-8, read right


@pytest.mark.skipif(not RT_POLARITY.exists(), reason="needs ../shared/data/rt-polarity")
def test_rt_polarity_reads_as_5331_and_5331():
    labelled = read_labelled(LabelledConfig(path=str(RT_POLARITY), label_from_filename=True))
    assert labelled.classes == ("neg", "pos") and np.bincount(labelled.labels).tolist() == [5331, 5331]
    assert labelled.encodings == ["cp1252"] and not any("\ufffd" in t for t in labelled.texts)


@pytest.mark.parametrize(("layout", "fragment"), [
    ("one-label-folder", "every example has the label 'pos'; a classifier needs at least two labels"),
    ("one-label-table", "every example has the label 'pos'"),
    ("empty-class-folder", "the label 'neg' has no examples"),
    ("empty-class-file", "the label 'neg' has no examples"),
    ("missing-column", "no column 'sentiment' (its columns are 'id', 'text', 'label')"),
    ("default-column-missing", "no column 'text' (its columns are 'id', 'body', 'label'); choose one with --text-column"),
    ("no-subfolders", "no subfolders, one per label; for a folder of files one per label"),
    ("splits-not-labels", "are splits, not labels; pass the training split"),
    ("filename-on-a-file", "--label-from-filename reads a folder of files"),
    ("columns-on-a-folder", "--text-column and --label-column are for a CSV/TSV file"),
    ("short-row", "t.csv:3: has 2 column(s), the header 3"),
    ("missing", "no such file or folder"),
])
def test_bad_labelled_data_is_one_clear_line(tmp_path: Path, layout: str, fragment: str):
    positive = [(t, "pos") for t, _ in polar(6)]
    options = {}
    if layout == "one-label-folder":
        path = write_folders(tmp_path / "d", positive)
    elif layout == "one-label-table":
        path = write_table(tmp_path / "t.csv", positive)
    elif layout == "empty-class-folder":
        path = write_folders(tmp_path / "d", positive)
        (path / "neg").mkdir()
    elif layout == "empty-class-file":
        path = write_files(tmp_path / "d", positive)
        (path / "reviews.neg").write_text("\n\n")
        options["label_from_filename"] = True
    elif layout in ("missing-column", "default-column-missing"):
        header = ("id", "text", "label") if layout == "missing-column" else ("id", "body", "label")
        path = write_table(tmp_path / "t.csv", polar(6), header)
        options = {"label_column": "sentiment"} if layout == "missing-column" else {}
    elif layout == "no-subfolders":
        path = write_files(tmp_path / "d", polar(6))
    elif layout == "splits-not-labels":
        write_folders(tmp_path / "imdb" / "train", polar(6))
        write_folders(tmp_path / "imdb" / "test", polar(6))
        path = tmp_path / "imdb"
    elif layout == "filename-on-a-file":
        path, options = write_table(tmp_path / "t.csv", polar(6)), {"label_from_filename": True}
    elif layout == "columns-on-a-folder":
        path, options = write_folders(tmp_path / "d", polar(6)), {"text_column": "text"}
    elif layout == "short-row":
        path = tmp_path / "t.csv"
        path.write_text("id,text,label\n0,good,pos\n1,bad\n")
        options["strict"] = True  # else the row is left out (tests/data/test_clean.py)
    else:
        path = tmp_path / "nope"
    with pytest.raises(UserError) as raised:
        read_labelled(LabelledConfig(path=str(path), **options))
    assert fragment in str(raised.value) and "\n" not in str(raised.value)


# ------------------------------------------------------------------ splits and folds


def test_folds_are_stratified_deterministic_and_cover_every_example_once():
    labels = np.array([0] * 60 + [1] * 40)
    first = fold_assignment(labels, 10, seed=0)
    assert np.array_equal(first, fold_assignment(labels, 10, seed=0))  # the seed alone decides
    assert not np.array_equal(first, fold_assignment(labels, 10, seed=1))
    assert sorted(np.bincount(first).tolist()) == [10] * 10  # every example in exactly one fold
    for k in range(10):
        assert np.bincount(labels[first == k]).tolist() == [6, 4]  # each fold in the overall proportions
    cfg = LabelledConfig(path="x", folds=10, fold=3)
    train, held = split_examples(labels, cfg)
    assert np.array_equal(held, np.flatnonzero(first == 3)) and len(set(train) | set(held)) == 100
    with pytest.raises(UserError, match="10 folds need at least 10 examples of every label"):
        fold_assignment(np.array([0] * 20 + [1] * 5), 10, seed=0)


def test_the_held_out_split_is_stratified_and_seeded():
    labels = np.array([0] * 50 + [1] * 50)
    train, valid = split_examples(labels, LabelledConfig(path="x", valid_fraction=0.2))
    assert len(valid) == 20 and np.bincount(labels[valid]).tolist() == [10, 10] and not set(train) & set(valid)
    again = split_examples(labels, LabelledConfig(path="x", valid_fraction=0.2))[1]
    other = split_examples(labels, LabelledConfig(path="x", valid_fraction=0.2, split_seed=5))[1]
    assert np.array_equal(valid, again) and not np.array_equal(valid, other)


def test_batches_are_the_same_for_the_same_epoch_and_cover_each_example_once():
    ids = tuple(np.arange(1 + i % 7) + 5 for i in range(50))
    batches = LabelledBatches(ids, np.arange(50) % 2, batch_size=8)
    epoch = batches.for_epoch(2, seed=0)
    assert all(torch.equal(a, b) for a, b in zip(epoch.batch(3), batches.for_epoch(2, seed=0).batch(3), strict=True))
    seen = np.concatenate([epoch.indices(k) for k in range(len(epoch))])
    assert len(epoch) == 6 and len(set(seen.tolist())) == 48  # the last 2 are dropped this epoch
    ids_, lengths, labels = epoch.batch(0)
    assert ids_.shape == (8, int(lengths.max())) and (ids_[lengths < ids_.size(1), -1] == 1).all()  # PAD = 1


# ------------------------------------------------------------------ models


def test_padding_changes_no_prediction():
    torch.manual_seed(0)
    for model in (BagOfEmbeddings(BagConfig(vocab_size=20, n_embed=8)),
                  RNNClassifier(RNNClassifierConfig(vocab_size=20, **TINY)),
                  RNNClassifier(RNNClassifierConfig(vocab_size=20, cell="gru", bidirectional=False, pooling="max",
                                                    **TINY))):
        model.eval()
        short = torch.tensor([[5, 6, 7]])
        padded = torch.tensor([[5, 6, 7, 1, 1, 1], [8, 9, 10, 11, 12, 13]])
        alone = model(short, torch.tensor([3]))[0]
        together = model(padded, torch.tensor([3, 6]))[0]
        torch.testing.assert_close(alone[0], together[0])


def train_toy(tmp_path: Path, examples, model: str, name: str, **options) -> ClassificationRun:
    data = write_folders(tmp_path / f"{name}-data", examples)
    settings = options.pop("settings", TINY if model != "bag-of-embeddings" else {"n_embed": 16})
    return scratchlm.train(str(data), model, tmp_path / name, settings=settings, batch_size=8, **options)


def test_a_separable_set_is_learnt(tmp_path: Path):
    run = train_toy(tmp_path, polar(80), "bag-of-embeddings", "bag", epochs=15, lr=3e-2)
    assert run.metrics[-1]["valid_accuracy"] == 1.0
    results = run.classify(["the wine was lovely", "the room was awful"])
    assert [r["label"] for r in results] == ["pos", "neg"] and all(r["probability"] > 0.5 for r in results)


def test_the_many_to_one_rnn_reads_word_order_which_a_bag_cannot(tmp_path: Path):
    examples = ordered(80)
    rnn = train_toy(tmp_path, examples, "rnn-classifier", "rnn", epochs=12, lr=1e-2)
    bag = train_toy(tmp_path, examples, "bag-of-embeddings", "bag", epochs=12, lr=1e-2)
    pair = ["the food was good , not lacking", "the food was lacking , not good"]
    assert [r["label"] for r in rnn.classify(pair)] == ["pos", "neg"]
    assert rnn.eval()["accuracy"] == 1.0
    same = bag.probabilities(pair)
    np.testing.assert_allclose(same[0], same[1], rtol=1e-5)  # the same bag of words: the same answer, always
    assert bag.eval(str(tmp_path / "bag-data"))["accuracy"] == 0.5  # on all the pairs: one of each right


# ------------------------------------------------------------------ eval


@pytest.fixture(scope="module")
def polar_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("polar")
    examples = polar(60) + [("the food was good but dull", "pos"), ("the view was fine , lacking", "neg")] * 5
    data = write_table(folder / "reviews.csv", examples)
    scratchlm.train(str(data), "rnn-classifier", folder / "run", settings=TINY, batch_size=8, epochs=3, lr=1e-2)
    return folder / "run"


def test_eval_agrees_with_scikit_learn(polar_run: Path, tmp_path: Path):
    from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support

    run = ClassificationRun.load(polar_run)
    result = run.eval(confusion_png=tmp_path / "c.png", wrong=3)
    texts, truth, _ = run.examples(None, None)
    predicted = run.probabilities(texts).argmax(1)
    assert result["accuracy"] == pytest.approx(accuracy_score(truth, predicted))
    precision, recall, f1, support = precision_recall_fscore_support(truth, predicted, zero_division=0)
    for i, label in enumerate(run.classes):
        got = result["per_label"][label]
        assert [got["precision"], got["recall"], got["f1"], got["support"]] == pytest.approx(
            [precision[i], recall[i], f1[i], support[i]])
    assert result["confusion"]["matrix"] == confusion_matrix(truth, predicted).tolist()
    assert sum(map(sum, result["confusion"]["matrix"])) == result["examples"] == len(texts)
    assert (tmp_path / "c.png").read_bytes().startswith(b"\x89PNG")
    wrong = result["most_confidently_wrong"]
    assert len(wrong) <= 3 and all(w["label"] != w["predicted"] for w in wrong)
    assert [w["probability"] for w in wrong] == sorted((w["probability"] for w in wrong), reverse=True)


def test_eval_on_other_data_reads_it_as_the_run_did(polar_run: Path, tmp_path: Path):
    run = ClassificationRun.load(polar_run)
    other = write_table(tmp_path / "other.csv", polar(10, seed=9))
    result = run.eval(str(other))
    assert result["examples"] == 10 and result["data"] == str(other)
    with pytest.raises(UserError, match="the label.s. meh are not the run's"):
        run.eval(str(write_table(tmp_path / "bad.csv", polar(4) + [("so so", "meh")])))


# ------------------------------------------------------------------ ULMFiT


@pytest.fixture(scope="module")
def lm_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("lm")
    text = folder / "reviews.txt"
    text.write_text("".join(t + "\n" for t, _ in polar(200, seed=3) + ordered(40)), encoding="utf-8")
    scratchlm.train(str(text), "awd-lstm", folder / "lm", tokenizer="word", epochs=1, batch_size=8, bptt=8,
                    settings={"n_embed": 16, "n_hidden": 24})
    return folder / "lm"


def test_ulmfit_takes_the_language_models_vocabulary_and_weights(lm_run: Path, tmp_path: Path):
    examples = polar(40) + [("the xylophone was good", "pos"), ("the zither was bad", "neg")] * 2
    run = train_toy(tmp_path, examples, "ulmfit", "ulm", epochs=2, base_run=str(lm_run), settings={"n_head": 8})
    lm = scratchlm.load(lm_run)
    assert (run.path / TOKENIZER).read_text() == (lm_run / TOKENIZER).read_text()  # the base run's vocabulary
    assert run.tokenizer.encode("the xylophone")[1] == UNK  # a word the language model never saw
    assert run.config["model"]["config"]["encoder"] == {"name": "awd-lstm", "config": lm.config["model"]["config"]}
    # Before the first step the body is the language model without its output layer.
    fresh = scratchlm.train(str(tmp_path / "ulm-data"), "ulmfit", tmp_path / "u0", epochs=1, batch_size=8,
                            base_run=str(lm_run), settings={"n_head": 8, "unfreeze": 0.99}, lr=1e-7)
    body, base = fresh.model.body.state_dict(), lm.model.state_dict()
    assert set(body) == {k for k in base if not k.startswith("decoder.")}
    for key in body:
        torch.testing.assert_close(body[key], base[key], atol=1e-5, rtol=0)  # lr 1e-7, the body frozen


def test_discriminative_rates_and_gradual_unfreezing(lm_run: Path, tmp_path: Path):
    from scratchlm.config import TrainConfig
    from scratchlm.steppers import make_optimizer

    run = train_toy(tmp_path, polar(20), "ulmfit", "ulm", epochs=1, base_run=str(lm_run), settings={"n_head": 8})
    model = run.model
    groups = model.layer_groups()
    assert [round(scale, 6) for _, scale in groups] == [round(2.6 ** -k, 6) for k in range(len(groups))]
    assert len(groups) == 1 + 1 + 2  # the head, then the two LSTM layers and the embedding, from the top
    optimizer, _ = make_optimizer(model, TrainConfig(epochs=1), torch.device("cpu"))
    assert sorted({g["lr_scale"] for g in optimizer.param_groups}, reverse=True) == [s for _, s in groups]
    model.follow_progress(0.0)
    assert [all(p.requires_grad for p in params) for params, _ in groups] == [True, False, False, False]
    model.follow_progress(0.3 * 2 / 4)  # half way through the unfreezing: the head and the top layer
    assert [all(p.requires_grad for p in params) for params, _ in groups] == [True, True, True, False]
    model.follow_progress(0.5)
    assert all(p.requires_grad for p in model.parameters())


def test_from_is_refused_where_it_cannot_apply(lm_run: Path, polar_run: Path, tmp_path: Path):
    data = str(write_folders(tmp_path / "d", polar(20)))
    with pytest.raises(UserError, match="use --model ulmfit"):
        scratchlm.train(data, "rnn-classifier", tmp_path / "a", epochs=1, base_run=str(lm_run))
    with pytest.raises(UserError, match="a classification run; a classifier starts from a language-model run"):
        scratchlm.train(data, "ulmfit", tmp_path / "b", epochs=1, base_run=str(polar_run))
    with pytest.raises(UserError, match="--from takes the language model's tokenizer; drop --tokenizer"):
        scratchlm.train(data, "ulmfit", tmp_path / "c", epochs=1, base_run=str(lm_run), tokenizer="char")


def test_embeddings_start_from_a_runs_word_vectors(lm_run: Path, polar_run: Path, tmp_path: Path):
    vectors = scratchlm.load(lm_run)  # a word-level language model's input embedding are word vectors too
    words, matrix = vectors.word_vectors()
    run = train_toy(tmp_path, polar(40), "rnn-classifier", "emb", epochs=1, lr=1e-7, embeddings=str(lm_run),
                    settings={"n_hidden": 8, "n_head": 8})
    assert run.model.config.n_embed == matrix.shape[1]  # the vectors' width
    embedding = run.model.embed.weight.detach().numpy()
    shared = [w for w in run.tokenizer.itos if w in words]
    assert len(shared) > 10 and run.config["data"]["words_with_vectors"] == len(shared)
    for word in shared:
        np.testing.assert_allclose(embedding[run.tokenizer.stoi[word]], matrix[words.index(word)], atol=1e-4)
    with pytest.raises(UserError, match="a classification run has no word vectors"):
        train_toy(tmp_path, polar(20), "bag-of-embeddings", "e2", epochs=1, embeddings=str(polar_run))
    with pytest.raises(UserError, match="ulmfit does not"):
        train_toy(tmp_path, polar(20), "ulmfit", "e3", epochs=1, embeddings=str(lm_run))


def test_a_stopped_classifier_resumes_to_the_weights_of_one_that_ran_straight(lm_run: Path, tmp_path: Path,
                                                                               monkeypatch: pytest.MonkeyPatch):
    """Unfreezing follows the run's progress, dropout its random stream: a stop mid-epoch costs nothing."""
    from scratchlm import steppers as steppers_module
    from scratchlm.errors import Interrupted

    data = str(write_folders(tmp_path / "d", polar(40)))
    options = dict(base_run=str(lm_run), settings={"n_head": 8}, batch_size=8, epochs=3)
    straight = scratchlm.train(data, "ulmfit", tmp_path / "straight", **options)
    steps = {"n": 0}
    detach = steppers_module.detach_state

    def interrupt_at_step_5(state):
        steps["n"] += 1
        if steps["n"] == 5:
            os.kill(os.getpid(), signal.SIGINT)
        return detach(state)

    with monkeypatch.context() as m:
        m.setattr(steppers_module, "detach_state", interrupt_at_step_5)
        with pytest.raises(Interrupted):
            scratchlm.train(data, "ulmfit", tmp_path / "resumed", **options)
    resumed = scratchlm.train(out=tmp_path / "resumed", resume=True)
    for a, b in zip(straight.model.state_dict().values(), resumed.model.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    assert [r["valid_loss"] for r in straight.metrics] == [r["valid_loss"] for r in resumed.metrics]


# ------------------------------------------------------------------ cross-validation


def test_cross_validation_saves_its_folds_and_resumes(tmp_path: Path):
    run = train_toy(tmp_path, polar(30), "bag-of-embeddings", "cv", epochs=2, lr=3e-2)
    results = scratchlm.cross_validate(run.path, folds=3)
    saved = json.loads((run.path / "folds.json").read_text())
    assert saved["assignment"] == fold_assignment(np.array([0, 1] * 15), 3, 0).tolist() or len(saved["assignment"]) == 30
    assert sorted(np.bincount(saved["assignment"]).tolist()) == [10, 10, 10]
    accuracies = [row["accuracy"] for row in saved["per_fold"]]
    assert results["summary"]["accuracy"]["mean"] == pytest.approx(np.mean(accuracies))
    assert results["summary"]["accuracy"]["std"] == pytest.approx(np.std(accuracies, ddof=1))
    for k in range(3):  # each fold's run held out its fold, and was scored on it
        fold_run = ClassificationRun.load(run.path / "folds" / f"fold-{k}")
        assert fold_run.data_config.fold == k and fold_run.eval()["examples"] == 10
    before = {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in (run.path / "folds").rglob("*.safetensors")}
    again = scratchlm.cross_validate(run.path, folds=3)  # finished fold runs are not trained again
    assert again["summary"] == results["summary"]
    assert before == {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in (run.path / "folds").rglob("*.safetensors")}


# ------------------------------------------------------------------ the commands


def test_the_commands_classify_evaluate_and_cross_validate(tmp_path: Path, capsys: pytest.CaptureFixture,
                                                            monkeypatch: pytest.MonkeyPatch):
    data = write_files(tmp_path / "reviews", polar(40), encoding="cp1252")
    out = tmp_path / "run"
    assert main(["train", "--model", "bag-of-embeddings", "--data", str(data), "--label-from-filename",
                 "--set", "n_embed=16", "--epochs", "15", "--lr", "0.03", "--batch-size", "8", "--out", str(out),
                 "--quiet"]) == 0
    assert "bag-of-embeddings: final accuracy 1.0000" in capsys.readouterr()[0]
    assert (out / LABELS).is_file()
    assert main(["classify", str(out), "the wine was lovely", "the room was dull"]) == 0
    lines = capsys.readouterr()[0].splitlines()
    assert [line.split("\t")[0] for line in lines] == ["pos", "neg"] and lines[0].endswith("\tthe wine was lovely")
    (tmp_path / "in.txt").write_text("the view was great\n\nthe staff was poor\n", encoding="utf-8")
    assert main(["classify", str(out), "--file", str(tmp_path / "in.txt"), "--json", "--all-labels"]) == 0
    results = [json.loads(line) for line in capsys.readouterr()[0].splitlines()]
    assert [r["label"] for r in results] == ["pos", None, "neg"]  # one line in, one line out
    assert set(results[0]["probabilities"]) == {"neg", "pos"} and sum(results[0]["probabilities"].values()) == pytest.approx(1)
    monkeypatch.setattr("sys.stdin", open(tmp_path / "in.txt", encoding="utf-8"))  # noqa: SIM115
    assert main(["classify", str(out)]) == 0
    assert len(capsys.readouterr()[0].splitlines()) == 3
    assert main(["eval", str(out)]) == 0
    text = capsys.readouterr()[0]
    assert text.startswith("held-out split: 4 examples, accuracy 1.0000")
    assert "confusion matrix (rows: the true label; columns: the predicted one)" in text and (out / "confusion.png").is_file()
    assert main(["eval", str(out), "--json"]) == 0
    assert json.loads(capsys.readouterr()[0])["per_label"]["pos"]["support"] == 2
    assert main(["eval", str(out), "--folds", "2"]) == 0
    text = capsys.readouterr()[0]
    assert "2-fold cross-validation (split seed 0)" in text and "accuracy" in text and (out / "folds.json").is_file()


def test_from_and_embeddings_on_the_command_line(lm_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture):
    data = str(write_folders(tmp_path / "d", polar(40)))
    common = ["--data", data, "--epochs", "1", "--batch-size", "8", "--quiet"]
    assert main(["train", "--model", "ulmfit", "--from", str(lm_run), "--set", "n_head=8", "--out", str(tmp_path / "u"),
                 *common]) == 0
    assert main(["train", "--model", "bag-of-embeddings", "--embeddings", str(lm_run), "--out", str(tmp_path / "b"),
                 *common]) == 0
    capsys.readouterr()
    assert ClassificationRun.load(tmp_path / "u").config["data"]["config"]["base_run"] == str(lm_run.resolve())
    assert ClassificationRun.load(tmp_path / "b").model.config.n_embed == 16  # the language model's width
    assert main(["classify", str(tmp_path / "u"), "the wine was lovely"]) == 0
    assert capsys.readouterr()[0].split("\t")[0] in ("pos", "neg")


def test_bad_classification_commands_are_one_line(polar_run: Path, lm_run: Path, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture):
    lm = tmp_path / "lm.txt"
    lm.write_text("one two three four five six seven eight nine ten\n" * 20)
    data = str(write_table(tmp_path / "t.csv", polar(20)))
    train = ["train", "--model", "rnn-classifier", "--epochs", "1", "--out", str(tmp_path / "new")]
    cases = [
        (train + ["--data", data, "--label-column", "stars"], "no column 'stars'"),
        (train + ["--data", data, "--valid-data", data], "--valid-data: not an option of classification data"),
        (["train", "--data", str(lm), "--label-from-filename", "--epochs", "1", "--out", str(tmp_path / "n2")],
         "--label-from-filename: not an option of language-model data"),
        (train, "give the labelled examples as --data"),
        (["classify", str(lm_run), "good"], "is a language-model run; this needs a classification run"),
        (["classify", str(polar_run), "  "], "nothing to read: give texts"),
        (["classify", str(polar_run), "good", "--file", data], "give texts or --file, not both"),
        (["classify", str(polar_run), "--file", str(tmp_path / "nope.txt")], "nope.txt: no such file"),
        (["eval", str(lm_run), "--folds", "3"], "a language-model run has no k-fold cross-validation"),
        (["eval", str(polar_run), "--folds", "1"], "--folds 1 must be between 2 and 100"),
        (["eval", str(polar_run), "--folds", "3", "--data", data], "--folds trains a run per fold on the run's own data"),
        (["train", "--resume", "--out", str(polar_run), "--text-column", "id"], "--resume: the run's text column is None"),
    ]
    for argv, fragment in cases:
        code = main(argv)
        out, err = capsys.readouterr()
        lines = err.strip().splitlines()
        assert code == 2 and len(lines) == 1 and lines[0].startswith("scratchlm: error: "), (argv, err)
        assert fragment in lines[0], (argv, lines[0])
        assert "Traceback" not in err
    assert not (tmp_path / "new").exists()
