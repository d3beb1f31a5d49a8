"""A two-member Incus cluster made on this host for a test (issue 21), and removed after it.

Two privileged, nested Incus system containers on the host's own Incus, on a
bridge the test makes (10.76.0.0/24, its members at .11 and .12), each
running incusd (Debian 12's incus-base from bookworm-backports, on the host's
own Debian mirror), clustered with a join token. The host's `incus` client
reaches the cluster as the remote `reglab-cltest`, in a client configuration
of the test's own (INCUS_CONF): the host's own client configuration is not
touched. Why nested containers: they are two real incusd members (their own
database, placement, image copies between them) that fit on one host without
VMs (Incus VMs do not start here: no vhost_vsock).

The member image (the machines' Debian image, with Incus installed in it) is
built once and cached under ~/.cache/reglab/incus, keyed by its recipe.

Everything made here is named `reglab-cltest*` and carries `user.reglab-cluster-test`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import subprocess
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from lab.machines import hostapt, incus
from lab.machines.boxes import container
from lab.model.lab import cache_dir
from lab.model.platforms import PLATFORMS

PREFIX = "reglab-cltest"
NETWORK = f"{PREFIX}0"  # 14 characters: a Linux interface name
SUBNET = "10.76.0"  # .1 the host, .11 and .12 the members
REMOTE = PREFIX
MEMBERS = ("m1", "m2")
MARK = "user.reglab-cluster-test=1"
PACKAGES = ("incus-base", "incus-client", "dnsmasq-base")
TIMEOUT = 300

# LXC co-mounts cpu,cpuacct in a container, but this host mounts cgroup v1's cpu and cpuacct apart: the
# member's /sys/fs/cgroup then has an empty cpu,cpuacct folder, and LXC in the member cannot start a
# container ("Failed to open 9/cpuacct: Not a directory"). The member mounts each one the kernel has.
CGROUPS_FIX = """#!/bin/sh
set -e
cd /sys/fs/cgroup
for c in cpu cpuacct; do
  if ! mountpoint -q "$c" 2>/dev/null && grep -qw "$c" /proc/cgroups; then
    mount -o remount,rw /sys/fs/cgroup
    [ -L "$c" ] && rm "$c"
    mkdir -p "$c"
    mount -t cgroup -o "$c" cgroup "$c"
    mount -o remount,ro /sys/fs/cgroup
  fi
done
exit 0
"""
CGROUPS_UNIT = """[Unit]
Description=reglab test cluster: cgroup v1 controllers the host keeps apart, mounted apart
DefaultDependencies=no
After=local-fs.target
Before=incus.service incus.socket

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/usr/local/sbin/reglab-cltest-cgroups

[Install]
WantedBy=multi-user.target
"""


def run(*args: str, stdin: str | None = None, timeout: float = TIMEOUT, check: bool = True,
        env: dict[str, str] | None = None) -> str:
    done = subprocess.run(list(args), input=stdin, capture_output=True, text=True, timeout=timeout, env=env)
    if check and done.returncode != 0:
        raise AssertionError(f"{' '.join(args[:6])}: exit {done.returncode}: {done.stderr.strip()[-800:]}")
    return done.stdout


def host_incus(*args: str, **kwargs) -> str:  # noqa: ANN003
    """The host's own Incus, with the host's own client configuration."""
    env = {k: v for k, v in os.environ.items() if k != "INCUS_CONF"}
    return run("incus", *args, env=env, **kwargs)


def member_name(member: str) -> str:
    return f"{PREFIX}-{member}"


def member_exec(member: str, script: str, timeout: float = TIMEOUT) -> str:
    return host_incus("exec", member_name(member), "--", "sh", "-c", script, timeout=timeout)


MEMBER_OS = PLATFORMS["debian12"]  # Incus 6.0 from bookworm-backports, as hostsetup installs it here


def base_alias() -> str:
    """The machines' Debian 12 image, which the member image starts from."""
    return container.alias(container.recipe_key(MEMBER_OS), MEMBER_OS)


