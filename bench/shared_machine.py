"""The tiny GPT alone and beside a second training: what a laptop user running two things at once gets.

`scratchlm train --model gpt` (the registry recipe: 0.8M parameters, batch 12 x 64) trains for a fixed
time, once alone and once beside a second `scratchlm train` started just before it in another process:
a single-threaded one (`--model rnn`, which scratchlm runs on one thread) and another gpt (which takes
the free cores). Two more cases run both with every core to the gpt and idle threads spinning
(libgomp's own default, GOMP_SPINCOUNT=300000, where scratchlm sets 10,000): alone, and beside another
gpt. `--env OMP_WAIT_POLICY=PASSIVE` (or any GOMP_SPINCOUNT) compares another policy. The data is
tiny-shakespeare at the
character level when ../shared/data/tinyshakespeare/input.txt is here, else the built-in
human-numbers. Tokens/s is the run's own figure, from its metrics. The cases run in alternating
rounds, so that other load on a shared machine falls on all of them alike. The target: beside a second training, at
least 0.45x the tokens/s alone.

Also a command for trying settings by hand, printing JSON:

    .venv/bin/python bench/shared_machine.py --time 15 --rounds 2 --env OMP_WAIT_POLICY=ACTIVE
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import BenchError, Section, log, run_child, scratchlm_command, spread

NAME = "shared_machine"
TITLE = "Shared machine: the tiny GPT alone and beside a second training"
ABOUT = ("Tokens/s of `scratchlm train --model gpt` (the registry recipe) over a fixed time, alone and beside a second "
         "`scratchlm train` running in another process, started just before it: a single-threaded `rnn`, and another "
         "`gpt`; then alone and beside a gpt again as before scratchlm chose threads by the free cores and set "
         "GOMP_SPINCOUNT=10000: OMP_NUM_THREADS=all cores for both runs, and libgomp's default of idle threads spinning "
         "300,000 turns (about 3 ms) before they sleep. On tiny-shakespeare at the "
         "character level (human-numbers when it is absent). The cases run in alternating rounds; median (min-max) "
         "over the rounds. Vs alone: over the same round's alone with the same settings. The target: at least "
         "0.45x alone beside either.")

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "tinyshakespeare" / "input.txt"
TARGET = 0.45
SECONDS, QUICK_SECONDS = 20, 10
ROUNDS, QUICK_ROUNDS = 3, 1
OTHER_SECONDS = 3600  # the run beside is stopped when the measured one ends
# As before: libgomp's own default, which scratchlm's GOMP_SPINCOUNT=10000 replaced (idle threads spin
# 300,000 times, about 3 ms, before they sleep; GOMP_SPINCOUNT wins over OMP_WAIT_POLICY, and scratchlm
# keeps it), and every core for the gpt, whatever else runs (OMP_NUM_THREADS, which scratchlm obeys).
SPINNING = {"GOMP_SPINCOUNT": "300000", "OMP_NUM_THREADS": str(len(os.sched_getaffinity(0)))}
# (case, what trains beside the measured gpt, the environment of both runs); the first is "alone"
CASES = (("alone", None, {}), ("beside rnn", "rnn", {}), ("beside gpt", "gpt", {}),
         ("alone, as before", None, SPINNING), ("beside gpt, both as before", "gpt", SPINNING))


def data_options() -> list[str]:
    """The data, with a small validation share: the evaluation after the timed part is not what is measured."""
    if DATA.exists():
        return ["--data", str(DATA), "--tokenizer", "char", "--valid-fraction", "0.02"]
    return ["--data", "human-numbers"]


def train_command(model: str, seconds: float, out: Path, cache: Path) -> list[str]:
    return scratchlm_command("train", *data_options(), "--model", model, "--time", f"{seconds:.0f}s", "--seed", "0",
                             "--out", str(out), "--cache-dir", str(cache), "--quiet")


def measure(tmp: Path, name: str, seconds: float, beside: str | None, env: dict[str, str]) -> dict:
    """One timed gpt run, with `beside` training in another process from before its start to after its end."""
    cache, other, load_start = tmp / "cache", None, os.getloadavg()[0]
    if beside:
        other_out = tmp / f"{name}-other"
        log_file = open(tmp / f"{name}-other.log", "wb")  # noqa: SIM115 - closed below, after the child
        other = subprocess.Popen(train_command(beside, OTHER_SECONDS, other_out, cache), stdout=log_file,
                                 stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env={**os.environ, **env})
        deadline = time.monotonic() + 120
        while not (other_out / "config.json").exists():  # written just before its first step
            if other.poll() is not None or time.monotonic() > deadline:
                log_file.close()
                raise BenchError(f"the {beside} run beside did not start:\n"
                                 + (tmp / f"{name}-other.log").read_text(errors="replace")[-2000:])
            time.sleep(0.1)
        time.sleep(1.0)  # into its steps
    try:
        out = tmp / name
        child = run_child(train_command("gpt", seconds, out, cache), tmp / f"{name}-child", env=env)
    finally:
        if other:
            still_running = other.poll() is None
            other.kill()
            other.wait()
            log_file.close()
    if other and not still_running:
        raise BenchError(f"the {beside} run beside ended before the measured one:\n"
                         + (tmp / f"{name}-other.log").read_text(errors="replace")[-2000:])
    last = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if line.strip()][-1]
    return {"beside": beside, "env": env, "tokens_per_second": last["tokens_per_second"], "steps": last["step"],
            "seconds": last["seconds"], "wall_seconds": round(child.wall_seconds, 1),
            "load_start": round(load_start, 2), "load_end": round(os.getloadavg()[0], 2)}


def measure_rounds(seconds: float, rounds: int, env: dict[str, str]) -> list[dict]:
    found = []
    with tempfile.TemporaryDirectory(prefix="scratchlm-bench-shared-") as tmp:
        run_child(train_command("gpt", 1, Path(tmp) / "warmup", Path(tmp) / "cache"), Path(tmp) / "warmup-child",
                  env=env)  # fills the token cache, so no case pays for tokenizing
        for r in range(rounds):
            for i, (case, beside, case_env) in enumerate(CASES):
                m = measure(Path(tmp), f"r{r}-{i}", seconds, beside, {**env, **case_env})
                log(f"  {NAME}: round {r + 1}, {case}: {m['tokens_per_second']:,.0f} tokens/s, "
                    f"load {m['load_start']:.2f}")
                found.append({"round": r, "case": case, **m})
    return found


def summarize(found: list[dict], seconds: float, env: dict[str, str]) -> Section:
    """A row per case; ratio: over the same round's `alone` with the same wait policy."""
    by = {(m["round"], m["case"]): m["tokens_per_second"] for m in found}
    rows, ratios = [], {}
    for case, beside, case_env in CASES:
        cases = [m for m in found if m["case"] == case]
        base = "alone, as before" if case_env == SPINNING else "alone"
        ratios[case] = [m["tokens_per_second"] / by[(m["round"], base)] for m in cases]
        rows.append({"case": case, "beside": f"scratchlm train --model {beside}" if beside else "-",
                     "threads, idle": "all cores, spin" if case_env == SPINNING else "free cores, spin 10k",
                     "tokens/s": spread([m["tokens_per_second"] for m in cases]),
                     "steps": spread([m["steps"] for m in cases]), "vs alone": spread(ratios[case]),
                     "load start": spread([m["load_start"] for m in cases])})
    median = {case: statistics.median(r) for case, r in ratios.items()}
    verdict = lambda ok: "met" if ok else "not met"
    rounds = len({m["round"] for m in found})
    passive_cost = statistics.median([by[(r, "alone")] / by[(r, "alone, as before")] for r in range(rounds)])
    data = "tiny-shakespeare (char)" if DATA.exists() else "human-numbers"
    notes = [f"Beside rnn: {median['beside rnn']:.2f}x alone, beside gpt: {median['beside gpt']:.2f}x (target >= "
             f"{TARGET}x: {verdict(min(median['beside rnn'], median['beside gpt']) >= TARGET)}); as before (every "
             f"core, idle threads spinning), beside gpt: {median['beside gpt, both as before']:.2f}x.",
             f"Alone, now over as before: {passive_cost:.2f}x the tokens/s: about 1 on an idle machine, where the "
             "brief spin still catches the next parallel region, and over 1 where other work runs (a user's "
             "OMP_WAIT_POLICY or GOMP_SPINCOUNT is kept).",
             f"{seconds:.0f} s of training per case on {data}, {rounds} round(s), the cases alternating; threads "
             "by scratchlm (speed.cpu_threads: the cores other work leaves free at the start, from /proc/stat), "
             "as before: OMP_NUM_THREADS=all. "
             f"Environment given to both runs: {env or 'nothing beyond the runner’s'}."]
    return Section(rows, notes, found)


def run(quick: bool = False) -> Section:
    seconds = QUICK_SECONDS if quick else SECONDS
    return summarize(measure_rounds(seconds, QUICK_ROUNDS if quick else ROUNDS, {}), seconds, {})


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--time", type=float, default=SECONDS, help="seconds of training per case")
    p.add_argument("--rounds", type=int, default=ROUNDS)
    p.add_argument("--env", action="append", default=[], metavar="KEY=VALUE", help="for both runs (repeatable)")
    args = p.parse_args(argv)
    env = dict(item.split("=", 1) for item in args.env)
    section = summarize(measure_rounds(args.time, args.rounds, env), args.time, env)
    print(json.dumps({"rows": section.rows, "notes": section.notes, "details": section.details}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
