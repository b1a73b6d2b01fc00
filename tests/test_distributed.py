"""Several processes (torchrun, DistributedDataParallel over gloo): the same steps as one process.

N processes each read B/N rows of every batch and average their gradients, so with the same global
batch they must take the same steps as one process, up to the order of floating-point sums.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import scratchlm
from scratchlm.checkpoint import LAST, RunDir
from scratchlm.distributed import World
from scratchlm.errors import Interrupted, UserError

TIMEOUT = 300  # seconds; a deadlock between the processes fails the test instead of hanging the suite


def torchrun(nproc: int, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    """`torchrun --nproc_per_node N -m scratchlm ARGS` on this interpreter, one thread per process."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc), "--standalone",
               "-m", "scratchlm", *args]
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=TIMEOUT)


def max_difference(a: Path, b: Path) -> float:
    wa, wb = load_file(str(a / LAST)), load_file(str(b / LAST))
    assert wa.keys() == wb.keys()  # plain keys: no `module.` from DistributedDataParallel
    return max((wa[k] - wb[k]).abs().max().item() for k in wa)


def assert_same_metrics(a: Path, b: Path) -> None:
    rows_a, rows_b = RunDir(a).read_metrics(), RunDir(b).read_metrics()
    assert [r["step"] for r in rows_a] == [r["step"] for r in rows_b]
    for ra, rb in zip(rows_a, rows_b, strict=True):
        for key in ("train_loss", "valid_loss", "valid_accuracy"):
            assert ra[key] == pytest.approx(rb[key], rel=1e-5), (ra["step"], key)
        assert ra["tokens"] == rb["tokens"]


# 24 steps, evaluated at 10, 20 and 24; on the CPU with gloo on any machine (NCCL needs a GPU per process)
OPTIONS = {"model": "rnn", "epochs": 1, "batch_size": 128, "eval_every": 10, "device": "cpu"}


def cli_options(options: dict) -> list[str]:
    return [part for key, value in options.items() for part in (f"--{key.replace('_', '-')}", str(value))]


