"""Incus: what reglab reads from Incus's JSON, the rules it writes for a lab's bridge, the image recipe,
and a provider's `down` that removes only what carries its own lab's keys (a fake `incus`, no Incus here)."""

from __future__ import annotations

import ipaddress
import json
import os
import re
from pathlib import Path

import pytest

from lab.common.errors import LabError, LabFailure
from lab.machines import hostapt, incus
from lab.machines.boxes import container
from lab.machines.providers import incus as provider
from lab.machines.providers.ssh import host_block
from lab.model.credentials import Redactor
from lab.model.labfile import load
from lab.model.platforms import PLATFORMS

LIST = json.dumps([
    {"name": "lab1-registry", "status": "Running",
     "config": {"user.reglab.lab": "lab1", "user.reglab.state": "/srv/a/.lab/lab1", "security.nesting": "true"}},
    {"name": "lab1-client", "status": "Stopped",
     "config": {"user.reglab.lab": "lab1", "user.reglab.state": "/srv/b/.lab/lab1"}},
    {"name": "school-web", "status": "Running", "config": {}},
])

IMAGES = json.dumps([
    {"fingerprint": "aa" * 32, "aliases": [{"name": "reglab-warm-debian-0123"}],
     "properties": {"user.reglab.kind": "warm", "user.reglab.warm.key": "0123", "user.reglab.created": "5"},
     "created_at": "2026-12-03T00:00:00Z"},
    {"fingerprint": "bb" * 32, "aliases": [], "properties": {"os": "debian"}},
])


def test_instances_are_read_with_status_and_keys_and_only_this_labs_are_ours():
    found = incus.instances(json.loads(LIST))
    assert set(found) == {"lab1-registry", "lab1-client", "school-web"}
    assert incus.ours(found["lab1-registry"].config, "lab1", "/srv/a/.lab/lab1")
    # The same lab name from another folder, and a school's container, are not this lab's.
    assert not incus.ours(found["lab1-client"].config, "lab1", "/srv/a/.lab/lab1")
    assert not incus.ours(found["school-web"].config, "lab1", "/srv/a/.lab/lab1")
    assert incus.state_word("Running") == "running"
    assert incus.state_word(None) == "not_created"
    assert incus.instances(None) == {}


def test_images_by_alias_with_their_properties():
    found = incus.images(json.loads(IMAGES))
    warm = incus.by_alias(found, "reglab-warm-debian-0123")
    assert warm is not None and warm.properties["user.reglab.warm.key"] == "0123"
    assert incus.by_alias(found, "nothing") is None


def test_an_incus_with_a_pool_is_someone_elses_setup_and_is_never_preseeded():
    assert incus.initialised([{"name": "school", "driver": "zfs"}])
    assert not incus.initialised([])
    text = incus.preseed()
    assert "driver: dir" in text and "networks" not in text


def test_the_root_pool_is_the_default_profiles_else_the_first():
    profile = {"devices": {"root": {"type": "disk", "path": "/", "pool": "fast"}}}
    assert incus.root_pool(profile, [{"name": "slow"}]) == "fast"
    assert incus.root_pool({"devices": {}}, [{"name": "slow"}]) == "slow"
    assert incus.root_pool({}, []) is None


def test_names_fit_linux_and_incus():
    bridge = incus.bridge_name("/srv/a/.lab/lab1")
    assert len(bridge) <= 15 and bridge == incus.bridge_name("/srv/a/.lab/lab1")
    assert bridge != incus.bridge_name("/srv/b/.lab/lab1")
    assert incus.instance_name("my_lab", "registry") == "my-lab-registry"
    assert incus.instance_name("7up", "client") == "m-7up-client"
    assert incus.gateway("10.78.33.11") == "10.78.33.1/24"


ROUTES = [
    {"dst": "default", "gateway": "192.0.2.1", "dev": "eth0"},
    {"dst": "172.17.0.0/16", "dev": "docker0"},
    {"dst": "10.78.33.0/24", "dev": "reglab1234abcd"},
    {"dst": "192.168.33.0/24", "dev": "br-123"},
]


