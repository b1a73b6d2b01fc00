"""The trainer: one plain loop you can read in one screen, and the pure helpers it calls.

Each step, in a fixed order (nanoGPT's): learning rate and momentum for this point of the schedule ->
the stepper's step on the batch (the task's loss, carrying the recurrent state of a stateful model ->
backward -> clip -> optimizer step; or a model's own step; or one count of the data) -> the NaN policy ->
the clock and the bar -> evaluate and checkpoint when due.

What the batches are, what the loss is and which metrics an evaluation gives belong to the task
(scratchlm.tasks.base); how a model learns to its stepper (scratchlm.steppers, chosen by
`Model.learns_by`); the loop, exact resume, several processes, the NaN policy, the time bound and the
checkpoints exist here once for every task and every way of learning.

The one hook a stateful model needs (fast.ai's ModelResetter) is written out in the loop: the carried
state starts empty at each epoch, and evaluation starts its own. The loss stays on the device between
evaluations (`LossMeter`); on a GPU it is read only when the bar is drawn, an evaluation is due or the run
stops, so a step never waits for the device, and a NaN is still named by its step.
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
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np
import torch
from torch import nn

from scratchlm.checkpoint import RunDir
from scratchlm.config import TrainConfig
from scratchlm.distributed import World
from scratchlm.errors import Interrupted, UserError
from scratchlm.models.base import Model
from scratchlm.speed import autocast, compile_model, to_device
from scratchlm.steppers import make_stepper
from scratchlm.tasks.base import Batches, Task

MAX_SKIPPED_IN_A_ROW = 10  # --on-nan skip gives up after this many bad batches in a row
EVALUATIONS = 10  # a run bounded by time, without --eval-every, is evaluated at each tenth of its budget


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


@dataclass
class RunState:
    """Where a run is: saved in state.pt beside the optimizer's and the RNGs' states, and restored exactly."""

    step: int = 0  # optimizer steps taken
    epoch: int = 0  # epochs finished
    batch: int = 0  # the next batch of the epoch under way
    carry: Any = None  # the recurrent state the next batch starts from (in state.pt: every process' rows)
    elapsed: float = 0.0  # seconds of training, evaluations not counted
    tokens: int = 0  # tokens read, by every process
    best_score: float = math.inf  # the task's score of the best checkpoint, lower is better (Task.score)
    best_step: int = -1  # its step
    evals_since_best: int = 0  # evaluations without a better score (--patience)
    history: list[dict] = field(default_factory=list)  # one row per evaluation: metrics.jsonl
    running_loss: float = 0.0  # the training loss summed since the last evaluation ...
    running_weight: float = 0.0  # ... and its weight (steps, or pairs for a model that steps itself)
    finished: bool = False  # the run reached its bound
    nan_streak: int = 0  # batches skipped in a row (--on-nan skip)
    skipped: int = 0  # batches skipped in all
    tenths: int = 0  # tenths of a --time budget evaluated at
    evaluated_at: float = 0.0  # `elapsed` at the last evaluation
    evaluation_seconds: float = 0.0  # how long the last evaluation took

    def saved(self) -> dict:
        """A plain dict for torch.save (loaded with weights_only=True)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_saved(cls, saved: dict, progress_of: Callable[[float], float]) -> RunState:
        """The state of a state.pt, written by this release or an earlier one (which named two fields otherwise and
        had no tenths: those already passed are counted, so no evaluation is repeated)."""
        renamed = {"best_loss": "best_score", "running_steps": "running_weight"}
        values = {renamed.get(k, k): v for k, v in saved.items() if renamed.get(k, k) in cls.field_names()}
        state = cls(**values)
        if "tenths" not in saved:
            state.tenths = int(progress_of(state.elapsed) * EVALUATIONS)
        return state

    @classmethod
    def field_names(cls) -> set[str]:
        return {f.name for f in fields(cls)}


