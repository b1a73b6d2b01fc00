"""The speed switches: each is a no-op on the CPU (but compile), and the GPU path trains when there is a GPU."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

import scratchlm
from scratchlm import speed
from scratchlm.speed import autocast, compile_model, cpu_threads, fused_adamw, to_device, tune_cpu_threads


def test_the_gpu_switches_leave_a_cpu_run_as_it_is():
    batch = (torch.arange(6).view(2, 3), torch.arange(6).view(2, 3) + 1)
    x, y = to_device(batch, torch.device("cpu"))
    assert x is batch[0] and y is batch[1]  # no pinning, no copy
    assert fused_adamw(torch.device("cpu")) is None  # PyTorch's default (foreach) on the CPU
    model = nn.Linear(2, 2)
    assert compile_model(model, enabled=False) is model
    with autocast(torch.device("cpu"), "fp32"):
        assert model(torch.ones(1, 2)).dtype == torch.float32


@pytest.mark.parametrize(("available", "load", "small", "cores", "threads"), [
    (2, 0.1, False, None, 2),  # an idle laptop: every core
    (2, 0.6, False, None, 1),  # one other busy thread, rounded: the core it holds is not ours
    (2, 1.4, False, None, 1),
    (2, 5.0, False, None, 1),  # more load than cores: still one thread
    (8, 2.5, False, None, 6),  # rounded half to even: 2 cores taken
    (8, 0.0, True, None, 1),  # a small model: one thread, however idle the machine
    (2, 3.0, False, 16, 2),  # 2 of 16 cores by affinity, the load elsewhere: both of ours are free
    (4, 14.0, False, 16, 2),  # only 2 of the 16 left: only 2 of our 4
])
def test_threads_are_the_free_cores_this_process_may_use(available: int, load: float, small: bool,
                                                          cores: int | None, threads: int):
    assert cpu_threads(available, load, small, cores) == threads


@pytest.fixture
def idle_machine(monkeypatch: pytest.MonkeyPatch) -> int:
    """tune_cpu_threads on an idle 4-core machine, whatever this one is doing; returns the cores."""
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(speed, "available_cores", lambda: 4)
    monkeypatch.setattr(speed, "other_load", lambda: 0.0)
    monkeypatch.setattr(speed.os, "cpu_count", lambda: 4)
    before = torch.get_num_threads()
    yield 4
    torch.set_num_threads(before)


@pytest.mark.parametrize(("parameters", "rows", "small"), [
    (70_000, 64, True),  # an LSTM rung: a recurrence reads its batch one time step at a time
    (800_000, 1, True),  # the tiny GPT generating one token at a time
    (800_000, 12 * 64, False),  # the tiny GPT training on its whole window at once
    (3_000_000, 1, False),  # a large model always splits its matmuls
])
def test_threads_follow_the_work_of_one_matmul(idle_machine: int, parameters: int, rows: int, small: bool):
    tune_cpu_threads(torch.device("cpu"), parameters, rows)
    assert torch.get_num_threads() == (1 if small else idle_machine)


def test_other_load_takes_cores_away(idle_machine: int, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(speed, "other_load", lambda: 1.2)  # another single-threaded training
    tune_cpu_threads(torch.device("cpu"), 3_000_000, 1)
    assert torch.get_num_threads() == idle_machine - 1


def test_the_load_is_read_once_and_the_cores_are_this_process_own():
    assert speed.other_load() is speed.other_load()  # cached: the first look, before this process' own work
    assert 1 <= speed.available_cores() <= (os.cpu_count() or 1)


def test_other_load_leaves_this_process_own_work_out(monkeypatch: pytest.MonkeyPatch):
    """Half of all CPU time busy over the window, all of it this process': no load from others."""
    ticks = iter([(1000, 500), (1200, 600)])  # (all, idle) before and after: 200 ticks, 100 of them idle
    own = iter([(1.0, 0.0, 0, 0, 0), (1.0 + 0.5 * (os.cpu_count() or 1) * 0.25, 0.0, 0, 0, 0)])
    monkeypatch.setattr(speed, "cpu_jiffies", lambda: next(ticks))
    monkeypatch.setattr(speed.os, "times", lambda: next(own))
    monkeypatch.setattr(speed.time, "sleep", lambda seconds: None)
    assert speed.other_load.__wrapped__(0.25) == pytest.approx(0.0)


def test_other_load_counts_busy_cores(monkeypatch: pytest.MonkeyPatch):
    ticks = iter([(0, 0), (400, 100)])  # three quarters busy
    monkeypatch.setattr(speed, "cpu_jiffies", lambda: next(ticks))
    monkeypatch.setattr(speed.os, "cpu_count", lambda: 4)
    monkeypatch.setattr(speed.time, "sleep", lambda seconds: None)
    assert speed.other_load.__wrapped__(0.25) == pytest.approx(3.0, abs=0.05)  # os.times: this test, ~0


