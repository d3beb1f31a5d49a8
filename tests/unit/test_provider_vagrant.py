"""Unit tests for lab.providers.vagrant: VirtualBox's host-only range, TimedVagrant's bounds, errors and
interrupts, and the ssh_config the machines are reached with.

TimedVagrant is pointed at a fake `vagrant` script in tmp_path; Vagrant itself never runs.
"""

from __future__ import annotations

import logging
import os
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import lab.machines.providers.vagrant as machines
from lab.common.errors import LabError, LabFailure, RemoteError
from lab.machines.providers.base import wait_for_ssh
from lab.machines.providers.vagrant import (
    VAGRANT_MISSING,
    VBOX_NETWORKS,
    TimedVagrant,
    VagrantProvider,
    vagrant_error,
    vbox_range_problem,
)
from lab.model.credentials import Redactor
from lab.model.labfile import load

PROJECT = Path(__file__).resolve().parents[2]

LAB_IPS = ["192.168.33.10", "192.168.33.11"]

# --- vbox_range_problem ---------------------------------------------------------


def test_no_networks_conf_refuses_the_tutorial_ips() -> None:
    problem = vbox_range_problem(LAB_IPS, None)
    assert problem is not None
    assert "192.168.56.0/21" in problem
    assert "192.168.33.10, 192.168.33.11" in problem
    assert str(VBOX_NETWORKS) == "/etc/vbox/networks.conf"
    assert "/etc/vbox/networks.conf" in problem
    assert "* 192.168.33.0/24 192.168.56.0/21" in problem  # the line to add


def test_default_range_accepts_its_own_ips() -> None:
    assert vbox_range_problem(["192.168.56.10", "192.168.63.254"], None) is None


def test_networks_conf_allowing_the_lab_subnet() -> None:
    assert vbox_range_problem(LAB_IPS, "* 192.168.33.0/24 192.168.56.0/21\n") is None


def test_networks_conf_with_comments_and_other_lines() -> None:
    conf = "# VirtualBox host-only ranges\n\n* 10.0.0.0/8\n* 192.168.33.0/24\n"
    assert vbox_range_problem(LAB_IPS, conf) is None


def test_networks_conf_replaces_the_default_range() -> None:
    problem = vbox_range_problem(["192.168.56.10"], "* 10.0.0.0/8\n")
    assert problem is not None
    assert "only in 10.0.0.0/8" in problem


def test_only_the_ips_outside_are_named() -> None:
    problem = vbox_range_problem(["192.168.33.10", "10.1.2.3"], "* 192.168.33.0/24\n")
    assert problem is not None
    assert "refuse 10.1.2.3 " in problem
    assert "* 10.1.2.0/24 192.168.56.0/21" in problem


def test_empty_networks_conf_allows_nothing() -> None:
    problem = vbox_range_problem(LAB_IPS, "")
    assert problem is not None
    assert "no range" in problem


def test_garbage_ranges_are_ignored() -> None:
    assert vbox_range_problem(LAB_IPS, "* not-a-net 192.168.33.0/24\n") is None


# --- TimedVagrant -----------------------------------------------------------------


def fake_vagrant(tmp_path: Path, body: str) -> Path:
    script = tmp_path / "bin" / "vagrant"
    script.parent.mkdir(parents=True, exist_ok=True)
    script.write_text("#!/bin/sh\n" + body)
    script.chmod(0o755)
    return script


def make_vagrant(tmp_path: Path, body: str, timeout: int = 10) -> TimedVagrant:
    (tmp_path / "Vagrantfile").write_text("# not read by the fake\n")
    tv = TimedVagrant(tmp_path, dict(os.environ), tmp_path / ".lab" / "reglab" / "logs" / "vagrant.log", timeout)
    tv._vagrant_exe = str(fake_vagrant(tmp_path, body))
    return tv


def _gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return True
    return state in ("Z", "X")  # a zombie waiting for init still counts as ended


