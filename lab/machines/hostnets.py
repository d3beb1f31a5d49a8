"""The IPv4 networks this host has now (addresses, routes, Docker's and libvirt's networks), and a free /24.

NOTE: reading the host's networks is kept apart from parsing them: the
parsers are pure and tested on real `ip -j` and `docker network inspect`
output, and each source that fails (no `ip`, no Docker, a timeout, output
that is not JSON) is passed over silently: what the others found is still
worth avoiding, and the boot itself will report a clash that all of them missed.
"""

from __future__ import annotations

import ipaddress
import json
import re
import subprocess
from collections.abc import Callable, Iterable, Sequence
from ipaddress import IPv4Network
from typing import Any

from lab.common.errors import LabFailure
from lab.machines.host import Runner

COMMAND_TIMEOUT = 10  # seconds any one command may take: each only lists what the host has
Run = Callable[..., "subprocess.CompletedProcess[str]"]
# Each libvirt lab's own management network (vagrant-libvirt's default, 192.168.121.0/24, is shared by
# every lab, so labs would reach each other there) is a /24 from here.
LIBVIRT_MANAGEMENT_POOL = IPv4Network("10.79.0.0/16")


def free_subnet(pool: IPv4Network, taken: Iterable[IPv4Network]) -> IPv4Network | None:
    """The first /24 of `pool` that overlaps none of `taken`, or None. Pure."""
    taken = list(taken)
    return next((net for net in pool.subnets(new_prefix=24) if not any(net.overlaps(t) for t in taken)), None)


def parse_libvirt_network(xml: str) -> list[IPv4Network]:
    """The IPv4 networks of a libvirt network, from `virsh net-dumpxml` (<ip address= netmask=|prefix=>)."""
    found = []
    for tag in re.findall(r"<ip\b[^>]*>", xml):
        address = re.search(r"address=['\"]([0-9.]+)['\"]", tag)
        mask = re.search(r"(?:netmask|prefix)=['\"]([0-9.]+)['\"]", tag)
        if address and mask:
            net = _network(f"{address.group(1)}/{mask.group(1)}")
            if net is not None:
                found.append(net)
    return found


def host_networks(run: Run | None = None) -> list[IPv4Network]:
    """The IPv4 networks this host has now: its addresses, its routes, and Docker's networks.

    `run` is a `lab.machines.host.Runner` (without a log) unless a test gives its own.
    """
    run = run or Runner()
    found: list[IPv4Network] = []
    found += parse_ip_addr(_output(run, ["ip", "-j", "-4", "addr"]))
    found += parse_ip_route(_output(run, ["ip", "-j", "-4", "route"]))
    ids = _output(run, ["docker", "network", "ls", "-q"]).split()
    if ids:
        found += parse_docker_networks(_output(run, ["docker", "network", "inspect", *ids]))
    return list(dict.fromkeys(found))


def _output(run: Run, args: Sequence[str]) -> str:
    """A command's standard output, or "" when it is missing, fails or takes too long."""
    try:
        result = run(list(args), timeout=COMMAND_TIMEOUT, check=False)
    except (LabFailure, OSError, subprocess.SubprocessError, ValueError):
        return ""
    return (result.stdout or "") if result.returncode == 0 else ""


def _json_list(text: str) -> list[Any]:
    try:
        data = json.loads(text) if text.strip() else []
    except ValueError:
        return []
    return data if isinstance(data, list) else []


def _network(text: Any) -> IPv4Network | None:
    """An IPv4 network from `a.b.c.d/len` or a bare address (a /32); None for anything else."""
    if not isinstance(text, str):
        return None
    try:
        return ipaddress.IPv4Interface(text).network
    except ValueError:
        return None


def parse_ip_addr(text: str) -> list[IPv4Network]:
    """The networks of the host's IPv4 addresses, from `ip -j -4 addr`."""
    networks = []
    for link in _json_list(text):
        infos = link.get("addr_info") if isinstance(link, dict) else None
        for info in infos if isinstance(infos, list) else []:
            if not isinstance(info, dict) or info.get("family", "inet") != "inet":
                continue
            net = _network(f"{info.get('local')}/{info.get('prefixlen')}")
            if net is not None:
                networks.append(net)
    return networks


def parse_ip_route(text: str) -> list[IPv4Network]:
    """The destinations of the host's IPv4 routes, from `ip -j -4 route`, but the default route (all of them)."""
    networks = []
    for route in _json_list(text):
        net = _network(route.get("dst")) if isinstance(route, dict) else None
        if net is not None and net.prefixlen > 0:
            networks.append(net)
    return networks


def parse_docker_networks(text: str) -> list[IPv4Network]:
    """The IPv4 subnets of Docker's networks, from `docker network inspect` (IPAM.Config[].Subnet)."""
    networks = []
    for network in _json_list(text):
        ipam = network.get("IPAM") if isinstance(network, dict) else None
        configs = ipam.get("Config") if isinstance(ipam, dict) else None
        for config in configs if isinstance(configs, list) else []:
            net = _network(config.get("Subnet")) if isinstance(config, dict) else None
            if net is not None:
                networks.append(net)
    return networks


def libvirt_networks(uri: str, run: Run | None = None) -> dict[str, list[IPv4Network]]:
    """Every libvirt network by name (defined, running or not) with its IPv4 networks."""
    run = run or Runner()
    found = {}
    for name in _output(run, ["virsh", "-c", uri, "net-list", "--all", "--name"]).split():
        found[name] = parse_libvirt_network(_output(run, ["virsh", "-c", uri, "net-dumpxml", name]))
    return found
