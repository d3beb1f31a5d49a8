"""What a person sees while the lab works: one line per phase, with its time."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TextIO


class Progress:
    """Timed phases, printed as they start and end; thread-safe for parallel machines.

    It also knows which phases are running, and which one a Ctrl-C stopped,
    so an interrupted run can say (and record) where it was.
    """

    def __init__(self, stream: TextIO | None = None, quiet: bool = False) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.quiet = quiet
        self.phases: dict[str, float] = {}
        self.interrupted: str | None = None  # the innermost phase a KeyboardInterrupt went through
        self._running: list[str] = []
        self._lock = threading.Lock()
        self._started = time.monotonic()

    @property
    def running(self) -> list[str]:
        """The phases under way now, in the order they started (several at once with threads)."""
        with self._lock:
            return list(self._running)

    def say(self, message: str) -> None:
        if self.quiet:
            return
        elapsed = time.monotonic() - self._started
        with self._lock:
            print(f"[{elapsed:6.1f}s] {message}", file=self.stream, flush=True)

    @contextmanager
    def phase(self, name: str, label: str | None = None) -> Iterator[None]:
        self.say(f"{label or name} ...")
        started = time.monotonic()
        with self._lock:
            self._running.append(name)
        outcome = "FAILED"
        try:
            yield
            outcome = "done"
        except KeyboardInterrupt:
            outcome = "interrupted"
            with self._lock:
                if self.interrupted is None:
                    self.interrupted = name
            raise
        finally:
            took = time.monotonic() - started
            with self._lock:
                self._running.remove(name)
                self.phases[name] = round(self.phases.get(name, 0.0) + took, 1)
            self.say(f"{label or name} {outcome} in {took:.1f}s")
