"""Shared fixtures: a private token cache for every test, a small text file, and small trained runs.

The suite trains many tiny models on a 2-core machine. Torch's intra-op thread pool only costs there:
its spinning workers fight each other (and any other process) for the cores, and a 64x64 matmul ran
100x slower with two threads than with one on a busy machine. Every test, and every `scratchlm`
subprocess (see test_cli.py), therefore runs on one thread.
"""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest
import torch

import scratchlm

torch.set_num_threads(1)

SMALL_TEXT = "hello world, this is a tiny text.\nanother line here; and more text!\n" * 40


@pytest.fixture(scope="session", autouse=True)
def session_cache(tmp_path_factory: pytest.TempPathFactory):
    """Session-scoped fixtures (the trained runs) never touch ~/.cache either."""
    with pytest.MonkeyPatch.context() as mp:
        path = tmp_path_factory.mktemp("session-cache")
        mp.setenv("SCRATCHLM_CACHE", str(path))
        yield path


@pytest.fixture(autouse=True)
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Each test gets an empty token cache of its own under its tmp_path."""
    path = tmp_path / "cache"
    monkeypatch.setenv("SCRATCHLM_CACHE", str(path))
    return path


@pytest.fixture
def bench_module(monkeypatch: pytest.MonkeyPatch):
    """bench/NAME.py imported as the runner imports it: the benchmarks import each other as top-level modules."""
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "bench"))
    return importlib.import_module


@pytest.fixture
def text_file(tmp_path: Path) -> Path:
    """A small UTF-8 text file, enough for a char model to train an epoch on."""
    path = tmp_path / "small.txt"
    path.write_text(SMALL_TEXT, encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def hn_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A word-level `rnn` trained one epoch on human-numbers. Shared: copy it before changing it."""
    out = tmp_path_factory.mktemp("runs") / "hn-rnn"
    scratchlm.train("human-numbers", "rnn", out, epochs=1, batch_size=64)
    return out


@pytest.fixture(scope="session")
def char_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A char-level `rnn` trained one epoch on SMALL_TEXT. Shared: copy it before changing it."""
    folder = tmp_path_factory.mktemp("char")
    data = folder / "small.txt"
    data.write_text(SMALL_TEXT, encoding="utf-8")
    scratchlm.train(str(data), "rnn", folder / "char-rnn", epochs=1, batch_size=4, bptt=8)
    return folder / "char-rnn"
