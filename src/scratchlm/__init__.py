"""scratchlm: language models from scratch, the whole lineage, fast.

    import scratchlm
    run = scratchlm.train(data="human-numbers", model="rnn", out="runs/hn-rnn")
    print(run.generate("one . two .", tokens=20))
    run = scratchlm.load("runs/hn-rnn")

The names below are imported on first use, so `scratchlm --help` and a mistyped command answer
without waiting for PyTorch to load.
"""

from importlib import import_module

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
