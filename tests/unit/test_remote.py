"""Unit tests for lab.remote: logging, redaction, timeouts and errors around every command.

`Host` runs real local commands through invoke; `Machine` runs against fabric's
MockRemote (a mocked paramiko SSHClient), so no SSH server is needed.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import stat
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import invoke
import paramiko
import pytest
from fabric.runners import Result as FabricResult
from fabric.testing.base import Command, MockRemote, Session

import lab.machines.remote as remote_module
from lab.common.errors import LabFailure, RemoteError
from lab.common.polling import poll
from lab.machines.remote import CONNECT_TIMEOUT, KEEPALIVE, Host, Machine, machine_logger
from lab.model.credentials import MASK, Redactor

SECRET = "s3cret-Passw0rd"


def _close(logger: logging.Logger) -> None:
    # machine_logger's loggers are process-wide (reglab.NAME); detach this test's
    # file so the next test's tmp_path gets a fresh one.
    for handler in list(logger.handlers):
        if isinstance(handler, logging.FileHandler):
            logger.removeHandler(handler)
            handler.close()


def _files(logger: logging.Logger) -> list[str]:
    return [h.baseFilename for h in logger.handlers if isinstance(h, logging.FileHandler)]


@pytest.fixture
def host_log(tmp_path: Path) -> Iterator[logging.Logger]:
    log = machine_logger(tmp_path, "host")
    yield log
    _close(log)


@pytest.fixture
def host(host_log: logging.Logger) -> Host:
    return Host(host_log, Redactor([SECRET]), timeout=30)


def read_log(tmp_path: Path, name: str) -> str:
    return (tmp_path / f"{name}.log").read_text()


# --- machine_logger -------------------------------------------------------------


def test_machine_logger_writes_one_file_per_machine(tmp_path: Path, host_log: logging.Logger) -> None:
    again = machine_logger(tmp_path, "host")
    assert again is host_log
    assert _files(host_log) == [str(tmp_path / "host.log")]  # asking twice does not double every line
    assert host_log.propagate is False
    host_log.info("hello")
    assert read_log(tmp_path, "host").rstrip().endswith(" hello")


def test_machine_logger_creates_its_folder(tmp_path: Path) -> None:
    log = machine_logger(tmp_path / "logs" / "deep", "client")
    try:
        log.info("x")
        assert (tmp_path / "logs" / "deep" / "client.log").is_file()
    finally:
        _close(log)


# --- Host: real local commands --------------------------------------------------


def test_host_run_logs_command_exit_duration_and_output(tmp_path: Path, host: Host) -> None:
    result = host.run("echo out-line; echo err-line >&2")
    assert isinstance(result, invoke.Result)
    assert result.exited == 0
    assert result.stdout == "out-line\n"
    log = read_log(tmp_path, "host")
    assert "host $ echo out-line; echo err-line >&2 -> exit 0 in " in log
    assert "s\n" in log.split(" -> exit 0 in ", 1)[1]  # a duration in seconds
    assert "stdout:\n    out-line" in log
    assert "stderr:\n    err-line" in log


def test_host_run_quotes_a_list_of_arguments_word_by_word(tmp_path: Path, host: Host) -> None:
    """A path with a space (or shell syntax) given in a list stays one argument, never shell text."""
    odd = tmp_path / "tmp dir" / "ctx; touch pwned"
    result = host.run(["printf", "%s|", "a b", "$(id)", odd])
    assert result.stdout == f"a b|$(id)|{odd}|"
    assert not list(tmp_path.rglob("pwned"))
    assert f"host $ printf '%s|' 'a b' '$(id)' '{odd}' -> exit 0" in read_log(tmp_path, "host")


def test_host_run_hides_output_by_default(host: Host, capfd: pytest.CaptureFixture[str]) -> None:
    host.run("echo not-on-the-terminal")
    assert "not-on-the-terminal" not in capfd.readouterr().out


def test_host_run_redacts_secrets_in_log(tmp_path: Path, host: Host) -> None:
    result = host.run(f"echo {SECRET}")
    assert result.stdout.strip() == SECRET  # the caller still gets the real output
    log = read_log(tmp_path, "host")
    assert SECRET not in log
    assert f"host $ echo {MASK} -> exit 0" in log
    assert f"stdout:\n    {MASK}" in log


def test_host_nonzero_exit_raises_remote_error_redacted(tmp_path: Path, host: Host) -> None:
    with pytest.raises(RemoteError) as info:
        host.run(f"echo token={SECRET}; echo 'it broke' >&2; exit 3")
    message = str(info.value)
    assert isinstance(info.value, LabFailure)
    assert message.startswith(f"host: `echo token={MASK}; echo 'it broke' >&2; exit 3` exited 3")
    assert "it broke" in message
    assert f"token={MASK}" in message.split("exited 3", 1)[1]  # the output tail, masked
    assert SECRET not in message
    log = read_log(tmp_path, "host")
    assert "-> exit 3 in " in log
    assert "it broke" in log
    assert SECRET not in log
    assert info.value.__cause__ is None and info.value.__suppress_context__


def test_host_failure_shows_only_the_tail(host: Host) -> None:
    with pytest.raises(RemoteError) as info:
        host.run("seq 1 100; exit 1")
    lines = str(info.value).splitlines()
    assert lines[-1].strip() == "100"
    assert "  71" in lines  # the last 30 lines
    assert "  70" not in lines


def test_a_private_key_longer_than_the_tail_is_redacted_before_clipping(
    tmp_path: Path, host: Host
) -> None:
    """Clipped first, the tail would start inside the key, where no pattern recognises it."""
    key = tmp_path / "key.pem"
    body = [f"KEYBODY{i:02d}" for i in range(40)]
    key.write_text("\n".join(["-----BEGIN PRIVATE KEY-----", *body, "-----END PRIVATE KEY-----", ""]))
    # The message keeps the last 30 lines, the log the last 200: each cut falls inside the key.
    for lines_after in (20, 180):
        with pytest.raises(RemoteError) as info:
            host.run(f"cat {key}; seq 1 {lines_after}; exit 1")
        assert "KEYBODY" not in str(info.value)
    assert "KEYBODY" not in read_log(tmp_path, "host")
    assert "PRIVATE KEY REDACTED" in read_log(tmp_path, "host")


def test_host_warn_returns_the_result(tmp_path: Path, host: Host) -> None:
    result = host.run(f"echo {SECRET}; exit 4", warn=True)
    assert isinstance(result, invoke.Result)
    assert result.exited == 4
    assert not result.ok
    log = read_log(tmp_path, "host")
    assert f"host $ echo {MASK}; exit 4 -> exit 4 in " in log
    assert SECRET not in log


def test_host_timeout_raises_remote_error(tmp_path: Path, host: Host) -> None:
    started = time.monotonic()
    with pytest.raises(RemoteError) as info:
        host.run("sleep 5", timeout=1)
    assert time.monotonic() - started < 4
    assert str(info.value) == "host: `sleep 5` timed out after 1s"
    assert "host $ sleep 5 -> timed out after " in read_log(tmp_path, "host")


def test_a_command_reading_stdin_gets_eof_at_once(host_log: logging.Logger) -> None:
    """Nothing is read from the user's terminal: a command that reads stdin sees EOF."""
    quick = Host(host_log, Redactor([SECRET]), timeout=5)
    started = time.monotonic()
    result = quick.run(f"echo {SECRET}; exec cat")
    assert time.monotonic() - started < 3
    assert result.ok


