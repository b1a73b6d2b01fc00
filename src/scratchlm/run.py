"""A trained run, rebuilt from its directory alone.

    run = scratchlm.load("runs/hn-rnn")     # the Run subclass of the run's task
    run.generate("one . two .", tokens=20)
    run.eval()

`Run` holds what every task's run has (config, tokenizers, the best weights on a device); each task
adds its verbs in a subclass, in the task's module (scratchlm/tasks/: a language model's generate,
stream, score and eval). The class itself lives beside the task seam (scratchlm/tasks/base.py), which
the tasks build on; this module is its public name.
"""

from scratchlm.tasks.base import Run, load_best_weights

__all__ = ["Run", "load_best_weights"]
