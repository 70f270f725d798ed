"""The two kinds of failure a user can meet, and how the CLI maps them to exit codes.

`InputError` is bad input (a file, a shape, a name, a config value): the CLI prints its
one-line message and exits 2. `CheckFailed` is a check the user asked for that said no
(a model that does not fit its target): exit 1. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import difflib


class InputError(ValueError):
    """Bad input from the user. The message is one line naming what and where."""


class CheckFailed(Exception):
    """A check the user asked for failed (exit code 1)."""


def suggest(name: str, choices, what: str = "name") -> InputError:
    """An InputError for an unknown `name`, suggesting the closest `choices`.

    >>> str(suggest("resnet19", ["resnet18", "resnet34", "lenet5"], "model"))
    "unknown model 'resnet19'; did you mean: resnet18, resnet34?"
    """
    close = difflib.get_close_matches(name, list(choices), n=3, cutoff=0.6)
    hint = f"; did you mean: {', '.join(close)}?" if close else f"; known: {', '.join(sorted(choices))}"
    return InputError(f"unknown {what} {name!r}{hint}")