def test_host_timeout_redacts_the_output_so_far(host_log: logging.Logger) -> None:
    quick = Host(host_log, Redactor([SECRET]), timeout=1)
    with pytest.raises(RemoteError) as info:
        quick.run(f"echo {SECRET}; exec sleep 5")
    message = str(info.value)
    assert message.startswith(f"host: `echo {MASK}; exec sleep 5` timed out after 1s")
    assert message.endswith(f"\n  {MASK}")  # the output so far, redacted
    assert SECRET not in message


# --- Machine: fabric Connection against MockRemote ---------------------------------

SSH_CONFIG = """\
Host registry
  HostName 127.0.0.1
  Port 2222
  User vagrant
  UserKnownHostsFile /dev/null
  StrictHostKeyChecking no
"""


@pytest.fixture
def ssh_config(tmp_path: Path) -> Path:
    path = tmp_path / "ssh_config"
    path.write_text(SSH_CONFIG)
    return path


@pytest.fixture
def registry_log(tmp_path: Path) -> Iterator[logging.Logger]:
    log = machine_logger(tmp_path, "registry")
    yield log
    _close(log)


@pytest.fixture
def remote() -> Iterator[MockRemote]:
    # Not used as a context manager: MockRemote.safety() expects connect() with
    # username/hostname/port only, and Machine also passes timeout= (checked below).
    mock = MockRemote()
    yield mock
    mock.stop()


