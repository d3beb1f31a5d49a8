"""Machines as unprivileged Incus system containers (`provider: incus`).

Each machine is a system container (systemd, sshd, Docker inside) with
`security.nesting=true` and nothing privileged: every process in it, a
student's `sudo` shell and Docker's included, runs as an unmapped uid on the
host, so root in a machine is nobody on the host. `security.idmap.isolated`
gives each machine a uid range of its own, so a student who escaped their
container would still not own another lab's files or processes. The image is
built here from Debian packages (lab.machines.boxes.container); a machine
provisioned from nothing is published as a warm image (lab.machines.warm.IncusWarm).

The lab's two machines sit on a bridge of the lab's own (its /24, the
machines at their lab addresses, the host at .1), NATed out to the host's
uplink for the Debian mirror; firewall rules scoped to that bridge let its
machines reach each other, the uplink and nothing else (not another lab's
bridge, not a Docker network). reglab reaches them over SSH like any other
machine, with a key of the lab's own pushed in through Incus and their host
keys read through Incus (never trusted on first use). Everything made here
carries `user.reglab.*` keys, and `down` removes only what carries this lab's.

On an Incus remote (`incus.remote` in lab.yml, issue 21; often a cluster)
every name is `REMOTE:NAME` (`at`), the image is copied there once, a lab's
machines share one member (the first placed by the cluster, the others
`--target` there), its bridge is kept apart by an Incus network ACL instead
of this host's firewall, and SSH reaches each machine through Incus's exec
API (`ProxyCommand incus exec REMOTE:INSTANCE -- sshd -i`): no route to the
member's bridge is needed, and the rest of reglab does not change.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from lab.common.errors import LabError, LabFailure, RemoteError
from lab.common.files import atomic_write, locked, write_private
from lab.common.parallel import on_each
from lab.common.polling import poll
from lab.common.sshkeys import new_key
from lab.machines import hostapt, incus
from lab.machines.boxes import container
from lab.machines.host import Runner, probe
from lab.machines.providers.base import MachineStatus, Say, wait_for_ssh
from lab.machines.providers.ssh import host_block
from lab.machines.remote import Host, Machine, machine_logger
from lab.machines.warm import IncusWarm, mirror_release, release_digest, stale
from lab.model.credentials import Redactor
from lab.model.lab import Lab

USER = "vagrant"  # the machines' sudo user, as on every provider's image
USER_ID = 1000  # its uid in the image (the first user made)
HOST_KEY = "/etc/ssh/ssh_host_ed25519_key.pub"
HOST_KEY_WAIT = 60
IMAGE_LOCK_WAIT = 2 * container.IMPORT_TIMEOUT + 600  # another lab's build and import of the image
BRIDGE_DELETE_TRIES = 5  # another lab's bridge deleted at the same moment fails Incus's delete of ours
INCUS_MISSING = ("Incus does not answer here (`incus info`); install and start it with "
                 "`REGLAB_PROVIDER=incus python -m lab.machines.hostsetup` (as root)")


def known_hosts_line(ip: str, public_key: str) -> str:
    """A known_hosts line for a machine's host key, read through Incus. Pure."""
    words = public_key.split()
    if len(words) < 2:
        raise LabFailure(f"{ip}: no SSH host key in {HOST_KEY}")
    return f"{ip} {words[0]} {words[1]}"


def hosts_file(machine: str) -> str:
    return f"127.0.0.1\tlocalhost\n127.0.1.1\t{machine}\n\n::1\tlocalhost ip6-localhost ip6-loopback\n"


# Docker inside needs nesting; an isolated idmap keeps each machine's root a host uid no other machine shares.
MACHINE_SECURITY = ("security.nesting=true", "security.idmap.isolated=true")
# The container's groups may open ICMP echo sockets (ping without cap_net_raw): Debian 13's ping has no file
# capability and relies on this range, which an Incus container's own network namespace starts without ("1 0").
# linux-sysctl-defaults' "0 2147483647" cannot be set there (EINVAL: the range must be groups the container maps,
# 65536 with security.idmap.isolated), so `ping` as the vagrant user failed with "missing cap_net_raw+p capability".
PING_GROUPS = "linux.sysctl.net.ipv4.ping_group_range=0 65535"


