"""Unit tests for `provider: ssh`: the lab file's machine keys, the ssh_config reglab writes,
what `up` says when a machine is not ready, host keys trusted on first use, and the
cleanup that leaves a given machine's own work alone. No machine is reached."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from types import SimpleNamespace

import paramiko
import pytest

from lab.common.errors import ConfigError, LabError, RemoteError
from lab.common.sshkeys import new_key
from lab.engine import cleanup
from lab.machines.providers import for_lab
from lab.machines.providers.ssh import SSHProvider, host_block, missing_sudo, ssh_config_text
from lab.machines.remote import HostKeyNotPinned, Machine, TrustFirstUse, known_hosts_name
from lab.model import manifest
from lab.model.credentials import Redactor
from lab.model.lab import Lab, default_scenario
from lab.model.labfile import load


def key_file(folder: Path, name: str = "id_lab", mode: int = 0o600) -> Path:
    path = folder / name
    new_key(path)
    path.chmod(mode)
    return path


def given_lab(tmp_path: Path, machines: str | None = None) -> Lab:
    key_file(tmp_path)
    machines = machines or (
        "  registry: {ip: 10.20.0.5, user: teacher, identity_file: id_lab}\n"
        "  client: {ip: 10.30.0.7, host: pc7.school.example, port: 2222, user: teacher}\n"
    )
    path = tmp_path / "lab.yml"
    path.write_text("provider: ssh\nmachines:\n" + machines)
    return load(path, environ={})


# --- the lab file ---------------------------------------------------------------


def test_given_machines_say_where_and_as_whom_reglab_logs_in(tmp_path: Path) -> None:
    lab = given_lab(tmp_path)
    registry, client = lab.machines
    assert (registry.host, registry.port, registry.user) == ("10.20.0.5", 22, "teacher")  # host defaults to ip
    assert registry.identity_file == tmp_path / "id_lab"  # relative to the lab file
    assert (client.host, client.port, client.identity_file) == ("pc7.school.example", 2222, None)
    # The school's machines need not share a /24, nor avoid .1: they are not on a network reglab makes.
    assert client.ip == "10.30.0.7"


@pytest.mark.parametrize(
    ("machines", "key_path", "words"),
    [
        ("  registry: {ip: 10.0.0.5}\n  client: {ip: 10.0.0.6, user: t}\n", "machines.registry", "missing key 'user'"),
        ("  registry: {ip: 10.0.0.5, user: t, identity_file: nope}\n  client: {ip: 10.0.0.6, user: t}\n",
         "machines.registry.identity_file", "cannot read the private key"),
        ("  registry: {ip: 127.0.0.1, user: t}\n  client: {ip: 10.0.0.6, user: t}\n", "machines.registry.ip",
         "the machine's own IPv4 address"),
        ("  registry: {ip: 10.0.0.5, user: '-oProxyCommand=x'}\n  client: {ip: 10.0.0.6, user: t}\n",
         "machines.registry.user", "a user name"),
        ("  registry: {ip: 10.0.0.5, user: t, host: '-x'}\n  client: {ip: 10.0.0.6, user: t}\n",
         "machines.registry.host", "a host name"),
        ("  registry: {ip: 10.0.0.5, user: t, port: 0}\n  client: {ip: 10.0.0.6, user: t}\n",
         "machines.registry.port", "a port number"),
        ("  registry: {ip: 10.0.0.5, user: t, hots: x}\n  client: {ip: 10.0.0.6, user: t}\n",
         "machines.registry.hots", "unknown key"),
    ],
    ids=["no-user", "no-key-file", "loopback", "option-as-user", "option-as-host", "bad-port", "misspelt"],
)
def test_a_bad_given_machine_is_one_config_error(tmp_path: Path, machines: str, key_path: str, words: str) -> None:
    with pytest.raises(ConfigError) as info:
        given_lab(tmp_path, machines)
    assert info.value.path == key_path and words in str(info.value), str(info.value)


def test_a_key_others_can_read_is_refused_as_ssh_would(tmp_path: Path) -> None:
    key_file(tmp_path, "open_key", 0o644)
    with pytest.raises(ConfigError, match="readable by others.*chmod 600"):
        given_lab(tmp_path, "  registry: {ip: 10.0.0.5, user: t, identity_file: open_key}\n"
                            "  client: {ip: 10.0.0.6, user: t}\n")


def encrypted_key(path: Path) -> Path:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    path.write_bytes(Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
        serialization.BestAvailableEncryption(b"a passphrase")))
    path.chmod(0o600)
    return path


def rsa_pem_key(path: Path, password: bytes | None = None) -> Path:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    encryption = (serialization.BestAvailableEncryption(password) if password
                  else serialization.NoEncryption())
    path.write_bytes(rsa.generate_private_key(65537, 2048).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, encryption))
    path.chmod(0o600)
    return path


def garbage_key(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    path.chmod(0o600)
    return path


BAD_KEYS = [
    pytest.param(encrypted_key, "encrypted key: use an unencrypted key", id="encrypted-openssh"),
    pytest.param(lambda p: rsa_pem_key(p, b"a passphrase"), "encrypted key: use an unencrypted key",
                 id="encrypted-pem"),
    pytest.param(lambda p: garbage_key(p, b"not really a key\n"), "not a private key paramiko can read",
                 id="text"),
    pytest.param(lambda p: garbage_key(p, os.urandom(200)), "not a private key paramiko can read", id="binary"),
    pytest.param(lambda p: garbage_key(p, b""), "not a private key paramiko can read", id="empty"),
    pytest.param(lambda p: garbage_key(p, new_key(p.with_name("real")).encode() + b"\n"),
                 "not a private key paramiko can read", id="public-key"),
]


@pytest.mark.parametrize(("make", "words"), BAD_KEYS)
@pytest.mark.parametrize("from_path", [True, False], ids=["from_path", "per-class"])
def test_a_key_paramiko_cannot_use_is_a_config_error_naming_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, make, words: str, from_path: bool) -> None:  # noqa: ANN001
    """Such a key was only found at login, reported as a machine that "does not answer"."""
    if not from_path:  # paramiko before 3.2: each key class tries the file
        monkeypatch.delattr(paramiko.PKey, "from_path", raising=False)
    key = make(tmp_path / "bad_key")
    with pytest.raises(ConfigError) as info:
        given_lab(tmp_path, "  registry: {ip: 10.0.0.5, user: t, identity_file: bad_key}\n"
                            "  client: {ip: 10.0.0.6, user: t}\n")
    assert info.value.path == "machines.registry.identity_file"
    assert f"{key}: {words}" in str(info.value), str(info.value)


@pytest.mark.parametrize("from_path", [True, False], ids=["from_path", "per-class"])
def test_unencrypted_keys_of_each_kind_load(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, from_path: bool) -> None:
    if not from_path:
        monkeypatch.delattr(paramiko.PKey, "from_path", raising=False)
    rsa_pem_key(tmp_path / "rsa_key")
    lab = given_lab(tmp_path, "  registry: {ip: 10.0.0.5, user: t, identity_file: rsa_key}\n"
                              "  client: {ip: 10.0.0.6, user: t, identity_file: id_lab}\n")
    assert [m.identity_file.name for m in lab.machines] == ["rsa_key", "id_lab"]


def test_an_encrypted_key_is_exit_2_at_the_command_line(tmp_path: Path) -> None:
    import io

    from lab.cli.main import main

    key_file(tmp_path)
    encrypted_key(tmp_path / "locked")
    lab = tmp_path / "lab.yml"
    lab.write_text("provider: ssh\nmachines:\n  registry: {ip: 10.0.0.5, user: t, identity_file: locked}\n"
                   "  client: {ip: 10.0.0.6, user: t}\n")
    out, err = io.StringIO(), io.StringIO()
    assert main(["--lab", str(lab), "status"], stdout=out, stderr=err) == 2
    assert err.getvalue() == (f"reglab: error: {lab}: machines.registry.identity_file: {tmp_path / 'locked'}: "
                              "encrypted key: use an unencrypted key (or leave identity_file out and add the key "
                              "to ssh-agent)\n")


def test_a_huge_key_file_is_refused_unread(tmp_path: Path) -> None:
    garbage_key(tmp_path / "big", b"#" * (65 * 1024))
    with pytest.raises(ConfigError, match="larger than 64 KiB: not a private key"):
        given_lab(tmp_path, "  registry: {ip: 10.0.0.5, user: t, identity_file: big}\n"
                            "  client: {ip: 10.0.0.6, user: t}\n")


def test_ssh_keys_belong_to_the_ssh_provider_only(tmp_path: Path) -> None:
    path = tmp_path / "lab.yml"
    path.write_text("provider: docker\nmachines:\n  registry: {ip: 192.168.33.10, user: t}\n"
                    "  client: {ip: 192.168.33.11}\n")
    with pytest.raises(ConfigError, match="only for `provider: ssh`"):
        load(path, environ={})


def test_the_lab_file_picks_the_ssh_provider(tmp_path: Path) -> None:
    assert isinstance(for_lab(given_lab(tmp_path), Redactor([])), SSHProvider)


# --- the ssh_config -----------------------------------------------------------------


def test_ssh_config_has_one_host_per_machine_with_its_own_known_hosts(tmp_path: Path) -> None:
    text = ssh_config_text(given_lab(tmp_path), tmp_path / "kh")
    registry, client = text.split("\n\n")
    assert registry.splitlines()[:4] == ["Host registry", "  HostName 10.20.0.5", "  Port 22", "  User teacher"]
    assert f'IdentityFile "{tmp_path / "id_lab"}"' in registry and "IdentitiesOnly yes" in registry
    assert "HostName pc7.school.example" in client and "Port 2222" in client and "IdentityFile" not in client
    assert text.count(f'UserKnownHostsFile "{tmp_path / "kh"}"') == 2


def openssh_words(line: str) -> list[str]:
    """An ssh_config line split as OpenSSH splits it (misc.c argv_split: double quotes group words), then
    each `%%` read back as `%` (its token expansion): what ssh would use. A pure stand-in for `ssh -G`."""
    words, word, quoted, started = [], "", False, False
    for char in line.strip():
        if char == '"':
            quoted, started = not quoted, True
        elif char.isspace() and not quoted:
            if started:
                words.append(word)
            word, started = "", False
        else:
            word, started = word + char, True
    assert not quoted, f"unbalanced quotes: {line!r}"
    if started:
        words.append(word)
    return [w.replace("%%", "%") for w in words]


def test_paths_with_a_space_and_a_percent_sign_reach_openssh_whole(tmp_path: Path) -> None:
    """A lab folder with a space broke every bundle and `reglab ssh` (`extra arguments at end of line`);
    `%` is an OpenSSH token. (tests/e2e/test_ssh_provider.py proves it with the system ssh.)"""
    folder = tmp_path / "my lab %h 100%"
    folder.mkdir()
    text = ssh_config_text(given_lab(folder), folder / "known hosts")
    lines = {openssh_words(line)[0]: openssh_words(line)[1:] for line in text.splitlines() if line.strip()}
    assert lines["IdentityFile"] == [str(folder / "id_lab")]
    assert lines["UserKnownHostsFile"] == [str(folder / "known hosts")]
    # paramiko's own copy: quoted (paramiko strips the quotes), `%` as it is, the key handed over directly.
    own = ssh_config_text(given_lab(folder), folder / "known hosts", openssh=False)
    assert f'UserKnownHostsFile "{folder / "known hosts"}"' in own and "IdentityFile" not in own
    assert paramiko.SSHConfig.from_text(own).lookup("client")["userknownhostsfile"] == str(folder / "known hosts")


def test_a_path_no_ssh_config_can_hold_is_refused_by_name(tmp_path: Path) -> None:
    with pytest.raises(LabError, match="double quote or a line break"):
        host_block("registry", "10.0.0.5", 22, "t", tmp_path / 'a"b')


def test_ssh_config_and_known_hosts_are_private(tmp_path: Path) -> None:
    provider = SSHProvider(given_lab(tmp_path), Redactor([]))
    path = provider.ssh_config()
    assert path.stat().st_mode & 0o777 == 0o600
    assert provider.known_hosts.stat().st_mode & 0o777 == 0o600


# --- up: ready, or exactly what is missing ----------------------------------------------


class FakeMachine:
    def __init__(self, name: str, answer: str) -> None:
        self.name, self.user, self.answer = name, "teacher", answer

    def run(self, command: str, warn: bool = False, timeout: int | None = None):  # noqa: ARG002
        if self.answer == "down":
            raise RemoteError(f"{self.name} does not answer (TimeoutError)")
        ok = self.answer == "ready" or command == "true"
        stderr = {"nosudo": "sudo: a password is required", "nosudoer": "sh: 1: sudo: not found"}.get(self.answer, "")
        return SimpleNamespace(ok=ok, stderr=stderr)

    def abandon(self) -> None:
        pass


def provider_with(tmp_path: Path, answers: dict[str, str]) -> SSHProvider:
    provider = SSHProvider(given_lab(tmp_path), Redactor([]))
    provider.connect = lambda name: FakeMachine(name, answers[name])  # type: ignore[method-assign]
    return provider


def test_up_passes_when_every_machine_answers_with_passwordless_sudo(tmp_path: Path) -> None:
    assert [m.name for m in provider_with(tmp_path, {"registry": "ready", "client": "ready"}).up()] == \
        ["registry", "client"]


def test_up_names_every_machine_that_is_not_ready_and_what_it_lacks(tmp_path: Path) -> None:
    provider = provider_with(tmp_path, {"registry": "nosudo", "client": "down"})
    with pytest.raises(LabError) as info:
        provider.up()
    text = str(info.value)
    assert "registry (teacher@10.20.0.5:22): teacher has no passwordless sudo (sudo said: sudo: a password is " \
           "required); add `teacher ALL=(ALL) NOPASSWD: ALL` in /etc/sudoers.d/" in text
    assert "client (teacher@pc7.school.example:2222) does not answer over SSH" in text


def test_missing_sudo_tells_apart_no_sudo_and_no_rights() -> None:
    assert missing_sudo("t", "sh: 1: sudo: not found\n").startswith("sudo is not installed")
    assert "has no passwordless sudo" in missing_sudo("t", "sudo: a password is required\n")


def test_status_says_which_machines_answer(tmp_path: Path) -> None:
    provider = provider_with(tmp_path, {"registry": "ready", "client": "down"})
    assert [(s.name, s.provider, s.state, s.ip) for s in provider.status()] == [
        ("registry", "ssh", "running", "10.20.0.5"), ("client", "ssh", "unreachable", "10.30.0.7")]


def test_down_forgets_how_to_reach_the_machines_and_never_destroys_them(tmp_path: Path) -> None:
    provider = SSHProvider(given_lab(tmp_path), Redactor([]))
    provider.ssh_config()
    assert not provider.makes_machines
    removed = provider.down()
    assert not provider.ssh_config_path.exists() and not provider.known_hosts.exists()
    assert len(removed) == 2


# --- host keys: trusted on first use, refused when changed -------------------------------


def test_a_first_seen_host_key_is_kept_and_a_changed_one_refused(tmp_path: Path) -> None:
    known = tmp_path / "known_hosts"
    policy = TrustFirstUse(known)
    first = paramiko.RSAKey.generate(1024)
    other = paramiko.RSAKey.generate(1024)
    policy.missing_host_key(paramiko.SSHClient(), "[10.0.0.5]:2222", first)
    assert known.read_text().startswith("[10.0.0.5]:2222 ssh-rsa ")
    assert known.stat().st_mode & 0o777 == 0o600
    policy.missing_host_key(paramiko.SSHClient(), "[10.0.0.5]:2222", first)  # the same key again: one line
    assert len(known.read_text().splitlines()) == 1
    with pytest.raises(paramiko.BadHostKeyException):
        TrustFirstUse(known).missing_host_key(paramiko.SSHClient(), "[10.0.0.5]:2222", other)


def test_a_first_seen_host_key_is_shown_as_openssh_prints_its_fingerprint(tmp_path: Path) -> None:
    said: list[str] = []
    key = paramiko.Ed25519Key.from_private_key_file(str(key_file(tmp_path, "hostkey")))
    TrustFirstUse(tmp_path / "kh", say=said.append, name="registry").missing_host_key(
        paramiko.SSHClient(), "[10.0.0.5]:2222", key)
    import base64
    import hashlib
    expected = "SHA256:" + base64.b64encode(hashlib.sha256(key.asbytes()).digest()).decode().rstrip("=")
    assert len(said) == 1 and said[0].startswith(f"registry: host key ssh-ed25519 {expected} "), said


def test_a_pinned_host_key_refuses_any_other_before_it_is_kept(tmp_path: Path) -> None:
    key = paramiko.Ed25519Key.from_private_key_file(str(key_file(tmp_path, "hostkey")))
    other = paramiko.Ed25519Key.from_private_key_file(str(key_file(tmp_path, "other")))
    known = tmp_path / "kh"
    with pytest.raises(HostKeyNotPinned):
        TrustFirstUse(known, pinned=key.fingerprint).missing_host_key(paramiko.SSHClient(), "10.0.0.5", other)
    assert not known.exists() or known.read_text() == ""
    TrustFirstUse(known, pinned=key.fingerprint).missing_host_key(paramiko.SSHClient(), "10.0.0.5", key)
    assert known.read_text().startswith("10.0.0.5 ssh-ed25519 ")


def test_a_kept_key_that_is_not_the_pinned_one_is_refused_without_connecting(tmp_path: Path) -> None:
    other = paramiko.Ed25519Key.from_private_key_file(str(key_file(tmp_path, "other")))
    known = tmp_path / "kh"
    known.write_text(f"[10.0.0.5]:2222 ssh-ed25519 {other.get_base64()}\n")
    config = tmp_path / "cfg"
    config.write_text("Host registry\n  HostName 10.0.0.5\n  Port 2222\n  User t\n")
    import logging
    pin = "SHA256:" + "A" * 43
    machine = Machine("registry", config, logging.getLogger("t"), Redactor([]), known_hosts=known, host_key=pin)
    machine.client.connect = lambda *a, **k: pytest.fail("connected")  # type: ignore[method-assign]
    with pytest.raises(RemoteError) as info:
        machine.open()
    assert pin in str(info.value) and other.fingerprint in str(info.value)
    assert "ssh-keygen -R '[10.0.0.5]:2222'" in str(info.value)


def test_known_hosts_names_a_machine_on_another_port_with_brackets() -> None:
    """`ssh-keygen -R 10.0.0.5` is a silent no-op for a line kept as [10.0.0.5]:2222."""
    assert known_hosts_name("10.0.0.5", 2222) == "[10.0.0.5]:2222"
    assert known_hosts_name("10.0.0.5", 22) == "10.0.0.5"


@pytest.mark.parametrize(("value", "ok"), [
    ("SHA256:" + "Ab+/" * 10 + "xyz", True), ("SHA256:short", False), ("MD5:aa:bb", False), (42, False)])
def test_a_pinned_host_key_is_checked_when_the_lab_file_loads(tmp_path: Path, value: object, ok: bool) -> None:
    import yaml
    machines = ("  registry: {ip: 10.20.0.5, user: teacher, host_key: " + yaml.safe_dump(value).split("\n")[0]
                + "}\n  client: {ip: 10.30.0.7, user: teacher}\n")
    if ok:
        assert given_lab(tmp_path, machines).machines[0].host_key == value
        return
    with pytest.raises(ConfigError) as info:
        given_lab(tmp_path, machines)
    assert info.value.path == "machines.registry.host_key" and str(tmp_path / "lab.yml") in str(info.value)


def test_two_machines_met_at_once_both_keep_their_keys(tmp_path: Path) -> None:
    """paramiko's own AutoAddPolicy would rewrite the file from each client's view, losing one."""
    known = tmp_path / "known_hosts"
    keys = {f"10.0.0.{i}": paramiko.RSAKey.generate(1024) for i in range(2, 8)}
    threads = [threading.Thread(target=TrustFirstUse(known).missing_host_key,
                                args=(paramiko.SSHClient(), host, key)) for host, key in keys.items()]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(line.split()[0] for line in known.read_text().splitlines()) == sorted(keys)


# --- cleanup: a given machine keeps what is not the lab's ------------------------------------


def cleanup_context() -> SimpleNamespace:
    family = SimpleNamespace(ca_anchor_dir="/usr/local/share/ca-certificates", ca_update="update-ca-certificates")
    return SimpleNamespace(family=lambda name: family,
                           images=SimpleNamespace(all=lambda: ["reglab/registry:1", "reglab/nginx:1", "reglab/bb:1"]),
                           lab=SimpleNamespace(domain="myregistrydomain.com", name="givenlab",
                                               manifest=manifest.load(default_scenario())))


def test_reset_on_given_machines_removes_only_what_the_tutorial_makes() -> None:
    given = cleanup.commands(cleanup_context(), "registry", makes_machines=False)
    made = cleanup.commands(cleanup_context(), "registry", makes_machines=True)
    assert "docker ps -aq | xargs -r docker rm -f -v >/dev/null" in made  # every container, on a lab machine
    assert not any(c.startswith("docker ps -aq |") or "prune" in c for c in given)  # never on a given one
    assert any("--filter label=org.reglab.lab=givenlab" in c and "reglab/nginx:1" in c for c in given)
    assert not any("name=^/registry$" in c for c in given)  # a common name is nobody's mark
    assert any(c.startswith("docker logout myregistrydomain.com") for c in given)
    assert not any("/root/.docker" in c for c in given)  # the machine's other logins stay
    assert not any("reglab-restarts.conf" in c for c in given)  # provisioning's own stays on a reset


def test_removing_the_lab_also_takes_what_provisioning_put_there_but_not_packages() -> None:
    removed = cleanup.commands(cleanup_context(), "client", makes_machines=False, remove=True)
    assert any("reglab-restarts.conf" in c for c in removed)
    assert any(c.startswith("rm -rf /var/lib/reglab") for c in removed)
    assert not any("docker rmi reglab/registry:1" in c for c in removed)  # only the tags reglab's load added
    assert any(c.startswith("test -f /var/lib/reglab/loaded-images && sort -u /var/lib/reglab/loaded-images | "
                            "xargs -r docker rmi") for c in removed)
    assert not any("apt-get" in c or "remove" in c.split()[0:1] for c in removed)


def test_the_identity_file_lives_where_cleanup_removes_it() -> None:
    from lab.engine.context import IDENTITY_FILE

    assert os.path.dirname(IDENTITY_FILE) == "/var/lib/reglab"


def test_removing_the_lab_twice_is_no_error() -> None:
    """A class over SSH and the lab on the same machines may both take it away: each command must not care."""
    import subprocess

    for command in cleanup.REMOVE_COMMANDS[1:2]:
        script = command.replace("systemctl daemon-reload", "true").replace("/etc/systemd/system", "/nonexistent")
        assert subprocess.run(["sh", "-c", script], capture_output=True).returncode == 0, script


def test_a_changed_host_key_on_another_port_gives_the_ssh_keygen_line_that_works(tmp_path: Path, monkeypatch) -> None:
    import logging

    from fabric import Connection
    key = paramiko.Ed25519Key.from_private_key_file(str(key_file(tmp_path, "hostkey")))
    other = paramiko.Ed25519Key.from_private_key_file(str(key_file(tmp_path, "other")))
    config = tmp_path / "cfg"
    config.write_text("Host registry\n  HostName 10.0.0.5\n  Port 2222\n  User t\n")

    def changed(self):  # noqa: ANN001, ANN202 - paramiko names the host without its port
        raise paramiko.BadHostKeyException("10.0.0.5", other, key)

    monkeypatch.setattr(Connection, "open", changed)
    (tmp_path / "kh").write_text("")
    machine = Machine("registry", config, logging.getLogger("t"), Redactor([]), known_hosts=tmp_path / "kh")
    with pytest.raises(RemoteError) as info:
        machine.open()
    assert f"ssh-keygen -R '[10.0.0.5]:2222' -f {tmp_path / 'kh'}" in str(info.value)
    assert other.fingerprint in str(info.value) and key.fingerprint in str(info.value)
