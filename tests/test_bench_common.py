"""bench/common.py's measurement of a child's peak memory: its own, not the runner's it was started from."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest


@pytest.fixture
def common(bench_module):
    return bench_module("common")


def test_the_peak_is_ru_maxrss_above_the_runners_peak_and_the_polled_one_below_it(common):
    assert common.child_peak_rss_mb(800.0, 500.0, 780.0) == 800.0  # the child rose above the runner: exact
    assert common.child_peak_rss_mb(500.0, 500.0, 250.0) == 250.0  # ru_maxrss is the runner's peak, carried over
    assert common.child_peak_rss_mb(500.0, 500.0, 0.0) == 500.0  # never polled: all that is known


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_a_small_child_of_a_large_runner_reports_its_own_peak(common, tmp_path: Path):
    ballast = np.ones(400 * 2**20 // 8)  # the runner's peak RSS rises to at least 400 MiB, which exec carries over
    small = [sys.executable, "-c", "import time; time.sleep(0.5)"]
    assert common.run_child(small, tmp_path).peak_rss_mb < 100
    large = [sys.executable, "-c", "import numpy as np, time; a = np.ones(600 * 2**20 // 8); time.sleep(0.5)"]
    assert common.run_child(large, tmp_path).peak_rss_mb > 600
    del ballast