def make_machine(ssh_config: Path, log: logging.Logger) -> Machine:
    return Machine("registry", ssh_config, log, Redactor([SECRET]), timeout=30)


def test_machine_reads_its_ssh_config(ssh_config: Path, registry_log: logging.Logger, remote: MockRemote) -> None:
    machine = make_machine(ssh_config, registry_log)
    assert (machine.host, machine.port, machine.user) == ("127.0.0.1", 2222, "vagrant")
    assert machine.name == "registry"
    assert machine.default_timeout == 30


def test_machine_run_returns_fabric_result_and_logs(
    tmp_path: Path, ssh_config: Path, registry_log: logging.Logger, remote: MockRemote
) -> None:
    channel = remote.expect(cmd="docker ps", out=b"CONTAINER ID\n", err=b"a warning\n")
    result = make_machine(ssh_config, registry_log).run("docker ps")
    channel.exec_command.assert_called_once_with("docker ps")
    assert isinstance(result, FabricResult)
    assert result.exited == 0
    assert result.stdout == "CONTAINER ID\n"
    assert result.connection.host == "127.0.0.1"
    client = remote.sessions[0].client
    assert client.connect.call_args.kwargs["timeout"] == CONNECT_TIMEOUT
    log = read_log(tmp_path, "registry")
    assert "registry $ docker ps -> exit 0 in " in log
    assert "stdout:\n    CONTAINER ID" in log
    assert "stderr:\n    a warning" in log


def test_machine_bounds_every_step_of_connecting_and_keeps_the_connection_alive(
    ssh_config: Path, registry_log: logging.Logger, remote: MockRemote
) -> None:
    """TCP, the server's banner, login and opening a session each have a bound (paramiko's
    defaults: none for TCP, an hour for a session); keepalives show a dead peer."""
    remote.expect(cmd="true")
    make_machine(ssh_config, registry_log).run("true")
    client = remote.sessions[0].client
    assert client.connect.call_args.kwargs == {
        "username": "vagrant",
        "hostname": "127.0.0.1",
        "port": 2222,
        "timeout": CONNECT_TIMEOUT,
        "banner_timeout": CONNECT_TIMEOUT,
        "auth_timeout": CONNECT_TIMEOUT,
        "channel_timeout": CONNECT_TIMEOUT,
    }
    client.get_transport.return_value.set_keepalive.assert_called_once_with(KEEPALIVE)


def test_machine_sudo_wraps_the_whole_command_in_bash(
    tmp_path: Path, ssh_config: Path, registry_log: logging.Logger, remote: MockRemote
) -> None:
    channel = remote.expect(cmd="sudo -n -H bash -c 'a | b'")
    result = make_machine(ssh_config, registry_log).sudo("a | b")
    channel.exec_command.assert_called_once_with("sudo -n -H bash -c 'a | b'")
    assert result.command == "sudo -n -H bash -c 'a | b'"
    assert "registry $ sudo -n -H bash -c 'a | b' -> exit 0" in read_log(tmp_path, "registry")


def test_machine_sudo_quotes_single_quotes(ssh_config: Path, registry_log: logging.Logger, remote: MockRemote) -> None:
    channel = remote.expect(cmd=None)
    make_machine(ssh_config, registry_log).sudo("echo 'x' > /etc/y")
    channel.exec_command.assert_called_once_with("sudo -n -H bash -c 'echo '\"'\"'x'\"'\"' > /etc/y'")


def test_machine_several_commands_on_one_connection(
    ssh_config: Path, registry_log: logging.Logger, remote: MockRemote
) -> None:
    channels = remote.expect_sessions(Session(commands=[Command("true"), Command("hostname", out=b"registry\n")]))
    machine = make_machine(ssh_config, registry_log)
    assert machine.run("true").ok
    assert machine.run("hostname").stdout == "registry\n"
    channels[0].exec_command.assert_called_once_with("true")
    channels[1].exec_command.assert_called_once_with("hostname")
    remote.sessions[0].client.connect.assert_called_once()


