"""User-facing errors. The CLI turns any `CaviarError` into one line per problem and exit code 2."""

from __future__ import annotations

import difflib
import signal
from collections.abc import Iterable


class CaviarError(Exception):
    """A problem the user caused and can fix. `problems` holds one message per problem."""

    def __init__(self, problems: str | Iterable[str]):
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("\n".join(self.problems))


class SpecError(CaviarError):
    """The sweep spec is invalid; every problem is listed."""


class RunDirError(CaviarError):
    """A run directory is missing, incomplete or already in use."""


class LRFindError(CaviarError):
    """The learning-rate range test diverged before it had a curve to suggest from."""


def did_you_mean(word: str, options: Iterable[str]) -> str:
    """ "; did you mean 'x'?" for the closest option, or ''. A prefix match wins (grace ->
    grace_period), then the most similar spelling."""
    options = list(options)
    close = [o for o in options if o.startswith(word) or word.startswith(o)]
    close = close or difflib.get_close_matches(word, options, n=1, cutoff=0.6)
    return f"; did you mean '{close[0]}'?" if close else ""


class Interrupted(Exception):
    """A sweep stopped by a signal, its state saved: `caviar resume` continues it."""

    def __init__(self, signum: int, run_dir: str, done: int, total: int):
        self.signum, self.run_dir = signum, run_dir
        super().__init__(
            f"stopped by {signal.Signals(signum).name}: {done} of {total} trials finished, "
            f"results so far in {run_dir}; continue with: caviar resume {run_dir}"
        )
