"""Commands on the lab's machines and on the host, through fabric and invoke.

`Machine` is a fabric `Connection` built from `vagrant ssh-config`, and `Host`
an invoke `Context`; both return fabric/invoke `Result`s. What they add is
what the lab needs of every command: a timeout, a line in the machine's log
with exit code and duration, redaction of secrets, and a `RemoteError` that
names the machine instead of a paramiko traceback.

NOTE: invoke's own timeout starts only once a command is running on the
machine, and ends it by closing its channel, which writes to the peer. A
frozen machine (its TCP connection up, nothing answering) can hold up both:
opening a session or starting a command waits for replies that never come.
So every remote command and transfer also runs under a watchdog that, past
its bound, closes the connection without a word to the peer; everything
waiting on it then ends at once.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import posixpath
import re
import secrets
import shlex
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, Any

import invoke
import paramiko
from fabric import Config, Connection
from fabric.runners import Remote
from fabric.runners import Result as FabricResult
from invoke.exceptions import CommandTimedOut, ThreadException, UnexpectedExit

from lab.common.clip import tail
from lab.common.errors import RemoteError
from lab.common.polling import poll
from lab.machines import batch
from lab.machines.host import signal_group, stop_group
from lab.model.credentials import Redactor

DEFAULT_TIMEOUT = 300
CONNECT_TIMEOUT = 15
KEEPALIVE = 5  # seconds of silence after which the transport sends a keepalive
ABORT_GRACE = 5  # past a command's timeout, the watchdog closes the connection under it
_TAIL_LINES = 30
_LOG_LINES = 200
_STDIN_CHUNK = 64 * 1024


Command = str | Sequence[str | os.PathLike[str]]


def shell_text(command: Command) -> str:
    """A command as the shell reads it: a string as given; a list of arguments each quoted, so a
    path with a space (or worse) stays one argument."""
    return command if isinstance(command, str) else shlex.join(str(a) for a in command)


def machine_logger(log_dir: Path, name: str) -> logging.Logger:
    """A logger writing to `.lab/LAB/logs/MACHINE.log` (one file per machine, appended).

    The file is created 0600 whatever the umask, and never through a link:
    logs hold redacted output, but output all the same.
    """
    path = log_dir.resolve() / f"{name}.log"  # the folder resolved, never a link at the file
    logger = logging.getLogger(f"reglab.{path}")
    if not any(getattr(h, "baseFilename", None) == str(path) for h in logger.handlers):
        log_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW, 0o600)
        os.fchmod(fd, 0o600)  # a file left by an earlier run with looser bits is tightened
        handler = logging.FileHandler(path, delay=True)
        handler.stream = os.fdopen(fd, "a", encoding="utf-8", errors="backslashreplace")
        handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%Y-%m-%dT%H:%M:%S"))
        logger.addHandler(handler)
        logger.setLevel(logging.DEBUG)
        logger.propagate = False
    return logger


class _Watchdog:
    """Calls `abort` if the work it guards still runs `seconds` after it began (None: never)."""

    def __init__(self, seconds: float | None, abort: Callable[[], None]) -> None:
        self.fired = False
        self._abort = abort
        self._timer: threading.Timer | None = None
        if seconds is not None:
            self._timer = threading.Timer(seconds, self._fire)
            self._timer.daemon = True

    def _fire(self) -> None:
        self.fired = True
        with contextlib.suppress(Exception):  # a thread of its own: nobody to hear it
            self._abort()

    def __enter__(self) -> _Watchdog:
        if self._timer is not None:
            self._timer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._timer is not None:
            self._timer.cancel()


class _Chunks(io.BytesIO):
    """A command's stdin from bytes, handed to invoke in large pieces.

    NOTE: invoke reads an `in_stream` that is not a terminal one byte per
    call, with a 10 ms nap between calls (100 bytes a second); this hands it
    64 KiB a call instead.
    """

    def read(self, size: int | None = -1) -> bytes:  # noqa: ARG002 - invoke asks for 1
        return super().read(_STDIN_CHUNK)


class _Logged:
    """Timeout, logging and redaction around invoke's one run entry point.

    NOTE: `_run` is where both `run` and `sudo` of invoke and fabric end up,
    so this is the one seam that sees every command.
    """

    name: str
    log: logging.Logger
    redactor: Redactor
    default_timeout: int

    def _watchdog(self, timeout: float) -> _Watchdog:  # noqa: ARG002 - a Machine's has a bound
        return _Watchdog(None, lambda: None)

    def run(self, command: Command, **kwargs: Any) -> invoke.Result:
        """Run a shell command, or a list of arguments (each quoted: a path is never read as shell syntax)."""
        return super().run(shell_text(command), **kwargs)  # type: ignore[misc]

    def _run(self, runner: Any, command: str, **kwargs: Any) -> invoke.Result:
        # None (what a scenario item without `timeout:` passes) is the machine's bound, never "no bound".
        if kwargs.get("timeout") is None:
            kwargs["timeout"] = self.default_timeout
        timeout = kwargs["timeout"]
        kwargs.setdefault("hide", True)
        if kwargs.get("in_stream") in (None, False):
            kwargs["in_stream"] = io.StringIO()  # EOF at once: nothing waits on a terminal
        shown = self.redactor.redact(command)
        started = time.monotonic()
        watchdog = self._watchdog(timeout)
        try:
            with watchdog:
                result = super()._run(runner, command, **kwargs)  # type: ignore[misc]
        except UnexpectedExit as exc:
            if watchdog.fired:
                raise self._timed_out(shown, timeout, exc.result, started) from None
            self._record(shown, exc.result, time.monotonic() - started)
            raise RemoteError(self.describe_failure(shown, exc.result)) from None
        except CommandTimedOut as exc:
            raise self._timed_out(shown, exc.timeout, exc.result, started) from None
        except (TimeoutError, OSError, paramiko.SSHException, EOFError, ThreadException) as exc:
            if watchdog.fired:
                raise self._timed_out(shown, timeout, None, started) from None
            self.log.info("%s $ %s -> no connection: %s", self.name, shown, exc)
            raise RemoteError(
                f"{self.name} does not answer ({type(exc).__name__}: {exc}); "
                f"is it up? Try `reglab status`."
            ) from None
        if watchdog.fired:  # what came back came from a connection the watchdog had to close
            raise self._timed_out(shown, timeout, result, started)
        self._record(shown, result, time.monotonic() - started)
        return result

    def _timed_out(self, shown: str, timeout: float, result: invoke.Result | None, started: float) -> RemoteError:
        elapsed = time.monotonic() - started
        self.log.info("%s $ %s -> timed out after %.1fs", self.name, shown, elapsed)
        if result is not None:
            self._record_output(result)
        return self.timeout_error(shown, timeout, result)

    def timeout_error(self, shown: str, timeout: float, result: invoke.Result | None) -> RemoteError:
        """What a command that outlived its bound raises, whether it ran alone or in a batch (warn or not)."""
        return RemoteError(f"{self.name}: `{shown}` timed out after {timeout}s" + self._tail(result))

    def _record(self, shown: str, result: invoke.Result, elapsed: float) -> None:
        self.log.info("%s $ %s -> exit %s in %.2fs", self.name, shown, result.exited, elapsed)
        self._record_output(result)

    def _record_output(self, result: invoke.Result) -> None:
        for stream in ("stdout", "stderr"):
            text = tail(self.redactor.redact(getattr(result, stream) or ""), _LOG_LINES)
            if text:
                self.log.info("  %s:\n    %s", stream, text.replace("\n", "\n    "))

    def sudo(self, command: Command, **kwargs: Any) -> invoke.Result:  # type: ignore[override]
        """Run as root in a login-less bash, so pipes and `cd` apply to the whole command.

        NOTE: invoke's own sudo prefixes only the first word of a pipeline and
        reads stdin for a password; the lab's machines have passwordless sudo.
        """
        return self.run(self.sudo_command(command), **kwargs)

    @staticmethod
    def sudo_command(command: Command) -> str:
        """The command line `sudo` runs (and logs, and names in errors) for `command`."""
        return f"sudo -n -H bash -c {shlex.quote(shell_text(command))}"

    def settle(self, shown: str, result: invoke.Result, warn: bool) -> invoke.Result:
        """A command's result as `run` hands it back: with `warn` False a non-zero exit raises RemoteError.

        `_run` and results that come from a batch (lab.machines.batch) both end here.
        """
        if not warn and result.exited != 0:
            raise RemoteError(self.describe_failure(shown, result))
        return result

    def describe_failure(self, shown: str, result: invoke.Result) -> str:
        return f"{self.name}: `{shown}` exited {result.exited}" + self._tail(result)

    def _tail(self, result: invoke.Result | None) -> str:
        if result is None:
            return ""
        # Redact first, clip after: half a private key matches no pattern.
        text = tail(self.redactor.redact((result.stderr or "") + (result.stdout or "")), _TAIL_LINES)
        if not text:
            return ""
        return "\n  " + text.replace("\n", "\n  ")


class _Remote(Remote):
    """fabric's runner, letting go of a machine at once when a command times out or is interrupted.

    NOTE: fabric's `kill` closes the channel, which writes to the peer, and
    without a pty a Ctrl-C only stops the wait, not the reading of output
    that may never come. Closing the whole connection does neither.
    """

    def kill(self) -> None:
        self.context.abort()

    def send_interrupt(self, interrupt: KeyboardInterrupt) -> None:
        self.context.abort()
        raise interrupt


class _Local(invoke.Local):
    """invoke's local runner, with the command in a process group of its own that reglab can stop.

    NOTE: invoke answers a Ctrl-C by writing ^C to the command's stdin and
    waiting on, and its timeout kills the shell but not what the shell
    started (which keeps the output pipe open); SIGTERM and SIGHUP, which
    reglab turns into a Ctrl-C, reach no command at all. Here the whole
    group gets SIGTERM, then SIGKILL, as every host command does (lab.machines.host).
    """

    context: Host

    def start(self, command: str, shell: str, env: dict[str, Any]) -> None:
        if self.using_pty:
            super().start(command, shell, env)
        else:
            self.process = invoke.runners.Popen(
                command, shell=True, executable=shell, env=env, start_new_session=True,
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.PIPE,
            )
        self.context._started(self)

    def _signal(self, sig: signal.Signals) -> None:
        if self.using_pty:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(self.pid, sig)
        else:
            signal_group(self.process.pid, sig)

    def kill(self) -> None:
        self._signal(signal.SIGKILL)

    def end(self) -> None:
        """SIGTERM, then SIGKILL if the command has not ended within STOP_GRACE seconds (lab.machines.host)."""
        stop_group(self._signal, lambda seconds: bool(poll(lambda: self.process_is_finished, seconds, 0.05)))

    def send_interrupt(self, interrupt: KeyboardInterrupt) -> None:
        self.end()
        raise interrupt

    def stop(self) -> None:
        super().stop()
        self.context._ended(self)


def fingerprint(key: paramiko.PKey) -> str:
    """A host key's fingerprint as OpenSSH prints it: SHA256: and unpadded base64. Pure."""
    return key.fingerprint


