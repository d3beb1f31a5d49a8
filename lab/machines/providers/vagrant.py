"""Machines Vagrant boots (docker, libvirt, VirtualBox), through python-vagrant.

python-vagrant runs and parses Vagrant; this module adds what a lab needs
around it: a time bound on every Vagrant call, a log under `.lab/NAME/logs/`,
the provider's preconditions checked before booting, what the machines boot
from (the node image, a box built here, or a warm one), and a `down` that
leaves no container or network behind.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import ipaddress
import json
import logging
import os
import random
import re
import shlex
import shutil
import signal
import stat
import subprocess
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

# python-vagrant warns on import when vagrant is not installed; reglab says so itself, when it matters.
logging.getLogger("vagrant").addHandler(logging.NullHandler())

import vagrant  # noqa: E402

from lab.common.clip import tail  # noqa: E402
from lab.common.errors import LabError, RemoteError  # noqa: E402
from lab.common.files import atomic_write, write_private  # noqa: E402
from lab.machines import boxes, host, hostapt, hostnets  # noqa: E402
from lab.machines.boxes.cache import boxes_dir  # noqa: E402
from lab.machines.boxes.store import BOX_LIST_TIMEOUT, VAGRANT_TIMEOUT  # noqa: E402
from lab.machines.providers.base import MachineStatus, Say, wait_for_ssh  # noqa: E402
from lab.machines.remote import Host, Machine, machine_logger  # noqa: E402
from lab.machines.warm import (  # noqa: E402
    LIBVIRT_URI,
    WARM_BOX_VERSION,
    DockerWarm,
    LibvirtWarm,
    mirror_release,
    release_digest,
)
from lab.model.credentials import Redactor  # noqa: E402
from lab.model.lab import Lab  # noqa: E402

VAGRANTFILE_DIR = Path(__file__).resolve().parents[1]  # lab/machines/Vagrantfile ships with reglab
VBOX_NETWORKS = Path("/etc/vbox/networks.conf")
VBOX_DEFAULT_RANGE = ipaddress.ip_network("192.168.56.0/21")
VAGRANT_MISSING = "vagrant is not installed; on Debian or Ubuntu: apt-get install --no-install-recommends vagrant"
STOP_GRACE = 10  # seconds Vagrant gets after each signal (INT, TERM, KILL) to end
_ERROR_LINES = 15


# What Vagrant says when another Vagrant process got in its way, in its own words: a host-wide
# lock it does not wait for (MachineActionLockedError), and its machine index's lock files, which
# two processes may both try to delete (a Ruby ENOENT "unexpected error" in machine_index.rb), or
# fail to take for a machine it adds ("Failed to lock new machine", machine_index.rb:217).
LOCKED = re.compile(r"because it is locked|No such file or directory @ \S+ - \S*/machine-index/\S+\.lock"
                    r"|Failed to lock new machine: ")
LOCK_PAUSE = (1.0, 4.0)  # seconds, at random, before running a command another Vagrant's lock stopped


class VagrantLocked(RemoteError):
    """Another Vagrant process got in this command's way (a lock); running it again is safe."""


