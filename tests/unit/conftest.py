"""What unit tests need from the process they run in, set by the tests that need it, not taken from the host."""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable, Iterator

import pytest


@pytest.fixture(autouse=True)
def no_reglab_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Unit tests read no REGLAB_* variable of the shell that runs them (tox passes them on for e2e):
    a test that wants one sets it."""
    for name in [n for n in os.environ if n.startswith("REGLAB_")]:
        monkeypatch.delenv(name)


@pytest.fixture
def ctrl_c() -> Iterator[Callable[[float], None]]:
    """A SIGINT raises KeyboardInterrupt in the main thread, as at a terminal; `ctrl_c(seconds)` sends one later.

    A job a script starts in the background (cron, CI, `nohup ... &`, bash
    without job control) inherits SIGINT ignored, and Python then leaves it
    ignored: the signal these tests send would be lost. The default handler is
    installed for the test, and what pytest inherited comes back after it. The
    SIGINT comes from a timer, as the terminal's would, so it also wakes a
    blocked wait; a timer that has not fired by the end of the test never will.
    """
    main = threading.main_thread().ident
    assert main is not None
    timers: list[threading.Timer] = []

    def ctrl_c_in(seconds: float) -> None:
        timer = threading.Timer(seconds, signal.pthread_kill, args=(main, signal.SIGINT))
        timers.append(timer)
        timer.start()

    inherited = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield ctrl_c_in
    finally:
        for timer in timers:
            timer.cancel()
            timer.join()
        signal.signal(signal.SIGINT, signal.SIG_DFL if inherited is None else inherited)