def known_hosts_name(host: str, port: int) -> str:
    """How known_hosts (and `ssh-keygen -R`) names a host: `[host]:port` unless the port is 22. Pure."""
    return host if port == 22 else f"[{host}]:{port}"


class TrustFirstUse(paramiko.MissingHostKeyPolicy):
    """Keep a machine's host key the first time it is met (saying its fingerprint); refuse another
    key later, and, with `pinned`, any key but that one from the first time on.

    NOTE: paramiko's AutoAddPolicy rewrites the whole file from what one
    client loaded, so two machines met at once would each drop the other's
    key. This appends one line under a lock, after looking at the file as
    it is now.
    """

    _lock = threading.Lock()

    def __init__(self, path: Path, pinned: str | None = None, say: Callable[[str], None] | None = None,
                 name: str = "") -> None:
        self.path = path
        self.pinned = pinned
        self.say = say
        self.name = name

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey) -> None:
        with self._lock:
            if self.pinned is not None and fingerprint(key) != self.pinned:
                raise HostKeyNotPinned(hostname, fingerprint(key), self.pinned)
            kept = paramiko.HostKeys()
            with contextlib.suppress(FileNotFoundError):
                kept.load(str(self.path))
            known = kept.lookup(hostname) or {}
            if key.get_name() in known and known[key.get_name()] != key:
                raise paramiko.BadHostKeyException(hostname, key, known[key.get_name()])
            if key.get_name() not in known:
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW, 0o600)
                with os.fdopen(fd, "a") as handle:
                    handle.write(f"{hostname} {key.get_name()} {key.get_base64()}\n")
                if self.say is not None:
                    how = "the pinned one" if self.pinned else "trusted on first use"
                    self.say(f"{self.name or hostname}: host key {key.get_name()} {fingerprint(key)} ({how}), "
                             f"kept in {self.path}")
            client.get_host_keys().add(hostname, key.get_name(), key)


