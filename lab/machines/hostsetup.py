"""What this host needs to run the lab, installed where it can be and named where not.

`tox -e e2e` runs this first. It decides from what is really usable, not from
what is on PATH: a `docker` client alone (some hosts ship one without a
daemon) is not Docker. On a Debian or Ubuntu host (as root, or with
passwordless sudo) it installs what is missing with apt and starts the Docker
daemon when none answers; elsewhere it says exactly what to install and exits
2. It never ends in a traceback.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from lab.common.errors import ExitStatus, LabError, LabFailure
from lab.common.files import private_dir
from lab.common.polling import poll
from lab.machines import hostapt, incus
from lab.machines.host import Runner, probe
from lab.machines.osfamily import parse_os_release

DOCKER_WAIT = 60
APT_TIMEOUT = 1200


@dataclass(frozen=True)
class Need:
    """One thing the provider needs: how to tell it is usable, and the Debian package that brings it."""

    what: str
    package: str
    usable: Callable[[], bool]


def _ok(command: Sequence[str], contains: str | None = None, timeout: int = 60) -> bool:
    """The command ran and exited 0 (and printed `contains`, when given)."""
    out = probe(command, timeout)
    return out is not None and (contains is None or contains in out)


def docker_answers() -> bool:
    return shutil.which("docker") is not None and _ok(["docker", "info"], timeout=30)


def docker_usable() -> bool:
    """A daemon that answers, or one this host can start: a client alone is not enough."""
    return docker_answers() or (shutil.which("dockerd") is not None and shutil.which("docker") is not None)


# What the libvirt provider needs on a Debian host: vagrant-libvirt, QEMU and libvirt,
# and what `reglab box build` builds boxes with (mmdebstrap, extlinux, sfdisk, qemu-img).
LIBVIRT_PACKAGES = ("vagrant-libvirt", "qemu-system-x86", "qemu-utils", "libvirt-daemon-system",
                    "libvirt-clients", "dnsmasq-base", "mmdebstrap", "extlinux", "fdisk")
QEMU_CONF = Path("/etc/libvirt/qemu.conf")
LIBVIRT_WAIT = 60


def dpkg_installed(package: str) -> bool:
    return _ok(["dpkg-query", "-W", "-f=${Status}", package], contains="ok installed", timeout=30)


CHROMIUM = Path("/usr/bin/chromium")  # Debian's, which the dashboard's browser tests drive


def needs(provider: str, browser: bool = False) -> list[Need]:
    """What `provider` needs here; with `browser`, also the browser the dashboard's e2e tests drive."""
    found = [
        Need("vagrant", "vagrant", lambda: shutil.which("vagrant") is not None),
        Need("ssh", "openssh-client", lambda: shutil.which("ssh") is not None),
    ]
    if provider == "docker":
        found += [
            Need("Docker Engine (a daemon, not only the client)", "docker.io", docker_usable),
            Need("debootstrap", "debootstrap", lambda: shutil.which("debootstrap") is not None),
        ]
    if provider == "libvirt":
        found += [Need(package, package, lambda p=package: dpkg_installed(p)) for package in LIBVIRT_PACKAGES]
    if provider == "incus":
        found += [
            Need("Incus (its daemon and client)", "incus",
                 lambda: INCUSD.exists() and shutil.which("incus") is not None),
            Need("mmdebstrap (builds the machines' image)", "mmdebstrap",
                 lambda: shutil.which("mmdebstrap") is not None),
            # The lab's images (registry, nginx) are built with the host's Docker, as for every provider.
            Need("Docker Engine (a daemon, not only the client)", "docker.io", docker_usable),
            Need("btrfs-progs (machines as snapshots of their image)", "btrfs-progs",
                 lambda: not btrfs_in_kernel() or shutil.which("mkfs.btrfs") is not None),
            Need("debootstrap", "debootstrap", lambda: shutil.which("debootstrap") is not None),
        ]
    if browser:
        found.append(Need("Chromium (for the dashboard's browser tests)", "chromium", CHROMIUM.exists))
        # the portal's e2e: Chromium trusts the class CA through an NSS database; the SSH gateway is OpenSSH's sshd
        found.append(Need("certutil (the portal's browser test)", "libnss3-tools",
                          lambda: shutil.which("certutil") is not None))
        found.append(Need("sshd (the class's SSH gateway)", "openssh-server", Path("/usr/sbin/sshd").exists))
    return found


