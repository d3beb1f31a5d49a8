"""Last: `reglab down` leaves no container and no network behind."""

import subprocess

import pytest

pytestmark = pytest.mark.e2e


def test_down_leaves_no_container_and_no_network(lab_session, reglab):
    lab = lab_session.lab
    result = reglab("down")
    assert result.status == 0, result.err
    containers = subprocess.run(
        ["docker", "ps", "-aq", "--filter", f"label=org.reglab.lab={lab.name}"],
        capture_output=True, text=True, timeout=60, check=True,
    ).stdout.split()
    assert containers == []
    networks = subprocess.run(["docker", "network", "ls", "--format", "{{.Name}}"],
                              capture_output=True, text=True, timeout=60, check=True).stdout.split()
    assert f"vagrant_network_{lab.network}" not in networks
    status = reglab("status")
    assert "running" not in status.out
