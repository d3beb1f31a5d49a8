"""Unit tests for lab.portal.gateway's pure parts: key lines, sshd_config, bundles' ssh_config (no sshd)."""

from __future__ import annotations

from pathlib import Path

import pytest

from lab.common.errors import LabError
from lab.portal.gateway import (
    GATEWAY_HOST,
    Entry,
    Machine,
    authorized_keys,
    key_line,
    known_hosts_line,
    parse_ssh_config,
    sshd_config,
    student_ssh_config,
)

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHn4Q2nH0F9m5wQpQ0kq7N0rBr1y1HhU8ZkzGf9c1X2a web1-ada"
BUNDLE = """Host registry
  HostName 10.77.1.10
  Port 22
  User vagrant
  UserKnownHostsFile /c/students/ada/known_hosts
  StrictHostKeyChecking accept-new
  IdentityFile /c/students/ada/id_ed25519
  IdentitiesOnly yes

Host client
  HostName 10.77.1.11
  Port 22
  User vagrant
"""


def test_a_key_opens_only_its_students_machines_and_no_shell() -> None:
    line = key_line(Entry("ada", KEY, ("10.77.1.10:22", "10.77.1.11:22")))
    options, key = line.split(" ", 1)
    assert key == KEY
    assert options == ('restrict,port-forwarding,permitopen="10.77.1.10:22",permitopen="10.77.1.11:22",'
                       'command="/bin/false"')


@pytest.mark.parametrize("key", ['ssh-ed25519 AAAA" ,command="sh', "not a key", f"{KEY}\nssh-ed25519 AAAA x"])
def test_a_key_that_could_smuggle_options_is_refused(key: str) -> None:
    with pytest.raises(LabError, match="not an OpenSSH public key"):
        key_line(Entry("ada", key, ("10.77.1.10:22",)))


def test_a_target_that_could_smuggle_options_is_refused() -> None:
    with pytest.raises(LabError, match="not a HOST:PORT"):
        key_line(Entry("ada", KEY, ('10.77.1.10:22",command="sh',)))


def test_authorized_keys_has_a_line_per_student() -> None:
    text = authorized_keys([Entry("ada", KEY, ("10.77.1.10:22",)), Entry("bob", KEY, ("10.77.2.10:22",))])
    assert [line for line in text.splitlines() if not line.startswith("#")][1].count('permitopen="10.77.2.10:22"') == 1


def test_sshd_config_allows_one_user_keys_only_and_local_forwarding_to_the_labs_only() -> None:
    text = sshd_config(listen="10.79.0.1", port=2222, user="reglab-gw", host_key=Path("/k"), keys_file=Path("/a"),
                       targets=["10.77.1.10:22", "10.77.1.11:22"], strict_modes=True)
    settings = dict(line.split(" ", 1) for line in text.splitlines() if line and not line.startswith("#"))
    assert settings["ListenAddress"] == "10.79.0.1:2222"
    assert settings["AllowUsers"] == "reglab-gw"
    assert settings["AuthenticationMethods"] == "publickey"
    for key in ("PasswordAuthentication", "KbdInteractiveAuthentication", "X11Forwarding", "PermitTTY",
                "AllowAgentForwarding", "AllowStreamLocalForwarding", "PermitTunnel", "UsePAM", "PermitRootLogin"):
        assert settings[key] == "no", key
    assert settings["AllowTcpForwarding"] == "local"
    assert settings["PermitOpen"] == "10.77.1.10:22 10.77.1.11:22"
    assert settings["ForceCommand"] == "/bin/false"
    assert "Subsystem" not in settings  # no sftp
    assert "none" in sshd_config(listen="::1", port=2, user="u", host_key=Path("/k"), keys_file=Path("/a"),
                                 targets=[], strict_modes=False).split("PermitOpen ", 1)[1].splitlines()[0]


def test_parse_the_bundles_ssh_config() -> None:
    machines = parse_ssh_config(BUNDLE)
    assert [(m.name, m.host, m.port) for m in machines] == [("registry", "10.77.1.10", 22),
                                                            ("client", "10.77.1.11", 22)]
    assert "User vagrant" in machines[0].lines


def test_the_students_ssh_config_goes_through_the_gateway_and_pins_its_key(tmp_path: Path) -> None:
    text = student_ssh_config(parse_ssh_config(BUNDLE), "10.79.0.1", 2222, "reglab-gw", Path("/b/id_ed25519"),
                              Path("/b/known_hosts"))
    blocks = text.split("\n\n")
    assert blocks[0].startswith(f"Host {GATEWAY_HOST}\n  HostName 10.79.0.1\n  Port 2222\n  User reglab-gw")
    assert "StrictHostKeyChecking yes" in blocks[0]
    assert all(f"ProxyJump {GATEWAY_HOST}" in block for block in blocks[1:])
    assert len(blocks) == 3
    # parsing it again gives the same machines (a restart rewrites it the same)
    assert parse_ssh_config(text) == parse_ssh_config(BUNDLE)
    assert known_hosts_line("10.79.0.1", 2222, KEY) == f"[10.79.0.1]:2222 {' '.join(KEY.split()[:2])}\n"
    assert Machine("x", "h", 22, ()) == Machine("x", "h", 22, ())
