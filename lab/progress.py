"""What a person sees while the lab works: one line per phase, with its time."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TextIO


class Progress:
    """Timed phases, printed as they start and end; thread-safe for parallel machines."""

    def __init__(self, stream: TextIO | None = None, quiet: bool = False) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.quiet = quiet
        self.phases: dict[str, float] = {}
        self._lock = threading.Lock()
        self._started = time.monotonic()

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
        ok = False
        try:
            yield
            ok = True
        finally:
            took = time.monotonic() - started
            with self._lock:
                self.phases[name] = round(self.phases.get(name, 0.0) + took, 1)
            self.say(f"{label or name} {'done' if ok else 'FAILED'} in {took:.1f}s")
