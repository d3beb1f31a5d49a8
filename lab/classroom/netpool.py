"""Networks for a class: a /24 per lab, carved from a pool, clear of every network the host already has.

NOTE: the caller records which lab got which /24; this module only says
which /24s are free now. Reading the host's networks is kept apart from
parsing them: the parsers are pure and tested on real `ip -j` and
`docker network inspect` output, and each source that fails (no `ip`, no
Docker, a timeout, output that is not JSON) is passed over silently: what
the others found is still worth avoiding, and the boot itself will report a
clash that all of them missed.
"""

from __future__ import annotations

import ipaddress
import json
import subprocess
from collections.abc import Callable, Iterable, Sequence
from ipaddress import IPv4Network
from typing import Any

from lab.common.errors import LabError, LabFailure
from lab.machines.host import Runner

# The class pool: 10.77.0.0/16 holds 256 /24s, more than a roster's 250 labs (a /22 would hold 4).
# It is private (RFC 1918) and away from what a lab host usually has already:
#   192.168.0.0/24, 192.168.1.0/24  home and office routers' LANs
#   192.168.33.0/24                 reglab's single lab
#   192.168.56.0/21                 VirtualBox host-only networks
#   192.168.121.0/24, .122.0/24     vagrant-libvirt's management network, libvirt's default network
#   172.17.0.0/16 to 172.31.0.0/16  docker0 and the networks Docker makes by default (then 192.168.0.0/16 in /20s)
#   10.0.2.0/24                     VirtualBox NAT;  10.0.0.0/16 cloud VPCs' usual default
#   10.42/16, 10.43/16, 10.88/16, 10.96.0.0/12, 10.244/16: Kubernetes, k3s and Podman
#   10.128.0.0/9                    cloud providers' automatic subnets
CLASS_POOL = IPv4Network("10.77.0.0/16")

# Never handed to a lab, even inside a pool the instructor chose: each is taken on
# many hosts, or will be once the first lab boots (libvirt's management network).
ALWAYS_AVOIDED = (
    IPv4Network("192.168.33.0/24"),   # reglab's single lab
    IPv4Network("192.168.121.0/24"),  # vagrant-libvirt's management network
    IPv4Network("192.168.122.0/24"),  # libvirt's default network
    IPv4Network("172.17.0.0/16"),     # docker0
    IPv4Network("10.0.2.0/24"),       # VirtualBox NAT
)
LINK_LOCAL = IPv4Network("169.254.0.0/16")

COMMAND_TIMEOUT = 10  # seconds any one command may take: each only lists what the host has
Run = Callable[..., "subprocess.CompletedProcess[str]"]


def free_subnets(count: int, pool: IPv4Network = CLASS_POOL, taken: Iterable[IPv4Network] = ()) -> list[IPv4Network]:
    """The first `count` /24s of `pool`, in order, that overlap none of `taken` nor ALWAYS_AVOIDED."""
    if count < 0:
        raise ValueError(f"count must not be negative, got {count}")
    pool = _checked_pool(pool)
    avoided = [*taken, *ALWAYS_AVOIDED]
    free: list[IPv4Network] = []
    if count == 0:
        return free
    for subnet in pool.subnets(new_prefix=24):
        if not any(subnet.overlaps(net) for net in avoided):
            free.append(subnet)
            if len(free) == count:
                return free
    raise LabError(
        f"the class pool {pool} has {len(free)} free /24 network{'s' if len(free) != 1 else ''} left, "
        f"{count} labs need {count}: the others overlap networks this host already has or other labs hold; "
        "choose a larger pool, or take down labs no longer in use"
    )


def _checked_pool(pool: Any) -> IPv4Network:
    if not isinstance(pool, IPv4Network):
        try:
            pool = IPv4Network(pool)
        except (ValueError, TypeError):
            raise LabError(f"class pool: expected an IPv4 network like {CLASS_POOL}, got {pool!r}") from None
    if pool.prefixlen > 24:
        raise LabError(f"class pool: expected a network of /24 or larger (each lab takes a /24), got {pool}")
    if not pool.is_private or pool.overlaps(LINK_LOCAL) or pool.is_loopback or pool.is_multicast:
        raise LabError(f"class pool: expected private IPv4 addresses (10/8, 172.16/12 or 192.168/16), got {pool}")
    return pool


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
