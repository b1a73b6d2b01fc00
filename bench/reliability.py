"""Reliability in figures: the kills a run survives (alone and under torchrun), the writes that fail on a full
disk, the damaged corpus lines repaired or left out, the bad inputs refused, the fuzz examples run.

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
TITLE = "Reliability: kills survived (alone and under torchrun), full disks, damaged lines, bad inputs, fuzz examples"
ABOUT = ("Runs parts of the test suite in a child pytest and counts what they exercised. Kills: SIGKILLs of a "
         "training process (`tests/test_faults.py`: real `python -m scratchlm train` processes killed at random "
         "times and at random file writes, then resumed with --resume) after which the run still ended "
         "bit-identical to an uninterrupted one (weights, optimizer and RNG state, metrics); inside a checkpoint: "
         "the kills that left a checkpoint half-written. Bad inputs: the table-driven cases of `tests/test_cli.py` "
         "over every verb, each giving one line on stderr, exit code 2 and no file changed. Fuzz: the examples "
         "hypothesis generated for the readers and tokenizers (`tests/data/`), none of which crashed. Under torchrun: "
         "a worker of two SIGKILLed (and, in the full run, one stopped with SIGSTOP) mid-run; the survivor stops in "
         "one line naming it, and --resume ends bit-identical. Full disk: checkpoint and token-cache writes made to "
         "fail by a file-size limit (RLIMIT_FSIZE); one line, the previous checkpoint whole, --resume bit-identical. "
         "Damaged lines: eng-fra's first 10,000 pairs as two aligned files, damaged where OpenNMT-py's toy en-de "
         "corpus is (11 lines of Windows-1252 mojibake, an empty line), plus a NUL and a control character. Peak "
         "RSS on the large corpus: from the `memory` section's biggest corpus, when it has been run.")

ROOT = Path(__file__).resolve().parent.parent
ENG_FRA = ROOT.parent / "shared" / "data" / "eng-fra" / "eng-fra.tsv"
# Where OpenNMT-py's toy en-de corpus (data/src-train.txt, tgt-train.txt) holds C1 controls: (file, line, char)
TOY_MOJIBAKE = [("src", 664, "\x96"), ("src", 2874, "\x91"), ("src", 3700, "\x99"), ("src", 4700, "\x96"),
                ("src", 4811, "\x92"), ("src", 9607, "\x93"), ("tgt", 664, "\x96"), ("tgt", 1895, "\x95"),
                ("tgt", 2874, "\x84"), ("tgt", 3700, "\x99"), ("tgt", 4468, "\x84")]
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
        damaged = damaged_lines_row(Path(tmp))
    rows = [kills_row(faults, quick), torchrun_row(faults, quick), full_disk_row(faults), damaged,
            bad_inputs_row(bad), fuzz_row(fuzz), large_corpus_row()]
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


def torchrun_row(faults: PytestRun, quick: bool) -> dict:
    killed = faults.passed.get("test_a_worker_killed_under_torchrun_stops_the_other_in_one_line_and_resume_is_exact", 0)
    stopped = faults.passed.get("test_a_worker_that_stops_answering_times_out_the_collective", 0)
    if not killed or (not quick and not stopped):
        raise BenchError("the torchrun fault tests did not run")
    return {"check": "a worker of a torchrun launch SIGKILLed or stopped: one line, --resume bit-identical",
            "count": killed + stopped, "inside_checkpoint": None,
            "result": "passed (SIGKILL only)" if quick else "passed (SIGKILL, and SIGSTOP ended by the timeout)"}


def full_disk_row(faults: PytestRun) -> dict:
    cases = [name for name in faults.passed if "cannot_be_written" in name]
    if len(cases) < 2:
        raise BenchError("the full-disk tests did not run")
    return {"check": "a checkpoint or token-cache write fails (file-size limit): one line, nothing partial used",
            "count": len(cases), "inside_checkpoint": None, "result": "passed; the resumed run bit-identical"}


def damaged_lines_row(workdir: Path) -> dict | None:
    """Read eng-fra pairs damaged as OpenNMT-py's toy corpus is: how many are repaired, kept, left out."""
    sys.path.insert(0, str(ROOT / "src"))
    import warnings

    from scratchlm.data.pairs import PairsConfig, read_pairs

    if not ENG_FRA.exists():
        return None
    lines = ENG_FRA.read_text(encoding="utf-8").splitlines()[:10_000]
    files = {"src": [line.split("\t")[0] for line in lines], "tgt": [line.split("\t")[1] for line in lines]}
    for side, number, char in TOY_MOJIBAKE:
        files[side][number - 1] = files[side][number - 1].replace(" ", f" {char} ", 1)
    files["src"][4] = ""  # the toy corpus' src-train.txt:5
    files["src"][99] += "\x00"
    files["tgt"][199] += "\x07"
    for side, text in files.items():
        (workdir / side).write_text("\n".join(text) + "\n", encoding="utf-8")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pairs = read_pairs(PairsConfig(src=str(workdir / "src"), tgt=str(workdir / "tgt")))
    return {"check": "damaged pairs (10,000 lines as OpenNMT's toy corpus): repaired, kept, left out",
            "count": pairs.screen.repaired, "inside_checkpoint": None,
            "result": f"{pairs.screen.repaired} lines repaired, {len(pairs.sources):,} pairs kept, "
                      f"{len(pairs.screen.skipped)} left out (an empty side, a NUL, U+0007)"}


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
