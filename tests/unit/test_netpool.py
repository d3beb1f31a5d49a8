"""A class's /24s: carved in order, clear of the host's networks, read from real `ip -j` and Docker output."""

import subprocess
from ipaddress import IPv4Network
from typing import Any

import pytest

from lab.classroom.netpool import ALWAYS_AVOIDED, CLASS_POOL, free_subnets
from lab.common.errors import LabError
from lab.machines.hostnets import (
    COMMAND_TIMEOUT,
    LIBVIRT_MANAGEMENT_POOL,
    free_subnet,
    host_networks,
    libvirt_networks,
    parse_docker_networks,
    parse_ip_addr,
    parse_ip_route,
    parse_libvirt_network,
)

# Real output of `ip -j -4 addr` and `ip -j -4 route` on a lab host (docker0, the single lab's bridge).
IP_ADDR = (
    '[{"ifindex":1,"ifname":"lo","flags":["LOOPBACK","UP","LOWER_UP"],"mtu":65536,"qdisc":"noqueue",'
    '"operstate":"UNKNOWN","group":"default","txqlen":1000,"addr_info":[{"family":"inet","local":"127.0.0.1",'
    '"prefixlen":8,"scope":"host","label":"lo","valid_life_time":4294967295,"preferred_life_time":4294967295}]},'
    '{"ifindex":4,"ifname":"eth0","flags":["BROADCAST","MULTICAST","UP","LOWER_UP"],"mtu":1400,'
    '"qdisc":"pfifo_fast","operstate":"UP","group":"default","txqlen":1000,"addr_info":[{"family":"inet",'
    '"local":"192.0.2.2","prefixlen":24,"broadcast":"192.0.2.255","scope":"global","label":"eth0",'
    '"valid_life_time":4294967295,"preferred_life_time":4294967295}]},{"ifindex":5,"ifname":"docker0",'
    '"flags":["BROADCAST","MULTICAST","UP","LOWER_UP"],"mtu":1500,"qdisc":"noqueue","operstate":"UP",'
    '"group":"default","addr_info":[{"family":"inet","local":"172.17.0.1","prefixlen":16,'
    '"broadcast":"172.17.255.255","scope":"global","label":"docker0","valid_life_time":4294967295,'
    '"preferred_life_time":4294967295}]},{"ifindex":557,"ifname":"br-3fc8445255fa","flags":["BROADCAST",'
    '"MULTICAST","UP","LOWER_UP"],"mtu":1500,"qdisc":"noqueue","operstate":"UP","group":"default",'
    '"addr_info":[{"family":"inet","local":"192.168.33.1","prefixlen":24,"broadcast":"192.168.33.255",'
    '"scope":"global","label":"br-3fc8445255fa","valid_life_time":4294967295,"preferred_life_time":4294967295}]},'
    '{"ifindex":6,"ifname":"wg0","flags":["POINTOPOINT","UP"],"addr_info":[]}]'
)
IP_ROUTE = (
    '[{"dst":"default","gateway":"192.0.2.1","dev":"eth0","flags":[]},{"dst":"172.17.0.0/16","dev":"docker0",'
    '"protocol":"kernel","scope":"link","prefsrc":"172.17.0.1","flags":[]},{"dst":"192.0.2.0/24","dev":"eth0",'
    '"protocol":"kernel","scope":"link","prefsrc":"192.0.2.2","flags":[]},{"dst":"192.168.33.0/24",'
    '"dev":"br-3fc8445255fa","protocol":"kernel","scope":"link","prefsrc":"192.168.33.1","flags":[]},'
    '{"dst":"10.77.5.9","gateway":"192.0.2.1","dev":"eth0","flags":[]}]'
)
# Real `docker network inspect` output (trimmed of containers), plus a dual-stack network.
DOCKER_INSPECT = """[
    {"Name": "bridge", "Id": "db1408484485", "Driver": "bridge", "EnableIPv6": false,
     "IPAM": {"Driver": "default", "Options": null,
              "Config": [{"Subnet": "172.17.0.0/16", "Gateway": "172.17.0.1"}]},
     "Options": {"com.docker.network.bridge.name": "docker0"}, "Labels": {}},
    {"Name": "host", "Id": "42a407990a9b", "Driver": "host", "EnableIPv6": false,
     "IPAM": {"Driver": "default", "Options": null, "Config": []}},
    {"Name": "none", "Id": "ce29b22cabae", "Driver": "null",
     "IPAM": {"Driver": "default", "Options": null, "Config": null}},
    {"Name": "reglab-class-s01", "Id": "3fc8445255fa", "Driver": "bridge", "EnableIPv6": true,
     "IPAM": {"Driver": "default", "Options": {},
              "Config": [{"Subnet": "10.77.1.0/24", "Gateway": "10.77.1.1"},
                         {"Subnet": "fd00:77:1::/64"}]}}
]"""


