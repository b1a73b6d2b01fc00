"""The trainer: one plain loop you can read in one screen, and the pure helpers it calls.

Each step, in a fixed order (nanoGPT's): learning rate and momentum for this point of the schedule ->
the task's loss of the batch (carrying the recurrent state for stateful models) -> stop on a NaN/inf
loss -> backward -> clip -> optimizer step -> detach the state (truncated BPTT) -> evaluate and
checkpoint when due.

What the batches are, what the loss is and which metrics an evaluation gives belong to the task
(scratchlm.tasks.base); the loop, exact resume, several processes, the NaN policy, the time bound and
the checkpoints exist here once for every task.

The one hook a stateful model needs (fast.ai's ModelResetter) is written out in the loop: the carried
state starts empty at each epoch, and evaluation starts its own. A model that learns by counting (an
n-gram model) skips the loop: `fit_by_counting` has the task count its training data once, then
evaluates and checkpoints as after a last epoch.
"""

from __future__ import annotations

import math
import random
import signal
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, fields
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from scratchlm.checkpoint import RunDir
from scratchlm.distributed import World
from scratchlm.errors import Interrupted, UserError
from scratchlm.models.base import detach_state, fits_by_counting
from scratchlm.muon import Muon, MuonAdamW, hidden_matrices
from scratchlm.speed import autocast, compile_model, fused_adamw, to_device

# The task and its batches (scratchlm/tasks/base.py: `Task`, the `Batches` protocol) are built on this
# module, so it names their types as these two words and imports neither.
Task = Any
Batches = Any

SCHEDULES = ("onecycle", "cosine", "invsqrt", "linear", "constant")
OPTIMIZERS = ("adamw", "muon")
MAX_SKIPPED_IN_A_ROW = 10  # --on-nan skip gives up after this many bad batches in a row
EVALUATIONS = 10  # a run bounded by time, without --eval-every, is evaluated at each tenth of its budget


@dataclass
class TrainConfig:
    """How to train; saved in config.json. None for epochs/time means no bound of that kind."""

    epochs: int | None = None  # passes over the training stream
    time: float | None = None  # seconds of training; stops at the first bound reached
    lr: float = 3e-3  # peak learning rate
    schedule: Literal["onecycle", "cosine", "invsqrt", "linear", "constant"] = "onecycle"  # learning rate over the run
    warmup: float = 0.25  # share of the run spent rising to the peak (onecycle, cosine, invsqrt)
    cooldown: float = 0.0  # share of the run at its end over which the rate falls linearly to 0 (any schedule)
    weight_decay: float = 0.01  # decoupled weight decay on the matrices (AdamW, Loshchilov and Hutter 2019)
    optimizer: Literal["adamw", "muon"] = "adamw"  # muon: Muon for the hidden matrices, AdamW for the rest
    batch_size: int = 64  # rows of the stream per batch
    bptt: int = 16  # tokens per row per batch: the back-propagation window
    random_bptt: bool = False  # vary the window around bptt each batch (AWD-LSTM); stateful models only
    shuffle: bool = False  # windows in a new random order each epoch, from a random offset; windowed models only
    grad_clip: float | None = None  # clip the gradient norm to this; None: no clipping
    patience: int | None = None  # stop after this many evaluations without a better score (see best_by)
    best_by: str | None = None  # the metric the best checkpoint and patience follow; None: the task's (Task.best_metrics)
    eval_every: int | None = None  # steps between evaluations; None: each epoch, or each tenth of a --time budget
    seed: int = 0  # the whole run (init, dropout, sampling in evaluation) follows from it
    device: str = "auto"  # auto, cpu or cuda
    precision: str = "auto"  # auto, fp32 or bf16 (autocast)
    on_nan: Literal["stop", "skip"] = "stop"  # a NaN/inf loss stops the run, or its batch is skipped
    compile: bool = False  # torch.compile the model: faster steps on a GPU after a slow first one

    def __post_init__(self) -> None:
        if self.epochs is None and self.time is None:
            raise UserError("give a bound: --epochs N or --time 5m")
        if self.epochs is not None and self.epochs < 1:
            raise UserError(f"--epochs {self.epochs} must be at least 1")
        if self.time is not None and self.time <= 0:
            raise UserError(f"--time must be positive, got {self.time} s")
        if not 0 < self.lr < 10:
            raise UserError(f"--lr {self.lr} is out of range; try 1e-3")
        if self.schedule not in SCHEDULES:
            raise UserError(f"unknown schedule {self.schedule!r}; choose one of {', '.join(SCHEDULES)}")
        if not 0 <= self.warmup < 1:
            raise UserError(f"--warmup {self.warmup} must be in [0, 1)")
        if not 0 <= self.cooldown < 1 or self.warmup + self.cooldown > 1:
            raise UserError(f"--cooldown {self.cooldown} must be in [0, 1), and with --warmup {self.warmup} at most 1")
        if self.schedule == "invsqrt" and self.warmup == 0:
            raise UserError("--schedule invsqrt needs a --warmup above 0: the rate falls as 1/sqrt of the run after it")
        if self.weight_decay < 0 or (self.grad_clip is not None and self.grad_clip <= 0):
            raise UserError("--weight-decay must be >= 0 and --grad-clip > 0")
        for option, value in (("--batch-size", self.batch_size), ("--bptt", self.bptt)):
            if not 1 <= value <= 1_000_000:
                raise UserError(f"{option} {value} must be between 1 and 1,000,000")
        if (self.patience is not None and self.patience < 1) or (self.eval_every is not None and self.eval_every < 1):
            raise UserError("--patience and --eval-every must be at least 1")
        if self.optimizer not in OPTIMIZERS:
            raise UserError(f"unknown optimizer {self.optimizer!r}; choose one of {', '.join(OPTIMIZERS)}")
        if self.on_nan not in ("stop", "skip"):
            raise UserError(f"--on-nan {self.on_nan!r}: choose stop (the default) or skip")

    @classmethod
    def field_names(cls) -> set[str]:
        return {f.name for f in fields(cls)}