class IncusProvider:
    """Boot, inspect, reach and remove the lab's machines as Incus system containers."""

    name = "incus"
    makes_machines = True

    def __init__(self, lab: Lab, redactor: Redactor, say: Say = print, remote: str | None = None) -> None:
        self.lab = lab
        self.remote = lab.incus_remote or "" if remote is None else remote
        self.say = say
        self.redactor = redactor
        self.log_dir = lab.state_dir / "logs"
        self.ssh_config_path = lab.state_dir / "ssh_config"
        self.known_hosts = lab.state_dir / "known_hosts"
        self.key = lab.state_dir / "machine_key"
        self.host = Host(machine_logger(self.log_dir, "host"), redactor, lab.timeouts.command)
        self.incus = incus.Incus(self.log_dir / "incus.log", self.remote)
        self.run = Runner(self.log_dir / "incus.log")
        self.bridge = incus.bridge_name(str(lab.state_dir))
        self.state = str(lab.state_dir)
        self.image: str | None = None  # what machines created from now on boot from
        self._warm: IncusWarm | None = None
        self._machines: dict[str, Machine] = {}

    @property
    def names(self) -> list[str]:
        return [m.name for m in self.lab.machines]

    def instance(self, name: str) -> str:
        return incus.instance_name(self.lab.name, name)

    def at(self, name: str) -> str:
        """An instance, network or image as the `incus` command names it: `REMOTE:NAME` on a remote."""
        return self.incus.name(name)

    def server(self) -> list[str]:
        """The argument naming the Incus server for commands that take one (`incus list REMOTE:`)."""
        return [f"{self.remote}:"] if self.remote else []

    def labels(self, kind: str) -> list[str]:
        return [f"{incus.LAB_KEY}={self.lab.name}", f"{incus.STATE_KEY}={self.state}", f"{incus.KIND_KEY}={kind}"]

    def check_host(self) -> None:
        if not self.remote:
            if shutil.which("incus") is None or not self.incus.ok("info", timeout=30):
                raise LabError(INCUS_MISSING)
            return
        if shutil.which("incus") is None:
            raise LabError(f"`incus.remote: {self.remote}` in {self.lab.source} needs the `incus` client here "
                           "(Debian: apt-get install incus-client)")
        remotes = incus.parse_json(self.run(["incus", "remote", "list", "--format", "json"], timeout=30,
                                            check=False).stdout, "remote list")
        if not isinstance(remotes, dict) or self.remote not in remotes:
            raise LabError(f"no Incus remote named {self.remote!r} (`incus.remote` in {self.lab.source}); add it "
                           f"with `incus remote add {self.remote} ADDRESS --token TOKEN` (a token from "
                           "`incus config trust add NAME` on the cluster)")
        if not self.incus.ok("info", f"{self.remote}:", timeout=30):
            raise LabError(f"the Incus remote {self.remote!r} does not answer within 30s (`incus info {self.remote}:`)")

    def notes(self) -> list[str]:
        if self.remote:
            return [f"incus: unprivileged system containers on the remote {self.remote!r}, both of a lab on one "
                    f"member, on the lab's own bridge {self.bridge}; SSH through Incus's exec API"]
        return [f"incus: unprivileged system containers on the lab's own bridge {self.bridge}"]

    # -- what the machines boot from ----------------------------------------------
    def prepare(self, say: Say, phase) -> str | None:  # noqa: ANN001 - Progress.phase
        """The machine image, built here from Debian packages and imported once; its alias (the warm key's base)."""
        self.check_host()
        with phase("machine image", "Incus machine image (Debian packages, mmdebstrap)"):
            alias = container.alias(container.recipe_key(self.lab.debian), self.lab.debian)
            with self.image_lock():  # a class's labs start at once: one of them imports or uploads, once
                if incus.by_alias(incus.images(self.incus.json("image", "list", *self.server())), alias) is None:
                    self.upload_image(alias, say)
                    self.prune_bases(alias)
        self.image = alias
        return alias

    @contextlib.contextmanager
    def image_lock(self) -> Iterator[None]:
        """A host-wide lock per Incus server on the machine image's import, waited for at most IMAGE_LOCK_WAIT."""
        folder = self.lab.cache_dir / "incus"
        folder.mkdir(parents=True, exist_ok=True)
        with locked(folder / f"image-{self.remote or 'local'}.lock", IMAGE_LOCK_WAIT) as held:
            if not held:
                raise LabFailure(f"another reglab held the Incus image import for {IMAGE_LOCK_WAIT}s "
                                 f"({folder}/image-{self.remote or 'local'}.lock)")
            yield

    def upload_image(self, alias: str, say: Say) -> None:
        """The machine image into the Incus reglab uses: built here (once per recipe) and imported; on a remote,
        copied once from this host's Incus when it has it (the cluster then copies it to its members)."""
        local = incus.Incus(self.log_dir / "incus.log")
        if self.remote and shutil.which("incus") and local.ok("image", "show", f"local:{alias}", timeout=30):
            say(f"copying the machine image {alias} to the Incus remote {self.remote!r}")
            local("image", "copy", f"local:{alias}", f"{self.remote}:", "--mode=push", "--copy-aliases",
                  timeout=container.IMPORT_TIMEOUT)
            return
        meta, rootfs, _ = container.build(self.lab, Runner(self.lab.cache_dir / "incus" / "build.log"), say)
        self.incus("image", "import", str(meta), str(rootfs), *self.server(), "--alias", alias,
                   f"{incus.KIND_KEY}=base", f"{incus.CREATED_KEY}={int(time.time())}",
                   timeout=container.IMPORT_TIMEOUT)

    def prune_bases(self, keep: str) -> list[str]:
        """Machine images of older recipes: as warm images are, the newest other kept for a while."""
        created, prints = {}, {}
        for image in incus.images(self.incus.json("image", "list", *self.server())):
            if image.properties.get(incus.KIND_KEY) != "base" or keep in image.aliases:
                continue
            name = image.aliases[0] if image.aliases else image.fingerprint
            stamp = image.properties.get(incus.CREATED_KEY, "0")
            created[name], prints[name] = (int(stamp) if stamp.isdigit() else 0), image.fingerprint
        return [name for name in stale(created, time.time()) if self.incus.ok("image", "delete", self.at(prints[name]))]

    def warm_store(self) -> IncusWarm | None:
        """Warm images on this host's Incus; on a remote none yet: each lab provisions from the machine image.

        NOTE: a warm image published on one member would be copied to another by the cluster as the base
        image is; IncusWarm names instances without a remote today, so it stays local."""
        if self.remote:
            return None
        if self._warm is None:
            self._warm = IncusWarm(self.incus, self.say, self.lab.cache_dir)
        return self._warm

    def archive_now(self) -> str:
        """The suite's InRelease as the mirror serves it now: the machines install from the mirror itself."""
        suite = self.lab.debian.suite
        mirror = hostapt.mirror_for(suite, self.lab.mirror)
        return release_digest(mirror_release(mirror, suite, hostapt.host_proxy()))

    def boot_from(self, image: str) -> None:
        self.image = image

    # -- what is there -----------------------------------------------------------------
    def _instances(self) -> dict[str, incus.Instance]:
        return incus.instances(self.incus.json("list", *self.server()))

    def leftovers(self, states: dict[str, str]) -> list[str]:  # noqa: ARG002
        """Refuse, with what to change, a lab name or subnet another lab (or anything else) uses."""
        self.check_host()
        found = self._instances()
        for name in self.names:
            there = found.get(self.instance(name))
            if there is not None and not incus.ours(there.config, self.lab.name, self.state):
                owner = there.config.get(incus.STATE_KEY)
                raise LabError(f"an Incus container named {there.name!r} exists already"
                               + (f" (the lab in {Path(owner).parent.parent})" if owner else " (not reglab's)")
                               + f"; give this lab another `name` in {self.lab.source}")
        if self.remote:
            return []  # the lab's bridge is on a member, not here: this host's routes say nothing of it
        subnet = incus.subnet_of(self.lab.machines[0].ip)
        routes = json.loads(probe(["ip", "-j", "route"], timeout=30) or "[]")
        clash = incus.routes_over(routes, subnet, self.bridge)
        if clash:
            raise LabError(f"the subnet {subnet} is already routed on this host ({', '.join(clash)}); give this "
                           f"lab machines on another /24 in {self.lab.source}")
        return []

    def status(self) -> list[MachineStatus]:
        found = self._instances()
        states = []
        for m in self.lab.machines:
            there = found.get(self.instance(m.name))
            where = there.location if there is not None and self.remote and there.location != "none" else ""
            states.append(MachineStatus(m.name, self.name, incus.state_word(there.status if there else None), m.ip,
                                        where))
        return states

    def running(self) -> list[str]:
        return [s.name for s in self.status() if s.state == "running"]

    # -- the lab's network -------------------------------------------------------------
    def network(self) -> None:
        """The lab's bridge with the lab's /24 (the host at .1), NAT out, no IPv6; and its firewall rules."""
        gateway = incus.gateway(self.lab.machines[0].ip)
        networks = {n.get("name"): n for n in self.incus.json("network", "list", *self.server()) if isinstance(n, dict)}
        there = networks.get(self.bridge)
        if there is not None and not incus.ours(there.get("config") or {}, self.lab.name, self.state):
            raise LabError(f"an Incus network named {self.bridge} exists and is not this lab's; remove it or move "
                           f"the lab folder ({self.lab.state_dir})")
        if there is None and self.remote:
            # On a cluster a managed network is defined on every member first (pending), then created; the
            # members have no Docker beside them, so Incus keeps its own firewall rules for the bridge.
            # An ACL of the lab's own keeps its machines from other labs' and from the members (Incus's ACLs
            # apply on a bridge, no host firewall needed).
            self.acl()
            on = incus.members(self.incus.json("cluster", "list", f"{self.remote}:")) if self.clustered() else {}
            for args in incus.cluster_network_args(sorted(on), self.at(self.bridge)):
                self.incus(*args)
            self.incus("network", "create", self.at(self.bridge), "--type=bridge", f"ipv4.address={gateway}",
                       "ipv4.nat=true", "ipv6.address=none", f"security.acls={self.bridge}",
                       "security.acls.default.egress.action=allow", "security.acls.default.ingress.action=allow",
                       *self.labels("network"))
        elif there is None:
            self.incus("network", "create", self.bridge, "--type=bridge", f"ipv4.address={gateway}",
                       "ipv4.nat=true", "ipv6.address=none", "ipv4.firewall=false", "ipv6.firewall=false",
                       *self.labels("network"))
        if not self.remote:
            self.allow_forwarding()

    def acl(self) -> None:
        """The lab's network ACL on the remote (named as its bridge), made anew with this lab's rules."""
        there = self.incus.json("network", "acl", "list", *self.server())
        mine = next((a for a in there or [] if isinstance(a, dict) and a.get("name") == self.bridge), None)
        if mine is not None and not incus.ours(mine.get("config") or {}, self.lab.name, self.state):
            raise LabError(f"an Incus network ACL named {self.bridge} exists on {self.remote!r} and is not this lab's")
        if mine is None:
            self.incus("network", "acl", "create", self.at(self.bridge), *self.labels("acl"))
        for rule in incus.acl_rules(self.lab.machines[0].ip):
            self.incus("network", "acl", "rule", "add", self.at(self.bridge), *rule, check=mine is None)

    def clustered(self) -> bool:
        """Whether the remote is an Incus cluster (a lone server answers `incus cluster list` with an error)."""
        info = self.incus.yaml("info", f"{self.remote}:", timeout=30)
        return isinstance(info, dict) and bool((info.get("environment") or {}).get("server_clustered"))

    def _iptables(self) -> list[str] | None:
        if os.geteuid() != 0 or shutil.which("iptables") is None:
            return None
        return ["iptables", "-w", "10"]

    def _chain(self, iptables: list[str]) -> str:
        """DOCKER-USER where Docker runs (its FORWARD policy is DROP), else FORWARD itself."""
        return "DOCKER-USER" if probe([*iptables, "-S", "DOCKER-USER"], timeout=30) is not None else "FORWARD"

    def allow_forwarding(self) -> None:
        iptables = self._iptables()
        if iptables is None:
            self.say("note: not root or no iptables: the lab's bridge is left to this host's firewall as it is")
            return
        self.remove_forwarding()
        uplink = incus.default_device(json.loads(probe(["ip", "-j", "route", "show", "default"], timeout=30) or "[]"))
        if uplink is None:
            raise LabFailure("this host has no default route: the machines could not reach the Debian mirror")
        chain = self._chain(iptables)
        for rule in reversed(incus.forward_rules(self.bridge, uplink)):
            self.run([*iptables, "-I", chain, "1", *rule], timeout=30)

    def isolation(self) -> str | None:
        """Why this lab's machines would not be kept apart from other labs', or None.

        NOTE: labs on Incus are bridges of their own; traffic between them is
        routed through the host's FORWARD chain, where reglab's rules for each
        bridge let only the lab's own traffic through (br_netfilter is not needed).
        """
        if self.remote:
            return None  # on a remote each lab's bridge carries an Incus network ACL of its own (network())
        if self._iptables() is None:
            return "keeping Incus labs apart needs iptables rules for each lab's bridge, made as root"
        return None

    def keep_apart(self) -> list[str]:
        """The bridge's rules made again when they are gone (a host restart or a firewall reload flushes them)."""
        iptables = None if self.remote else self._iptables()
        if iptables is None:
            return []
        chain = self._chain(iptables)
        if incus.tagged_rules(probe([*iptables, "-S", chain], timeout=30) or "", chain, self.bridge):
            return []
        self.say(f"the firewall rules of this lab's bridge {self.bridge} were gone: made again")
        self.allow_forwarding()
        return [self.bridge]

    def remove_forwarding(self) -> int:
        iptables = None if self.remote else self._iptables()
        if iptables is None:
            return 0
        removed = 0
        for chain in ("DOCKER-USER", "FORWARD"):
            listing = probe([*iptables, "-S", chain], timeout=30) or ""
            for rule in incus.tagged_rules(listing, chain, self.bridge):
                self.run([*iptables, "-D", chain, *_split(rule)], timeout=30, check=False)
                removed += 1
        return removed

    # -- machines ------------------------------------------------------------------------
    def up(self, names: Sequence[str] = ()) -> list[Machine]:
        self.check_host()
        targets = list(names) or self.names
        if not self.key.exists():
            new_key(self.key, f"reglab {self.lab.name}")
        self.network()
        found = self._instances()
        create = [n for n in targets if self.instance(n) not in found]
        if create:
            if self.image is None:
                self.prepare(self.say, _no_phase)
            self.place(create, found)
        stopped = [self.at(self.instance(n)) for n in targets
                   if self.instance(n) not in found or found[self.instance(n)].status.lower() != "running"]
        if stopped:
            self.incus("start", *stopped, timeout=self.lab.timeouts.boot)
        self.pin_host_keys(targets)
        self.write_ssh_config()
        machines = [self.connect(name) for name in targets]
        on_each(machines, lambda machine: wait_for_ssh(machine, self.lab.timeouts.boot))
        return machines

    def place(self, create: Sequence[str], found: dict[str, incus.Instance]) -> None:
        """The machines made; on a cluster all of a lab's on one member: where one of them already runs, else
        the first placed by the cluster's scheduler and the others `--target` that member (labs spread)."""
        member = incus.member_of(found, [self.instance(n) for n in self.names]) if self.remote else None
        create = list(create)
        if self.remote and member is None and self.clustered():
            self.create(create[0])
            member = incus.member_of(self._instances(), [self.instance(create[0])])
            create = create[1:]
        on_each(create, lambda name: self.create(name, member))

    def create(self, name: str, member: str | None = None) -> None:
        """One container from the image: nesting (Docker inside) and a uid range of its own, on the lab's bridge at
        its address; on the cluster `member` when given."""
        spec = self.lab.machine(name)
        instance = self.at(self.instance(name))
        assert self.image is not None
        pool = incus.root_pool(self.incus.yaml("profile", "show", self.at("default")),
                               self.incus.json("storage", "list", *self.server()))
        if pool is None:
            raise LabError(f"Incus has no storage pool; {INCUS_MISSING}")
        config = [f"--config={item}" for item in (*self.labels("machine"), f"user.reglab.machine={name}",
                                                   *MACHINE_SECURITY, PING_GROUPS)]
        target = [f"--target={member}"] if member else []
        self.incus("init", self.at(self.image), instance, "--no-profiles", "--storage", pool, *config, *target,
                   timeout=self.lab.timeouts.boot)
        self.incus("config", "device", "add", instance, "eth0", "nic", f"network={self.bridge}", "name=eth0",
                   f"ipv4.address={spec.ip}")
        gateway = incus.gateway(spec.ip).split("/")[0]
        files = {
            "/etc/hostname": (f"{name}\n", 0, "0644"),
            "/etc/hosts": (hosts_file(name), 0, "0644"),
            "/etc/resolv.conf": (f"nameserver {gateway}\n", 0, "0644"),
            f"/home/{USER}/.ssh/authorized_keys": (Path(f"{self.key}.pub").read_text(), USER_ID, "0600"),
        }
        folder = self.lab.state_dir / "incus-files" / name
        folder.mkdir(parents=True, exist_ok=True)
        for number, (path, (text, owner, mode)) in enumerate(files.items()):
            local = folder / str(number)
            write_private(local, text)
            self.incus("file", "push", str(local), f"{instance}{path}", f"--uid={owner}", f"--gid={owner}",
                       f"--mode={mode}")
        shutil.rmtree(folder, ignore_errors=True)

    def pin_host_keys(self, targets: Sequence[str]) -> None:
        """Each machine's host key read through Incus (its own channel): SSH never trusts one on first use."""
        lines: dict[str, str] = {}

        def read(name: str) -> None:
            spec = self.lab.machine(name)
            got: list[str] = []

            def present() -> bool:
                done = self.run(["incus", "exec", self.at(self.instance(name)), "--", "cat", HOST_KEY], timeout=30,
                                check=False)
                got.append(done.stdout)
                return done.returncode == 0 and bool(done.stdout.strip())

            if not poll(present, HOST_KEY_WAIT):
                raise RemoteError(f"{name}: no SSH host key within {HOST_KEY_WAIT}s (is sshd starting? see "
                                  f"`incus console {self.at(self.instance(name))} --show-log`)")
            lines[spec.ip] = known_hosts_line(spec.ip, got[-1])

        for name in targets:
            read(name)
        kept = {}
        if self.known_hosts.exists():
            for line in self.known_hosts.read_text().splitlines():
                if line.split(" ", 1)[0] not in lines and line.strip():
                    kept[line.split(" ", 1)[0]] = line
        kept.update(lines)
        atomic_write(self.known_hosts, "".join(f"{line}\n" for line in kept.values()).encode(), mode=0o600)

    def write_ssh_config(self) -> Path:
        """One Host block per machine; on a remote each goes through Incus's exec API to the machine's sshd."""
        blocks = [host_block(m.name, m.ip, 22, USER, self.known_hosts, self.key,
                             proxy=incus.proxy_command(self.remote, self.instance(m.name)) if self.remote else None)
                  for m in self.lab.machines]
        write_private(self.ssh_config_path, "\n\n".join(blocks) + "\n")
        return self.ssh_config_path

    def ssh_config(self) -> Path:
        return self.write_ssh_config()

    def connect(self, name: str) -> Machine:
        if name not in self.names:
            raise LabError(f"no machine {name!r} in {self.lab.source}; machines: {', '.join(self.names)}")
        # A new connection each time (as Vagrant's machines): another reglab may have made the machine
        # anew since (down, up), with new host keys in known_hosts.
        machine = Machine(name, self.ssh_config(), machine_logger(self.log_dir, name), self.redactor,
                          self.lab.timeouts.command, known_hosts=self.known_hosts)
        self._machines[name] = machine
        return machine

    def forget_connections(self) -> None:
        """Close the connections this provider handed out."""
        for machine in self._machines.values():
            machine.close()
        self._machines.clear()

    def down(self) -> list[str]:
        """This lab's containers, its bridge and its rules; nothing that does not carry this lab's keys."""
        self.forget_connections()
        removed = []
        if shutil.which("incus") is not None and self.incus.ok("info", *self.server(), timeout=30):
            for name, there in self._instances().items():
                if incus.ours(there.config, self.lab.name, self.state):
                    self.incus("delete", "--force", self.at(name), timeout=300)
                    removed.append(f"container {name}" + (f" on {there.location}" if self.remote else ""))
            for network in self.incus.json("network", "list", *self.server()):
                if isinstance(network, dict) and network.get("name") == self.bridge and \
                        incus.ours(network.get("config") or {}, self.lab.name, self.state):
                    self._delete_bridge()
                    removed.append(f"network {self.bridge}")
            if self.remote:
                for acl in self.incus.json("network", "acl", "list", *self.server()) or []:
                    if isinstance(acl, dict) and acl.get("name") == self.bridge and \
                            incus.ours(acl.get("config") or {}, self.lab.name, self.state):
                        self.incus("network", "acl", "delete", self.at(self.bridge))
                        removed.append(f"network ACL {self.bridge}")
            for image in incus.images(self.incus.json("image", "list", *self.server())):
                if incus.ours(image.properties, self.lab.name, self.state):
                    self.incus("image", "delete", self.at(image.fingerprint))
                    removed.append(f"image {image.fingerprint[:12]}")
        rules = self.remove_forwarding()
        if rules:
            removed.append(f"{rules} firewall rules for {self.bridge}")
        for path in (self.ssh_config_path, self.known_hosts, self.key, Path(f"{self.key}.pub")):
            path.unlink(missing_ok=True)
        return removed


    def _delete_bridge(self) -> None:
        """The lab's bridge, tried again while it is still there.

        NOTE: Incus 6.0 lists every bridge's children to delete one, and fails when another lab's
        bridge goes in between ("Device ... does not exist"): 2 of 8 labs' `class down` did.
        """
        for attempt in range(BRIDGE_DELETE_TRIES - 1):
            if self.incus.ok("network", "delete", self.at(self.bridge)) or \
                    not self.incus.ok("network", "show", self.at(self.bridge)):
                return
            time.sleep(0.5 * (attempt + 1))
        self.incus("network", "delete", self.at(self.bridge))  # the last try: its failure is the error


def _split(rule: str) -> list[str]:
    return shlex.split(rule)


class _NoPhase:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def _no_phase(*args: object) -> _NoPhase:  # noqa: ARG001
    return _NoPhase()
