"""What a new user met in the first hour on a fresh clone, second pass: each point of the report, as it now
behaves. The README's own commands are in tests/test_readme.py; these use the run folders of
tests/fixtures/runs (copied first: the verbs may write beside them) and the command line in-process."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import scratchlm
from scratchlm.cli import main

FIXTURES = Path(__file__).parent / "fixtures"
RUNS = FIXTURES / "runs" / scratchlm.__version__
ROOT = Path(__file__).resolve().parents[1]


def fixture_run(name: str, tmp_path: Path) -> Path:
    return shutil.copytree(RUNS / name, tmp_path / name)


def cli(capsys: pytest.CaptureFixture, *args: str, stdin: str | None = None,
        monkeypatch: pytest.MonkeyPatch | None = None) -> tuple[int, str, str]:
    if stdin is not None:
        import io

        monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


# ---------------------------------------------------------------- 2. the first model shows learning


def demo_commands() -> list[str]:
    """The Makefile's demo recipe: its scratchlm lines, continuation lines joined."""
    text = (ROOT / "Makefile").read_text().replace("\\\n", " ")
    recipe = text.split("\ndemo:", 1)[1].split("\n\n", 1)[0]
    return [line.strip().replace("$(BIN)/", "") for line in recipe.splitlines() if "$(BIN)/scratchlm" in line]


def test_the_demo_races_a_baseline_and_uses_a_model_that_learns():
    commands = demo_commands()
    assert [shlex.split(c)[:2] for c in commands] == [["scratchlm", "ladder"], ["scratchlm", "generate"],
                                                      ["scratchlm", "score"]]
    assert "--models ngram,awd-lstm" in commands[0]


@pytest.mark.slow
def test_the_demo_continues_the_count_and_ranks_the_right_sentence_first(tmp_path: Path):
    bin_dir = Path(sys.executable).parent
    outputs = []
    for command in demo_commands():
        done = subprocess.run(["bash", "-c", command], cwd=tmp_path, capture_output=True, text=True, timeout=300,
                              env={"PATH": f"{bin_dir}:/usr/bin:/bin", "SCRATCHLM_CACHE": str(tmp_path / "cache")})
        assert done.returncode == 0, done.stderr
        outputs.append(done.stdout)
    table, generated, scores = outputs
    accuracy = {row.split()[0]: float(row.split()[2]) for row in table.splitlines() if row.startswith(("ngram", "awd"))}
    assert accuracy["awd-lstm"] > 0.9 and accuracy["ngram"] < 0.4
    assert "five thousand six hundred two . five thousand six hundred three . five thousand six hundred four" in generated
    right, wrong = (float(row.split()[1]) for row in scores.splitlines()[1:])
    assert wrong > 5 * right


# ---------------------------------------------------------------- 3. one line in, one line out


def test_a_blank_line_gives_a_blank_translation_and_a_warning(tmp_path: Path, capsys, monkeypatch):
    run = fixture_run("seq2seq-attn", tmp_path)
    code, out, err = cli(capsys, "translate", run, stdin="two hundred one\n\nseventeen\n", monkeypatch=monkeypatch)
    lines = out.split("\n")
    assert code == 0 and len(lines) == 4 and lines[1] == "" and lines[0] and lines[2] and lines[3] == ""
    assert err.strip() == ("scratchlm: warning: 1 empty text(s) (number 2, counted from 1): an empty translation "
                           "stands in for each")
    file = tmp_path / "sentences.txt"
    file.write_text("two hundred one\n\nseventeen\n")
    code, from_file, _ = cli(capsys, "translate", run, "--file", file)
    assert code == 0 and from_file == out
    code, _, err = cli(capsys, "translate", run, "--file", file, "--n-best", "2", "--beam", "2")
    assert code == 0