def test_timeout_raises_remote_error_and_kills_the_process_group(tmp_path: Path) -> None:
    # The script leaves a grandchild, as Vagrant's ruby does with ssh and docker.
    tv = make_vagrant(tmp_path, f"sleep 30 &\necho $! > {tmp_path}/child.pid\necho booting\nwait\n", timeout=1)
    started = time.monotonic()
    with pytest.raises(RemoteError) as info:
        tv.up()
    assert time.monotonic() - started < 5
    message = str(info.value)
    assert isinstance(info.value, LabFailure)
    assert "did not finish within 1s" in message
    assert "up" in message
    assert str(tv.log_path) in message
    child = int((tmp_path / "child.pid").read_text())
    deadline = time.monotonic() + 3
    while not _gone(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _gone(child), "the whole process group is ended, not just vagrant"
    log = tv.log_path.read_text()
    assert "$ " in log and " up" in log
    assert "booting" in log


def test_the_vagrant_log_is_private_whatever_the_umask(tmp_path: Path) -> None:
    previous = os.umask(0)
    try:
        tv = make_vagrant(tmp_path, "echo booting\n")
        tv.up()
    finally:
        os.umask(previous)
    assert stat.S_IMODE(tv.log_path.stat().st_mode) == 0o600
    assert stat.S_IMODE(tv.log_path.parent.stat().st_mode) == 0o700
    assert "booting" in tv.log_path.read_text()


def test_nonzero_exit_raises_remote_error_with_output_and_log_path(tmp_path: Path) -> None:
    tv = make_vagrant(
        tmp_path,
        "echo 'Bringing machine up...'\necho \"The provider 'libvirt' could not be found\" >&2\nexit 1\n",
    )
    with pytest.raises(RemoteError) as info:
        tv.up(provider="libvirt")
    message = str(info.value)
    assert message.startswith("`vagrant up --provider=libvirt` failed (exit 1):")
    assert "The provider 'libvirt' could not be found" in message
    assert f"full log: {tv.log_path}" in message
    assert "The provider 'libvirt' could not be found" in tv.log_path.read_text()


def test_success_appends_to_the_log(tmp_path: Path) -> None:
    tv = make_vagrant(tmp_path, 'echo "args: $*"\n')
    tv.up(vm_name="registry", provider="docker")
    tv.destroy()
    log = tv.log_path.read_text()
    assert "args: up registry --provider=docker" in log
    assert "args: destroy --force" in log
    assert log.index("up registry") < log.index("destroy")


def test_runs_in_the_lab_root_with_the_given_environment(tmp_path: Path) -> None:
    (tmp_path / "Vagrantfile").write_text("")
    env = dict(os.environ, REGLAB_PROVIDER="docker-from-env")
    tv = TimedVagrant(tmp_path, env, tmp_path / "vagrant.log", 10)
    tv._vagrant_exe = str(fake_vagrant(tmp_path, 'echo "cwd=$(pwd) provider=$REGLAB_PROVIDER"\n'))
    assert tv.ssh_config().strip() == f"cwd={tmp_path} provider=docker-from-env"


def test_captured_output_is_returned(tmp_path: Path) -> None:
    tv = make_vagrant(tmp_path, "printf 'Host registry\\n  HostName 127.0.0.1\\n'\necho noise >&2\n")
    assert tv.ssh_config(vm_name="registry") == "Host registry\n  HostName 127.0.0.1\n"
    assert "noise" in tv.log_path.read_text()  # stderr still goes to the log


def test_captured_command_timeout(tmp_path: Path) -> None:
    tv = make_vagrant(tmp_path, "exec sleep 30\n", timeout=1)
    with pytest.raises(RemoteError, match="did not finish within 1s"):
        tv.ssh_config()


def test_captured_command_failure(tmp_path: Path) -> None:
    tv = make_vagrant(tmp_path, "echo 'A Vagrant environment is required' >&2\nexit 2\n")
    with pytest.raises(RemoteError) as info:
        tv.ssh_config()
    assert "failed (exit 2)" in str(info.value)
    assert "A Vagrant environment is required" in str(info.value)


# --- wait_for_ssh ---------------------------------------------------------


class FlakyMachine:
    """Answers after `failures` RemoteErrors."""

    name = "registry"

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls = 0
        self.closed = 0

    def run(self, command: str, **kwargs: object) -> None:
        self.calls += 1
        assert command == "true" and kwargs == {"timeout": 20}
        if self.calls <= self.failures:
            raise RemoteError("registry does not answer")

    def close(self) -> None:
        self.closed += 1


def test_wait_for_ssh_retries_until_it_answers(monkeypatch: pytest.MonkeyPatch) -> None:
    from lab.common import polling

    monkeypatch.setattr(polling.time, "sleep", lambda _s: None)
    machine = FlakyMachine(failures=3)
    wait_for_ssh(machine, timeout=60)  # type: ignore[arg-type]
    assert machine.calls == 4
    assert machine.closed == 3


def test_wait_for_ssh_gives_up_after_its_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    from lab.common import polling

    clock = iter(range(0, 10_000, 10))
    monkeypatch.setattr(polling.time, "monotonic", lambda: next(clock))
    monkeypatch.setattr(polling.time, "sleep", lambda _s: None)
    with pytest.raises(RemoteError) as info:
        wait_for_ssh(FlakyMachine(failures=10_000), timeout=30)  # type: ignore[arg-type]
    assert str(info.value).startswith("registry: SSH did not answer within 30s")
    assert "does not answer" in str(info.value)


# --- Ctrl-C while Vagrant runs ------------------------------------------------------------

SLOW_TO_STOP = """\
import os, pathlib, signal, sys, time
for name in sys.argv[2:]:
    signal.signal(getattr(signal, name), signal.SIG_IGN)
pathlib.Path(sys.argv[1], "pid").write_text(str(os.getpid()))
time.sleep(5)
"""


class _Interrupted(subprocess.Popen):
    """Vagrant started; then the user presses Ctrl-C while reglab waits on it."""

    def communicate(self, *args: object, **kwargs: object) -> tuple[bytes, bytes]:
        deadline = time.monotonic() + 5
        while not (Path(self.args[0]).parent.parent / "pid").exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        raise KeyboardInterrupt


@pytest.mark.parametrize("ignores", [["SIGINT"], ["SIGINT", "SIGTERM"]], ids=["int", "int-and-term"])
def test_ctrl_c_stops_a_vagrant_slow_to_stop_and_passes_the_interrupt_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ignores: list[str]
) -> None:
    """SIGINT, then SIGTERM, then SIGKILL, each with a bound: never a TimeoutExpired
    traceback, never a Vagrant left running."""
    script = tmp_path / "slow.py"
    script.write_text(SLOW_TO_STOP)
    tv = make_vagrant(tmp_path, f'exec {sys.executable} {script} {tmp_path} {" ".join(ignores)}\n')
    monkeypatch.setattr(machines, "STOP_GRACE", 0.3)
    monkeypatch.setattr(subprocess, "Popen", _Interrupted)
    started = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        tv.up()
    assert time.monotonic() - started < 3
    assert _gone(int((tmp_path / "pid").read_text()))