def libvirt_driver(cpuinfo: str, kvm_exists: bool) -> str:
    """`kvm` where the CPU offers hardware virtualisation to this host, else `qemu` (software, TCG).

    NOTE: /dev/kvm alone is not enough: some hosts expose it without vmx/svm,
    and only specially built guest kernels run there; a stock Debian kernel does not.
    """
    flags = set()
    for line in cpuinfo.splitlines():
        if line.startswith("flags"):
            flags.update(line.partition(":")[2].split())
    return "kvm" if kvm_exists and flags & {"vmx", "svm"} else "qemu"


def host_libvirt_driver() -> str:
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text()
    except OSError:
        cpuinfo = ""
    return libvirt_driver(cpuinfo, Path("/dev/kvm").exists())


def qemu_conf_as_root(text: str) -> str | None:
    """qemu.conf with QEMU run as root, or None when it already is.

    Without it libvirt re-probes QEMU on every API call (4-30 s each) on hosts
    where root may open /dev/kvm and the QEMU user may not.
    """
    lines = text.splitlines()
    wanted = {"user": '"root"', "group": '"root"'}
    present = {}
    for line in lines:
        key, _, value = line.partition("=")
        if not line.lstrip().startswith("#") and key.strip() in wanted:
            present[key.strip()] = value.strip()
    if all(present.get(k) == v for k, v in wanted.items()):
        return None
    kept = [line for line in lines
            if line.lstrip().startswith("#") or line.partition("=")[0].strip() not in wanted]
    return "\n".join([*kept, "# reglab: QEMU as root (libvirt probes QEMU once, not on every call)",
                      'user = "root"', 'group = "root"']) + "\n"


def libvirt_answers() -> bool:
    return _ok(["virsh", "-c", "qemu:///system", "version"], timeout=30)


def prepare_libvirt(log_dir: Path, say: Callable[[str], None]) -> None:
    """QEMU as root where needed, and libvirtd and virtlogd running (started by hand without systemd)."""
    log = log_dir / "hostsetup.log"
    changed = False
    if QEMU_CONF.exists() and host_libvirt_driver() == "qemu":
        new = qemu_conf_as_root(QEMU_CONF.read_text())
        if new is not None:
            say(f"running QEMU as root in {QEMU_CONF} (KVM is not usable here)")
            QEMU_CONF.write_text(new)
            changed = True
    systemd = Path("/run/systemd/system").exists()
    if changed and libvirt_answers():
        if systemd:
            run_step(as_root(["systemctl", "restart", "libvirtd"]), "systemctl restart libvirtd", 120, log)
        else:
            run_step(as_root(["pkill", "-x", "libvirtd"]), "stop libvirtd", 30, log)
            poll(lambda: not _ok(["pgrep", "-x", "libvirtd"]), 30)
    if libvirt_answers():
        return
    say("starting libvirtd and virtlogd")
    if systemd:
        run_step(as_root(["systemctl", "start", "virtlogd", "libvirtd"]), "systemctl start libvirtd", 120, log)
    else:
        for daemon in ("virtlogd", "libvirtd"):
            if not _ok(["pgrep", "-x", daemon]):
                run_step(as_root([daemon, "-d"]), f"{daemon} -d", 60, log)
    if not poll(libvirt_answers, LIBVIRT_WAIT):
        raise LabFailure(f"libvirtd did not answer within {LIBVIRT_WAIT}s (virsh -c qemu:///system version)")


# --- Incus ---------------------------------------------------------------------------------

INCUSD = Path("/usr/libexec/incus/incusd")
INCUS_WAIT = 60
BACKPORTS_FILE = Path("/etc/apt/sources.list.d/reglab-backports.sources")


def btrfs_in_kernel(filesystems: Path = Path("/proc/filesystems")) -> bool:
    try:
        return any(line.split()[-1:] == ["btrfs"] for line in filesystems.read_text().splitlines())
    except OSError:
        return False


def incus_answers() -> bool:
    return shutil.which("incus") is not None and _ok(["incus", "info"], timeout=30)


def host_release() -> tuple[str, str]:
    """(ID, VERSION_CODENAME) of this host."""
    try:
        release = parse_os_release(Path("/etc/os-release").read_text(errors="replace"))
    except OSError:
        return "", ""
    return release.id, release.codename


def incus_candidate() -> bool:
    """apt knows a version of incus to install from the sources enabled now."""
    out = probe(["apt-cache", "policy", "incus"], timeout=60) or ""
    match = re.search(r"Candidate:\s*(\S+)", out)
    return bool(match and match.group(1) != "(none)")