class LossMeter:
    """The training loss between two evaluations, summed where it is computed (a GPU's memory) and read only
    when it is shown or checked, and the first step whose loss was not finite, for the NaN policy."""

    def __init__(self, total: float = 0.0, weight: float = 0.0):
        self.total: torch.Tensor | float = total
        self.weight = weight
        self.bad_step: torch.Tensor | None = None  # the first unchecked step with a non-finite loss (-1: none)
        self.bad_loss: torch.Tensor | None = None  # ... and that loss

    def add(self, loss: torch.Tensor | float, weight: float, step: int) -> None:
        if not weight:  # no training loss (a model that counts)
            return
        if not isinstance(loss, torch.Tensor):  # read already, and finite
            self.total, self.weight = self.total + loss * weight, self.weight + weight
            return
        finite = torch.isfinite(loss)
        self.total = self.total + torch.where(finite, loss.double() * weight, 0.0)
        self.weight += weight
        if self.bad_step is None:
            self.bad_step, self.bad_loss = torch.full((), -1, device=loss.device), loss.new_zeros((), dtype=torch.float64)
        first = ~finite & (self.bad_step < 0)
        self.bad_step = torch.where(first, step, self.bad_step)
        self.bad_loss = torch.where(first, loss.double(), self.bad_loss)

    def first_bad(self, world: World) -> tuple[int, float] | None:
        """The first step of any process whose loss was not finite, and that loss; None when there was none.
        Every process must call it at the same point: it is one collective."""
        if self.bad_step is None and world.size == 1:
            return None
        step = self.bad_step if self.bad_step is not None else torch.full((), -1)
        loss = self.bad_loss if self.bad_loss is not None else torch.zeros((), dtype=torch.float64)
        found = world.gather_scalars(torch.stack([step.double(), loss]))  # (processes, 2)
        bad = [(int(s), float(v)) for s, v in found.tolist() if s >= 0]
        return min(bad) if bad else None

    def mean(self, world: World) -> float:
        """The mean training loss over the steps since the last evaluation, over every process; NaN with none."""
        total = world.sum(torch.as_tensor(self.total, dtype=torch.float64).reshape(1)).item() / world.size
        return total / self.weight if self.weight else math.nan

    def reset(self) -> None:
        self.total, self.weight = 0.0, 0.0

    def saved(self) -> tuple[float, float]:
        return float(self.total), self.weight


def checks_each_step(device: torch.device, cfg: TrainConfig) -> bool:
    """Is each loss read before its step moves the weights? Where that is free (the CPU) or asked for (--on-nan
    skip); on a GPU a loss is read at the next evaluation, save or bar update instead, so that a step never
    waits for the device, and a loss that was not finite stops the run there, named by its step."""
    return device.type == "cpu" or cfg.on_nan == "skip"


