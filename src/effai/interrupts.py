"""Ctrl-C (SIGINT) and SIGTERM stop a run at a safe point, with one line saying how to resume.

Python raises KeyboardInterrupt wherever the main thread happens to be. Two places turn that
into a traceback or a run that does not stop:

- inside a library that is not interrupt-safe (SQLAlchemy half-way through a commit raises
  an AssertionError from its own clean-up instead of the interrupt);
- inside a finalizer (a weakref callback or `__del__`, e.g. SQLAlchemy's
  `InstanceState._cleanup`): Python prints "Exception ignored in ..." with a traceback, swallows
  the interrupt and the run carries on.

`install()` (called by the CLI) fixes both at the root: the signal handler defers the
interrupt while any frame on the stack belongs to such a library, and an interrupt that still
ends up in a finalizer is re-delivered to the main thread instead of being printed. SIGTERM
gets the same treatment (it raises `Terminated`, a KeyboardInterrupt), so `kill PID` stops a
study as Ctrl-C does, instead of ending the process without a word.
"""

from __future__ import annotations

import _thread
import os
import signal
import sys
import threading

# Path fragments of code that must not be interrupted half-way (a storage transaction).
_UNSAFE = tuple(f"{os.sep}{p}{os.sep}" for p in ("sqlalchemy", "sqlite3", os.path.join("optuna", "storages")))
_RETRY_S = 0.01
_state: dict[str, int | bool | None] = {"signal": None, "installed": False}


class Terminated(KeyboardInterrupt):
    """The process was asked to stop with SIGTERM."""


def _unsafe(frame) -> bool:
    while frame is not None:
        name = frame.f_code.co_filename
        if any(p in name for p in _UNSAFE):
            return True
        frame = frame.f_back
    return False


def _redeliver(signum: int) -> None:
    """Raise the signal's handler again in the main thread a moment later (outside the frame it hit)."""
    t = threading.Timer(_RETRY_S, _thread.interrupt_main, args=(signum,))
    t.daemon = True
    t.start()


def _handler(signum: int, frame) -> None:
    if _unsafe(frame):
        _redeliver(signum)
        return
    _state["signal"] = signum
    raise Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()


def _unraisable(hook) -> None:
    """An interrupt raised inside a finalizer: deliver it again rather than print and drop it."""
    if isinstance(hook.exc_value, KeyboardInterrupt):
        _redeliver(signal.SIGTERM if isinstance(hook.exc_value, Terminated) else signal.SIGINT)
        return
    sys.__unraisablehook__(hook)


def install() -> None:
    """Install the handlers (main thread only; a SIGINT the parent set to ignore stays ignored)."""
    if _state["installed"] or threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        signal.signal(signal.SIGINT, _handler)
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _handler)
    sys.unraisablehook = _unraisable
    _state["installed"] = True


def stopped() -> tuple[int, str]:
    """(exit code, the line to print) for a run stopped by the last signal received.

    >>> stopped()[0]
    130
    """
    if _state["signal"] == signal.SIGTERM:
        return 143, "stopped by SIGTERM; finished results are saved, rerun the same command to resume"
    return 130, "interrupted; finished results are saved, rerun the same command to resume"
