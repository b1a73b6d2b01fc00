"""The task seam: what differs between language modelling, translation, embeddings and classification.

One trainer, one run directory, one CLI and one Python API serve every task; each task is one class
in one file of this package, and the layers above call only the methods below. fairseq's `FairseqTask`
is the model (a task owns its data, batches, step and metrics; the trainer calls it), kept to the
fewest methods that work:

    data_config(options)          the user's data options -> a dataclass saved in config.json
    check_resume(saved, options)  refuse a data option that differs from the run being resumed
    load_data(cfg, ...)           read and tokenize -> TaskData (tokenizers, content hash, summary)
    model_dims(tokenizers)        the model config fields the data fills (vocab_size, ...)
    batches(data, cfg, model, world)
                                  this process' train and validation Batches (see below)
    loss(net, model, batch, carry, progress)
                                  one training step's loss, the carried state, the tokens it read
                                  (`progress` in [0, 1]: where the run is, for a schedule of the task's own)
    eval_sums(model, batch, carry)
                                  one validation batch as sums that add across batches and processes
    finish(sums)                  the sums -> named metrics (`metrics` lists them; `headline` is the one
                                  the ladder ranks by; `score` the one the best checkpoint is kept by)

and, for the verbs, `run_class` (the Python API's Run for this task's runs: a subclass of `Run`, below)
and `tokenizer_files` (what the run directory holds besides the weights). How a model learns (gradient
steps, its own steps, counting) is the model's (models/base.py) and its stepper's (scratchlm/steppers.py),
not the task's. A few hooks below serve one task each, and say which.

The batches protocol, which `LMStream` and `WindowBatches` follow and every task's batches must:

    len(batches)         batches in one epoch
    batches.batch(k)     batch k, a tuple of tensors: the same k always gives the same batch, so a
                         resumed run skips to its saved index and reads what the first run would have
    batches.batches()    batch 0, 1, ... in order (evaluation)
    batches.for_epoch(epoch, seed)
                         (optional) the epoch's batches when they change from epoch to epoch, drawn
                         from (seed, epoch) alone: random-length BPTT, shuffled windows or pairs
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol

import torch
from torch import nn

from scratchlm.checkpoint import BEST, LAST, RunDir, load_weights, weights_ok
from scratchlm.config import TrainConfig
from scratchlm.data.tokenize import Tokenizer, tokenizer_from_file
from scratchlm.distributed import World
from scratchlm.errors import UserError
from scratchlm.files import atomic_write_json
from scratchlm.models.base import parameter_count
from scratchlm.models.registry import ModelSpec, get_spec
from scratchlm.releases import complete_run_config
from scratchlm.speed import resolve_device, tune_cpu_threads
from scratchlm.tasks import task_of_run

Batch = tuple[torch.Tensor, ...]


class Batches(Protocol):
    def __len__(self) -> int: ...
    def batch(self, k: int) -> Batch: ...
    def batches(self, start: int = 0): ...


class TaskData(Protocol):
    """What a task's `load_data` returns: its own dataclass, with at least these three."""

    tokenizers: dict[str, Tokenizer]  # file name in the run directory -> tokenizer
    content_hash: str  # of the bytes read: a resumed run must find the same

    def summary(self) -> dict[str, Any]: ...  # for config.json: sizes, encodings, ...


@dataclass(frozen=True)
class BestCheckpoint:
    """Which evaluation's weights model.safetensors keeps, and --patience follows: the task's choice of metric,
    or one the user picks (--best-by) among those it offers."""

    ways: dict[str, str]  # metric -> "min" or "max" (which way is better); the first is the task's choice
    why: str = ""  # why the task's choice, said at the end of a run whose best is not its last
    titles: dict[str, str] = field(default_factory=dict)  # a metric's name as a sentence writes it, if not its key

    def metric(self, by: str | None = None) -> str:
        """The metric followed: `by` (--best-by), else the task's choice."""
        if by is None:
            return next(iter(self.ways))
        if by not in self.ways:
            raise UserError(f"--best-by {by}: the best checkpoint of this task's runs follows {' or '.join(self.ways)}")
        return by

    def score(self, metrics: dict[str, float], by: str | None = None) -> float:
        """Lower is better."""
        name = self.metric(by)
        return metrics[name] if self.ways[name] == "min" else -metrics[name]

    def words(self, by: str | None = None) -> str:
        """What it keeps, in words: "the lowest validation loss"."""
        name = self.metric(by)
        way = "lowest" if self.ways[name] == "min" else "highest"
        return f"the {way} validation {self.titles.get(name, name)}"


