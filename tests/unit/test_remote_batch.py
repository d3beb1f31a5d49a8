"""Unit tests for Machine.batch: several commands in one SSH session, answered as `sudo` answers each.

An in-process SSH server (paramiko) runs what it is asked with the local
bash, `sudo -n -H` left out: so the same commands run alone (`Machine.sudo`,
through invoke) and in a batch, and their results, errors and log lines can
be compared one for one.
"""

from __future__ import annotations

import base64
import contextlib
import io
import logging
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import paramiko
import pytest

import lab.machines.remote as remote_module
from lab.common.errors import RemoteError
from lab.machines.batch import COMMAND, Item
from lab.machines.remote import Machine, machine_logger
from lab.model.credentials import MASK, Redactor

SECRET = "s3cret-Passw0rd"

pytestmark = pytest.mark.skipif(shutil.which("bash") is None or shutil.which("timeout") is None,
                                reason="needs bash and coreutils' timeout")


@pytest.fixture(scope="module")
def keys() -> tuple[paramiko.RSAKey, paramiko.RSAKey]:
    return paramiko.RSAKey.generate(2048), paramiko.RSAKey.generate(2048)


class _Sshd(paramiko.ServerInterface):
    def __init__(self, on_exec: Callable[[paramiko.Channel, str], None]) -> None:
        self.on_exec = on_exec

    def get_allowed_auths(self, username: str) -> str:
        return "publickey"

    def check_auth_publickey(self, username: str, key: paramiko.PKey) -> int:
        return paramiko.AUTH_SUCCESSFUL

    def check_channel_request(self, kind: str, chanid: int) -> int:
        return paramiko.OPEN_SUCCEEDED

    def check_channel_exec_request(self, channel: paramiko.Channel, command: bytes) -> bool:
        threading.Thread(target=self.on_exec, args=(channel, command.decode()), daemon=True).start()
        return True