# ---------------------------------------------------------------- pure helpers


def lr_at(progress: float, cfg: TrainConfig) -> float:
    """Learning rate at `progress` in [0, 1] of the run.

    onecycle (Smith 2018, as fastai's fit_one_cycle): cosine from lr/25 up to lr over `warmup`, then
    cosine down to lr/1e5. cosine: linear warm-up, cosine to lr/10. invsqrt (Vaswani et al. 2017, eq. 3,
    by progress instead of steps): linear warm-up, then lr * sqrt(warmup / p), lr * sqrt(warmup) at the
    end. linear (word2vec's, Mikolov et al. 2013): linear warm-up, then a straight fall to 0 at the end.
    constant: lr.

    A `cooldown` c > 0 multiplies any of them by min(1, (1 - p) / c): the rate falls linearly to 0 over
    the last share c of the run, from wherever the schedule is (the warmup-stable-decay recipe; Hägele et
    al. 2024, "Scaling Laws and Compute-Optimal Training Beyond Fixed Training Durations", find a 20%
    linear cooldown of a constant rate matches cosine). It gives invsqrt, which never anneals, an end.
    """
    p = min(max(progress, 0.0), 1.0)
    rate = scheduled_rate(p, cfg)
    return rate * min(1.0, (1 - p) / cfg.cooldown) if cfg.cooldown else rate


def scheduled_rate(p: float, cfg: TrainConfig) -> float:
    """lr_at before the cooldown."""
    if cfg.schedule == "constant":
        return cfg.lr
    if cfg.schedule == "linear":
        return cfg.lr * (p / cfg.warmup if p < cfg.warmup else (1 - p) / (1 - cfg.warmup))
    if cfg.schedule == "invsqrt":
        return cfg.lr * min(p / cfg.warmup, math.sqrt(cfg.warmup / max(p, 1e-12)))
    if cfg.schedule == "cosine":
        if p < cfg.warmup:
            return cfg.lr * p / cfg.warmup
        return cosine(cfg.lr, cfg.lr / 10, (p - cfg.warmup) / (1 - cfg.warmup))
    if p < cfg.warmup:
        return cosine(cfg.lr / 25, cfg.lr, p / cfg.warmup)
    return cosine(cfg.lr, cfg.lr / 1e5, (p - cfg.warmup) / (1 - cfg.warmup))