class Task:
    """The base of every task; see the module docstring. Subclasses set the class attributes."""

    name: ClassVar[str]  # recorded in config.json as "task"; ModelSpec.task names it
    title: ClassVar[str]  # in messages: "a language-model run"
    dims: ClassVar[tuple[str, ...]]  # model config fields filled from the data, never --set
    sums: ClassVar[tuple[str, ...]]  # what eval_sums adds up, in order
    metrics: ClassVar[tuple[str, ...]]  # validation metrics from finish(), in display order; "loss" first
    headline: ClassVar[str]  # the metric the ladder ranks and plots (higher is better)
    data_config_cls: ClassVar[type]  # the dataclass data_config() returns, rebuilt from config.json on resume
    tokenizer_files: ClassVar[tuple[str, ...]]  # files of the run directory read back as tokenizers
    run_class: ClassVar[type]  # the Run subclass the Python API gives for this task's runs
    best: ClassVar[BestCheckpoint] = BestCheckpoint({"loss": "min"})  # which evaluation model.safetensors keeps

    def data_config(self, options: dict[str, Any]) -> Any:
        raise NotImplementedError

    def check_resume(self, saved: Any, options: dict[str, Any]) -> None:
        raise NotImplementedError

    def load_data(self, cfg: Any, cache_dir: Path | None, tokenizers: dict[str, Tokenizer] | None,
                  train_cfg: Any) -> TaskData:
        raise NotImplementedError

    def model_dims(self, tokenizers: dict[str, Tokenizer]) -> dict[str, int]:
        raise NotImplementedError

    def example_dims(self) -> tuple[str, dict[str, int]]:
        """The dims of the task's built-in example data and a few words naming it: the parameter counts
        of `scratchlm models` are for these."""
        raise NotImplementedError

    def batches(self, data: TaskData, cfg: Any, model: nn.Module, world: World) -> tuple[Batches, Batches]:
        raise NotImplementedError

    def loss(self, net: nn.Module, model: nn.Module, batch: Batch, carry: Any,
             progress: float) -> tuple[torch.Tensor, Any, int]:
        raise NotImplementedError

    def eval_sums(self, model: nn.Module, batch: Batch, carry: Any) -> tuple[torch.Tensor, Any]:
        raise NotImplementedError

    def finish(self, sums: dict[str, float]) -> dict[str, float]:
        raise NotImplementedError

    # ------------------------------------------------------------ defaults most tasks keep

    def epoch_batches(self, batches: Batches, epoch: int, cfg: Any) -> Batches:
        """The batches of one epoch: drawn anew from (seed, epoch) each epoch (`for_epoch`: shuffled pairs,
        examples or co-occurrence entries); the language model's are drawn anew only when asked."""
        return batches.for_epoch(epoch, cfg.seed)

    def count(self, model: nn.Module, batches: Batches) -> int:
        """Language modelling's alone: fit a model that learns by counting (`Model.fit_counts`) on the stream
        the training batches are cut from, in one pass; the tokens it read. Other tasks give no stream to
        count, and refuse such a model."""
        raise UserError(f"{type(model).__name__} learns by counting a token stream, which {self.title} data "
                        "does not give")

    def lr_scale(self, batch: Batch, cfg: Any) -> float:
        """Language modelling's alone: a factor on this batch's learning rate (random-length BPTT shortens a
        window's step)."""
        return 1.0

    def batch_shape(self, cfg: Any) -> str:
        """A batch as the run's first line shows it."""
        return str(cfg.batch_size)

    def matmul_rows(self, model: nn.Module, cfg: Any, world: World) -> int:
        """Rows one matrix multiplication of a training step reads: decides the CPU thread count."""
        return cfg.batch_size // world.size

    def save_tokenizers(self, run_dir: RunDir, data: TaskData) -> None:
        for name, tokenizer in data.tokenizers.items():
            atomic_write_json(run_dir.file(name), tokenizer.to_json())

    def read_tokenizers(self, run_dir: RunDir) -> dict[str, Tokenizer]:
        """The run's tokenizers; a clear line, before anything else happens, when one is missing."""
        tokenizers = {}
        for name in self.tokenizer_files:
            if not run_dir.file(name).exists():
                raise UserError(f"{run_dir.path}: {name} is missing, so its token ids cannot be read back; "
                                "the run cannot be used or resumed (restore the file or train a new run)")
            tokenizers[name] = tokenizer_from_file(run_dir.file(name))
        return tokenizers

    def built_in(self, cfg: Any) -> str | None:
        """Language modelling's alone: the name of the built-in data set `cfg` reads (human numbers; a registry
        entry may have a recipe for it), or None."""
        return None

    def describe(self, cfg: Any) -> str:
        """The data in a message: its path."""
        return str(cfg.path)

    def format_metrics(self, metrics: dict[str, float]) -> dict[str, str]:
        """Each metric as the tables show it."""
        return {name: f"{metrics[name]:.4f}" for name in self.metrics if name in metrics}

    def data_dims(self, data: TaskData, spec: ModelSpec) -> dict[str, Any]:
        """The model config fields a new run's data fixes: `model_dims`, and those classification adds (a
        classifier started from a language model takes that model as its encoder)."""
        return self.model_dims(data.tokenizers)

    def init_model(self, model: nn.Module, data: TaskData) -> None:
        """A new run's model before its first step: as built (a task may fill it from a trained run)."""

    def fold_assignment(self, cfg: Any, folds: int) -> list[int]:
        """Classification's alone: k-fold cross-validation (scratchlm.folds), the fold of each example from the
        data's seed alone."""
        raise UserError(f"a {self.title} run has no k-fold cross-validation")

    def fold_options(self, cfg: Any, fold: int, folds: int) -> dict[str, Any]:
        """Classification's alone: the data options of the run that holds out fold `fold` of `folds`."""
        raise UserError(f"a {self.title} run has no k-fold cross-validation")