def test_a_subnet_routed_by_another_device_is_a_clash_and_the_labs_own_bridge_is_not():
    assert incus.routes_over(ROUTES, ipaddress.ip_network("192.168.33.0/24"), "reglabx") == ["br-123"]
    assert incus.routes_over(ROUTES, ipaddress.ip_network("10.78.33.0/24"), "reglab1234abcd") == []
    assert incus.routes_over(ROUTES, ipaddress.ip_network("10.78.34.0/24"), "reglabx") == []
    assert incus.default_device(ROUTES) == "eth0"
    assert incus.default_device([]) is None


def test_the_bridge_rules_allow_the_lab_itself_and_the_uplink_and_drop_everything_else():
    rules = incus.forward_rules("reglabA", "eth0")
    verdicts = [(r[r.index("-i") + 1] if "-i" in r else None, r[r.index("-o") + 1] if "-o" in r else None, r[-1])
                for r in rules]
    assert verdicts == [("reglabA", "reglabA", "ACCEPT"), (None, "reglabA", "ACCEPT"),
                        ("reglabA", "eth0", "ACCEPT"), ("reglabA", None, "DROP"), (None, "reglabA", "DROP")]
    assert "RELATED,ESTABLISHED" in rules[1]
    assert all("reglab-incus:reglabA" in r for r in rules)


def test_only_rules_tagged_for_this_bridge_are_found_for_removal():
    listing = "\n".join([
        "-N DOCKER-USER",
        '-A DOCKER-USER -i reglabA -o reglabA -m comment --comment "reglab-incus:reglabA" -j ACCEPT',
        '-A DOCKER-USER -i reglabB -m comment --comment "reglab-incus:reglabB" -j DROP',
        '-A DOCKER-USER -s 172.17.0.3/32 -i docker0 -o docker0 -m comment --comment "reglab-lab:x" -j DROP',
        "-A DOCKER-USER -j RETURN",
    ])
    assert incus.tagged_rules(listing, "DOCKER-USER", "reglabA") == [
        '-i reglabA -o reglabA -m comment --comment "reglab-incus:reglabA" -j ACCEPT']


def test_backports_come_from_the_hosts_own_mirror_and_keyring():
    sources = hostapt.parse_deb822("Types: deb\nURIs: http://mirror.example/debian\nSuites: bookworm bookworm-updates\n"
                                   "Components: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n")
    source = hostapt.debian_source(sources, "bookworm")
    assert source is not None
    text = hostapt.backports_sources(source, "bookworm")
    assert "URIs: http://mirror.example/debian\n" in text and "Suites: bookworm-backports\n" in text
    assert "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg" in text


def test_the_container_image_has_no_key_no_kernel_and_unmounts_undelegated_cgroups():
    files = container.guest_files()
    assert not any("authorized_keys" in path or "ssh_host_" in path for path in files)
    assert "linux-image-amd64" not in container.PACKAGES and "udev" in container.PACKAGES
    assert "reglab-cgroups.service" in container.UNITS
    assert "Before=containerd.service docker.service" in files["/etc/systemd/system/reglab-cgroups.service"][1]
    assert container.recipe_key() == container.recipe_key()
    assert container.alias(container.recipe_key()).startswith("reglab-debian13-")
    assert container.recipe_key(PLATFORMS["debian12"]) != container.recipe_key(PLATFORMS["debian13"])


def test_a_host_key_read_through_incus_becomes_a_known_hosts_line():
    assert provider.known_hosts_line("10.78.33.10", "ssh-ed25519 AAAAC3 root@registry\n") == \
        "10.78.33.10 ssh-ed25519 AAAAC3"
    with pytest.raises(Exception, match="no SSH host key"):
        provider.known_hosts_line("10.78.33.10", "")


