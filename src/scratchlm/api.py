"""The Python API: `train()` and `lr_find()`; the CLI is a thin layer over these.

    import scratchlm
    run = scratchlm.train(data="human-numbers", model="rnn", out="runs/hn-rnn")
    run.generate("one . two .", tokens=20)
"""

from __future__ import annotations

import contextlib
import math
import platform
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from scratchlm.checkpoint import LAST, STATE, TOKENIZER, RunDir, atomic_write_json, load_weights
from scratchlm.data.batches import Batches, lm_batches
from scratchlm.data.human_numbers import NAME as HUMAN_NUMBERS
from scratchlm.data.pipeline import DataConfig, LMData, load_lm_data
from scratchlm.data.tokenize import TokenizerSpec, tokenizer_from_file
from scratchlm.distributed import World
from scratchlm.errors import UserError
from scratchlm.models.base import detach_state
from scratchlm.models.registry import ModelSpec, get_spec
from scratchlm.plots import plot_losses, plot_lr_find
from scratchlm.run import Run
from scratchlm.speed import autocast, resolve_device, resolve_precision, tune_cpu_threads
from scratchlm.trainer import TrainConfig, Trainer, seed_everything

# What --resume may change, and only when given explicitly; anything else must match the run.
RESUMABLE_CHANGES = {"epochs", "time", "lr", "patience", "eval_every", "device", "precision", "compile",
                     "grad_clip", "on_nan"}


def train(data: str | None = None, model: str | None = None, out: str | Path | None = None, *,
          tokenizer: str | None = None, vocab_size: int | None = None, min_freq: int | None = None,
          encoding: str | None = None, valid_data: str | None = None, valid_fraction: float | None = None,
          settings: dict[str, Any] | None = None, resume: bool = False, progress: bool = False,
          cache_dir: str | Path | None = None, on_evaluation=None, **options: Any) -> Run | None:
    """Train `model` on `data` into the run directory `out`, or continue it with `resume=True`.

    `options` are TrainConfig fields (epochs, time, lr, batch_size, bptt, seed, ...); unset ones take
    the model's registry defaults, then TrainConfig's. Returns the loaded Run (best weights).

    Started by torchrun, each process trains on its rows of every batch (see scratchlm.distributed);
    rank 0 writes the run directory and returns the Run, the other processes return None.
    """
    if unknown := sorted(set(options) - TrainConfig.field_names()):
        raise UserError(f"unknown training option(s): {', '.join(unknown)}")
    options = {k: v for k, v in options.items() if v is not None}
    data_args = {"path": data, "encoding": encoding, "valid_path": valid_data, "valid_fraction": valid_fraction}
    tok_args = {"kind": tokenizer, "vocab_size": vocab_size, "min_freq": min_freq}
    out = Path(out) if out else Path("runs") / f"{model or 'rnn'}-{Path(data or HUMAN_NUMBERS).stem}"
    run_dir = RunDir(out)
    if resume:
        plan = plan_resume(run_dir, data_args, tok_args, model, settings, options)
    else:
        if run_dir.exists:
            raise UserError(f"{out} already holds a run; continue it with --resume or choose another --out")
        plan = plan_new(data_args, tok_args, model or "rnn", settings, options)
    spec, data_cfg, train_cfg, model_settings = plan
    world = World.from_env()
    world.check_batch(train_cfg.batch_size, resume)
    device = world.place(resolve_device(train_cfg.device))
    created = not run_dir.path.exists()
    try:
        with run_dir.lock() if world.is_main else contextlib.nullcontext(), world.joined(device) as world:
            return fit_run(run_dir, spec, data_cfg, train_cfg, model_settings, resume, progress, cache_dir,
                           on_evaluation, world)
    except UserError:
        if world.is_main and created and not run_dir.exists:  # refused before it began: leave no empty folder
            with contextlib.suppress(OSError):
                run_dir.file(".lock").unlink(missing_ok=True)
                run_dir.path.rmdir()
        raise


def plan_new(data_args: dict, tok_args: dict, model: str, settings: dict | None,
             options: dict) -> tuple[ModelSpec, DataConfig, TrainConfig, dict]:
    spec = get_spec(model)
    path = data_args["path"] or HUMAN_NUMBERS
    default_kind = "word" if path == HUMAN_NUMBERS else "char"
    tok = TokenizerSpec(**{"kind": default_kind, **{k: v for k, v in tok_args.items() if v is not None}})
    data_cfg = DataConfig(**{**data_args, "path": path, "tokenizer": tok})
    train_defaults = dict(spec.train)
    if "time" in options and "epochs" not in options:
        train_defaults.pop("epochs", None)  # --time alone is the bound the user asked for
    train_cfg = TrainConfig(**{**train_defaults, **options})
    return spec, data_cfg, train_cfg, {**spec.config, **(settings or {})}