class TimedVagrant(vagrant.Vagrant):
    """python-vagrant with a timeout on every call and output to a log file."""

    def __init__(self, root: Path, env: dict[str, str], log_path: Path, timeout: int,
                 stdin: int | None = None) -> None:
        """`stdin`: what Vagrant reads; None is reglab's own, subprocess.DEVNULL makes a question
        Vagrant asks (no terminal, so nobody would see it) fail at once instead of waiting."""
        log_path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        # python-vagrant opens the log by name with the umask's mode: it is made 0600 here first.
        fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW, 0o600)
        os.fchmod(fd, 0o600)
        os.close(fd)
        self.log_path = log_path
        self.timeout = timeout
        self.stdin = stdin
        cm = vagrant.make_file_cm(str(log_path), mode="a")
        super().__init__(root=str(root), env=env, out_cm=cm, err_cm=cm)

    def _make_vagrant_command(self, args):  # noqa: ANN001
        try:
            return super()._make_vagrant_command(args)
        except RuntimeError:  # python-vagrant's way of saying it found no vagrant on PATH
            raise LabError(VAGRANT_MISSING) from None

    def _call_vagrant_command(self, args):  # noqa: ANN001 - python-vagrant's signature
        return self._again_if_locked(self._call_once, args)

    def _run_vagrant_command(self, args):  # noqa: ANN001
        return self._again_if_locked(self._run_once, args)

    def _again_if_locked(self, call, args):  # noqa: ANN001, ANN202
        """Run a Vagrant command again while another Vagrant holds a host-wide lock, within the bound.

        NOTE: Vagrant takes some locks for the whole host without waiting
        (`fpcollision`, checked by every `up`), so labs booting at once (a
        class) make each other fail at random with "it is locked"; the command
        is safe to run again, after a short random pause.
        """
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                return call(args)
            except VagrantLocked:
                if time.monotonic() + LOCK_PAUSE[1] >= deadline:
                    raise
                time.sleep(random.uniform(*LOCK_PAUSE))

    def _call_once(self, args):  # noqa: ANN001
        command = self._make_vagrant_command(args)
        with self.out_cm() as out_fh, self.err_cm() as err_fh:
            out_fh.write(f"\n$ {' '.join(command)}\n")
            out_fh.flush()
            start = out_fh.tell()
            self._wait(subprocess.Popen(command, cwd=self.root, stdin=self.stdin, stdout=out_fh, stderr=err_fh,
                                        env=self.env, start_new_session=True), command, start)

    def _run_once(self, args):  # noqa: ANN001
        command = self._make_vagrant_command(args)
        with self.err_cm() as err_fh:
            err_fh.write(f"\n$ {' '.join(command)}\n")
            err_fh.flush()
            start = err_fh.tell()
            proc = subprocess.Popen(command, cwd=self.root, env=self.env, stdin=self.stdin, stdout=subprocess.PIPE,
                                    stderr=err_fh, start_new_session=True)
            out = self._wait(proc, command, start)
        return out.decode()

    # -- `vagrant box`: what lab.machines.boxes.store and lab.machines.warm ask (store.BoxCommands) --------
    @contextlib.contextmanager
    def bounded(self, seconds: int) -> Iterator[None]:
        """Calls made inside bounded by `seconds` instead of this Vagrant's own bound."""
        before, self.timeout = self.timeout, seconds
        try:
            yield
        finally:
            self.timeout = before

    def box_list(self):  # noqa: ANN201 - python-vagrant's Box(name, provider, version) tuples
        """python-vagrant's own listing and parsing, within BOX_LIST_TIMEOUT (it takes a second or two)."""
        with self.bounded(min(self.timeout, BOX_LIST_TIMEOUT)):
            return super().box_list()

    def box_add_catalog(self, catalog: Path, provider: str) -> None:
        """`vagrant box add` from a catalogue (metadata JSON), which gives the box its name and version.

        NOTE: python-vagrant's box_add wants a name beside the address, for a
        box file; a catalogue names the box itself.
        """
        self._call_vagrant_command(["box", "add", "--provider", provider, str(catalog)])

    def box_remove_version(self, name: str, provider: str, version: str) -> None:
        """Remove one version of a box; fails (RemoteError) while a machine still uses it.

        NOTE: python-vagrant's box_remove takes no version and forces the
        removal, even of a box a machine still uses.
        """
        self._call_vagrant_command(["box", "remove", name, "--provider", provider, "--box-version", version])

    def _wait(self, proc: subprocess.Popen, command: list[str], log_start: int = 0) -> bytes:
        """Vagrant's output, within the bound; stopped, with what it printed, when it fails.

        NOTE: Vagrant runs in a session of its own (so a Ctrl-C cannot kill it
        half-way through writing its state); on Ctrl-C reglab asks it to stop
        with SIGINT, as the terminal would, and insists if it takes too long.
        """
        shown = f"`vagrant {' '.join(command[1:])}`"
        try:
            out, _ = host.wait(proc, self.timeout, interrupt=(signal.SIGINT, signal.SIGTERM, signal.SIGKILL),
                               grace=STOP_GRACE)
        except subprocess.TimeoutExpired:
            raise RemoteError(f"{shown} did not finish within {self.timeout}s; see {self.log_path}") from None
        if proc.returncode != 0:
            text = (out or b"").decode(errors="replace")
            if text:  # machine-readable output, where Vagrant puts its error; keep it in the log too
                with self.err_cm() as err_fh:
                    err_fh.write(text)
            said = vagrant_error(text) or _log_since(self.log_path, log_start)
            # Anywhere in what this command printed: the lock message may sit above a longer output.
            everything = text + _log_since(self.log_path, log_start, lines=None)
            error = VagrantLocked if LOCKED.search(everything.replace("\n", " ")) else RemoteError
            raise error(
                f"{shown} failed (exit {proc.returncode})" + (":\n  " + said.replace("\n", "\n  ") if said else "")
                + f"\n  full log: {self.log_path}"
            )
        return out or b""