class HostKeyNotPinned(paramiko.SSHException):
    """The machine offers a host key other than the one lab.yml pins."""

    def __init__(self, hostname: str, offered: str, pinned: str) -> None:
        super().__init__(f"{hostname} offers host key {offered}, not the pinned {pinned}")
        self.hostname, self.offered, self.pinned = hostname, offered, pinned


class Machine(_Logged, Connection):
    """One lab machine: a fabric Connection configured by `vagrant ssh-config`."""

    def __init__(
        self,
        name: str,
        ssh_config: Path,
        log: logging.Logger,
        redactor: Redactor,
        timeout: int = DEFAULT_TIMEOUT,
        connect_timeout: int = CONNECT_TIMEOUT,
        known_hosts: Path | None = None,
        identity: Path | None = None,
        host_key: str | None = None,
        say: Callable[[str], None] | None = None,
    ) -> None:
        # Config reads this one ssh_config file and nothing of the user's own.
        config = Config(runtime_ssh_path=str(ssh_config), overrides={"load_ssh_configs": True})
        config.load_ssh_config()
        # Each step of connecting is bounded: TCP, the server's banner, login, opening a session.
        bounds: dict[str, Any] = {"banner_timeout": connect_timeout, "auth_timeout": connect_timeout,
                                  "channel_timeout": connect_timeout}
        if identity is not None:  # handed over as it is: paramiko's ssh_config knows no `%%`
            bounds["key_filename"] = [str(identity)]
        super().__init__(host=name, config=config, connect_timeout=connect_timeout, connect_kwargs=bounds)
        self.name = name
        self.log = log
        self.redactor = redactor
        self.default_timeout = timeout
        self._abandoned = False
        # paramiko's own complaints (a banner that never came) go to this machine's log, not the terminal.
        ssh_log = logging.getLogger(f"{log.name}.ssh")
        ssh_log.setLevel(logging.WARNING)
        self.client.set_log_channel(ssh_log.name)
        self.known_hosts = known_hosts
        self.host_key = host_key
        if known_hosts is not None:
            # Trust on first use: a key that differs from the one kept is refused by paramiko;
            # a machine met for the first time has its key added to the file (or, pinned, only that key).
            self.client.load_host_keys(str(known_hosts))
            def announce(text: str) -> None:  # in the machine's log too: `-q` silences `say`
                log.info("%s", text)
                if say is not None:
                    say(text)

            self.client.set_missing_host_key_policy(TrustFirstUse(known_hosts, host_key, announce, name))

    def _remote_runner(self) -> Remote:
        return _Remote(context=self, inline_env=self.inline_ssh_env)

    def _watchdog(self, timeout: float) -> _Watchdog:
        return _Watchdog(timeout + ABORT_GRACE, self.abort)

    def open(self) -> Any:
        """Connect, or say which machine does not answer (fabric opens before running)."""
        if self._abandoned:
            raise RemoteError(f"{self.name}: not used any more, reglab was interrupted")
        connected = self.is_connected
        if not connected:
            self._check_kept_key_is_pinned()
        try:
            result = super().open()
        except HostKeyNotPinned as exc:
            self.log.info("%s: host key not the pinned one: %s", self.name, exc)
            raise RemoteError(
                f"{self.name} ({exc.hostname}) offers host key {exc.offered}, but the lab file pins "
                f"{exc.pinned} (machines.{self.name}.host_key): refused before logging in. If the machine was "
                f"rebuilt, pin its new key (`ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub` on it)."
            ) from None
        except paramiko.BadHostKeyException as exc:
            self.log.info("%s: host key changed: %s", self.name, exc)
            kept_as = known_hosts_name(self.host, self.port)  # paramiko names it without the port
            raise RemoteError(
                f"{self.name} ({kept_as}) offers another host key ({fingerprint(exc.key)}) than the one kept "
                f"in {self.known_hosts} ({fingerprint(exc.expected_key)}): refused. If the machine was rebuilt, "
                f"delete its line there (ssh-keygen -R {shlex.quote(kept_as)} -f "
                f"{shlex.quote(str(self.known_hosts))}) and try again."
            ) from None
        except (OSError, paramiko.SSHException, EOFError) as exc:
            self.log.info("%s: no connection: %s", self.name, exc)
            raise RemoteError(
                f"{self.name} does not answer ({type(exc).__name__}: {exc}); is it up? Try `reglab status`."
            ) from None
        if not connected and self.transport is not None:
            self.transport.set_keepalive(KEEPALIVE)
        return result

    def _check_kept_key_is_pinned(self) -> None:
        """With a pinned key, a key kept in known_hosts that is not it is refused before connecting."""
        if self.host_key is None or self.known_hosts is None:
            return
        kept = paramiko.HostKeys()
        with contextlib.suppress(FileNotFoundError):
            kept.load(str(self.known_hosts))
        name = known_hosts_name(self.host, self.port)
        other = [fingerprint(k) for k in (kept.lookup(name) or {}).values() if fingerprint(k) != self.host_key]
        if other:
            raise RemoteError(
                f"{self.name}: {self.known_hosts} keeps host key {other[0]} for {name}, but the lab file pins "
                f"{self.host_key} (machines.{self.name}.host_key): refused. Delete the kept line "
                f"(ssh-keygen -R {shlex.quote(name)} -f {shlex.quote(str(self.known_hosts))}) if the pin is right.")

    def abort(self) -> None:
        """Drop the connection now, without a word to the peer, so nothing waits on a frozen machine.

        Whatever waits on it (a command, a transfer) fails at once; the next
        command connects again.
        """
        self._sftp = None  # bound to the closed connection; `sftp()` makes a new one
        transport = self.client.get_transport()
        if transport is not None:
            transport.close()

    def abandon(self) -> None:
        """Drop the connection and refuse every further command: reglab was interrupted,
        and threads still working on this machine must end instead of connecting again."""
        self._abandoned = True
        self.abort()

    def batch(self, items: Sequence[batch.Item]) -> list[invoke.Result | RemoteError | None]:
        """Run `items` as root in one session, in order: for each, what `sudo(command, warn=True)` gives.

        One SSH channel, one sudo, one bash (lab.machines.batch), read to its
        end without invoke's polling, within the sum of the items' bounds. Each
        item is logged as `sudo` logs it: its command line and output, never
        its stdin. Per item the answer is its Result (warn=True: any exit
        status), or the RemoteError that `sudo` raises: a timeout (whatever
        `warn` says), or, for the first item not done, a machine that does not
        answer. None: no answer, the batch ended first; that item runs alone
        if it is needed (`settle` then applies `warn`).
        """
        if not items:
            return []
        tag = f"reglab-batch-{secrets.token_hex(8)}"
        script = batch.build_script(items, tag).encode()
        bound = sum(item.timeout + batch.KILL_GRACE for item in items) + ABORT_GRACE
        shown = [self.redactor.redact(self.sudo_command(item.command)) for item in items]
        if len(items) > 1:
            self.log.info("%s: %d commands in one session (`%s`, each below)", self.name, len(items), batch.COMMAND)
        started = time.monotonic()
        output = bytearray()
        exit_status: int | None = None
        error: RemoteError | None = None
        watchdog = _Watchdog(bound, self.abort)
        timed_out = False
        try:
            with watchdog:
                self.open()
                channel = self.client.get_transport().open_session(timeout=self.connect_timeout or CONNECT_TIMEOUT)
                try:
                    channel.settimeout(bound)
                    channel.exec_command(batch.COMMAND)
                    channel.sendall(script)
                    channel.shutdown_write()
                    while chunk := channel.recv(_STDIN_CHUNK):
                        output += chunk
                    if channel.status_event.wait(ABORT_GRACE):
                        exit_status = channel.exit_status
                finally:
                    channel.close()
        except RemoteError as exc:  # from open(): no connection, a changed host key, reglab interrupted
            error = exc
        except (TimeoutError, OSError, paramiko.SSHException, EOFError) as exc:
            timed_out = watchdog.fired or isinstance(exc, TimeoutError)
            transport = self.client.get_transport()
            if timed_out:
                pass
            elif transport is not None and transport.is_active():
                # The connection is fine: the command ended before it read its script (sudo wanting a
                # password): its items run alone, and say why themselves.
                self.log.info("%s: batch -> ended early: %s: %s", self.name, type(exc).__name__, exc)
            else:
                self.log.info("%s: batch -> no connection: %s", self.name, exc)
                error = RemoteError(f"{self.name} does not answer ({type(exc).__name__}: {exc}); "
                                    f"is it up? Try `reglab status`.")
        timed_out = timed_out or watchdog.fired
        replies = batch.parse_output(output.decode("utf-8", "replace"), tag, len(items))
        encoding = self.encoding
        answers: list[invoke.Result | RemoteError | None] = []
        first_missing = True
        for index, item in enumerate(items):
            reply = replies.get(index)
            if reply is None:
                answers.append(self._unanswered(shown[index], item, timed_out, error, started) if first_missing
                               else None)
                first_missing = False
                continue
            result = FabricResult(
                connection=self, command=self.sudo_command(item.command), shell="", env={}, pty=False,
                hide=("stdout", "stderr"), encoding=encoding, exited=reply.exited,
                stdout=reply.stdout.decode(encoding, "replace"), stderr=reply.stderr.decode(encoding, "replace"),
            )
            if reply.timed_out:
                self.log.info("%s $ %s -> timed out after %.1fs", self.name, shown[index], reply.seconds)
                self._record_output(result)
                answers.append(self.timeout_error(shown[index], item.timeout, result))
            else:
                self._record(shown[index], result, reply.seconds)
                answers.append(result)
        done = sum(a is not None for a in answers)
        ending = "" if len(replies) == len(items) else (
            f"; cut short after {len(replies)} (exit {exit_status}):\n    "
            + tail(self.redactor.redact(output.decode("utf-8", "replace")), _TAIL_LINES).replace("\n", "\n    "))
        if len(items) > 1 or ending:
            self.log.info("%s: batch of %d -> %d answered in %.2fs%s", self.name, len(items), done,
                          time.monotonic() - started, ending)
        return answers

    @property
    def encoding(self) -> str:
        """How invoke encodes a command's stdin and decodes its output here; a batch does the same."""
        return self.config.run.encoding or invoke.runners.default_encoding()

    def _unanswered(self, shown: str, item: batch.Item, timed_out: bool, error: RemoteError | None,
                    started: float) -> RemoteError | None:
        """The first item a batch did not finish: a timeout or a machine that stopped answering, as `sudo`
        would say it; None (it runs alone if needed) when the batch ended for another reason."""
        if timed_out:
            self.log.info("%s $ %s -> timed out after %.1fs", self.name, shown, time.monotonic() - started)
            return self.timeout_error(shown, item.timeout, None)
        return error

    def upload(self, data: bytes | str, dest: str, mode: str = "0600", timeout: int | None = None) -> invoke.Result:
        """Write a small file as root, with `mode` from the moment it exists.

        The data goes on stdin, never on a command line or through a file in
        /tmp; under `umask 077` the file is never readable by others, not even
        before `install` sets its mode. Folders it needs are made as `mkdir -p`
        makes them. Logged and bounded like every command.
        """
        if not re.fullmatch(r"[0-7]{3,4}", mode):
            raise ValueError(f"mode {mode!r}: expected octal digits such as 0600")
        raw = data.encode() if isinstance(data, str) else data
        folder = posixpath.dirname(dest) or "."
        command = (f"mkdir -p {shlex.quote(folder)} && umask 077 && "
                   f"install -m {mode} /dev/stdin {shlex.quote(dest)}")
        # latin-1 maps every byte to one character and back: invoke decodes what it reads
        # from in_stream and encodes it again, and any other codec would change binary data.
        return self.sudo(command, in_stream=_Chunks(raw), encoding="latin-1", timeout=timeout)

    def put(self, local: str | IO[bytes], remote: str | None = None, preserve_mode: bool = True,
            timeout: int | None = None) -> Any:
        """Copy a file over SFTP (the large ones: image bundles), bounded and logged like a command."""
        timeout = timeout or self.default_timeout
        size = _size(local)
        shown = f"put {local if isinstance(local, str) else '<data>'} -> {remote} ({_human(size)})"
        started = time.monotonic()
        watchdog = _Watchdog(timeout, self.abort)  # nothing else bounds a transfer: no grace
        try:
            with watchdog:
                result = super().put(local, remote, preserve_mode=preserve_mode)
        except (OSError, paramiko.SSHException, EOFError) as exc:
            elapsed = time.monotonic() - started
            if watchdog.fired:
                self.log.info("%s $ %s -> timed out after %.1fs", self.name, shown, elapsed)
                raise RemoteError(f"{self.name}: {shown} timed out after {timeout}s") from None
            self.log.info("%s $ %s -> failed after %.1fs: %s", self.name, shown, elapsed, exc)
            raise RemoteError(f"{self.name}: {shown} failed ({type(exc).__name__}: {exc})") from None
        elapsed = time.monotonic() - started
        rate = f", {_human(size / elapsed)}/s" if size and elapsed > 0 else ""
        self.log.info("%s $ %s -> done in %.2fs%s", self.name, shown, elapsed, rate)
        return result