class Trainer:
    """Trains one model on one task's batches into one run directory; `fit()` is the whole loop.

    With several processes (`world`), each trains on its share of every batch (the batches given are
    its shards) through `net`, the model under DistributedDataParallel; `model` stays the plain one
    that is evaluated and saved. Without a run directory (the learning-rate finder) nothing is saved.
    How the model learns is its stepper's (scratchlm/steppers.py), chosen by `Model.learns_by`.
    """

    def __init__(self, model: Model, task: Task, train_batches: Batches, valid_batches: Batches,
                 cfg: TrainConfig, run_dir: RunDir | None, device: torch.device, precision: str = "fp32",
                 progress: bool = True, on_evaluation: Callable[[dict], None] | None = None,
                 world: World | None = None):
        self.model, self.task, self.cfg, self.run_dir, self.world = model, task, cfg, run_dir, world or World()
        # A model of counts has nothing to train: no DDP and no compiling
        counts = model.learns_by == "counting"
        self.net = model if counts else compile_model(self.world.wrap(model), cfg.compile)
        self.stepper = make_stepper(self.net, model, task, cfg, device, precision, self.world)
        self.train_batches, self.valid_batches = train_batches, valid_batches
        self.device, self.precision, self.progress = device, precision, progress
        self.on_evaluation = on_evaluation
        self.check_each_step = checks_each_step(device, cfg)
        self.steps_per_epoch = len(self.stepper.epoch(train_batches))
        self.epoch_length = self.steps_per_epoch  # batches in the epoch under way (random_bptt recuts them)
        self.state = RunState()
        self.meter = LossMeter()

    def restore(self, saved: dict) -> None:
        """Continue from a saved state: same step, data position, carried state, RNGs and optimizer."""
        self.stepper.load_state_dict(saved["optimizer"])
        set_rng_state(saved["rng"])  # the same on every process: they all draw alike
        self.state = RunState.from_saved({k: v for k, v in saved.items() if k not in ("optimizer", "rng")},
                                         self.progress_of)
        self.state.carry = self.world.rows_of(self.state.carry, self.device)
        self.meter = LossMeter(self.state.running_loss, self.state.running_weight)

    def progress_of(self, elapsed: float) -> float:
        """How far through the run we are, in [0, 1], by steps or by time, whichever is further."""
        by_steps = self.state.step / (self.cfg.epochs * self.steps_per_epoch) if self.cfg.epochs else 0.0
        by_time = elapsed / self.cfg.time if self.cfg.time else 0.0
        return max(by_steps, by_time)

    def set_rates(self, progress: float, scale: float = 1.0) -> None:
        """The schedule's learning rate (times `scale`) and Adam's momentum at this point of the run."""
        for group in self.stepper.param_groups:
            group["lr"] = lr_at(progress, self.cfg) * scale * group.get("lr_scale", 1.0)
        for group in self.stepper.momentum_groups:
            group["betas"] = (momentum_at(progress, self.cfg), group["betas"][1])

    def fit(self) -> list[dict]:
        s, cfg = self.state, self.cfg
        self.net.train()
        start, stopping = time.perf_counter() - s.elapsed, False
        s.finished = self.bound_reached(s.elapsed)
        with StopRequest().installed() as stop, Progress(self.progress, cfg, self.steps_per_epoch, s) as bar:
            while not s.finished:
                carry = s.carry if s.batch > 0 else None  # the hidden state starts empty each epoch
                batches = self.stepper.epoch(self.task.epoch_batches(self.train_batches, s.epoch, cfg))
                self.epoch_length = len(batches)
                for k in range(s.batch, len(batches)):
                    batch = to_device(batches.batch(k), self.device)
                    progress = self.progress_of(s.elapsed)  # the clock every process agreed on
                    self.set_rates(progress, self.task.lr_scale(batch, cfg))
                    step = self.stepper.step(batch, carry, progress, self.check_each_step)
                    if step.taken:
                        self.meter.add(step.loss, step.weight, s.step + 1)
                        s.nan_streak = 0
                    else:  # raises unless --on-nan skip
                        self.skip_bad_loss(step.loss)
                    carry = step.carry

                    s.step, s.batch, s.tokens = s.step + 1, k + 1, s.tokens + step.tokens
                    s.elapsed, stopping = self.world.agree(time.perf_counter() - start, stop.requested)
                    bar.show(s, step.loss)
                    epoch_done = s.batch == len(batches)
                    if epoch_done:
                        s.epoch, s.batch, carry = s.epoch + 1, 0, None
                    s.carry = carry
                    s.finished = self.bound_reached(s.elapsed) or (epoch_done and self.stepper.once)
                    if self.evaluation_due(epoch_done) or s.finished:
                        began = time.perf_counter()
                        self.evaluate_and_checkpoint(bar)
                        start += time.perf_counter() - began  # the clock counts training, not evaluating
                        # rank 0's duration, and whether a stop was asked during the evaluation
                        s.evaluation_seconds, stopping = self.world.agree(time.perf_counter() - began, stop.requested)
                        s.evaluated_at = s.elapsed
                    elif stopping:  # save where we are, without an evaluation the run did not ask for
                        self.save(is_best=False)
                    if s.finished or stopping or epoch_done:
                        break
                if stopping and not s.finished:
                    raise Interrupted(s.step)
        return s.history

    def evaluation_due(self, epoch_done: bool) -> bool:
        """Every --eval-every steps; else at each epoch's end, or, in a run bounded by time (whose epochs
        can be longer than the budget), at each tenth of it, so that its curve has points to draw. A
        tenth waits until the run has trained, since the last evaluation, as long as that evaluation
        took: a short budget on a large validation set spends at most half its wall time evaluating,
        not ten evaluations for a few seconds of training."""
        s, cfg = self.state, self.cfg
        if cfg.eval_every is not None:
            return s.step % cfg.eval_every == 0
        if cfg.time is None:
            return epoch_done
        tenths = min(int(self.progress_of(s.elapsed) * EVALUATIONS), EVALUATIONS)
        if tenths > s.tenths and s.elapsed - s.evaluated_at >= s.evaluation_seconds:
            s.tenths = tenths
            return True
        return False

    def skip_bad_loss(self, loss: float, step: int | None = None) -> None:
        """A NaN or inf loss: stop, keeping the last good checkpoint, or (--on-nan skip) drop the batch
        and go on, unless the loss stays bad batch after batch."""
        s = self.state
        step = s.step + 1 if step is None else step
        advice = "the last good checkpoint is kept; try a lower --lr or --grad-clip 1.0"
        if self.cfg.on_nan == "stop":
            raise UserError(f"the loss became {loss} at step {step}; {advice}, or --on-nan skip")
        if s.nan_streak + 1 >= MAX_SKIPPED_IN_A_ROW:
            raise UserError(f"the loss was {loss} for {MAX_SKIPPED_IN_A_ROW} batches in a row, up to step "
                            f"{step}; skipping does not help: {advice}")
        s.nan_streak, s.skipped = s.nan_streak + 1, s.skipped + 1
        warnings.warn(f"the loss became {loss} at step {step}; the batch is skipped", stacklevel=2)

    def check_losses(self) -> None:
        """Before anything is saved: a loss that was not finite since the last check stops the run here,
        naming its step, and the checkpoint before it stays the last (the weights have taken its step)."""
        if not self.check_each_step and (bad := self.meter.first_bad(self.world)):
            step, loss = bad
            self.skip_bad_loss(loss, step)

    def bound_reached(self, elapsed: float) -> bool:
        s, cfg = self.state, self.cfg
        return ((cfg.epochs is not None and s.epoch >= cfg.epochs)
                or (cfg.time is not None and elapsed >= cfg.time)
                or (cfg.patience is not None and s.evals_since_best >= cfg.patience))

    def evaluate_and_checkpoint(self, bar: Progress) -> None:
        s = self.state
        self.check_losses()
        train_loss = self.meter.mean(self.world)
        self.meter.reset()
        metrics = evaluate(self.model, self.valid_batches, self.task, self.device, self.precision, self.world)
        row = {"step": s.step, "epoch": round(s.epoch + s.batch / self.epoch_length, 4),
               "train_loss": train_loss, **{f"valid_{name}": metrics[name] for name in self.task.metrics},
               "lr": self.stepper.param_groups[0]["lr"] if self.stepper.param_groups else 0.0, "tokens": s.tokens,
               "seconds": round(s.elapsed, 3), "tokens_per_second": round(s.tokens / max(s.elapsed, 1e-9), 1)}
        s.history = s.history + [row]
        score = self.task.best.score(metrics, self.cfg.best_by)
        is_best = score < s.best_score
        if is_best:
            s.best_score, s.best_step, s.evals_since_best = score, s.step, 0
        else:
            s.evals_since_best += 1
            s.finished = s.finished or self.bound_reached(s.elapsed)
        self.save(is_best)
        if self.world.is_main:
            bar.write_row(self.task, row)
            if self.on_evaluation:
                self.on_evaluation(row)

    def save(self, is_best: bool) -> None:
        """Rank 0 writes the checkpoint and the metrics, while the other processes wait."""
        if self.run_dir is None:
            return
        self.check_losses()
        state = self.checkpoint_state()  # every process takes part: it gathers their carried rows
        if self.world.is_main:
            self.run_dir.save_checkpoint(self.model, state, is_best)
            self.run_dir.write_metrics(self.state.history)
        self.world.barrier()

    def checkpoint_state(self) -> dict:
        """The state of the whole run: the carried state holds the rows of every process."""
        self.state.running_loss, self.state.running_weight = self.meter.saved()
        return {**self.state.saved(), "carry": self.world.gather_rows(self.state.carry),
                "optimizer": self.stepper.state_dict(), "rng": rng_state()}


