"""Fault injection: training killed with SIGKILL at random moments, and during checkpoint writes, then
resumed with `scratchlm train --resume`, ends bit-identical to a run never interrupted; SIGINT and
SIGTERM save and exit cleanly. After every kill the run directory must still be readable.

A kill "during a checkpoint write" is made exact by a hook in the child: it counts the calls to
os.fsync and os.replace (every durable write of the run directory goes through both) and SIGKILLs
itself at a chosen one; so a kill lands between writing the pending state and renaming the weights,
between the two renames of a checkpoint, before model.safetensors or metrics.jsonl follow, and so on.

The quick test forks this process for each launch (no interpreter start-up: a few seconds in all);
the slow one runs real `python -m scratchlm` processes and kills them at random times too.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import scratchlm
from scratchlm.checkpoint import BEST, CONFIG, LAST, STATE, RunDir, pair_ok, read_weights
from scratchlm.errors import UserError
from scratchlm.run import Run

# Three epochs of human numbers (50 steps each at batch 64), an evaluation and checkpoint every 7 steps.
# on the CPU even where there is a GPU: the child is forked, and CUDA cannot start again in a fork
OPTIONS = {"model": "rnn", "epochs": 3, "batch_size": 64, "eval_every": 7, "device": "cpu"}
# wall-clock figures: never the same twice
TIME_FIELDS = {"seconds", "tokens_per_second", "elapsed", "evaluated_at", "evaluation_seconds"}

# Run in the child: SIGKILL itself at the KILL_AT-th call of os.fsync or os.replace (0: never).
KILL_HOOK = """
import os, signal, sys
from scratchlm.cli import main
calls, kill_at = [0], int(sys.argv[1])
def dying(real):
    def call(*args, **kwargs):
        calls[0] += 1
        if calls[0] == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
        return real(*args, **kwargs)
    return call