@pytest.mark.skipif(not Path("/proc/stat").exists(), reason="Linux's /proc/stat")
def test_cpu_jiffies_reads_this_machine():
    total, idle = speed.cpu_jiffies()
    assert 0 <= idle <= total


def test_omp_num_threads_has_the_last_word(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    torch.set_num_threads(1)
    tune_cpu_threads(torch.device("cpu"), 100_000_000, 1)
    assert torch.get_num_threads() == 1


def openmp_settings_after_import(**env: str) -> str:
    """OMP_WAIT_POLICY and GOMP_SPINCOUNT in a fresh interpreter after `import scratchlm`, and whether torch
    was loaded by then, with `env` over a clean environment."""
    clean = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    code = ("import sys, os, scratchlm; scratchlm.__version__; "
            "print(os.environ.get('OMP_WAIT_POLICY'), os.environ.get('GOMP_SPINCOUNT'), 'torch' in sys.modules)")
    return subprocess.run([sys.executable, "-c", code], env={**clean, **env}, capture_output=True, text=True,
                          check=True).stdout.strip()


def test_idle_openmp_threads_spin_briefly_set_before_torch_loads_libgomp():
    assert openmp_settings_after_import() == f"None {scratchlm.SPIN_COUNT} False"


def test_a_users_own_openmp_wait_settings_are_kept():
    assert openmp_settings_after_import(OMP_WAIT_POLICY="PASSIVE") == "PASSIVE None False"
    assert openmp_settings_after_import(GOMP_SPINCOUNT="300000") == "None 300000 False"


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_gpu_path_trains_with_every_switch_on(tmp_path: Path):
    """bf16 autocast, TF32, flash SDPA, pinned batches, fused AdamW and torch.compile on a small GPT."""
    run = scratchlm.train("human-numbers", "gpt", tmp_path / "gpu", epochs=1, device="cuda", precision="bf16",
                          compile=True, settings={"n_layer": 2, "n_embd": 64, "n_head": 4})
    assert torch.backends.cuda.matmul.allow_tf32 and torch.backends.cuda.flash_sdp_enabled()
    assert run.metrics[-1]["valid_loss"] < 3.0
    assert len(run.generate("one . two .", tokens=5).split()) == 5


WORD2VEC_RULE = speed.PrecisionRule("avx512_bf16", 0, on_gpu=False)
NEVER = speed.PrecisionRule(None, on_gpu=False)


@pytest.mark.parametrize("flags, parameters, rule, expected", [
    ({"amx_bf16", "avx512_bf16"}, 10_000_000, speed.UNDER_AUTOCAST, "bf16"),  # autocast's rule: AMX and a large model
    ({"amx_bf16", "avx512_bf16"}, 1_000_000, speed.UNDER_AUTOCAST, "fp32"),  # the casts outweigh the products
    ({"avx512_bf16"}, 10_000_000, speed.UNDER_AUTOCAST, "fp32"),  # autocast was not measured faster without AMX
    ({"avx512_bf16"}, 1_000, WORD2VEC_RULE, "bf16"),  # a model's own rule (word2vec's step)
    ({"amx_bf16", "avx512_bf16"}, 10_000_000, NEVER, "fp32"),  # a model whose step has no products (GloVe)
])
def test_precision_auto_on_a_cpu_follows_the_models_rule(flags, parameters, rule, expected,
                                                        monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(speed, "cpu_flags", lambda: frozenset(flags))
    assert speed.resolve_precision("auto", torch.device("cpu"), parameters, rule) == expected
    assert speed.resolve_precision("fp32", torch.device("cpu"), parameters, rule) == "fp32"  # a user's word is final
    assert speed.resolve_precision("bf16", torch.device("cpu"), parameters, rule) == "bf16"


def test_on_a_gpu_only_a_model_under_autocast_takes_bf16(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: True)
    gpu = torch.device("cuda")
    assert speed.resolve_precision("auto", gpu, 1_000, speed.UNDER_AUTOCAST) == "bf16"
    assert speed.resolve_precision("auto", gpu, 1_000, WORD2VEC_RULE) == "fp32"  # measured on CPUs only
    assert speed.resolve_precision("auto", gpu, 1_000, NEVER) == "fp32"


def test_cpu_flags_are_read_from_the_kernel():
    flags = speed.cpu_flags()
    assert isinstance(flags, frozenset)
    if Path("/proc/cpuinfo").exists():
        assert ":" not in flags and "flags" not in flags  # the features alone, not the line's label
        assert "fpu" in flags or not flags  # every x86 CPU reports fpu; other architectures name theirs otherwise
