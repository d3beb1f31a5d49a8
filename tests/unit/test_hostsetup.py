"""Host setup decides from what is usable, not from what is on PATH (issue 7, item 1)."""

from __future__ import annotations

from pathlib import Path

import pytest

from lab.common.errors import LabError, LabFailure
from lab.machines import hostsetup


@pytest.fixture
def host(monkeypatch):
    """A host with a docker client on PATH and nothing else, like a fresh machine of CI's kind."""
    tools = {"docker": "/usr/local/bin/docker", "ssh": "/usr/bin/ssh"}
    monkeypatch.setattr(hostsetup.shutil, "which", lambda name: tools.get(name))
    monkeypatch.setattr(hostsetup, "docker_answers", lambda: False)
    installed: list[list[str]] = []

    def fake_install(packages, log):
        installed.append(packages)
        tools.update({"vagrant": "/usr/bin/vagrant", "dockerd": "/usr/sbin/dockerd", "debootstrap": "/x"})

    monkeypatch.setattr(hostsetup, "install", fake_install)
    monkeypatch.setattr(hostsetup, "can_install", lambda: True)
    started: list[Path] = []
    monkeypatch.setattr(hostsetup, "start_docker", started.append)
    return tools, installed, started


def test_a_docker_client_without_a_daemon_gets_docker_io_installed_and_started(host, tmp_path):
    tools, installed, started = host
    provider = hostsetup.setup("docker", tmp_path, lambda _: None)
    assert provider == "docker"
    assert installed == [["vagrant", "docker.io", "debootstrap"]]
    assert started == [tmp_path / "dockerd.log"]


def test_a_daemon_that_answers_needs_nothing(host, tmp_path, monkeypatch):
    tools, installed, started = host
    tools.update({"vagrant": "/v", "debootstrap": "/d"})
    monkeypatch.setattr(hostsetup, "docker_answers", lambda: True)
    hostsetup.setup("docker", tmp_path, lambda _: None)
    assert installed == [] and started == []


def test_a_host_that_cannot_install_is_told_what_to_install(host, tmp_path, monkeypatch):
    monkeypatch.setattr(hostsetup, "can_install", lambda: False)
    with pytest.raises(LabError, match=r"apt-get install --no-install-recommends vagrant docker.io debootstrap"):
        hostsetup.setup("docker", tmp_path, lambda _: None)


def test_a_failed_apt_step_is_one_message_naming_the_log(tmp_path, monkeypatch):
    log = tmp_path / "hostsetup.log"
    with pytest.raises(LabFailure, match=r"false failed \(exit 1\); see .*hostsetup.log"):
        hostsetup.run_step(["false"], "false", 10, log)
    with pytest.raises(LabFailure, match="could not start"):
        hostsetup.run_step(["/nonexistent/tool"], "tool", 10, log)


def test_main_turns_errors_into_exit_codes_without_a_traceback(monkeypatch, tmp_path, capsys):
    monkeypatch.chdir(tmp_path)

    def broken(provider, log_dir, say, browser=False):
        raise LabFailure("apt-get update failed (exit 100); see .lab/logs/hostsetup.log")

    monkeypatch.setattr(hostsetup, "setup", broken)
    assert hostsetup.main() == 1
    err = capsys.readouterr().err
    assert err.startswith("reglab: failed: apt-get update failed") and "Traceback" not in err
    assert (tmp_path / ".lab").stat().st_mode & 0o777 == 0o700


def test_libvirt_driver_needs_hardware_virtualisation_not_only_dev_kvm():
    """Here /dev/kvm exists but the CPU offers no vmx/svm: a stock kernel runs only under TCG."""
    assert hostsetup.libvirt_driver("flags\t\t: fpu vme sse2 avx2\n", kvm_exists=True) == "qemu"
    assert hostsetup.libvirt_driver("flags\t\t: fpu vmx sse2\n", kvm_exists=True) == "kvm"
    assert hostsetup.libvirt_driver("flags\t\t: fpu svm sse2\n", kvm_exists=False) == "qemu"