class FakeIncus:
    """What `incus` answers, from canned JSON; every command recorded, none run."""

    def __init__(self, listing: str, networks: str = "[]", images: str = "[]", failing: int = 0) -> None:
        self.answers = {"list": listing, "network list": networks, "image list": images}
        self.calls: list[tuple[str, ...]] = []
        self.failing = failing  # how many `network delete`s fail (as when another lab's bridge goes meanwhile)
        self.remote = ""

    def name(self, name: str) -> str:
        return incus.Incus.name(self, name)  # type: ignore[arg-type]

    def _fails(self, args: tuple[str, ...]) -> bool:
        self.calls.append(args)
        if args[:2] == ("network", "delete") and self.failing > 0:
            self.failing -= 1
            return True
        return False

    def __call__(self, *args: str, **kwargs) -> str:
        if self._fails(args):
            raise LabFailure(f"`incus {' '.join(args)}` failed (exit 1)")
        return ""

    def ok(self, *args: str, **kwargs) -> bool:
        return not self._fails(args)

    def json(self, *args: str, **kwargs):
        return json.loads(self.answers[" ".join(args)])


def incus_lab(tmp_path: Path, name: str = "lab1"):
    (tmp_path / "lab.yml").write_text(f"name: {name}\nprovider: incus\nmachines:\n  registry: {{ip: 10.78.33.10}}\n"
                                      "  client: {ip: 10.78.33.11}\n")
    return load(tmp_path / "lab.yml", environ={})


def test_down_removes_this_labs_containers_network_and_images_and_nothing_else(tmp_path, monkeypatch):
    lab = incus_lab(tmp_path)
    state = str(lab.state_dir)
    mine = {"user.reglab.lab": "lab1", "user.reglab.state": state}
    bridge = incus.bridge_name(state)
    fake = FakeIncus(
        json.dumps([{"name": "lab1-registry", "status": "Running", "config": mine},
                    {"name": "lab1-client", "status": "Running",
                     "config": {"user.reglab.lab": "lab1", "user.reglab.state": "/elsewhere/.lab/lab1"}},
                    {"name": "school-web", "status": "Running", "config": {}}]),
        json.dumps([{"name": bridge, "config": mine}, {"name": "incusbr0", "config": {}}]),
        json.dumps([{"fingerprint": "cc" * 32, "aliases": [], "properties": mine},
                    {"fingerprint": "dd" * 32, "aliases": [], "properties": {"user.reglab.kind": "warm"}}]),
    )
    made = provider.IncusProvider(lab, Redactor(), say=lambda _m: None)
    made.incus = fake
    monkeypatch.setattr(provider.shutil, "which", lambda _n: "/usr/bin/incus")
    monkeypatch.setattr(made, "remove_forwarding", lambda: 0)
    removed = made.down()
    deletes = [c for c in fake.calls if "delete" in c]
    assert ("delete", "--force", "lab1-registry") in deletes
    assert ("network", "delete", bridge) in deletes
    assert ("image", "delete", "cc" * 32) in deletes
    assert len(deletes) == 3, deletes  # not the other folder's lab1, the school's container, incusbr0, a warm image
    assert removed[0] == "container lab1-registry"


@pytest.mark.parametrize("failing", [2, 9])
def test_a_bridge_delete_that_fails_while_the_bridge_is_there_is_tried_again(tmp_path, monkeypatch, failing):
    lab = incus_lab(tmp_path)
    state = str(lab.state_dir)
    bridge = incus.bridge_name(state)
    fake = FakeIncus("[]", json.dumps([{"name": bridge, "config": {"user.reglab.lab": "lab1",
                                                                   "user.reglab.state": state}}]), failing=failing)
    made = provider.IncusProvider(lab, Redactor(), say=lambda _m: None)
    made.incus = fake
    monkeypatch.setattr(provider.shutil, "which", lambda _n: "/usr/bin/incus")
    monkeypatch.setattr(provider.time, "sleep", lambda _s: None)
    monkeypatch.setattr(made, "remove_forwarding", lambda: 0)
    if failing < provider.BRIDGE_DELETE_TRIES:
        assert made.down() == [f"network {bridge}"]
        assert fake.calls.count(("network", "delete", bridge)) == failing + 1
    else:  # still failing at the last try: the error is Incus's, not swallowed
        with pytest.raises(LabFailure, match="network delete"):
            made.down()
        assert fake.calls.count(("network", "delete", bridge)) == provider.BRIDGE_DELETE_TRIES


