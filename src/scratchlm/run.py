"""A trained run, rebuilt from its directory alone.

    run = scratchlm.load("runs/hn-rnn")     # the Run subclass of the run's task
    run.generate("one . two .", tokens=20)
    run.eval()

`Run` holds what every task's run has (config, tokenizers, the best weights on a device); each task
adds its verbs in a subclass, in the task's module (scratchlm/tasks/: a language model's generate, stream,
score and eval).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from scratchlm.checkpoint import BEST, LAST, RunDir, load_weights, weights_ok
from scratchlm.data.tokenize import Tokenizer
from scratchlm.errors import UserError
from scratchlm.models.base import parameter_count
from scratchlm.models.registry import ModelSpec, get_spec
from scratchlm.speed import resolve_device, tune_cpu_threads
from scratchlm.tasks import task_of_run
from scratchlm.trainer import TrainConfig


@dataclass
class Run:
    """Everything a run directory holds, loaded: config, tokenizers and the best weights."""

    path: Path
    config: dict
    spec: ModelSpec
    task: Any  # the run's Task (scratchlm.tasks.base)
    tokenizers: dict[str, Tokenizer]
    model: torch.nn.Module
    device: torch.device

    @classmethod
    def load(cls, path: str | Path, device: str = "auto") -> Run:
        """Rebuild a run from its directory, as the Run class of its task.

        Called on a task's subclass, a run of another task is refused in one line: a verb never guesses
        at a model it was not made for.
        """
        run_dir = RunDir(path)
        run_dir.recover()
        config = run_dir.read_config()
        task = task_of_run(config, path)
        if not issubclass(task.run_class, cls):
            raise UserError(f"{path} is a {task.title} run; this needs a {cls.task_title()} run")
        spec = get_spec(config["model"]["name"])
        tokenizers = task.read_tokenizers(run_dir)
        model = spec.build(spec.make_config(task.model_dims(tokenizers), config["model"]["config"]))
        load_best_weights(run_dir, model)
        device_ = resolve_device(device)
        tune_cpu_threads(device_, parameter_count(model))  # as in training
        return task.run_class(Path(path), config, spec, task, tokenizers, model.to(device_).eval(), device_)

    @classmethod
    def task_title(cls) -> str:
        return "scratchlm"

    @property
    def metrics(self) -> list[dict]:
        """One row per evaluation during training, as metrics.jsonl holds them."""
        return RunDir(self.path).read_metrics()

    @property
    def train_config(self) -> TrainConfig:
        return TrainConfig(**self.config["train"])


def load_best_weights(run_dir: RunDir, model: torch.nn.Module) -> None:
    """model.safetensors, or the latest weights when there is no best yet or the best file is damaged."""
    best, last = run_dir.file(BEST), run_dir.file(LAST)
    if not best.exists() and not last.exists():
        raise UserError(f"{run_dir.path}: has no weights yet (training stopped before its first evaluation); "
                        "continue it with `scratchlm train --resume`")
    if not best.exists():
        load_weights(last, model)
        return
    try:
        load_weights(best, model)
    except UserError as e:
        if not last.exists() or "damaged" not in str(e) or not weights_ok(last):
            raise
        warnings.warn(f"{best} is damaged; using the latest weights, {LAST}, instead", stacklevel=3)
        load_weights(last, model)
