"""The trainer: one plain loop you can read in one screen, and the pure helpers it calls.

Each step, in a fixed order (nanoGPT's): learning rate and momentum for this point of the schedule ->
forward (carrying the recurrent state for stateful models) -> stop on a NaN/inf loss -> backward ->
clip -> optimizer step -> detach the state (truncated BPTT) -> evaluate and checkpoint when due.

The one hook a stateful model needs (fast.ai's ModelResetter) is written out in the loop: the carried
state starts empty at each epoch, and evaluation starts its own.
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
from dataclasses import asdict, dataclass, fields
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from scratchlm.checkpoint import RunDir
from scratchlm.data.batches import Batches
from scratchlm.distributed import World
from scratchlm.errors import Interrupted, UserError
from scratchlm.models.base import detach_state
from scratchlm.muon import Muon, MuonAdamW, hidden_matrices
from scratchlm.speed import autocast, compile_model, fused_adamw, to_device

SCHEDULES = ("onecycle", "cosine", "constant")
OPTIMIZERS = ("adamw", "muon")
MAX_SKIPPED_IN_A_ROW = 10  # --on-nan skip gives up after this many bad batches in a row


@dataclass
class TrainConfig:
    """How to train; saved in config.json. None for epochs/time means no bound of that kind."""

    epochs: int | None = None  # passes over the training stream
    time: float | None = None  # seconds of training; stops at the first bound reached
    lr: float = 3e-3  # peak learning rate
    schedule: Literal["onecycle", "cosine", "constant"] = "onecycle"  # learning rate over the run
    warmup: float = 0.25  # share of the run spent rising to the peak (onecycle, cosine)
    weight_decay: float = 0.01  # decoupled weight decay on the matrices (AdamW, Loshchilov and Hutter 2019)
    optimizer: Literal["adamw", "muon"] = "adamw"  # muon: Muon for the hidden matrices, AdamW for the rest
    batch_size: int = 64  # rows of the stream per batch
    bptt: int = 16  # tokens per row per batch: the back-propagation window
    random_bptt: bool = False  # vary the window around bptt each batch (AWD-LSTM); stateful models only
    grad_clip: float | None = None  # clip the gradient norm to this; None: no clipping
    patience: int | None = None  # stop after this many evaluations without a better validation loss
    eval_every: int | None = None  # steps between evaluations; None: at the end of each epoch
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
        if self.weight_decay < 0 or (self.grad_clip is not None and self.grad_clip <= 0):
            raise UserError("--weight-decay must be >= 0 and --grad-clip > 0")
        if not 1 <= self.batch_size <= 1_000_000 or not 1 <= self.bptt <= 1_000_000:
            raise UserError(f"--batch-size {self.batch_size} and --bptt {self.bptt} must be between 1 and 1,000,000")
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
    cosine down to lr/1e5. cosine: linear warm-up, cosine to lr/10. constant: lr.
    """
    p = min(max(progress, 0.0), 1.0)
    if cfg.schedule == "constant":
        return cfg.lr
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
def evaluate(model: nn.Module, stream: Batches, device: torch.device, precision: str = "fp32",
             world: World | None = None) -> dict:
    """Loss, accuracy and perplexity over a whole stream; perplexity is exp(mean loss over all tokens).

    The mean is taken over tokens, not over batches, so a shorter last batch counts for what it holds.
    With several processes each reads its rows of the stream and the sums are added up before the
    means are taken, so the numbers are those of one process reading it all.
    """
    was_training = model.training
    model.eval()
    sums = torch.zeros(3, dtype=torch.float64, device=device)  # summed loss, right guesses, tokens
    state = None  # a fresh state: evaluation never continues the training rows
    for x, y in stream.batches():
        if len(x) == 0:  # a process with no validation rows (fewer rows than processes) adds zeros
            break
        x, y = x.to(device), y.to(device)
        with autocast(device, precision):
            logits, _, state = model(x, state=state if model.carries_state else None)
        targets = y[:, -logits.size(1):]
        sums[0] += F.cross_entropy(logits.reshape(-1, logits.size(-1)).float(), targets.reshape(-1), reduction="sum")
        sums[1] += (logits.argmax(-1) == targets).sum()
        sums[2] += targets.numel()
    model.train(was_training)
    total_loss, correct, count = (world or World()).sum(sums).tolist()
    mean = total_loss / count
    return {"loss": mean, "accuracy": correct / count, "perplexity": math.exp(min(mean, 700)),
            "tokens": int(count)}


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
    """Trains one model on one stream into one run directory; `fit()` is the whole loop.

    With several processes (`world`), each trains on its rows of every batch (the streams given are
    its shards) through `net`, the model under DistributedDataParallel; `model` stays the plain one
    that is evaluated and saved.
    """

    def __init__(self, model: nn.Module, train_stream: Batches, valid_stream: Batches, cfg: TrainConfig,
                 run_dir: RunDir, device: torch.device, precision: str = "fp32", progress: bool = True,
                 on_evaluation: Callable[[dict], None] | None = None, world: World | None = None):
        self.model, self.cfg, self.run_dir, self.world = model, cfg, run_dir, world or World()
        self.net = compile_model(self.world.wrap(model), cfg.compile)
        self.train_stream, self.valid_stream = train_stream, valid_stream
        self.device, self.precision, self.progress = device, precision, progress
        self.on_evaluation = on_evaluation
        self.optimizer = make_optimizer(model, cfg, device)
        self.steps_per_epoch = len(train_stream)
        self.state = {"step": 0, "epoch": 0, "batch": 0, "carry": None, "elapsed": 0.0, "tokens": 0,
                      "best_loss": math.inf, "best_step": -1, "evals_since_best": 0, "history": [],
                      "running_loss": 0.0, "running_steps": 0, "finished": False, "nan_streak": 0, "skipped": 0}
        self.epoch_length = self.steps_per_epoch  # batches in the epoch under way (random_bptt recuts them)

    def restore(self, state: dict) -> None:
        """Continue from a saved state: same step, data position, carried state, RNGs and optimizer."""
        self.optimizer.load_state_dict(state.pop("optimizer"))
        set_rng_state(state.pop("rng"))  # the same on every process: they all draw alike
        self.state.update(state, carry=self.world.rows_of(state.get("carry"), self.device))

    def progress_of(self, elapsed: float) -> float:
        """How far through the run we are, in [0, 1], by steps or by time, whichever is further."""
        by_steps = self.state["step"] / (self.cfg.epochs * self.steps_per_epoch) if self.cfg.epochs else 0.0
        by_time = elapsed / self.cfg.time if self.cfg.time else 0.0
        return max(by_steps, by_time)

    def fit(self) -> list[dict]:
        s, cfg, model = self.state, self.cfg, self.model
        self.net.train()
        start, stopping = time.perf_counter() - s["elapsed"], False
        s["finished"] = self.bound_reached(s["elapsed"])
        bar = progress_bar(self.progress, cfg.epochs * self.steps_per_epoch if cfg.epochs else None, s["step"])
        with StopRequest().installed() as stop, bar:
            while not s["finished"]:
                carry = s["carry"] if s["batch"] > 0 else None  # the hidden state starts empty each epoch
                batches = self.epoch_batches(s["epoch"])
                self.epoch_length = len(batches)
                for k in range(s["batch"], len(batches)):
                    x, y = to_device(batches.batch(k), self.device)
                    progress = self.progress_of(s["elapsed"])  # the clock every process agreed on
                    # A shorter random window gets a proportionally smaller step (Merity et al. 2017, 4.1).
                    window_scale = x.size(1) / cfg.bptt if cfg.random_bptt else 1.0
                    for group in self.optimizer.param_groups:
                        group["lr"] = lr_at(progress, cfg) * window_scale
                        if "betas" in group:  # Adam's; Muon keeps its own momentum
                            group["betas"] = (momentum_at(progress, cfg), group["betas"][1])
                    with autocast(self.device, self.precision):
                        _, loss, carry = self.net(x, y, carry if model.carries_state else None)
                    loss_value = self.world.mean_loss(loss)  # the whole batch's: the same on every process
                    finite = math.isfinite(loss_value)
                    if finite:
                        self.optimizer.zero_grad(set_to_none=True)
                        loss.backward()
                        if cfg.grad_clip:
                            nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
                        self.optimizer.step()
                        carry = detach_state(carry)
                        s["running_loss"] += loss_value
                        s["running_steps"] += 1
                        s["nan_streak"] = 0
                    else:  # raises unless --on-nan skip; a state that went through the NaN is NaN too
                        self.skip_bad_loss(loss_value)
                        carry = None

                    s["step"], s["batch"] = s["step"] + 1, k + 1
                    s["tokens"] += x.numel() * self.world.size
                    s["elapsed"], stopping = self.world.agree(time.perf_counter() - start, stop.requested)
                    bar.update(1)
                    bar.set_postfix(loss=f"{loss_value:.3f}", refresh=False)
                    epoch_done = s["batch"] == len(batches)
                    if epoch_done:
                        s["epoch"], s["batch"], carry = s["epoch"] + 1, 0, None
                    s["carry"] = carry
                    s["finished"] = self.bound_reached(s["elapsed"])
                    due = epoch_done if cfg.eval_every is None else s["step"] % cfg.eval_every == 0
                    if due or s["finished"]:
                        self.evaluate_and_checkpoint(bar)
                        _, stopping = self.world.agree(s["elapsed"], stop.requested)  # asked during evaluation
                    elif stopping:  # save where we are, without an evaluation the run did not ask for
                        self.save(is_best=False)
                    if s["finished"] or stopping or epoch_done:
                        break
                if stopping and not s["finished"]:
                    raise Interrupted(s["step"])
        return s["history"]

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
        """The batches of one epoch: the same every epoch, or freshly cut windows with random_bptt."""
        if self.cfg.random_bptt:
            return self.train_stream.for_epoch(epoch, self.cfg.seed)
        return self.train_stream

    def bound_reached(self, elapsed: float) -> bool:
        s, cfg = self.state, self.cfg
        return ((cfg.epochs is not None and s["epoch"] >= cfg.epochs)
                or (cfg.time is not None and elapsed >= cfg.time)
                or (cfg.patience is not None and s["evals_since_best"] >= cfg.patience))

    def evaluate_and_checkpoint(self, bar) -> None:
        s = self.state
        train_loss = s["running_loss"] / max(s["running_steps"], 1)
        s["running_loss"], s["running_steps"] = 0.0, 0
        metrics = evaluate(self.model, self.valid_stream, self.device, self.precision, self.world)
        row = {"step": s["step"], "epoch": round(s["epoch"] + s["batch"] / self.epoch_length, 4),
               "train_loss": train_loss, "valid_loss": metrics["loss"], "valid_accuracy": metrics["accuracy"],
               "valid_perplexity": metrics["perplexity"], "lr": self.optimizer.param_groups[0]["lr"],
               "tokens": s["tokens"], "seconds": round(s["elapsed"], 3),
               "tokens_per_second": round(s["tokens"] / max(s["elapsed"], 1e-9), 1)}
        s["history"] = s["history"] + [row]
        is_best = metrics["loss"] < s["best_loss"]
        if is_best:
            s["best_loss"], s["best_step"], s["evals_since_best"] = metrics["loss"], s["step"], 0
        else:
            s["evals_since_best"] += 1
            s["finished"] = s["finished"] or self.bound_reached(s["elapsed"])
        self.save(is_best)
        if self.on_evaluation and self.world.is_main:
            self.on_evaluation(row)
        if self.progress:
            bar.write(format_row(row), file=sys.stderr)

    def save(self, is_best: bool) -> None:
        """Rank 0 writes the checkpoint and the metrics, while the other processes wait."""
        state = self.checkpoint_state()  # every process takes part: it gathers their carried rows
        if self.world.is_main:
            self.run_dir.save_checkpoint(self.model, state, is_best)
            self.run_dir.write_metrics(self.state["history"])
        self.world.barrier()

    def checkpoint_state(self) -> dict:
        """The state of the whole run: the carried state holds the rows of every process."""
        return {**self.state, "carry": self.world.gather_rows(self.state["carry"]),
                "optimizer": self.optimizer.state_dict(), "rng": rng_state()}


