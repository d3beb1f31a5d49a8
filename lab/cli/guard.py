"""How a reglab process ends: its errors as exit codes with one clear line, and interrupts.

Shared by the `reglab` command (lab.cli.main) and a platform matrix's child
processes (lab.cli.matrixrun), so both end alike: exit 1 for a failure, 2 for
bad input, 130 for an interrupt, never a traceback for a user's error.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from types import FrameType
from typing import TYPE_CHECKING, TextIO

from lab.common.errors import ExitStatus, LabError, LabFailure

if TYPE_CHECKING:
    from lab.engine.session import Session

INTERRUPT_SIGNALS = (signal.SIGTERM, signal.SIGHUP)


class Interrupted(KeyboardInterrupt):
    """A Ctrl-C (or SIGTERM, SIGHUP) that stopped a command, with the phase it stopped."""

    def __init__(self, phase: str | None) -> None:
        super().__init__(phase)
        self.phase = phase


def _interrupt(signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


@contextlib.contextmanager
def signals_as_interrupt() -> Iterator[None]:
    """SIGTERM and SIGHUP end reglab as a Ctrl-C does: Vagrant stopped, connections closed, exit 130.

    Python raises KeyboardInterrupt in the main thread for SIGINT only; the
    previous handlers come back afterwards (main() is also called in-process).
    A signal reglab was started with ignored stays ignored, as Python leaves
    SIGINT: `nohup reglab up &` must outlive its terminal.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, _interrupt) for sig in INTERRUPT_SIGNALS
                if signal.getsignal(sig) != signal.SIG_IGN}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, signal.SIG_DFL if handler is None else handler)


def guarded(work: Callable[[], int], err: TextIO) -> int:
    """`work()`'s exit code; its errors and interrupts as reglab's exit codes, each with one line on `err`."""
    try:
        return int(work())
    except LabError as exc:
        print(f"reglab: error: {exc}", file=err)
        return ExitStatus.USAGE
    except LabFailure as exc:
        print(f"reglab: failed: {exc}", file=err)
        return ExitStatus.FAILED
    except OSError as exc:  # a file of the user's or of .lab that cannot be read or written
        if exc.filename is not None:
            print(f"reglab: error: {exc.filename}: {exc.strerror or exc}", file=err)
            return ExitStatus.USAGE
        print(f"reglab: failed: {exc.strerror or exc}", file=err)
        return ExitStatus.FAILED
    except KeyboardInterrupt as exc:
        phase = getattr(exc, "phase", None)
        print(f"reglab: interrupted{f' during {phase}' if phase else ''}. Machines may still be running: "
              "`reglab status` shows them, `reglab down` removes them.", file=err)
        return ExitStatus.INTERRUPTED


def note_interrupted(session: Session, command: str) -> str | None:
    """Record in the state file what an interrupt stopped; the phase, for the message."""
    progress = session.progress
    phase = progress.interrupted or ", ".join(progress.running) or None
    session.state.data["interrupted"] = {
        "phase": phase,
        "command": command,
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    with contextlib.suppress(OSError):  # already on the way out: the message matters more
        session.state.save()
    return phase
