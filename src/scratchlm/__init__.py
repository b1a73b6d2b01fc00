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

# OpenMP's idle threads spin 10,000 turns, not libgomp's 300,000, before they sleep: alone as fast, and
# beside other work they free the cores (why and the figures: scratchlm/speed.py). libgomp reads it once,
# when torch loads it, so it is set here, first; a user's own OMP_WAIT_POLICY or GOMP_SPINCOUNT is kept.
SPIN_COUNT = "10000"
if "OMP_WAIT_POLICY" not in os.environ and "GOMP_SPINCOUNT" not in os.environ:
    os.environ["GOMP_SPINCOUNT"] = SPIN_COUNT

__version__ = "0.2.0"  # the release: config.json records it (scratchlm/releases.py)

_EXPORTS = {"train": "api", "lr_find": "api", "ladder": "race", "cross_validate": "folds", "Run": "run",
            "import_vectors": "tasks.embeddings", "WordVectors": "vectors", "UserError": "errors",
            "REGISTRY": "models.registry", "plot_attention": "plots", "LMStream": "data.batches",
            "WindowBatches": "data.batches", "human_numbers_text": "data.human_numbers"}  # the last four: notebooks
__all__ = sorted([*_EXPORTS, "__version__", "load"])


def __getattr__(name: str):
    if name == "load":  # scratchlm.load(path) is Run.load
        return __getattr__("Run").load
    if name in _EXPORTS:
        return getattr(import_module(f"scratchlm.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'scratchlm' has no attribute {name!r}")
