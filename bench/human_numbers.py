"""The first five rungs of the ladder on human-numbers, against the accuracies of fast.ai's chapter 12.

Each rung trains with its registry defaults (what `scratchlm train --model NAME` does), once per seed,
each run in a fresh `scratchlm train` process so that its peak RSS is its own. These models are tiny
and their accuracy moves by several points from one seed to the next, so every figure is the median
over the seeds with the min-max range beside it.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from common import Section, log, run_child, scratchlm_command, spread
from scratchlm.models.registry import REGISTRY

NAME = "human_numbers"
TITLE = "Human numbers: the first five rungs against the book"
ABOUT = ("Trains mlp3, rnn3, rnn-stateful, rnn and rnn-deep with their registry defaults on the built-in "
         "human-numbers corpus, one fresh `scratchlm train` process per rung and seed. Accuracy and loss are "
         "on the validation split (the last 20% of the stream, as the book); final is the last evaluation, "
         "best the highest accuracy of any evaluation. Book: the accuracy fast.ai's chapter 12 reports for the "
         "same model; vs book: how far the median final accuracy lies above (+) or below (-) it. Train s and "
         "tokens/s come from the run's own metrics (training time, evaluations not counted); peak RSS is the "
         "child's own peak (bench/common.py). Figures are median (min-max) over the seeds.")

RUNGS = ("mlp3", "rnn3", "rnn-stateful", "rnn", "rnn-deep")
SEEDS = (0, 1, 2)
# Validation accuracy in fast.ai's chapter 12 (LMModel1-5); a range where the book's text gives one.
BOOK_ACCURACY: dict[str, tuple[float, float]] = {
    "mlp3": (0.494, 0.494), "rnn3": (0.470, 0.485), "rnn-stateful": (0.574, 0.582),
    "rnn": (0.586, 0.64), "rnn-deep": (0.53, 0.53),
}
FADE = 0.05  # a final accuracy this far under the run's best is worth a note


def run(quick: bool = False) -> Section:
    """Every rung, every seed (one seed with `quick`); one table row per rung."""
    seeds = SEEDS[:1] if quick else SEEDS
    details = []
    with tempfile.TemporaryDirectory(prefix="scratchlm-bench-hn-") as tmp:
        for model in RUNGS:
            for seed in seeds:
                details.append(train_once(model, seed, Path(tmp)))
    return summarize(details)


def summarize(details: list[dict]) -> Section:
    """The table (one row per rung) and the notes, from the per-run records of `train_once`."""
    models = [m for m in RUNGS if any(d["model"] == m for d in details)]
    runs = {m: [d for d in details if d["model"] == m] for m in models}
    rows = [rung_row(m, runs[m]) for m in models]
    seeds = sorted({d["seed"] for d in details})
    notes = [f"Seeds {', '.join(map(str, seeds))}; registry defaults: "
             + "; ".join(f"{m} {describe_defaults(m)}" for m in models) + "."]
    if below := [f"{m} (best seed {max(d['final_accuracy'] for d in runs[m]):.3f}, book {BOOK_ACCURACY[m][0]:.3f})"
                 for m in models if max(d["final_accuracy"] for d in runs[m]) < BOOK_ACCURACY[m][0]]:
        notes.append(f"Final accuracy below the book at every seed: {', '.join(below)}.")
    if fading := [f"{r['model']} ({r['final_accuracy']['median']:.3f}, best {r['best_accuracy']['median']:.3f})"
                  for r in rows if r["best_accuracy"]["median"] - r["final_accuracy"]["median"] > FADE]:
        notes.append(f"Final accuracy more than {FADE} under the run's best evaluation (medians): "
                     f"{', '.join(fading)}: the run peaks early and ends worse.")
    return Section(rows, notes, details)


def train_once(model: str, seed: int, tmp: Path) -> dict:
    """One `scratchlm train` run in its own process; its final and best evaluation, speed and peak RSS."""
    out = tmp / f"{model}-seed{seed}"
    log(f"  {NAME}: {model} seed {seed} ...")
    # All runs share one token cache in the temporary folder: the user's cache is left alone.
    child = run_child(scratchlm_command("train", "--data", "human-numbers", "--model", model, "--seed", str(seed),
                                        "--out", str(out), "--quiet"),
                      tmp / "logs" / out.name, env={"SCRATCHLM_CACHE": str(tmp / "cache")})
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if line.strip()]
    last = metrics[-1]
    result = {"model": model, "seed": seed, "final_accuracy": last["valid_accuracy"],
              "best_accuracy": max(m["valid_accuracy"] for m in metrics), "final_loss": last["valid_loss"],
              "final_perplexity": last["valid_perplexity"], "train_seconds": last["seconds"],
              "tokens_per_second": last["tokens_per_second"], "peak_rss_mb": round(child.peak_rss_mb, 1),
              "wall_seconds": round(child.wall_seconds, 2), "steps": last["step"], "evaluations": len(metrics)}
    log(f"    accuracy {result['final_accuracy']:.3f} (best {result['best_accuracy']:.3f}), "
        f"{result['train_seconds']:.1f} s, peak RSS {result['peak_rss_mb']:.0f} MB")
    return result


def rung_row(model: str, runs: list[dict]) -> dict:
    """The table row of one rung: each figure's spread over the seeds, and the book's accuracy."""
    low, high = BOOK_ACCURACY[model]
    final = spread([r["final_accuracy"] for r in runs])
    return {"model": model, "seeds": len(runs), "final_accuracy": final,
            "best_accuracy": spread([r["best_accuracy"] for r in runs]),
            "book_accuracy": f"{low:.3f}" if low == high else f"{low:.3f}-{high:.3f}",
            "vs_book": compare(final["median"], low, high),
            **{key: spread([r[key] for r in runs]) for key in
               ("final_loss", "final_perplexity", "train_seconds", "tokens_per_second", "peak_rss_mb")}}


def compare(value: float, low: float, high: float) -> str:
    """`value` against the book's [low, high]: "within", or how far above (+) or below (-) it."""
    if value < low:
        return f"{value - low:+.3f}"
    if value > high:
        return f"{value - high:+.3f}"
    return "within"


def describe_defaults(model: str) -> str:
    train = REGISTRY[model].train
    return f"{train['epochs']} epochs, lr {train['lr']:g}, bptt {train['bptt']}"