def vagrant_env(lab: Lab) -> dict[str, str]:
    """The environment Vagrant runs in for `lab`: reglab's own Vagrantfile, whichever folder the lab file is
    in, and this lab's machine data."""
    env = dict(os.environ)
    env.update(
        REGLAB_LAB=str(lab.source),
        REGLAB_STATE_DIR=str(lab.state_dir),
        VAGRANT_CWD=str(VAGRANTFILE_DIR),
        VAGRANT_DOTFILE_PATH=str(lab.state_dir / "vagrant"),
        REGLAB_PROVIDER=lab.provider,
        # The lab's platform as reglab resolved it (a matrix's lab file and --platform beat $REGLAB_PLATFORM).
        REGLAB_PLATFORM=lab.platform,
        VAGRANT_DEFAULT_PROVIDER=lab.provider,
        VAGRANT_CHECKPOINT_DISABLE="1",
        VAGRANT_NO_COLOR="1",
    )
    return env


def box_vagrant(lab: Lab) -> TimedVagrant:
    """Vagrant for `vagrant box` (reglab's boxes and warm boxes): the lab's environment, the boxes' log,
    VAGRANT_TIMEOUT per call, and no terminal to ask on (a box a machine uses is kept, not waited on)."""
    return TimedVagrant(VAGRANTFILE_DIR, vagrant_env(lab), boxes_dir(lab) / "logs" / "vagrant-box.log",
                        VAGRANT_TIMEOUT, stdin=subprocess.DEVNULL)