def plan_resume(run_dir: RunDir, data_args: dict, tok_args: dict, model: str | None, settings: dict | None,
                options: dict) -> tuple[ModelSpec, DataConfig, TrainConfig, dict]:
    """The saved run, with only the explicitly allowed changes; any other difference is refused."""
    config = run_dir.read_config()
    if config.get("task") != "lm":
        raise UserError(f"{run_dir.path} is a {config.get('task')} run; `train --resume` here trains language models")
    saved = config["model"]
    if model is not None and model != saved["name"]:
        raise UserError(f"--resume: the run trains {saved['name']}, not {model}; drop --model or use another --out")
    if settings and any(saved["config"].get(k) != v for k, v in settings.items()):
        raise UserError(f"--resume: the model settings differ from the run's ({saved['config']}); the weights would not fit")
    data_cfg = DataConfig(**config["data"]["config"])
    given = {k: v for k, v in data_args.items() if v is not None}
    if "path" in given and given["path"] != HUMAN_NUMBERS:
        given["path"] = str(Path(given["path"]).expanduser().resolve())
    for key, value in given.items():
        if getattr(data_cfg, key) != value:
            raise UserError(f"--resume: the run's data {key} is {getattr(data_cfg, key)!r}, not {value!r}")
    for key, value in tok_args.items():
        if value is not None and getattr(data_cfg.tokenizer, key) != value:
            raise UserError(f"--resume: the run's tokenizer {key} is {getattr(data_cfg.tokenizer, key)!r}, not {value!r}")
    saved_train = config["train"]
    for key, value in options.items():
        if key not in RESUMABLE_CHANGES and saved_train.get(key) != value:
            raise UserError(f"--resume: {key} cannot change ({saved_train.get(key)!r} in the run, {value!r} given); "
                            f"only {', '.join(sorted(RESUMABLE_CHANGES))} may")
    train_cfg = TrainConfig(**{**saved_train, **options})
    return get_spec(saved["name"]), data_cfg, train_cfg, saved["config"]


def fit_run(run_dir: RunDir, spec: ModelSpec, data_cfg: DataConfig, train_cfg: TrainConfig, settings: dict,
            resume: bool, progress: bool, cache_dir, on_evaluation, world: World) -> Run | None:
    seed_everything(train_cfg.seed)
    saved_tokenizer = None
    if resume and run_dir.file(TOKENIZER).exists():
        saved_tokenizer = tokenizer_from_file(run_dir.file(TOKENIZER))
    with world.local_main_first():  # one process per machine fills the token cache, the others read it
        data = load_lm_data(data_cfg, cache_dir, tokenizer=saved_tokenizer, align=train_cfg.bptt)
    if resume:
        expected = run_dir.read_config()["data"]["content_hash"]
        if data.corpus.content_hash != expected:
            raise UserError(f"--resume: {data_cfg.path} changed since the run started (its content hash differs); "
                            "train a new run on the new data")
    model_cfg = spec.make_config(data.tokenizer.vocab_size, settings)
    model = spec.build(model_cfg)
    if train_cfg.random_bptt and not model.carries_state:
        raise UserError(f"--random-bptt varies the window of a stateful model; {spec.name} does not carry its state")
    if model.window is not None and train_cfg.bptt != model.window:
        raise UserError(f"{spec.name} reads exactly {model.window} tokens; drop --bptt or set it to {model.window}")
    device = world.device
    n_parameters = sum(p.numel() for p in model.parameters())
    precision = resolve_precision(train_cfg.precision, device, n_parameters)
    # rows per matrix multiplication: this process' batch, times the window when it is read all at once
    rows = train_cfg.batch_size // world.size * (1 if model.carries_state else train_cfg.bptt)
    tune_cpu_threads(device, n_parameters, rows)
    model.to(device)
    train_stream, valid_stream = make_streams(data, train_cfg, model.carries_state, world)
    if world.is_main:  # the run directory is rank 0's; the others read it once it is ready
        if not resume or not run_dir.exists:
            # The tokenizer first: config.json marks a run as begun, so a kill between the two leaves none.
            atomic_write_json(run_dir.file(TOKENIZER), data.tokenizer.to_json())
            run_dir.write_config(run_config(spec, model_cfg, data_cfg, data, train_cfg))
        else:
            config = run_dir.read_config()
            config["train"] = asdict(train_cfg)
            run_dir.write_config({k: v for k, v in config.items() if k != "format"})
        run_dir.recover()
    world.barrier()
    trainer = Trainer(model, train_stream, valid_stream, train_cfg, run_dir, device, precision,
                      progress and world.is_main, on_evaluation, world)
    if resume and run_dir.file(STATE).exists():
        load_weights(run_dir.file(LAST), model)
        trainer.restore(run_dir.load_state())
    history = trainer.fit()
    if not world.is_main:
        return None
    if history:
        plot_losses(history, run_dir.file("loss.png"), f"{spec.name} on {Path(data_cfg.path).name}")
    return Run.load(run_dir.path, device=train_cfg.device)


