"""What every benchmark shares: the `Section` it returns, and running a child process with its peak RSS.

Benchmarks measure in child processes, never in the runner itself: a fresh interpreter per measurement
gives each one its own peak resident memory (`child_peak_rss_mb`) and keeps one measurement's caches and
allocator state out of the next.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Section:
    """What a benchmark's `run(quick)` returns: one results section.

    rows: the table, one dict per row; columns are the keys, in the order they first appear. Values are
        numbers, strings, or `spread()` dicts ({"median", "min", "max"}, shown as "median (min-max)").
    notes: lines shown under the table: verdicts, caveats, what the figures mean.
    details: per-measurement records (each seed, each child), kept in results.json only.
    """

    rows: list[dict[str, Any]]
    notes: list[str] = field(default_factory=list)
    details: list[dict[str, Any]] = field(default_factory=list)


class BenchError(RuntimeError):
    """A measurement failed (a child exited non-zero); the message carries the end of its output."""


@dataclass
class ChildResult:
    """One finished child process."""

    returncode: int
    wall_seconds: float
    peak_rss_mb: float  # the child's own peak resident memory, in MiB (see child_peak_rss_mb)
    stdout: str
    stderr: str


def scratchlm_command(*args: str) -> list[str]:
    """`scratchlm ARGS` run with the runner's own interpreter, so the same environment is measured."""
    return [sys.executable, "-m", "scratchlm", *args]


def run_child(command: Sequence[str], workdir: Path, env: dict[str, str] | None = None,
              on_poll: Callable[[int, float], None] | None = None, poll_seconds: float = 0.1) -> ChildResult:
    """Run `command` to completion and return its exit status, wall time and peak RSS.

    Output goes to files in `workdir` (a pipe could fill and block the child). While the child runs,
    `on_poll(pid, seconds_since_start)` is called every `poll_seconds`, to sample what only a live
    process shows (/proc/PID). Raises BenchError when the child fails.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    out_path, err_path = workdir / "stdout.txt", workdir / "stderr.txt"
    sampled = 0.0  # the child's VmHWM at the last poll
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        runner_peak = proc_status_mb(os.getpid(), "VmHWM").get("VmHWM", 0.0)
        start = time.perf_counter()
        child = subprocess.Popen(list(command), stdout=out, stderr=err, stdin=subprocess.DEVNULL,
                                 env={**os.environ, **(env or {})})
        while True:
            pid, status, usage = os.wait4(child.pid, os.WNOHANG)
            if pid:
                break
            sampled = max(sampled, proc_status_mb(child.pid, "VmHWM").get("VmHWM", 0.0))
            if on_poll:
                on_poll(child.pid, time.perf_counter() - start)
            time.sleep(poll_seconds)
        wall = time.perf_counter() - start
        child.returncode = os.waitstatus_to_exitcode(status)  # reaped by wait4: tell Popen so it does not wait
    peak = child_peak_rss_mb(usage.ru_maxrss / 1024, runner_peak, sampled)
    result = ChildResult(child.returncode, wall, peak, out_path.read_text(errors="replace"),
                         err_path.read_text(errors="replace"))
    if result.returncode != 0:
        tail = "\n".join((result.stderr or result.stdout).strip().splitlines()[-15:])
        raise BenchError(f"`{' '.join(command)}` exited with {result.returncode}:\n{tail}")
    return result


def child_peak_rss_mb(ru_maxrss_mb: float, runner_peak_mb: float, sampled_peak_mb: float) -> float:
    """A child's own peak RSS, from `wait4`'s ru_maxrss, the runner's VmHWM when it started the child, and the
    child's VmHWM as last polled.

    Linux keeps the peak of the memory a process replaces at exec (its parent's, after vfork or fork) in
    ru_maxrss, so a child of a runner that has grown to 380 MB reports at least 380 MB, however little
    it used itself. ru_maxrss is the child's own peak when it is above the runner's; otherwise the child
    never rose above the runner, and its VmHWM, which counts from its own exec, as last polled (up to one
    poll short of its end) is the figure: ru_maxrss when no poll saw it (a child that ended at once).
    """
    if ru_maxrss_mb > runner_peak_mb + 1 or not sampled_peak_mb:
        return ru_maxrss_mb
    return sampled_peak_mb


def proc_status_mb(pid: int, *keys: str) -> dict[str, float]:
    """Fields of /proc/PID/status given in kB (VmRSS, VmHWM, RssAnon, RssFile), in MiB; {} once it is gone."""
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:
        return {}
    values = {}
    for line in lines:
        name, _, rest = line.partition(":")
        if name in keys:
            values[name] = int(rest.split()[0]) / 1024
    return values


def spread(values: Sequence[float]) -> dict[str, float]:
    """Median, min and max of repeated measurements: seeds and timings vary, one number would hide it."""
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def rungs_over_seeds(details: list[dict], keys: Sequence[str]) -> tuple[dict[str, list[dict]], list[dict]]:
    """Ladder rows of several seeds grouped by rung, and one row per rung with the spread of each of `keys`."""
    by_rung: dict[str, list[dict]] = {}
    for d in details:
        by_rung.setdefault(d["rung"], []).append(d)
    rows = [{"rung": r, "idea": runs[0]["idea"], "parameters": runs[0]["parameters"], "seeds": len(runs),
             **{key: spread([d[key] for d in runs]) for key in keys}} for r, runs in by_rung.items()]
    return by_rung, rows


def ladder_dir(tmp: Path, seed: int) -> Path:
    """Where `ladder_rows` puts the ladder of `seed`: one run folder per rung inside."""
    return tmp / f"seed{seed}"


def ladder_rows(bench: str, seed: int, args: Sequence[str], tmp: Path) -> list[dict]:
    """One `scratchlm ladder ARGS --seed SEED` process with its own token cache; its rows, each with the seed."""
    out = ladder_dir(tmp, seed)
    log(f"  {bench}: seed {seed} ...")
    run_child(scratchlm_command("ladder", *args, "--seed", str(seed), "--out", str(out), "--quiet"),
              tmp / "logs" / out.name, env={"SCRATCHLM_CACHE": str(tmp / "cache")})
    rows = json.loads((out / "ladder.json").read_text())
    for row in rows:
        row["seed"] = seed
    return rows


def carried_over(kept: dict | None, quick: bool, key: str, keep: Callable[[str], bool]) -> list[dict]:
    """The detail rows of an earlier section (`kept`, of the same kind, quick or not) whose `key` (the model,
    the rung) `keep` accepts, each with the date it was measured: bench/run.py --models runs a long race in
    parts and carries the rows of the parts not run this time."""
    if not kept or kept.get("quick") != quick:
        return []
    return [{**d, "measured": d.get("measured", kept["date"][:10])} for d in kept.get("details", [])
            if key in d and keep(d[key])]


def measured_apart(details: list[dict]) -> str | None:
    """A note when the rows were measured on different days (parts of a race run apart), else None."""
    if len(dates := {d["measured"] for d in details if "measured" in d}) > 1:
        return (f"The rows were measured in separate runs (bench/run.py --models), on {', '.join(sorted(dates))}: "
                "compare them knowing the machine's load may have differed.")
    return None


def log(message: str) -> None:
    """Progress for the person waiting: on stderr, so stdout stays clean."""
    print(message, file=sys.stderr, flush=True)
