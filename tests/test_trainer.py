"""The trainer: schedules, evaluation maths, NaN handling, and resuming to the same weights."""

from __future__ import annotations

import math
import os
import re
import shutil
import signal
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import nn

import scratchlm
from scratchlm import steppers as steppers_module
from scratchlm import trainer as trainer_module
from scratchlm.checkpoint import LAST, RunDir, weights_step
from scratchlm.data.batches import LMStream
from scratchlm.data.tokenize import SPECIALS, UNK, CharTokenizer
from scratchlm.errors import UserError
from scratchlm.models import rnn as rnn_module
from scratchlm.models.base import LanguageModel
from scratchlm.models.registry import REGISTRY
from scratchlm.tasks.lm import TASK as LM
from scratchlm.tasks.lm import CharCounted
from scratchlm.trainer import Interrupted, StopRequest, TrainConfig, evaluate, lr_at, momentum_at

# ---------------------------------------------------------------- schedules


def test_onecycle_rises_to_the_peak_at_warmup_then_falls():
    cfg = TrainConfig(epochs=1, lr=1e-2, schedule="onecycle", warmup=0.25)
    assert lr_at(0, cfg) == pytest.approx(1e-2 / 25)
    assert lr_at(0.25, cfg) == pytest.approx(1e-2)
    assert lr_at(1, cfg) == pytest.approx(1e-2 / 1e5)
    points = np.linspace(0, 1, 101)
    lrs = [lr_at(p, cfg) for p in points]
    peak = int(np.argmax(lrs))
    assert points[peak] == pytest.approx(0.25)
    assert all(a <= b for a, b in zip(lrs[: peak + 1], lrs[1: peak + 1], strict=False))
    assert all(a >= b for a, b in zip(lrs[peak:], lrs[peak + 1:], strict=False))
    assert lr_at(-1, cfg) == lr_at(0, cfg) and lr_at(2, cfg) == lr_at(1, cfg)  # clamped


def test_onecycle_momentum_mirrors_the_rate():
    cfg = TrainConfig(epochs=1, schedule="onecycle", warmup=0.3)
    assert momentum_at(0, cfg) == pytest.approx(0.95)
    assert momentum_at(0.3, cfg) == pytest.approx(0.85)
    assert momentum_at(1, cfg) == pytest.approx(0.95)
    assert min(momentum_at(p, cfg) for p in np.linspace(0, 1, 101)) == pytest.approx(0.85)


def test_cosine_and_constant_schedules():
    cosine = TrainConfig(epochs=1, lr=1.0, schedule="cosine", warmup=0.1)
    assert lr_at(0, cosine) == 0.0
    assert lr_at(0.05, cosine) == pytest.approx(0.5)
    assert lr_at(0.1, cosine) == pytest.approx(1.0)
    assert lr_at(1, cosine) == pytest.approx(0.1)
    constant = TrainConfig(epochs=1, lr=0.5, schedule="constant")
    assert {lr_at(p, constant) for p in np.linspace(0, 1, 11)} == {0.5}
    assert momentum_at(0.5, cosine) == momentum_at(0.5, constant) == 0.9


@pytest.mark.parametrize("schedule", ["invsqrt", "constant", "cosine", "onecycle"])
def test_cooldown_falls_linearly_to_zero_from_the_schedule(schedule: str):
    plain = TrainConfig(epochs=1, lr=1.0, schedule=schedule, warmup=0.1)
    cooled = TrainConfig(epochs=1, lr=1.0, schedule=schedule, warmup=0.1, cooldown=0.2)
    for p in np.linspace(0, 0.8, 17):  # untouched before the last fifth
        assert lr_at(p, cooled) == pytest.approx(lr_at(p, plain))
    assert lr_at(0.9, cooled) == pytest.approx(lr_at(0.9, plain) / 2)
    assert lr_at(1.0, cooled) == 0.0
    tail = [lr_at(p, cooled) for p in np.linspace(0.8, 1, 21)]
    assert all(a >= b for a, b in zip(tail, tail[1:], strict=False))


def test_no_warmup_starts_at_the_peak():
    cfg = TrainConfig(epochs=1, lr=1.0, warmup=0)
    assert lr_at(0, cfg) == pytest.approx(1.0)