def test_vagrant_not_installed_is_a_lab_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "empty").mkdir()
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    tv = TimedVagrant(tmp_path, dict(os.environ), tmp_path / "vagrant.log", 10)
    with pytest.raises(LabError) as info:
        tv.status()
    assert str(info.value) == VAGRANT_MISSING
    assert VAGRANT_MISSING.startswith("vagrant is not installed; ")


# --- what Vagrant said when it failed ----------------------------------------------------

NO_ENVIRONMENT = (
    "1424099094,,ui,info,Loading\n"
    "1424099094,,error-exit,Vagrant::Errors::NoEnvironmentError,A Vagrant environment or target machine is "
    "required to run this\\ncommand. Run `vagrant init` to create a new Vagrant environment. Or%!(VAGRANT_COMMA)\\n"
    "get an ID of a target machine from `vagrant global-status`.\n"
)


def test_vagrant_error_reads_the_error_exit_line() -> None:
    assert vagrant_error(NO_ENVIRONMENT) == (
        "A Vagrant environment or target machine is required to run this\n"
        "command. Run `vagrant init` to create a new Vagrant environment. Or,\n"
        "get an ID of a target machine from `vagrant global-status`."
    )


def test_vagrant_error_reads_ui_error_lines_and_ignores_the_rest() -> None:
    text = "1,,ui,info,Bringing machine up\n2,registry,ui,error,The container failed to start%!(VAGRANT_COMMA) sorry\n"
    assert vagrant_error(text) == "The container failed to start, sorry"
    assert vagrant_error("1,registry,state,running\n1,registry,provider-name,docker\n") is None
    assert vagrant_error("") is None


def test_a_failed_machine_readable_call_says_what_vagrant_said(tmp_path: Path) -> None:
    """Vagrant prints the error of `status --machine-readable` on stdout, which python-vagrant captures."""
    tv = make_vagrant(tmp_path, f"cat <<'EOF'\n{NO_ENVIRONMENT}EOF\nexit 1\n")
    with pytest.raises(RemoteError) as info:
        tv.status()
    message = str(info.value)
    assert message.startswith("`vagrant status --machine-readable` failed (exit 1):\n  A Vagrant environment")
    assert "\n  command. Run `vagrant init`" in message
    assert "error-exit" in tv.log_path.read_text()  # and the log keeps it


def test_a_failure_shows_what_this_call_printed_not_an_earlier_one(tmp_path: Path) -> None:
    body = 'if [ "$1" = up ]; then echo "earlier noise"; exit 0; fi\necho "its own error" >&2\nexit 1\n'
    tv = make_vagrant(tmp_path, body)
    tv.up()
    with pytest.raises(RemoteError) as info:
        tv.halt()
    assert "its own error" in str(info.value)
    assert "earlier noise" not in str(info.value)