def local_shell(channel: paramiko.Channel, command: str) -> None:
    """What a lab machine does with a command, minus sudo: bash runs it; stdin, stdout, stderr and
    the exit status travel over the channel."""
    assert command.startswith("sudo -n -H "), command
    proc = subprocess.Popen(["bash", "-c", command.removeprefix("sudo -n -H ")], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    def feed() -> None:
        with contextlib.suppress(OSError):
            while data := channel.recv(65536):
                proc.stdin.write(data)
                proc.stdin.flush()
        with contextlib.suppress(OSError):
            proc.stdin.close()

    def pump(stream, send) -> None:  # noqa: ANN001
        while data := stream.read1(65536):
            send(data)

    threads = [threading.Thread(target=feed, daemon=True),
               threading.Thread(target=pump, args=(proc.stdout, channel.sendall), daemon=True),
               threading.Thread(target=pump, args=(proc.stderr, channel.sendall_stderr), daemon=True)]
    for thread in threads:
        thread.start()
    code = proc.wait()
    threads[1].join()
    threads[2].join()
    channel.send_exit_status(code)
    channel.close()


class Server:
    """A local SSH server; `commands` lists every command line it was asked to run."""

    def __init__(self, tmp_path: Path, keys: tuple[paramiko.RSAKey, paramiko.RSAKey],
                 on_exec: Callable[[paramiko.Channel, str], None] = local_shell) -> None:
        self.host_key, client_key = keys
        self.on_exec = on_exec
        self.commands: list[str] = []
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.transports: list[paramiko.Transport] = []
        key_file = tmp_path / "id_rsa"
        client_key.write_private_key_file(str(key_file))
        self.ssh_config = tmp_path / "ssh_config"
        self.ssh_config.write_text(f"Host registry\n  HostName 127.0.0.1\n  Port {self.listener.getsockname()[1]}\n"
                                   f"  User vagrant\n  IdentityFile {key_file}\n")
        quiet = logging.getLogger("reglab-test.sshd")
        quiet.propagate = False
        quiet.addHandler(logging.NullHandler())
        threading.Thread(target=self._serve, daemon=True).start()

    def _exec(self, channel: paramiko.Channel, command: str) -> None:
        self.commands.append(command)
        self.on_exec(channel, command)

    def _serve(self) -> None:
        while True:
            try:
                sock, _ = self.listener.accept()
            except OSError:
                return
            transport = paramiko.Transport(sock)
            transport.set_log_channel("reglab-test.sshd")
            transport.add_server_key(self.host_key)
            self.transports.append(transport)
            with contextlib.suppress(Exception):
                transport.start_server(server=_Sshd(self._exec))

    def close(self) -> None:
        for transport in self.transports:
            transport.close()
        self.listener.close()


_opened: list[Machine] = []


@pytest.fixture
def server(tmp_path: Path, keys: tuple[paramiko.RSAKey, paramiko.RSAKey]) -> Iterator[Server]:
    running = Server(tmp_path, keys)
    yield running
    while _opened:  # the client side first: a server gone under an open connection makes paramiko complain
        _opened.pop().close()
    running.close()


@pytest.fixture
def log(tmp_path: Path) -> Iterator[logging.Logger]:
    logger = machine_logger(tmp_path / "logs", "registry")
    yield logger
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
        handler.close()


@pytest.fixture(autouse=True)
def _close_machines(log: logging.Logger) -> Iterator[None]:
    """Each test's connections closed before its server and log go (no transport left to complain)."""
    yield
    while _opened:
        _opened.pop().close()


def machine_for(server: Server, log: logging.Logger, timeout: float = 30) -> Machine:
    machine = Machine("registry", server.ssh_config, log, Redactor([SECRET]), timeout=timeout)  # type: ignore[arg-type]
    _opened.append(machine)
    return machine


def log_text(tmp_path: Path) -> str:
    return (tmp_path / "logs" / "registry.log").read_text()


def log_lines_of(text: str, shown: str) -> list[str]:
    """The log's line for a command, without its time stamp and duration."""
    return [line.split(" ", 1)[1].rsplit(" in ", 1)[0] for line in text.splitlines() if f"$ {shown} ->" in line]


COMMANDS = [
    ("echo out; echo err >&2", None),
    ("exit 3", None),
    ("printf 'caf\\xc3\\xa9 no newline'", None),
    ("cat", f'user = "student:{SECRET}"\n'),
    (f"echo {SECRET}", None),  # a secret in the output (never on a command line in the lab) is masked in the log
    ("cat /nonexistent", None),
]


def test_a_batch_gives_each_command_what_sudo_gives_it_alone(server: Server, log: logging.Logger,
                                                            tmp_path: Path) -> None:
    machine = machine_for(server, log)
    alone = []
    for command, stdin in COMMANDS:
        alone.append(machine.sudo(command, warn=True, in_stream=io.StringIO(stdin) if stdin else False))
    alone_log = log_text(tmp_path)
    server.commands.clear()

    answers = machine.batch([Item(c, s.encode() if s else None, 30) for c, s in COMMANDS])
    assert server.commands == [COMMAND]  # one session for all six
    for single, batched in zip(alone, answers, strict=True):
        assert not isinstance(batched, RemoteError) and batched is not None
        assert (batched.exited, batched.stdout, batched.stderr, batched.ok) == \
               (single.exited, single.stdout, single.stderr, single.ok)
        assert batched.command == single.command
    batch_log = log_text(tmp_path)[len(alone_log):]
    for command, _ in COMMANDS:
        shown = machine.redactor.redact(machine.sudo_command(command))
        assert log_lines_of(batch_log, shown) == log_lines_of(alone_log, shown) != []
    assert SECRET not in batch_log
    assert f"stdout:\n    {MASK}" in batch_log
    assert "registry: 6 commands in one session" in batch_log


def test_settle_raises_what_a_failed_sudo_raises(server: Server, log: logging.Logger) -> None:
    machine = machine_for(server, log)
    with pytest.raises(RemoteError) as alone:
        machine.sudo("echo why >&2; exit 4")
    [answer] = machine.batch([Item("echo why >&2; exit 4", None, 30)])
    shown = machine.sudo_command("echo why >&2; exit 4")
    with pytest.raises(RemoteError) as batched:
        machine.settle(shown, answer, warn=False)
    expected = "registry: `sudo -n -H bash -c 'echo why >&2; exit 4'` exited 4\n  why"
    assert str(batched.value) == str(alone.value) == expected
    assert machine.settle(shown, answer, warn=True) is answer


def test_a_timed_out_command_is_the_error_a_timed_out_sudo_raises(server: Server, log: logging.Logger,
                                                                 tmp_path: Path) -> None:
    machine = machine_for(server, log)
    with pytest.raises(RemoteError) as alone:
        machine.sudo("echo begun; sleep 30", warn=True, timeout=0.5)
    started = time.monotonic()
    answers = machine.batch([Item("echo begun; sleep 30", None, 0.5), Item("echo after", None, 30)])
    assert time.monotonic() - started < 5
    timed_out, after = answers
    assert isinstance(timed_out, RemoteError)
    assert str(timed_out) == str(alone.value) == \
           "registry: `sudo -n -H bash -c 'echo begun; sleep 30'` timed out after 0.5s\n  begun"
    assert not isinstance(after, RemoteError) and after.stdout == "after\n"  # the batch went on
    assert "'echo begun; sleep 30' -> timed out after " in log_text(tmp_path).split("commands in one session")[1]


def test_a_machine_that_does_not_answer_fails_the_first_command_only(tmp_path: Path, log: logging.Logger) -> None:
    """As a live command would: the first one says the machine does not answer; the rest are not tried."""
    closed = socket.create_server(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()
    config = tmp_path / "ssh_config"
    config.write_text(f"Host registry\n  HostName 127.0.0.1\n  Port {port}\n  User vagrant\n")
    machine = Machine("registry", config, log, Redactor([]), timeout=30, connect_timeout=2)
    _opened.append(machine)
    first, second = machine.batch([Item("true", None, 30), Item("true", None, 30)])
    assert isinstance(first, RemoteError) and str(first).startswith("registry does not answer (")
    assert second is None


def test_a_batch_that_ends_early_leaves_its_commands_to_run_alone(
        tmp_path: Path, log: logging.Logger, keys: tuple[paramiko.RSAKey, paramiko.RSAKey]) -> None:
    """sudo asking for a password, a full /tmp: no frames, no error of the machine's: None, each runs alone."""

    def sudo_wants_a_password(channel: paramiko.Channel, command: str) -> None:
        channel.sendall_stderr(b"sudo: a password is required\n")
        channel.send_exit_status(1)
        channel.close()

    server = Server(tmp_path, keys, sudo_wants_a_password)
    try:
        machine = machine_for(server, log)
        assert machine.batch([Item("true", None, 30), Item("false", None, 30)]) == [None, None]
        assert "batch of 2 -> 0 answered" in log_text(tmp_path)
    finally:
        machine.close()
        server.close()


def test_a_machine_that_freezes_during_a_batch_is_let_go_within_its_bound(
        tmp_path: Path, log: logging.Logger, keys: tuple[paramiko.RSAKey, paramiko.RSAKey],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The session opens, then nothing comes back, ever: the first command not done timed out, as alone."""
    monkeypatch.setattr(remote_module, "ABORT_GRACE", 0.5)
    monkeypatch.setattr(remote_module.batch, "KILL_GRACE", 0.2)
    release = threading.Event()
    server = Server(tmp_path, keys, lambda channel, command: release.wait(20))
    try:
        machine = machine_for(server, log)
        started = time.monotonic()
        first, second = machine.batch([Item("sleep 1", None, 0.5), Item("true", None, 0.5)])
        assert time.monotonic() - started < 5
        assert isinstance(first, RemoteError)
        assert str(first) == "registry: `sudo -n -H bash -c 'sleep 1'` timed out after 0.5s"
        assert second is None
        assert not machine.is_connected  # let go of, as a live command's watchdog does
    finally:
        release.set()
        server.close()


def test_a_stdin_secret_never_reaches_the_command_line_or_the_log(server: Server, log: logging.Logger,
                                                                 tmp_path: Path) -> None:
    machine = machine_for(server, log)
    [answer] = machine.batch([Item("cat >/dev/null; echo read", f"user = \"student:{SECRET}\"\n".encode(), 30)])
    assert not isinstance(answer, RemoteError) and answer.stdout == "read\n"
    assert server.commands == [COMMAND]
    assert SECRET not in log_text(tmp_path)
    assert base64.b64encode(f"user = \"student:{SECRET}\"\n".encode()).decode() not in log_text(tmp_path)


def test_an_empty_batch_asks_nothing(server: Server, log: logging.Logger) -> None:
    assert machine_for(server, log).batch([]) == []
    assert server.commands == []
