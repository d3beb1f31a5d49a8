"""Work on several machines at once: the one pattern for provisioning, solving and identifying.

A failure on one machine lets the others finish (half an apt install is worse
than a whole one), then the first error is raised. A Ctrl-C does not wait: the
machines' connections are closed, which ends what the threads wait on, and
the machines refuse any further command.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import Protocol, TypeVar


class Abandonable(Protocol):
    """What a Ctrl-C needs of a machine (lab.machines.remote.Machine): to drop its connection at once."""

    def abandon(self) -> None: ...


M = TypeVar("M", bound=Abandonable)
T = TypeVar("T")


def on_each(machines: Sequence[M], work: Callable[[M], T]) -> list[T]:
    """`work(machine)` for every machine at once; results in the machines' order."""
    if len(machines) == 1:
        return [work(machines[0])]
    pool = ThreadPoolExecutor(max_workers=len(machines), thread_name_prefix="machine")
    futures: list[Future[T]] = []
    try:
        try:
            # NOTE: submitting is inside the guard: the first machine may already be at
            # work (and the user pressing Ctrl-C) while the next one is being submitted.
            for machine in machines:
                futures.append(pool.submit(work, machine))
            return [f.result() for f in futures]
        except Exception:
            wait(futures)
            raise
    except KeyboardInterrupt:
        for machine in machines:
            machine.abandon()
        raise
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
