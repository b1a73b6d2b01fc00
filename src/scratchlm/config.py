"""How to train: the one source of the training options. `TrainConfig`'s fields, their defaults and the
comments beside them are what config.json saves, what `scratchlm.train(**options)` takes, and the options
and help of `scratchlm train` (scratchlm/cli/__init__.py builds them from here).
"""

from __future__ import annotations

import inspect
import re
import typing
from dataclasses import Field, dataclass, field, fields
from typing import Any, Literal

from scratchlm.errors import UserError

SCHEDULES = ("onecycle", "cosine", "invsqrt", "linear", "constant")
OPTIMIZERS = ("adamw", "muon")


@dataclass
class TrainConfig:
    """How to train; saved in config.json. None for epochs/time means no bound of that kind."""

    epochs: int | None = None  # passes over the training data
    time: float | None = field(default=None, metadata={"parse": "duration"})  # training time budget: 90s, 5m, 1h
    #                                                           (evaluations not counted); stops at the first bound
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
    best_by: str | None = None  # the metric the best checkpoint and patience follow; None: the task's (Task.best)
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


def option_fields(cls: type) -> list[tuple[Field, Any, str]]:
    """(field, its type, what it means) for each field of a config dataclass: the meaning is the comment beside
    the field in its source, so an option's help cannot drift from the field it sets."""
    comments = field_comments(inspect.getsource(cls))
    hints = typing.get_type_hints(cls)
    return [(f, hints[f.name], comments.get(f.name, "")) for f in fields(cls)]


def field_comments(source: str) -> dict[str, str]:
    """{field: comment} from a dataclass' source. A comment goes on over the next lines whose text is indented
    past their `#` (aligned under the comment above); a plain `# ...` line starts a new remark."""
    comments: dict[str, str] = {}
    name = None
    for line in source.splitlines():
        if match := re.match(r"^\s+(\w+):[^#\n]*#\s*(.+)$", line):
            name = match[1]
            comments[name] = match[2].strip()
        elif name and (more := re.match(r"^\s+#\s{2,}(.+)$", line)):
            comments[name] += " " + more[1].strip()
        else:
            name = None
    return comments