def install_incus(log: Path, say: Callable[[str], None]) -> None:
    """Incus from the release itself, else (Debian 12) from its backports on the host's own mirror."""
    run_step(as_root(["apt-get", "update", "-q"]), "apt-get update", 600, log)
    target: list[str] = []
    if not incus_candidate():
        distro, codename = host_release()
        source = hostapt.debian_source(hostapt.host_sources(), codename) if distro == "debian" else None
        if source is None:
            raise LabError("this host's apt sources offer no incus package; install Incus 6 (LTS) from your "
                           "distribution (Debian 12: bookworm-backports; Debian 13 and Ubuntu 24.04: main)")
        say(f"enabling {codename}-backports from this host's Debian mirror ({BACKPORTS_FILE})")
        BACKPORTS_FILE.write_text(hostapt.backports_sources(source, codename))
        run_step(as_root(["apt-get", "update", "-q"]), "apt-get update", 600, log)
        target = ["-t", f"{codename}-backports"]
    run_step(as_root(["apt-get", "install", "-y", "-q", "--no-install-recommends", *target, "incus", "incus-client"]),
             "apt-get install incus", APT_TIMEOUT, log)


def start_daemon(argv: list[str], log: Path, env: dict[str, str] | None = None) -> None:
    """A daemon started and left running (it outlives reglab): never waited on or bounded."""
    with open(log, "ab") as out:
        try:
            subprocess.Popen(as_root(argv), stdout=out, stderr=out, stdin=subprocess.DEVNULL,
                             start_new_session=True, env=dict(os.environ, **(env or {})))
        except OSError as exc:
            raise LabFailure(f"{argv[0]} could not start ({exc.strerror})") from None


SYSCTL_FILE = Path("/etc/sysctl.d/60-reglab-incus.conf")


def raise_limits(log_dir: Path, say: Callable[[str], None]) -> None:
    """inotify and keyring limits high enough for many containers (now, and kept in /etc/sysctl.d for the next boot)."""
    current = {}
    for key in incus.HOST_LIMITS:
        try:
            current[key] = int(Path("/proc/sys", *key.split(".")).read_text())
        except (OSError, ValueError):
            current[key] = 0
    wanted = incus.raised_limits(current)
    if not wanted:
        return
    say(f"raising {', '.join(f'{k}={v}' for k, v in wanted.items())} (every container's root shares them)")
    Runner(log_dir / "hostsetup.log")(as_root(["sysctl", "-w", *(f"{k}={v}" for k, v in wanted.items())]),
                                      timeout=30)
    SYSCTL_FILE.write_text("# reglab: Incus containers share their unprivileged uid's inotify and keyring limits\n"
                           + "".join(f"{k} = {v}\n" for k, v in incus.HOST_LIMITS.items()))


def stale_mount(path: Path, stat: Callable[[Path], object] = os.stat) -> bool:
    """A mount point whose FUSE daemon is gone: stat fails with ENOTCONN ("transport endpoint is not connected")."""
    try:
        stat(path)
    except OSError as exc:
        return exc.errno == errno.ENOTCONN
    return False


def prepare_incus(log_dir: Path, say: Callable[[str], None]) -> None:
    """incusd (and lxcfs) running, started by hand without systemd; an empty Incus given a storage pool.

    NOTE: an Incus that has a storage pool already (a school's own) is left
    exactly as it is: reglab's machines use its default profile's pool.
    """
    log = log_dir / "incusd.log"
    if not incus_answers():
        say(f"starting Incus (log: {log})")
        if Path("/run/systemd/system").exists():
            run_step(as_root(["systemctl", "start", "incus.socket", "incus.service"]), "systemctl start incus",
                     120, log_dir / "hostsetup.log")
        else:
            lxcfs = Path("/var/lib/lxcfs")
            if shutil.which("lxcfs") and not _ok(["pgrep", "-x", "lxcfs"]):
                if stale_mount(lxcfs):
                    # An lxcfs that died (a host restored or restarted without its processes) leaves its FUSE
                    # mount behind, and every stat of it fails: detach it before mounting afresh.
                    say(f"detaching {lxcfs}, left mounted by an lxcfs that is no longer running")
                    run_step(as_root(["umount", "-l", str(lxcfs)]), f"umount -l {lxcfs}", 30,
                             log_dir / "hostsetup.log")
                lxcfs.mkdir(parents=True, exist_ok=True)
                start_daemon(["lxcfs", str(lxcfs)], log_dir / "lxcfs.log")
            path = f"{INCUSD.parent}:{os.environ.get('PATH', '')}"
            start_daemon([str(INCUSD), "--group", "incus-admin"], log, {"PATH": path})
        run_step(as_root(["incus", "admin", "waitready", f"--timeout={INCUS_WAIT}"]), "incus admin waitready",
                 INCUS_WAIT + 10, log_dir / "hostsetup.log")
        if not poll(incus_answers, INCUS_WAIT):
            raise LabFailure(f"Incus did not answer within {INCUS_WAIT}s (incus info); see {log}")
    raise_limits(log_dir, say)
    pools = incus.parse_json(probe(["incus", "storage", "list", "--format", "json"], timeout=60) or "", "storage list")
    if not incus.initialised(pools):
        driver = "btrfs" if btrfs_in_kernel() and shutil.which("mkfs.btrfs") else "dir"
        say(f"initialising Incus: a `{driver}` storage pool and a default profile (no network: each lab makes "
            "its own)")
        Runner(log_dir / "hostsetup.log")(as_root(["incus", "admin", "init", "--preseed"]), timeout=120,
                                          stdin=incus.preseed(driver=driver), what="incus admin init --preseed")


