"""Incus on real machines: unprivileged, apart from every other lab, warm from a published image,
and gone without a trace after `down`.

Runs in the session's lab on `provider: incus` (tox -e e2e-incus), beside a
second lab of its own on another /24. Every check here fails on a machine
that is not what the provider promises: a privileged container (uid 0 on the
host), a shared bridge or an open FORWARD path (the other lab answers), a
cold start (no published image), or a container, network, image or firewall
rule left behind.
"""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from lab.cli.main import main
from lab.machines import incus

pytestmark = pytest.mark.e2e

OTHER_SUBNET = "10.78.34"
MARK = "31337.25"  # `sleep MARK`: a process a student starts with sudo, found again on the host by it


def _incus_json(*args: str):  # noqa: ANN202
    out = subprocess.run(["incus", *args, "--format", "json"], capture_output=True, text=True, timeout=60, check=True)
    return json.loads(out.stdout)


def _cli(lab_file: Path, *args: str) -> tuple[int, str, str]:
    """The reglab CLI in-process on a lab file of this module's own (the module-scoped second lab)."""
    out, err = io.StringIO(), io.StringIO()
    status = main(["--lab", str(lab_file), "-q", *args], stdout=out, stderr=err)
    return status, out.getvalue(), err.getvalue()


def _reaches(machine, ip: str, port: int = 22) -> bool:  # noqa: ANN001
    """A TCP connection from `machine` to ip:port within 5 s (bash's /dev/tcp: nothing to install)."""
    return machine.run(f"timeout 5 bash -c '</dev/tcp/{ip}/{port}'", warn=True, timeout=30).ok


@pytest.fixture(scope="module")
def incus_lab(lab_session):
    if lab_session.lab.provider != "incus":
        pytest.fail(f"test_incus.py needs the session's lab on incus, not {lab_session.lab.provider} "
                    "(tox -e e2e-incus sets REGLAB_PROVIDER=incus)")
    return lab_session


@pytest.fixture(scope="module")
def other_lab(incus_lab, tmp_path_factory):
    """A second lab on Incus, on a /24 of its own; taken down (and checked gone) by the last test."""
    folder = tmp_path_factory.mktemp("other")
    lab_file = folder / "lab.yml"
    lab_file.write_text(yaml.safe_dump({
        "name": "incusother", "provider": "incus", "images": {"source": incus_lab.lab.images.source},
        "machines": {"registry": {"ip": f"{OTHER_SUBNET}.10"}, "client": {"ip": f"{OTHER_SUBNET}.11"}},
    }))
    started = time.monotonic()
    status, out, err = _cli(lab_file, "up")
    assert status == 0, out + err
    yield lab_file, time.monotonic() - started, out
    _cli(lab_file, "down")  # again, in case the down test did not get to it


def _host_root_uid(instance: str) -> int:
    """The host uid a container's root maps to, from Incus's own record of its idmap."""
    value = subprocess.run(["incus", "config", "get", instance, "volatile.idmap.current"], capture_output=True,
                           text=True, timeout=60, check=True).stdout
    return next(m["Hostid"] for m in json.loads(value) if m["Isuid"] and m["Nsid"] == 0)


def test_machines_are_unprivileged_containers_with_nesting_only(incus_lab):
    for name in incus_lab.provider.names:
        instance = incus_lab.provider.instance(name)
        shown = subprocess.run(["incus", "config", "show", instance, "--expanded"], capture_output=True,
                               text=True, timeout=60, check=True).stdout
        settings = yaml.safe_load(shown)["config"]
        assert settings.get("security.nesting") == "true", settings
        assert settings.get("security.privileged", "false") == "false", settings
        assert settings.get(incus.LAB_KEY) == incus_lab.lab.name, settings
        assert settings.get("security.idmap.isolated") == "true", settings


def test_no_two_machines_share_a_host_uid_for_their_root(incus_lab, other_lab):
    from lab.engine.session import Session

    other = Session.from_file(other_lab[0], lock=False)
    instances = [p.instance(n) for p in (incus_lab.provider, other.provider) for n in p.names]
    roots = {instance: _host_root_uid(instance) for instance in instances}
    assert all(uid >= 100000 for uid in roots.values()), roots
    assert len(set(roots.values())) == len(instances), f"machines share a root uid on the host: {roots}"


