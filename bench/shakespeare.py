"""Every language-model rung on tiny-shakespeare at the character level, under one 140-second budget.

One `scratchlm ladder --data input.txt --tokenizer char --time 140 --seed S` process per seed: each rung
trains with its registry recipe for 140 seconds of training (evaluations not counted) on the same split
(the last 10% of the file held out, read in one full pass), and the table gives the median (min-max)
over three seeds of its validation loss, bits per character and tokens/s. 140 s is nanoGPT's 2000
iterations of its shakespeare-char CPU recipe. The question it answers: for a given budget on this
CPU, which rung writes best? The target: the gpt rung's median validation loss is no worse than the best
recurrent rung's, in the same run.
"""

from __future__ import annotations

import tempfile
from datetime import UTC, datetime
from pathlib import Path

from common import BenchError, Section, carried_over, ladder_rows, log, measured_apart, rungs_over_seeds

NAME = "shakespeare"
TITLE = "Every language-model rung on tiny-shakespeare (char), 140 s each"
ABOUT = ("Runs `scratchlm ladder --data tinyshakespeare/input.txt --tokenizer char --time 140 --seed S` once per "
         "seed (a fresh process each): every language-model rung with its registry recipe, 140 s of training, "
         "evaluations not counted. Loss is the validation loss of the best checkpoint (the last 10% of the file, "
         "one full pass); bpc its bits per character. Figures are median (min-max) over the seeds.")
DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "tinyshakespeare" / "input.txt"
SEEDS = (0, 1, 2)
BUDGET_S = 140
QUICK_RUNGS = ("lstm", "gru", "awd-lstm", "gpt")  # --quick: the strongest rungs, one seed, a fifth of the budget
NOT_RECURRENT = {"ngram", "mlp3", "gpt"}  # the rungs "the best recurrent rung" is not chosen from


def run(quick: bool = False, models: list[str] | None = None, kept: dict | None = None) -> Section:
    """`models`: these rungs only, at the same budget and seeds (the strongest, `lstm gru awd-lstm gpt`, take
    a third of the hour and a half every rung takes); `kept`: the section recorded before (bench/run.py passes
    it with --models), whose rows for the rungs not run now are carried over with the date each was measured."""
    if not DATA.exists():
        return Section([], [f"skipped: {DATA} is not here"])
    from scratchlm.models.registry import REGISTRY

    rungs = [name for name, spec in REGISTRY.items() if spec.task == "lm"]
    if unknown := sorted(set(models or []) - set(rungs)):
        raise BenchError(f"unknown language-model rung(s) {', '.join(unknown)}; choose from {', '.join(rungs)}")
    seeds, budget = (SEEDS[:1], BUDGET_S / 5) if quick else (SEEDS, BUDGET_S)
    picked = tuple(dict.fromkeys(models)) if models else QUICK_RUNGS if quick else None
    today = datetime.now(UTC).date().isoformat()
    details = []
    with tempfile.TemporaryDirectory(prefix="scratchlm-bench-shakespeare-") as tmp:
        for seed in seeds:
            details.extend({**row, "measured": today} for row in ladder_once(seed, budget, picked, Path(tmp)))
    raced = {d["rung"] for d in details}
    details += carried_over(kept, quick, "rung", lambda rung: rung in rungs and rung not in raced)
    details.sort(key=lambda d: (rungs.index(d["rung"]), d["seed"]))  # the ladder's order, whichever part ran
    return summarize(details, budget, rungs if models else None)


def ladder_once(seed: int, budget: float, rungs: tuple[str, ...] | None, tmp: Path) -> list[dict]:
    models = ["--models", ",".join(rungs)] if rungs else []
    rows = ladder_rows(NAME, seed, ["--data", str(DATA), "--tokenizer", "char", "--time", str(budget), *models], tmp)
    for row in rows:
        log(f"    {row['rung']:13} loss {row['valid_loss']:.4f}  {row['seconds']:6.1f} s")
    return rows


def summarize(details: list[dict], budget: float, rungs: list[str] | None = None) -> Section:
    """The table and its notes; `rungs`, with --models: every language-model rung, to name those not run."""
    _, rows = rungs_over_seeds(details, ("valid_loss", "bpc", "accuracy", "seconds", "tokens_per_second"))
    seeds = sorted({d["seed"] for d in details})
    notes = [f"Seeds {', '.join(map(str, seeds))}; command: `scratchlm ladder --data {DATA.name} --tokenizer char "
             f"--time {budget:g} --seed S`."]
    if rungs and (left_out := [rung for rung in rungs if rung not in {r["rung"] for r in rows}]):
        notes.append(f"Not run: {', '.join(left_out)} (bench/run.py --models ran the others); \"the best recurrent "
                     "rung\" below is the best of those run.")
    if apart := measured_apart(details):
        notes.append(apart)
    ranked = sorted(rows, key=lambda r: r["valid_loss"]["median"])
    notes.append("By median validation loss: " + ", ".join(f"{r['rung']} {r['valid_loss']['median']:.3f}"
                                                           for r in ranked) + ".")
    recurrent = [r for r in ranked if r["rung"] not in NOT_RECURRENT]
    gpt = next((r for r in rows if r["rung"] == "gpt"), None)
    if gpt and recurrent:
        best = recurrent[0]
        met = gpt["valid_loss"]["median"] <= best["valid_loss"]["median"]
        reads = gpt["tokens_per_second"]["median"] / best["tokens_per_second"]["median"]
        notes.append(f"gpt against the best recurrent rung ({best['rung']}): median validation loss "
                     f"{gpt['valid_loss']['median']:.3f} against {best['valid_loss']['median']:.3f}, reading "
                     f"{reads:.2f}x its characters per second: target (no worse) {'met' if met else 'not met'}.")
    return Section(rows, notes, details)