def nets(*texts: str) -> list[IPv4Network]:
    return [IPv4Network(text) for text in texts]


# --- free_subnets ----------------------------------------------------------------

def test_subnets_are_carved_in_order_from_the_pool() -> None:
    assert free_subnets(3) == nets("10.77.0.0/24", "10.77.1.0/24", "10.77.2.0/24")


def test_subnets_overlapping_taken_networks_are_skipped() -> None:
    """A /24 taken whole, one holding a taken host route, one inside a taken /23: all passed over."""
    taken = nets("10.77.0.0/24", "10.77.2.7/32", "10.77.4.0/23")
    assert free_subnets(3, taken=taken) == nets("10.77.1.0/24", "10.77.3.0/24", "10.77.6.0/24")


def test_a_taken_network_wider_than_the_pool_leaves_nothing() -> None:
    with pytest.raises(LabError, match="has 0 free /24 networks left, 1 labs need 1"):
        free_subnets(1, taken=nets("10.0.0.0/8"))


def test_well_known_networks_are_avoided_even_inside_a_chosen_pool() -> None:
    """libvirt's management network is not on the host before the first lab boots, yet it will be."""
    subnets = free_subnets(256 - 3, pool=IPv4Network("192.168.0.0/16"))
    for avoided in ALWAYS_AVOIDED:
        assert not any(subnet.overlaps(avoided) for subnet in subnets)
    assert IPv4Network("192.168.120.0/24") in subnets


def test_an_exhausted_pool_says_how_many_are_left() -> None:
    with pytest.raises(LabError, match=r"10\.77\.0\.0/22 has 3 free /24 networks left, 4 labs need 4"):
        free_subnets(4, pool=IPv4Network("10.77.0.0/22"), taken=nets("10.77.2.0/24"))


def test_the_default_pool_holds_the_largest_roster() -> None:
    assert len(free_subnets(250)) == 250
    assert CLASS_POOL.is_private


def test_a_count_of_zero_needs_nothing() -> None:
    assert free_subnets(0, pool=IPv4Network("10.77.0.0/24"), taken=nets("10.77.0.0/24")) == []


@pytest.mark.parametrize(
    ("pool", "problem"),
    [
        (IPv4Network("10.77.0.0/25"), "/24 or larger"),
        (IPv4Network("8.8.0.0/16"), "expected private IPv4"),
        (IPv4Network("169.254.0.0/16"), "expected private IPv4"),
        ("nonsense", "expected an IPv4 network"),
    ],
)
def test_an_unusable_pool_is_refused(pool: Any, problem: str) -> None:
    with pytest.raises(LabError, match=problem):
        free_subnets(1, pool=pool)


# --- parsers -------------------------------------------------------------------

def test_ip_addr_gives_the_network_of_every_address() -> None:
    assert parse_ip_addr(IP_ADDR) == nets("127.0.0.0/8", "192.0.2.0/24", "172.17.0.0/16", "192.168.33.0/24")


def test_ip_route_gives_every_destination_but_the_default_route() -> None:
    """The default route is 0.0.0.0/0: taking it would leave no subnet free at all."""
    assert parse_ip_route(IP_ROUTE) == nets("172.17.0.0/16", "192.0.2.0/24", "192.168.33.0/24", "10.77.5.9/32")


def test_docker_networks_give_their_ipv4_subnets_only() -> None:
    assert parse_docker_networks(DOCKER_INSPECT) == nets("172.17.0.0/16", "10.77.1.0/24")


@pytest.mark.parametrize(
    "text",
    ["", "not json", "{}", "null", '[1, "x", null]', '[{"addr_info": "x"}]', '[{"addr_info": [{"local": 5}]}]',
     '[{"addr_info": [{"family": "inet", "local": "300.1.1.1", "prefixlen": 24}]}]', IP_ADDR[:200]],
)
def test_malformed_output_gives_nothing_instead_of_failing(text: str) -> None:
    assert parse_ip_addr(text) == []
    assert parse_ip_route(text) == []
    assert parse_docker_networks(text) == []


def test_malformed_entries_are_skipped_and_the_good_ones_kept() -> None:
    text = '[{"dst": "default"}, {"dst": 7}, "x", {"dst": "10.9.0.0/16"}, {"dst": "not-an-ip/8"}]'
    assert parse_ip_route(text) == nets("10.9.0.0/16")


# --- host_networks ----------------------------------------------------------------