def momentum_at(progress: float, cfg: TrainConfig, high: float = 0.95, low: float = 0.85) -> float:
    """Adam's beta1 under onecycle: down from 0.95 to 0.85 while the rate rises, and back (Smith 2018)."""
    if cfg.schedule != "onecycle":
        return 0.9
    p = min(max(progress, 0.0), 1.0)
    if p < cfg.warmup:
        return cosine(high, low, p / cfg.warmup)
    return cosine(low, high, (p - cfg.warmup) / (1 - cfg.warmup))


def cosine(start: float, end: float, p: float) -> float:
    return end + (start - end) * (1 + math.cos(math.pi * p)) / 2


@torch.no_grad()
def evaluate(model: nn.Module, batches: Batches, task: Task, device: torch.device, precision: str = "fp32",
             world: World | None = None) -> dict:
    """The task's metrics over every validation batch.

    Each batch gives the task's sums (summed loss, right guesses, tokens, ...); with several processes,
    each reads its share and the sums are added up before `task.finish` takes the means, so the numbers
    are those of one process reading it all.
    """
    was_training = model.training
    model.eval()
    total = torch.zeros(len(task.sums), dtype=torch.float64, device=device)
    carry = None  # a fresh state: evaluation never continues the training rows
    for batch in batches.batches():
        with autocast(device, precision):
            sums, carry = task.eval_sums(model, to_device(batch, device), carry)
        total += sums.to(device)
    model.train(was_training)
    return task.finish(dict(zip(task.sums, (world or World()).sum(total).tolist(), strict=True)))


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def rng_state() -> dict:
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state()[1].copy(),
             "numpy_pos": np.random.get_state()[2], "python": repr(random.getstate())}
    if torch.cuda.is_initialized():  # a GPU run's; reading it would start CUDA for a CPU run (and fail in a fork)
        state["cuda"] = torch.cuda.get_rng_state_all()
    return {k: torch.as_tensor(v) if isinstance(v, np.ndarray) else v for k, v in state.items()}