def make_optimizer(model: nn.Module, cfg: TrainConfig, device: torch.device) -> torch.optim.Optimizer | MuonAdamW:
    """AdamW, with weight decay on matrices only: decaying biases and norm gains only pulls them to
    zero for no gain (GPT-2, nanoGPT). The fused CUDA kernel on a GPU. `optimizer="muon"`: Muon for the
    hidden matrices, this AdamW for the rest (scratchlm.muon)."""
    hidden = hidden_matrices(model, model.config.vocab_size) if cfg.optimizer == "muon" else []
    taken = {id(p) for p in hidden}
    rest = [p for p in model.parameters() if p.requires_grad and id(p) not in taken]
    groups = [{"params": [p for p in rest if p.dim() >= 2], "weight_decay": cfg.weight_decay},
              {"params": [p for p in rest if p.dim() < 2], "weight_decay": 0.0}]
    adamw = torch.optim.AdamW(groups, lr=cfg.lr, betas=(0.9, 0.99), eps=1e-8, fused=fused_adamw(device))
    if not hidden:
        return adamw
    return MuonAdamW(Muon(hidden, lr=cfg.lr, weight_decay=cfg.weight_decay), adamw)


def format_row(row: dict) -> str:
    return (f"epoch {row['epoch']:7.2f}  step {row['step']:>7}  train {row['train_loss']:.4f}  "
            f"valid {row['valid_loss']:.4f}  accuracy {row['valid_accuracy']:.4f}  "
            f"perplexity {row['valid_perplexity']:.3f}  {row['seconds']:.1f}s")


def progress_bar(enabled: bool, total: int | None, initial: int):
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, disable=not enabled, file=sys.stderr, unit="step",
                dynamic_ncols=True, leave=False, mininterval=0.5)


def train_config_dict(cfg: TrainConfig) -> dict:
    return asdict(cfg)