def test_machine_failure_is_redacted_remote_error(
    tmp_path: Path, ssh_config: Path, registry_log: logging.Logger, remote: MockRemote
) -> None:
    command = f"docker login -u student -p {SECRET} myregistrydomain.com"
    remote.expect(cmd=command, err=f"Error response: {SECRET} unauthorized\n".encode(), exit=1)
    with pytest.raises(RemoteError) as info:
        make_machine(ssh_config, registry_log).run(command)
    message = str(info.value)
    assert message.startswith(f"registry: `docker login -u student -p {MASK} myregistrydomain.com` exited 1")
    assert f"Error response: {MASK} unauthorized" in message
    assert SECRET not in message
    log = read_log(tmp_path, "registry")
    assert "-> exit 1 in " in log
    assert SECRET not in log


def test_machine_warn_returns_result(ssh_config: Path, registry_log: logging.Logger, remote: MockRemote) -> None:
    remote.expect(cmd="test -f /x", exit=1)
    result = make_machine(ssh_config, registry_log).run("test -f /x", warn=True)
    assert isinstance(result, FabricResult)
    assert result.exited == 1


def test_machine_unreachable_is_remote_error(
    tmp_path: Path, ssh_config: Path, registry_log: logging.Logger, remote: MockRemote
) -> None:
    remote.expect(cmd="true")
    remote.sessions[0].client.connect.side_effect = ConnectionRefusedError(111, "Connection refused")
    with pytest.raises(RemoteError) as info:
        make_machine(ssh_config, registry_log).run("true")
    message = str(info.value)
    assert message.startswith("registry does not answer (ConnectionRefusedError")
    assert "reglab status" in message
    log = read_log(tmp_path, "registry")
    assert "registry" in log and "no connection" in log and "Connection refused" in log


# --- bounds: None is the default, never "no timeout" ------------------------------------


def test_host_timeout_none_means_the_default_timeout(host_log: logging.Logger) -> None:
    """A scenario item without `timeout:` passes None; invoke would read it as "wait forever"."""
    quick = Host(host_log, Redactor([SECRET]), timeout=0.5)  # type: ignore[arg-type]
    started = time.monotonic()
    with pytest.raises(RemoteError, match=r"timed out after 0\.5s"):
        quick.run("sleep 3", timeout=None)
    assert time.monotonic() - started < 2.5


# --- log files ----------------------------------------------------------------------------


def test_machine_logger_creates_its_file_0600_whatever_the_umask(tmp_path: Path) -> None:
    previous = os.umask(0)
    try:
        log = machine_logger(tmp_path / "logs", "registry")
    finally:
        os.umask(previous)
    try:
        log.info("x")
        assert stat.S_IMODE((tmp_path / "logs" / "registry.log").stat().st_mode) == 0o600
        assert stat.S_IMODE((tmp_path / "logs").stat().st_mode) == 0o700
    finally:
        _close(log)


def test_machine_logger_tightens_a_log_left_readable_by_others(tmp_path: Path) -> None:
    path = tmp_path / "client.log"
    path.write_text("earlier run\n")
    path.chmod(0o644)
    log = machine_logger(tmp_path, "client")
    try:
        log.info("this run")
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert path.read_text().startswith("earlier run\n")  # appended, not replaced
    finally:
        _close(log)