def test_a_blank_line_gives_a_blank_classification(tmp_path: Path, capsys, monkeypatch):
    run = fixture_run("bag-of-embeddings", tmp_path)
    file = tmp_path / "texts.txt"
    file.write_text("two hundred four\n   \nnine thousand one\n")
    code, out, err = cli(capsys, "classify", run, "--file", file)
    assert code == 0 and out.split("\n")[1] == "" and len(out.split("\n")) == 4
    code, out, _ = cli(capsys, "classify", run, "--file", file, "--json")
    assert [json.loads(line)["label"] is None for line in out.splitlines()] == [False, True, False]
    assert "number 2" in err


def test_score_reads_a_file_and_keeps_its_lines(tmp_path: Path, capsys):
    run = fixture_run("rnn", tmp_path)
    file = tmp_path / "sentences.txt"
    file.write_text("one . two . three\n\nthree . two . one\n")
    code, out, err = cli(capsys, "score", run, "--file", file, "--json")
    results = json.loads(out)
    assert code == 0 and [r["tokens"] for r in results] == [5, 0, 5] and results[1]["perplexity"] is None
    assert "number 2" in err


def test_score_shows_a_texts_line_breaks_inside_its_row(tmp_path: Path, capsys):
    code, out, _ = cli(capsys, "score", fixture_run("gpt-char", tmp_path), "First Citizen:\nWe are poor.")
    assert code == 0 and len(out.strip().splitlines()) == 2 and out.rstrip().endswith("First Citizen:\\nWe are poor.")


# ---------------------------------------------------------------- 4. the ladder after Ctrl-C


def test_the_ladder_takes_resume_and_says_what_continues_it(tmp_path: Path, capsys, monkeypatch):
    from scratchlm import race
    from scratchlm.errors import Interrupted

    def stopped(*args, **kwargs):
        raise Interrupted(12)

    monkeypatch.setattr(race, "train", stopped)
    code, _, err = cli(capsys, "ladder", "--models", "rnn", "--epochs", "1", "--out", tmp_path / "ladder", "--resume")
    assert code == 130
    assert err.strip() == (f"scratchlm: stopped at step 12 and saved; the ladder goes on from there, rung rnn of "
                           f"{tmp_path / 'ladder'}, when the same command runs again (with or without --resume)")


# ---------------------------------------------------------------- 5. the files a folder leaves out


