"""Translation end to end: sentence pairs in any layout and encoding, checked line by line, split by
source sentence, bucketed batches that resume exactly, training, translate and eval through the CLI,
and every bad input as one line with exit code 2."""

from __future__ import annotations

import hashlib
import json
import math
import random
from pathlib import Path

import numpy as np
import pytest
import torch

import scratchlm
from scratchlm.cli import main, summary
from scratchlm.data.pairs import PairBatches, PairsConfig, held_out_sources, read_pairs
from scratchlm.data.tokenize import BOS, EOS, PAD
from scratchlm.errors import UserError
from scratchlm.tasks.translation import TranslationRun, split_data

WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
SHARED = Path(__file__).parents[2] / "shared" / "data" / "eng-fra" / "eng-fra.tsv"


def toy_pairs(n: int = 600, seed: int = 0) -> list[tuple[str, str]]:
    """A toy language pair: the target is the source's words in reverse order, capitalised."""
    rng = random.Random(seed)
    pairs = []
    for _ in range(n):
        words = [rng.choice(WORDS) for _ in range(rng.randint(2, 6))]
        pairs.append((" ".join(words), " ".join(w.upper() for w in reversed(words))))
    return pairs


@pytest.fixture(scope="module")
def toy_tsv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("pairs") / "toy.tsv"
    path.write_text("".join(f"{s}\t{t}\tCC-BY 2.0 (France) Attribution\n" for s, t in toy_pairs()), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def toy_run(toy_tsv: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "toy"
    scratchlm.train(str(toy_tsv), "seq2seq-attn", out, tokenizer="word", epochs=12, batch_size=16, lr=5e-3,
                    settings={"n_embed": 32, "n_hidden": 48, "dropout": 0.0})
    return out


def hashes(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file()
            and p.name != ".lock"}


# ------------------------------------------------------------------ data


def test_a_tsv_gives_its_columns_and_ignores_the_rest(tmp_path: Path):
    path = tmp_path / "p.tsv"
    path.write_text("Go.\tVa !\tattribution #1\nRun!\tCours !\tattribution #2\n", encoding="utf-8")
    pairs = read_pairs(PairsConfig(path=str(path)))
    assert (pairs.sources, pairs.targets) == (["Go.", "Run!"], ["Va !", "Cours !"])
    flipped = read_pairs(PairsConfig(path=str(path), reverse=True))
    assert flipped.sources == ["Va !", "Cours !"]
    third = read_pairs(PairsConfig(path=str(path), columns=(0, 2)))
    assert third.targets == ["attribution #1", "attribution #2"]


@pytest.mark.parametrize("encoding", ["latin-1", "utf-16", "cp1252"])
def test_pairs_in_another_encoding_are_read_as_text(tmp_path: Path, encoding: str):
    path = tmp_path / "p.tsv"
    lines = ["I am cold.\tJ'ai froid.", "She is here.\tElle est là.", "A coffee.\tUn café.",
             "It's summer.\tC'est l'été.", "Where is the station?\tOù est la gare ?", "Be careful.\tFaites très attention."]
    path.write_text("\n".join(lines * 5) + "\n", encoding=encoding)
    assert read_pairs(PairsConfig(path=str(path))).targets[1:4] == ["Elle est là.", "Un café.", "C'est l'été."]
    assert read_pairs(PairsConfig(path=str(path), encoding=encoding)).targets[4] == "Où est la gare ?"


def test_two_aligned_files_are_pairs(tmp_path: Path):
    (tmp_path / "a.en").write_text("Go.\nRun!\n", encoding="utf-8")
    (tmp_path / "a.fr").write_text("Va !\nCours !\n", encoding="latin-1")
    pairs = read_pairs(PairsConfig(src=str(tmp_path / "a.en"), tgt=str(tmp_path / "a.fr")))
    assert pairs.targets == ["Va !", "Cours !"] and pairs.encodings == ["utf-8", "utf-8"]


def test_the_split_holds_out_whole_source_sentences():
    """Tatoeba gives one source several translations: none of a held-out source's reaches training."""
    pairs = [(f"s{i % 300}", f"t{i}") for i in range(1200)]  # each source has 4 translations
    cfg = PairsConfig(path="x.tsv", min_valid=100, valid_fraction=0.05)
    held = held_out_sources([s for s, _ in pairs], cfg)
    assert sum(s in held for s, _ in pairs) >= 100  # at least min_valid pairs (a fifth of a small file at most)
    assert held == held_out_sources([s for s, _ in pairs], cfg)  # seeded
    assert held != held_out_sources([s for s, _ in pairs], PairsConfig(path="x.tsv", min_valid=100, split_seed=1))


def test_held_out_sources_keep_all_their_references(tmp_path: Path):
    path = tmp_path / "p.tsv"
    rows = [(f"source {i}", f"target {i} {j}") for i in range(400) for j in range(i % 3 + 1)]
    path.write_text("".join(f"{s}\t{t}\n" for s, t in rows), encoding="utf-8")
    data = split_data(PairsConfig(path=str(path), tokenizer={"kind": "word"}, min_valid=50))
    train_sources = {data.pairs.sources[i] for i in range(len(rows))} - set(data.held)
    assert not set(data.held) & train_sources
    for source, refs in data.held.items():
        i = int(source.split()[1])
        assert refs == [f"target {i} {j}" for j in range(i % 3 + 1)]
    assert data.summary()["train_pairs"] + data.summary()["valid_pairs"] == len(rows)


def test_the_decoder_input_is_the_target_shifted_right_behind_bos():
    batches = PairBatches((np.array([5, 6, 7]), np.array([8])), (np.array([9, 10]), np.array([11, 12, 13])),
                          batch_size=2, drop_last=False)
    src, lengths, tgt_in, targets, weight = batches.batch(0)
    assert float(weight) == 1.0  # one process: its tokens are the batch's
    assert src.tolist() == [[5, 6, 7], [8, PAD, PAD]] and lengths.tolist() == [3, 1]
    assert tgt_in.tolist() == [[BOS, 9, 10, PAD], [BOS, 11, 12, 13]]
    assert targets.tolist() == [[9, 10, EOS, PAD], [11, 12, 13, EOS]]


def test_batches_are_bucketed_drawn_from_seed_and_epoch_and_cover_every_pair():
    rng = np.random.default_rng(0)
    src = tuple(rng.integers(5, 50, rng.integers(1, 30)) for _ in range(1000))
    batches = PairBatches(src, src, batch_size=10)
    epoch = batches.for_epoch(3, seed=0)
    assert np.array_equal(epoch.order, batches.for_epoch(3, seed=0).order)  # a resumed run draws the same
    assert not np.array_equal(epoch.order, batches.for_epoch(4, seed=0).order)
    assert sorted(epoch.order.tolist()) == list(range(1000))
    padding = [float((epoch.batch(k)[0] == PAD).float().mean()) for k in range(len(epoch))]
    assert np.mean(padding) < 0.1  # pairs of like length share a batch


# ------------------------------------------------------------------ training and the verbs


def test_a_trained_model_translates_the_toy_language(toy_run: Path):
    run = scratchlm.load(toy_run, device="cpu")
    assert isinstance(run, TranslationRun)
    assert run.translate(["one two three"]) == ["THREE TWO ONE"]
    held = run.eval()
    assert held["bleu"] > 60 and held["sentences"] >= 100 and "nrefs" in held["signature"]
    assert run.metrics[-1]["valid_bleu"] > 60
    best = max(run.metrics, key=lambda row: row["valid_bleu"])  # model.safetensors is the best BLEU
    assert held["bleu"] == pytest.approx(best["valid_bleu"], abs=1e-6)


def test_beam_search_agrees_with_greedy_and_gives_n_best(toy_run: Path):
    run = scratchlm.load(toy_run, device="cpu")
    texts = [" ".join(random.Random(i).choices(WORDS, k=4)) for i in range(20)]
    greedy = run.translate(texts)
    assert run.translate(texts, beam=1) == greedy
    n_best = run.translate(texts, beam=4, n_best=3)
    assert [len(found) for found in n_best] == [3] * 20
    assert [found[0] for found in n_best] == run.translate(texts, beam=4)
    assert run.translate(texts[:1], batch_size=1) + run.translate(texts[1:]) == greedy  # batch-independent
    shown = run.translate(["one two"], attention=True)[0]
    assert shown["attention"].shape == (len(shown["target_tokens"]), len(shown["source_tokens"]))


def test_the_cli_translates_evaluates_and_draws_attention(toy_run: Path, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture, monkeypatch):
    assert main(["translate", str(toy_run), "one two three", "four five", "--beam", "3",
                 "--attention-map", str(tmp_path / "a.png")]) == 0
    out, err = capsys.readouterr()
    assert out.splitlines() == ["THREE TWO ONE", "FIVE FOUR"]
    assert (tmp_path / "a.png").read_bytes().startswith(b"\x89PNG")
    (tmp_path / "in.txt").write_text("six seven\nnine\n", encoding="utf-8")
    assert main(["translate", str(toy_run), "--file", str(tmp_path / "in.txt")]) == 0
    assert capsys.readouterr()[0].splitlines() == ["SEVEN SIX", "NINE"]
    monkeypatch.setattr("sys.stdin", open(tmp_path / "in.txt", encoding="utf-8"))  # noqa: SIM115
    assert main(["translate", str(toy_run)]) == 0
    assert capsys.readouterr()[0].splitlines() == ["SEVEN SIX", "NINE"]
    (tmp_path / "src.txt").write_text("one two three four five\nsix seven eight nine\n", encoding="utf-8")
    (tmp_path / "ref.txt").write_text("FIVE FOUR THREE TWO ONE\nNINE EIGHT SEVEN SIX\n", encoding="utf-8")
    assert main(["eval", str(toy_run), "--src", str(tmp_path / "src.txt"), "--ref", str(tmp_path / "ref.txt"),
                 "--ref", str(tmp_path / "ref.txt"), "--json"]) == 0
    result = json.loads(capsys.readouterr()[0])
    assert result["bleu"] == pytest.approx(100.0) and result["sentences"] == 2


def test_resume_continues_exactly(toy_tsv: Path, tmp_path: Path):
    options = dict(tokenizer="word", batch_size=16, schedule="constant", lr=3e-3,
                   settings={"n_embed": 16, "n_hidden": 16})
    straight = scratchlm.train(str(toy_tsv), "seq2seq-attn", tmp_path / "straight", epochs=2, **options)
    scratchlm.train(str(toy_tsv), "seq2seq-attn", tmp_path / "resumed", epochs=1, **options)
    resumed = scratchlm.train(out=tmp_path / "resumed", resume=True, epochs=2)
    for a, b in zip(straight.model.state_dict().values(), resumed.model.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    assert [r["valid_loss"] for r in straight.metrics] == [r["valid_loss"] for r in resumed.metrics]


# ------------------------------------------------------------------ bad inputs: one line, exit 2


def bad_inputs(folder: Path, toy_run: Path, lm_run: Path) -> list[tuple[str, list[str], str]]:
    def write(name: str, text: str, encoding: str = "utf-8") -> str:
        (folder / name).write_text(text, encoding=encoding)
        return str(folder / name)

    ok = write("ok.tsv", "".join(f"{s}\t{t}\n" for s, t in toy_pairs(50)))
    train = ["train", "--model", "seq2seq-attn", "--tokenizer", "word", "--epochs", "1", "--out", str(folder / "new")]
    return [
        ("one-column", train + ["--strict", "--data", write("one.tsv", "Go.\tVa !\nRun!\n")], "one.tsv:2: has 1 column(s)"),
        ("empty-target", train + ["--strict", "--data", write("e.tsv", "Go.\tVa !\nRun!\t \n")],
         "e.tsv:2: the target side is empty"),
        ("control-char", train + ["--strict", "--data", write("c.tsv", "Go.\tVa !\nR\x01un!\tCours !\n")],
         "c.tsv:2: holds the control character U+0001"),
        ("line-counts", train + ["--src", write("a.en", "a\nb\nc\n"), "--tgt", write("a.fr", "x\ny\n")],
         "has 3 lines and --tgt"),
        ("empty-aligned-line", train + ["--strict", "--src", write("b.en", "a\n\nc\n"), "--tgt", write("b.fr", "x\ny\nz\n")],
         "b.en:2: an empty line"),
        ("src-without-tgt", train + ["--src", ok], "--src and --tgt go together"),
        ("no-pairs", train, "give the pairs as --data FILE.tsv"),
        ("bad-columns", train + ["--data", ok, "--columns", "0"], "--columns 0: give two column numbers"),
        ("missing-file", train + ["--data", str(folder / "nope.tsv")], "nope.tsv: no such file"),
        ("zip-as-pairs", train + ["--data", write("z.tsv", "PK\x03\x04junk", "latin-1")], "a zip archive"),
        ("lm-option", train + ["--data", ok, "--valid-data", ok], "--valid-data: not an option of translation data"),
        ("pair-option-to-lm", ["train", "--model", "rnn", "--src", ok, "--tgt", ok, "--out", str(folder / "n2")],
         "--src, --tgt: not an option of language-model data"),
        ("too-few-pairs", train + ["--data", write("tiny.tsv", "a\tb\n")], "1 usable sentence pair(s)"),
        ("beam-0", ["translate", str(toy_run), "one", "--beam", "0"], "--beam 0 must be between 1"),
        ("n-best-over-beam", ["translate", str(toy_run), "one", "--beam", "2", "--n-best", "3"], "--n-best 3"),
        ("translate-an-lm-run", ["translate", str(lm_run), "one"], "is a language-model run; this needs a translation run"),
        ("generate-a-translation-run", ["generate", str(toy_run)], "is a translation run; this needs a language-model run"),
        ("score-a-translation-run", ["score", str(toy_run), "one"], "is a translation run"),
        ("eval-option-of-another-task", ["eval", str(toy_run), "--analogies", ok],
         "analogies: an option of word-embedding runs' eval"),
        ("eval-lm-with-beam", ["eval", str(lm_run), "--beam", "4"], "beam: an option of translation runs' eval"),
        ("eval-ref-without-src", ["eval", str(toy_run), "--ref", ok], "--ref goes with --src"),
        ("eval-ref-lines", ["eval", str(toy_run), "--src", write("s.txt", "one\ntwo\n"), "--ref", write("r.txt", "x\n")],
         "r.txt has 1 lines and --src"),
        ("translate-nothing", ["translate", str(toy_run), "--file", write("empty.txt", "\n")], "nothing to read"),
        ("resume-with-data", ["train", "--resume", "--out", str(toy_run), "--columns", "1,0"],
         "the run's columns is (0, 1), not (1, 0)"),
        ("best-by-unknown", train + ["--data", ok, "--best-by", "accuracy"],
         "--best-by accuracy: the best checkpoint of this task's runs follows bleu or loss"),
    ]


def test_bad_inputs_are_one_line_and_change_nothing(toy_run: Path, hn_run: Path, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture):
    cases = bad_inputs(tmp_path, toy_run, hn_run)
    assert len(cases) >= 15
    before = hashes(toy_run)
    for name, argv, fragment in cases:
        code = main(argv)
        out, err = capsys.readouterr()
        lines = err.strip().splitlines()
        assert code == 2, (name, err)
        assert len(lines) == 1 and lines[0].startswith("scratchlm: error: "), (name, err)
        assert fragment in lines[0], (name, lines[0])
        assert out == "" and "Traceback" not in err, name
    assert hashes(toy_run) == before
    assert not (tmp_path / "new").exists()


@pytest.mark.parametrize("by", [None, "loss"])
def test_the_best_checkpoint_follows_bleu_or_the_loss(toy_tsv: Path, tmp_path: Path, by: str | None):
    run = scratchlm.train(str(toy_tsv), "seq2seq", tmp_path / "run", tokenizer="word", epochs=4, batch_size=16,
                          lr=5e-3, eval_every=10, best_by=by, settings={"n_embed": 16, "n_hidden": 16})
    history = run.metrics
    best = (max(history, key=lambda row: row["valid_bleu"]) if by is None
            else min(history, key=lambda row: row["valid_loss"]))
    state = torch.load(tmp_path / "run" / "state.pt", weights_only=True)
    assert len(history) >= 4 and state["best_step"] == best["step"]
    assert ("highest validation BLEU" if by is None else "lowest validation loss") in summary(run)


@pytest.mark.skipif(not SHARED.exists(), reason="needs ../shared/data/eng-fra")
def test_the_tatoeba_file_reads_and_splits_by_source():
    pairs = read_pairs(PairsConfig(path=str(SHARED)))
    assert len(pairs.sources) == 76_036 and pairs.sources[:2] == ["Go.", "Run!"]
    held = held_out_sources(pairs.sources, PairsConfig(path=str(SHARED)))
    held_pairs = sum(s in held for s in pairs.sources)
    assert held_pairs >= 0.05 * len(pairs.sources) and held_pairs >= 1000
    with pytest.raises(UserError, match="columns"):
        read_pairs(PairsConfig(path=str(SHARED), columns=(0, 5)))


def test_scheduled_sampling_rises_with_the_run(toy_tsv: Path, tmp_path: Path):
    from scratchlm.models.registry import get_spec

    spec = get_spec("seq2seq-attn")
    model = spec.build(spec.make_config({"src_vocab_size": 20, "tgt_vocab_size": 20}, {"sampling": 0.5}))
    rates = []
    for progress in (0.0, 0.5, 1.0, 2.0):
        model.follow_progress(progress)
        rates.append(model.sampling_now)
    assert rates == [0.0, 0.25, 0.5, 0.5]
    run = scratchlm.train(str(toy_tsv), "seq2seq-attn", tmp_path / "ss", tokenizer="word", epochs=1, batch_size=32,
                          settings={"n_embed": 16, "n_hidden": 16, "sampling": 0.5})
    assert run.model.config.sampling == 0.5 and math.isfinite(run.metrics[-1]["valid_loss"])