class Progress:
    """The progress bar on stderr, and the evaluation rows written above it as one table.

    A run bounded by time shows its seconds against the budget, elapsed and remaining; one bounded by
    epochs, its steps against the total. When stderr is not a terminal (`| tee log`, `2> file`) there is
    no bar, whose redraws would mix into the rows: the log holds the table alone."""

    def __init__(self, enabled: bool, cfg: TrainConfig, steps_per_epoch: int, state: RunState):
        from tqdm.auto import tqdm

        self.by_time = cfg.epochs is None
        self.enabled, self.header_shown = enabled, False
        self.hidden = hidden = not (enabled and sys.stderr.isatty())
        self.shown_at = 0.0  # when the loss was last read for the bar
        if self.by_time:
            self.bar = tqdm(total=round(cfg.time), initial=round(state.elapsed), disable=hidden,
                            file=sys.stderr, dynamic_ncols=True, leave=False, mininterval=0.5,
                            bar_format="{l_bar}{bar}| {n:.0f}/{total:.0f} s [{elapsed}<{remaining}{postfix}]")
        else:
            self.bar = tqdm(total=cfg.epochs * steps_per_epoch, initial=state.step, disable=hidden,
                            file=sys.stderr, unit="step", dynamic_ncols=True, leave=False, mininterval=0.5)

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc) -> None:
        self.bar.close()

    def show(self, state: RunState, loss: torch.Tensor | float) -> None:
        """The bar after a step; the loss is read (from the device) only when the bar is drawn again."""
        if self.hidden:
            return
        if time.monotonic() - self.shown_at >= self.bar.mininterval:
            self.shown_at = time.monotonic()
            if self.by_time:
                self.bar.set_postfix_str(f"step {state.step}, loss {float(loss):.3f}", refresh=False)
            else:
                self.bar.set_postfix(loss=f"{float(loss):.3f}", refresh=False)
        if self.by_time:
            self.bar.update(min(round(state.elapsed), self.bar.total) - self.bar.n)
        else:
            self.bar.update(1)

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