def usable_provider() -> str:
    """VirtualBox or libvirt where they run VMs at hardware speed on this host, else docker.

    NOTE: libvirt under software emulation works (`provider: libvirt` asks for
    it) but is about 17 times slower; `auto` does not pick it.
    """
    if shutil.which("VBoxManage") and _ok(["VBoxManage", "list", "hostonlyifs"]):
        return "virtualbox"
    if shutil.which("virsh") and host_libvirt_driver() == "kvm" and libvirt_answers() and \
            _ok(["vagrant", "plugin", "list"], contains="vagrant-libvirt"):
        return "libvirt"
    return "docker"


def debian_like(os_release: Path = Path("/etc/os-release")) -> bool:
    try:
        release = parse_os_release(os_release.read_text(errors="replace"))
    except OSError:
        return False
    return any(i in ("debian", "ubuntu") for i in (release.id, *release.id_like))


def as_root(command: list[str]) -> list[str]:
    return command if os.geteuid() == 0 else ["sudo", "-n", *command]


def can_install() -> bool:
    return debian_like() and (os.geteuid() == 0 or _ok(["sudo", "-n", "true"]))


def run_step(command: list[str], what: str, timeout: int, log: Path) -> None:
    """A host command with a bound; its output goes to the log as it comes, its failure to one message."""
    Runner(log)(command, timeout=timeout, env={"DEBIAN_FRONTEND": "noninteractive"}, what=what, stream=True)


def install(packages: list[str], log: Path) -> None:
    run_step(as_root(["apt-get", "update", "-q"]), "apt-get update", 600, log)
    run_step(as_root(["apt-get", "install", "-y", "-q", "--no-install-recommends", *packages]),
             f"apt-get install {' '.join(packages)}", APT_TIMEOUT, log)


def start_docker(log: Path) -> None:
    """systemd where it runs, else the daemon by hand (containers and CI have no systemd)."""
    if Path("/run/systemd/system").exists():
        run_step(as_root(["systemctl", "start", "docker"]), "systemctl start docker", 120, log)
    else:
        # A daemon, not a command: it outlives reglab, so it is started and left, never waited on or bounded.
        with open(log, "ab") as out:
            try:
                subprocess.Popen(as_root(["dockerd"]), stdout=out, stderr=out, stdin=subprocess.DEVNULL,
                                 start_new_session=True)
            except OSError as exc:
                raise LabFailure(f"dockerd could not start ({exc.strerror})") from None
    if not poll(docker_answers, DOCKER_WAIT):
        raise LabFailure(f"the Docker daemon did not answer within {DOCKER_WAIT}s; see {log}")


# Docker's default bridge reaches iptables (and so the labs' isolation rules) only through br_netfilter.
BRIDGE_NF = Path("/proc/sys/net/bridge/bridge-nf-call-iptables")
BRIDGE_NF_FIX = "modprobe br_netfilter && sysctl -w net.bridge.bridge-nf-call-iptables=1 (or `reglab setup-host`)"


def bridge_filtering_problem(setting: str | None) -> str | None:
    """Why iptables does not see traffic between containers on one bridge, or None when it does.

    Pure: takes the text of /proc/sys/net/bridge/bridge-nf-call-iptables,
    None when that file is absent (br_netfilter is not loaded). Docker Engine
    27.3 and later no longer loads it by default (moby/moby#48492).
    """
    if setting is None:
        return ("the br_netfilter module is not loaded, so iptables never sees traffic between containers "
                "on Docker's bridge")
    if setting.strip() != "1":
        return (f"net.bridge.bridge-nf-call-iptables is {setting.strip() or 'empty'}, so iptables never sees "
                "traffic between containers on Docker's bridge")
    return None


def read_bridge_filtering(path: Path = BRIDGE_NF) -> str | None:
    try:
        return path.read_text()
    except OSError:
        return None