class FakeRun:
    """subprocess.run as the commands answer on a host: by the first key the command line starts with."""

    def __init__(self, answers: dict[str, Any]) -> None:
        self.answers = answers
        self.calls: list[tuple[list[str], Any]] = []

    def __call__(self, args: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        self.calls.append((args, kwargs.get("timeout")))
        line = " ".join(args)
        answer = next((value for key, value in self.answers.items() if line.startswith(key)), None)
        if isinstance(answer, BaseException):
            raise answer
        if answer is None:
            raise FileNotFoundError(2, "No such file or directory", args[0])
        returncode, stdout = answer
        return subprocess.CompletedProcess(args, returncode, stdout, "")


def test_host_networks_joins_every_source_once_each_command_bounded_by_a_timeout() -> None:
    fake = FakeRun({
        "ip -j -4 addr": (0, IP_ADDR),
        "ip -j -4 route": (0, IP_ROUTE),
        "docker network ls -q": (0, "db1408484485\n42a407990a9b\nce29b22cabae\n3fc8445255fa\n"),
        "docker network inspect": (0, DOCKER_INSPECT),
    })
    found = host_networks(run=fake)
    assert found == nets("127.0.0.0/8", "192.0.2.0/24", "172.17.0.0/16", "192.168.33.0/24", "10.77.5.9/32",
                         "10.77.1.0/24")
    assert all(timeout == COMMAND_TIMEOUT for _, timeout in fake.calls)
    assert fake.calls[-1][0] == ["docker", "network", "inspect", "db1408484485", "42a407990a9b", "ce29b22cabae",
                                 "3fc8445255fa"]
    assert free_subnets(2, taken=found) == nets("10.77.0.0/24", "10.77.2.0/24")


def test_host_networks_without_docker_still_gives_the_host_own() -> None:
    fake = FakeRun({"ip -j -4 route": (0, IP_ROUTE)})
    assert host_networks(run=fake) == nets("172.17.0.0/16", "192.0.2.0/24", "192.168.33.0/24", "10.77.5.9/32")
    assert [args[:3] for args, _ in fake.calls][-1] == ["docker", "network", "ls"]


def test_host_networks_tolerates_timeouts_and_failures_of_every_source() -> None:
    fake = FakeRun({
        "ip -j -4": subprocess.TimeoutExpired(["ip"], COMMAND_TIMEOUT),
        "docker network ls": (1, "Cannot connect to the Docker daemon"),
    })
    assert host_networks(run=fake) == []


def test_host_networks_tolerates_a_docker_inspect_that_fails() -> None:
    fake = FakeRun({
        "ip -j -4": (0, "garbage"),
        "docker network ls": (0, "abc\n"),
        "docker network inspect": PermissionError(13, "Permission denied"),
    })
    assert host_networks(run=fake) == []


def test_no_docker_network_ids_means_no_inspect() -> None:
    """`docker network inspect` with no id fails with a usage message; it is not asked."""
    fake = FakeRun({"ip -j -4": (0, "[]"), "docker network ls": (0, "\n")})
    host_networks(run=fake)
    assert all(args[:3] != ["docker", "network", "inspect"] for args, _ in fake.calls)


# --- each libvirt lab's own management network (issue 17, item 4) --------------------------------------------

LIBVIRT_XML = """<network connections='2'>
  <name>vagrant-libvirt</name>
  <forward mode='nat'/>
  <bridge name='virbr1' stp='on' delay='0'/>
  <ip address='192.168.121.1' netmask='255.255.255.0'>
    <dhcp><range start='192.168.121.1' end='192.168.121.254'/></dhcp>
  </ip>
  <ip family='ipv6' address='fd00::1' prefix='64'/>
</network>
"""


def test_libvirt_networks_are_read_from_their_xml() -> None:
    assert parse_libvirt_network(LIBVIRT_XML) == [IPv4Network("192.168.121.0/24")]
    assert parse_libvirt_network("<network><ip address='10.79.3.1' prefix='24'/></network>") == \
        [IPv4Network("10.79.3.0/24")]
    assert parse_libvirt_network("<network><name>isolated</name></network>") == []


def test_libvirt_networks_come_from_virsh_by_name() -> None:
    def run(args: list[str], **_kwargs: Any) -> subprocess.CompletedProcess[str]:
        out = "default\nvagrant-libvirt\n" if "net-list" in args else (
            LIBVIRT_XML if args[-1] == "vagrant-libvirt" else "<network><ip address='192.168.122.1' "
                                                              "netmask='255.255.255.0'/></network>")
        return subprocess.CompletedProcess(args, 0, out, "")

    assert libvirt_networks("qemu:///system", run) == {
        "default": [IPv4Network("192.168.122.0/24")], "vagrant-libvirt": [IPv4Network("192.168.121.0/24")]}


def test_a_management_network_is_the_first_free_24_of_its_pool() -> None:
    taken = [IPv4Network("10.79.0.0/24"), IPv4Network("10.79.1.128/25")]
    assert free_subnet(LIBVIRT_MANAGEMENT_POOL, taken) == IPv4Network("10.79.2.0/24")
    assert free_subnet(IPv4Network("10.79.0.0/23"), taken) is None
    assert LIBVIRT_MANAGEMENT_POOL in ALWAYS_AVOIDED  # never handed to a class's lab
