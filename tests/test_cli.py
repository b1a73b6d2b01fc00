"""The CLI end to end, in subprocesses as a user runs it, with SCRATCHLM_CACHE in a tmp folder.

The error cases are table-driven and all held to the same contract: exit code 2, exactly one line on
stderr starting with "scratchlm: error:", no traceback, nothing on stdout, and no input file or file of
an existing run directory changed. Inputs that look hostile but are valid (latin-1, UTF-16, one 50 MB
line) must train instead.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from scratchlm.checkpoint import BEST, CONFIG, LAST, METRICS, STATE, TOKENIZER, RunDir
from scratchlm.cli import main
from scratchlm.models.registry import REGISTRY, parse_settings
from scratchlm.run import Run


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str


def cli_env() -> dict[str, str]:
    """This process' environment (so the test's SCRATCHLM_CACHE), one torch thread (see conftest.py), and
    no GPU: the commands' results are compared with the Python API's on the CPU, which a GPU would not
    match to the last digit (tests/test_speed.py covers the GPU)."""
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONIOENCODING": "utf-8",
            "MPLBACKEND": "Agg", "CUDA_VISIBLE_DEVICES": ""}


def run_cli(*args: object, cwd: Path, timeout: float = 300) -> Result:
    """`python -m scratchlm ARGS` in a subprocess."""
    done = subprocess.run([sys.executable, "-m", "scratchlm", *map(str, args)], cwd=cwd, env=cli_env(),
                          capture_output=True, text=True, encoding="utf-8", timeout=timeout, stdin=subprocess.DEVNULL)
    return Result(done.returncode, done.stdout, done.stderr)


def ok(result: Result) -> Result:
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    return result


def tree_hashes(folder: Path) -> dict[str, str]:
    """sha256 of every file under `folder`, by relative path."""
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


PROMPT = "one thousand one . one thousand two ."


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Result]:
    """`scratchlm train` once for the module: rnn on human-numbers, one epoch."""
    folder = tmp_path_factory.mktemp("cli")
    result = run_cli("train", "--data", "human-numbers", "--model", "rnn", "--epochs", "1", "--out", folder / "run",
                     "--quiet", cwd=folder)
    return folder / "run", result


@pytest.fixture
def run_dir(trained: tuple[Path, Result]) -> Path:
    return trained[0]


def test_train(trained: tuple[Path, Result]):
    run_dir, result = trained
    ok(result)
    summary = result.stdout.splitlines()[-3:]
    assert summary[0].startswith("rnn: final accuracy ") and "validation loss" in summary[0]
    assert "model.safetensors, the weights with the lowest validation loss: step 49" in summary[1]
    assert summary[2] == f"Run saved in {run_dir}"
    assert result.stdout.splitlines()[0].split() == ["epoch", "step", "train_loss", "valid_loss", "accuracy",
                                                     "perplexity", "bpc", "time"]
    for name in (CONFIG, TOKENIZER, BEST, LAST, STATE, METRICS, "loss.png"):
        assert (run_dir / name).is_file(), name
    assert not list(run_dir.glob("*.tmp")) and not list(run_dir.glob(".*.tmp"))
    config = json.loads((run_dir / CONFIG).read_text())
    assert config["model"]["name"] == "rnn" and config["train"]["epochs"] == 1
    assert config["data"]["config"]["tokenizer"]["kind"] == "word"
    assert len(RunDir(run_dir).read_metrics()) == 1


def test_generate(run_dir: Path, tmp_path: Path):
    run = Run.load(run_dir, device="cpu")
    greedy = ok(run_cli("generate", run_dir, "--prompt", PROMPT, "--tokens", "12", cwd=tmp_path)).stdout
    assert greedy == PROMPT + run.generate(PROMPT, tokens=12) + "\n"  # the same text as the Python API
    assert len(greedy.split()) == len(PROMPT.split()) + 12
    sampled = ok(run_cli("generate", run_dir, "--tokens", "12", "--temperature", "1", "--top-k", "5", "--seed", "3",
                         cwd=tmp_path)).stdout
    assert sampled == run.generate("", tokens=12, temperature=1.0, top_k=5, seed=3) + "\n"  # the seed fixes it


def test_score(run_dir: Path, tmp_path: Path):
    real = "five thousand six hundred . five thousand six hundred one"
    scrambled = "hundred six . five thousand one five six hundred thousand"  # the same words, out of order
    results = json.loads(ok(run_cli("score", run_dir, real, scrambled, "--json", cwd=tmp_path)).stdout)
    assert [r["text"] for r in results] == [real, scrambled]
    assert [r["tokens"] for r in results] == [10, 10]
    assert results[0]["logprob"] > results[1]["logprob"]  # the model learnt how numbers are written
    expected = Run.load(run_dir, device="cpu").score([real, scrambled])
    assert [r["logprob"] for r in results] == pytest.approx([r["logprob"] for r in expected], rel=1e-6)


def test_eval(run_dir: Path, tmp_path: Path):
    table = ok(run_cli("eval", run_dir, cwd=tmp_path)).stdout.splitlines()
    assert table[0].split() == ["data", "loss", "accuracy", "perplexity", "bpc", "tokens"]
    best = min(RunDir(run_dir).read_metrics(), key=lambda row: row["valid_loss"])
    cells = table[1].split()
    assert " ".join(cells[:2]) == "validation split"
    assert float(cells[2]) == pytest.approx(best["valid_loss"], abs=1e-4)  # the same split, the same weights

    data = tmp_path / "numbers.txt"
    data.write_text("one . two . three . four . five . six . seven . eight . nine . ten . eleven . twelve\n" * 4)
    result = json.loads(ok(run_cli("eval", run_dir, "--data", data, "--json", cwd=tmp_path)).stdout)
    expected = Run.load(run_dir, device="cpu").eval(str(data))
    assert result.keys() == expected.keys()
    assert result["data"] == str(data) and result["run"] == str(run_dir)
    assert [result[k] for k in ("loss", "accuracy", "perplexity")] == pytest.approx(
        [expected[k] for k in ("loss", "accuracy", "perplexity")], rel=1e-6)
    assert result["tokens"] > 0 and 0 <= result["accuracy"] <= 1


def test_train_then_resume(run_dir: Path, tmp_path: Path):
    run = shutil.copytree(run_dir, tmp_path / "run")
    result = ok(run_cli("train", "--resume", "--out", run, "--epochs", "2", "--quiet", cwd=tmp_path))
    metrics = RunDir(run).read_metrics()
    assert [row["epoch"] for row in metrics] == [1, 2]
    assert metrics[0] == RunDir(run_dir).read_metrics()[0]  # the first epoch is kept as it was
    assert len([line for line in result.stdout.splitlines() if line[:1].isdigit()]) == 2
    assert json.loads((run / CONFIG).read_text())["train"]["epochs"] == 2


def test_lr_find(tmp_path: Path):
    result = ok(run_cli("lr-find", "--model", "rnn", "--steps", "30", "--batch-size", "16", "--plot", "sweep.png",
                        cwd=tmp_path))
    assert "suggested lr" in result.stdout and "sweep.png" in result.stdout
    assert (tmp_path / "sweep.png").read_bytes().startswith(b"\x89PNG\r\n\x1a\n")


def test_models(tmp_path: Path):
    lines = ok(run_cli("models", cwd=tmp_path)).stdout.splitlines()
    assert lines[0].split()[:2] == ["name", "task"]
    assert [line.split()[0] for line in lines[1:-2]] == list(REGISTRY)
    assert lines[-1].startswith("parameters: language-model models for human-numbers' 35 tokens (words and specials); ")
    assert lines[1 + list(REGISTRY).index("rnn")].split()[2] == "8,675"  # 35 x 64 in, 64 x 64, 64 x 35 out, biases


def test_models_name_lists_settings_that_set_accepts(tmp_path: Path):
    """`scratchlm models lstm` shows each setting with the entry's default and meaning; each name is --set-able."""
    out = ok(run_cli("models", "lstm", cwd=tmp_path)).stdout
    rows = {line.split()[0]: line.split()[1] for line in out.splitlines()[3:] if line.strip() and not line.startswith("training")}
    assert rows["cell"] == "'lstm'" and rows["n_hidden"] == "64" and "tie_weights" in rows
    assert "training defaults: --lr 0.01" in out
    assert set(rows) == set(parse_settings(REGISTRY["lstm"], [f"{name}={rows[name].strip(chr(39))}" for name in rows]))