os.fsync, os.replace = dying(os.fsync), dying(os.replace)
sys.exit(main(sys.argv[2:]))
"""


def train_args(out: Path, options: dict = OPTIONS) -> list[str]:
    args = ["train", "--data", "human-numbers", "--out", str(out), "--quiet"]
    for key, value in options.items():
        args += [f"--{key.replace('_', '-')}", str(value)]
    return args + (["--resume"] if (out / CONFIG).exists() else [])


def fork_cli(args: list[str], kill_at: int = 0, stderr: Path | None = None, hook: str = "") -> int:
    """`scratchlm ARGS` in a forked child (this interpreter's modules already imported); its pid. The child
    runs KILL_HOOK, or `hook` (FULL_DISK_HOOK) with `kill_at` as its number."""
    pid = os.fork()
    if pid:
        return pid
    code = 1
    try:  # the child: never return into pytest
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 (the child ends with os._exit, which flushes nothing)
        sys.stderr = open(stderr or os.devnull, "w", buffering=1)  # noqa: SIM115
        sys.argv = ["-c", str(kill_at), *args]
        exec(hook or KILL_HOOK, {"__name__": "__main__"})
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
    finally:
        os._exit(code)


def wait(pid: int, timeout: float = 120) -> int:
    """The child's exit code, or -SIGNAL if a signal ended it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.01)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    raise AssertionError(f"child {pid} did not finish in {timeout} s")


def mid_checkpoint(out: Path, since: float) -> bool:
    """Did the kill leave a checkpoint half-made: a pending state, a temporary file written by this
    child (started at `since`), or weights ahead of the state?"""
    if (out / f"{STATE}.tmp").exists() or any(p.stat().st_mtime >= since for p in out.glob(".*.tmp")):
        return True
    return (out / STATE).exists() and not pair_ok(out / LAST, out / STATE, check_weights=False)


def assert_readable(out: Path) -> None:
    """What a user may do after a kill still works: read the run, or be told it has no weights yet."""
    if not (out / CONFIG).exists():
        return  # killed before the run began: there is nothing yet, and --resume starts it afresh
    try:
        run = Run.load(out, device="cpu")
    except UserError as e:
        assert "has no weights yet" in str(e) and not (out / STATE).exists(), e
        return
    assert pair_ok(out / LAST, out / STATE)
    assert run.metrics == RunDir(out).load_state()["history"]


def assert_same_run(run: Path, reference: Path) -> None:
    """Weights (latest and best), optimizer state, RNG states and metrics equal, bit for bit."""
    for name in (LAST, BEST):
        a, b = read_weights(run / name), read_weights(reference / name)
        assert a.keys() == b.keys()
        assert all(torch.equal(a[k], b[k]) for k in a), name
    assert_equal(RunDir(run).load_state(), RunDir(reference).load_state())
    assert_equal(RunDir(run).read_metrics(), RunDir(reference).read_metrics())
    assert not (run / f"{STATE}.tmp").exists()


def assert_equal(a: object, b: object, where: str = "state") -> None:
    """Deep equality of saved states: tensors bit for bit, wall-clock fields left out."""
    if isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), where
        for key in a:
            if key not in TIME_FIELDS:
                assert_equal(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, list | tuple):
        assert isinstance(b, list | tuple) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_equal(x, y, f"{where}[{i}]")
    elif isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b), where
    else:
        assert a == b or (a != a and b != b), f"{where}: {a!r} != {b!r}"  # NaN equals NaN here


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The run never interrupted, through the same API the CLI calls."""
    out = tmp_path_factory.mktemp("reference") / "run"
    scratchlm.train("human-numbers", out=out, **OPTIONS)
    return out


def test_signalled_and_killed_during_checkpoints_then_resumed_is_bit_identical(reference: Path, tmp_path: Path):
    """Quick: a SIGKILL before the first checkpoint, SIGTERM and SIGINT mid-run, then three SIGKILLs at
    chosen writes (most inside a checkpoint), each followed by --resume; the end is the uninterrupted run's."""
    out = tmp_path / "run"
    # Killed at its first checkpoint, after config.json: the resumed run starts over from step 0 and must
    # draw the same random numbers as the reference did.
    since = time.time()
    assert wait(fork_cli(train_args(out), kill_at=7)) == -signal.SIGKILL
    assert (out / CONFIG).exists() and not (out / STATE).exists() and mid_checkpoint(out, since)
    assert_readable(out)
    for signum in (signal.SIGTERM, signal.SIGINT):
        before = RunDir(out).load_state()["step"] if (out / STATE).exists() else 0
        log = tmp_path / f"stderr-{signum.name}.txt"
        pid = fork_cli(train_args(out), stderr=log)
        while not ((out / STATE).exists() and RunDir(out).load_state()["step"] > before):
            time.sleep(0.005)  # until this child has written a checkpoint of its own: it is mid-run
        if signum == signal.SIGTERM:  # meanwhile a second process may not train into the same run
            with pytest.raises(UserError, match="another scratchlm process is training into or repairing this run"):
                scratchlm.train(out=out, resume=True)
        os.kill(pid, signum)
        assert wait(pid) == 130, log.read_text()
        step = RunDir(out).load_state()["step"]
        assert log.read_text().strip() == f"scratchlm: stopped at step {step} and saved; continue with --resume"
        assert_readable(out)

    kills, mid = 1, 1
    for kill_at in (40, 57, 63):  # counted from each child's start; each lands in a different phase
        since = time.time()
        assert wait(fork_cli(train_args(out), kill_at)) == -signal.SIGKILL
        kills, mid = kills + 1, mid + mid_checkpoint(out, since)
        assert_readable(out)
    assert mid >= 3, "the kills should land inside checkpoint writes"

    assert wait(fork_cli(train_args(out))) == 0
    assert_same_run(out, reference)
    print(f"kills survived: {kills} ({mid} inside a checkpoint write)")


SLOW_OPTIONS = {**OPTIONS, "epochs": 8}
KILLS = 12