# --- ssh_config: written by this process, 0600 -------------------------------------------

VAGRANT_SSH_CONFIG = "Host registry\n  HostName 127.0.0.1\n  Port 2222\n  User vagrant\n"


class FakeVagrant:
    def __init__(self) -> None:
        self.calls = 0

    def ssh_config(self) -> str:
        self.calls += 1
        return VAGRANT_SSH_CONFIG


@pytest.fixture
def provider(tmp_path: Path) -> Iterator[VagrantProvider]:
    path = tmp_path / "lab.yml"
    path.write_text((PROJECT / "lab.yml").read_text())
    made = VagrantProvider(load(path, environ={}), Redactor([]))
    made.vagrant = FakeVagrant()  # type: ignore[assignment]
    yield made
    for logger in list(logging.Logger.manager.loggerDict.values()):
        if isinstance(logger, logging.Logger) and logger.name.startswith(f"reglab.{tmp_path}"):
            for handler in list(logger.handlers):
                logger.removeHandler(handler)
                handler.close()


def test_connect_never_uses_an_ssh_config_it_did_not_write(provider: VagrantProvider) -> None:
    """A planted ssh_config with a ProxyCommand would run a program of someone else's choosing."""
    planted = provider.ssh_config_path
    planted.parent.mkdir(parents=True, exist_ok=True)
    planted.write_text("Host registry\n  HostName 127.0.0.1\n  ProxyCommand touch /tmp/reglab-pwned\n")
    machine = provider.connect("registry")
    assert machine.gateway is None
    assert planted.read_text() == VAGRANT_SSH_CONFIG
    assert stat.S_IMODE(planted.stat().st_mode) == 0o600
    provider.connect("client")
    assert provider.vagrant.calls == 1  # once per process, not once per machine


def test_write_ssh_config_is_private_whatever_the_umask(provider: VagrantProvider) -> None:
    previous = os.umask(0)
    try:
        path = provider.write_ssh_config()
    finally:
        os.umask(previous)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_connect_reuses_the_ssh_config_reglab_wrote_in_its_private_folder(provider: VagrantProvider) -> None:
    """A student's `reglab check` must not wait for `vagrant ssh-config` each time (1-2 s)."""
    provider.write_ssh_config()
    provider.ssh_config_path.parent.chmod(0o700)
    again = VagrantProvider(provider.lab, Redactor([]))
    again.vagrant = FakeVagrant()  # type: ignore[assignment]
    again.connect("registry")
    assert again.vagrant.calls == 0
    provider.ssh_config_path.parent.chmod(0o770)  # others could have planted it: not trusted
    third = VagrantProvider(provider.lab, Redactor([]))
    third.vagrant = FakeVagrant()  # type: ignore[assignment]
    third.connect("registry")
    assert third.vagrant.calls == 1


class FakeDocker:
    """`docker ps` / `docker network` as the host would answer them, and what was removed."""

    def __init__(self, containers: list[tuple[str, str, str, str]]) -> None:
        self.containers = containers  # (id, lab name, state folder, network)
        self.commands: list[str] = []

    def run(self, command: str, warn: bool = False, **_kw):  # noqa: ANN003
        from types import SimpleNamespace

        self.commands.append(command)
        if command.startswith("docker ps -a --filter"):
            where = command.split("--filter ", 1)[1].split(" --format")[0].strip("'")
            key, value = where.split("=", 1)
            rows = [c for c in self.containers
                    if (key == "label" and value == f"org.reglab.lab={c[1]}") or (key == "network" and value == c[3])]
            return SimpleNamespace(ok=True, stdout="".join(f"{c[0]}\t{c[1]}\t{c[2]}\n" for c in rows))
        return SimpleNamespace(ok=True, stdout="")


def test_a_lab_name_another_folder_uses_is_refused_naming_that_lab(provider: VagrantProvider) -> None:
    net = f"vagrant_network_{provider.lab.network}"
    provider.host = FakeDocker([("c1", "reglab", "/srv/other/.lab/reglab", net)])  # type: ignore[assignment]
    with pytest.raises(LabError, match="the lab name 'reglab' is already used by the lab in /srv/other"):
        provider.leftovers({"registry": "not_created", "client": "not_created"})
    assert not any(c.startswith("docker rm") for c in provider.host.commands)  # never removes another lab's


def test_a_subnet_another_lab_uses_is_refused(provider: VagrantProvider) -> None:
    net = f"vagrant_network_{provider.lab.network}"
    provider.host = FakeDocker([("c9", "otherlab", "/srv/other/.lab/otherlab", net)])  # type: ignore[assignment]
    with pytest.raises(LabError, match=r"the subnet 192.168.33.0/24 is already used by 'otherlab'"):
        provider.leftovers({"registry": "not_created", "client": "not_created"})


