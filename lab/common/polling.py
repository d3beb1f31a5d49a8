"""Waiting for something with a deadline: the one loop the lab uses, never a bare sleep."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class Deadline:
    """A point in monotonic time; `remaining()` bounds each call made before it."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.at = time.monotonic() + seconds

    def remaining(self) -> float:
        return max(0.0, self.at - time.monotonic())

    @property
    def passed(self) -> bool:
        return time.monotonic() >= self.at


def poll(attempt: Callable[[], T | None], timeout: float, interval: float = 1.0) -> T | None:
    """Call `attempt` until it returns something truthy or `timeout` seconds pass.

    Returns the last truthy value, or None when the deadline passed; the
    caller says what it waited for, since only it knows.
    """
    deadline = Deadline(timeout)
    while True:
        value = attempt()
        if value:
            return value
        if deadline.passed:
            return None
        time.sleep(min(interval, deadline.remaining()) or 0)
