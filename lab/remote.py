"""Commands on the lab's machines and on the host, through fabric and invoke.

`Machine` is a fabric `Connection` built from `vagrant ssh-config`, and `Host`
an invoke `Context`; both return fabric/invoke `Result`s. What they add is
what the lab needs of every command: a timeout, a line in the machine's log
with exit code and duration, redaction of secrets, and a `RemoteError` that
names the machine instead of a paramiko traceback.
"""

from __future__ import annotations

import io
import logging
import shlex
import time
from pathlib import Path
from typing import Any

import invoke
import paramiko
from fabric import Config, Connection
from invoke.exceptions import CommandTimedOut, UnexpectedExit

from lab.credentials import Redactor
from lab.errors import RemoteError

DEFAULT_TIMEOUT = 300
CONNECT_TIMEOUT = 15
_TAIL_LINES = 30


def machine_logger(log_dir: Path, name: str) -> logging.Logger:
    """A logger writing to `.lab/logs/NAME.log` (one file per machine, appended)."""
    path = (log_dir / f"{name}.log").resolve()
    logger = logging.getLogger(f"reglab.{path}")
    if not any(getattr(h, "baseFilename", None) == str(path) for h in logger.handlers):
        log_dir.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(path)
        handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%Y-%m-%dT%H:%M:%S"))
        logger.addHandler(handler)
        logger.setLevel(logging.DEBUG)
        logger.propagate = False
    return logger


class _Logged:
    """Timeout, logging and redaction around invoke's one run entry point.

    NOTE: `_run` is where both `run` and `sudo` of invoke and fabric end up,
    so this is the one seam that sees every command.
    """

    name: str
    log: logging.Logger
    redactor: Redactor
    default_timeout: int

    def _run(self, runner: Any, command: str, **kwargs: Any) -> invoke.Result:
        kwargs.setdefault("timeout", self.default_timeout)
        kwargs.setdefault("hide", True)
        if kwargs.get("in_stream") in (None, False):
            kwargs["in_stream"] = io.StringIO()  # EOF at once: nothing waits on a terminal
        shown = self.redactor.redact(command)
        started = time.monotonic()
        try:
            result = super()._run(runner, command, **kwargs)  # type: ignore[misc]
        except UnexpectedExit as exc:
            self._record(shown, exc.result, time.monotonic() - started)
            raise RemoteError(self.describe_failure(shown, exc.result)) from None
        except CommandTimedOut as exc:
            elapsed = time.monotonic() - started
            self.log.info("%s $ %s -> timed out after %.1fs", self.name, shown, elapsed)
            raise RemoteError(
                f"{self.name}: `{shown}` timed out after {exc.timeout}s"
                + self._tail(exc.result)
            ) from None
        except (TimeoutError, OSError, paramiko.SSHException, EOFError) as exc:
            self.log.info("%s $ %s -> no connection: %s", self.name, shown, exc)
            raise RemoteError(
                f"{self.name} does not answer ({type(exc).__name__}: {exc}); "
                f"is it up? Try `reglab status`."
            ) from None
        self._record(shown, result, time.monotonic() - started)
        return result

    def _record(self, shown: str, result: invoke.Result, elapsed: float) -> None:
        self.log.info("%s $ %s -> exit %s in %.2fs", self.name, shown, result.exited, elapsed)
        for stream in ("stdout", "stderr"):
            text = self.redactor.redact(getattr(result, stream) or "").rstrip()
            if text:
                lines = text.splitlines()
                if len(lines) > 200:
                    lines = [f"... ({len(lines) - 200} lines before)"] + lines[-200:]
                self.log.info("  %s:\n    %s", stream, "\n    ".join(lines))

    def sudo(self, command: str, **kwargs: Any) -> invoke.Result:  # type: ignore[override]
        """Run as root in a login-less bash, so pipes and `cd` apply to the whole command.

        NOTE: invoke's own sudo prefixes only the first word of a pipeline and
        reads stdin for a password; the lab's machines have passwordless sudo.
        """
        return self.run(f"sudo -n -H bash -c {shlex.quote(command)}", **kwargs)

    def describe_failure(self, shown: str, result: invoke.Result) -> str:
        return f"{self.name}: `{shown}` exited {result.exited}" + self._tail(result)

    def _tail(self, result: invoke.Result | None) -> str:
        if result is None:
            return ""
        text = self.redactor.redact(((result.stderr or "") + (result.stdout or "")).strip())
        if not text:
            return ""
        lines = text.splitlines()[-_TAIL_LINES:]
        return "\n  " + "\n  ".join(lines)


class Machine(_Logged, Connection):
    """One lab machine: a fabric Connection configured by `vagrant ssh-config`."""

    def __init__(
        self,
        name: str,
        ssh_config: Path,
        log: logging.Logger,
        redactor: Redactor,
        timeout: int = DEFAULT_TIMEOUT,
    ) -> None:
        # Config reads this one ssh_config file and nothing of the user's own.
        config = Config(runtime_ssh_path=str(ssh_config), overrides={"load_ssh_configs": True})
        config.load_ssh_config()
        super().__init__(host=name, config=config, connect_timeout=CONNECT_TIMEOUT)
        self.name = name
        self.log = log
        self.redactor = redactor
        self.default_timeout = timeout

    def open(self) -> Any:
        """Connect, or say which machine does not answer (fabric opens before running)."""
        try:
            return super().open()
        except (OSError, paramiko.SSHException, EOFError) as exc:
            self.log.info("%s: no connection: %s", self.name, exc)
            raise RemoteError(
                f"{self.name} does not answer ({type(exc).__name__}: {exc}); is it up? Try `reglab status`."
            ) from None

class Host(_Logged, invoke.Context):
    """Commands on this computer (docker build, vagrant), logged like a machine's."""

    def __init__(self, log: logging.Logger, redactor: Redactor, timeout: int = DEFAULT_TIMEOUT) -> None:
        super().__init__()
        self.name = "host"
        self.log = log
        self.redactor = redactor
        self.default_timeout = timeout