def test_this_labs_own_leftovers_and_unlabelled_ones_are_removed(provider: VagrantProvider) -> None:
    mine = str(provider.lab.state_dir)
    provider.host = FakeDocker([("c1", "reglab", mine, "x"), ("c2", "reglab", "", "x")])  # type: ignore[assignment]
    assert provider.leftovers({"registry": "not_created", "client": "not_created"}) == \
        ["container c1", "container c2", "network vagrant_network_192.168.33.0/24"]  # no other lab's on it
    assert "docker rm -f -v c1 c2" in provider.host.commands


LOCKED_TEXT = ("Vagrant cannot use the requested machine because it is locked! This\\n"
               "means that another Vagrant process is currently reading or modifying")


def test_a_command_another_vagrant_locked_out_is_run_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A class boots labs at once; Vagrant's host-wide `fpcollision` lock makes some fail at random."""
    monkeypatch.setattr(machines, "LOCK_PAUSE", (0.0, 0.01))
    body = (f"n=$(cat {tmp_path}/n 2>/dev/null || echo 0); echo $((n + 1)) > {tmp_path}/n\n"
            f"if [ $n -lt 2 ]; then echo '1,,error-exit,Vagrant::Errors::MachineActionLockedError,{LOCKED_TEXT}'; "
            "exit 1; fi\necho up\n")
    tv = make_vagrant(tmp_path, body)
    tv.up()
    assert (tmp_path / "n").read_text().strip() == "3"  # twice locked out, then done


def test_a_lock_that_outlasts_the_bound_is_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(machines, "LOCK_PAUSE", (0.0, 0.01))
    tv = make_vagrant(tmp_path, f"echo '1,,error-exit,Vagrant::Errors::MachineActionLockedError,{LOCKED_TEXT}'\n"
                                "exit 1\n", timeout=1)
    with pytest.raises(RemoteError, match="because it is locked"):
        tv.up()


def test_other_failures_are_not_run_again(tmp_path: Path) -> None:
    tv = make_vagrant(tmp_path, f"echo x >> {tmp_path}/calls\necho '1,,error-exit,E,the box is missing'\nexit 1\n")
    with pytest.raises(RemoteError, match="the box is missing"):
        tv.up()
    assert (tmp_path / "calls").read_text().count("x") == 1


class FakeIptables:
    """docker inspect and iptables as a root host would answer them; the rules kept in a list."""

    def __init__(self, ips: dict[str, str]) -> None:
        self.ips = ips
        self.rules = ["-A DOCKER-USER -j RETURN", "-A DOCKER-USER -s 172.17.0.9/32 -m comment --comment other -j DROP"]

    def run(self, command: str, warn: bool = False, **_kw):  # noqa: ANN003
        from types import SimpleNamespace

        if command.startswith("docker inspect"):
            import shlex

            names = shlex.split(command)[4:]
            return SimpleNamespace(ok=True, stdout="".join(self.ips[n] + "\n" for n in names if n in self.ips))
        if " -S DOCKER-USER" in command:
            return SimpleNamespace(ok=True, stdout="-N DOCKER-USER\n" + "\n".join(self.rules) + "\n")
        words = command.split()
        if "-I" in words:
            rule = " ".join(words[words.index("-I") + 1:])
            side, ip = ("-s", words[words.index("-s") + 1]) if "-s" in words else ("-d", words[words.index("-d") + 1])
            rule = rule.replace(f"{side} {ip}", f"{side} {ip}/32")
            tag = words[words.index("--comment") + 1]
            self.rules.insert(0, "-A " + rule.replace(f"--comment {tag}", f'--comment "{tag}"'))  # as iptables -S
        if "-D" in words:
            import shlex

            spec = shlex.split(command)
            wanted = " ".join(spec[spec.index("-D") + 1:])
            self.rules = [r for r in self.rules if " ".join(shlex.split(r)[1:]) != wanted]
            return SimpleNamespace(ok=True, stdout="")
        return SimpleNamespace(ok=True, stdout="")


