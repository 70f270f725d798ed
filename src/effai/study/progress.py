"""What a running study tells the user, variant by variant.

On a terminal: rich progress bars. Anywhere else (a log file, CI, `make demo > log`): one plain,
timestamped line per variant step, flushed at once, so the log shows the study while it runs.
After the first variant measured, both print an estimate of the time the rest will take.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

STEPS = 4  # building, timing, evaluating, fitting: the steps `_measure_variant` reports


class Quiet:
    """No output (`--json`, the Python API's default)."""

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        return None

    def reused(self, name: str) -> None: ...

    def step(self, name: str, what: str) -> None: ...

    def finished(self, name: str, summary: str) -> None: ...

    def note(self, text: str) -> None: ...


class Lines(Quiet):
    """One timestamped line per step: `10:42:07 [3/17] int8_ptq: evaluating`."""

    def __init__(self, names: list[str], stream: TextIO | None = None):
        self.index = {n: i + 1 for i, n in enumerate(names)}
        self.total = len(names)
        self.stream = stream or sys.stdout

    def _line(self, text: str) -> None:
        print(f"{time.strftime('%H:%M:%S')} {text}", file=self.stream, flush=True)

    def _tag(self, name: str) -> str:
        return f"[{self.index[name]}/{self.total}] {name}"

    def reused(self, name: str) -> None:
        self._line(f"{self._tag(name)}: reused from results.jsonl")

    def step(self, name: str, what: str) -> None:
        self._line(f"{self._tag(name)}: {what}")

    def finished(self, name: str, summary: str) -> None:
        self._line(f"{self._tag(name)}: done, {summary}")

    def note(self, text: str) -> None:
        self._line(text)


class Bars(Quiet):
    """Rich progress bars, one per variant (a terminal)."""

    def __init__(self, names: list[str]):
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
        self.tasks = {n: self.bar.add_task(n, total=STEPS) for n in names}

    def __enter__(self):
        self.bar.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.bar.__exit__(*exc)

    def reused(self, name: str) -> None:
        self.bar.update(self.tasks[name], completed=STEPS, description=f"{name}: reused")

    def step(self, name: str, what: str) -> None:
        self.bar.update(self.tasks[name], advance=1, description=f"{name}: {what}")

    def finished(self, name: str, summary: str) -> None:
        self.bar.update(self.tasks[name], completed=STEPS, description=f"{name}: {summary}")

    def note(self, text: str) -> None:
        self.bar.console.print(text)


def reporter(names: list[str], enabled: bool, stream: TextIO | None = None) -> Quiet:
    """Bars on a terminal, plain lines elsewhere, nothing when not `enabled`."""
    if not enabled:
        return Quiet()
    out = stream or sys.stdout
    return Bars(names) if out.isatty() else Lines(names, out)


def estimate(first: str, seconds: float, remaining: int) -> str:
    """The up-front estimate from the first variant's cost.

    >>> estimate("fp32", 12.0, 10)
    'estimate: 10 more variants at ~12 s each (fp32 took 12 s): about 2 min; fine-tuned variants take longer'
    >>> estimate("fp32", 0.31, 1)
    'estimate: 1 more variant at ~0.31 s each (fp32 took 0.31 s): about 0.31 s; fine-tuned variants take longer'
    """
    total = seconds * remaining
    span = f"{total / 60:.0f} min" if total >= 90 else f"{total:.2g} s"
    return (f"estimate: {remaining} more variant{'s' * (remaining != 1)} at ~{seconds:.2g} s each "
            f"({first} took {seconds:.2g} s): about {span}; fine-tuned variants take longer")
