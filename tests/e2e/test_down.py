"""Last: `reglab down` leaves no machine and no network behind."""

import json
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
    elif lab.provider == "incus":
        from lab.machines import incus

        def listing(*args: str) -> list[dict]:
            return json.loads(subprocess.run(["incus", *args, "--format", "json"], capture_output=True, text=True,
                                             timeout=60, check=True).stdout)

        state = str(lab.state_dir)
        assert not [i["name"] for i in listing("list") if (i.get("config") or {}).get(incus.STATE_KEY) == state]
        bridge = incus.bridge_name(state)
        assert bridge not in [n["name"] for n in listing("network", "list")]
        assert not [i for i in listing("image", "list") if (i.get("properties") or {}).get(incus.STATE_KEY) == state]
        rules = subprocess.run(["iptables", "-S"], capture_output=True, text=True, timeout=60, check=True).stdout
        assert f"{incus.RULE_TAG}:{bridge}" not in rules
    else:
        pytest.fail(f"no check of what down leaves for the {lab.provider} provider")
    status = reglab("status")
    assert "running" not in status.out
