"""What --resume accepts and refuses, and what a NaN loss does to a run.

Resume continues the run as it was saved: a changed data file, tokenizer or model shape is refused
with a message naming the difference; the learning rate, epochs and the like change only when given.
"""

from __future__ import annotations

import hashlib
import math
import shutil
from pathlib import Path

import pytest
import torch

import scratchlm
from scratchlm.checkpoint import LAST, RunDir, read_weights, weights_step
from scratchlm.errors import UserError
from scratchlm.models import rnn as rnn_module


def tree_hashes(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def char_run_on_a_file(tmp_path: Path, text_file: Path) -> Path:
    out = tmp_path / "run"
    scratchlm.train(str(text_file), "rnn", out, epochs=1, batch_size=4, bptt=8, lr=0.005)
    return out


def test_a_data_file_changed_since_the_run_started_is_refused(char_run_on_a_file: Path, text_file: Path):
    text_file.write_text(text_file.read_text() + "one more line\n")
    before = tree_hashes(char_run_on_a_file)
    with pytest.raises(UserError, match="changed since the run started .its content hash differs") as e:
        scratchlm.train(out=char_run_on_a_file, resume=True, epochs=2)
    assert str(text_file) in str(e.value)
    assert tree_hashes(char_run_on_a_file) == before


@pytest.mark.parametrize("change, message", [
    ({"tokenizer": "word"}, "the run's tokenizer kind is 'char', not 'word'"),
    ({"min_freq": 2}, "the run's tokenizer min_freq is 1, not 2"),
    ({"settings": {"n_hidden": 8}}, "model settings differ"),
    ({"model": "lstm"}, "the run trains rnn, not lstm"),
    ({"bptt": 16}, "bptt cannot change (8 in the run, 16 given)"),
])
def test_a_changed_tokenizer_or_model_shape_is_refused(char_run_on_a_file: Path, change: dict, message: str):
    before = tree_hashes(char_run_on_a_file)
    with pytest.raises(UserError, match=message.replace("(", r"\(").replace(")", r"\)")):
        scratchlm.train(out=char_run_on_a_file, resume=True, **change)
    assert tree_hashes(char_run_on_a_file) == before


def test_learning_rate_and_epochs_change_only_when_given(char_run_on_a_file: Path):
    """Not given: the run's own values (lr 0.005, not rnn's default). Given: the new ones, recorded."""
    run = scratchlm.train(out=char_run_on_a_file, resume=True, epochs=2)
    assert run.config["train"]["lr"] == 0.005 and run.config["train"]["epochs"] == 2
    assert [row["epoch"] for row in run.metrics] == [1, 2]
    run = scratchlm.train(out=char_run_on_a_file, resume=True, epochs=3, lr=0.001)
    assert run.config["train"]["lr"] == 0.001 and run.config["train"]["epochs"] == 3
    assert len(run.metrics) == 3


def nan_at(monkeypatch: pytest.MonkeyPatch, steps: set[int] | None) -> None:
    """The loss of the given training steps (None: every step) becomes NaN."""
    calls = {"n": 0}
    real_loss = rnn_module.lm_loss

    def loss(logits, targets):
        calls["n"] += 1
        value = real_loss(logits, targets)
        return value * float("nan") if steps is None or calls["n"] in steps else value

    monkeypatch.setattr(rnn_module, "lm_loss", loss)


def test_a_nan_loss_stops_naming_the_step_and_what_to_try(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    nan_at(monkeypatch, {5})
    with pytest.raises(UserError) as e:
        scratchlm.train("human-numbers", "rnn", tmp_path / "run", epochs=1, batch_size=64, eval_every=2)
    message = str(e.value)
    assert "the loss became nan at step 5" in message and "last good checkpoint is kept" in message
    assert "--lr" in message and "--grad-clip" in message and "--on-nan skip" in message
    assert weights_step(tmp_path / "run" / LAST) == 4


def test_a_nan_loss_read_late_is_still_named_by_its_step(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """On a GPU the loss stays on the device until the next evaluation (no synchronisation per step): the NaN
    of step 5 is found at the evaluation of step 6, named by its step, and nothing after step 4 is saved."""
    from scratchlm import trainer as trainer_module

    monkeypatch.setattr(trainer_module, "checks_each_step", lambda device, cfg: False)
    nan_at(monkeypatch, {5})
    with pytest.raises(UserError, match="the loss became nan at step 5; the last good checkpoint is kept"):
        scratchlm.train("human-numbers", "rnn", tmp_path / "run", epochs=1, batch_size=64, eval_every=2)
    assert weights_step(tmp_path / "run" / LAST) == 4
    assert all(torch.isfinite(t).all() for t in read_weights(tmp_path / "run" / LAST).values())


def test_on_nan_skip_drops_the_bad_batch_and_goes_on(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    nan_at(monkeypatch, {3, 9})
    with pytest.warns(UserWarning, match="the batch is skipped") as caught:
        run = scratchlm.train("human-numbers", "rnn", tmp_path / "run", epochs=1, batch_size=64, on_nan="skip")
    assert [str(w.message) for w in caught] == [f"the loss became nan at step {n}; the batch is skipped" for n in (3, 9)]
    state = RunDir(tmp_path / "run").load_state()
    assert state["skipped"] == 2 and state["finished"] and state["epoch"] == 1 and state["batch"] == 0
    assert all(torch.isfinite(t).all() for t in read_weights(tmp_path / "run" / LAST).values())
    assert all(math.isfinite(row["train_loss"]) and math.isfinite(row["valid_loss"]) for row in run.metrics)


def test_on_nan_skip_gives_up_when_every_batch_is_bad(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    nan_at(monkeypatch, None)
    with pytest.warns(UserWarning), pytest.raises(UserError, match="for 10 batches in a row, up to step 10"):
        scratchlm.train("human-numbers", "rnn", tmp_path / "run", epochs=1, batch_size=64, on_nan="skip")


def test_on_nan_may_be_set_when_resuming_a_run_that_stopped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    straight = tmp_path / "straight"
    scratchlm.train("human-numbers", "rnn", straight, epochs=1, batch_size=64)
    stopped = tmp_path / "stopped"
    with monkeypatch.context() as m:
        nan_at(m, {30})
        with pytest.raises(UserError, match="at step 30"):
            scratchlm.train("human-numbers", "rnn", stopped, epochs=1, batch_size=64, eval_every=10)
    copy = shutil.copytree(stopped, tmp_path / "copy")
    run = scratchlm.train(out=copy, resume=True, on_nan="skip")  # the NaN was a one-off: nothing to skip now
    assert run.config["train"]["on_nan"] == "skip" and RunDir(copy).load_state().get("skipped", 0) == 0
    resumed, reference = read_weights(copy / LAST), read_weights(straight / LAST)
    assert all(torch.equal(resumed[k], reference[k]) for k in reference)  # steps 21-50 again, as a straight run
