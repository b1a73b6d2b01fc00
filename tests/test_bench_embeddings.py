"""bench/embeddings.py's verdict on the quality scores: a gap to gensim is weighed against the seeds' noise."""

from __future__ import annotations

import pytest


@pytest.fixture
def embeddings(bench_module):
    return bench_module("embeddings")


def test_a_mean_at_or_above_gensims_is_at_least_gensim(embeddings):
    assert embeddings.quality_verdict([0.015, 0.016, 0.014], [0.015, 0.014, 0.016]) == "at least gensim"


def test_a_gap_inside_two_standard_errors_is_called_noise(embeddings):
    verdict = embeddings.quality_verdict([0.013, 0.016, 0.015], [0.016, 0.014, 0.017])
    assert verdict.startswith("below gensim by ") and verdict.endswith("inside the noise")


def test_a_gap_beyond_two_standard_errors_is_reported_without_excuse(embeddings):
    verdict = embeddings.quality_verdict([0.0130, 0.0131, 0.0129], [0.0150, 0.0151, 0.0149])
    assert verdict.startswith("below gensim by ") and "noise" not in verdict
    # the gap (0.002) over the difference's standard error: each side's stdev 0.0001 over sqrt(3), then sqrt(2) of it
    assert float(verdict.split(" by ")[1].split()[0]) == pytest.approx(0.002 / (2 ** 0.5 * 0.0001 / 3 ** 0.5), rel=1e-3)


def test_a_gap_with_no_spread_on_either_side_is_reported_without_dividing_by_it(embeddings):
    assert embeddings.quality_verdict([0.013, 0.013], [0.015, 0.015]) == "below gensim, on every seed alike"


def test_one_seed_cannot_tell_a_gap_from_noise(embeddings):
    assert "cannot be told apart" in embeddings.quality_verdict([0.013], [0.015])
    assert embeddings.mean_and_error([0.5]).startswith("0.5000 +- nan")
