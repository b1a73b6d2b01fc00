"""Training on several processes or machines: PyTorch's DistributedDataParallel, started by torchrun.

    torchrun --nproc_per_node 2 -m scratchlm train --data human-numbers --batch-size 64

torchrun starts the processes and tells each its place in the environment (RANK, WORLD_SIZE,
LOCAL_RANK, MASTER_ADDR/PORT); `World` reads it. Every process holds the whole model and reads its
own rows of each batch (rank r: rows r*B/N .. (r+1)*B/N - 1 of the global batch of B rows);
DistributedDataParallel averages the gradients, so N processes take the same steps as one process
with the whole batch (with dropout off: every process draws the same random numbers, so a dropout
mask over rows repeats from process to process). Rank 0 writes the run directory and prints; the
others wait at a barrier.

Whatever decides when the loop stops (the loss, the clock, Ctrl-C) is agreed on by every process
through one collective, or one of them would wait forever for the others at the next all-reduce.
Processes talk over gloo on the CPU and NCCL on GPUs. Without torchrun, `World()` is the single
process and every method here does nothing.

A process that dies (kill -9, out of memory) or stops answering must not leave the others waiting: a
collective fails at once when its peer's connection drops, and after `COLLECTIVE_TIMEOUT` when the peer is
silent. The survivors then call the roll on torchrun's store, name the ranks that do not answer, and stop
with one line (`LostProcess`); the run keeps its last checkpoint, from which `--resume` continues exactly.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import timedelta

import torch
import torch.distributed as dist
from torch import nn

from scratchlm.errors import LostProcess, UserError
from scratchlm.models.base import State

# How long a collective waits for a silent process. Rank 0 alone fills the token cache and writes each
# checkpoint while the others wait at a barrier, so it must outlast the longest of those; SCRATCHLM_COLLECTIVE_TIMEOUT
# (seconds) changes it.
COLLECTIVE_TIMEOUT = 600.0
ROLL_CALL_SECONDS = 3.0  # how long the survivors of a failed collective wait for each other to answer


@dataclass(frozen=True)
class World:
    """This process' place among the processes of one training run."""

    rank: int = 0  # 0 .. size-1; rank 0 writes the run directory and prints
    size: int = 1  # processes in all (torchrun's WORLD_SIZE)
    local_rank: int = 0  # index among this machine's processes: the GPU it drives
    device: torch.device = torch.device("cpu")  # where the collectives' tensors live (NCCL: this GPU)

    @classmethod
    def from_env(cls) -> World:
        """The place torchrun gave this process; a single process without it."""
        try:
            rank, size, local = (int(os.environ.get(k, d)) for k, d in
                                 (("RANK", 0), ("WORLD_SIZE", 1), ("LOCAL_RANK", 0)))
        except ValueError:
            raise UserError("RANK, WORLD_SIZE and LOCAL_RANK must be integers (torchrun sets them)") from None
        if not 0 <= rank < size:
            raise UserError(f"RANK {rank} is not between 0 and WORLD_SIZE - 1 = {size - 1}")
        return cls(rank, size, local)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def refuse(self, verb: str) -> None:
        """A verb that runs in one process only: under torchrun, one clear line instead of N tracebacks."""
        if self.size > 1:
            raise UserError(f"{verb} runs in one process; torchrun is for `scratchlm train` (run {verb} without it)")

    def place(self, device: torch.device) -> torch.device:
        """A CUDA device becomes this process' own GPU; the CPU stays the CPU."""
        if device.type != "cuda" or self.size == 1:
            return device
        if self.local_rank >= torch.cuda.device_count():
            raise UserError(f"process {self.local_rank} on this machine has no GPU of its own "
                            f"({torch.cuda.device_count()} visible); lower --nproc_per_node")
        return torch.device("cuda", self.local_rank)

    @contextmanager
    def joined(self, device: torch.device) -> Iterator[World]:
        """The process group for the run's lifetime: gloo on the CPU, NCCL on GPUs."""
        if self.size == 1 or dist.is_initialized():
            yield replace(self, device=device)
            return
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", rank=self.rank, world_size=self.size,
                                timeout=timedelta(seconds=collective_timeout()))
        try:
            world = replace(self, device=device)
            world.barrier()  # every process has checked its arguments before rank 0 writes anything
            yield world
        except (RuntimeError, dist.DistError) as e:
            if not collective_failed(e):
                raise
            raise self.lost() from None
        finally:
            dist.destroy_process_group()

    def lost(self) -> LostProcess:
        """The error of a survivor whose collective failed: which ranks are gone, from a roll call. torchrun
        sends the survivors SIGTERM once it sees a worker die; the roll call must outlast it to name the dead."""
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
        missing = roll_call(self.rank, self.size)
        if missing is None:
            who, speaks = "another process of the run", True
        else:
            who = "process " + ", ".join(str(r) for r in missing) if missing else "another process of the run"
            speaks = self.rank == min(set(range(self.size)) - set(missing))
        return LostProcess(f"{who} (of {self.size}) stopped answering: killed, crashed or out of memory; the run keeps "
                           "its last checkpoint: start the same torchrun command with --resume to continue", speaks)

    def barrier(self) -> None:
        """Wait until every process gets here (NCCL is told its GPU, or it would guess one)."""
        if self.size == 1:
            return
        if self.device.type == "cuda":
            dist.barrier(device_ids=[self.device.index])
        else:
            dist.barrier()

    @contextmanager
    def local_main_first(self) -> Iterator[None]:
        """The first process of each machine runs the block (filling the token cache) before the others."""
        if self.local_rank != 0:
            self.barrier()
        yield
        if self.local_rank == 0:
            self.barrier()

    def wrap(self, model: nn.Module) -> nn.Module:
        """DistributedDataParallel: the model as it is, whose backward averages the gradients over processes."""
        if self.size == 1:
            return model
        return nn.parallel.DistributedDataParallel(model, device_ids=[self.device.index] if self.device.type == "cuda"
                                                   else None)

    def sum(self, values: torch.Tensor) -> torch.Tensor:
        """The sum over processes of `values` (each process' own sums: losses, tokens, correct guesses)."""
        if self.size > 1:
            values = values.to(self.device)
            dist.all_reduce(values)
        return values

    def mean_loss(self, loss: torch.Tensor) -> float:
        """The loss of the whole batch: every process holds the same number of rows, so the mean of means."""
        if self.size == 1:
            return loss.item()
        return self.sum(loss.detach().float().clone()).item() / self.size

    def gather_scalars(self, values: torch.Tensor) -> torch.Tensor:
        """(processes, n): each process' `values` (n numbers), in rank order, on the CPU."""
        if self.size == 1:
            return values.unsqueeze(0).cpu()
        parts = [torch.empty_like(values, device=self.device) for _ in range(self.size)]
        dist.all_gather(parts, values.to(self.device).contiguous())
        return torch.stack(parts).cpu()

    def agree(self, elapsed: float, stop: bool) -> tuple[float, bool]:
        """Rank 0's clock and whether any process was asked to stop: the same on every process."""
        if self.size == 1:
            return elapsed, stop
        both = self.sum(torch.tensor([elapsed if self.is_main else 0.0, float(stop)], dtype=torch.float64))
        return both[0].item(), both[1].item() > 0

    def gather_rows(self, state: State) -> State:
        """The carried state of the whole batch, for the checkpoint: each process' rows, in rank order.

        States are laid out (..., B, H), as nn.RNN's (layers, B, H): rows are the second-last dimension.
        """
        if self.size == 1 or state is None:
            return state
        if isinstance(state, tuple):
            return tuple(self.gather_rows(s) for s in state)
        parts = [torch.empty_like(state, device=self.device) for _ in range(self.size)]
        dist.all_gather(parts, state.to(self.device).contiguous())
        return torch.cat(parts, dim=-2).to(state.device)

    def rows_of(self, state: State, device: torch.device | None = None) -> State:
        """This process' rows of a whole-batch state (one saved by any number of processes), on `device`."""
        if state is None:
            return None
        if isinstance(state, tuple):
            return tuple(self.rows_of(s, device) for s in state)
        rows = state.chunk(self.size, dim=-2)[self.rank] if self.size > 1 else state
        return rows.to(device or rows.device).contiguous()

    def check_batch(self, batch_size: int, resume: bool = False) -> None:
        """The global batch is split by rows: each process must get the same number."""
        if batch_size % self.size == 0:
            return
        if not resume:
            raise UserError(f"--batch-size {batch_size} cannot be split over {self.size} processes; "
                            f"give a multiple of {self.size}")
        counts = [str(n) for n in range(1, batch_size + 1) if batch_size % n == 0][:12]
        raise UserError(f"the run's --batch-size {batch_size} cannot be split over {self.size} processes; "
                        f"resume it with {', '.join(counts)} processes")


