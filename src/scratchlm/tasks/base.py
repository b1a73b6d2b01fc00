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

and, for the verbs, `run_class` (the Python API's Run for this task's runs) and `tokenizer_files`
(what the run directory holds besides the weights).

The batches protocol, which `LMStream` and `WindowBatches` follow and every task's batches must:

    len(batches)         batches in one epoch
    batches.batch(k)     batch k, a tuple of tensors: the same k always gives the same batch, so a
                         resumed run skips to its saved index and reads what the first run would have
    batches.batches()    batch 0, 1, ... in order (evaluation)
    batches.for_epoch(epoch, seed)
                         (optional) the epoch's batches when they change from epoch to epoch, drawn
                         from (seed, epoch) alone: random-length BPTT, shuffled pairs
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Protocol

import torch
from torch import nn

from scratchlm.checkpoint import RunDir
from scratchlm.data.tokenize import Tokenizer, tokenizer_from_file
from scratchlm.distributed import World
from scratchlm.errors import UserError
from scratchlm.files import atomic_write_json

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
    verbs: ClassVar[tuple[str, ...]]  # the task's own commands, for messages
    best_by: ClassVar[str] = "the lowest validation loss"  # what `score` keeps, in words
    best_by_why: ClassVar[str] = ""  # a sentence on why that choice, for the end-of-run summary

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
        """The batches of one epoch: drawn anew from (seed, epoch) by batches that offer `for_epoch`."""
        for_epoch = getattr(batches, "for_epoch", None)
        return for_epoch(epoch, cfg.seed) if for_epoch else batches

    def lr_scale(self, batch: Batch, cfg: Any) -> float:
        """A factor on this batch's learning rate (random-length BPTT shortens a window's step)."""
        return 1.0

    def batch_shape(self, cfg: Any) -> str:
        """A batch as the run's first line shows it."""
        return str(cfg.batch_size)

    def matmul_rows(self, model: nn.Module, cfg: Any, world: World) -> int:
        """Rows one matrix multiplication of a training step reads: decides the CPU thread count."""
        return cfg.batch_size // world.size

    def score(self, metrics: dict[str, float]) -> float:
        """Lower is better: the best checkpoint (model.safetensors) and --patience follow it."""
        return metrics["loss"]

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
        """The name of the built-in data set `cfg` reads (a registry entry may have a recipe for it), or None."""
        return None

    def describe(self, cfg: Any) -> str:
        """The data in a message: its path."""
        return str(cfg.path)

    def format_metrics(self, metrics: dict[str, float]) -> dict[str, str]:
        """Each metric as the tables show it."""
        return {name: f"{metrics[name]:.4f}" for name in self.metrics if name in metrics}
