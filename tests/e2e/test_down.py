"""Last: `reglab down` leaves no machine and no network behind."""

import re
import subprocess

import pytest

pytestmark = pytest.mark.e2e


def _lines(*command: str) -> list[str]:
    return subprocess.run(list(command), capture_output=True, text=True, timeout=60, check=True).stdout.split()


def test_down_leaves_no_machine_and_no_network(lab_session, reglab):
    lab = lab_session.lab
    result = reglab("down")
    assert result.status == 0, result.err
    if lab.provider == "docker":
        assert _lines("docker", "ps", "-aq", "--filter", f"label=org.reglab.lab={lab.name}") == []
        assert f"vagrant_network_{lab.network}" not in _lines("docker", "network", "ls", "--format", "{{.Name}}")
        rules = subprocess.run(["iptables", "-S", "DOCKER-USER"], capture_output=True, text=True, timeout=60,
                               check=True).stdout.splitlines()  # the comment is quoted when it holds ':'
        assert not [r for r in rules if re.search(rf'--comment "?reglab-lab:{re.escape(lab.name)}"?( |$)', r)], rules
    elif lab.provider == "libvirt":
        domains = _lines("virsh", "-c", "qemu:///system", "list", "--all", "--name")
        assert not [d for d in domains if d.startswith(f"{lab.name}-")], domains
        networks = _lines("virsh", "-c", "qemu:///system", "net-list", "--all", "--name")
        assert f"{lab.name}-private" not in networks, networks
    else:
        pytest.fail(f"no check of what down leaves for the {lab.provider} provider")
    status = reglab("status")
    assert "running" not in status.out