def test_two_processes_take_the_steps_of_one(tmp_path: Path):
    """A stateful rnn: each process carries the hidden state of its own 64 rows of the 128."""
    result = torchrun(2, "train", "--data", "human-numbers", *cli_options(OPTIONS), "--out", "two", "--quiet",
                      cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("Run saved in") == 1  # rank 0 reports, the other process is silent
    scratchlm.train("human-numbers", out=tmp_path / "one", **OPTIONS)

    assert_same_metrics(tmp_path / "one", tmp_path / "two")
    assert max_difference(tmp_path / "one", tmp_path / "two") < 1e-5
    run = scratchlm.Run.load(tmp_path / "two")  # a plain single-process model
    assert run.generate("one . two .", tokens=6) == scratchlm.Run.load(tmp_path / "one").generate("one . two .", tokens=6)
    assert run.score(["three . four"])[0]["tokens"] == 3


@pytest.mark.slow
def test_resume_with_another_number_of_processes(tmp_path: Path):
    """One process stops at step 10 (a carried state of 128 rows is saved); two processes go on, each
    with its 64 rows of it, and end where one process does; then one process takes over again."""
    scratchlm.train("human-numbers", out=tmp_path / "straight", **OPTIONS)

    def interrupt(row: dict) -> None:
        os.kill(os.getpid(), signal.SIGINT)

    with pytest.raises(Interrupted, match="step 10"):
        scratchlm.train("human-numbers", out=tmp_path / "stopped", on_evaluation=interrupt, **OPTIONS)
    assert RunDir(tmp_path / "stopped").load_state()["carry"].shape == (128, 64)  # (B, H): every row

    result = torchrun(2, "train", "--out", "stopped", "--resume", "--quiet", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert_same_metrics(tmp_path / "straight", tmp_path / "stopped")
    assert max_difference(tmp_path / "straight", tmp_path / "stopped") < 1e-5

    scratchlm.train(out=tmp_path / "stopped", resume=True, epochs=2)
    scratchlm.train(out=tmp_path / "straight", resume=True, epochs=2)
    assert_same_metrics(tmp_path / "straight", tmp_path / "stopped")


def test_a_batch_that_cannot_be_split_is_refused_before_anything_is_written(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("RANK", "0")  # what torchrun --nproc-per-node 2 tells its first process
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(UserError, match="--batch-size 63 cannot be split over 2 processes"):
        scratchlm.train("human-numbers", "rnn", tmp_path / "odd", epochs=1, batch_size=63)
    assert not (tmp_path / "odd").exists()


def test_world_reads_torchrun_environment(monkeypatch: pytest.MonkeyPatch):
    assert World.from_env() == World()  # no torchrun: one process
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "1")
    world = World.from_env()
    assert (world.rank, world.size, world.local_rank, world.is_main) == (1, 2, 1, False)
    monkeypatch.setenv("RANK", "2")
    with pytest.raises(UserError, match="RANK 2"):
        World.from_env()


def test_each_process_takes_its_rows_of_a_saved_state():
    """A carried state is (..., B, H): nn.RNN's (layers, B, H), or (B, H); rows are the second-last dim."""
    whole = torch.arange(2 * 6 * 3).view(2, 6, 3)
    parts = [World(rank, 3).rows_of((whole, whole[0])) for rank in range(3)]
    assert torch.equal(torch.cat([p[0] for p in parts], dim=1), whole)
    assert torch.equal(torch.cat([p[1] for p in parts], dim=0), whole[0])
    assert World().rows_of(whole) is whole
    with pytest.raises(UserError, match="give a multiple of 4"):
        World(0, 4).check_batch(6)
    with pytest.raises(UserError, match="resume it with 1, 2, 3, 6 processes"):
        World(0, 4).check_batch(6, resume=True)


@pytest.mark.parametrize("verb", ["lr-find", "ladder"])
def test_verbs_of_one_process_refuse_torchrun(verb: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    from scratchlm.cli import EXIT_USER_ERROR, main

    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.chdir(tmp_path)
    assert main([verb, "--data", "human-numbers", "--epochs", "1"]) == EXIT_USER_ERROR


def test_two_processes_translate_as_one(tmp_path: Path):
    """Pairs split by index: each process takes its rows of every batch; BLEU's statistics add up."""
    import random

    words, rng = ["zero", "one", "two", "three", "four", "five"], random.Random(0)
    sentences = [[rng.choice(words) for _ in range(rng.randint(2, 5))] for _ in range(300)]
    data = tmp_path / "pairs.tsv"  # a toy language pair: the words reversed, in capitals
    data.write_text("".join(f"{' '.join(w)}\t{' '.join(x.upper() for x in reversed(w))}\n" for w in sentences))
    options = ["--data", str(data), "--model", "seq2seq-attn", "--tokenizer", "word", "--epochs", "2",
               "--batch-size", "16", "--set", "n_embed=16", "--set", "n_hidden=16", "--set", "dropout=0",
               "--device", "cpu", "--quiet"]
    result = torchrun(2, "train", *options, "--out", "two", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    one = subprocess.run([sys.executable, "-m", "scratchlm", "train", *options, "--out", "one"], cwd=tmp_path,
                         env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=TIMEOUT)
    assert one.returncode == 0, one.stderr[-2000:]
    rows_one, rows_two = RunDir(tmp_path / "one").read_metrics(), RunDir(tmp_path / "two").read_metrics()
    for a, b in zip(rows_one, rows_two, strict=True):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-4)
        assert a["valid_loss"] == pytest.approx(b["valid_loss"], rel=1e-4)
        assert a["valid_bleu"] == pytest.approx(b["valid_bleu"], abs=0.5)  # greedy argmax may flip on a near tie
    assert max_difference(tmp_path / "one", tmp_path / "two") < 1e-3
