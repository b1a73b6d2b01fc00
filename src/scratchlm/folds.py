"""k-fold cross-validation of a run: the same model, settings and data, trained k times, each time with
one fold held out, and scored on that fold.

    scratchlm.cross_validate("runs/polarity", folds=10)      # scratchlm eval runs/polarity --folds 10

The task says how its data is cut into folds (`Task.fold_assignment`, `Task.fold_options`; a task
without them refuses in one line). The fold of each example follows from the run's split seed alone, and
is saved with the results in the run's folds.json, so the folds can be checked and reproduced.

Each fold's run is scored with its final weights, not its best checkpoint: the held-out fold is the test
set here, and choosing the checkpoint by it would let the test set pick the model. The fold runs live
in the run's folds/ folder; an interrupted cross-validation continues where it stopped (a finished fold
run resumes to nothing).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from pathlib import Path

from scratchlm.api import train
from scratchlm.checkpoint import LAST, RunDir, load_weights
from scratchlm.errors import UserError
from scratchlm.files import atomic_write_json
from scratchlm.models.registry import DATA_FIELDS
from scratchlm.run import Run

RESULTS = "folds.json"


def cross_validate(run: str | Path, folds: int = 10, progress: bool = False) -> dict:
    """Train and score a run per fold; the mean and standard deviation of each metric over the folds."""
    if not 2 <= folds <= 100:
        raise UserError(f"--folds {folds} must be between 2 and 100")
    base = Run.load(run)
    task, config, path = base.task, base.config, Path(run)
    cfg = task.data_config_cls(**config["data"]["config"])
    assignment = task.fold_assignment(cfg, folds)
    settings = {k: v for k, v in config["model"]["config"].items() if k not in DATA_FIELDS}
    rows = []
    for fold in range(folds):
        out = path / "folds" / f"fold-{fold}"
        began = time.perf_counter()
        fold_run = train(model=config["model"]["name"], out=out, settings=settings, resume=RunDir(out).exists,
                         progress=progress, label=f"[fold {fold + 1}/{folds}]",
                         cache_dir=config["data"].get("cache_dir"), **config["train"],
                         **task.fold_options(cfg, fold, folds))
        load_weights(RunDir(out).file(LAST), fold_run.model)  # the final weights: the test fold chose nothing
        result = fold_run.eval()
        rows.append({"fold": fold, "seconds": round(time.perf_counter() - began, 2),
                     **{k: v for k, v in result.items() if isinstance(v, float | int) and not isinstance(v, bool)}})
    metrics = [k for k in rows[0] if k not in ("fold", "seconds", "examples")]
    summary = {m: dict(zip(("mean", "std"), mean_and_std([row[m] for row in rows]), strict=True)) for m in metrics}
    results = {"run": str(path), "model": config["model"]["name"], "folds": folds, "split_seed": cfg.split_seed,
               "summary": summary, "per_fold": rows, "seconds": round(sum(row["seconds"] for row in rows), 2),
               "assignment": assignment}
    atomic_write_json(path / RESULTS, results)
    return results


def mean_and_std(values: Sequence[float]) -> tuple[float, float]:
    """The mean and the sample standard deviation (n - 1), as cross-validation reports them."""
    mean = sum(values) / len(values)
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / max(len(values) - 1, 1))


def folds_text(results: dict) -> str:
    """The results for the terminal: each fold's headline metrics, then mean +- std."""
    metrics = list(results["summary"])
    lines = [f"{results['model']}, {results['folds']}-fold cross-validation (split seed {results['split_seed']}), "
             f"{results['seconds']:.0f} s of training and scoring"]
    width = max(len(m) for m in metrics)
    for m in metrics:
        s = results["summary"][m]
        per_fold = " ".join(f"{row[m]:.4f}" for row in results["per_fold"])
        lines.append(f"  {m.ljust(width)}  {s['mean']:.4f} +- {s['std']:.4f}   ({per_fold})")
    lines.append(f"fold assignment and per-fold results: {Path(results['run']) / RESULTS}")
    return "\n".join(lines)