def test_a_container_of_the_same_name_that_is_not_this_labs_is_refused_by_name(tmp_path, monkeypatch):
    lab = incus_lab(tmp_path)
    made = provider.IncusProvider(lab, Redactor(), say=lambda _m: None)
    made.incus = FakeIncus(json.dumps([{"name": "lab1-registry", "status": "Running", "config": {}}]))
    monkeypatch.setattr(provider.shutil, "which", lambda _n: "/usr/bin/incus")
    with pytest.raises(LabError, match="lab1-registry.*not reglab's.*another `name`"):
        made.leftovers({})


def test_a_btrfs_pool_is_a_bounded_loop_file_and_dir_has_no_size():
    assert "driver: btrfs\n  config:\n    size: 40GiB\n" in incus.preseed(driver="btrfs")
    assert "size" not in incus.preseed(driver="dir")


def test_docker_in_a_machine_uses_overlay2_whatever_the_pool():
    assert json.loads(container.guest_files()["/etc/docker/daemon.json"][1]) == {"storage-driver": "overlay2"}


def test_inotify_and_keyring_limits_are_raised_never_lowered():
    assert incus.raised_limits({"fs.inotify.max_user_instances": 128, "fs.inotify.max_user_watches": 2000000,
                                "kernel.keys.maxkeys": 200, "kernel.keys.maxbytes": 10**7}) == \
        {"fs.inotify.max_user_instances": 8192, "kernel.keys.maxkeys": 2000}
    assert incus.raised_limits(dict.fromkeys(incus.HOST_LIMITS, 10**7)) == {}


