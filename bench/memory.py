"""Peak RSS against corpus size: the pipeline streams the text and keeps token ids in an on-disk memmap,
so memory should stay flat when the corpus grows tenfold.

For each size a corpus is generated in a temporary folder (random numbers written in words, from a
seeded generator: a fixed vocabulary, so the vocabulary itself cannot grow with the size), then
`scratchlm train --tokenizer word --model rnn --time 10s` runs on it in a fresh process with an empty
token cache. While the child runs, /proc/PID/status is sampled and the cache folder watched, which
separates the tokenizing phase (until the cache entry is written) from training.

Two layouts of the same text are measured: `lines` (a line break every ten numbers, like most text)
and `one line` (no line break at all, as the built-in corpus is joined: "one . two . three ...").
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from common import Section, log, proc_status_mb, run_child, scratchlm_command
from scratchlm.data.human_numbers import number_to_words

NAME = "memory"
TITLE = "Memory: peak RSS as the corpus grows tenfold"
ABOUT = ("Trains `rnn` for 10 s on a generated corpus of S and 10*S MB with the word tokenizer, each in a fresh "
         "`scratchlm train` process with an empty token cache. To cache s: seconds from the process start "
         "(about 3 s of imports included) until the token ids are on disk (read, hash, build the vocabulary, "
         "encode). Tokenize RSS: peak RSS up to then. Peak RSS: the child's own peak over the whole run; "
         "peak anon: the largest sampled RssAnon (heap, without mapped files and libraries). RSS ratio: peak RSS "
         "over that of the smallest corpus of the same layout. The target: at most 1.5 at 10x, for the peak RSS "
         "and for the tokenize RSS; and under 2 GB of peak RSS on the 1 GB corpus. Read passes: bytes the child "
         "read (rchar) until its token ids were cached, over the file's size: the file is streamed that many "
         "times (hash, encoding check, vocabulary, encoding), never held in memory.")

TARGET_RATIO = 1.5
LARGE_MB, RSS_LIMIT_MB = 1000, 2048  # a corpus of a gigabyte or more must train in under 2 GB
VALID_BYTES = 256 * 1024  # about the same validation text at every size, so evaluation costs the same
NUMBERS_PER_LINE = 10


@dataclass(frozen=True)
class Case:
    layout: str  # "lines" or "one line"
    size_mb: float


# One line at a tenth of the sizes: should its memory grow with the line, 200 MB of it would need gigabytes.
CASES = (Case("lines", 20), Case("lines", 200), Case("lines", 1024), Case("one line", 2), Case("one line", 20))
QUICK_CASES = (Case("lines", 2), Case("lines", 20), Case("one line", 1), Case("one line", 10))


def run(quick: bool = False) -> Section:
    """Every case in its own child process; a ratio and a verdict per layout."""
    rows, details = [], []
    with tempfile.TemporaryDirectory(prefix="scratchlm-bench-memory-") as tmp:
        for case in QUICK_CASES if quick else CASES:
            row, samples = measure(case, Path(tmp))
            rows.append(row)
            details.append({"layout": case.layout, "size_mb": row["size_mb"], "rss_mb_by_second": samples})
    return summarize(rows, details)


def summarize(rows: list[dict], details: list[dict]) -> Section:
    """Fill each row's RSS ratio (over the smallest corpus of its layout) and give a verdict per layout.

    A layout is flat when neither the whole run's peak RSS nor the tokenizing phase's grows more than
    TARGET_RATIO times from the smallest corpus to the largest. Both are checked: training adds a
    fixed ~90 MB on top of tokenizing, which can hide a tokenizer that grows with the text.
    """
    notes = []
    for layout in dict.fromkeys(row["layout"] for row in rows):
        group = [row for row in rows if row["layout"] == layout]
        small, big = group[0], group[-1]
        for row in group:
            row["rss_ratio"] = round(row["peak_rss_mb"] / small["peak_rss_mb"], 3)
        tokenize_ratio = big["tokenize_rss_mb"] / small["tokenize_rss_mb"]
        per_mb = (big["peak_rss_mb"] - small["peak_rss_mb"]) / (big["size_mb"] - small["size_mb"])
        verdict = "flat" if max(big["rss_ratio"], tokenize_ratio) <= TARGET_RATIO else "GROWS with the corpus"
        for row in group:
            if row["size_mb"] >= LARGE_MB:
                within = "under" if row["peak_rss_mb"] < RSS_LIMIT_MB else "OVER"
                notes.append(f"{layout}, {row['size_mb']:g} MB of text: peak RSS {row['peak_rss_mb']:.0f} MB, {within} "
                             f"the {RSS_LIMIT_MB} MB limit; the file was streamed {row['read_passes']} times before "
                             f"the first step, while RSS stayed {row['tokenize_rss_mb']:.0f} MB.")
        notes.append(f"{layout}: {small['size_mb']:g} -> {big['size_mb']:g} MB of text "
                     f"(x{big['size_mb'] / small['size_mb']:.1f}): peak RSS {small['peak_rss_mb']:.0f} -> "
                     f"{big['peak_rss_mb']:.0f} MB (x{big['rss_ratio']:.2f}), while tokenizing "
                     f"{small['tokenize_rss_mb']:.0f} -> {big['tokenize_rss_mb']:.0f} MB (x{tokenize_ratio:.2f}); "
                     f"{per_mb:.2f} MB of RSS per MB of text. Target <= x{TARGET_RATIO}: {verdict}.")
    return Section(rows, notes, details)


def measure(case: Case, tmp: Path) -> tuple[dict, list[list[float]]]:
    """Generate the corpus, train on it in a child; its table row and its [seconds, VmRSS MB] samples."""
    name = f"{case.layout.replace(' ', '-')}-{case.size_mb:g}mb"
    text = tmp / f"{name}.txt"
    log(f"  {NAME}: writing {case.size_mb:g} MB of text ({case.layout}) ...")
    write_corpus(text, int(case.size_mb * 2**20), one_line=case.layout == "one line")
    size = text.stat().st_size
    cache, out = tmp / f"{name}-cache", tmp / f"{name}-run"
    watch = Watch(cache)
    log(f"  {NAME}: training on it ...")
    child = run_child(scratchlm_command("train", "--data", str(text), "--tokenizer", "word", "--model", "rnn",
                                        "--time", "10s", "--valid-fraction", f"{min(VALID_BYTES / size, 0.5):.6f}",
                                        "--out", str(out), "--quiet"),
                      tmp / f"{name}-logs", env={"SCRATCHLM_CACHE": str(cache)}, on_poll=watch.poll)
    config = json.loads((out / "config.json").read_text())
    last = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if line.strip()][-1]
    text.unlink()  # the biggest file of the run: gone as soon as it is measured
    row = {"layout": case.layout, "size_mb": round(size / 2**20, 1),
           "tokens": config["data"]["train_tokens"] + config["data"]["valid_tokens"],
           "to_cache_s": watch.cached_at, "tokenize_rss_mb": watch.rss_when_cached,
           "peak_rss_mb": round(child.peak_rss_mb, 1), "rss_ratio": None, "peak_anon_mb": round(watch.peak_anon, 1),
           "read_passes": round(watch.read_when_cached / size, 2) if watch.read_when_cached else None,
           "train_steps": last["step"], "wall_s": round(child.wall_seconds, 1)}
    log(f"    {row['tokens']:,} tokens, cached after {row['to_cache_s']} s, peak RSS {row['peak_rss_mb']:.0f} MB")
    return row, watch.samples


class Watch:
    """Samples a child's memory and notes when its token cache entry appears."""

    def __init__(self, cache: Path):
        self.cache = cache
        self.cached_at: float | None = None  # seconds from start to a complete cache entry
        self.rss_when_cached: float | None = None  # VmHWM then: the peak of reading and tokenizing
        self.read_when_cached: int | None = None  # rchar then: bytes read by the child, cache hits included
        self.peak_anon = 0.0
        self.samples: list[list[float]] = []  # [seconds, VmRSS MB], every second or so, for a curve

    def poll(self, pid: int, seconds: float) -> None:
        status = proc_status_mb(pid, "VmRSS", "VmHWM", "RssAnon")
        if not status:
            return
        self.peak_anon = max(self.peak_anon, status.get("RssAnon", 0.0))
        if not self.samples or seconds - self.samples[-1][0] >= 1.0:
            self.samples.append([round(seconds, 1), round(status["VmRSS"], 1)])
        # An entry is renamed into place whole; the folders starting with "." are unfinished ones.
        if self.cached_at is None and any(not p.parent.name.startswith(".") for p in self.cache.glob("*/meta.json")):
            self.cached_at = round(seconds, 2)
            self.rss_when_cached = round(status["VmHWM"], 1)
            self.read_when_cached = bytes_read(pid)


