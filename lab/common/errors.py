"""Exit statuses and the exceptions that map onto them.

A user error (bad input) is exit 2 with one message; a failed check is exit 1.
The CLI turns these exceptions into messages, never into tracebacks.
"""

from __future__ import annotations

import enum


class ExitStatus(enum.IntEnum):
    OK = 0
    FAILED = 1
    USAGE = 2
    INTERRUPTED = 130


class LabError(Exception):
    """Something the user can fix: bad lab file, unknown step, missing tool."""

    exit_status = ExitStatus.USAGE


class ConfigError(LabError):
    """A lab file that cannot be used; the message names the file and key path."""

    def __init__(self, source: str, path: str, problem: str) -> None:
        self.source = source
        self.path = path
        self.problem = problem
        where = f"{source}: {path}" if path else source
        super().__init__(f"{where}: {problem}")


class LabFailure(Exception):
    """The lab ran but something did not work (exit 1): a remote command, a check."""

    exit_status = ExitStatus.FAILED


class RemoteError(LabFailure):
    """A remote command failed, timed out, or its machine did not answer."""


class Invalid(Exception):
    """A value in a scenario that does not fit; `path` is its full key path. The loader turns it into a ConfigError."""

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = path
        self.problem = problem