def test_qemu_conf_gets_qemu_as_root_once():
    stock = '#user = "libvirt-qemu"\n#group = "libvirt-qemu"\nsecurity_driver = "none"\n'
    changed = hostsetup.qemu_conf_as_root(stock)
    assert 'user = "root"' in changed and 'group = "root"' in changed
    assert '#user = "libvirt-qemu"' in changed and 'security_driver = "none"' in changed
    assert hostsetup.qemu_conf_as_root(changed) is None
    assert hostsetup.qemu_conf_as_root('user = "libvirt-qemu"\ngroup = "root"\n').count('user = "root"') == 1


def test_libvirt_needs_its_packages(monkeypatch):
    monkeypatch.setattr(hostsetup, "dpkg_installed", lambda package: package != "vagrant-libvirt")
    missing = [n.package for n in hostsetup.needs("libvirt") if not n.usable() and n.package in
               hostsetup.LIBVIRT_PACKAGES]
    assert missing == ["vagrant-libvirt"]


def test_browser_adds_debian_chromium_to_what_the_host_needs() -> None:
    """`tox -e e2e` drives the class dashboard in Chromium: hostsetup installs it with --browser."""
    assert "chromium" not in [n.package for n in hostsetup.needs("docker")]
    assert "chromium" in [n.package for n in hostsetup.needs("docker", browser=True)]


def test_an_unknown_argument_is_exit_2_naming_it(capsys) -> None:
    assert hostsetup.main(["--brwoser"]) == 2
    assert "unknown argument '--brwoser'" in capsys.readouterr().err


def test_bridge_filtering_is_read_from_proc_and_named_when_off() -> None:
    assert "br_netfilter module is not loaded" in hostsetup.bridge_filtering_problem(None)
    assert "bridge-nf-call-iptables is 0" in hostsetup.bridge_filtering_problem("0\n")
    assert hostsetup.bridge_filtering_problem("1\n") is None


def test_setup_turns_bridge_filtering_on_and_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    setting = tmp_path / "bridge-nf-call-iptables"
    ran: list[list[str]] = []

    def run_step(command, what, timeout, log):  # noqa: ANN001, ARG001
        ran.append(command)
        if command[-1].startswith("net.bridge"):
            setting.write_text("1\n")

    monkeypatch.setattr(hostsetup, "run_step", run_step)
    monkeypatch.setattr(hostsetup.os, "geteuid", lambda: 0)
    said: list[str] = []
    assert hostsetup.enable_bridge_filtering(tmp_path / "log", said.append, setting) is True
    assert ran == [["modprobe", "br_netfilter"], ["sysctl", "-w", "net.bridge.bridge-nf-call-iptables=1"]]
    assert "br_netfilter module is not loaded" in said[0] and "turning it on" in said[0]
    ran.clear()
    assert hostsetup.enable_bridge_filtering(tmp_path / "log", said.append, setting) is True and ran == []


def test_bridge_filtering_that_stays_off_is_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    setting = tmp_path / "bridge-nf-call-iptables"
    setting.write_text("0\n")

    def refused(command, what, timeout, log):  # noqa: ANN001, ARG001
        raise LabFailure(f"{what} failed (exit 1)")

    monkeypatch.setattr(hostsetup, "run_step", refused)
    said: list[str] = []
    assert hostsetup.enable_bridge_filtering(tmp_path / "log", said.append, setting) is False
    assert "could not" in said[-1]


def test_a_fuse_mount_whose_daemon_died_is_stale_and_other_paths_are_not(tmp_path: Path) -> None:
    import errno

    def gone(path: Path) -> object:
        raise OSError(errno.ENOTCONN, "Transport endpoint is not connected", str(path))

    def missing(path: Path) -> object:
        raise FileNotFoundError(errno.ENOENT, "No such file or directory", str(path))

    assert hostsetup.stale_mount(Path("/var/lib/lxcfs"), stat=gone)
    assert not hostsetup.stale_mount(Path("/var/lib/lxcfs"), stat=missing)
    assert not hostsetup.stale_mount(tmp_path)


def test_a_host_path_that_fails_is_one_line_exit_1(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    import errno
    monkeypatch.chdir(tmp_path)

    def broken(*_args: object) -> str:
        raise OSError(errno.ENOTCONN, "Transport endpoint is not connected", "/var/lib/lxcfs")

    monkeypatch.setattr(hostsetup, "setup", broken)
    assert hostsetup.main([]) == 1
    err = capsys.readouterr().err
    assert err.strip() == "reglab: failed: Transport endpoint is not connected (/var/lib/lxcfs)"