@pytest.mark.parametrize("kwargs, match", [
    ({}, "give a bound"),
    ({"epochs": 0}, "--epochs 0"),
    ({"epochs": 1, "lr": 0}, "--lr"),
    ({"epochs": 1, "schedule": "exponential"}, "unknown schedule"),
    ({"epochs": 1, "warmup": 1}, "--warmup"),
    ({"epochs": 1, "cooldown": 1}, "--cooldown"),
    ({"epochs": 1, "warmup": 0.5, "cooldown": 0.6}, "--cooldown"),
    ({"epochs": 1, "batch_size": 0}, "--batch-size"),
    ({"time": -1}, "--time"),
    ({"epochs": 1, "patience": 0}, "--patience"),
])
def test_bad_train_config_is_refused(kwargs: dict, match: str):
    with pytest.raises(UserError, match=match):
        TrainConfig(**kwargs)


# ---------------------------------------------------------------- evaluate


class Bigram(LanguageModel):
    """logits = a table row per input token: the loss of each position is easy to compute by hand."""

    def __init__(self, vocab: int):
        super().__init__()
        self.table = nn.Embedding(vocab, vocab)

    def forward(self, idx, targets=None, state=None):
        logits = self.table(idx)
        return logits, None, None


def test_perplexity_is_exp_of_the_mean_loss_over_tokens_and_bits_per_character_its_sum_over_characters():
    torch.manual_seed(0)
    vocab = 7
    ids = np.random.default_rng(0).integers(0, vocab, 3 * 11 + 1).astype(np.uint16)
    stream = LMStream(ids, batch_size=3, bptt=4, drop_last=False)  # rows of 11: windows 4, 4, 3
    assert [x.size(1) for x, _ in stream.batches()] == [4, 4, 3]
    model = Bigram(vocab)

    losses, batch_means = [], []
    for x, y in stream.batches():
        token_losses = F.cross_entropy(model.table.weight[x].reshape(-1, vocab), y.reshape(-1), reduction="none")
        losses.append(token_losses)
        batch_means.append(token_losses.mean())
    by_hand = torch.cat(losses).double().mean().item()
    assert by_hand != pytest.approx(torch.stack(batch_means).mean().item(), rel=1e-9)  # the two means differ here

    tokenizer = CharTokenizer([*SPECIALS, "a", "b"])  # 7 ids: <unk>, a and b stand for one character each
    result = evaluate(model, CharCounted(stream, tokenizer), LM, torch.device("cpu"))
    targets = torch.cat([y.reshape(-1) for _, y in stream.batches()])
    chars = int(sum(t in (UNK, 5, 6) for t in targets.tolist()))
    assert 0 < chars < len(targets)  # some targets are separators: they cost bits but stand for no text
    assert result["bpc"] == pytest.approx(torch.cat(losses).double().sum().item() / math.log(2) / chars, rel=1e-6)
    assert result["tokens"] == 3 * 11
    assert result["loss"] == pytest.approx(by_hand, rel=1e-6)
    assert result["perplexity"] == pytest.approx(math.exp(by_hand), rel=1e-6)
    predictions = torch.cat([model.table.weight[x].argmax(-1).reshape(-1) for x, _ in stream.batches()])
    assert result["accuracy"] == pytest.approx((predictions == targets).double().mean().item())
    assert model.training  # evaluate puts the model back as it found it


# ---------------------------------------------------------------- the loop, resume, stop, NaN


def weights(run: Path) -> dict[str, torch.Tensor]:
    return load_file(str(run / LAST))


def assert_same_weights(a: Path, b: Path) -> None:
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys()
    for name in wa:
        assert torch.equal(wa[name], wb[name]), name


def valid_losses(run: Path) -> list[float]:
    return [row["valid_loss"] for row in RunDir(run).read_metrics()]


def test_resume_gives_the_same_weights_as_an_uninterrupted_run(tmp_path: Path):
    """2 epochs straight vs 1 epoch, then `resume=True, epochs=2`. The constant schedule makes the
    first epoch the same in both: onecycle spreads its curve over all the epochs asked for."""
    options = {"model": "rnn", "batch_size": 64, "schedule": "constant"}
    straight = scratchlm.train("human-numbers", out=tmp_path / "straight", epochs=2, **options)
    scratchlm.train("human-numbers", out=tmp_path / "split", epochs=1, **options)
    assert len(valid_losses(tmp_path / "split")) == 1
    resumed = scratchlm.train(out=tmp_path / "split", resume=True, epochs=2)
    assert_same_weights(tmp_path / "straight", tmp_path / "split")
    assert valid_losses(tmp_path / "straight") == valid_losses(tmp_path / "split")
    assert len(resumed.metrics) == 2
    assert resumed.config["train"]["epochs"] == 2 and straight.config["train"]["epochs"] == 2


