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

# How long OpenMP's idle threads spin before they sleep. PyTorch's Linux CPU wheels run their thread
# pool on libgomp, whose idle threads spin 300,000 turns (about 3 ms) after each parallel region. Alone
# that saves a wake-up per region; beside other work each spinning thread holds a core that a thread
# with work needs: the tiny GPT beside a second gpt kept 0.19x of its speed alone. Sleeping at once
# (OMP_WAIT_POLICY=PASSIVE) fixed that (0.55x) but cost 0.6x alone, a wake-up per matmul. 10,000 turns
# spans the gap between the parallel regions of one step, so alone the threads still catch the next
# one, and frees the core within a fraction of a millisecond when work stops: the tiny GPT alone ran
# 1.07x its speed under libgomp's default, beside a gpt 0.59x of alone (bench/shared_machine.py).
# libgomp reads it once, when torch loads it, so it is set here, before scratchlm imports torch: it
# holds for the CLI and for `import scratchlm` before `import torch`. A user's own OMP_WAIT_POLICY or
# GOMP_SPINCOUNT is kept.
SPIN_COUNT = "10000"
if "OMP_WAIT_POLICY" not in os.environ and "GOMP_SPINCOUNT" not in os.environ:
    os.environ["GOMP_SPINCOUNT"] = SPIN_COUNT

__version__ = "0.1.0"

_EXPORTS = {"train": "scratchlm.api", "lr_find": "scratchlm.api", "ladder": "scratchlm.race",
            "cross_validate": "scratchlm.folds", "import_vectors": "scratchlm.tasks.embeddings",
            "WordVectors": "scratchlm.vectors",
            "Run": "scratchlm.run", "UserError": "scratchlm.errors", "REGISTRY": "scratchlm.models.registry",
            # for the notebooks' pictures: the built-in corpus, how a stream is cut into batches, attention maps
            "human_numbers_text": "scratchlm.data.human_numbers", "LMStream": "scratchlm.data.batches",
            "WindowBatches": "scratchlm.data.batches", "plot_attention": "scratchlm.plots"}
__all__ = ["LMStream", "REGISTRY", "Run", "UserError", "WindowBatches", "WordVectors", "__version__", "cross_validate",
           "human_numbers_text", "import_vectors", "ladder",
           "load", "lr_find", "plot_attention", "train"]


def __getattr__(name: str):
    if name == "load":
        return import_module("scratchlm.run").Run.load
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'scratchlm' has no attribute {name!r}")