class Host(_Logged, invoke.Context):
    """Commands on this computer (docker build, vagrant), logged like a machine's."""

    # Real attributes, not config keys (invoke's Context turns unknown attributes into config).
    _abandoned = False
    _runners: set[_Local] = set()
    _runners_lock = threading.Lock()

    def __init__(self, log: logging.Logger, redactor: Redactor, timeout: int = DEFAULT_TIMEOUT) -> None:
        super().__init__()
        self.config.runners.local = _Local
        self.name = "host"
        self.log = log
        self.redactor = redactor
        self.default_timeout = timeout
        self._runners = set()
        self._runners_lock = threading.Lock()

    def _run(self, runner: Any, command: str, **kwargs: Any) -> invoke.Result:
        if self._abandoned:
            raise RemoteError(f"host: `{self.redactor.redact(command)}` not run, reglab was interrupted")
        return super()._run(runner, command, **kwargs)

    def _started(self, runner: _Local) -> None:
        with self._runners_lock:
            self._runners.add(runner)

    def _ended(self, runner: _Local) -> None:
        with self._runners_lock:
            self._runners.discard(runner)

    def abandon(self) -> None:
        """End the commands running now, in every thread, and refuse new ones: reglab was interrupted."""
        self._abandoned = True
        with self._runners_lock:
            running = list(self._runners)
        for runner in running:
            runner.end()


def _size(local: str | IO[bytes]) -> int | None:
    try:
        if isinstance(local, str):
            return os.path.getsize(local)
        return len(local.getvalue()) if isinstance(local, io.BytesIO) else None
    except OSError:
        return None


def _human(size: float | None) -> str:
    if size is None:
        return "size unknown"
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GB"
