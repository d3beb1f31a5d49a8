"""Commands on this host, given as argument lists: the one way reglab runs its tools here.

`Runner` runs a command from a list of arguments and never through a shell,
so nothing in a path or a name is ever read as shell syntax. Every call has a
time bound, its output is captured (or, with `stream`, written to the log as
it comes), its stdin is data or nothing, and the command, how it ended and
what it printed go to a log file. A failure is one `LabFailure` naming the
command, how it ended and the end of its output; `check=False` hands back a
non-zero exit instead.

Each command runs in a session of its own, so reglab can stop it and all it
started: past its bound, and on Ctrl-C (or the SIGTERM and SIGHUP reglab
turns into one), its whole process group gets SIGTERM, then SIGKILL if it
has not ended within STOP_GRACE seconds, and the interrupt goes on.

NOTE: a command left in the terminal's process group gets the terminal's
Ctrl-C but never reglab's own SIGTERM, and killing only the command leaves
what it started holding its output open (so waiting for that output never
ends). `remote.Host` (shell strings for a lab's own log, redacted) and the
Vagrant provider's own processes stop their commands with the same pieces:
`stop_group`, `stop` and `wait`.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import subprocess
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

from lab.common.clip import tail
from lab.common.errors import LabFailure

COMMAND_TIMEOUT = 300  # seconds, unless the caller gives its own bound
PROBE_TIMEOUT = 60
STOP_GRACE = 5  # seconds a command gets to end after each signal, before the next
_TAIL_LINES = 15

Signals = Sequence[signal.Signals]
TERM_THEN_KILL: Signals = (signal.SIGTERM, signal.SIGKILL)


# --- stopping a command and all it started ----------------------------------------------


def signal_group(pid: int, sig: signal.Signals) -> None:
    """`sig` to the process group `pid` leads; one that has ended already is no error."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


def stop_group(send: Callable[[signal.Signals], None], ended: Callable[[float], bool],
               signals: Signals = TERM_THEN_KILL, grace: float | None = None) -> None:
    """Each signal in turn (through `send`) until `ended(seconds)` says the command has ended.

    Bounded: `grace` seconds per signal (STOP_GRACE unless given). A second
    Ctrl-C while waiting goes straight to SIGKILL, and on.
    """
    grace = STOP_GRACE if grace is None else grace
    for sig in signals:
        send(sig)
        try:
            if ended(grace):
                return
        except KeyboardInterrupt:
            send(signal.SIGKILL)
            with contextlib.suppress(Exception):
                ended(grace)
            raise


def stop(proc: subprocess.Popen, signals: Signals = TERM_THEN_KILL, grace: float | None = None) -> None:
    """Stop a command started in a session of its own (`start_new_session=True`) and all it started."""
    stop_group(lambda sig: signal_group(proc.pid, sig), lambda seconds: _waited(proc, seconds), signals, grace)


