"""The one exception type for a user's mistake.

Library code raises `UserError` for anything the user can fix (a missing file, an unknown model name,
a run directory of another task). The CLI turns it into one line on stderr and exit code 2; every other
exception is a bug in scratchlm and keeps its traceback.
"""

import difflib
from collections.abc import Iterable


class UserError(Exception):
    """A problem with the user's input, told in one line that says what to do."""


def closest(name: str, choices: Iterable[str]) -> list[str]:
    """The choices a mistyped `name` probably meant, best first (none when nothing is near).

    Case is ignored. A choice that starts with `name` counts (`awd` -> awd-lstm), as does one `name` starts
    with (`gpt2` -> gpt); the rest come from difflib's similarity (`lstn` -> lstm).
    """
    lower = {choice.lower(): choice for choice in choices}
    key = name.lower()
    similar = set(difflib.get_close_matches(key, lower, n=3, cutoff=0.6))
    near = [choice for choice in lower  # in the given order, so that ties come out the same every time
            if choice in similar or key and (choice.startswith(key) or key.startswith(choice))]
    near.sort(key=lambda choice: -difflib.SequenceMatcher(None, key, choice).ratio())
    return [lower[choice] for choice in near[:3]]


class LostProcess(UserError):
    """Another process of a torchrun launch died (killed, out of memory) or stopped answering: every collective
    would wait for it forever. `speaks` is False on all survivors but the lowest rank, so the user reads one line."""

    def __init__(self, message: str, speaks: bool = True):
        super().__init__(message)
        self.speaks = speaks


class Interrupted(Exception):
    """Training stopped on request (Ctrl-C, SIGTERM) after saving; `how` says what continues it."""

    def __init__(self, step: int, how: str = "continue with --resume"):
        super().__init__(f"stopped at step {step} and saved; {how}")
        self.step = step
