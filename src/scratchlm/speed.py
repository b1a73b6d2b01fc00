"""Where the hardware is chosen and every speed switch is set, in one place.

`--device auto` takes a CUDA GPU when there is one. `--precision auto` uses bf16 where it is known to
pay: on CUDA GPUs that support it, and on a CPU where the model's bf16 measured faster (`UNDER_AUTOCAST`).
A model trained under autocast takes it on CPUs with AMX tiles (Intel Sapphire Rapids and later) when
large enough that the matmuls dominate; small models stay in fp32, where the casts cost more than they
save. A model may name its own rule (word2vec's step, whose bf16 matmuls pay wherever the CPU has
AVX-512 bf16 dot products). On GPUs: TF32 matmuls, SDPA's flash attention kernel, batches copied from
pinned memory without blocking, AdamW's fused kernel; `--compile` adds torch.compile anywhere. Each
switch is one line or one function below, and each is a no-op on the CPU but for compile. On the CPU,
the intra-op threads are the cores this process may use that other work leaves free (`cpu_threads`),
and OpenMP's idle threads spin only briefly before they sleep (GOMP_SPINCOUNT, set in
scratchlm/__init__.py because it must come before torch is loaded).

Why a brief spin. PyTorch's Linux CPU wheels run their thread pool on libgomp, whose idle threads spin
300,000 turns (about 3 ms) after each parallel region. Alone that saves a wake-up per region; beside
other work each spinning thread holds a core that a thread with work needs: the tiny GPT beside a
second gpt kept 0.19x of its speed alone. Sleeping at once (OMP_WAIT_POLICY=PASSIVE) fixed that (0.55x)
but cost 0.6x alone, a wake-up per matmul. 10,000 turns spans the gap between the parallel regions of
one step, so alone the threads still catch the next one, and it frees the core within a fraction of a
millisecond when work stops: the tiny GPT alone ran 1.07x its speed under libgomp's default, beside a
gpt 0.59x of alone (bench/shared_machine.py).
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import torch
from torch import nn

from scratchlm.errors import UserError

DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("auto", "fp32", "bf16")
AMX_MIN_PARAMETERS = 5_000_000  # below this, bf16 on AMX measured slower than fp32 (casts dominate)


@dataclass(frozen=True)
class PrecisionRule:
    """When `--precision auto` takes bf16 for a model (`Model.precision_rule`)."""

    cpu_flag: str | None  # on a CPU: the flag its bf16 needs to pay (None: never on a CPU)
    fewest_parameters: int = 0  # ... and the fewest parameters from which it pays
    on_gpu: bool = True  # on a CUDA GPU that has bf16; a rule measured on CPUs only keeps fp32 there


# Models trained under autocast: bf16 pays on CPUs with AMX tiles, once the matmuls dominate, and on GPUs
UNDER_AUTOCAST = PrecisionRule("amx_bf16", AMX_MIN_PARAMETERS)


def resolve_device(name: str = "auto") -> torch.device:
    if name not in DEVICES and not name.startswith("cuda:"):
        raise UserError(f"unknown device {name!r}; choose auto, cpu or cuda")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise UserError("--device cuda: no CUDA GPU is visible to PyTorch here; use --device cpu or auto")
        torch.backends.cuda.matmul.allow_tf32 = True  # TF32: fp32 matmuls on tensor cores (Ampere and later)
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cuda.enable_flash_sdp(True)  # the default, stated: bf16 SDPA runs flash attention (Dao et al. 2022)
    return torch.device(name)


@cache
def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags as the kernel reports them (amx_bf16, avx512_bf16, ...); none off Linux."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return frozenset()
    return frozenset(word for line in text.splitlines() if line.startswith("flags") for word in line.split()[2:])


def resolve_precision(name: str, device: torch.device, n_parameters: int,
                      rule: PrecisionRule = UNDER_AUTOCAST) -> str:
    """fp32 or bf16 for `--precision NAME`: auto takes bf16 by the model's rule (UNDER_AUTOCAST for most)."""
    if name not in PRECISIONS:
        raise UserError(f"unknown precision {name!r}; choose one of {', '.join(PRECISIONS)}")
    if name != "auto":
        return name
    if device.type == "cuda":
        return "bf16" if rule.on_gpu and torch.cuda.is_bf16_supported() else "fp32"
    pays = rule.cpu_flag is not None and rule.cpu_flag in cpu_flags() and n_parameters >= rule.fewest_parameters
    return "bf16" if pays else "fp32"


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """The forward pass' numeric context: bf16 autocast or plain fp32."""
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def compile_model(model: nn.Module, enabled: bool) -> nn.Module:
    """torch.compile (TorchInductor's fused kernels); the weights stay the model's, so checkpoints are unchanged."""
    return torch.compile(model) if enabled else model