class VagrantProvider:
    """Boot, inspect, reach and destroy the lab's machines with Vagrant."""

    makes_machines = True

    def __init__(self, lab: Lab, redactor: Redactor, say: Say = print) -> None:
        self.lab = lab
        self.say = say
        self.name = lab.provider
        self._warm: DockerWarm | LibvirtWarm | None = None
        self._box_mirror: str | None = None
        self.redactor = redactor
        self.log_dir = lab.state_dir / "logs"
        self.ssh_config_path = lab.state_dir / "ssh_config"
        self._ssh_config_written = False  # by this process: one found on disk is never trusted
        env = vagrant_env(lab)
        if lab.provider == "libvirt":
            from lab.machines.hostsetup import host_libvirt_driver

            self.libvirt_driver: str | None = host_libvirt_driver()
            env["REGLAB_LIBVIRT_DRIVER"] = self.libvirt_driver
        else:
            self.libvirt_driver = None
        self.vagrant = TimedVagrant(VAGRANTFILE_DIR, env, self.log_dir / "vagrant.log", lab.timeouts.boot)
        if lab.provider == "libvirt":
            held = self._management_reservations().get(str(lab.state_dir))
            if held:
                self._use_management_network(held)
        self.host = Host(machine_logger(self.log_dir, "host"), redactor, lab.timeouts.command)

    @functools.cached_property
    def box_vagrant(self) -> TimedVagrant:
        """`vagrant box` for this lab's boxes: made when first needed (a docker lab never needs it)."""
        return box_vagrant(self.lab)

    @property
    def names(self) -> list[str]:
        return [m.name for m in self.lab.machines]

    def check_host(self) -> None:
        """Fail before booting when this host cannot run the provider."""
        if shutil.which("vagrant") is None:
            raise LabError(VAGRANT_MISSING)
        if self.lab.provider == "docker":
            if shutil.which("docker") is None:
                raise LabError("docker is not installed; on Debian or Ubuntu: apt-get install docker.io")
            if not self.host.run("docker info", warn=True, timeout=30).ok:
                raise LabError("the Docker daemon does not answer (`docker info` failed); start it first")
        if self.lab.provider == "virtualbox":
            problem = vbox_range_problem(
                [m.ip for m in self.lab.machines],
                VBOX_NETWORKS.read_text() if VBOX_NETWORKS.exists() else None,
            )
            if problem:
                raise LabError(problem)

    def notes(self) -> list[str]:
        """What `reglab status` adds under the table."""
        if self.lab.provider == "docker":
            problem = self.isolation()
            return [f"not isolated from other labs on this host: {problem}"] if problem else []
        if self.libvirt_driver is None:
            return []
        how = ("KVM, hardware virtualisation" if self.libvirt_driver == "kvm"
               else "QEMU software emulation (TCG): no usable KVM")
        return [f"libvirt: {how}"]

    # -- what the machines boot from ----------------------------------------------
    def prepare(self, say: Say, phase) -> str | None:  # noqa: ANN001 - Progress.phase
        """The node image (docker) or the Debian box built here, ready; its identity for warm starts."""
        from lab.machines.images import Builder

        if self.lab.provider == "docker":
            builder = Builder(self.lab, self.host)
            with phase("node image", "machine image (reglab/node)"):
                node = builder.node()
            self.vagrant.env["REGLAB_NODE_IMAGE"] = node
            return builder.image_id(node)
        if not self.lab.boxes[self.lab.os].build:
            return None
        with phase("box", f"Debian box for {self.lab.provider} (reglab box build)"):
            built = boxes.build_box(self.lab, self.lab.provider, say)
            boxes.add_box(built, say, self.box_vagrant, [self.lab.provider])
        self.vagrant.env["REGLAB_BOX_NAME"] = built.name
        self.vagrant.env["REGLAB_BOX_VERSION"] = built.version
        self._box_mirror = built.info[self.lab.provider].get("mirror")
        return f"{built.name} {built.version}"

    def warm_store(self) -> DockerWarm | LibvirtWarm | None:
        """Docker images of provisioned machines, or boxes of provisioned VMs built here."""
        if self._warm is None:
            if self.lab.provider == "docker":
                self._warm = DockerWarm(self.host)
            elif self.lab.provider == "libvirt" and self.lab.boxes[self.lab.os].build:
                self._warm = LibvirtWarm(self.lab.cache_dir, self.say, self.box_vagrant)
        return self._warm

    def archive_now(self) -> str:
        # A VM's apt fetches the mirror the box was built from; a docker machine's, the mirror its image was.
        suite = self.lab.debian.suite
        mirror = self._box_mirror or hostapt.mirror_for(suite, self.lab.mirror)
        return release_digest(mirror_release(mirror, suite, hostapt.host_proxy()))

    def boot_from(self, image: str) -> None:
        if self.lab.provider == "docker":
            self.vagrant.env["REGLAB_NODE_IMAGE"] = image
        else:
            self.vagrant.env["REGLAB_BOX_NAME"] = image
            self.vagrant.env["REGLAB_BOX_VERSION"] = WARM_BOX_VERSION

    def leftovers(self, states: dict[str, str]) -> list[str]:
        """Containers of this lab that Vagrant no longer knows (its data was lost) would block
        `vagrant up` by their names: remove them first. Another lab's (the same name or subnet
        from another folder) are never touched: that is refused, with what to change."""
        if self.lab.provider != "docker":
            return []
        self.refuse_shared()
        if any(state != "not_created" for state in states.values()):
            return []
        return self.remove_docker_leftovers()

    def _containers(self, where: str) -> list[tuple[str, str, str]]:
        """(id, lab name, state folder) of the containers a `docker ps` filter selects."""
        form = '{{.ID}}\t{{.Label "org.reglab.lab"}}\t{{.Label "org.reglab.state"}}'
        out = self.host.run(f"docker ps -a --filter {shlex.quote(where)} --format {shlex.quote(form)}",
                            warn=True).stdout
        return [tuple((line.split("\t") + ["", ""])[:3]) for line in out.splitlines() if line.strip()]

    def _this_lab(self, state: str) -> bool:
        # Containers an older reglab made carry no state label: this lab's by name.
        return state in ("", str(self.lab.state_dir))

    def refuse_shared(self) -> None:
        """Two labs must not share a name (container names) or a subnet (Docker's network)."""
        theirs = [c for c in self._containers(f"label=org.reglab.lab={self.lab.name}") if not self._this_lab(c[2])]
        if theirs:
            folder = Path(theirs[0][2]).parent.parent  # the state folder is FOLDER/.lab/NAME
            raise LabError(f"the lab name {self.lab.name!r} is already used by the lab in {folder} (its machines "
                           f"exist); give this lab another `name` in {self.lab.source}")
        network = f"vagrant_network_{self.lab.network}"
        theirs = [c for c in self._containers(f"network={network}")
                  if not self._this_lab(c[2]) or c[1] != self.lab.name]
        if theirs:
            other = theirs[0][1] or "a container reglab did not make"
            raise LabError(f"the subnet {self.lab.network} is already used by {other!r}; give this lab machines "
                           f"on another /24 in {self.lab.source}")

    # -- each libvirt lab's own management network ---------------------------------
    @property
    def management_network_name(self) -> str:
        return f"{self.lab.name}-mgmt"

    @property
    def _reservations_path(self) -> Path:
        return self.lab.cache_dir / "libvirt-management.json"

    def _management_reservations(self) -> dict[str, str]:
        """Which lab (by its state folder) holds which /24 for its management network, host-wide."""
        try:
            held = json.loads(self._reservations_path.read_text())
        except (OSError, ValueError):
            return {}
        return {k: v for k, v in held.items() if isinstance(k, str) and isinstance(v, str)} \
            if isinstance(held, dict) else {}

    @contextlib.contextmanager
    def _reservations_locked(self) -> Iterator[dict[str, str]]:
        """The reservations, read and written back under a host-wide lock (labs of a class boot at once)."""
        self._reservations_path.parent.mkdir(parents=True, exist_ok=True)
        lock_path = self._reservations_path.with_suffix(".lock")
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            held = self._management_reservations()
            before = dict(held)
            yield held
            if held != before:
                atomic_write(self._reservations_path, json.dumps(held, indent=2, sort_keys=True) + "\n", 0o600)
        finally:
            os.close(fd)

    def _use_management_network(self, subnet: str) -> None:
        self.vagrant.env["REGLAB_MGMT_NETWORK"] = self.management_network_name
        self.vagrant.env["REGLAB_MGMT_ADDRESS"] = subnet

    def reserve_management_network(self) -> str:
        """This lab's management network (vagrant-libvirt's NAT and DHCP for SSH) on a /24 of its own.

        NOTE: by default every VM of every lab joins vagrant-libvirt's one
        management network (192.168.121.0/24), where one lab's machines reach
        another's. Each lab gets its own, on a /24 no libvirt network, host
        route or other lab's reservation has; Vagrant removes it with the last
        machine, and `down` makes sure.
        """
        with self._reservations_locked() as held:
            for folder in [k for k in held if k != str(self.lab.state_dir) and not Path(k).is_dir()]:
                del held[folder]  # a lab folder that is gone holds nothing
            subnet = held.get(str(self.lab.state_dir))
            if subnet is None:
                networks = hostnets.libvirt_networks(LIBVIRT_URI)
                taken = [*hostnets.host_networks(),
                         *(net for name, nets in networks.items() if name != self.management_network_name
                           for net in nets),
                         *(ipaddress.ip_network(v) for v in held.values())]
                free = hostnets.free_subnet(hostnets.LIBVIRT_MANAGEMENT_POOL, taken)
                if free is None:
                    raise LabError(f"no free /24 left in {hostnets.LIBVIRT_MANAGEMENT_POOL} for this lab's "
                                   "management network; take down labs no longer in use")
                subnet = held[str(self.lab.state_dir)] = str(free)
        self._use_management_network(subnet)
        return subnet

    def release_management_network(self) -> list[str]:
        """The lab's management network gone (if Vagrant left it) and its /24 free again; say what."""
        removed = []
        name = self.management_network_name
        if shutil.which("virsh") and self.host.run(f"virsh -c {LIBVIRT_URI} net-info {shlex.quote(name)}",
                                                   warn=True, timeout=60).ok:
            self.host.run(f"virsh -c {LIBVIRT_URI} net-destroy {shlex.quote(name)}", warn=True, timeout=60)
            if self.host.run(f"virsh -c {LIBVIRT_URI} net-undefine {shlex.quote(name)}", warn=True, timeout=60).ok:
                removed.append(f"network {name}")
        with self._reservations_locked() as held:
            held.pop(str(self.lab.state_dir), None)
        return removed

    # -- machines ------------------------------------------------------------------
    def up(self, names: Sequence[str] = ()) -> list[Machine]:
        self.check_host()
        if self.lab.provider == "libvirt":
            self.reserve_management_network()
        targets = list(names) or self.names
        if len(targets) == len(self.names):
            self.vagrant.up(provider=self.lab.provider)  # all at once: the docker provider boots in parallel
        else:
            for name in targets:
                self.vagrant.up(vm_name=name, provider=self.lab.provider)
        self.write_ssh_config()
        machines = [self.connect(name) for name in targets]
        for machine in machines:
            wait_for_ssh(machine, self.lab.timeouts.boot)
        if self.lab.provider == "docker":
            self.join_private_network()
            self.isolate()
        return machines

    def join_private_network(self) -> list[str]:
        """Each docker machine on the lab's own network at its address; connected where Vagrant left it off.

        NOTE: seen with labs booting at once: a `vagrant up` that another Vagrant locked out after
        it had created a container is run again (TimedVagrant), and Vagrant then only starts that
        container: it connects networks only when it creates one. The machine answers on docker0
        (so SSH works) but not at its lab address: "No route to host" from the other machine and
        from a student's ssh. Returns the machines connected here.
        """
        connected = []
        network = f"vagrant_network_{self.lab.network}"  # as Vagrant names the network of a private_network
        for spec in self.lab.machines:
            container = f"{self.lab.name}-{spec.name}"
            inspect = f"docker inspect -f '{{{{json .NetworkSettings.Networks}}}}' {shlex.quote(container)}"
            found = self.host.run(inspect, warn=True, timeout=60)
            if not found.ok or spec.ip in attached_addresses(found.stdout):
                continue
            self.host.run(f"docker network connect --ip {shlex.quote(spec.ip)} {shlex.quote(network)} "
                          f"{shlex.quote(container)}", timeout=60)
            connected.append(spec.name)
        if connected:
            self.say(f"connected {', '.join(connected)} to the lab's network {self.lab.network} "
                     "(Vagrant had started it without it)")
        return connected

    # -- one lab's machines apart from every other container ----------------------------
    @property
    def _rule_tag(self) -> str:
        return f"reglab-lab:{self.lab.name}"

    def isolation(self) -> str | None:
        """Why this lab's machines are not kept apart from other labs' on this host, or None.

        NOTE: the docker provider's rules (DOCKER-USER) see traffic between
        containers on docker0 only when bridged traffic goes through iptables
        (br_netfilter, net.bridge.bridge-nf-call-iptables=1), which Docker 27.3
        and later no longer turn on; without it a rule that exists proves nothing.
        """
        if self.lab.provider != "docker":
            return None
        if os.geteuid() != 0 or shutil.which("iptables") is None:
            return "keeping labs apart on Docker's bridge needs iptables, as root"
        from lab.machines.hostsetup import BRIDGE_NF_FIX, bridge_filtering_problem, read_bridge_filtering

        problem = bridge_filtering_problem(read_bridge_filtering())
        return f"{problem}; fix: {BRIDGE_NF_FIX}" if problem else None

    def _bridge_addresses(self) -> list[str]:
        """Each machine's address on docker0 now (they change when dockerd or the host restarts).

        One `docker inspect` for all machines: this runs before every check.
        """
        names = " ".join(shlex.quote(f"{self.lab.name}-{name}") for name in self.names)
        out = self.host.run(f"docker inspect -f '{{{{.NetworkSettings.IPAddress}}}}' {names}", warn=True).stdout
        return [line.strip() for line in out.splitlines() if line.strip()]

    def isolate(self) -> list[str]:
        """Keep other containers (another lab's machines) from this lab's over Docker's default bridge.

        NOTE: Vagrant's docker provider reaches each machine through docker0,
        where every container may talk to every other; labs' own networks are
        apart already. Rules in DOCKER-USER drop forwarded docker0 traffic from
        and to this lab's machines (the machines talk to each other on their
        own network, and the host reaches them without forwarding). Where the
        rules cannot hold (see `isolation`) the lab still runs, and reglab
        says plainly that it is not apart.
        """
        problem = self.isolation()
        if os.geteuid() != 0 or shutil.which("iptables") is None:
            self.say(f"note: machines of different labs can reach each other over Docker's default bridge ({problem})")
            return []
        self.unisolate()
        added = []
        for ip in self._bridge_addresses():
            for side in ("-s", "-d"):
                made = self.host.run(f"iptables -w 10 -I DOCKER-USER -i docker0 -o docker0 {side} {ip} "
                                     f"-m comment --comment {self._rule_tag} -j DROP", warn=True)
                if not made.ok:
                    self.say(f"note: machines of different labs can reach each other over Docker's default bridge "
                             f"(iptables refused the rule: {made.stderr.strip() or made.stdout.strip()})")
                    return added
            added.append(ip)
        if problem:
            self.say(f"note: machines of different labs can reach each other over Docker's default bridge: {problem}")
        return added

    def keep_apart(self) -> list[str]:
        """Make this lab's rules again when they no longer name its machines' addresses; return those.

        NOTE: after a dockerd or host restart the machines get other docker0
        addresses: stale rules would drop another lab's machine and leave this
        one open. Every command that finds the machines running asks this.
        """
        if self.lab.provider != "docker" or os.geteuid() != 0 or shutil.which("iptables") is None:
            return []
        now = set(self._bridge_addresses())
        rules = self.host.run("iptables -w 10 -S DOCKER-USER", warn=True).stdout
        if not now or rule_addresses(rules, self._rule_tag) == now:
            return []
        self.say("the machines' addresses on Docker's bridge changed (dockerd or the host restarted): "
                 "isolation rules made again")
        return self.isolate()

    def unisolate(self) -> int:
        """Remove this lab's rules (by their comment); return how many."""
        if os.geteuid() != 0 or shutil.which("iptables") is None:
            return 0
        rules = self.host.run("iptables -w 10 -S DOCKER-USER", warn=True).stdout.splitlines()
        ours = [r for r in rules if _ours(r, self._rule_tag)]
        for rule in ours:
            self.host.run("iptables -w 10 -D " + rule[3:], warn=True)
        return len(ours)

    def status(self) -> list[MachineStatus]:
        ips = {m.name: m.ip for m in self.lab.machines}
        return [
            MachineStatus(s.name, s.provider or self.lab.provider, s.state, ips.get(s.name, "?"))
            for s in self.vagrant.status()
        ]

    def running(self) -> list[str]:
        return [s.name for s in self.status() if s.state == "running"]

    def write_ssh_config(self) -> Path:
        write_private(self.ssh_config_path, self.vagrant.ssh_config())
        self._ssh_config_written = True
        return self.ssh_config_path

    def ssh_config(self) -> Path:
        """The ssh_config from `vagrant ssh-config`, written by this process.

        NOTE: fabric and ssh obey what an ssh_config says (a ProxyCommand runs
        a program), so one left in `.lab` by someone else is never used.
        """
        if not self._ssh_config_written and not self._ours(self.ssh_config_path):
            self.write_ssh_config()
        return self.ssh_config_path

    @staticmethod
    def _ours(path: Path) -> bool:
        """A file reglab wrote: ours, 0600, a plain file in a folder only we can write.

        NOTE: `.lab` is vetted by `private_dir` (0700, ours) before anything in
        it is read, so nobody else can have planted this file; reusing it saves
        a `vagrant ssh-config` (1-2 s) on every `reglab check`.
        """
        try:
            info = os.lstat(path)
            folder = os.lstat(path.parent)
        except OSError:
            return False
        return (stat.S_ISREG(info.st_mode) and info.st_uid == os.geteuid() and not info.st_mode & 0o077
                and folder.st_uid == os.geteuid() and not folder.st_mode & 0o022)

    def connect(self, name: str) -> Machine:
        if name not in self.names:
            raise LabError(f"no machine {name!r} in {self.lab.source}; machines: {', '.join(self.names)}")
        return Machine(
            name,
            self.ssh_config(),
            machine_logger(self.log_dir, name),
            self.redactor,
            self.lab.timeouts.command,
        )

    def forget_connections(self) -> None:
        self.ssh_config_path.unlink(missing_ok=True)
        self._ssh_config_written = False

    def down(self) -> list[str]:
        """Destroy the machines and what the provider made for them; keep caches."""
        self.vagrant.destroy()
        self.ssh_config_path.unlink(missing_ok=True)
        self._ssh_config_written = False
        if self.lab.provider == "docker":
            rules = self.unisolate()
            return self.remove_docker_leftovers() + ([f"{rules} isolation rules"] if rules else [])
        if self.lab.provider == "libvirt":
            return self.release_management_network()
        return []

    def remove_docker_leftovers(self) -> list[str]:
        """This lab's containers, and Vagrant's network on its subnet unless another lab's use it."""
        removed = []
        ids = [c[0] for c in self._containers(f"label=org.reglab.lab={self.lab.name}") if self._this_lab(c[2])]
        if ids:
            self.host.run("docker rm -f -v " + " ".join(ids))
            removed += [f"container {i}" for i in ids]
        network = f"vagrant_network_{self.lab.network}"
        exists = self.host.run(f"docker network inspect {network!r}", warn=True).ok
        if exists and not self._containers(f"network={network}"):
            self.host.run(f"docker network rm {network!r}")
            removed.append(f"network {network}")
        return removed