def recipe_key() -> str:
    recipe = {"base": base_alias(), "packages": PACKAGES, "fix": CGROUPS_FIX, "unit": CGROUPS_UNIT, "version": 1}
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:16]


def member_alias() -> str:
    return f"{PREFIX}-member-{recipe_key()}"


def apt_sources() -> str:
    source = hostapt.debian_source(hostapt.host_sources(), "bookworm")
    assert source is not None, "the host's apt configuration names no Debian mirror for bookworm"
    return hostapt.backports_sources(source, "bookworm")


def firewall(add: bool) -> None:
    """DOCKER-USER rules for the test's bridge (Docker's FORWARD policy DROP would drop the members' NAT)."""
    tagged = incus.tagged_rules(run("iptables", "-w", "10", "-S", "DOCKER-USER", check=False), "DOCKER-USER",
                                NETWORK)
    for rule in tagged:
        run("iptables", "-w", "10", "-D", "DOCKER-USER", *rule.replace('"', "").split(), check=False)
    if add:
        uplink = incus.default_device(json.loads(run("ip", "-j", "route", "show", "default") or "[]"))
        for rule in reversed(incus.forward_rules(NETWORK, uplink or "eth0")):
            run("iptables", "-w", "10", "-I", "DOCKER-USER", "1", *rule)


def launch(name: str, image: str, ip: str) -> None:
    host_incus("init", image, name, "--no-profiles", "--storage", "default", "-c", "security.privileged=true",
               "-c", "security.nesting=true", "-c", MARK)
    host_incus("config", "device", "add", name, "eth0", "nic", f"network={NETWORK}", "name=eth0",
               f"ipv4.address={ip}")
    host_incus("start", name)
    deadline = time.monotonic() + 120
    while host_incus("exec", name, "--", "systemctl", "is-system-running", check=False).strip() not in (
            "running", "degraded"):
        assert time.monotonic() < deadline, f"{name}: systemd not running within 120s"
        time.sleep(1)
    host_incus("exec", name, "--", "sh", "-c", f"echo nameserver {SUBNET}.1 > /etc/resolv.conf")


def member_image(say=print) -> str:  # noqa: ANN001
    """The member image's alias on the host's Incus: imported from the cache, else built and cached."""
    alias = member_alias()
    if host_incus("image", "show", alias, check=False):
        return alias
    cached = cache_dir(os.environ) / "incus" / f"{alias}.tar.gz"
    if cached.exists():
        host_incus("image", "import", str(cached), "--alias", alias, MARK)
        return alias
    assert host_incus("image", "show", base_alias(), check=False), \
        f"no machine image {base_alias()} on the host's Incus: run `tox -e e2e-incus` once (it builds it)"
    say(f"building the cluster member image {alias}")
    builder = f"{PREFIX}-build"
    host_incus("delete", "--force", builder, check=False)
    launch(builder, base_alias(), f"{SUBNET}.9")
    try:
        host_incus("exec", builder, "--", "sh", "-c", "cat > /etc/apt/sources.list.d/reglab-backports.sources",
                   stdin=apt_sources())
        host_incus("exec", builder, "--", "sh", "-c", "cat > /usr/local/sbin/reglab-cltest-cgroups && "
                   "chmod 755 /usr/local/sbin/reglab-cltest-cgroups", stdin=CGROUPS_FIX)
        host_incus("exec", builder, "--", "sh", "-c", "cat > /etc/systemd/system/reglab-cltest-cgroups.service && "
                   "systemctl enable reglab-cltest-cgroups.service", stdin=CGROUPS_UNIT)
        host_incus("exec", builder, "--", "sh", "-c",
                   "export DEBIAN_FRONTEND=noninteractive; apt-get update -q && apt-get install -y -q "
                   f"--no-install-recommends -t bookworm-backports {' '.join(PACKAGES)} && "
                   "systemctl stop incus.service incus.socket incus-user.socket incus-user.service || true; "
                   "rm -rf /var/lib/incus/* /var/log/incus/* /var/lib/apt/lists/*; "
                   ": > /etc/machine-id; rm -f /etc/ssh/ssh_host_*", timeout=600)
        host_incus("stop", builder, timeout=120)
        host_incus("publish", builder, "--alias", alias, MARK, timeout=600)
    finally:
        host_incus("delete", "--force", builder, check=False)
    cached.parent.mkdir(parents=True, exist_ok=True)
    host_incus("image", "export", alias, str(cached)[: -len(".tar.gz")], timeout=600)
    return alias


