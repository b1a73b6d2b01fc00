"""The ladder: every model of one task trained on the same data, side by side (`scratchlm.ladder`).

(The module is `race`, not `ladder`: a submodule named like the function `scratchlm.ladder` would
replace it on the package once imported.)

fast.ai's chapter 12 climbs from a fixed-window MLP to a regularized LSTM, one idea per rung; this
races them all on one corpus and split, each with its own registry recipe (or the same `--time`
budget), and writes one table and one plot of the task's headline metric (a language model's
validation accuracy) against training time:

    runs/ladder/
      mlp3/ rnn3/ ...   one ordinary run directory per rung
      ladder.md         the table, markdown
      ladder.json       the same rows, JSON
      ladder.png        the headline metric against seconds of training, every rung
Models added to the registry join the race of their task with no change here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from scratchlm.api import train
from scratchlm.checkpoint import RunDir
from scratchlm.distributed import World
from scratchlm.errors import Interrupted, UserError
from scratchlm.files import atomic_write, atomic_write_json
from scratchlm.models.registry import DEFAULT_MODEL, REGISTRY, get_spec
from scratchlm.plots import plot_curves
from scratchlm.tasks import get_task


def rungs(names: list[str] | None = None, task: str | None = None) -> tuple[list[str], Any]:
    """The rungs to race and their task: the chosen models (all of one task), or every model of `task`
    (by default the default model's) in registry order."""
    if names is not None and not names:
        raise UserError("--models names no model; give comma-separated rungs, e.g. rnn,lstm")
    if names is None:
        task = task or REGISTRY[DEFAULT_MODEL].task
        return [name for name, spec in REGISTRY.items() if spec.task == task], get_task(task)
    specs = [get_spec(name) for name in names]
    task = task or specs[0].task
    for spec in specs:
        if spec.task != task:
            raise UserError(f"{spec.name} is not a {get_task(task).title} model; a ladder races the models of one task")
    return [spec.name for spec in specs], get_task(task)


def ladder(data: str | None = None, models: list[str] | None = None, out: str | Path = "runs/ladder",
           progress: bool = False, on_rung=None, task: str | None = None, **options: Any) -> list[dict]:
    """Train each rung into out/RUNG and tabulate the results. A rung already in `out` is continued where it
    stopped (a finished one is read as it is), so the same call after a Ctrl-C goes on with the ladder."""
    World.from_env().refuse("ladder")
    out = Path(out)
    names, task_ = rungs(models, task)
    rows, curves = [], {}
    for i, name in enumerate(names, 1):
        run_dir = RunDir(out / name)  # the run's first line, once its data is read, names the rung: "[3/11] rnn: ..."
        try:
            run = train(data, name, run_dir.path, resume=run_dir.exists, progress=progress, label=f"[{i}/{len(names)}]",
                        **options)
        except Interrupted as e:
            raise Interrupted(e.step, f"the ladder goes on from there, rung {name} of {out}, when the same command "
                                      "runs again (with or without --resume)") from None
        history = run.metrics
        last = history[-1]
        rows.append({"rung": name, "idea": run.spec.idea, "parameters": run.config["model"]["parameters"],
                     **{column(m): last.get(f"valid_{m}") for m in task_.metrics},
                     "seconds": last["seconds"], "tokens_per_second": last["tokens_per_second"],
                     f"best_{task_.headline}": max(r[f"valid_{task_.headline}"] for r in history)})
        curves[name] = ([r["seconds"] for r in history], [r[f"valid_{task_.headline}"] for r in history])
        if on_rung:
            on_rung(rows[-1])
    atomic_write_json(out / "ladder.json", rows)
    atomic_write(out / "ladder.md", (markdown_table(task_, rows) + "\n").encode())
    plot_curves(curves, out / "ladder.png", "seconds of training", f"validation {task_.headline}",
                f"the ladder on {data_name(run)}")
    return rows


def data_name(run) -> str:
    """The data of a run as a plot's title names it: file names, not whole paths ("pairs.en / pairs.fr")."""
    described = run.task.describe(run.task.data_config_cls(**run.config["data"]["config"]))
    return " / ".join(Path(part).name for part in str(described).split(" / "))


def column(metric: str) -> str:
    """A metric's key in a ladder row: the loss is named valid_loss, the others by their names."""
    return "valid_loss" if metric == "loss" else metric


def columns(task: Any, wide: bool = False) -> list[str]:
    """The table's columns; the terminal's leaves out the ideas, which would make it ~190 wide."""
    shown = [m for m in task.metrics if m != "loss"]
    return ["rung", *(["idea"] if wide else []), "parameters", *shown, "seconds", "tokens/s"]


def table_cells(task: Any, row: dict, wide: bool = False) -> list[str]:
    metrics = task.format_metrics({m: row[column(m)] for m in task.metrics})
    return [row["rung"], *([row["idea"]] if wide else []), f"{row['parameters']:,}",
            *(metrics[m] for m in task.metrics if m != "loss"), f"{row['seconds']:.1f}",
            f"{row['tokens_per_second']:,.0f}"]


def markdown_table(task: Any, rows: list[dict]) -> str:
    header = columns(task, wide=True)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(table_cells(task, row, wide=True)) + " |" for row in rows]
    return "\n".join(lines)