@pytest.mark.slow
def test_random_sigkills_of_real_processes_then_resume_is_bit_identical(tmp_path: Path):
    """At least ten SIGKILLs of `python -m scratchlm train`: at random times, and at random writes
    (some inside checkpoints); after each the directory is readable; every run that reaches its end
    is the uninterrupted run's. A run that ends before its kill (a fast machine) is checked, and the
    kills go on in a new run directory until there have been enough."""
    reference = tmp_path / "reference"
    scratchlm.train("human-numbers", out=reference, **SLOW_OPTIONS)
    rng = random.Random(20261125)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    kills, mid, runs = 0, 0, 0
    out = tmp_path / f"run-{runs}"
    for launch in range(100):
        killing = kills < KILLS
        kill_at = rng.randint(10, 60) if killing and launch % 2 else 0  # every other one dies at a write
        since = time.time()
        child = subprocess.Popen([sys.executable, "-c", KILL_HOOK, str(kill_at), *train_args(out, SLOW_OPTIONS)],
                                 env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        if killing and not kill_at:
            with contextlib.suppress(subprocess.TimeoutExpired):  # start-up included: some die importing
                child.wait(timeout=rng.uniform(1.0, 7.0))
            child.send_signal(signal.SIGKILL)
        _, stderr = child.communicate(timeout=300)
        if child.returncode == 0:  # the run reached its end
            assert_same_run(out, reference)
            runs += 1
            if not killing:
                break
            out = tmp_path / f"run-{runs}"
            continue
        assert child.returncode == -signal.SIGKILL, f"launch {launch}: {stderr}"
        kills, mid = kills + 1, mid + mid_checkpoint(out, since)
        assert_readable(out)
    assert kills >= KILLS and mid >= 1 and runs >= 1, (kills, mid, runs)
    print(f"kills survived: {kills} ({mid} inside a checkpoint write)")


def test_a_translation_run_killed_during_checkpoints_resumes_bit_identical(tmp_path: Path):
    """The same for the translation task: its shuffled, bucketed batches and BLEU history resume exactly."""
    rng = random.Random(0)
    words = ["zero", "one", "two", "three", "four", "five"]
    sentences = [[rng.choice(words) for _ in range(rng.randint(2, 5))] for _ in range(300)]
    data = tmp_path / "pairs.tsv"
    data.write_text("".join(f"{' '.join(w)}\t{' '.join(x.upper() for x in reversed(w))}\n" for w in sentences))
    settings = {"n_embed": 16, "n_hidden": 16}
    options = {"model": "seq2seq-attn", "tokenizer": "word", "epochs": 4, "batch_size": 16, "eval_every": 7,
               "device": "cpu"}
    reference = tmp_path / "reference"
    scratchlm.train(str(data), out=reference, settings=settings, **options)

    out = tmp_path / "run"
    sets = [arg for key, value in settings.items() for arg in ("--set", f"{key}={value}")]

    def args() -> list[str]:
        flags = [part for key, value in options.items() for part in (f"--{key.replace('_', '-')}", str(value))]
        return ["train", "--data", str(data), "--out", str(out), "--quiet", *flags, *sets] + (
            ["--resume"] if (out / CONFIG).exists() else [])

    mid = 0
    for kill_at in (7, 30, 45):
        since = time.time()
        assert wait(fork_cli(args(), kill_at)) == -signal.SIGKILL
        mid += mid_checkpoint(out, since)
        assert_readable(out)
    assert mid >= 2, "the kills should land inside checkpoint writes"
    assert wait(fork_cli(args())) == 0
    assert_same_run(out, reference)


# Run by torchrun as each worker: rank 1 SIGKILLs itself (KILL=kill), or stops without dying (KILL=stop), once
# rank 0 has written a checkpoint past step 10 (argv: the run folder, then scratchlm's arguments), so the kill
# lands mid-run on any machine.
TORCHRUN_WORKER = """
import os, signal, sys, threading, time
from pathlib import Path
from scratchlm.checkpoint import RunDir
from scratchlm.cli import main
out = Path(sys.argv[1])
def kill_after_a_checkpoint():
    while True:
        try:
            if (out / "state.pt").exists() and RunDir(out).load_state()["step"] > 10:
                os.kill(os.getpid(), signal.SIGSTOP if os.environ["KILL"] == "stop" else signal.SIGKILL)
        except Exception:
            pass  # caught between two renames: look again
        time.sleep(0.01)
if os.environ["RANK"] == "1" and os.environ["KILL"] != "no":
    threading.Thread(target=kill_after_a_checkpoint, daemon=True).start()
sys.exit(main(sys.argv[2:]))
"""
TORCHRUN_OPTIONS = {"model": "rnn", "epochs": 4, "batch_size": 128, "eval_every": 5, "device": "cpu"}


def torchrun_workers(out: Path, worker: Path, kill: str = "no", timeout: float = 300,
                     collective_timeout: float = 60) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "KILL": kill, "SCRATCHLM_COLLECTIVE_TIMEOUT": str(collective_timeout)}
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--standalone", str(worker),
               str(out), *train_args(out, TORCHRUN_OPTIONS)]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout)