def stop_at_step(monkeypatch: pytest.MonkeyPatch, step: int) -> None:
    """Send this process a real SIGINT during training step `step` (the trainer detaches the state once a step)."""
    calls = {"n": 0}
    detach = steppers_module.detach_state

    def detach_and_interrupt(state):
        calls["n"] += 1
        if calls["n"] == step:
            os.kill(os.getpid(), signal.SIGINT)
        return detach(state)

    monkeypatch.setattr(steppers_module, "detach_state", detach_and_interrupt)


def test_stop_mid_epoch_then_resume_gives_the_same_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Ctrl-C at step 30 of 100 (mid-epoch, no evaluation due) saves; resuming ends where a straight run does."""
    options = {"model": "rnn", "batch_size": 64, "epochs": 2}  # 50 steps an epoch, onecycle over 100
    scratchlm.train("human-numbers", out=tmp_path / "straight", **options)

    with monkeypatch.context() as m:
        stop_at_step(m, 30)
        with pytest.raises(Interrupted, match="step 30"):
            scratchlm.train("human-numbers", out=tmp_path / "stopped", **options)
    run = RunDir(tmp_path / "stopped")
    assert run.load_state()["step"] == 30 and run.load_state()["batch"] == 30
    assert weights_step(run.file(LAST)) == 30
    assert run.read_metrics() == []  # a stop saves without an evaluation nobody asked for

    scratchlm.train(out=tmp_path / "stopped", resume=True)
    assert_same_weights(tmp_path / "straight", tmp_path / "stopped")
    assert valid_losses(tmp_path / "straight") == valid_losses(tmp_path / "stopped")


def test_shuffled_windows_change_each_epoch_and_a_stop_in_the_second_resumes_exactly(tmp_path: Path,
                                                                                     monkeypatch: pytest.MonkeyPatch):
    """--shuffle draws each epoch's windows from (seed, epoch): a stop mid-way through the second epoch
    resumes to the weights of a straight run, and a shuffled run is not the ordered one."""
    options = {"model": "mlp3", "batch_size": 512, "epochs": 2, "shuffle": True}  # 26 steps an epoch
    scratchlm.train("human-numbers", out=tmp_path / "straight", **options)
    with monkeypatch.context() as m:
        stop_at_step(m, 33)
        with pytest.raises(Interrupted, match="step 33"):
            scratchlm.train("human-numbers", out=tmp_path / "stopped", **options)
    assert RunDir(tmp_path / "stopped").load_state()["epoch"] == 1
    scratchlm.train(out=tmp_path / "stopped", resume=True)
    assert_same_weights(tmp_path / "straight", tmp_path / "stopped")
    assert valid_losses(tmp_path / "straight") == valid_losses(tmp_path / "stopped")
    scratchlm.train("human-numbers", out=tmp_path / "ordered", **{**options, "shuffle": False})
    assert valid_losses(tmp_path / "ordered") != valid_losses(tmp_path / "straight")


def test_shuffle_is_refused_for_a_model_that_carries_its_state(tmp_path: Path):
    with pytest.raises(UserError, match="--shuffle reorders the windows of a model without a carried state"):
        scratchlm.train("human-numbers", "rnn", tmp_path / "run", epochs=1, shuffle=True)


def test_eval_every_checkpoints_mid_epoch_and_resume_continues(tmp_path: Path):
    """A run stopped right after a mid-epoch evaluation resumes from that checkpoint to the same end."""
    options = {"model": "rnn-deep", "batch_size": 64, "epochs": 1, "eval_every": 20}
    scratchlm.train("human-numbers", out=tmp_path / "straight", **options)
    steps = RunDir(tmp_path / "straight").load_state()["step"]  # one epoch
    assert [row["step"] for row in RunDir(tmp_path / "straight").read_metrics()] == [20, 40, steps] and steps > 40

    def interrupt(row: dict) -> None:
        os.kill(os.getpid(), signal.SIGINT)

    with pytest.raises(Interrupted, match="step 20"):
        scratchlm.train("human-numbers", out=tmp_path / "stopped", on_evaluation=interrupt, **options)
    assert [row["step"] for row in RunDir(tmp_path / "stopped").read_metrics()] == [20]

    scratchlm.train(out=tmp_path / "stopped", resume=True)
    assert_same_weights(tmp_path / "straight", tmp_path / "stopped")
    assert valid_losses(tmp_path / "straight") == valid_losses(tmp_path / "stopped")


def test_resume_of_a_finished_run_changes_no_weights(hn_run: Path, tmp_path: Path):
    run = shutil.copytree(hn_run, tmp_path / "run")
    before = weights(run)
    result = scratchlm.train(out=run, resume=True)
    assert all(torch.equal(before[k], v) for k, v in weights(run).items())
    assert len(result.metrics) == 1


def test_a_nan_loss_stops_with_the_step(tmp_path: Path):
    with pytest.raises(UserError, match=r"the loss became (nan|inf) at step \d+") as e:
        scratchlm.train("human-numbers", "rnn", tmp_path / "run", epochs=1, batch_size=64, lr=9.9, eval_every=2)
    step = int(re.search(r"at step (\d+)", str(e.value)).group(1))
    last = RunDir(tmp_path / "run").file(LAST)
    if last.exists():  # the last good checkpoint is kept, and it is from before the bad step
        assert weights_step(last) < step
        assert all(torch.isfinite(t).all() for t in weights(tmp_path / "run").values())


def test_a_nan_loss_names_the_exact_step(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    calls = {"n": 0}
    real_loss = rnn_module.lm_loss

    def loss_nan_at_step_3(logits, targets):
        calls["n"] += 1
        loss = real_loss(logits, targets)
        return loss * float("nan") if calls["n"] == 3 else loss

    monkeypatch.setattr(rnn_module, "lm_loss", loss_nan_at_step_3)
    with pytest.raises(UserError, match="at step 3;"):
        scratchlm.train("human-numbers", "rnn", tmp_path / "run", epochs=1, batch_size=64, eval_every=1)
    assert weights_step(RunDir(tmp_path / "run").file(LAST)) == 2


def test_a_second_ctrl_c_stops_at_once():
    stop = StopRequest()
    stop.handle(signal.SIGINT, None)
    assert stop.requested
    with pytest.raises(KeyboardInterrupt):
        stop.handle(signal.SIGINT, None)


def test_patience_stops_after_evaluations_without_progress(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    flat = {"loss": 2.0, "accuracy": 0.5, "perplexity": math.exp(2.0), "bpc": 1.0, "tokens": 1}
    monkeypatch.setattr(trainer_module, "evaluate", lambda *args, **kwargs: flat)
    run = scratchlm.train("human-numbers", "rnn", tmp_path / "run", epochs=5, batch_size=64, eval_every=1, patience=2)
    assert [row["step"] for row in run.metrics] == [1, 2, 3]  # best at 1, then two evaluations no better
    state = RunDir(tmp_path / "run").load_state()
    assert state["best_step"] == 1 and state["evals_since_best"] == 2 and state["finished"]


@pytest.mark.slow
@pytest.mark.parametrize("name", [name for name, spec in REGISTRY.items()  # a model of counts takes no steps to stop at:
                                  if spec.task == "lm" and spec.model_cls.learns_by != "counting"])  # test_ngram.py
def test_every_model_resumes_to_the_same_weights(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Dropout, carried states, fixed windows: whatever a model draws or keeps, a stop costs nothing."""
    options = {"model": name, "batch_size": 64, "epochs": 2}
    scratchlm.train("human-numbers", out=tmp_path / "straight", **options)
    with monkeypatch.context() as m:
        stop_at_step(m, 7)
        with pytest.raises(Interrupted):
            scratchlm.train("human-numbers", out=tmp_path / "stopped", **options)
    run = scratchlm.train(out=tmp_path / "stopped", resume=True)
    assert_same_weights(tmp_path / "straight", tmp_path / "stopped")
    assert valid_losses(tmp_path / "straight") == valid_losses(tmp_path / "stopped")
    text = run.generate("one . two .", tokens=10)
    assert text == scratchlm.Run.load(tmp_path / "straight").generate("one . two .", tokens=10)
    assert len(text.split()) == 10 and run.score(["three . four"])[0]["tokens"] == 3