def wait(proc: subprocess.Popen, timeout: float, stdin: str | bytes | None = None,
         interrupt: Signals = TERM_THEN_KILL, grace: float | None = None) -> tuple[Any, Any]:
    """(stdout, stderr) of `proc` once it ends, within `timeout` seconds.

    Past the bound its group is stopped and `subprocess.TimeoutExpired` raised
    with what it printed so far; on Ctrl-C its group gets the `interrupt`
    signals in turn, and the interrupt goes on.
    """
    try:
        return proc.communicate(stdin, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        stop(proc, TERM_THEN_KILL, grace)
        out, err = exc.output, exc.stderr
        with contextlib.suppress(subprocess.TimeoutExpired, ValueError):  # all it printed: communicate loses none
            out, err = proc.communicate(timeout=STOP_GRACE if grace is None else grace)
        raise subprocess.TimeoutExpired(proc.args, timeout, out, err) from None
    except KeyboardInterrupt:
        stop(proc, interrupt, grace)
        raise


def _waited(proc: subprocess.Popen, seconds: float) -> bool:
    try:
        proc.wait(seconds)
    except subprocess.TimeoutExpired:
        return False
    return True


# --- running a command ----------------------------------------------------------------------


class Runner:
    """Host commands as argument lists (no shell), each bounded, its output to `log` (None: no log)."""

    def __init__(self, log: Path | None = None) -> None:
        self.log = log

    def __call__(self, argv: Sequence[str | os.PathLike[str]], timeout: float = COMMAND_TIMEOUT,
                 stdin: str | None = None, env: Mapping[str, str] | None = None, check: bool = True,
                 what: str | None = None, stream: bool = False) -> subprocess.CompletedProcess[str]:
        """Run `argv`; `env` is added to reglab's environment; `what` names the command in messages.

        With `stream`, what it prints goes to the log as it comes (a long apt-get
        can be followed there) and is not captured.
        """
        argv = [str(a) for a in argv]
        command = shlex.join(argv)
        label = what or f"`{command}`"
        if stream and self.log is None:
            raise ValueError("stream: the output goes to the log, and this runner has none")
        with contextlib.ExitStack() as stack:
            out_file = stack.enter_context(self._open()) if stream else None
            start = 0
            if out_file is not None:
                out_file.write(f"$ {command}\n")
                out_file.flush()
                start = out_file.tell()
            try:
                proc = subprocess.Popen(
                    argv, stdin=subprocess.DEVNULL if stdin is None else subprocess.PIPE,
                    stdout=out_file or subprocess.PIPE, stderr=subprocess.STDOUT if out_file else subprocess.PIPE,
                    text=True, env=dict(os.environ, **(env or {})), start_new_session=True,
                )
            except OSError as exc:
                self._write(out_file, start, command, "", f"could not start: {exc.strerror}")
                raise LabFailure(f"{label} could not start ({exc.strerror}){self._see()}") from None
            try:
                out, err = wait(proc, timeout, stdin)
            except subprocess.TimeoutExpired as exc:
                self._write(out_file, start, command, _text(exc.output) + _text(exc.stderr),
                            f"timed out after {timeout}s")
                raise LabFailure(f"{label} did not finish within {timeout}s{self._see()}") from None
            except KeyboardInterrupt:
                self._write(out_file, start, command, "", "interrupted")
                raise
            printed = self._since(start) if out_file is not None else _text(out) + _text(err)
            self._write(out_file, start, command, printed, f"exit {proc.returncode}")
        if check and proc.returncode != 0:
            said = tail(printed, _TAIL_LINES)
            raise LabFailure(f"{label} failed (exit {proc.returncode}){self._see()}"
                             + (f":\n{said}" if said else ""))
        return subprocess.CompletedProcess(argv, proc.returncode, _text(out), _text(err))

    def _see(self) -> str:
        return f"; see {self.log}" if self.log is not None else ""

    @contextlib.contextmanager
    def _open(self):  # noqa: ANN202 - a context manager of a text file
        """The log, appended to; made 0600 (logs hold what commands printed), never through a link."""
        assert self.log is not None
        self.log.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.log, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "a", encoding="utf-8", errors="replace") as handle:
            yield handle

    def _write(self, streamed: IO[str] | None, start: int, command: str, output: str, outcome: str) -> None:
        """The command, what it printed and how it ended; a streamed command's output is there already."""
        if streamed is not None:
            written = self._since(start)
            streamed.write(("" if not written or written.endswith("\n") else "\n") + f"[{outcome}]\n")
            return
        if self.log is None:
            return
        with self._open() as handle:
            ending = "" if output.endswith("\n") or not output else "\n"
            handle.write(f"$ {command}\n{output}{ending}[{outcome}]\n")

    def _since(self, offset: int) -> str:
        """What a streamed command wrote to the log."""
        assert self.log is not None
        try:
            with self.log.open("rb") as handle:
                handle.seek(offset)
                return handle.read().decode(errors="replace")
        except OSError:
            return ""


def probe(argv: Sequence[str], timeout: float = PROBE_TIMEOUT) -> str | None:
    """A question to the host (does Docker answer? which apt proxy?): the command's output when it
    ran and exited 0; None when it is missing, failed or took too long. Nothing is logged."""
    try:
        done = Runner()(argv, timeout=timeout, check=False)
    except LabFailure:
        return None
    return done.stdout if done.returncode == 0 else None


def _text(data: bytes | str | None) -> str:
    if data is None:
        return ""
    return data.decode(errors="replace") if isinstance(data, bytes) else data
