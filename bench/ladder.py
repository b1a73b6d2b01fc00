"""The whole ladder on human numbers: every language-model rung of the registry, as `scratchlm ladder` races them.

One `scratchlm ladder --data human-numbers --seed S` process per seed; each rung trains with its own
registry defaults on the same data and split. The figures are the median (min-max) over the seeds, since
these small models move by several points from one seed to the next. Two targets are checked: awd-lstm
reaches 0.88 validation accuracy within 20 seconds of training, and the best rung reaches 0.93. The
scratch cells (`lstm-scratch`, `gru-scratch`: Python loops over time) are compared with the fused kernels
(`lstm`, `gru`) by their tokens/s in the same process, a ratio that survives a busy machine better than
either figure alone.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from common import Section, ladder_dir, ladder_rows, log, rungs_over_seeds, spread

NAME = "ladder"
TITLE = "The ladder on human numbers: every rung, same data"
ABOUT = ("Runs `scratchlm ladder --data human-numbers --seed S` once per seed (a fresh process each): every "
         "language-model rung of the registry with its registry defaults. Accuracy is the final validation "
         "accuracy (the last 20% of the stream, as the book); seconds and tokens/s are the run's own training "
         "time, evaluations not counted. Figures are median (min-max) over the seeds.")

SEEDS = (0, 1, 2)
GPT_TARGET = (0.90, 60.0)  # median accuracy, seconds of training
AWD_TARGET = (0.88, 20.0)  # awd-lstm: at least this accuracy within this many seconds of training
BEST_TARGET = 0.93  # the best rung
SCRATCH_PAIRS = (("lstm-scratch", "lstm"), ("gru-scratch", "gru"))


def run(quick: bool = False) -> Section:
    seeds = SEEDS[:1] if quick else SEEDS
    details = []
    with tempfile.TemporaryDirectory(prefix="scratchlm-bench-ladder-") as tmp:
        for seed in seeds:
            details.extend(ladder_once(seed, Path(tmp)))
    return summarize(details)


def ladder_once(seed: int, tmp: Path) -> list[dict]:
    """One `scratchlm ladder` process; its rows, each with the seed and the time awd-lstm needed."""
    rows = ladder_rows(NAME, seed, ["--data", "human-numbers"], tmp)
    for row in rows:
        row["seconds_to_target"] = seconds_to(ladder_dir(tmp, seed) / row["rung"] / "metrics.jsonl", AWD_TARGET[0])
        log(f"    {row['rung']:13} accuracy {row['accuracy']:.3f}  {row['seconds']:6.1f} s")
    return rows


def seconds_to(metrics_path: Path, accuracy: float) -> float | None:
    """Training seconds at the first evaluation reaching `accuracy`, or None if none did."""
    for line in metrics_path.read_text().splitlines():
        if line.strip() and (m := json.loads(line))["valid_accuracy"] >= accuracy:
            return m["seconds"]
    return None


def summarize(details: list[dict]) -> Section:
    by_rung, rows = rungs_over_seeds(details, ("accuracy", "best_accuracy", "perplexity", "seconds", "tokens_per_second"))
    seeds = sorted({d["seed"] for d in details})
    notes = [f"Seeds {', '.join(map(str, seeds))}; command: `scratchlm ladder --data human-numbers --seed S`."]
    if "awd-lstm" in by_rung:
        awd = by_rung["awd-lstm"]
        reached = [d["seconds_to_target"] for d in awd]
        met = sum(1 for s in reached if s is not None and s <= AWD_TARGET[1])
        shown = ", ".join("never" if s is None else f"{s:.1f} s" for s in reached)
        notes.append(f"awd-lstm target, {AWD_TARGET[0]} accuracy within {AWD_TARGET[1]:.0f} s of training: met at "
                     f"{met} of {len(awd)} seeds (first evaluation at or above it: {shown}).")
    if "gpt" in by_rung:
        gpt = by_rung["gpt"]
        accuracy, seconds = spread([d["accuracy"] for d in gpt]), max(d["seconds"] for d in gpt)
        met = accuracy["median"] >= GPT_TARGET[0] and seconds <= GPT_TARGET[1]
        notes.append(f"gpt target, median accuracy >= {GPT_TARGET[0]} trained within {GPT_TARGET[1]:.0f} s (its "
                     f"recipe sized to human numbers): {accuracy['median']:.3f} ({accuracy['min']:.3f}-"
                     f"{accuracy['max']:.3f}), at most {seconds:.1f} s: {'met' if met else 'not met'}.")
    best = max(rows, key=lambda r: r["accuracy"]["median"])
    verdict = "met" if best["accuracy"]["median"] >= BEST_TARGET else "not met"
    notes.append(f"Best rung: {best['rung']}, median accuracy {best['accuracy']['median']:.3f} "
                 f"(target {BEST_TARGET}: {verdict}).")
    for scratch, fused in SCRATCH_PAIRS:
        if scratch in by_rung and fused in by_rung:
            ratios = [s["tokens_per_second"] / f["tokens_per_second"]
                      for s in by_rung[scratch] for f in by_rung[fused] if s["seed"] == f["seed"]]
            r = spread(ratios)
            notes.append(f"{scratch} trains at {r['median']:.2f}x the tokens/s of {fused} ({r['min']:.2f}-{r['max']:.2f}; "
                         "the same process and seed): the cells are there to be read, the fused kernel to be used.")
    return Section(rows, notes, details)
