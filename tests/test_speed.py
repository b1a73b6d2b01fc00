"""The speed switches: each is a no-op on the CPU (but compile), and the GPU path trains when there is a GPU."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

import scratchlm
from scratchlm.speed import DEFAULT_THREADS, autocast, compile_model, fused_adamw, to_device, tune_cpu_threads


def test_the_gpu_switches_leave_a_cpu_run_as_it_is():
    batch = (torch.arange(6).view(2, 3), torch.arange(6).view(2, 3) + 1)
    x, y = to_device(batch, torch.device("cpu"))
    assert x is batch[0] and y is batch[1]  # no pinning, no copy
    assert fused_adamw(torch.device("cpu")) is None  # PyTorch's default (foreach) on the CPU
    model = nn.Linear(2, 2)
    assert compile_model(model, enabled=False) is model
    with autocast(torch.device("cpu"), "fp32"):
        assert model(torch.ones(1, 2)).dtype == torch.float32


@pytest.mark.parametrize(("parameters", "rows", "threads"), [
    (70_000, 64, 1),  # an LSTM rung: a recurrence reads its batch one time step at a time
    (800_000, 1, 1),  # the tiny GPT generating one token at a time
    (800_000, 12 * 64, DEFAULT_THREADS),  # the tiny GPT training on its whole window at once
    (3_000_000, 1, DEFAULT_THREADS),  # a large model always splits its matmuls
])
def test_threads_follow_the_work_of_one_matmul(monkeypatch: pytest.MonkeyPatch, parameters: int, rows: int,
                                               threads: int):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    before = torch.get_num_threads()
    try:
        tune_cpu_threads(torch.device("cpu"), parameters, rows)
        assert torch.get_num_threads() == threads
    finally:
        torch.set_num_threads(before)


def test_omp_num_threads_has_the_last_word(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    torch.set_num_threads(1)
    tune_cpu_threads(torch.device("cpu"), 100_000_000, 1)
    assert torch.get_num_threads() == 1


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_gpu_path_trains_with_every_switch_on(tmp_path: Path):
    """bf16 autocast, TF32, flash SDPA, pinned batches, fused AdamW and torch.compile on a small GPT."""
    run = scratchlm.train("human-numbers", "gpt", tmp_path / "gpu", epochs=1, device="cuda", precision="bf16",
                          compile=True, settings={"n_layer": 2, "n_embd": 64, "n_head": 4})
    assert torch.backends.cuda.matmul.allow_tf32 and torch.backends.cuda.flash_sdp_enabled()
    assert run.metrics[-1]["valid_loss"] < 3.0
    assert len(run.generate("one . two .", tokens=5).split()) == 5