def to_device(batch: tuple, device: torch.device) -> tuple:
    """A batch's tensors on `device` (anything else in it, such as reference texts, as it is). To a GPU
    they are copied from pinned (page-locked) memory without blocking, so the copy overlaps the work
    already queued on the GPU."""
    if device.type != "cuda":
        return tuple(t.to(device) if isinstance(t, torch.Tensor) else t for t in batch)
    return tuple(t.pin_memory().to(device, non_blocking=True) if isinstance(t, torch.Tensor) else t for t in batch)


def fused_adamw(device: torch.device) -> bool | None:
    """AdamW's fused CUDA kernel (one launch for all parameters) on a GPU; PyTorch's default elsewhere."""
    return True if device.type == "cuda" else None


SMALL_MODEL_PARAMETERS = 1_000_000  # below this, one CPU thread beats several unless a step reads many rows at once
PARALLEL_WORK = 200_000_000  # parameters x rows per matmul above which a small model's steps split well over cores


def cpu_threads(available: int, load: float, small: bool, cores: int | None = None) -> int:
    """Intra-op threads for a CPU run: 1 for a small model, else the cores this process may run on
    that other work is not already using, at least 1.

    `available`: the cores this process may run on (its affinity); `cores`: all the machine's (default
    `available`); `load`: cores' worth of other work at the start (`other_load`), rounded. The load is
    machine-wide, so it is taken from all the cores and only what is left of them counts against the
    affine ones. It is read once, at the start: a run started a few seconds after this one is not in it,
    so two runs started together may each take every core. What keeps that case from collapsing is
    that idle threads spin only briefly before they sleep (GOMP_SPINCOUNT, set in scratchlm/__init__.py).
    """
    if small:
        return 1
    free = (cores or available) - round(load)
    return max(1, min(available, free))


def available_cores() -> int:
    """The cores this process may run on: its CPU affinity (taskset, cpusets), else all of them."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # no sched_getaffinity on macOS or Windows
        return os.cpu_count() or 1


@cache
def other_load(window: float = 0.25) -> float:
    """Cores' worth of other work on the machine at this process' first look; read once, as later this
    process' own work would be in it (a run that trained for minutes would see itself as other load when
    it goes on to generate).

    Sampled from /proc/stat over `window` seconds, the busy time of all cores less this process' own.
    Not the load average: it is a minute's moving average, so it still counts a run that ended seconds
    ago (after one benchmark case ended, the next read 1.85 with one other busy core, which this read
    as 1.0) and does not yet count one started seconds ago. The load average where /proc/stat is not
    there (macOS), 0 where neither is (Windows).
    """
    try:
        before, own_before = cpu_jiffies(), sum(os.times()[:2])
        time.sleep(window)
        after, own_after = cpu_jiffies(), sum(os.times()[:2])
    except (OSError, ValueError, IndexError):
        try:
            return os.getloadavg()[0]
        except (AttributeError, OSError):
            return 0.0
    total, idle = after[0] - before[0], after[1] - before[1]
    if total <= 0:
        return 0.0
    cores = os.cpu_count() or 1
    busy = cores * (total - idle) / total  # cores' worth, this process included
    own = (own_after - own_before) / window
    return max(0.0, busy - own)


def cpu_jiffies() -> tuple[int, int]:
    """(all, idle) CPU time of every core so far, from /proc/stat's first line, in clock ticks: user, nice,
    system, idle, iowait, irq, softirq, steal (guest time is inside user); idle counts iowait."""
    with open("/proc/stat") as f:
        fields = [int(v) for v in f.readline().split()[1:9]]
    return sum(fields), fields[3] + fields[4]


def tune_cpu_threads(device: torch.device, n_parameters: int, rows: int = 1) -> None:
    """Set the intra-op threads of a CPU run by `cpu_threads`, unless OMP_NUM_THREADS says otherwise.

    `rows` is how many rows one matrix multiplication of a step reads: the batch for a recurrence, which
    goes one time step at a time, and batch x window for a Transformer, which reads its window at once.
    A 64-wide RNN's matrices are too small to split across cores: the threads spend their time waiting on
    each other, and on a busy machine each step measured 6-8x slower with 2 threads than 1. The 0.8M
    tiny GPT at 12 x 64 rows is the other way round: its training steps, timed side by side in one
    process, ran 1.6x faster on 2 idle cores than on 1, while generating, one row at a time, it is
    again faster on one.
    """
    if device.type != "cpu" or "OMP_NUM_THREADS" in os.environ:
        return
    small = n_parameters < SMALL_MODEL_PARAMETERS and n_parameters * rows < PARALLEL_WORK
    load = 0.0 if small else other_load()  # a small model takes one thread whatever the load: no sampling
    torch.set_num_threads(cpu_threads(available_cores(), load, small, os.cpu_count()))