def test_a_worker_killed_under_torchrun_stops_the_other_in_one_line_and_resume_is_exact(tmp_path: Path):
    worker = tmp_path / "worker.py"
    worker.write_text(TORCHRUN_WORKER)
    reference, out = tmp_path / "reference", tmp_path / "run"
    assert torchrun_workers(reference, worker).returncode == 0

    began = time.monotonic()
    killed = torchrun_workers(out, worker, kill="kill")
    lines = [line for line in killed.stderr.splitlines() if line.startswith("scratchlm:")]
    assert killed.returncode != 0 and time.monotonic() - began < 60, "the survivor must not wait for the lost worker"
    assert lines == ["scratchlm: error: process 1 (of 2) stopped answering: killed, crashed or out of memory; the run "
                     "keeps its last checkpoint: start the same torchrun command with --resume to continue"], killed.stderr
    # no worker's traceback ("[rank0]: Traceback"); torchrun's own report of the killed worker follows its lines
    assert not any(line.startswith("[rank") and "Traceback" in line for line in killed.stderr.splitlines())
    assert_readable(out)

    resumed = torchrun_workers(out, worker)
    assert resumed.returncode == 0, resumed.stderr
    assert_same_run(out, reference)


@pytest.mark.slow
def test_a_worker_that_stops_answering_times_out_the_collective(tmp_path: Path):
    """A stopped process (a hung machine) keeps its connections open: only the collective's timeout ends the wait."""
    worker = tmp_path / "worker.py"
    worker.write_text(TORCHRUN_WORKER)
    began = time.monotonic()
    stopped = torchrun_workers(tmp_path / "run", worker, kill="stop", collective_timeout=10)
    lines = [line for line in stopped.stderr.splitlines() if line.startswith("scratchlm:")]
    assert stopped.returncode != 0 and time.monotonic() - began < 120
    assert len(lines) == 1 and "process 1 (of 2) stopped answering" in lines[0], stopped.stderr
    assert_readable(tmp_path / "run")


# Run in the child: from the FULL_AT-th os.replace on (0: from the start), no file may grow past 4 KiB, as on a
# disk that filled up mid-run. Python ignores SIGXFSZ, so the write fails with EFBIG ("File too large").
FULL_DISK_HOOK = """
import os, resource, sys
from scratchlm.cli import main
calls, full_at = [0], int(sys.argv[1])
def fill():
    resource.setrlimit(resource.RLIMIT_FSIZE, (4096, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
real_replace = os.replace
def replace(*args, **kwargs):
    result = real_replace(*args, **kwargs)
    calls[0] += 1
    if calls[0] == full_at:
        fill()
    return result
os.replace = replace
if full_at == 0:
    fill()
sys.exit(main(sys.argv[2:]))
"""


def test_a_checkpoint_that_cannot_be_written_stops_in_one_line_and_resumes_once_there_is_room(reference: Path,
                                                                                              tmp_path: Path):
    out, log = tmp_path / "run", tmp_path / "stderr.txt"
    assert wait(fork_cli(train_args(out), kill_at=30, stderr=log, hook=FULL_DISK_HOOK)) == 2
    kept = RunDir(out).load_state()["step"]
    message = log.read_text().strip()
    assert message.startswith(f"scratchlm: error: {out}: cannot write the checkpoint of step {kept + 7} (File too "
                              f"large); the checkpoint of step {kept} is intact; free space and continue with --resume")
    assert message.count("\n") == 0 and kept > 0
    assert pair_ok(out / LAST, out / STATE) and not list(out.glob("*.tmp")) and not list(out.glob(".*.tmp"))
    assert_readable(out)
    assert wait(fork_cli(train_args(out))) == 0  # room again
    assert_same_run(out, reference)


def test_a_token_cache_that_cannot_be_written_is_never_used(tmp_path: Path, cache_dir: Path):
    data = tmp_path / "text.txt"
    data.write_text("a text long enough to need more than four kilobytes of token ids.\n" * 400)
    out, log = tmp_path / "run", tmp_path / "stderr.txt"
    args = ["train", "--data", str(data), "--epochs", "1", "--batch-size", "8", "--out", str(out), "--quiet"]
    assert wait(fork_cli(args, kill_at=0, stderr=log, hook=FULL_DISK_HOOK)) == 2
    assert log.read_text() == (f"scratchlm: error: {cache_dir}: cannot write the token cache (File too large); "
                               "free space there or choose another --cache-dir\n")
    assert not out.exists() and [p.name for p in cache_dir.iterdir()] == []  # no entry, whole or partial
    assert wait(fork_cli(args)) == 0