def parameter_count(spec: ModelSpec, model_cfg: Any) -> int:
    """Built aside on the meta device: no memory, and no draw from the random generator, which would
    leave a run started afresh and one resumed before its first checkpoint on different random streams."""
    with torch.device("meta"):
        return sum(p.numel() for p in spec.build(model_cfg).parameters())


def make_streams(data: LMData, cfg: TrainConfig, carries_state: bool,
                 world: World | None = None) -> tuple[Batches, Batches]:
    """This process' rows of the training and validation streams (all of them for a single process)."""
    world = world or World()
    return (lm_batches(data.train_ids, cfg.batch_size, cfg.bptt, carries_state).shard(world.rank, world.size),
            lm_batches(data.valid_ids, cfg.batch_size, cfg.bptt, carries_state, shrink=True)
            .shard(world.rank, world.size, even=False))


def run_config(spec: ModelSpec, model_cfg: Any, data_cfg: DataConfig, data: LMData, train_cfg: TrainConfig) -> dict:
    from scratchlm import __version__

    return {
        "task": spec.task,
        "model": {"name": spec.name, "config": asdict(model_cfg),
                  "parameters": parameter_count(spec, model_cfg)},
        "data": {"config": asdict(data_cfg), "content_hash": data.corpus.content_hash,
                 "encodings": sorted({s.encoding for s in data.corpus.sources}),
                 "documents": len(data.corpus.sources), "train_tokens": len(data.train_ids),
                 "valid_tokens": len(data.valid_ids), "vocab_size": data.tokenizer.vocab_size},
        "train": asdict(train_cfg),
        "versions": {"scratchlm": __version__, "torch": torch.__version__, "numpy": np.__version__,
                     "python": platform.python_version()},
    }


def lr_find(data: str | None = None, model: str | None = None, *, plot: str | Path | None = "lr_find.png",
            start_lr: float = 1e-7, end_lr: float = 10.0, steps: int = 100, tokenizer: str | None = None,
            vocab_size: int | None = None, encoding: str | None = None, settings: dict | None = None,
            cache_dir: str | Path | None = None, **options: Any) -> dict:
    """Loss against a learning rate growing exponentially each step (Smith 2015; fastai's lr_find).

    Stops when the smoothed loss passes 4x its minimum. Suggests the rate a tenth of the one at the
    minimum: still falling steeply there, safely below the blow-up.
    """
    if unknown := sorted(set(options) - TrainConfig.field_names()):
        raise UserError(f"unknown training option(s): {', '.join(unknown)}")
    World.from_env().refuse("lr-find")
    if not 0 < start_lr < end_lr or steps < 5:
        raise UserError("lr-find needs 0 < --start-lr < --end-lr and at least 5 steps")
    options = {k: v for k, v in options.items() if v is not None}
    spec, data_cfg, train_cfg, model_settings = plan_new(
        {"path": data, "encoding": encoding, "valid_path": None, "valid_fraction": None},
        {"kind": tokenizer, "vocab_size": vocab_size, "min_freq": None}, model or "rnn", settings, options)
    seed_everything(train_cfg.seed)
    lm_data = load_lm_data(data_cfg, cache_dir, align=train_cfg.bptt)
    net = spec.build(spec.make_config(lm_data.tokenizer.vocab_size, model_settings))
    device = resolve_device(train_cfg.device)
    precision = resolve_precision(train_cfg.precision, device, sum(p.numel() for p in net.parameters()))
    net.to(device).train()
    stream, _ = make_streams(lm_data, train_cfg, net.carries_state)
    optimizer = torch.optim.AdamW(net.parameters(), lr=start_lr, weight_decay=train_cfg.weight_decay)
    lrs, losses, smoothed, best, state = [], [], 0.0, math.inf, None
    for step in range(steps):
        lr = start_lr * (end_lr / start_lr) ** (step / (steps - 1))
        for group in optimizer.param_groups:
            group["lr"] = lr
        x, y = (t.to(device) for t in stream.batch(step % len(stream)))
        with autocast(device, precision):
            _, loss, state = net(x, y, state if net.carries_state else None)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        state = detach_state(state)
        smoothed = 0.98 * smoothed + 0.02 * loss.item()
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
    return {"model": spec.name, "suggestion": suggestion, "min_loss_lr": lrs[int(np.argmin(losses))],
            "lrs": lrs, "losses": losses, "plot": str(plot) if plot else None}