def test_a_process_a_student_starts_with_sudo_is_not_root_on_the_host(incus_lab):
    machine = incus_lab.provider.connect("client")
    machine.run(f"sudo -n sh -c 'nohup sleep {MARK} >/dev/null 2>&1 &'", timeout=30)
    try:
        assert machine.run(f"pgrep -u root -f 'sleep {MARK}'", warn=True, timeout=30).ok  # root inside
        found = []
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                if Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[:2] == [b"sleep", MARK.encode()]:
                    found.append(pid)
            except OSError:
                continue
        assert len(found) == 1, found
        status = Path(f"/proc/{found[0]}/status").read_text()
        uids = [int(u) for u in re.search(r"^Uid:\s+(.*)$", status, re.M).group(1).split()]
        # Real, effective, saved and filesystem uid: all in the container's unprivileged range, none 0.
        assert all(u >= 100000 for u in uids), f"sudo in a machine is uid {uids} on the host"
    finally:
        machine.run(f"sudo -n pkill -f 'sleep {MARK}'", warn=True, timeout=30)


def test_another_lab_starts_warm_from_a_published_image(incus_lab, other_lab):
    lab_file, seconds, out = other_lab
    store = incus_lab.warm_store()
    starts = json.loads((incus_lab.lab.state_dir / "state.json").read_text())["starts"]
    key = incus_lab.warm_key(starts["registry"]["base"])
    found = store.find(key)
    assert found, f"no published warm image for key {key.value}"
    status, out, err = _cli(lab_file, "status")
    assert status == 0 and out.count(f"warm ({found})") == 2, out + err
    print(f"\nincus: a second lab booted warm to SSH in {seconds:.1f}s")


def test_one_labs_machines_cannot_reach_anothers(incus_lab, other_lab):
    from lab.engine.session import Session

    lab_file, _, _ = other_lab
    mine = {name: incus_lab.provider.connect(name) for name in incus_lab.provider.names}
    other = Session.from_file(lab_file, lock=False)
    theirs = {name: other.provider.connect(name) for name in other.provider.names}
    # Within a lab: reached (the check can tell a reachable machine).
    assert _reaches(mine["client"], incus_lab.lab.machine("registry").ip)
    assert _reaches(theirs["client"], other.lab.machine("registry").ip)
    # Across labs, both ways, and to the other lab's bridge address (the host on that bridge) too.
    for ip in (f"{OTHER_SUBNET}.10", f"{OTHER_SUBNET}.11"):
        assert not _reaches(mine["client"], ip), f"lab {incus_lab.lab.name} reaches {ip}"
    for spec in incus_lab.lab.machines:
        assert not _reaches(theirs["registry"], spec.ip), f"lab {other.lab.name} reaches {spec.ip}"
    other.lock.release()


def test_down_leaves_no_container_network_image_or_rule_of_the_lab(incus_lab, other_lab):
    from lab.engine.session import Session

    lab_file, _, _ = other_lab
    other = Session.from_file(lab_file, lock=False)
    state = str(other.lab.state_dir)
    bridge = other.provider.bridge
    other.lock.release()
    status, out, err = _cli(lab_file, "down")
    assert status == 0, out + err
    assert not [i["name"] for i in _incus_json("list") if (i.get("config") or {}).get(incus.STATE_KEY) == state]
    assert bridge not in [n["name"] for n in _incus_json("network", "list")]
    assert not [i["fingerprint"] for i in _incus_json("image", "list")
                if (i.get("properties") or {}).get(incus.STATE_KEY) == state]
    rules = subprocess.run(["iptables", "-S"], capture_output=True, text=True, timeout=60, check=True).stdout
    assert f"{incus.RULE_TAG}:{bridge}" not in rules
    # The session's lab is untouched by another lab's down.
    assert incus_lab.provider.running() == ["registry", "client"]
