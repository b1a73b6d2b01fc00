"""bench/gpt2_small.py's path, run on the CPU with a tiny model (the figures need a GPU): the FLOP count
of GPT-2 small by hand, the peaks by device name, and the side-by-side measurement with HF end to end."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

BENCH = Path(__file__).resolve().parents[1] / "bench"


@pytest.fixture
def gpt2_small(bench_module):
    return bench_module("gpt2_small")


def test_flops_per_token_of_gpt2_small_equal_a_hand_count(gpt2_small):
    from scratchlm.models.gpt import GPT, GPTConfig

    c = gpt2_small.GPT2_SMALL
    with torch.device("meta"):
        model = GPT(GPTConfig(vocab_size=c["vocab_size"], block_size=c["block_size"], n_layer=c["n_layer"],
                              n_head=c["n_head"], n_embd=c["n_embd"], dropout=0.0, bias=True))
    # token table 50,304 x 768, positions 1,024 x 768, 12 blocks of 7,087,872, the last LayerNorm 1,536
    n_parameters = sum(p.numel() for p in model.parameters())
    assert n_parameters == 38_633_472 + 786_432 + 12 * 7_087_872 + 1_536 == 124_475_904
    n_weights = n_parameters - 786_432
    # 6 N + 12 L H Q T = 6 x 123,689,472 + 12 x 12 x 12 x 64 x 1,024
    assert gpt2_small.flops_per_token(n_weights, c) == 742_136_832 + 113_246_208


def test_the_peak_is_read_from_the_device_name(gpt2_small):
    assert gpt2_small.peak_flops("NVIDIA H200") == 989e12
    assert gpt2_small.peak_flops("NVIDIA H100 80GB HBM3") == 989e12
    assert gpt2_small.peak_flops("NVIDIA H100 PCIe") == 756e12  # the longer name wins
    assert gpt2_small.peak_flops("NVIDIA A100-SXM4-80GB") == 312e12
    assert gpt2_small.peak_flops("Tesla T4") is None


def test_the_side_by_side_path_runs_on_the_cpu_with_a_tiny_model(gpt2_small):
    pytest.importorskip("transformers")
    child = subprocess.run([sys.executable, str(BENCH / "gpt2_small.py"), "measure", "--device", "cpu", "--tiny"],
                           capture_output=True, text=True, timeout=600, cwd=BENCH)
    assert child.returncode == 0, child.stderr[-2000:]
    found = json.loads(child.stdout)
    assert found["init_max_diff"] < 1e-5
    train = found["train"]
    assert set(train) == {"scratchlm", "hf"}
    assert train["scratchlm"]["last_loss"] == pytest.approx(train["hf"]["last_loss"], abs=1e-3)  # the same steps
    assert all(t["tokens_per_second"] > 0 and t["mfu"] is None for t in train.values())  # no peak known for a CPU
    section = gpt2_small.summarize(found)
    assert [row["model"] for row in section.rows] == ["scratchlm gpt", "HF GPT2LMHeadModel"]
    assert any("unknown peak" in note for note in section.notes)
    assert any("eager: scratchlm" in note for note in section.notes)