def test_machine_logger_never_writes_through_a_planted_link(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    target.write_text("")
    (tmp_path / "client.log").symlink_to(target)
    with pytest.raises(OSError) as info:
        machine_logger(tmp_path, "client")
    assert info.value.filename == str(tmp_path / "client.log")
    assert target.read_text() == ""


# --- upload: small files as root, mode from the start -------------------------------------


def test_upload_sends_the_bytes_on_stdin_to_install_under_umask_077(
    tmp_path: Path, ssh_config: Path, registry_log: logging.Logger, remote: MockRemote
) -> None:
    """Every byte value arrives unchanged, in one go (invoke alone reads 1 byte per 10 ms)."""
    data = bytes(range(256)) * 4  # not UTF-8; 10 s at invoke's pace
    channel = remote.expect(cmd=None)
    started = time.monotonic()
    make_machine(ssh_config, registry_log).upload(data, "/root/docker-registry/nginx/domain.key")
    assert time.monotonic() - started < 2
    command = channel.exec_command.call_args.args[0]
    assert command == (
        "sudo -n -H bash -c 'mkdir -p /root/docker-registry/nginx && umask 077 && "
        "install -m 0600 /dev/stdin /root/docker-registry/nginx/domain.key'"
    )
    assert channel._stdin.getvalue() == data
    log = read_log(tmp_path, "registry")
    assert "install -m 0600 /dev/stdin /root/docker-registry/nginx/domain.key' -> exit 0" in log


def test_upload_of_text_sends_utf8_and_keeps_the_given_mode(
    ssh_config: Path, registry_log: logging.Logger, remote: MockRemote
) -> None:
    channel = remote.expect(cmd=None)
    make_machine(ssh_config, registry_log).upload("café ✓\n", "/etc/x y.conf", mode="0644")
    assert "install -m 0644 /dev/stdin '\"'\"'/etc/x y.conf'\"'\"''" in channel.exec_command.call_args.args[0]
    assert channel._stdin.getvalue() == "café ✓\n".encode()


def test_upload_refuses_a_mode_that_is_not_octal(ssh_config: Path, registry_log: logging.Logger) -> None:
    with pytest.raises(ValueError, match="octal"):
        make_machine(ssh_config, registry_log).upload(b"x", "/etc/x", mode="0644; rm -rf /")


def test_upload_failure_names_the_machine(ssh_config: Path, registry_log: logging.Logger, remote: MockRemote) -> None:
    remote.expect(cmd=None, err=b"install: cannot create regular file: Read-only file system\n", exit=1)
    with pytest.raises(RemoteError) as info:
        make_machine(ssh_config, registry_log).upload(b"x", "/etc/x")
    assert str(info.value).startswith("registry: `sudo -n -H bash -c")
    assert "Read-only file system" in str(info.value)


# --- put: bounded and logged ---------------------------------------------------------------


@pytest.fixture
def sftp_remote() -> Iterator[MockRemote]:
    mock = MockRemote(enable_sftp=True)
    yield mock
    mock.stop()


def test_put_logs_size_and_duration(
    tmp_path: Path, ssh_config: Path, registry_log: logging.Logger, sftp_remote: MockRemote
) -> None:
    bundle = tmp_path / "images.tar"
    bundle.write_bytes(b"\0" * 3 * 1024 * 1024)
    make_machine(ssh_config, registry_log).put(str(bundle), "/tmp/images.tar")
    sftp_remote.sessions[0].sftp.put.assert_called_once()
    log = read_log(tmp_path, "registry")
    assert f"registry $ put {bundle} -> /tmp/images.tar (3.0 MB) -> done in " in log


def test_put_that_stalls_is_cut_off_at_its_timeout(
    tmp_path: Path, ssh_config: Path, registry_log: logging.Logger, sftp_remote: MockRemote
) -> None:
    """SFTP has no timeout of its own: the watchdog closes the connection, which ends the transfer."""
    bundle = tmp_path / "images.tar"
    bundle.write_bytes(b"\0" * 1024)
    session = sftp_remote.sessions[0]
    closed = threading.Event()
    session.client.get_transport.return_value.close.side_effect = closed.set

    def stalled_put(**_kwargs: object) -> None:
        if closed.wait(5):
            raise EOFError()

    session.sftp.put.side_effect = stalled_put
    started = time.monotonic()
    with pytest.raises(RemoteError) as info:
        make_machine(ssh_config, registry_log).put(str(bundle), "/tmp/images.tar", timeout=0.5)  # type: ignore[arg-type]
    assert time.monotonic() - started < 2.5
    assert str(info.value) == f"registry: put {bundle} -> /tmp/images.tar (1.0 KB) timed out after 0.5s"
    assert "(1.0 KB) -> timed out after " in read_log(tmp_path, "registry")


def test_put_failure_is_a_remote_error_naming_the_machine(
    tmp_path: Path, ssh_config: Path, registry_log: logging.Logger, sftp_remote: MockRemote
) -> None:
    bundle = tmp_path / "images.tar"
    bundle.write_bytes(b"x")
    sftp_remote.sessions[0].sftp.put.side_effect = PermissionError(13, "Permission denied")
    with pytest.raises(RemoteError) as info:
        make_machine(ssh_config, registry_log).put(str(bundle), "/root/images.tar")
    assert str(info.value).startswith(f"registry: put {bundle} -> /root/images.tar (1 B) failed (PermissionError")


# --- a machine that stops answering: real SSH in-process --------------------------------------


@pytest.fixture(scope="module")
def keys() -> tuple[paramiko.RSAKey, paramiko.RSAKey]:
    return paramiko.RSAKey.generate(2048), paramiko.RSAKey.generate(2048)


class _Sshd(paramiko.ServerInterface):
    """Lets anyone in; what a command does is up to the test."""

    def __init__(self, on_exec: Callable[[paramiko.Channel], bool]) -> None:
        self.on_exec = on_exec

    def get_allowed_auths(self, username: str) -> str:
        return "publickey"

    def check_auth_publickey(self, username: str, key: paramiko.PKey) -> int:
        return paramiko.AUTH_SUCCESSFUL

    def check_channel_request(self, kind: str, chanid: int) -> int:
        return paramiko.OPEN_SUCCEEDED

    def check_channel_exec_request(self, channel: paramiko.Channel, command: bytes) -> bool:
        return self.on_exec(channel)


class Server:
    """A local TCP port that either speaks SSH (through `_Sshd`) or accepts and says nothing."""

    def __init__(self, tmp_path: Path, keys: tuple[paramiko.RSAKey, paramiko.RSAKey]) -> None:
        self.host_key, client_key = keys
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.release = threading.Event()
        self.held: list[socket.socket] = []
        self.transports: list[paramiko.Transport] = []
        key_file = tmp_path / "id_rsa"
        client_key.write_private_key_file(str(key_file))
        self.ssh_config = tmp_path / "ssh_config"
        self.ssh_config.write_text(
            f"Host registry\n  HostName 127.0.0.1\n  Port {self.listener.getsockname()[1]}\n"
            f"  User vagrant\n  IdentityFile {key_file}\n"
        )
        quiet = logging.getLogger("reglab-test.sshd")
        quiet.propagate = False
        quiet.addHandler(logging.NullHandler())

    def _accept(self) -> socket.socket | None:
        try:
            sock, _ = self.listener.accept()
        except OSError:
            return None
        self.held.append(sock)
        return sock

    def silent(self) -> None:
        """Accepts the connection, then never sends a byte: not even SSH's banner."""
        threading.Thread(target=self._accept, daemon=True).start()

    def ssh(self, on_exec: Callable[[paramiko.Channel], bool]) -> None:
        def serve() -> None:
            sock = self._accept()
            if sock is None:
                return
            transport = paramiko.Transport(sock)
            transport.set_log_channel("reglab-test.sshd")
            transport.add_server_key(self.host_key)
            self.transports.append(transport)
            with contextlib.suppress(Exception):
                transport.start_server(server=_Sshd(on_exec))

        threading.Thread(target=serve, daemon=True).start()

    def close(self) -> None:
        self.release.set()
        for transport in self.transports:
            transport.close()
        for sock in self.held:
            sock.close()
        self.listener.close()


@pytest.fixture
def server(tmp_path: Path, keys: tuple[paramiko.RSAKey, paramiko.RSAKey]) -> Iterator[Server]:
    running = Server(tmp_path, keys)
    yield running
    running.close()


def within(seconds: float, work: Callable[[], object]) -> BaseException | None:
    """Run `work` in a thread; fail the test if it still runs after `seconds` (a hang, not a timeout)."""
    outcome: list[BaseException | None] = []

    def target() -> None:
        try:
            work()
            outcome.append(None)
        except BaseException as exc:  # handed to the test
            outcome.append(exc)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"still waiting after {seconds}s"
    return outcome[0]


def test_a_server_that_never_sends_its_banner_fails_within_the_connect_timeout(
    tmp_path: Path, server: Server, registry_log: logging.Logger, capfd: pytest.CaptureFixture[str]
) -> None:
    server.silent()
    machine = Machine("registry", server.ssh_config, registry_log, Redactor([]), timeout=30, connect_timeout=1)
    started = time.monotonic()
    error = within(10, lambda: machine.run("true"))
    assert time.monotonic() - started < 3.5  # paramiko alone waits 15 s for a banner
    assert isinstance(error, RemoteError)
    assert str(error).startswith("registry does not answer (SSHException")
    assert "Traceback" not in capfd.readouterr().err  # paramiko's own report goes to the machine's log
    # paramiko's transport thread writes its report a moment after giving up
    assert poll(lambda: "Error reading SSH protocol banner" in read_log(tmp_path, "registry"), 2, 0.05)


def test_a_machine_that_freezes_before_starting_the_command_fails_within_timeout_plus_grace(
    server: Server, registry_log: logging.Logger, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The server takes the session but never answers the exec request: invoke's own timer
    has not started yet, so only the watchdog ends the wait."""
    monkeypatch.setattr(remote_module, "ABORT_GRACE", 0.5)
    server.ssh(lambda _channel: server.release.wait(10))
    machine = Machine("registry", server.ssh_config, registry_log, Redactor([]), timeout=30)
    started = time.monotonic()
    error = within(6, lambda: machine.run("docker ps", timeout=0.5))
    assert time.monotonic() - started < 3
    assert isinstance(error, RemoteError)
    assert str(error) == "registry: `docker ps` timed out after 0.5s"


def test_a_command_that_never_ends_with_timeout_none_ends_at_the_machine_default(
    server: Server, registry_log: logging.Logger
) -> None:
    server.ssh(lambda _channel: True)  # started; no output, no exit status, ever
    machine = Machine("registry", server.ssh_config, registry_log, Redactor([]), timeout=0.5)  # type: ignore[arg-type]
    started = time.monotonic()
    error = within(6, lambda: machine.run("sleep infinity", timeout=None))
    assert time.monotonic() - started < 3
    assert isinstance(error, RemoteError)
    assert str(error) == "registry: `sleep infinity` timed out after 0.5s"
    assert not machine.is_connected  # let go of: the next command connects again


def test_ctrl_c_during_a_remote_command_returns_at_once(
    server: Server, registry_log: logging.Logger, ctrl_c: Callable[[float], None]
) -> None:
    """Without a pty fabric stops waiting on ^C but still reads output until the command ends."""

    def never_ends(channel: paramiko.Channel) -> bool:
        threading.Timer(5, channel.close).start()  # a bound for this test if the fix is missing
        return True

    server.ssh(never_ends)
    machine = Machine("registry", server.ssh_config, registry_log, Redactor([]), timeout=30)
    machine.open()
    ctrl_c(0.3)
    started = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        machine.run("sleep infinity")
    assert time.monotonic() - started < 2


def test_ctrl_c_during_a_host_command_stops_the_command(
    host_log: logging.Logger, ctrl_c: Callable[[float], None]
) -> None:
    """invoke only writes ^C to the command's stdin; SIGTERM from reglab's handlers reaches nobody."""
    quick = Host(host_log, Redactor([]), timeout=30)
    ctrl_c(0.3)
    started = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        quick.run("sleep 5")
    assert time.monotonic() - started < 2


def test_host_timeout_ends_what_the_command_started_too(host_log: logging.Logger) -> None:
    """invoke's kill ends the shell only; a child still holding the output pipe kept reglab waiting."""
    quick = Host(host_log, Redactor([]), timeout=0.5)  # type: ignore[arg-type]
    started = time.monotonic()
    with pytest.raises(RemoteError, match="timed out"):
        quick.run("sleep 3 & wait")
    assert time.monotonic() - started < 2


def test_an_abandoned_host_ends_commands_of_other_threads_and_refuses_new_ones(host_log: logging.Logger) -> None:
    """On Ctrl-C during boot, the image builds running beside it must end too (SIGTERM reaches none)."""
    host = Host(host_log, Redactor([]), timeout=30)
    error = []

    def build() -> None:
        try:
            host.run("sleep 5")
        except RemoteError as exc:
            error.append(exc)

    builder = threading.Thread(target=build)
    builder.start()
    assert poll(lambda: host._runners, 2, 0.02)
    started = time.monotonic()
    host.abandon()
    builder.join(3)
    assert not builder.is_alive()
    assert time.monotonic() - started < 2
    assert error and "exited -15" in str(error[0])
    with pytest.raises(RemoteError, match=r"host: `true` not run, reglab was interrupted"):
        host.run("true")


def test_an_abandoned_machine_refuses_further_commands(
    ssh_config: Path, registry_log: logging.Logger, remote: MockRemote
) -> None:
    remote.expect(cmd="true")
    machine = make_machine(ssh_config, registry_log)
    machine.run("true")
    machine.abandon()
    remote.sessions[0].client.get_transport.return_value.close.assert_called_once_with()
    type(remote.sessions[0].client.get_transport.return_value).active = False
    with pytest.raises(RemoteError, match="reglab was interrupted"):
        machine.run("true")
