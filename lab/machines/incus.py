"""Incus on this host: its CLI run bounded and logged, and what it prints read by pure functions.

reglab speaks to Incus only through the `incus` command with `--format json`
(Incus's own interface; a remote is a `REMOTE:` prefix on the same names, so
issue 21's cluster adds a remote, not a second client). Everything reglab
makes in Incus carries `user.reglab.*` keys, and nothing without them is ever
changed or removed. The parsers below take the text Incus printed and return
small values; they are unit-tested on canned output with no Incus at all.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from lab.common.errors import LabFailure
from lab.machines.host import Runner

INCUS_TIMEOUT = 120  # seconds for one ordinary `incus` call
LAB_KEY = "user.reglab.lab"  # the lab's name
STATE_KEY = "user.reglab.state"  # the lab's state folder: two labs of one name told apart
KIND_KEY = "user.reglab.kind"  # machine, network, base image, warm image
WARM_KEY = "user.reglab.warm.key"
CREATED_KEY = "user.reglab.created"
BRIDGE_PREFIX = "reglab"  # + 8 hex digits: an interface name fits Linux's 15 characters
RULE_TAG = "reglab-incus"  # the comment on every firewall rule reglab adds for an Incus bridge


class Incus:
    """`incus ARGS` as argument lists, each bounded and logged (lab.machines.host.Runner)."""

    def __init__(self, log: Path | None, remote: str = "") -> None:
        """`remote`: "" for the local daemon's socket; a remote's name (issue 21) prefixes every name."""
        self.run = Runner(log)
        self.remote = remote

    def __call__(self, *args: str, timeout: float = INCUS_TIMEOUT, stdin: str | None = None,
                 check: bool = True) -> str:
        done = self.run(["incus", *args], timeout=timeout, stdin=stdin, check=check,
                        what=f"`incus {' '.join(args[:3])}`")
        return done.stdout if done.returncode == 0 else ""

    def ok(self, *args: str, timeout: float = INCUS_TIMEOUT) -> bool:
        return self.run(["incus", *args], timeout=timeout, check=False).returncode == 0

    def json(self, *args: str, timeout: float = INCUS_TIMEOUT) -> Any:
        """What a `list`/`show`-like command returns, parsed; LabFailure when it is not JSON."""
        return parse_json(self(*args, "--format", "json", timeout=timeout), " ".join(args[:2]))

    def yaml(self, *args: str, timeout: float = INCUS_TIMEOUT) -> Any:
        """What a `show` command prints (YAML: `show` has no --format), parsed safely."""
        return parse_yaml(self(*args, timeout=timeout), " ".join(args[:2]))

    def name(self, name: str) -> str:
        return f"{self.remote}:{name}" if self.remote else name


def parse_json(text: str, what: str) -> Any:
    try:
        return json.loads(text or "null")
    except json.JSONDecodeError:
        raise LabFailure(f"`incus {what}` printed no JSON: {text[:200]!r}") from None


def parse_yaml(text: str, what: str) -> Any:
    try:
        return yaml.safe_load(text or "null")
    except yaml.YAMLError:
        raise LabFailure(f"`incus {what}` printed no YAML: {text[:200]!r}") from None


# --- what Incus printed ------------------------------------------------------------------


def initialised(pools: Any) -> bool:
    """`incus storage list --format json`: any pool means someone set this Incus up (a school's own
    setup is never touched: reglab preseeds only an empty Incus)."""
    return isinstance(pools, list) and len(pools) > 0


POOL_SIZE = "40GiB"  # a loop file's upper bound, not space taken now


def preseed(pool: str = "default", driver: str = "dir") -> str:
    """`incus admin init --preseed` for an empty Incus: one storage pool and a default profile with a
    root disk on it; no network (each lab makes its own). Pure.

    NOTE: on `btrfs` (a loop file) a machine is a snapshot of its image: a
    warm start takes seconds. On `dir` every machine is a full copy of its
    image (40 s for a 700 MB warm image here).
    """
    size = f"  config:\n    size: {POOL_SIZE}\n" if driver == "btrfs" else ""
    return (
        "storage_pools:\n"
        f"- name: {pool}\n"
        f"  driver: {driver}\n"
        f"{size}"
        "profiles:\n"
        "- name: default\n"
        "  devices:\n"
        "    root:\n"
        "      path: /\n"
        f"      pool: {pool}\n"
        "      type: disk\n"
    )


# Every container's root is the same unprivileged uid on the host, so they share its per-user limits
# (Incus's production setup raises them):
# - inotify: at the kernel's default of 128 instances a few labs use them up and systemd-udevd fails in
#   the next machine (eth0 then stays "pending": no address);
# - keys: each container Docker starts inside a machine takes a session keyring; at the default 200 keys
#   and 20000 bytes, 8 labs' `docker run` failed with "unable to create session key: disk quota exceeded".
HOST_LIMITS = {"fs.inotify.max_user_instances": 8192, "fs.inotify.max_user_watches": 1048576,
               "kernel.keys.maxkeys": 2000, "kernel.keys.maxbytes": 2000000}


def raised_limits(current: Mapping[str, int]) -> dict[str, int]:
    """The sysctls to raise (never lower) for many containers. Pure."""
    return {key: want for key, want in HOST_LIMITS.items() if current.get(key, 0) < want}


def root_pool(profile: Any, pools: Any) -> str | None:
    """The pool the default profile's root disk is on, else the first pool; None when there is none."""
    if isinstance(profile, dict):
        for device in (profile.get("devices") or {}).values():
            if isinstance(device, dict) and device.get("type") == "disk" and device.get("path") == "/":
                return device.get("pool")
    if isinstance(pools, list) and pools and isinstance(pools[0], dict):
        return pools[0].get("name")
    return None