def test_the_files_left_out_of_a_folder_are_named(tmp_path: Path, capsys):
    folder = tmp_path / "scripts"
    folder.mkdir()
    (folder / "episode1.txt").write_text("a line of a script, long enough to learn from.\n" * 50)
    (folder / "season.zip").write_bytes(b"PK\x03\x04zip")
    (folder / "poster.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    (folder / "episode2.txt").write_text("")
    (folder / ".hidden.txt").write_text("not read, not named")
    code, _, err = cli(capsys, "train", "--data", folder, "--epochs", "1", "--batch-size", "4", "--quiet",
                       "--out", tmp_path / "run")
    assert code == 0
    assert (f"scratchlm: warning: {folder}: 3 file(s) left out: episode2.txt (empty), poster.png (not a text file's "
            "name), season.zip (not a text file's name); 1 read") in err.splitlines()


# ---------------------------------------------------------------- 7. a mistyped option


@pytest.mark.parametrize(("args", "line"), [
    (["train", "--epcohs", "2"], "unrecognized arguments: --epcohs 2 (--epcohs: did you mean --epochs?) "
                                 "(see `scratchlm train --help`)"),
    (["generate", "RUN", "--tokns", "5"], "unrecognized arguments: --tokns 5 (--tokns: did you mean --tokens?) "
                                          "(see `scratchlm generate --help`)"),
    (["train", "--time", "-1m"], "--time must be positive, got -60.0 s"),
    (["train", "--lr", "-0.1", "--epochs", "1"], "--lr -0.1 is out of range; try 1e-3"),
    (["train", "--batch-size", "0", "--epochs", "1"], "--batch-size 0 must be between 1 and 1,000,000"),
])
def test_a_mistyped_option_is_named_with_its_verb(args: list[str], line: str, tmp_path: Path, capsys):
    args = [str(tmp_path / "run") if a == "RUN" else a for a in args]
    extra = ["--out", str(tmp_path / "new")] if args[0] == "train" else []
    code, out, err = cli(capsys, *args, *extra)
    assert code == 2 and out == "" and err == f"scratchlm: error: {line}\n"


# ---------------------------------------------------------------- 8. a log without a progress bar


def test_a_log_holds_the_table_without_the_bar(tmp_path: Path):
    done = subprocess.run([sys.executable, "-m", "scratchlm", "train", "--data", "human-numbers", "--epochs", "2",
                           "--out", str(tmp_path / "run")], capture_output=True, text=True, timeout=300,
                          env={"PATH": "/usr/bin:/bin", "SCRATCHLM_CACHE": str(tmp_path / "cache"),
                               "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr
    assert "\r" not in done.stderr and "it/s" not in done.stderr and "step/s" not in done.stderr
    rows = [line for line in done.stderr.splitlines() if re.match(r"\d+\.\d\d\s+\d+\s", line)]
    assert len(rows) == 2 and all(len(row.split()) == 8 for row in rows)


# ---------------------------------------------------------------- 9. small things


def test_a_cropped_prompt_counts_its_own_tokens(tmp_path: Path, capsys):
    run = fixture_run("gpt-char", tmp_path)
    window = json.loads((run / "config.json").read_text())["model"]["config"]["block_size"]
    code, _, err = cli(capsys, "generate", run, "--prompt", "a" * 300, "--tokens", "1")
    assert code == 0 and f"the prompt is 300 tokens, longer than the model's context of {window}" in err


def test_the_best_checkpoints_reason_is_given_only_when_it_is_not_the_last(tmp_path: Path, capsys):
    sentence = "The lowest loss need not be the best accuracy"
    code, out, _ = cli(capsys, "train", "--model", "awd-lstm", "--epochs", "1", "--quiet", "--out", tmp_path / "one")
    assert code == 0 and sentence not in out  # one evaluation: the best is the last
    code, out, _ = cli(capsys, "train", "--model", "rnn", "--epochs", "3", "--eval-every", "10", "--lr", "0.05",
                       "--quiet", "--out", tmp_path / "three")
    history = scratchlm.load(tmp_path / "three").metrics
    best = min(history, key=lambda row: row["valid_loss"])
    assert code == 0 and (sentence in out) == (best["step"] != history[-1]["step"])


def test_an_attention_map_has_a_title(tmp_path: Path, capsys, monkeypatch):
    from scratchlm import plots

    titles = []
    monkeypatch.setattr(plots, "save", lambda fig, path: titles.append(fig.axes[0].get_title()))
    code, _, _ = cli(capsys, "translate", fixture_run("seq2seq-attn", tmp_path), "two hundred one",
                     "--attention-map", tmp_path / "attention.png")
    assert code == 0 and titles == ["seq2seq-attn: attention over the source"]


def test_map_labels_never_cover_each_other(tmp_path: Path):
    import numpy as np
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.text import Annotation

    from scratchlm import plots

    figures = []
    real_save = plots.save
    plots.save = lambda fig, path: (figures.append(fig), real_save(fig, path))[1]
    try:
        points = np.random.default_rng(0).normal(size=(120, 2)) * 0.2  # packed tight, as t-SNE packs neighbours
        labelled = plots.plot_words([f"word{i}" for i in range(120)], points, tmp_path / "map.png")
    finally:
        plots.save = real_save
    renderer = FigureCanvasAgg(figures[0]).get_renderer()
    boxes = [a.get_window_extent(renderer) for a in figures[0].axes[0].get_children() if isinstance(a, Annotation)]
    assert len(boxes) == labelled and 10 < labelled < 120
    assert not any(a.overlaps(b) for i, a in enumerate(boxes) for b in boxes[i + 1:])


def test_readme_examples_write_under_runs():
    from test_readme import commands

    for argv in commands():
        for option in ("--out", "--plot", "--attention-map"):
            if option in argv:
                value = argv[argv.index(option) + 1]
                assert value.startswith(("runs/", "/")), shlex.join(argv)