def vbox_range_problem(ips: Sequence[str], networks_conf: str | None) -> str | None:
    """Why VirtualBox (6.1.28+) will refuse these host-only IPs, or None.

    Pure: takes the text of /etc/vbox/networks.conf (None when absent).
    """
    allowed = [VBOX_DEFAULT_RANGE]
    if networks_conf is not None:
        allowed = []
        for line in networks_conf.splitlines():
            words = line.split()
            if words and words[0] == "*":
                for word in words[1:]:
                    with contextlib.suppress(ValueError):
                        allowed.append(ipaddress.ip_network(word, strict=False))
    outside = [ip for ip in ips if not any(ipaddress.ip_address(ip) in net for net in allowed)]
    if not outside:
        return None
    subnet = ipaddress.ip_network(f"{outside[0]}/24", strict=False)
    return (
        f"VirtualBox allows host-only addresses only in {', '.join(map(str, allowed)) or 'no range'}, "
        f"so it will refuse {', '.join(outside)} (The IP address configured for the host-only network "
        f"is not within the allowed ranges). Fix: add the line `* {subnet} 192.168.56.0/21` to "
        f"{VBOX_NETWORKS}, or give the machines IPs in 192.168.56.0/21 in lab.yml."
    )


def vagrant_error(machine_readable: str) -> str | None:
    """What Vagrant said went wrong, from its `--machine-readable` output, or None.

    Pure. Vagrant prints `TIME,TARGET,error-exit,CLASS,MESSAGE` (and `ui`
    lines of kind `error`) with commas as `%!(VAGRANT_COMMA)` and newlines as `\\n`.
    """
    messages = []
    for line in machine_readable.splitlines():
        fields = line.split(",", 4)
        if len(fields) == 5 and fields[2] == "error-exit":
            messages.append(fields[4])
        elif len(fields) == 5 and fields[2] == "ui" and fields[3] == "error":
            messages.append(fields[4])
    if not messages:
        return None
    text = "\n".join(messages).replace("%!(VAGRANT_COMMA)", ",").replace("\\n", "\n").replace("\\r", "")
    return tail(text, _ERROR_LINES) or None