def test_a_labs_machines_are_kept_apart_on_dockers_bridge_and_the_rules_go_with_it(
        provider: VagrantProvider, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(machines.os, "geteuid", lambda: 0)
    monkeypatch.setattr(machines.shutil, "which", lambda name: f"/usr/sbin/{name}")
    host = FakeIptables({"reglab-registry": "172.17.0.2", "reglab-client": "172.17.0.3"})
    provider.host = host  # type: ignore[assignment]
    assert provider.isolate() == ["172.17.0.2", "172.17.0.3"]
    ours = [r for r in host.rules if "reglab-lab:reglab" in r]
    assert len(ours) == 4 and all("-i docker0 -o docker0" in r and r.endswith("-j DROP") for r in ours)
    assert provider.isolate() == ["172.17.0.2", "172.17.0.3"]  # up again: the old rules replaced, not doubled
    assert len([r for r in host.rules if "reglab-lab:reglab" in r]) == 4
    assert provider.unisolate() == 4
    assert host.rules == ["-A DOCKER-USER -j RETURN",
                          "-A DOCKER-USER -s 172.17.0.9/32 -m comment --comment other -j DROP"]  # others' stay


def test_without_iptables_rights_the_lab_runs_and_says_what_is_not_apart(provider: VagrantProvider,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    said: list[str] = []
    provider.say = said.append
    monkeypatch.setattr(machines.os, "geteuid", lambda: 1000)
    assert provider.isolate() == []
    assert "can reach each other over Docker's default bridge" in said[0]


def test_a_lock_message_above_a_long_output_is_still_seen(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`vagrant ssh-config` prints one machine's config after the other's lock error (seen in a class of 4)."""
    monkeypatch.setattr(machines, "LOCK_PAUSE", (0.0, 0.01))
    body = (f"n=$(cat {tmp_path}/n 2>/dev/null || echo 0); echo $((n + 1)) > {tmp_path}/n\n"
            "if [ $n -lt 1 ]; then echo 'Vagrant cannot use the requested machine because it is locked! This' >&2; "
            "for i in $(seq 30); do echo \"  Option$i value\"; done; exit 1; fi\necho 'Host registry'\n")
    tv = make_vagrant(tmp_path, body)
    assert tv.ssh_config().startswith("Host registry")


def test_vagrants_machine_index_race_is_run_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Seen in a class of four: two Vagrants delete the same machine-index lock file; up fails, harmlessly."""
    monkeypatch.setattr(machines, "LOCK_PAUSE", (0.0, 0.01))
    race = ("No such file or directory @ apply2files - /root/.vagrant.d/data/machine-index/da585f96.lock")
    body = (f"n=$(cat {tmp_path}/n 2>/dev/null || echo 0); echo $((n + 1)) > {tmp_path}/n\n"
            f"if [ $n -lt 1 ]; then echo 'An unexpected error occurred' >&2; echo '{race}' >&2; exit 1; fi\n")
    make_vagrant(tmp_path, body).up()
    assert (tmp_path / "n").read_text().strip() == "2"


def test_vagrants_machine_index_lock_of_a_new_machine_is_run_again(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Seen three times in a class of 8 (the soak benchmark): one lab's `vagrant up` of its client."""
    monkeypatch.setattr(machines, "LOCK_PAUSE", (0.0, 0.01))
    body = (f"n=$(cat {tmp_path}/n 2>/dev/null || echo 0); echo $((n + 1)) > {tmp_path}/n\n"
            "if [ $n -lt 1 ]; then echo 'An unexpected error occurred when executing the action on the' >&2; "
            "echo 'Failed to lock new machine: client' >&2; exit 1; fi\n")
    make_vagrant(tmp_path, body).up()
    assert (tmp_path / "n").read_text().strip() == "2"


def test_attached_addresses_reads_docker_inspects_networks() -> None:
    from lab.machines.providers.vagrant import attached_addresses

    both = ('{"bridge":{"IPAddress":"172.17.0.7","Gateway":"172.17.0.1"},'
            '"vagrant_network_10.77.3.0/24":{"IPAddress":"10.77.3.11"}}')
    assert attached_addresses(both) == {"172.17.0.7", "10.77.3.11"}
    assert attached_addresses('{"bridge":{"IPAddress":"172.17.0.7"}}') == {"172.17.0.7"}
    assert attached_addresses("") == set() and attached_addresses("not json") == set()


class FakeNetworks:
    """docker inspect and docker network connect as the host would answer them."""

    def __init__(self, attached: dict[str, str]) -> None:
        self.attached = attached  # container -> its Networks as JSON
        self.commands: list[str] = []

    def run(self, command: str, warn: bool = False, **_kw):  # noqa: ANN003
        from types import SimpleNamespace

        self.commands.append(command)
        if command.startswith("docker inspect"):
            return SimpleNamespace(ok=True, stdout=self.attached[command.split()[-1]] + "\n")
        return SimpleNamespace(ok=True, stdout="")


def test_a_machine_vagrant_started_without_its_private_network_is_connected_to_it(
        provider: VagrantProvider) -> None:
    """Seen: labs booting at once, `vagrant up` run again after a lock started the client without
    connecting it; a student's ssh to 10.77.3.11 then said "No route to host"."""
    said: list[str] = []
    provider.say = said.append
    host = FakeNetworks({
        "reglab-registry": '{"bridge":{"IPAddress":"172.17.0.2"},'
                           '"vagrant_network_192.168.33.0/24":{"IPAddress":"192.168.33.10"}}',
        "reglab-client": '{"bridge":{"IPAddress":"172.17.0.3"}}',
    })
    provider.host = host  # type: ignore[assignment]
    assert provider.join_private_network() == ["client"]
    assert host.commands[-1] == ("docker network connect --ip 192.168.33.11 vagrant_network_192.168.33.0/24 "
                                 "reglab-client")
    assert "connected client to the lab's network 192.168.33.0/24" in said[0]
    host.attached["reglab-client"] = '{"vagrant_network_192.168.33.0/24":{"IPAddress":"192.168.33.11"}}'
    host.commands.clear()
    assert provider.join_private_network() == []  # both on it: nothing to do
    assert not any("connect" in c.split()[1:3] for c in host.commands if c.startswith("docker network"))


# --- isolation that holds on any Docker (issue 17, item 4) -------------------------------------------------


def test_the_rules_addresses_are_read_back_only_as_whole_pairs() -> None:
    tag = "reglab-lab:net101-ada"
    text = ("-N DOCKER-USER\n"
            f'-A DOCKER-USER -d 172.17.0.3/32 -i docker0 -o docker0 -m comment --comment "{tag}" -j DROP\n'
            f'-A DOCKER-USER -s 172.17.0.3/32 -i docker0 -o docker0 -m comment --comment "{tag}" -j DROP\n'
            f'-A DOCKER-USER -s 172.17.0.4/32 -i docker0 -o docker0 -m comment --comment "{tag}" -j DROP\n'
            '-A DOCKER-USER -s 172.17.0.5/32 -i docker0 -o docker0 -m comment --comment "reglab-lab:other" -j DROP\n'
            "-A DOCKER-USER -j RETURN\n")
    assert machines.rule_addresses(text, tag) == {"172.17.0.3"}
    assert machines.rule_addresses("-N DOCKER-USER\n", tag) == set()


def test_rules_are_made_again_when_the_machines_addresses_changed(provider: VagrantProvider,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """Seen after a dockerd restart: the machines came back on other docker0 addresses and the rules
    named the old ones (another lab's, now), so this lab was open."""
    said: list[str] = []
    provider.say = said.append
    monkeypatch.setattr(machines.os, "geteuid", lambda: 0)
    monkeypatch.setattr(machines.shutil, "which", lambda name: f"/usr/sbin/{name}")
    monkeypatch.setattr(provider, "isolation", lambda: None)
    host = FakeIptables({"reglab-registry": "172.17.0.2", "reglab-client": "172.17.0.3"})
    provider.host = host  # type: ignore[assignment]
    provider.isolate()
    assert provider.keep_apart() == []  # as they were: nothing to do
    host.ips = {"reglab-registry": "172.17.0.7", "reglab-client": "172.17.0.2"}  # dockerd restarted
    assert provider.keep_apart() == ["172.17.0.7", "172.17.0.2"]
    assert machines.rule_addresses("\n".join(host.rules), "reglab-lab:reglab") == {"172.17.0.7", "172.17.0.2"}
    assert len([r for r in host.rules if "reglab-lab:reglab" in r]) == 4
    assert "addresses on Docker's bridge changed" in said[-1]


@pytest.mark.parametrize(("setting", "problem"), [
    (None, "br_netfilter module is not loaded"),
    ("0\n", "bridge-nf-call-iptables is 0"),
    ("1\n", None),
])
def test_rules_that_bridged_traffic_never_meets_do_not_count_as_isolation(
        provider: VagrantProvider, monkeypatch: pytest.MonkeyPatch, setting: str | None, problem: str | None) -> None:
    from lab.machines import hostsetup

    said: list[str] = []
    provider.say = said.append
    monkeypatch.setattr(machines.os, "geteuid", lambda: 0)
    monkeypatch.setattr(machines.shutil, "which", lambda name: f"/usr/sbin/{name}")
    monkeypatch.setattr(hostsetup, "read_bridge_filtering", lambda path=None: setting)
    provider.host = FakeIptables({"reglab-registry": "172.17.0.2", "reglab-client": "172.17.0.3"})  # type: ignore[assignment]
    found = provider.isolation()
    assert (found is None) if problem is None else (problem in found and "modprobe br_netfilter" in found)
    provider.isolate()
    assert any("can reach each other" in s for s in said) is (problem is not None)
    assert (provider.notes() == []) is (problem is None)


def test_without_root_a_lab_is_not_called_isolated(provider: VagrantProvider, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(machines.os, "geteuid", lambda: 1000)
    assert "as root" in (provider.isolation() or "")


class FakeVirsh:
    """The host's shell commands for `virsh net-*`: which networks exist; records what was run."""

    def __init__(self, networks: set[str]) -> None:
        self.networks = networks
        self.commands: list[str] = []

    def run(self, command: str, warn: bool = False, **_kw):  # noqa: ANN003
        from types import SimpleNamespace

        self.commands.append(command)
        name = command.split()[-1].strip("'")
        ok = name in self.networks
        if " net-undefine " in command:
            self.networks.discard(name)
        return SimpleNamespace(ok=ok, stdout="", stderr="")


def libvirt_lab(folder: Path, name: str, monkeypatch: pytest.MonkeyPatch) -> VagrantProvider:
    from lab.machines import hostsetup

    monkeypatch.setattr(hostsetup, "host_libvirt_driver", lambda: "qemu")
    monkeypatch.setenv("REGLAB_CACHE", str(folder.parent / "cache"))
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "lab.yml"
    path.write_text(f"name: {name}\nprovider: libvirt\n")
    made = VagrantProvider(load(path, environ=dict(os.environ)), Redactor([]))
    made.lab.state_dir.mkdir(parents=True, exist_ok=True)
    return made


def test_each_libvirt_lab_gets_a_management_network_of_its_own(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """vagrant-libvirt puts every VM of every lab on 192.168.121.0/24 unless told otherwise."""
    from ipaddress import IPv4Network

    monkeypatch.setattr(machines.hostnets, "host_networks", lambda: [IPv4Network("10.79.0.0/24")])
    monkeypatch.setattr(machines.hostnets, "libvirt_networks", lambda uri: {
        "vagrant-libvirt": [IPv4Network("192.168.121.0/24")], "other": [IPv4Network("10.79.1.0/24")]})
    ada, bob = libvirt_lab(tmp_path / "ada", "ada", monkeypatch), libvirt_lab(tmp_path / "bob", "bob", monkeypatch)
    assert ada.reserve_management_network() == "10.79.2.0/24"
    assert bob.reserve_management_network() == "10.79.3.0/24"  # not ada's, though no network exists yet
    assert ada.reserve_management_network() == "10.79.2.0/24"  # the same lab keeps its own
    assert (ada.vagrant.env["REGLAB_MGMT_NETWORK"], ada.vagrant.env["REGLAB_MGMT_ADDRESS"]) == \
        ("ada-mgmt", "10.79.2.0/24")
    again = libvirt_lab(tmp_path / "ada", "ada", monkeypatch)  # a later command (status, ssh-config) uses it too
    assert again.vagrant.env["REGLAB_MGMT_NETWORK"] == "ada-mgmt"

    monkeypatch.setattr(machines.shutil, "which", lambda name: f"/usr/bin/{name}")
    virsh = FakeVirsh({"ada-mgmt"})  # Vagrant left it (a machine failed to go)
    ada.host = virsh  # type: ignore[assignment]
    assert ada.release_management_network() == ["network ada-mgmt"]
    assert any(" net-destroy ada-mgmt" in c for c in virsh.commands) and virsh.networks == set()
    assert ada.release_management_network() == []  # gone already: nothing to say
    carol = libvirt_lab(tmp_path / "carol", "carol", monkeypatch)
    assert carol.reserve_management_network() == "10.79.2.0/24"  # ada's /24 is free again


def test_the_vagrantfile_gives_libvirt_the_labs_management_network() -> None:
    text = (PROJECT / "lab/machines/Vagrantfile").read_text()
    assert 'lv.management_network_name = management_network' in text
    assert 'lv.management_network_address = management_address' in text
    assert 'ENV["REGLAB_MGMT_NETWORK"]' in text and 'ENV["REGLAB_MGMT_ADDRESS"]' in text


def test_vagrant_runs_with_the_labs_own_platform_not_the_environments(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """The Vagrantfile reads $REGLAB_PLATFORM: it must be the lab's resolved platform (a matrix's lab file
    said debian13 while tox's environment said debian12, and Vagrant booted Debian 12)."""
    from lab.machines.providers.vagrant import vagrant_env

    monkeypatch.setenv("REGLAB_PLATFORM", "debian12")
    lab = type("Lab", (), {"source": tmp_path / "lab.yml", "state_dir": tmp_path, "provider": "docker",
                           "platform": "debian13"})()
    assert vagrant_env(lab)["REGLAB_PLATFORM"] == "debian13"