def test_a_cached_root_file_system_the_host_did_not_record_is_built_again(tmp_path, monkeypatch):
    from lab.machines import digests

    monkeypatch.setenv("REGLAB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    lab = incus_lab(tmp_path)
    key = container.recipe_key()
    planted = lab.cache_dir / "incus" / f"rootfs-{key}.tar"
    planted.parent.mkdir(parents=True)
    planted.write_bytes(b"planted")
    (planted.parent / f"rootfs-{key}.json").write_text("{}")
    builds = []

    def fake_build(lab, key, public_key, run, say, packages, files, units, cache):  # noqa: ANN001, ARG001
        target = cache / f"rootfs-{key}.tar"
        if target.exists():
            return target, {}, False
        builds.append(key)
        target.write_bytes(b"built here")
        return target, {}, True

    monkeypatch.setattr(container, "build_rootfs", fake_build)
    _, rootfs, _ = container.build(lab, None, lambda _m: None)
    assert builds == [key] and rootfs.read_bytes() == b"built here" and digests.recorded(rootfs, digests.user_store())
    container.build(lab, None, lambda _m: None)
    assert builds == [key]  # recorded now: used as it is


def test_the_debian13_incus_image_has_the_sysctl_defaults_its_ping_relies_on(tmp_path, monkeypatch):
    """As the Debian 13 box: trixie's ping has no cap_net_raw and needs net.ipv4.ping_group_range from
    linux-sysctl-defaults, which it only recommends; an Incus container's own network namespace starts with
    the kernel's "1 0" (no group may ping), so `ping` as the vagrant user failed there too."""
    assert "linux-sysctl-defaults" in container.image_packages(PLATFORMS["debian13"])
    assert "linux-sysctl-defaults" not in container.image_packages(PLATFORMS["debian12"])  # not in bookworm
    assert set(container.PACKAGES) <= set(container.image_packages(PLATFORMS["debian12"]))
    monkeypatch.setenv("REGLAB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    asked: dict[str, tuple[str, ...]] = {}

    def fake_build(lab, key, public_key, run, say, packages, files, units, cache):  # noqa: ANN001, ARG001
        asked[lab.platform] = tuple(packages)
        cache.mkdir(parents=True, exist_ok=True)
        target = cache / f"rootfs-{key}.tar"
        target.write_bytes(b"built here")
        return target, {}, True

    monkeypatch.setattr(container, "build_rootfs", fake_build)
    for platform in ("debian12", "debian13"):
        folder = tmp_path / platform
        folder.mkdir()
        (folder / "lab.yml").write_text(f"name: lab1\nprovider: incus\nplatform: {platform}\n")
        container.build(load(folder / "lab.yml", environ={}), None, lambda _m: None)
    assert "linux-sysctl-defaults" in asked["debian13"] and "linux-sysctl-defaults" not in asked["debian12"]


def test_machine_images_of_older_recipes_are_pruned_and_nothing_else(tmp_path):
    lab = incus_lab(tmp_path)
    fake = FakeIncus("[]", images=json.dumps([
        {"fingerprint": "01" * 32, "aliases": [{"name": "reglab-debian12-new"}],
         "properties": {"user.reglab.kind": "base", "user.reglab.created": "300"}},
        {"fingerprint": "02" * 32, "aliases": [{"name": "reglab-debian12-older"}],
         "properties": {"user.reglab.kind": "base", "user.reglab.created": "200"}},
        {"fingerprint": "03" * 32, "aliases": [{"name": "reglab-debian12-oldest"}],
         "properties": {"user.reglab.kind": "base", "user.reglab.created": "100"}},
        {"fingerprint": "04" * 32, "aliases": [{"name": "school-image"}], "properties": {}},
    ]))
    made = provider.IncusProvider(lab, Redactor(), say=lambda _m: None)
    made.incus = fake
    assert made.prune_bases("reglab-debian12-new") == ["reglab-debian12-older", "reglab-debian12-oldest"]


def test_a_labs_bridge_rules_that_are_gone_are_made_again_and_present_ones_are_left(tmp_path, monkeypatch):
    """Issue 17 item 4: a host restart or firewall reload flushes the rules; the next command makes them again."""
    lab = incus_lab(tmp_path)
    made = provider.IncusProvider(lab, Redactor(), say=lambda _m: None)
    remade: list[str] = []
    listing = {"now": "-N DOCKER-USER\n-A DOCKER-USER -j RETURN\n"}
    monkeypatch.setattr(made, "_iptables", lambda: ["iptables", "-w", "10"])
    monkeypatch.setattr(made, "_chain", lambda _ipt: "DOCKER-USER")
    monkeypatch.setattr(provider, "probe", lambda argv, timeout: listing["now"])
    monkeypatch.setattr(made, "allow_forwarding", lambda: remade.append("rules"))
    assert made.keep_apart() == [made.bridge] and remade == ["rules"]
    listing["now"] += f'-A DOCKER-USER -i {made.bridge} -m comment --comment "{incus.RULE_TAG}:{made.bridge}" -j DROP\n'
    assert made.keep_apart() == [] and remade == ["rules"]
    assert made.isolation() is None
    monkeypatch.setattr(made, "_iptables", lambda: None)
    assert "as root" in made.isolation() and made.keep_apart() == []


# --- issue 21: an Incus remote (a cluster) ------------------------------------------------


def test_an_incus_remote_is_a_name_for_provider_incus_only(tmp_path):
    from lab.common.errors import ConfigError

    base = "name: lab1\nprovider: {provider}\nincus: {{remote: {remote}}}\n"
    (tmp_path / "lab.yml").write_text(base.format(provider="incus", remote="school-cluster"))
    assert load(tmp_path / "lab.yml", environ={}).incus_remote == "school-cluster"
    (tmp_path / "lab.yml").write_text(base.format(provider="incus", remote="local"))
    assert load(tmp_path / "lab.yml", environ={}).incus_remote is None  # the local socket, as by default
    for provider_name, remote, said in (("incus", '"a:b"', "incus.remote: expected the name of an Incus remote"),
                                        ("incus", '"-x"', "incus.remote"),
                                        ("docker", "school", "incus.remote: an Incus remote is for `provider: incus`")):
        (tmp_path / "lab.yml").write_text(base.format(provider=provider_name, remote=remote))
        with pytest.raises(ConfigError, match=re.escape(said)):
            load(tmp_path / "lab.yml", environ={})


def test_machines_on_a_remote_are_reached_by_ssh_through_incus_exec_to_their_own_sshd(tmp_path):
    assert incus.proxy_command("school", "lab1-client") == "incus exec school:lab1-client -- /usr/sbin/sshd -i"
    block = host_block("client", "10.78.33.11", 22, "vagrant", tmp_path / "kh", tmp_path / "key",
                       proxy=incus.proxy_command("school", "lab1-client"))
    assert block.splitlines()[-1] == "  ProxyCommand incus exec school:lab1-client -- /usr/sbin/sshd -i"
    assert "ProxyCommand" not in host_block("client", "10.78.33.11", 22, "vagrant", tmp_path / "kh")


def test_a_labs_acl_rejects_every_private_range_but_its_own_and_its_gateway_but_dns_and_dhcp():
    rules = incus.acl_rules("10.76.65.10")
    rejected = [ipaddress.ip_network(n) for n in rules[0][2].removeprefix("destination=").split(",")]
    def hit(ip: str) -> bool:
        return any(ipaddress.ip_address(ip) in net for net in rejected)
    assert not hit("10.76.65.11") and not hit("10.76.65.1")  # its own machines; its gateway by the next rules
    assert hit("10.76.66.10") and hit("10.76.0.11") and hit("192.168.33.10") and hit("172.17.0.1")
    assert not hit("203.0.113.80")  # a mirror outside private ranges, through NAT
    assert rules[1][1:] == ["action=reject", "destination=10.76.65.1/32", "protocol=tcp",
                            "destination_port=1-52,54-65535"]
    assert rules[2][-1] == "destination_port=1-52,54-66,68-65535"  # DNS (53) and DHCP (67) stay open


def test_cluster_listings_are_read_for_members_and_each_instances_member():
    assert incus.members([{"server_name": "m1", "status": "Online"}, {"server_name": "m2", "status": "Offline"},
                          {"status": "?"}]) == {"m1": "Online", "m2": "Offline"}
    assert incus.members(None) == {}
    found = incus.instances([{"name": "a-registry", "status": "Running", "location": "m2"},
                             {"name": "b-registry", "status": "Running", "location": "none"}])
    assert found["a-registry"].location == "m2"
    assert incus.member_of(found, ["a-client", "a-registry"]) == "m2"
    assert incus.member_of(found, ["b-registry"]) is None  # "none": not on a cluster
    assert incus.cluster_network_args(["m1", "m2"], "cl:br0") == [
        ["network", "create", "cl:br0", "--target=m1"], ["network", "create", "cl:br0", "--target=m2"]]


FAKE_INCUS = r'''#!/usr/bin/env python3
"""A fake `incus` for unit tests: records its argv, answers from the JSON map in $FAKE_INCUS_ANSWERS."""
import json, os, sys
args = sys.argv[1:]
with open(os.environ["FAKE_INCUS_LOG"], "a") as log:
    log.write(json.dumps(args) + "\n")
answers = json.load(open(os.environ["FAKE_INCUS_ANSWERS"]))
key = " ".join(a for a in args if a not in ("--format", "json"))
if key == "list school:" and os.path.exists(os.environ["FAKE_INCUS_LOG"]):
    made = [json.loads(l) for l in open(os.environ["FAKE_INCUS_LOG"]) if json.loads(l)[:1] == ["init"]]
    print(json.dumps([{"name": a[2].split(":")[1], "status": "Stopped", "location": "m2", "config": {}}
                      for a in made]))
    sys.exit(0)
print(answers.get(key, "[]" if "json" in args else ""))
'''


def fake_incus_cli(tmp_path: Path, monkeypatch, answers: dict[str, str]) -> Path:
    """The `incus` command on PATH replaced by a script: the real client (lab.machines.incus.Incus) runs it."""
    folder = tmp_path / "bin"
    folder.mkdir()
    script = folder / "incus"
    script.write_text(FAKE_INCUS)
    script.chmod(0o755)
    (tmp_path / "answers.json").write_text(json.dumps(answers))
    log = tmp_path / "incus-calls.jsonl"
    monkeypatch.setenv("PATH", f"{folder}:{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_INCUS_ANSWERS", str(tmp_path / "answers.json"))
    monkeypatch.setenv("FAKE_INCUS_LOG", str(log))
    return log


def test_a_labs_machines_on_a_cluster_go_to_the_member_the_first_was_placed_on(tmp_path, monkeypatch):
    (tmp_path / "lab.yml").write_text("name: lab1\nprovider: incus\nincus: {remote: school}\nmachines:\n"
                                      "  registry: {ip: 10.78.33.10}\n  client: {ip: 10.78.33.11}\n")
    lab = load(tmp_path / "lab.yml", environ={})
    log = fake_incus_cli(tmp_path, monkeypatch, {
        "info school:": "environment:\n  server_clustered: true\n",
        "profile show school:default": "devices:\n  root: {type: disk, path: /, pool: default}\n",
    })
    made = provider.IncusProvider(lab, Redactor(), say=lambda _m: None)
    (tmp_path / "key.pub").write_text("ssh-ed25519 AAAA lab\n")
    made.key = tmp_path / "key"
    made.image = "reglab-debian12-x"
    made.place(["registry", "client"], {})
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    inits = [c for c in calls if c[0] == "init"]
    assert inits[0][:3] == ["init", "school:reglab-debian12-x", "school:lab1-registry"]
    assert not [a for a in inits[0] if a.startswith("--target")]  # the first: the cluster's scheduler places it
    # Debian 13's ping needs a ping_group_range the container's network namespace does not start with.
    # Only groups the container maps (65536 of them, isolated): a wider range fails the start (EINVAL).
    assert all("--config=linux.sysctl.net.ipv4.ping_group_range=0 65535" in init for init in inits)
    assert inits[1][2] == "school:lab1-client" and "--target=m2" in inits[1]  # the second: beside it
    devices = [c for c in calls if c[:3] == ["config", "device", "add"]]
    assert [c[3] for c in devices] == ["school:lab1-registry", "school:lab1-client"], calls
    pushes = [c for c in calls if c[:2] == ["file", "push"]]
    assert pushes and all(c[3].startswith("school:lab1-") for c in pushes)


def test_a_remote_that_is_not_added_here_is_refused_with_how_to_add_it(tmp_path, monkeypatch):
    (tmp_path / "lab.yml").write_text("name: lab1\nprovider: incus\nincus: {remote: school}\n")
    lab = load(tmp_path / "lab.yml", environ={})
    fake_incus_cli(tmp_path, monkeypatch, {"remote list": json.dumps({"local": {"Addr": "unix://"}})})
    with pytest.raises(LabError, match=r"no Incus remote named 'school'.*incus remote add school ADDRESS --token"):
        provider.IncusProvider(lab, Redactor(), say=lambda _m: None).check_host()


def test_a_remote_lab_has_no_host_firewall_rules_and_ssh_config_goes_through_incus(tmp_path):
    (tmp_path / "lab.yml").write_text("name: lab1\nprovider: incus\nincus: {remote: school}\nmachines:\n"
                                      "  registry: {ip: 10.78.33.10}\n  client: {ip: 10.78.33.11}\n")
    made = provider.IncusProvider(load(tmp_path / "lab.yml", environ={}), Redactor(), say=lambda _m: None)
    assert made.isolation() is None and made.keep_apart() == [] and made.remove_forwarding() == 0
    assert made.warm_store() is None
    text = made.write_ssh_config().read_text()
    assert "ProxyCommand incus exec school:lab1-registry -- /usr/sbin/sshd -i" in text
    assert "ProxyCommand incus exec school:lab1-client -- /usr/sbin/sshd -i" in text
