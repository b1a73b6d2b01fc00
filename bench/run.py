"""Run the benchmarks and write bench/results/results.json and RESULTS.md.

    .venv/bin/python bench/run.py                       # all of them (make bench)
    .venv/bin/python bench/run.py --only memory         # one; the other sections are kept
    .venv/bin/python bench/run.py --quick               # smaller and faster, for a first look

results.json is the record: the machine, the versions, and one section per benchmark. Each finished
benchmark replaces its own section (merged into the file under a lock, written to a temporary file and
renamed), and RESULTS.md is regenerated from the JSON, so the two never disagree.
"""

from __future__ import annotations

import argparse
import fcntl
import inspect
import json
import os
import platform
import subprocess
import sys
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

import classify
import embedding_methods
import embeddings
import gpt
import gpt2_small
import gpt_gpu
import human_numbers
import ladder
import memory
import ngram
import reliability
import shakespeare
import shared_machine
import translation
import wikitext
from common import BenchError, Section, log

# Every benchmark, in the order they run and appear in RESULTS.md. A benchmark is a module with NAME,
# TITLE, ABOUT and run(quick: bool) -> Section; adding one is adding it here (see bench/README.md).
BENCHMARKS: list[ModuleType] = [human_numbers, ladder, wikitext, ngram, gpt, gpt_gpu, gpt2_small, shakespeare, translation,
                                classify, embeddings, embedding_methods, memory, reliability, shared_machine]

RESULTS_DIR = Path(__file__).resolve().parent / "results"
FORMAT = "scratchlm-bench/1"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    by_name = {b.NAME: b for b in BENCHMARKS}
    if args.list:
        for b in BENCHMARKS:
            print(f"{b.NAME:15} {b.TITLE}")
        return 0
    if unknown := [n for n in args.only or [] if n not in by_name]:
        log(f"unknown benchmark(s) {', '.join(unknown)}; choose from {', '.join(by_name)}")
        return 2
    selected = [by_name[n] for n in dict.fromkeys(args.only)] if args.only else BENCHMARKS
    if args.models and (no := [b.NAME for b in selected if "models" not in inspect.signature(b.run).parameters]):
        log(f"--models picks the models of a race; {', '.join(no)} has none to pick (use it with --only)")
        return 2
    env = environment()
    failed = []
    for bench in selected:
        log(f"{bench.NAME}: {bench.TITLE}{' (quick)' if args.quick else ''}")
        load_start, start = os.getloadavg()[0], time.perf_counter()
        try:
            picked = {"models": args.models, "kept": recorded(args.results).get(bench.NAME)} if args.models else {}
            section = bench.run(quick=args.quick, **picked)
        except Exception as e:  # one failing benchmark must not lose the others' results
            log(f"{bench.NAME} FAILED: {e}" if isinstance(e, BenchError) else traceback.format_exc())
            failed.append(bench.NAME)
            continue
        if not section.rows and bench.NAME in recorded(args.results):
            log(f"{bench.NAME}: {' '.join(section.notes)}; its recorded figures are kept")
            continue
        record = section_record(bench, section, args.quick, time.perf_counter() - start, load_start, env)
        save(args.results, bench.NAME, record, env)
        log(f"{bench.NAME}: done in {record['seconds']:.0f} s; written to {args.results / 'RESULTS.md'}")
    if failed:
        log(f"failed: {', '.join(failed)} (their previous results, if any, are kept)")
    return 1 if failed else 0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Run scratchlm's benchmarks and record the results.")
    p.add_argument("--only", nargs="+", action="extend", metavar="NAME",
                   help="run only these benchmarks; the others' sections are kept")
    p.add_argument("--quick", action="store_true", help="fewer seeds and smaller inputs: minutes, not tens")
    p.add_argument("--models", nargs="+", action="extend", metavar="MODEL",
                   help="with --only translation or shakespeare: run only these models (rungs), keeping the "
                        "recorded rows of the others")
    p.add_argument("--results", type=Path, default=RESULTS_DIR, help="where to write (default bench/results)")
    p.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    return p.parse_args(argv)


