"""Reliability in figures: the kills a run survives, the bad inputs refused, the fuzz examples run.

These are counts, not timings: each comes from running part of the test suite in a child process and
reading what it reports (a JUnit XML file for the pass/fail of each test, hypothesis' statistics for the
examples, the fault test's own line for its kills). A figure is only recorded when its tests passed;
a failure fails the benchmark, so the table never shows a count that did not hold.
"""

from __future__ import annotations

import re
import sys
import tempfile
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

from common import BenchError, Section, log, run_child

NAME = "reliability"
TITLE = "Reliability: kills survived, bad inputs refused, fuzz examples"
ABOUT = ("Runs parts of the test suite in a child pytest and counts what they exercised. Kills: SIGKILLs of a "
         "training process (`tests/test_faults.py`: real `python -m scratchlm train` processes killed at random "
         "times and at random file writes, then resumed with --resume) after which the run still ended "
         "bit-identical to an uninterrupted one (weights, optimizer and RNG state, metrics); inside a checkpoint: "
         "the kills that left a checkpoint half-written. Bad inputs: the table-driven cases of `tests/test_cli.py` "
         "over every verb, each giving one line on stderr, exit code 2 and no file changed. Fuzz: the examples "
         "hypothesis generated for the readers and tokenizers (`tests/data/`), none of which crashed. Peak RSS on "
         "the large corpus: from the `memory` section's biggest corpus, when it has been run.")

ROOT = Path(__file__).resolve().parent.parent
LARGE_CORPUS_MB = 1000  # the memory section's corpus from which on counts as "large"
RSS_LIMIT_MB = 2048


@dataclass
class PytestRun:
    passed: dict[str, int]  # test name without parameters -> passed cases
    failed: list[str]
    output: str


def run(quick: bool = False) -> Section:
    """The fault tests (the slow one unless quick), the bad inputs, and the property tests."""
    with tempfile.TemporaryDirectory(prefix="scratchlm-bench-reliability-") as tmp:
        faults = pytest_run([str(ROOT / "tests" / "test_faults.py"), "-s", *([] if quick else ["-m", "slow or not slow"])],
                            Path(tmp) / "faults")
        bad = pytest_run([str(ROOT / "tests" / "test_cli.py"), "-k", "bad_input or other_encodings"], Path(tmp) / "bad")
        fuzz = pytest_run([str(ROOT / "tests" / "data"), "--hypothesis-show-statistics"], Path(tmp) / "fuzz")
    rows = [kills_row(faults, quick), bad_inputs_row(bad), fuzz_row(fuzz), large_corpus_row()]
    notes = ["The quick fault test forks the test process for each launch and kills at chosen writes; "
             "it also stops a run with SIGTERM and SIGINT (exit 130, saved) before resuming it."]
    return Section([row for row in rows if row], notes, [])


def pytest_run(args: list[str], workdir: Path) -> PytestRun:
    """pytest ARGS in a child; per-test pass counts from its JUnit XML. Any failure is a BenchError."""
    xml = workdir / "junit.xml"
    log(f"  {NAME}: pytest {' '.join(args)} ...")
    child = run_child([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={xml}", *args],
                      workdir)
    passed: dict[str, int] = {}
    failed = []
    for case in ET.parse(xml).getroot().iter("testcase"):
        name = case.get("name", "").split("[")[0]
        if case.find("failure") is not None or case.find("error") is not None:
            failed.append(case.get("name", ""))
        elif case.find("skipped") is None:
            passed[name] = passed.get(name, 0) + 1
    if failed:
        raise BenchError(f"tests failed: {', '.join(failed)}")
    return PytestRun(passed, failed, child.stdout + child.stderr)


def kills_row(faults: PytestRun, quick: bool) -> dict:
    """The kills each fault test reports, added up (the quick test's alone with `quick`)."""
    found = re.findall(r"kills survived: (\d+) \((\d+) inside a checkpoint write\)", faults.output)
    if not found:
        raise BenchError("the fault tests reported no kills")
    return {"check": "SIGKILL, then --resume: bit-identical end", "count": sum(int(k) for k, _ in found),
            "inside_checkpoint": sum(int(m) for _, m in found),
            "result": "passed (quick test only)" if quick else "passed"}


def bad_inputs_row(bad: PytestRun) -> dict:
    refused = bad.passed.get("test_bad_input", 0)
    valid = bad.passed.get("test_other_encodings_and_one_huge_line_train", 0)
    return {"check": "bad inputs: one line, exit 2, nothing changed", "count": refused, "inside_checkpoint": None,
            "result": f"passed; and {valid} hostile but valid inputs (latin-1, UTF-16, a 50 MB line) trained"}


def fuzz_row(fuzz: PytestRun) -> dict:
    examples = sum(int(n) for n in re.findall(r"(\d+) passing, \d+ failing", fuzz.output))
    tests = len(re.findall(r"^\S+::\S+:$", fuzz.output, flags=re.MULTILINE))
    return {"check": "property tests: readers, tokenizers, batching on arbitrary input", "count": examples,
            "inside_checkpoint": None, "result": f"passed ({tests} hypothesis tests in tests/data)"}


def large_corpus_row() -> dict | None:
    """Peak RSS on the memory section's largest corpus, if it has been measured."""
    import json

    path = ROOT / "bench" / "results" / "results.json"
    if not path.exists():
        return None
    rows = json.loads(path.read_text()).get("benchmarks", {}).get("memory", {}).get("rows", [])
    large = [row for row in rows if row.get("size_mb", 0) >= LARGE_CORPUS_MB]
    if not large:
        return None
    row = max(large, key=lambda r: r["size_mb"])
    verdict = "under" if row["peak_rss_mb"] < RSS_LIMIT_MB else "OVER"
    return {"check": f"peak RSS MB training on {row['size_mb']:g} MB of text (memory section)",
            "count": row["peak_rss_mb"], "inside_checkpoint": None,
            "result": f"{verdict} the {RSS_LIMIT_MB} MB limit"}
