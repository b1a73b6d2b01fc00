"""The one exception type for a user's mistake.

Library code raises `UserError` for anything the user can fix (a missing file, an unknown model name,
a run directory of another task). The CLI turns it into one line on stderr and exit code 2; every other
exception is a bug in scratchlm and keeps its traceback.
"""


class UserError(Exception):
    """A problem with the user's input, told in one line that says what to do."""


class Interrupted(Exception):
    """Training stopped on request (Ctrl-C, SIGTERM) after saving; `--resume` continues."""

    def __init__(self, step: int):
        super().__init__(f"stopped at step {step} and saved; continue with --resume")
        self.step = step
