"""The Python API: `train()` and `lr_find()`; the CLI is a thin layer over these.

    import scratchlm
    run = scratchlm.train(data="human-numbers", model="rnn", out="runs/hn-rnn")
    run.generate("one . two .", tokens=20)

Both serve every task: the model names its task (`ModelSpec.task`), and the task reads the data,
makes the batches and computes the loss and metrics (scratchlm.tasks.base).
"""

from __future__ import annotations

import contextlib
import math
import platform
import sys
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from scratchlm.checkpoint import LAST, STATE, RunDir, load_weights
from scratchlm.config import TrainConfig
from scratchlm.data.human_numbers import NAME as HUMAN_NUMBERS
from scratchlm.distributed import World
from scratchlm.errors import UserError
from scratchlm.files import cannot_write
from scratchlm.models.base import Model, parameter_count
from scratchlm.models.registry import DEFAULT_MODEL, ModelSpec, get_spec
from scratchlm.plots import plot_losses, plot_lr_find
from scratchlm.run import Run
from scratchlm.speed import resolve_device, resolve_precision, to_device, tune_cpu_threads
from scratchlm.tasks import get_task
from scratchlm.tasks.base import read_run_config
from scratchlm.trainer import Trainer, seed_everything

# What --resume may change, and only when given explicitly; anything else must match the run.
RESUMABLE_CHANGES = {"epochs", "time", "lr", "patience", "eval_every", "device", "precision", "compile",
                     "grad_clip", "on_nan"}


def train(data: str | None = None, model: str | None = None, out: str | Path | None = None, *,
          settings: dict[str, Any] | None = None, resume: bool = False, progress: bool = False, label: str = "",
          cache_dir: str | Path | None = None, on_evaluation=None, **options: Any) -> Run | None:
    """Train `model` on `data` into the run directory `out`, or continue it with `resume=True`.

    `options` are TrainConfig fields (epochs, time, lr, batch_size, bptt, seed, ...), whose unset ones
    take the model's registry defaults, then TrainConfig's, and the data options of the model's task
    (a language model's: tokenizer, vocab_size, min_freq, encoding, valid_data, valid_fraction).
    Returns the loaded Run (best weights). `progress` shows the run's first line, a bar and a row per evaluation
    on stderr, the first line after `label` (the ladder's "[3/11]").

    Started by torchrun, each process trains on its share of every batch (see scratchlm.distributed);
    rank 0 writes the run directory and returns the Run, the other processes return None.
    """
    train_options, data_options = split_options({"data": data, **options})
    out = Path(out) if out else Path("runs") / f"{model or DEFAULT_MODEL}-{Path(data or HUMAN_NUMBERS).stem}"
    run_dir = RunDir(out)
    if resume:
        plan = plan_resume(run_dir, model, settings, train_options, data_options)
    else:
        if run_dir.exists:
            raise UserError(f"{out} already holds a run; continue it with --resume or choose another --out")
        plan = plan_new(model or DEFAULT_MODEL, settings, train_options, data_options)
    world = World.from_env()
    world.check_batch(plan.train.batch_size, resume)
    device = world.place(resolve_device(plan.train.device))
    created = not run_dir.path.exists()
    try:
        with run_dir.lock() if world.is_main else contextlib.nullcontext(), world.joined(device) as world:
            return fit_run(run_dir, plan, resume, progress, label, cache_dir, on_evaluation, world)
    except UserError:
        if world.is_main and created and not run_dir.exists:  # refused before it began: leave no empty folder
            with contextlib.suppress(OSError):
                run_dir.file(".lock").unlink(missing_ok=True)
                run_dir.path.rmdir()
        raise