def collective_timeout() -> float:
    try:
        return float(os.environ.get("SCRATCHLM_COLLECTIVE_TIMEOUT", COLLECTIVE_TIMEOUT))
    except ValueError:
        raise UserError("SCRATCHLM_COLLECTIVE_TIMEOUT must be a number of seconds") from None


def collective_failed(error: BaseException) -> bool:
    """Did a collective fail because a peer went away (a reset connection, a timeout), rather than a bug?
    gloo raises a plain RuntimeError naming itself; NCCL and the store raise torch.distributed's errors."""
    text = str(error)
    return isinstance(error, dist.DistError) or any(
        mark in text for mark in ("gloo", "Gloo", "NCCL", "Connection reset", "Connection closed", "Timed out"))


def roll_call(rank: int, size: int) -> list[int] | None:
    """The ranks that do not answer within ROLL_CALL_SECONDS on torchrun's store (which outlives its workers),
    or None when the store cannot be reached (it lived in the lost process)."""
    try:
        store = dist.TCPStore(os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]), is_master=False,
                              timeout=timedelta(seconds=ROLL_CALL_SECONDS))
        prefix = (f"scratchlm/roll-call/{os.environ.get('TORCHELASTIC_RUN_ID', '')}/"
                  f"{os.environ.get('TORCHELASTIC_RESTART_COUNT', '0')}")
        store.set(f"{prefix}/{rank}", "here")
        deadline = time.monotonic() + ROLL_CALL_SECONDS
        while True:
            missing = [r for r in range(size) if not store.check([f"{prefix}/{r}"])]
            if not missing or time.monotonic() > deadline:
                return missing
            time.sleep(0.05)
    except (KeyError, ValueError, RuntimeError, dist.DistError):
        return None
