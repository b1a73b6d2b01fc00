"""The tasks scratchlm trains, one module each, named after the task (`lm` -> scratchlm/tasks/lm.py).

A task module defines a `Task` subclass (scratchlm.tasks.base) and exposes one instance as `TASK`.
Adding a task is adding its module and its name below; the trainer, the run directory, the API and
the CLI reach it through `get_task`, never through a branch on its name.
"""

from __future__ import annotations

from functools import cache
from importlib import import_module

from scratchlm.errors import UserError

TASK_NAMES = ("lm", "translation", "classification", "embeddings")


@cache
def get_task(name: str):
    """The task called `name` (its module is imported on first use)."""
    if name not in TASK_NAMES:
        raise UserError(f"unknown task {name!r}: this scratchlm knows {', '.join(TASK_NAMES)}; "
                        "the run may be from a newer version")
    return import_module(f"scratchlm.tasks.{name}").TASK


def task_of_run(config: dict, path: object):
    """The task of a run directory's config.json, or one clear line when this scratchlm lacks it."""
    name = config.get("task")
    if name not in TASK_NAMES:
        raise UserError(f"{path} is a {name} run, a task this version of scratchlm does not have "
                        f"(it has {', '.join(TASK_NAMES)})")
    return get_task(name)
