"""The ladder: every language model of the registry trained on the same data, side by side.

fast.ai's chapter 12 climbs from a fixed-window MLP to a regularized LSTM, one idea per rung; this
races them all on one corpus and split, each with its own registry defaults (or the same `--time`
budget), and writes one table and one plot of validation accuracy against training time:

    runs/ladder/
      mlp3/ rnn3/ ...   one ordinary run directory per rung
      ladder.md         the table, markdown
      ladder.json       the same rows, JSON
      ladder.png        validation accuracy against seconds, every rung
Models added to the registry join the race with no change here.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from scratchlm.api import train
from scratchlm.checkpoint import RunDir, atomic_write, atomic_write_json
from scratchlm.distributed import World
from scratchlm.errors import UserError
from scratchlm.models.registry import REGISTRY, get_spec
from scratchlm.plots import plot_curves

COLUMNS = ["rung", "idea", "parameters", "accuracy", "perplexity", "seconds", "tokens/s"]


def lm_rungs(names: list[str] | None = None) -> list[str]:
    """The language models of the registry, in ladder order, or the chosen ones (checked)."""
    if names is None:
        return [name for name, spec in REGISTRY.items() if spec.task == "lm"]
    if not names:
        raise UserError("--models names no model; give comma-separated rungs, e.g. rnn,lstm")
    for name in names:
        if get_spec(name).task != "lm":
            raise UserError(f"{name} is not a language model; the ladder races language models")
    return names


def ladder(data: str | None = None, models: list[str] | None = None, out: str | Path = "runs/ladder",
           progress: bool = False, on_rung=None, **options: Any) -> list[dict]:
    """Train each rung into out/RUNG (continuing it if it is already there) and tabulate the results."""
    World.from_env().refuse("ladder")
    out = Path(out)
    rows, curves = [], {}
    for name in lm_rungs(models):
        run_dir = RunDir(out / name)
        run = train(data, name, run_dir.path, resume=run_dir.exists, progress=progress, **options)
        history = run.metrics
        last = history[-1]
        rows.append({"rung": name, "idea": run.spec.idea, "parameters": run.config["model"]["parameters"],
                     "accuracy": last["valid_accuracy"], "perplexity": last["valid_perplexity"],
                     "valid_loss": last["valid_loss"], "seconds": last["seconds"],
                     "tokens_per_second": last["tokens_per_second"],
                     "best_accuracy": max(r["valid_accuracy"] for r in history)})
        curves[name] = ([r["seconds"] for r in history], [r["valid_accuracy"] for r in history])
        if on_rung:
            on_rung(rows[-1])
    atomic_write_json(out / "ladder.json", rows)
    atomic_write(out / "ladder.md", (markdown_table(rows) + "\n").encode())
    plot_curves(curves, out / "ladder.png", "seconds of training", "validation accuracy",
                f"the ladder on {Path(data).name if data else 'human-numbers'}")
    return rows


def table_cells(row: dict) -> list[str]:
    return [row["rung"], row["idea"], f"{row['parameters']:,}", f"{row['accuracy']:.4f}", f"{row['perplexity']:.3f}",
            f"{row['seconds']:.1f}", f"{row['tokens_per_second']:,.0f}"]


def markdown_table(rows: list[dict]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(table_cells(row)) + " |" for row in rows]
    return "\n".join(lines)


def read_ladder(out: str | Path) -> list[dict]:
    return json.loads((Path(out) / "ladder.json").read_text())
