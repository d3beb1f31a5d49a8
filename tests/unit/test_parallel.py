"""lab.parallel.on_each: a Ctrl-C abandons every machine, whenever it comes."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from lab.common import parallel


class FakeMachine:
    def __init__(self, name: str) -> None:
        self.name = name
        self.abandoned = threading.Event()

    def abandon(self) -> None:
        self.abandoned.set()


def test_ctrl_c_while_the_work_is_being_submitted_abandons_every_machine(monkeypatch) -> None:
    """Seen in CI: the first machine was at work and printing when Ctrl-C came during the second
    submit, outside the guard; nothing was abandoned and the exit waited for a whole provision."""
    real_submit = ThreadPoolExecutor.submit
    calls = []

    def submit(self, fn, *args, **kwargs):  # noqa: ANN001, ANN202
        calls.append(fn)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real_submit(self, fn, *args, **kwargs)

    monkeypatch.setattr(ThreadPoolExecutor, "submit", submit)
    machines = [FakeMachine("registry"), FakeMachine("client")]
    with pytest.raises(KeyboardInterrupt):
        parallel.on_each(machines, lambda machine: machine.abandoned.wait(5))
    assert all(m.abandoned.is_set() for m in machines)


def test_results_come_in_the_machines_order() -> None:
    machines = [FakeMachine("registry"), FakeMachine("client")]
    assert parallel.on_each(machines, lambda machine: machine.name) == ["registry", "client"]
