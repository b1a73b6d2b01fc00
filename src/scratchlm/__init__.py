"""scratchlm: language models from scratch, the whole lineage, fast.

    import scratchlm
    run = scratchlm.train(data="human-numbers", model="rnn", out="runs/hn-rnn")
    print(run.generate("one . two .", tokens=20))
    run = scratchlm.load("runs/hn-rnn")

The names below are imported on first use, so `scratchlm --help` and a mistyped command answer
without waiting for PyTorch to load.
"""

import os
from importlib import import_module

# OpenMP's waiting threads sleep instead of spinning. PyTorch's Linux CPU wheels run their thread pool
# on libgomp, whose idle threads spin for a while (GOMP_SPINCOUNT, 300,000 turns) before they sleep.
# Alone that saves a wake-up per parallel region; beside other work each spinning thread holds a core
# that a thread with work needs. Timed training steps on 2 idle cores, two tiny GPTs of 2 threads each
# side by side: 230 tokens/s spinning, against 9,200 alone; sleeping, 5,800, about what one gets alone
# sleeping (5,900). That is the cost alone: 5,900 against 10,900 spinning for the tiny GPT, 1,440
# against 1,770 for a 4.8M GPT (bench/shared_machine.py measures whole runs). libgomp reads this once,
# when it is loaded, so it is set here, before scratchlm imports torch: it holds for the CLI and for
# `import scratchlm` before `import torch` (after it, only for child processes). A user's own
# OMP_WAIT_POLICY or GOMP_SPINCOUNT is kept.
if "OMP_WAIT_POLICY" not in os.environ and "GOMP_SPINCOUNT" not in os.environ:
    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"

__version__ = "0.1.0"

_EXPORTS = {"train": "scratchlm.api", "lr_find": "scratchlm.api", "ladder": "scratchlm.race",
            "Run": "scratchlm.run", "UserError": "scratchlm.errors", "REGISTRY": "scratchlm.models.registry"}
__all__ = ["REGISTRY", "Run", "UserError", "__version__", "ladder", "load", "lr_find", "train"]


def __getattr__(name: str):
    if name == "load":
        return import_module("scratchlm.run").Run.load
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'scratchlm' has no attribute {name!r}")