def split_options(options: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The given (not None) options: TrainConfig's fields, and the rest, which are the task's data options."""
    given = {k: v for k, v in options.items() if v is not None}
    fields = TrainConfig.field_names()
    return {k: v for k, v in given.items() if k in fields}, {k: v for k, v in given.items() if k not in fields}


class Plan:
    """What a run will be: the model's entry, its task, and the data, training and model settings."""

    def __init__(self, spec: ModelSpec, data: Any, train: TrainConfig, settings: dict[str, Any],
                 tokenizers: dict | None = None, saved: dict | None = None):
        self.spec, self.task, self.data, self.train, self.settings = spec, get_task(spec.task), data, train, settings
        self.tokenizers = tokenizers  # a resumed run's own; None: trained from the data
        self.saved = saved  # a resumed run's config.json, completed (scratchlm.releases); None: a new run
        self.task.best.metric(train.best_by)  # an unknown --best-by is refused before anything is read

    def model_config(self, dims: dict[str, Any]) -> Any:
        """A new run's model config (the registry's recipe, the user's settings, the data's dims), or a resumed
        run's own as it was saved."""
        if self.saved is not None:
            return self.spec.saved_config(self.settings, dims)
        return self.spec.make_config(dims, self.settings)


def plan_new(model: str, settings: dict | None, train_options: dict, data_options: dict) -> Plan:
    spec = get_spec(model)
    task = get_task(spec.task)
    data_cfg = task.data_config(data_options)
    corpus = task.built_in(data_cfg)
    config = spec.defaults_for(corpus)[0]
    return Plan(spec, data_cfg, recipe(spec, train_options, corpus), {**config, **(settings or {})})


def recipe(spec: ModelSpec, options: dict, corpus: str | None = None) -> TrainConfig:
    """The training settings a run of `spec` uses: the given options over the model's registry
    defaults (for `corpus`, a built-in corpus' name, when it has a recipe of its own) over TrainConfig's."""
    defaults = spec.defaults_for(corpus)[1]
    if "time" in options and "epochs" not in options:
        defaults.pop("epochs", None)  # --time alone is the bound the user asked for
    return TrainConfig(**{**defaults, **options})


def plan_resume(run_dir: RunDir, model: str | None, settings: dict | None, train_options: dict,
                data_options: dict) -> Plan:
    """The saved run, with only the explicitly allowed changes; any other difference is refused here,
    before any file of the run is touched."""
    config, task = read_run_config(run_dir)
    saved = config["model"]
    spec = get_spec(saved["name"])
    if model is not None and get_spec(model).name != spec.name:
        raise UserError(f"--resume: the run trains {saved['name']}, not {model}; drop --model or use another --out")
    if settings and any(saved["config"].get(k) != v for k, v in settings.items()):
        raise UserError(f"--resume: the model settings differ from the run's ({saved['config']}); the weights would not fit")
    data_cfg = task.data_config_cls(**config["data"]["config"])
    task.check_resume(data_cfg, data_options)
    saved_train = config["train"]
    for key, value in train_options.items():
        if key not in RESUMABLE_CHANGES and saved_train.get(key) != value:
            raise UserError(f"--resume: {key} cannot change ({saved_train.get(key)!r} in the run, {value!r} given); "
                            f"only {', '.join(sorted(RESUMABLE_CHANGES))} may")
    train_cfg = TrainConfig(**{**saved_train, **train_options})
    return Plan(spec, data_cfg, train_cfg, saved["config"], task.read_tokenizers(run_dir), config)


@dataclass
class Built:
    """A planned run made real: its data read, its model built, its batches cut, its device and precision."""

    data: Any
    model_cfg: Any
    model: Model
    train_batches: Any
    valid_batches: Any
    precision: str
    n_parameters: int


def build(plan: Plan, cache_dir, world: World, new_weights: bool = True) -> Built:
    """Read the data, build the model (its weights a new run's, unless `new_weights` is False: a resumed run's
    come from its checkpoint) and cut the batches, on `world.device`."""
    spec, task, train_cfg = plan.spec, plan.task, plan.train
    seed_everything(train_cfg.seed)
    with world.local_main_first():  # one process per machine fills the token cache, the others read it
        data = task.load_data(plan.data, cache_dir, plan.tokenizers, train_cfg)
    if plan.saved is not None and data.content_hash != plan.saved["data"]["content_hash"]:
        raise UserError(f"--resume: {task.describe(plan.data)} changed since the run started (its content hash "
                        "differs); train a new run on the new data")
    model_cfg = plan.model_config(task.data_dims(data, spec))
    model = spec.build(model_cfg)
    if world.size > 1 and (why := model.several_processes()):
        raise UserError(f"{spec.name} trains in one process ({why}); run it without torchrun")
    if new_weights:
        task.init_model(model, data)
    train_batches, valid_batches = task.batches(data, train_cfg, model, world)
    n_parameters = parameter_count(model)
    precision = resolve_precision(train_cfg.precision, world.device, n_parameters, model.precision_rule())
    tune_cpu_threads(world.device, n_parameters, task.matmul_rows(model, train_cfg, world))
    model.to(world.device)
    return Built(data, model_cfg, model, train_batches, valid_batches, precision, n_parameters)


def fit_run(run_dir: RunDir, plan: Plan, resume: bool, progress: bool, label: str, cache_dir, on_evaluation,
            world: World) -> Run | None:
    spec, task, train_cfg = plan.spec, plan.task, plan.train
    resumed = resume and run_dir.file(STATE).exists()  # its weights come from its checkpoint
    built = build(plan, cache_dir, world, new_weights=not resumed)
    data, model, model_cfg, precision, n_parameters = (built.data, built.model, built.model_cfg, built.precision,
                                                        built.n_parameters)
    device = world.device
    resolved = {"device": device.type, "precision": precision}
    if world.is_main:  # the run directory is rank 0's; the others read it once it is ready
        if not resume or not run_dir.exists:
            # The tokenizers first: config.json marks a run as begun, so a kill between the two leaves none.
            task.save_tokenizers(run_dir, data)
            run_dir.write_config(run_config(plan, model_cfg, n_parameters, data, cache_dir, resolved))
        else:  # completed with any field added since (scratchlm.releases), so it now needs this release
            config = {**plan.saved, "train": asdict(train_cfg), "resolved": resolved, "versions": versions()}
            run_dir.write_config({k: v for k, v in config.items() if k != "format"})
        run_dir.recover()
        if progress:  # the label first: the ladder's "[3/11]"
            print(f"{label} " * bool(label) + start_line(plan, model, n_parameters, resolved), file=sys.stderr)
    world.barrier()
    trainer = Trainer(model, task, built.train_batches, built.valid_batches, train_cfg, run_dir, device, precision,
                      progress and world.is_main, on_evaluation, world)
    if resumed:
        load_weights(run_dir.file(LAST), model)
        trainer.restore(run_dir.load_state())
    history = trainer.fit()
    if not world.is_main:
        return None
    if history:
        try:
            plot_losses(history, run_dir.file("loss.png"), f"{spec.name}, {run_dir.path.name}", task.metrics[1:2])
        except OSError as e:  # the run is whole without its picture
            warnings.warn(f"{run_dir.file('loss.png')}: not drawn ({cannot_write(e)})", stacklevel=2)
    return Run.load(run_dir.path, device=train_cfg.device)


def start_line(plan: Plan, model: Any, n_parameters: int, resolved: dict) -> str:
    """What the run will do, with the values it will use (the model's recipe over the global defaults).
    A model that learns by counting has no optimizer or bound to show; one that takes its own steps
    (word2vec, GloVe) names its update rule (`update_rule`) and may name its batches (`batch_shape`)."""
    cfg = plan.train
    shape = model.batch_shape(cfg) or plan.task.batch_shape(cfg)
    if model.learns_by == "counting":
        return (f"{plan.spec.name}: learns by counting its training data once, no gradient steps; evaluated in "
                f"batches of {shape}; {resolved['device']} {resolved['precision']}")
    bound = " or ".join(([f"{cfg.epochs} epochs"] if cfg.epochs else []) + ([f"{cfg.time:g} s"] if cfg.time else []))
    clip = f", clip {cfg.grad_clip:g}" if cfg.grad_clip else ""
    rule = model.update_rule
    ends = f"warmup {cfg.warmup:g}" + (f", cooldown {cfg.cooldown:g}" if cfg.cooldown else "")
    update = (f"{rule}, lr {cfg.lr:g} {cfg.schedule} ({ends})" if rule else
              f"{cfg.optimizer} lr {cfg.lr:g} {cfg.schedule} ({ends}), weight decay {cfg.weight_decay:g}{clip}")
    return (f"{plan.spec.name}: {n_parameters:,} parameters; {update}; batch {shape}; "
            f"{bound}; {resolved['device']} {resolved['precision']}, seed {cfg.seed}")


def run_config(plan: Plan, model_cfg: Any, n_parameters: int, data: Any, cache_dir, resolved: dict) -> dict:
    return {
        "task": plan.task.name,
        "model": {"name": plan.spec.name, "config": asdict(model_cfg), "parameters": n_parameters},
        "data": {"config": asdict(plan.data), "content_hash": data.content_hash, **data.summary(),
                 "cache_dir": str(Path(cache_dir).expanduser().resolve()) if cache_dir else None},
        "train": asdict(plan.train),
        "resolved": resolved,  # what "auto" became on the machine that trained: eval computes as training did
        "versions": versions(),
    }


def versions() -> dict[str, str]:
    """The releases that wrote a run: scratchlm's is checked when the run is read (scratchlm.checkpoint)."""
    from scratchlm import __version__

    return {"scratchlm": __version__, "torch": torch.__version__, "numpy": np.__version__,
            "python": platform.python_version()}


def lr_find(data: str | None = None, model: str | None = None, *, plot: str | Path | None = "lr_find.png",
            start_lr: float = 1e-7, end_lr: float = 10.0, steps: int = 100, settings: dict | None = None,
            cache_dir: str | Path | None = None, **options: Any) -> dict:
    """Loss against a learning rate growing exponentially each step (Smith 2015; fastai's lr_find).

    Each step is the trainer's own (the run's optimizer, its weight-decay groups and clipping), at a
    constant rate per step. Stops when the smoothed loss passes 4x its minimum. Suggests the rate a
    tenth of the one at the minimum: still falling steeply there, safely below the blow-up.
    """
    World.from_env().refuse("lr-find")
    if not 0 < start_lr < end_lr or steps < 5:
        raise UserError("lr-find needs 0 < --start-lr < --end-lr and at least 5 steps")
    plan = plan_new(model or DEFAULT_MODEL, settings, *split_options({"data": data, **options}))
    if plan.spec.model_cls.learns_by == "counting":
        raise UserError(f"{plan.spec.name} learns by counting, not by gradient steps: it has no learning rate to find")
    world = World(device=resolve_device(plan.train.device))
    built = build(plan, cache_dir, world)
    batches, device = built.train_batches, world.device
    stepper = Trainer(built.model, plan.task, batches, built.valid_batches, plan.train, None, device, built.precision,
                      progress=False).stepper
    built.model.train()
    lrs, losses, smoothed, best, carry = [], [], 0.0, math.inf, None
    for step in range(steps):
        lr = start_lr * (end_lr / start_lr) ** (step / (steps - 1))
        for group in stepper.param_groups:
            group["lr"] = lr
        k = step % len(batches)
        taken = stepper.step(to_device(batches.batch(k), device), carry if k else None, 0.0, check=True)
        loss, carry = float(taken.loss), taken.carry
        smoothed = 0.98 * smoothed + 0.02 * loss
        value = smoothed / (1 - 0.98 ** (step + 1))  # bias-corrected moving average
        if not math.isfinite(value) or (step > 10 and value > 4 * best):
            break
        lrs.append(lr)
        losses.append(value)
        best = min(best, value)
    if len(lrs) < 3:
        raise UserError("lr-find: the loss blew up at once; lower --start-lr")
    suggestion = lrs[int(np.argmin(losses))] / 10
    if plot:
        plot_lr_find(lrs, losses, suggestion, Path(plot))
    return {"model": plan.spec.name, "suggestion": suggestion, "min_loss_lr": lrs[int(np.argmin(losses))],
            "lrs": lrs, "losses": losses, "plot": str(plot) if plot else None}