# ---------------------------------------------------------------- the environment


def environment() -> dict[str, dict[str, Any]]:
    """The machine and the versions the figures were measured with."""
    import numpy
    import torch

    import scratchlm

    versions = {"python": platform.python_version(), "torch": torch.__version__,
                "scratchlm": scratchlm.__version__, "numpy": numpy.__version__, "commit": git_commit()}
    return {"machine": machine(torch), "versions": versions}


def git_commit() -> str | None:
    """The checkout's commit, "+dirty" when tracked files differ from it: the version string alone
    does not change between commits. None outside a git checkout."""
    repo = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(["git", "-C", str(repo), "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return head + ("+dirty" if dirty else "")


def machine(torch: ModuleType) -> dict[str, Any]:
    """CPU model, cores, RAM, AMX and AVX-512 bf16 (what bf16 on CPU depends on) and the GPUs torch sees."""
    cpuinfo = read_text("/proc/cpuinfo")
    model = next((line.split(":", 1)[1].strip() for line in cpuinfo.splitlines() if line.startswith("model name")),
                 platform.processor() or platform.machine())
    flags = next((line.split(":", 1)[1].split() for line in cpuinfo.splitlines() if line.startswith("flags")), [])
    mem_kb = next((int(line.split()[1]) for line in read_text("/proc/meminfo").splitlines()
                   if line.startswith("MemTotal:")), 0)
    gpus = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else []
    return {"cpu": model, "cores": os.cpu_count(), "usable_cores": len(os.sched_getaffinity(0)),
            "ram_gb": round(mem_kb / 2**20, 1), "amx": any(f.startswith("amx") for f in flags),
            "avx512_bf16": "avx512_bf16" in flags, "gpu": ", ".join(gpus) or None, "os": platform.platform()}


def read_text(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


# ---------------------------------------------------------------- results.json


def section_record(bench: ModuleType, section: Section, quick: bool, seconds: float, load_start: float,
                   env: dict) -> dict[str, Any]:
    """A section as results.json keeps it: the figures and how, when and where they were taken."""
    return {"title": bench.TITLE, "about": bench.ABOUT, "date": now(), "quick": quick, "seconds": round(seconds, 1),
            "load_average": {"start": round(load_start, 2), "end": round(os.getloadavg()[0], 2)},
            **env, "rows": section.rows, "notes": section.notes, "details": section.details}


def save(results_dir: Path, name: str, record: dict, env: dict) -> None:
    """Merge one section into results.json and regenerate RESULTS.md, both atomically, under a lock."""
    results_dir.mkdir(parents=True, exist_ok=True)
    path = results_dir / "results.json"
    with locked(results_dir):
        results = json.loads(path.read_text()) if path.exists() else {}
        if results and results.get("format") != FORMAT:
            raise SystemExit(f"{path} is not a {FORMAT} file; move it away to start a new one")
        sections = {**results.get("benchmarks", {}), name: record}
        order = [b.NAME for b in BENCHMARKS if b.NAME in sections] + [n for n in sections if n not in
                                                                        {b.NAME for b in BENCHMARKS}]
        results = {"format": FORMAT, "date": record["date"], **env, "benchmarks": {n: sections[n] for n in order}}
        atomic_write(path, json.dumps(results, indent=2) + "\n")
        atomic_write(results_dir / "RESULTS.md", render(results))


def recorded(results_dir: Path) -> dict[str, Any]:
    """The sections results.json holds now (none if there is no such file yet)."""
    path = results_dir / "results.json"
    return json.loads(path.read_text()).get("benchmarks", {}) if path.exists() else {}


@contextmanager
def locked(folder: Path) -> Iterator[None]:
    """An exclusive lock on the folder itself: two runs finishing together cannot lose a section."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def atomic_write(path: Path, text: str) -> None:
    """Write to PATH.tmp, flush to disk, rename over PATH: a reader sees the old file or the new, whole."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


# ---------------------------------------------------------------- RESULTS.md


def render(results: dict) -> str:
    """RESULTS.md from results.json: the environment, then each section's text, table and notes."""
    lines = ["# Benchmark results", "",
             f"Generated by `bench/run.py` from `results.json` (last update {results['date']}). "
             "Re-run one section with `.venv/bin/python bench/run.py --only NAME`.", "",
             f"- Machine: {describe_machine(results['machine'])}",
             f"- Versions: {describe_versions(results['versions'])}", ""]
    for name, section in results["benchmarks"].items():
        lines += [f"## {section['title']}", "", section["about"], "",
                  f"Benchmark `{name}`, run {section['date']}{', quick' if section['quick'] else ''}, "
                  f"{section['seconds']:.0f} s; load average {section['load_average']['start']:.2f} at the start, "
                  f"{section['load_average']['end']:.2f} at the end."]
        if section["machine"] != results["machine"]:
            lines.append(f"Measured on another machine: {describe_machine(section['machine'])}.")
        if section["versions"] != results["versions"]:
            lines.append(f"Measured with other versions: {describe_versions(section['versions'])}.")
        lines += ["", *table(section["rows"]), ""]
        lines += [f"- {note}" for note in section["notes"]] + ([""] if section["notes"] else [])
    return "\n".join(lines).rstrip() + "\n"


def avx512_bf16(m: dict) -> str:
    """', AVX-512 bf16 yes/no', or nothing for a machine recorded before the flag was."""
    return "" if "avx512_bf16" not in m else f", AVX-512 bf16 {'yes' if m['avx512_bf16'] else 'no'}"


def describe_machine(m: dict) -> str:
    return (f"{m['cpu']}, {m['cores']} cores ({m['usable_cores']} usable), {m['ram_gb']:g} GB RAM, "
            f"AMX {'yes' if m['amx'] else 'no'}{avx512_bf16(m)}, GPU {m['gpu'] or 'none'}; {m['os']}")


def describe_versions(v: dict) -> str:
    return ", ".join(f"{k} {v.get(k) or '-'}" for k in ("python", "torch", "scratchlm", "numpy", "commit"))


def table(rows: list[dict]) -> list[str]:
    """A markdown table; numeric columns right-aligned."""
    if not rows:
        return ["(no rows)"]
    columns = list(dict.fromkeys(key for row in rows for key in row))
    numeric = {c: all(isinstance(r.get(c), int | float | dict) and not isinstance(r.get(c), bool) for r in rows)
               for c in columns}
    out = ["| " + " | ".join(header(c) for c in columns) + " |",
           "|" + "|".join("---:" if numeric[c] else "---" for c in columns) + "|"]
    out += ["| " + " | ".join(cell(row.get(c)) for c in columns) + " |" for row in rows]
    return out


def header(key: str) -> str:
    """peak_rss_mb -> peak RSS MB, tokens_per_second -> tokens/s."""
    words = {"mb": "MB", "rss": "RSS", "seconds": "s", "per": "/", "second": "s"}
    return " ".join(words.get(w, w) for w in key.split("_")).replace(" / s", "/s")


def cell(value: Any) -> str:
    """A value as shown: numbers rounded for reading, a spread as median (min-max)."""
    if isinstance(value, dict) and {"median", "min", "max"} <= value.keys():
        if value["min"] == value["max"]:
            return number(value["median"])
        return f"{number(value['median'])} ({number(value['min'])}-{number(value['max'])})"
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int | float):
        return number(value)
    return str(value).replace("|", "\\|")


def number(x: float) -> str:
    if isinstance(x, int):
        return f"{x:,}"
    size = abs(x)
    if size >= 1000:
        return f"{x:,.0f}"
    if size >= 100:
        return f"{x:.1f}"
    if size >= 10:
        return f"{x:.2f}"
    if size >= 0.01 or x == 0:
        return f"{x:.3f}"
    return f"{x:.3g}"


if __name__ == "__main__":
    sys.exit(main())