@dataclass(frozen=True)
class Instance:
    name: str
    status: str  # Running, Stopped... as Incus says
    config: Mapping[str, str]
    location: str = ""  # the cluster member it runs on ("none" or "" outside a cluster)


def instances(listing: Any) -> dict[str, Instance]:
    """`incus list --format json` -> {name: Instance}."""
    found = {}
    for item in listing if isinstance(listing, list) else []:
        if isinstance(item, dict) and item.get("name"):
            found[item["name"]] = Instance(item["name"], str(item.get("status", "")), item.get("config") or {},
                                           str(item.get("location") or ""))
    return found


def members(listing: Any) -> dict[str, str]:
    """`incus cluster list --format json` -> {member: status} (Online, Offline...); {} for a lone server."""
    found = {}
    for item in listing if isinstance(listing, list) else []:
        if isinstance(item, dict) and item.get("server_name"):
            found[str(item["server_name"])] = str(item.get("status", ""))
    return found


def member_of(found: Mapping[str, Instance], names: Sequence[str]) -> str | None:
    """The member the first of `names` already placed runs on: where the lab's other machines go. Pure."""
    for name in names:
        there = found.get(name)
        if there is not None and there.location not in ("", "none"):
            return there.location
    return None


SSHD_INETD = "/usr/sbin/sshd -i"  # sshd serving one connection on its stdin and stdout (inetd mode)


def proxy_command(remote: str, instance: str) -> str:
    """An ssh_config ProxyCommand reaching a machine's own sshd through Incus's exec API, wherever the
    cluster placed it: no route to its bridge is needed, and SSH (keys, pinned host keys) is unchanged. Pure."""
    return f"incus exec {remote}:{instance} -- {SSHD_INETD}"


PRIVATE = ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16", "100.64.0.0/10")


def acl_rules(ip: str) -> list[list[str]]:
    """`incus network acl rule add ACL egress ...` arguments keeping a lab on a remote to itself. Pure.

    NOTE: Incus orders an ACL's rules by action (reject before allow), not as written, so the lab's own /24
    is left out of the rejected ranges rather than allowed before them; and its gateway (the member itself)
    answers DNS and DHCP only. The Debian mirror, outside private ranges, stays reachable through NAT.
    """
    own = subnet_of(ip)
    ranges = []
    for text in PRIVATE:
        net = ipaddress.ip_network(text)
        ranges += [str(n) for n in sorted(net.address_exclude(own))] if own.subnet_of(net) else [text]
    gw = f"{own.network_address + 1}/32"
    return [
        ["egress", "action=reject", f"destination={','.join(ranges)}"],
        ["egress", "action=reject", f"destination={gw}", "protocol=tcp", "destination_port=1-52,54-65535"],
        ["egress", "action=reject", f"destination={gw}", "protocol=udp", "destination_port=1-52,54-66,68-65535"],
    ]


def cluster_network_args(member_names: Sequence[str], network: str) -> list[list[str]]:
    """`incus network create` for a cluster: once per member with `--target` (pending), then the network
    itself with its config (Incus's order for a managed network on a cluster). Pure."""
    return [["network", "create", network, f"--target={member}"] for member in member_names]


def state_word(status: str | None) -> str:
    """Incus's status in the words `reglab status` uses for every provider."""
    if status is None:
        return "not_created"
    return {"running": "running", "stopped": "stopped", "frozen": "paused"}.get(status.lower(), status.lower())


