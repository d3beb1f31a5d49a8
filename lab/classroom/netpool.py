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

from collections.abc import Iterable
from ipaddress import IPv4Network
from typing import Any

from lab.common.errors import LabError
from lab.machines.hostnets import (  # noqa: F401 - the host's networks, read where machines are made
    LIBVIRT_MANAGEMENT_POOL,
    host_networks,
    parse_docker_networks,
    parse_ip_addr,
    parse_ip_route,
)

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
    LIBVIRT_MANAGEMENT_POOL,          # each libvirt lab's own management network
)
LINK_LOCAL = IPv4Network("169.254.0.0/16")



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


