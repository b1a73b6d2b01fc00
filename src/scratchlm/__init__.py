"""scratchlm: language models from scratch, the whole lineage, fast.

    import scratchlm
    run = scratchlm.train(data="human-numbers", model="rnn", out="runs/hn-rnn")
    print(run.generate("one . two .", tokens=20))
    run = scratchlm.Run.load("runs/hn-rnn")
"""

__version__ = "0.1.0"

from scratchlm.api import lr_find, train  # noqa: E402
from scratchlm.errors import UserError  # noqa: E402
from scratchlm.models.registry import REGISTRY  # noqa: E402
from scratchlm.run import Run  # noqa: E402

load = Run.load

__all__ = ["REGISTRY", "Run", "UserError", "__version__", "load", "lr_find", "train"]