def set_rng_state(state: dict) -> None:
    import ast

    torch.set_rng_state(state["torch"])
    np.random.set_state(("MT19937", state["numpy"].numpy().astype(np.uint32), int(state["numpy_pos"])))
    random.setstate(ast.literal_eval(state["python"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class StopRequest:
    """Ctrl-C (SIGINT) or SIGTERM asks the loop to stop after the current step and save.

    Interrupting inside `optimizer.step()` could leave the weights half-updated, so the signal only
    sets a flag that the loop reads between steps. A second Ctrl-C stops at once.
    """

    def __init__(self) -> None:
        self.requested = False

    def handle(self, signum: int, frame: object) -> None:
        if self.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.requested = True

    @contextmanager
    def installed(self) -> Iterator[StopRequest]:
        if threading.current_thread() is not threading.main_thread():
            yield self
            return
        previous = {s: signal.signal(s, self.handle) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield self
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)


# ---------------------------------------------------------------- the loop


class Trainer:
    """Trains one model on one task's batches into one run directory; `fit()` is the whole loop.

    With several processes (`world`), each trains on its share of every batch (the batches given are
    its shards) through `net`, the model under DistributedDataParallel; `model` stays the plain one
    that is evaluated and saved. Without a run directory (the learning-rate finder) nothing is saved.
    """

    def __init__(self, model: nn.Module, task: Task, train_batches: Batches, valid_batches: Batches,
                 cfg: TrainConfig, run_dir: RunDir | None, device: torch.device, precision: str = "fp32",
                 progress: bool = True, on_evaluation: Callable[[dict], None] | None = None,
                 world: World | None = None):
        self.model, self.task, self.cfg, self.run_dir, self.world = model, task, cfg, run_dir, world or World()
        # A model of counts has nothing to train: no DDP, no compiling, no optimizer (whose first one costs
        # seconds of importing torch's compiler); a task that takes its own steps needs only the rate
        counts = fits_by_counting(model)
        self.net = model if counts else compile_model(self.world.wrap(model), cfg.compile)
        self.train_batches, self.valid_batches = train_batches, valid_batches
        self.device, self.precision, self.progress = device, precision, progress
        self.on_evaluation = on_evaluation
        self.optimizer = None if counts else RateOnly(cfg.lr) if task.own_step else make_optimizer(model, cfg, device)
        self.steps_per_epoch = len(train_batches)
        self.state = {"step": 0, "epoch": 0, "batch": 0, "carry": None, "elapsed": 0.0, "tokens": 0,
                      "best_loss": math.inf, "best_step": -1, "evals_since_best": 0, "history": [],
                      "running_loss": 0.0, "running_steps": 0, "finished": False, "nan_streak": 0, "skipped": 0,
                      "tenths": 0, "evaluated_at": 0.0, "evaluation_seconds": 0.0}
        self.epoch_length = self.steps_per_epoch  # batches in the epoch under way (random_bptt recuts them)

    def restore(self, state: dict) -> None:
        """Continue from a saved state: same step, data position, carried state, RNGs and optimizer."""
        optimizer = state.pop("optimizer")
        if self.optimizer is not None:
            self.optimizer.load_state_dict(optimizer)
        set_rng_state(state.pop("rng"))  # the same on every process: they all draw alike
        self.state.update(state, carry=self.world.rows_of(state.get("carry"), self.device))
        if "tenths" not in state:  # a run from before evaluations at tenths: count the tenths already passed
            self.state["tenths"] = int(self.progress_of(self.state["elapsed"]) * EVALUATIONS)

    def progress_of(self, elapsed: float) -> float:
        """How far through the run we are, in [0, 1], by steps or by time, whichever is further."""
        by_steps = self.state["step"] / (self.cfg.epochs * self.steps_per_epoch) if self.cfg.epochs else 0.0
        by_time = elapsed / self.cfg.time if self.cfg.time else 0.0
        return max(by_steps, by_time)

    def set_rates(self, progress: float, scale: float = 1.0) -> None:
        """The schedule's learning rate (times `scale`) and Adam's momentum at this point of the run."""
        for group in self.optimizer.param_groups:
            group["lr"] = lr_at(progress, self.cfg) * scale * group.get("lr_scale", 1.0)
            if "betas" in group:  # Adam's; Muon keeps its own momentum
                group["betas"] = (momentum_at(progress, self.cfg), group["betas"][1])

    def train_step(self, batch: tuple[torch.Tensor, ...], carry: Any, progress: float = 0.0) -> tuple[float, Any, int]:
        """One optimizer step on `batch`: (the whole batch's loss, the carried state, tokens read).

        A NaN/inf loss takes no step and returns the loss for the caller's policy; the state that went
        through it is NaN too, so none is carried on. A task whose `own_step` is set takes the step itself
        (word2vec: gradients written out, sparse updates), at the schedule's rate that `RateOnly` holds."""
        if self.task.own_step:
            loss_sum, count = self.task.step(self.model, batch, self.optimizer.param_groups[0]["lr"], self.precision)
            return loss_sum / max(count, 1), None, count
        with autocast(self.device, self.precision):
            loss, carry, tokens = self.task.loss(self.net, self.model, batch, carry, progress)
        loss_value = self.world.mean_loss(loss)  # the whole batch's: the same on every process
        if not math.isfinite(loss_value):
            return loss_value, None, tokens
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.cfg.grad_clip:
            nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip)
        self.optimizer.step()
        return loss_value, detach_state(carry), tokens

    def fit(self) -> list[dict]:
        if fits_by_counting(self.model):
            return self.fit_by_counting()
        s, cfg = self.state, self.cfg
        self.net.train()
        start, stopping = time.perf_counter() - s["elapsed"], False
        s["finished"] = self.bound_reached(s["elapsed"])
        with StopRequest().installed() as stop, Progress(self.progress, cfg, self.steps_per_epoch, s) as bar:
            while not s["finished"]:
                carry = s["carry"] if s["batch"] > 0 else None  # the hidden state starts empty each epoch
                batches = self.epoch_batches(s["epoch"])
                self.epoch_length = len(batches)
                for k in range(s["batch"], len(batches)):
                    batch = to_device(batches.batch(k), self.device)
                    progress = self.progress_of(s["elapsed"])  # the clock every process agreed on
                    self.set_rates(progress, self.task.lr_scale(batch, cfg))
                    loss_value, carry, tokens = self.train_step(batch, carry, progress)
                    if math.isfinite(loss_value):
                        weight = tokens if self.task.mean_loss_over_tokens else 1  # a mean over pairs, or over steps
                        s["running_loss"] += loss_value * weight
                        s["running_steps"] += weight
                        s["nan_streak"] = 0
                    else:  # raises unless --on-nan skip
                        self.skip_bad_loss(loss_value)

                    s["step"], s["batch"] = s["step"] + 1, k + 1
                    s["tokens"] += tokens * self.world.size
                    s["elapsed"], stopping = self.world.agree(time.perf_counter() - start, stop.requested)
                    bar.show(s, loss_value)
                    epoch_done = s["batch"] == len(batches)
                    if epoch_done:
                        s["epoch"], s["batch"], carry = s["epoch"] + 1, 0, None
                    s["carry"] = carry
                    s["finished"] = self.bound_reached(s["elapsed"])
                    if self.evaluation_due(epoch_done) or s["finished"]:
                        began = time.perf_counter()
                        self.evaluate_and_checkpoint(bar)
                        start += time.perf_counter() - began  # the clock counts training, not evaluating
                        # rank 0's duration, and whether a stop was asked during the evaluation
                        s["evaluation_seconds"], stopping = self.world.agree(time.perf_counter() - began,
                                                                             stop.requested)
                        s["evaluated_at"] = s["elapsed"]
                    elif stopping:  # save where we are, without an evaluation the run did not ask for
                        self.save(is_best=False)
                    if s["finished"] or stopping or epoch_done:
                        break
                if stopping and not s["finished"]:
                    raise Interrupted(s["step"])
        return s["history"]

    def fit_by_counting(self) -> list[dict]:
        """One pass: the task hands the model its training data to count (every process counts it all,
        so all hold the same tables), then one evaluation and checkpoint, whatever the bound. There are
        no steps, so no training loss (NaN in its row); a resumed run that was saved is done already."""
        s = self.state
        if s["history"] and s["finished"]:
            return s["history"]
        with Progress(self.progress, self.cfg, self.steps_per_epoch, s) as bar:
            began = time.perf_counter()
            tokens = self.task.count(self.model, self.train_batches)
            s.update(step=1, epoch=1, batch=0, tokens=tokens, running_loss=math.nan, running_steps=1, finished=True,
                     elapsed=self.world.agree(time.perf_counter() - began, False)[0])
            self.evaluate_and_checkpoint(bar)
        return s["history"]

    def evaluation_due(self, epoch_done: bool) -> bool:
        """Every --eval-every steps; else at each epoch's end, or, in a run bounded by time (whose epochs
        can be longer than the budget), at each tenth of it, so that its curve has points to draw. A
        tenth waits until the run has trained, since the last evaluation, as long as that evaluation
        took: a short budget on a large validation set spends at most half its wall time evaluating,
        not ten evaluations for a few seconds of training."""
        s, cfg = self.state, self.cfg
        if cfg.eval_every is not None:
            return s["step"] % cfg.eval_every == 0
        if cfg.time is None:
            return epoch_done
        tenths = min(int(self.progress_of(s["elapsed"]) * EVALUATIONS), EVALUATIONS)
        if tenths > s["tenths"] and s["elapsed"] - s["evaluated_at"] >= s["evaluation_seconds"]:
            s["tenths"] = tenths
            return True
        return False

    def skip_bad_loss(self, loss: float) -> None:
        """A NaN or inf loss: stop, keeping the last good checkpoint, or (--on-nan skip) drop the batch
        and go on, unless the loss stays bad batch after batch."""
        s = self.state
        advice = "the last good checkpoint is kept; try a lower --lr or --grad-clip 1.0"
        if self.cfg.on_nan == "stop":
            raise UserError(f"the loss became {loss} at step {s['step'] + 1}; {advice}, or --on-nan skip")
        if s["nan_streak"] + 1 >= MAX_SKIPPED_IN_A_ROW:
            raise UserError(f"the loss was {loss} for {MAX_SKIPPED_IN_A_ROW} batches in a row, up to step "
                            f"{s['step'] + 1}; skipping does not help: {advice}")
        s["nan_streak"], s["skipped"] = s["nan_streak"] + 1, s["skipped"] + 1
        warnings.warn(f"the loss became {loss} at step {s['step'] + 1}; the batch is skipped", stacklevel=2)

    def epoch_batches(self, epoch: int) -> Batches:
        """The batches of one epoch, as the task cuts them (the same every epoch, or drawn anew)."""
        return self.task.epoch_batches(self.train_batches, epoch, self.cfg)

    def bound_reached(self, elapsed: float) -> bool:
        s, cfg = self.state, self.cfg
        return ((cfg.epochs is not None and s["epoch"] >= cfg.epochs)
                or (cfg.time is not None and elapsed >= cfg.time)
                or (cfg.patience is not None and s["evals_since_best"] >= cfg.patience))

    def evaluate_and_checkpoint(self, bar: Progress) -> None:
        s = self.state
        train_loss = s["running_loss"] / max(s["running_steps"], 1)
        s["running_loss"], s["running_steps"] = 0.0, 0
        metrics = evaluate(self.model, self.valid_batches, self.task, self.device, self.precision, self.world)
        row = {"step": s["step"], "epoch": round(s["epoch"] + s["batch"] / self.epoch_length, 4),
               "train_loss": train_loss, **{f"valid_{name}": metrics[name] for name in self.task.metrics},
               "lr": self.optimizer.param_groups[0]["lr"] if self.optimizer else 0.0, "tokens": s["tokens"],
               "seconds": round(s["elapsed"], 3),
               "tokens_per_second": round(s["tokens"] / max(s["elapsed"], 1e-9), 1)}
        s["history"] = s["history"] + [row]
        score = self.task.score(metrics, self.cfg.best_by)
        is_best = score < s["best_loss"]  # "best_loss": the task's score, the validation loss for most
        if is_best:
            s["best_loss"], s["best_step"], s["evals_since_best"] = score, s["step"], 0
        else:
            s["evals_since_best"] += 1
            s["finished"] = s["finished"] or self.bound_reached(s["elapsed"])
        self.save(is_best)
        if self.world.is_main:
            bar.write_row(self.task, row)
            if self.on_evaluation:
                self.on_evaluation(row)

    def save(self, is_best: bool) -> None:
        """Rank 0 writes the checkpoint and the metrics, while the other processes wait."""
        if self.run_dir is None:
            return
        state = self.checkpoint_state()  # every process takes part: it gathers their carried rows
        if self.world.is_main:
            self.run_dir.save_checkpoint(self.model, state, is_best)
            self.run_dir.write_metrics(self.state["history"])
        self.world.barrier()

    def checkpoint_state(self) -> dict:
        """The state of the whole run: the carried state holds the rows of every process."""
        return {**self.state, "carry": self.world.gather_rows(self.state["carry"]),
                "optimizer": self.optimizer.state_dict() if self.optimizer else {}, "rng": rng_state()}


class RateOnly:
    """The optimizer's place in a run whose task takes its own steps (word2vec, GloVe): it holds the rate the
    schedule sets each step, which the task's step reads, and nothing to save. torch.optim would keep no
    state either, and its first optimizer costs a second or two of importing torch's compiler."""

    def __init__(self, lr: float):
        self.param_groups = [{"lr": lr}]

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        """Nothing to restore: the schedule sets the rate before every step (a run saved with an optimizer's
        empty state resumes alike)."""


def make_optimizer(model: nn.Module, cfg: TrainConfig, device: torch.device) -> torch.optim.Optimizer | MuonAdamW:
    """AdamW, with weight decay on matrices only: decaying biases and norm gains only pulls them to
    zero for no gain (GPT-2, nanoGPT). The fused CUDA kernel on a GPU. `optimizer="muon"`: Muon for the
    hidden matrices, this AdamW for the rest (scratchlm.muon)."""
    outputs = getattr(model.config, "vocab_size", None) or getattr(model.config, "tgt_vocab_size", None)
    hidden = hidden_matrices(model, outputs) if cfg.optimizer == "muon" else []
    taken = {id(p) for p in hidden}
    groups = []
    for params, lr_scale in layer_groups(model):
        rest = [p for p in params if p.requires_grad and id(p) not in taken]
        groups += [{"params": [p for p in rest if p.dim() >= 2], "weight_decay": cfg.weight_decay, "lr_scale": lr_scale},
                   {"params": [p for p in rest if p.dim() < 2], "weight_decay": 0.0, "lr_scale": lr_scale}]
    adamw = torch.optim.AdamW(groups, lr=cfg.lr, betas=(0.9, 0.99), eps=1e-8, fused=fused_adamw(device))
    if not hidden:
        return adamw
    return MuonAdamW(Muon(hidden, lr=cfg.lr, weight_decay=cfg.weight_decay), adamw)


def layer_groups(model: nn.Module) -> list[tuple[list[nn.Parameter], float]]:
    """(parameters, learning-rate factor) of each layer group: one group at the full rate, unless the model
    offers its own (`layer_groups()`: discriminative fine-tuning, Howard and Ruder 2018, 3.2)."""
    if hasattr(model, "layer_groups"):
        return model.layer_groups()
    return [(list(model.parameters()), 1.0)]


class Progress:
    """The progress bar on stderr, and the evaluation rows written above it as one table.

    A run bounded by time shows its seconds against the budget, elapsed and remaining; one bounded by
    epochs, its steps against the total. When stderr is not a terminal (`| tee log`, `2> file`) there is
    no bar, whose redraws would mix into the rows: the log holds the table alone."""

    def __init__(self, enabled: bool, cfg: TrainConfig, steps_per_epoch: int, state: dict):
        from tqdm.auto import tqdm

        self.by_time = cfg.epochs is None
        self.enabled, self.header_shown = enabled, False
        hidden = not (enabled and sys.stderr.isatty())
        if self.by_time:
            self.bar = tqdm(total=round(cfg.time), initial=round(state["elapsed"]), disable=hidden,
                            file=sys.stderr, dynamic_ncols=True, leave=False, mininterval=0.5,
                            bar_format="{l_bar}{bar}| {n:.0f}/{total:.0f} s [{elapsed}<{remaining}{postfix}]")
        else:
            self.bar = tqdm(total=cfg.epochs * steps_per_epoch, initial=state["step"], disable=hidden,
                            file=sys.stderr, unit="step", dynamic_ncols=True, leave=False, mininterval=0.5)

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc) -> None:
        self.bar.close()

    def show(self, state: dict, loss: float) -> None:
        if self.by_time:
            self.bar.set_postfix_str(f"step {state['step']}, loss {loss:.3f}", refresh=False)
            self.bar.update(min(round(state["elapsed"]), self.bar.total) - self.bar.n)
        else:
            self.bar.update(1)
            self.bar.set_postfix(loss=f"{loss:.3f}", refresh=False)

    def write_row(self, task: Task, row: dict) -> None:
        if not self.enabled:
            return
        if not self.header_shown:
            self.bar.write(format_row(task, None), file=sys.stderr)
            self.header_shown = True
        self.bar.write(format_row(task, row), file=sys.stderr)


def metric_columns(task: Task) -> list[str]:
    return ["epoch", "step", "train_loss", *(f"valid_{m}" if m == "loss" else m for m in task.metrics), "time"]


def row_metrics(task: Task, row: dict) -> dict[str, float]:
    """The validation metrics of one row of metrics.jsonl; a metric added since an older run wrote its
    rows is absent from them."""
    return {m: row[f"valid_{m}"] for m in task.metrics if f"valid_{m}" in row}


def format_row(task: Task, row: dict | None) -> str:
    """One evaluation as a line of the metrics table, or (row None) its header; fixed widths, so the
    lines written one by one during training line up."""
    columns = metric_columns(task)
    if row is None:
        cells = columns
    else:
        metrics = task.format_metrics(row_metrics(task, row))
        cells = [f"{row['epoch']:.2f}", str(row["step"]), f"{row['train_loss']:.4f}",
                 *(metrics.get(m, "-") for m in task.metrics), f"{row['seconds']:.1f}s"]
    return "  ".join(cell.ljust(max(len(name), 8)) for cell, name in zip(cells, columns, strict=True)).rstrip()


def metrics_table(task: Task, history: list[dict]) -> str:
    return "\n".join([format_row(task, None), *(format_row(task, row) for row in history)])