def _log_since(path: Path, offset: int, lines: int | None = _ERROR_LINES) -> str:
    """The end of what the failed command wrote to the log (not what earlier commands did); all of it
    with `lines=None`."""
    try:
        with path.open("rb") as handle:
            handle.seek(offset)
            text = handle.read().decode(errors="replace")
    except OSError:
        return ""
    return text if lines is None else tail(text, lines)


def attached_addresses(networks_json: str) -> set[str]:
    """The IPv4 addresses a container has on its networks, from `docker inspect`'s Networks as JSON. Pure."""
    try:
        networks = json.loads(networks_json or "{}")
    except json.JSONDecodeError:
        return set()
    if not isinstance(networks, dict):
        return set()
    return {n["IPAddress"] for n in networks.values() if isinstance(n, dict) and n.get("IPAddress")}


def _ours(rule: str, tag: str) -> bool:
    # iptables -S prints the comment in quotes when it holds ':' (as the tag does).
    marks = (f'--comment "{tag}" ', f"--comment {tag} ")
    return rule.startswith("-A ") and any(mark in f"{rule} " for mark in marks)


def rule_addresses(iptables_s: str, tag: str) -> set[str]:
    """The addresses a lab's rules drop, from `iptables -S DOCKER-USER` output; a pair (-s and -d) per
    address, so an address with only one of them is left out (made again). Pure."""
    sides: dict[str, set[str]] = {}
    for rule in iptables_s.splitlines():
        if not _ours(rule, tag):
            continue
        words = rule.split()
        for side in ("-s", "-d"):
            if side in words[:-1]:
                address = words[words.index(side) + 1].removesuffix("/32")
                sides.setdefault(address, set()).add(side)
    return {address for address, seen in sides.items() if seen == {"-s", "-d"}}