@pytest.mark.slow
def test_ctrl_c_saves_and_resume_continues(tmp_path: Path):
    """A real SIGINT to a training process: exit 130 with a checkpoint; --resume picks it up."""
    out = tmp_path / "run"
    process = subprocess.Popen([sys.executable, "-m", "scratchlm", "train", "--epochs", "40", "--eval-every", "10",
                                "--out", str(out), "--quiet"], cwd=tmp_path, env=cli_env(),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not (out / METRICS).exists() and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        process.send_signal(signal.SIGINT)
        stdout, stderr = process.communicate(timeout=120)
    finally:
        process.kill()
    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr
    step = RunDir(out).load_state()["step"]
    assert f"scratchlm: stopped at step {step} and saved; continue with --resume" in stderr
    assert stdout == ""

    ok(run_cli("train", "--resume", "--out", out, "--epochs", "2", "--quiet", cwd=tmp_path))
    state = RunDir(out).load_state()
    assert state["epoch"] == 2 and state["step"] > step and state["finished"]


# ---------------------------------------------------------------- bad inputs

# (id, arguments, a fragment of the error line). In the arguments, {word_run} and {char_run} are copies
# of trained runs (hashed before and after), {fresh} a folder that does not exist yet, {folder} holds
# empty.txt, binary.dat, text.txt and pictures/ (a folder with no text).
BAD_INPUTS = [
    ("missing-file", ["train", "--data", "{folder}/missing.txt", "--out", "{fresh}"], "no such file"),
    ("empty-file", ["train", "--data", "{folder}/empty.txt", "--out", "{fresh}"], "the file is empty"),
    ("binary-file", ["train", "--data", "{folder}/binary.dat", "--out", "{fresh}"], "binary file"),
    ("unknown-model", ["train", "--model", "gpt-17", "--out", "{fresh}"], "unknown model 'gpt-17'"),
    ("unknown-tokenizer", ["train", "--tokenizer", "morse", "--out", "{fresh}"], "unknown tokenizer 'morse'"),
    ("generate-missing-run", ["generate", "{folder}/no-run"], "no such run directory"),
    ("generate-not-a-run", ["generate", "{folder}/pictures"], "not a scratchlm run directory"),
    ("prompt-outside-vocabulary", ["generate", "{char_run}", "--prompt", "hello ☃"], "outside the vocabulary"),
    ("negative-tokens", ["generate", "{word_run}", "--prompt", "one .", "--tokens", "-1"], "--tokens -1"),
    ("epochs-zero", ["train", "--epochs", "0", "--out", "{fresh}"], "--epochs 0"),
    ("resume-other-model", ["train", "--resume", "--out", "{word_run}", "--model", "mlp3"], "not mlp3"),
    ("unknown-setting", ["train", "--set", "unknown_key=1", "--out", "{fresh}"], "unknown_key=1"),
    ("out-holds-a-run", ["train", "--out", "{word_run}", "--epochs", "1"], "already holds a run"),
]
# The same contract, checked through `main()` in this process: a Python start-up each would cost more
# than the check itself.
MORE_BAD_INPUTS = [
    ("folder-without-text", ["train", "--data", "{folder}/pictures", "--out", "{fresh}"], "no non-empty text files"),
    ("unknown-encoding", ["train", "--data", "{folder}/text.txt", "--encoding", "klingon", "--out", "{fresh}"],
     "unknown encoding 'klingon'"),
    ("epochs-not-a-number", ["train", "--epochs", "many", "--out", "{fresh}"], "invalid int value: 'many'"),
    ("lr-out-of-range", ["train", "--lr", "50", "--out", "{fresh}"], "--lr 50.0 is out of range"),
    ("bptt-for-a-window-model", ["train", "--model", "mlp3", "--bptt", "5", "--out", "{fresh}"],
     "reads exactly 3 tokens"),
    ("unknown-device", ["train", "--device", "tpu", "--epochs", "1", "--out", "{fresh}"], "unknown device 'tpu'"),
    ("resume-epochs-zero", ["train", "--resume", "--out", "{word_run}", "--epochs", "0"], "--epochs 0"),
    ("resume-other-batch-size", ["train", "--resume", "--out", "{word_run}", "--batch-size", "8"],
     "batch_size cannot change"),
    ("resume-other-settings", ["train", "--resume", "--out", "{word_run}", "--set", "n_hidden=8"],
     "model settings differ"),
    ("resume-other-data", ["train", "--resume", "--out", "{word_run}", "--data", "{folder}/text.txt"],
     "the run's data path"),
    ("resume-missing-run", ["train", "--resume", "--out", "{fresh}"], "no such run directory"),
    ("out-is-a-file", ["train", "--epochs", "1", "--out", "{word_run}/config.json"], "is a file, not a folder"),
    ("out-under-a-file", ["train", "--epochs", "1", "--out", "{word_run}/config.json/run"], "is a file, not a folder"),
    ("top-p-zero", ["generate", "{word_run}", "--temperature", "1", "--top-p", "0"], "--top-p 0"),
    ("score-empty-sentence", ["score", "{word_run}", ""], "nothing to read: give sentences"),
    ("score-outside-vocabulary", ["score", "{char_run}", "hello ☃"], "outside the vocabulary"),
    ("eval-missing-data", ["eval", "{word_run}", "--data", "{folder}/missing.txt"], "no such file"),
    ("eval-empty-data", ["eval", "{char_run}", "--data", "{folder}/empty.txt"], "the file is empty"),
    ("lr-find-unknown-model", ["lr-find", "--model", "gpt-17"], "unknown model 'gpt-17'"),
    ("unknown-verb", ["fly"], "invalid choice: 'fly'"),
    # sizes: negative, zero, absurd
    ("batch-size-zero", ["train", "--batch-size", "0", "--out", "{fresh}"], "--batch-size 0"),
    ("bptt-absurd", ["train", "--bptt", "100000000", "--out", "{fresh}"], "between 1 and 1,000,000"),
    ("vocab-size-too-small", ["train", "--tokenizer", "bpe", "--vocab-size", "3", "--out", "{fresh}"],
     "--vocab-size 3 is out of range"),
    ("min-freq-negative", ["train", "--min-freq", "-1", "--out", "{fresh}"], "--min-freq -1"),
    ("time-not-a-duration", ["train", "--time", "soon", "--out", "{fresh}"], "not a duration"),
    ("tokens-absurd", ["generate", "{word_run}", "--tokens", "100000000000"], "between 0 and 10,000,000"),
    ("temperature-negative", ["generate", "{word_run}", "--temperature", "-1"], "--temperature -1.0"),
    ("top-k-zero", ["generate", "{word_run}", "--temperature", "1", "--top-k", "0"], "--top-k 0"),
    ("lr-find-too-few-steps", ["lr-find", "--steps", "2"], "at least 5 steps"),
    # unknown values and options
    ("unknown-option", ["train", "--frobnicate", "--out", "{fresh}"], "unrecognized arguments: --frobnicate"),
    ("unknown-schedule", ["train", "--schedule", "zigzag", "--out", "{fresh}"], "unknown schedule 'zigzag'"),
    ("unknown-on-nan", ["train", "--on-nan", "ignore", "--out", "{fresh}"], "--on-nan 'ignore'"),
    ("encoding-for-the-built-in-corpus", ["train", "--encoding", "latin-1", "--out", "{fresh}"], "is built in"),
    ("models-unknown-name", ["models", "gpt-17"], "unknown model 'gpt-17'"),
    ("ladder-unknown-rung", ["ladder", "--models", "rnn,gpt-17", "--out", "{fresh}"], "unknown model 'gpt-17'"),
    ("ladder-no-rung", ["ladder", "--models", ",", "--out", "{fresh}"], "--models names no model"),
    # files that are not text, or not there
    ("utf16-without-bom", ["train", "--data", "{folder}/utf16-nobom.txt", "--out", "{fresh}"], "pass --encoding"),
    ("eval-binary-data", ["eval", "{word_run}", "--data", "{folder}/binary.dat"], "binary file"),
    ("eval-folder-without-text", ["eval", "{char_run}", "--data", "{folder}/pictures"], "no non-empty text files"),
    ("lr-find-empty-data", ["lr-find", "--data", "{folder}/empty.txt"], "the file is empty"),
    ("ladder-binary-data", ["ladder", "--models", "rnn", "--data", "{folder}/binary.dat", "--out", "{fresh}"],
     "binary file"),
    # run directories that are damaged, of another task, or do not match
    ("score-missing-run", ["score", "{folder}/no-run", "one"], "no such run directory"),
    ("score-no-text", ["score", "{word_run}"], "nothing to read: give sentences, --file FILE, or lines on standard"),
    ("eval-not-a-run", ["eval", "{folder}/pictures"], "not a scratchlm run directory"),
    ("truncated-weights", ["generate", "{damaged_run}", "--prompt", "one ."], "damaged or not a safetensors file"),
    ("damaged-config", ["score", "{damaged_config_run}", "one ."], "damaged (not JSON)"),
    ("damaged-tokenizer", ["generate", "{damaged_tokenizer_run}"], "tokenizer.json: damaged (not JSON)"),
    ("run-of-another-task", ["generate", "{other_task_run}"], "is a classifier run, a task this version"),
    ("resume-run-of-another-task", ["train", "--resume", "--out", "{other_task_run}"], "is a classifier run"),
    ("resume-other-tokenizer", ["train", "--resume", "--out", "{word_run}", "--tokenizer", "char"],
     "the run's tokenizer kind is 'word', not 'char'"),
    ("resume-other-vocab-size", ["train", "--resume", "--out", "{word_run}", "--vocab-size", "100"],
     "the run's tokenizer vocab_size is None, not 100"),
    ("resume-other-seed", ["train", "--resume", "--out", "{word_run}", "--seed", "7"], "seed cannot change"),
]


def damage_weights(run: Path) -> None:
    for name in (BEST, LAST):
        (run / name).write_bytes((run / name).read_bytes()[:1000])  # cut short, as a full disk leaves it


def damage_config(run: Path) -> None:
    (run / CONFIG).write_text((run / CONFIG).read_text()[:100])


def damage_tokenizer(run: Path) -> None:
    (run / TOKENIZER).write_text((run / TOKENIZER).read_text()[:50])


def make_other_task(run: Path) -> None:
    config = json.loads((run / CONFIG).read_text())
    (run / CONFIG).write_text(json.dumps({**config, "task": "classifier"}))


# Placeholders for copies of the word run changed in one way each, made only for the cases naming them.
SPECIAL_RUNS = {"damaged_run": damage_weights, "damaged_config_run": damage_config,
                "damaged_tokenizer_run": damage_tokenizer, "other_task_run": make_other_task}


def run_main(*args: str, cwd: Path) -> Result:
    """`scratchlm ARGS` through `main()` in this process, with its output captured."""
    stdout, stderr, stdin = io.StringIO(), io.StringIO(), sys.stdin
    sys.stdin = io.StringIO("")  # as a subprocess given nothing on its standard input
    try:
        with contextlib.chdir(cwd), contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            code = main(list(args))
    finally:
        sys.stdin = stdin
    return Result(code, stdout.getvalue(), stderr.getvalue())


@dataclass
class Outcome:
    result: Result
    before: dict[str, dict[str, str]]
    after: dict[str, dict[str, str]]
    fresh: Path


@pytest.fixture(scope="module")
def bad_inputs(tmp_path_factory: pytest.TempPathFactory, hn_run: Path, char_run: Path) -> dict[str, Outcome]:
    """Every bad-input case, each on its own copies of the runs; the subprocesses a few at a time."""
    folder = tmp_path_factory.mktemp("bad-inputs")
    (folder / "empty.txt").touch()
    (folder / "binary.dat").write_bytes(b"\x7fELF\x02\x01\x01\x00\x00\x00" + bytes(range(256)) * 4)
    (folder / "text.txt").write_text("some text\n" * 10)
    (folder / "pictures").mkdir()
    (folder / "pictures" / "cat.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    (folder / "utf16-nobom.txt").write_bytes("some text\n".encode("utf-16-le") * 10)
    inputs = tree_hashes(folder)

    def one(case: tuple[str, list[str], str], runner) -> tuple[str, Outcome]:
        name, template, _ = case
        here = folder / name
        runs = {"word_run": shutil.copytree(hn_run, here / "word-run"),
                "char_run": shutil.copytree(char_run, here / "char-run")}
        for key, change in SPECIAL_RUNS.items():
            if any(f"{{{key}}}" in arg for arg in template):
                runs[key] = shutil.copytree(hn_run, here / key)
                change(runs[key])
        args = [arg.format(folder=folder, fresh=here / "fresh", **runs) for arg in template]
        before = {key: tree_hashes(path) for key, path in runs.items()}
        result = runner(*args, cwd=here)
        after = {key: tree_hashes(path) for key, path in runs.items()}
        return name, Outcome(result, before, after, here / "fresh")

    with ThreadPoolExecutor(max_workers=4) as pool:
        outcomes = pool.map(lambda case: one(case, run_cli), BAD_INPUTS)
        in_process = [one(case, run_main) for case in MORE_BAD_INPUTS]  # meanwhile, here
        outcomes = dict([*outcomes, *in_process])
    after = {name: digest for name, digest in tree_hashes(folder).items() if name in inputs}
    assert after == inputs, "a bad input changed an input file"
    return outcomes


@pytest.mark.parametrize("name, fragment", [(name, fragment) for name, _, fragment in BAD_INPUTS + MORE_BAD_INPUTS],
                         ids=[name for name, _, _ in BAD_INPUTS + MORE_BAD_INPUTS])
def test_bad_input(bad_inputs: dict[str, Outcome], name: str, fragment: str):
    outcome = bad_inputs[name]
    result = outcome.result
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode == 2, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("scratchlm: error: ")
    assert fragment in lines[0]
    assert result.stdout == ""
    assert outcome.after == outcome.before  # no file of an existing run changed, none added
    assert not (outcome.fresh / CONFIG).exists()


# ---------------------------------------------------------------- inputs that look hostile but are valid

# As in data/test_read.py: long and natural enough for detection to tell latin-1 from its cousins.
WESTERN = ("Il était une fois, dans un château très éloigné, une princesse qui s'appelait Hélène. "
           "Elle aimait beaucoup les fêtes, les gâteaux et les chansons de Noël. "
           "Un jour, un garçon arriva à la cour du roi.\n") * 3


def write_latin1(path: Path) -> str:
    path.write_bytes(WESTERN.encode("latin-1"))
    return WESTERN


def write_utf16(path: Path) -> str:
    path.write_bytes(WESTERN.encode("utf-16"))  # with its byte-order mark
    return WESTERN


def write_one_50mb_line(path: Path) -> str:
    """50 MB without a line break: read in pieces, never held whole."""
    words = b"one two three four five six seven eight nine ten "
    with open(path, "wb") as f:
        for _ in range(50 * 2**20 // (len(words) * 1000) + 1):
            f.write(words * 1000)
    return ""


@pytest.mark.parametrize("write, options", [
    (write_latin1, ["--tokenizer", "char", "--bptt", "8", "--batch-size", "4"]),
    (write_utf16, ["--tokenizer", "char", "--bptt", "8", "--batch-size", "4"]),
    (write_one_50mb_line, ["--tokenizer", "word", "--valid-fraction", "0.0001", "--time", "1s"]),
], ids=["latin-1", "utf-16", "50mb-one-line"])
def test_other_encodings_and_one_huge_line_train(tmp_path: Path, write, options: list[str]):
    """Decoded by detection (no --encoding given), and trained on; the text the model saw is the text."""
    data = tmp_path / "data.txt"
    text = write(data)
    before = hashlib.sha256(data.read_bytes()).hexdigest()
    result = run_main("train", "--data", str(data), "--epochs", "1", "--model", "rnn", "--out", str(tmp_path / "run"),
                      "--quiet", *options, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert hashlib.sha256(data.read_bytes()).hexdigest() == before
    run = Run.load(tmp_path / "run")
    if text:
        assert run.config["data"]["encodings"] != ["utf-8"]
        assert not run.tokenizer.unknown_pieces(text)  # every character was read as itself: "é", not "Ã©"
        assert "é" in run.tokenizer.itos
    else:
        assert set(run.tokenizer.itos[5:]) == {"one", "two", "three", "four", "five", "six", "seven", "eight", "nine",
                                               "ten"}
        assert run.config["data"]["train_tokens"] > 10_000_000


def test_a_damaged_best_checkpoint_is_one_warning_line(hn_run: Path, tmp_path: Path):
    """generate still works from the latest weights, and says so in one line on stderr."""
    run = shutil.copytree(hn_run, tmp_path / "run")
    data = bytearray((run / BEST).read_bytes())
    data[-4] ^= 0xFF  # one byte of the last weight flipped: the header is whole, the checksum is not
    (run / BEST).write_bytes(bytes(data))
    result = run_main("generate", str(run), "--prompt", "one .", "--tokens", "3", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines() == [f"scratchlm: warning: {run / BEST} is damaged; using the latest weights, "
                                          f"{LAST}, instead"]
    assert len(result.stdout.split()) == 2 + 3


def test_a_classifier_trains_classifies_and_evaluates_as_a_user_types_it(tmp_path: Path):
    """The classification verbs in subprocesses: a folder per label in, a label and its probability out."""
    for label, words in (("pos", ["good", "great", "fine"]), ("neg", ["bad", "awful", "poor"])):
        (tmp_path / "reviews" / label).mkdir(parents=True)
        for i in range(30):
            (tmp_path / "reviews" / label / f"{i}.txt").write_text(f"the film was {words[i % 3]}\n", encoding="utf-8")
    ok(run_cli("train", "--model", "bag-of-embeddings", "--data", tmp_path / "reviews", "--epochs", "15", "--lr", "0.03",
               "--batch-size", "8", "--set", "n_embed=16", "--out", tmp_path / "run", "--quiet", cwd=tmp_path))
    lines = ok(run_cli("classify", tmp_path / "run", "the film was great", "the film was awful", cwd=tmp_path)).stdout
    assert [line.split("\t")[0] for line in lines.splitlines()] == ["pos", "neg"]
    result = json.loads(ok(run_cli("eval", tmp_path / "run", "--json", cwd=tmp_path)).stdout)
    assert result["accuracy"] == 1.0 and result["confusion"]["labels"] == ["neg", "pos"]
    refused = run_cli("classify", tmp_path / "run", "good", "--file", tmp_path / "none.txt", cwd=tmp_path)
    assert refused.returncode == 2 and refused.stderr == "scratchlm: error: give texts or --file, not both\n"