def bytes_read(pid: int) -> int | None:
    """rchar of /proc/PID/io: every byte the process read with read(2), from disk or the page cache."""
    try:
        fields = dict(line.split(": ") for line in Path(f"/proc/{pid}/io").read_text().splitlines())
    except (OSError, ValueError):
        return None
    return int(fields["rchar"])


def write_corpus(path: Path, size_bytes: int, one_line: bool, seed: int = 0) -> None:
    """About `size_bytes` of random numbers in words, " . " between numbers; a line break every ten unless one_line."""
    with open(path, "w", encoding="utf-8") as f:
        written = 0
        for chunk in corpus_chunks(np.random.default_rng(seed), one_line):
            f.write(chunk)
            written += len(chunk)  # ASCII: characters are bytes
            if written >= size_bytes:
                break


def corpus_chunks(rng: np.random.Generator, one_line: bool, numbers: int = 10_000) -> Iterator[str]:
    """Endless chunks of `numbers` random numbers each, every chunk ending where the next can follow."""
    words = np.array([number_to_words(n) for n in range(1, 10_000)], dtype=object)
    while True:
        drawn = words[rng.integers(0, len(words), numbers)]
        if one_line:
            yield " . ".join(drawn) + " . "
        else:
            yield "\n".join(" . ".join(drawn[i:i + NUMBERS_PER_LINE]) for i in range(0, numbers, NUMBERS_PER_LINE)) + "\n"