def enable_bridge_filtering(log: Path, say: Callable[[str], None], path: Path = BRIDGE_NF) -> bool:
    """Load br_netfilter and turn bridge-nf-call-iptables on (as root); True when it is on afterwards."""
    problem = bridge_filtering_problem(read_bridge_filtering(path))
    if problem is None:
        return True
    say(f"{problem}: turning it on, so one lab's isolation rules hold (modprobe br_netfilter; "
        "sysctl net.bridge.bridge-nf-call-iptables=1; not kept across a reboot)")
    try:
        if read_bridge_filtering(path) is None:
            run_step(as_root(["modprobe", "br_netfilter"]), "modprobe br_netfilter", 60, log)
        run_step(as_root(["sysctl", "-w", "net.bridge.bridge-nf-call-iptables=1"]),
                 "sysctl net.bridge.bridge-nf-call-iptables=1", 60, log)
    except LabFailure as exc:
        say(f"could not: {exc}")
    return bridge_filtering_problem(read_bridge_filtering(path)) is None


def setup(provider: str, log_dir: Path, say: Callable[[str], None], browser: bool = False) -> str:
    """Make this host ready for `provider`; return what was done, or raise with what to do."""
    if provider == "auto":
        provider = usable_provider()
    missing = [need for need in needs(provider, browser) if not need.usable()]
    log = log_dir / "hostsetup.log"
    if missing:
        packages = list(dict.fromkeys(need.package for need in missing))
        if not can_install():
            raise LabError(
                f"this host lacks {', '.join(n.what for n in missing)}. Install them: on Debian or Ubuntu "
                f"`apt-get install --no-install-recommends {' '.join(packages)}` (as root); elsewhere Vagrant "
                f"and Docker Engine from their vendors' packages"
            )
        say(f"installing {' '.join(packages)} with apt (log: {log})")
        if "incus" in packages:
            packages.remove("incus")
            install_incus(log, say)
        if packages:
            install(packages, log)
        still = [need.what for need in needs(provider, browser) if not need.usable()]
        if still:
            raise LabFailure(f"after installing {' '.join(packages)}, still not usable: {', '.join(still)}; see {log}")
    if provider in ("docker", "incus") and not docker_answers():
        say(f"starting the Docker daemon (log: {log_dir / 'dockerd.log'})")
        start_docker(log_dir / "dockerd.log")
    if provider == "docker" and (os.geteuid() == 0 or can_install()) and not enable_bridge_filtering(log, say):
        say(f"note: labs on this host are not isolated from each other on Docker's bridge; fix: {BRIDGE_NF_FIX}")
    if provider == "incus":
        prepare_incus(log_dir, say)
    if provider == "libvirt":
        prepare_libvirt(log_dir, say)
        driver = host_libvirt_driver()
        say(f"libvirt driver: {driver} ({'hardware' if driver == 'kvm' else 'software emulation, slow'})")
    return provider


def main(argv: Sequence[str] | None = None, provider: str | None = None) -> int:
    """`python -m lab.machines.hostsetup [--browser]` and `reglab setup-host`: --browser also installs
    Chromium for the dashboard's tests. The provider: `provider`, else $REGLAB_PROVIDER, else auto."""
    args = list(argv or [])
    browser = "--browser" in args
    unknown = [a for a in args if a != "--browser"]
    if unknown:
        print(f"reglab: error: unknown argument {unknown[0]!r}; usage: python -m lab.machines.hostsetup [--browser]",
              file=sys.stderr)
        return ExitStatus.USAGE
    provider = provider or os.environ.get("REGLAB_PROVIDER", "auto") or "auto"

    def say(message: str) -> None:
        print(f"reglab: {message}", flush=True)

    try:
        log_dir = private_dir(Path(".lab")) / "logs"
        log_dir.mkdir(mode=0o700, exist_ok=True)
        provider = setup(provider, log_dir, say, browser)
    except LabError as exc:
        print(f"reglab: error: {exc}", file=sys.stderr)
        return ExitStatus.USAGE
    except LabFailure as exc:
        print(f"reglab: failed: {exc}", file=sys.stderr)
        return ExitStatus.FAILED
    except KeyboardInterrupt:
        print("reglab: interrupted", file=sys.stderr)
        return ExitStatus.INTERRUPTED
    except OSError as exc:
        # The host's own state (a path it cannot stat, a file it cannot write): one line, not a traceback.
        where = f" ({exc.filename})" if exc.filename else ""
        print(f"reglab: failed: {exc.strerror or exc}{where}", file=sys.stderr)
        return ExitStatus.FAILED
    say(f"host ready for the {provider} provider")
    return ExitStatus.OK


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
