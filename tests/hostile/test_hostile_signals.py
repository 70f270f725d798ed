"""effai.interrupts: an interrupt never lands half-way through storage code or in a finalizer
(where Python prints "Exception ignored" and drops it); SIGTERM stops a run like Ctrl-C."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap

from hostile_util import ENV

_PRELUDE = textwrap.dedent("""
    import os, signal, time
    from effai import interrupts
    interrupts.install()
    def wait_for_interrupt(trigger=lambda: None):
        try:
            trigger()
            end = time.monotonic() + 10
            while time.monotonic() < end:
                time.sleep(0.001)
            print("never interrupted")
        except KeyboardInterrupt as e:
            print("interrupted", type(e).__name__, interrupts.stopped()[0])
""")


def _run(body: str) -> subprocess.CompletedProcess:
    # SIGINT back to its default in the child: a suite started in the background by a non-interactive
    # shell inherits SIGINT ignored, and an ignored SIGINT is one Python (rightly) never raises.
    return subprocess.run([sys.executable, "-c", _PRELUDE + textwrap.dedent(body)], capture_output=True, text=True,
                          env=ENV, timeout=60, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def test_interrupt_inside_a_finalizer_is_delivered_again():
    r = _run("""
        class Fragile:
            def __del__(self):
                raise KeyboardInterrupt  # what a signal landing in a weakref callback does
        wait_for_interrupt(Fragile)
    """)
    assert "Exception ignored" not in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert r.stdout.strip() == "interrupted KeyboardInterrupt 130", (r.stdout, r.stderr)


def test_interrupt_waits_until_storage_code_returns():
    # Code compiled under a .../sqlalchemy/... file name stands for a commit in progress.
    r = _run("""
        import os
        fake = os.path.join(os.sep, "site-packages", "sqlalchemy", "engine.py")
        ns = {}
        exec(compile("def commit(kill):\\n    kill()\\n    t = __import__('time').monotonic() + 0.2\\n"
                     "    while __import__('time').monotonic() < t: pass\\n    print('committed', flush=True)", fake, "exec"), ns)
        # "committed" is printed inside the storage frame: the deferred interrupt may land at any point
        # after that frame returns, so nothing after it may be part of the check.
        wait_for_interrupt(lambda: ns["commit"](lambda: os.kill(os.getpid(), signal.SIGINT)))
    """)
    assert "Traceback" not in r.stderr, r.stderr
    assert r.stdout.split("\n")[:2] == ["committed", "interrupted KeyboardInterrupt 130"], (r.stdout, r.stderr)


def test_sigterm_is_a_resumable_stop():
    r = _run("""
        wait_for_interrupt(lambda: os.kill(os.getpid(), signal.SIGTERM))
        print(interrupts.stopped()[1])
    """)
    assert r.stdout.splitlines() == ["interrupted Terminated 143", "stopped by SIGTERM; finished results are saved, "
                                     "rerun the same command to resume"], (r.stdout, r.stderr)