def ours(config: Mapping[str, str], lab: str, state: str) -> bool:
    """Made by reglab for this very lab (its name and its state folder)."""
    return config.get(LAB_KEY) == lab and config.get(STATE_KEY) == state


@dataclass(frozen=True)
class Image:
    fingerprint: str
    aliases: tuple[str, ...]
    properties: Mapping[str, str]
    created: str


def images(listing: Any) -> list[Image]:
    """`incus image list --format json` -> images with their aliases and properties."""
    found = []
    for item in listing if isinstance(listing, list) else []:
        if not isinstance(item, dict):
            continue
        aliases = tuple(a.get("name", "") for a in item.get("aliases") or [] if isinstance(a, dict))
        found.append(Image(item.get("fingerprint", ""), aliases, item.get("properties") or {},
                           str(item.get("created_at", ""))))
    return found


def by_alias(found: Sequence[Image], alias: str) -> Image | None:
    return next((i for i in found if alias in i.aliases), None)


def bridge_name(state_dir: str) -> str:
    """The lab's bridge: the same lab, the same name; 15 characters at most (Linux's limit). Pure."""
    import hashlib

    return BRIDGE_PREFIX + hashlib.sha256(state_dir.encode()).hexdigest()[:8]


def instance_name(lab: str, machine: str) -> str:
    """A container's name: letters, digits and dashes (Incus names are host names). Pure."""
    name = re.sub(r"[^A-Za-z0-9-]+", "-", f"{lab}-{machine}").strip("-")
    return name[:63] if name[:1].isalpha() else f"m-{name}"[:63]


def subnet_of(ip: str) -> ipaddress.IPv4Network:
    return ipaddress.ip_network(f"{ip}/24", strict=False)


def gateway(ip: str) -> str:
    """The host's address on the lab's bridge: .1 of the machines' /24."""
    return f"{subnet_of(ip).network_address + 1}/24"


def routes_over(routes: Any, subnet: ipaddress.IPv4Network, own_device: str) -> list[str]:
    """Devices other than `own_device` that already route (part of) `subnet`, from `ip -j route`."""
    clash = []
    for route in routes if isinstance(routes, list) else []:
        if not isinstance(route, dict) or route.get("dst") in (None, "default"):
            continue
        try:
            net = ipaddress.ip_network(route["dst"], strict=False)
        except ValueError:
            continue
        if isinstance(net, ipaddress.IPv4Network) and net.overlaps(subnet) and route.get("dev") != own_device:
            clash.append(str(route.get("dev")))
    return clash


def default_device(routes: Any) -> str | None:
    """The interface of the default route, from `ip -j route show default`."""
    for route in routes if isinstance(routes, list) else []:
        if isinstance(route, dict) and route.get("dst") == "default" and route.get("dev"):
            return route["dev"]
    return None


# --- the lab's bridge beside Docker's firewall --------------------------------------------


def forward_rules(bridge: str, uplink: str) -> list[list[str]]:
    """iptables rules (after `-I CHAIN`) for one lab's bridge, in the order they must apply. Pure.

    NOTE: Docker sets the FORWARD policy to DROP, and with br_netfilter that
    drops Incus's bridged and NATed traffic too (Incus's documentation: allow
    the bridge in DOCKER-USER). Only what a lab needs is allowed: its machines
    to each other, out to the uplink (the Debian mirror), and the replies;
    everything else forwarded from or to the bridge (another lab's bridge, a
    Docker network) is dropped, whatever the chain's policy.
    """
    tag = ["-m", "comment", "--comment", f"{RULE_TAG}:{bridge}"]
    return [
        ["-i", bridge, "-o", bridge, *tag, "-j", "ACCEPT"],
        ["-o", bridge, "-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED", *tag, "-j", "ACCEPT"],
        ["-i", bridge, "-o", uplink, *tag, "-j", "ACCEPT"],
        ["-i", bridge, *tag, "-j", "DROP"],
        ["-o", bridge, *tag, "-j", "DROP"],
    ]


def tagged_rules(listing: str, chain: str, bridge: str) -> list[str]:
    """The rules of `iptables -S CHAIN` that carry this bridge's tag, as `-D` arguments want them. Pure."""
    tag = f"{RULE_TAG}:{bridge}"
    found = []
    for line in listing.splitlines():
        if line.startswith(f"-A {chain} ") and (f'--comment "{tag}"' in line or f"--comment {tag} " in f"{line} "):
            found.append(line[len(f"-A {chain} "):])
    return found