def preseed(member: str, ip: str, token: str | None) -> str:
    if token is None:
        return (f"config:\n  core.https_address: {ip}:8443\ncluster:\n  server_name: {member}\n  enabled: true\n"
                "storage_pools:\n- name: default\n  driver: dir\nprofiles:\n- name: default\n  devices:\n"
                "    root:\n      path: /\n      pool: default\n      type: disk\n")
    return (f"cluster:\n  enabled: true\n  server_name: {member}\n  server_address: {ip}:8443\n"
            f"  cluster_token: {token}\n  member_config:\n  - entity: storage-pool\n    name: default\n"
            "    key: source\n    value: \"\"\n")


def remove_all() -> None:
    """Everything a cluster test made on the host's Incus and firewall (by its names and mark only)."""
    for member in MEMBERS:
        host_incus("delete", "--force", member_name(member), check=False, timeout=120)
    host_incus("delete", "--force", f"{PREFIX}-build", check=False, timeout=120)
    host_incus("network", "delete", NETWORK, check=False)
    firewall(add=False)


def online(conf: Path, members: Sequence[str] = MEMBERS, wait: float = 180) -> None:
    """Every named member Online in the cluster's own view."""
    env = {**os.environ, "INCUS_CONF": str(conf)}
    deadline = time.monotonic() + wait
    while True:
        found = incus.members(json.loads(run("incus", "cluster", "list", f"{REMOTE}:", "--format", "json",
                                             env=env, check=False, timeout=60) or "[]"))
        if all(found.get(m, "").lower() == "online" for m in members):
            return
        assert time.monotonic() < deadline, f"cluster members not online within {wait}s: {found}"
        time.sleep(3)


@contextlib.contextmanager
def cluster(conf: Path, say=print) -> Iterator[Path]:  # noqa: ANN001
    """The cluster, up and added as the remote REMOTE in the client configuration `conf`; removed after."""
    remove_all()
    host_incus("network", "create", NETWORK, f"ipv4.address={SUBNET}.1/24", "ipv4.nat=true", "ipv6.address=none",
               "ipv4.firewall=false", MARK)
    firewall(add=True)
    try:
        image = member_image(say)
        for number, member in enumerate(MEMBERS, start=1):
            launch(member_name(member), image, f"{SUBNET}.1{number}")
        first = f"{SUBNET}.11"
        member_exec("m1", "incus admin waitready --timeout=60")
        host_incus("exec", member_name("m1"), "--", "incus", "admin", "init", "--preseed", stdin=preseed("m1", first,
                                                                                                       None))
        for number, member in enumerate(MEMBERS[1:], start=2):
            token = member_exec("m1", f"incus cluster add {member} --quiet").strip().splitlines()[-1]
            member_exec(member, "incus admin waitready --timeout=60")
            host_incus("exec", member_name(member), "--", "incus", "admin", "init", "--preseed",
                       stdin=preseed(member, f"{SUBNET}.1{number}", token))
        trust = member_exec("m1", "incus config trust add reglab-e2e --quiet").strip().splitlines()[-1]
        conf.mkdir(parents=True, exist_ok=True)
        run("incus", "remote", "add", REMOTE, first, "--token", trust, "--accept-certificate",
            env={**os.environ, "INCUS_CONF": str(conf)})
        online(conf)
        yield conf
    finally:
        remove_all()
