"""Unit tests for lab.remote: logging, redaction, timeouts and errors around every command.

`Host` runs real local commands through invoke; `Machine` runs against fabric's
MockRemote (a mocked paramiko SSHClient), so no SSH server is needed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path

import invoke
import pytest
from fabric.runners import Result as FabricResult
from fabric.testing.base import Command, MockRemote, Session

from lab.credentials import MASK, Redactor
from lab.errors import LabFailure, RemoteError
from lab.remote import CONNECT_TIMEOUT, Host, Machine, machine_logger

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
    assert client.connect.call_args.kwargs == {
        "username": "vagrant",
        "hostname": "127.0.0.1",
        "port": 2222,
        "timeout": CONNECT_TIMEOUT,
    }
    log = read_log(tmp_path, "registry")
    assert "registry $ docker ps -> exit 0 in " in log
    assert "stdout:\n    CONTAINER ID" in log
    assert "stderr:\n    a warning" in log


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