# ---------------------------------------------------------------- a trained run


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
        config, task = read_run_config(run_dir)
        if not issubclass(task.run_class, cls):
            raise UserError(f"{path} is a {task.title} run; this needs a {cls.task_title()} run")
        spec = get_spec(config["model"]["name"])
        tokenizers = task.read_tokenizers(run_dir)
        model = spec.build(spec.saved_config(config["model"]["config"], task.model_dims(tokenizers)))
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

    def metrics_table(self) -> str:
        """The evaluations during training as a markdown table, one row each (a notebook shows it with
        IPython.display.Markdown): epoch, step, training loss, the task's validation metrics, seconds."""
        metrics = list(self.task.metrics)
        lines = ["| epoch | step | train loss | " + " | ".join(f"valid {m}" for m in metrics) + " | seconds |",
                 "|" + "---:|" * (len(metrics) + 4)]
        for row in self.metrics:
            shown = self.task.format_metrics({m: row[f"valid_{m}"] for m in metrics if f"valid_{m}" in row})
            lines.append(f"| {row['epoch']:g} | {row['step']} | {row['train_loss']:.4f} | "
                         + " | ".join(shown.get(m, "-") for m in metrics) + f" | {row['seconds']:.1f} |")
        return "\n".join(lines)

    @property
    def train_config(self) -> TrainConfig:
        return TrainConfig(**self.config["train"])

    # -- what some tasks' runs can do, refused in one line by the others

    def word_vectors(self) -> tuple[list[str], Any]:
        """Its words and their vectors (a word2vec run, a word-level language model)."""
        raise UserError(f"{self.path}: a {self.task.title} run has no word vectors (train word2vec)")

    def export(self, out: str | Path, format: str = "text") -> list[str]:
        """Its weights or vectors in another tool's format; the files written."""
        raise UserError(f"{self.path} is a {self.task.title} run, which has nothing to export as {format}")

    def debias(self, out: str | Path, pairs: Any = None, equalize: Any = None, words: Any = None) -> dict:
        """Hard-debiased word vectors into a new run (Bolukbasi et al. 2016)."""
        raise UserError(f"{self.path}: debias works on word2vec and imported runs; export these vectors and import them")


def blank_texts(texts: Sequence[str], what: str) -> set[int]:
    """The indices of the texts with nothing to read: each gets an empty result in its place, so that a file's
    lines keep their alignment with its references (one line in, one line out); one warning names them."""
    blank = {i for i, text in enumerate(texts) if not text.strip()}
    if blank:
        shown = ", ".join(str(i + 1) for i in sorted(blank)[:5]) + (" ..." if len(blank) > 5 else "")
        warnings.warn(f"{len(blank)} empty text(s) (number {shown}, counted from 1): an empty {what} stands in for "
                      "each", stacklevel=3)
    return blank


def read_run_config(run_dir: RunDir) -> tuple[dict, Task]:
    """A run's config.json, completed as the release that wrote it built the run (scratchlm.releases), and its task."""
    config = run_dir.read_config()
    task = task_of_run(config, run_dir.path)
    return complete_run_config(config, str(run_dir.path), task.data_config_cls), task


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
