"""Checking a lab file's layered values into a Lab: every bad value one ConfigError naming the file and the key path."""

from __future__ import annotations

import ipaddress
import re
import unicodedata
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from lab.common.errors import ConfigError
from lab.common.fields import FieldReader, value_kind
from lab.model import manifest as manifests
from lab.model.kinds import MAX_WAIT
from lab.model.lab import (
    EDITIONS,
    IMAGE_SOURCES,
    OS_FAMILIES,
    PROVIDERS,
    SSH_PORT,
    STARTS,
    Box,
    Images,
    Lab,
    MachineSpec,
    Ports,
    Timeouts,
    User,
    built_box_name,
    default_scenario,
)
from lab.model.manifest import Manifest
from lab.model.platforms import DEFAULT_PLATFORM, PLATFORMS

# Every pattern is used with `fullmatch`: `$` alone lets a trailing newline through.
# None may start with '-': each value ends up as an argument of some command.
_NAME = re.compile(r"[a-z][a-z0-9-]{0,30}")


_USER = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,63}")


_DOMAIN = re.compile(r"(?=.{1,253}\Z)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}")


# An image reference, after the distribution project's reference grammar:
# [host[:port]/]path-component[/path-component...][:tag][@sha256:64 hex].
_PATH_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"


_HOST_COMPONENT = r"(?:[A-Za-z0-9]|[A-Za-z0-9][A-Za-z0-9-]*[A-Za-z0-9])"


_REGISTRY_HOST = rf"(?:{_HOST_COMPONENT}(?:\.{_HOST_COMPONENT})*|\[[0-9A-Fa-f:]+\])(?::[0-9]+)?"


_IMAGE = re.compile(
    rf"(?P<name>(?:{_REGISTRY_HOST}/)?{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*)"
    r"(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?"
    r"(?:@sha256:[0-9a-f]{64})?"
)


_HOST = re.compile(r"(?=.{1,253}\Z)[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?")


_MIRROR = re.compile(r"https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?(/[A-Za-z0-9._~%/-]*)?")


_REMOTE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")  # an Incus remote's name: no ':' nor '/'


_HOST_KEY = re.compile(r"SHA256:[A-Za-z0-9+/]{43}")  # as `ssh-keygen -lf` and ssh print a host key


_IMAGE_NAME_MAX = 255  # the reference grammar's limit on host and path together


HTPASSWD_MAX_BYTES = 255  # htpasswd refuses longer passwords


SSH_MACHINE_KEYS = ("host", "port", "user", "identity_file", "host_key")  # a machine given over SSH (provider: ssh)


PRIVATE_KEY_MAX_BYTES = 64 * 1024  # an RSA key of 16384 bits is 12 KiB


DOCKER_BRIDGE = ipaddress.IPv4Network("172.17.0.0/16")  # docker0 on every Docker host and machine


LINK_LOCAL = ipaddress.IPv4Network("169.254.0.0/16")


def validate(data: Mapping[str, Any], path: Path, source: str, declared: Manifest | None = None,
             auto_provider: Callable[[], str] | None = None) -> Lab:
    declared = declared or manifests.load(default_scenario())
    v = Validator(source)
    provider = v.provider(data["provider"], auto_provider)
    machines = v.machines(data["machines"], provider, path.parent, declared.roles)
    images = v.mapping(data["images"], "images")
    ports = v.mapping(data["ports"], "ports")
    timeouts = v.mapping(data["timeouts"], "timeouts")
    boxes = v.mapping(data["boxes"], "boxes")
    platform = v.choice(data["platform"], "platform", tuple(PLATFORMS))
    return Lab(
        source=path,
        name=v.match(data["name"], "name", _NAME, "a lower-case name like 'reglab'"),
        provider=provider,
        edition=v.choice(data["edition"], "edition", EDITIONS),
        os=v.choice(data["os"], "os", OS_FAMILIES),
        domain=v.match(data["domain"], "domain", _DOMAIN, "a DNS name like myregistrydomain.com"),
        machines=machines,
        ports=v.ports(ports, declared),
        users=v.users(data["users"]),
        images=Images(
            source=v.choice(images["source"], "images.source", IMAGE_SOURCES),
            **{k: v.image(images[k], f"images.{k}") for k in declared.images},
        ),
        boxes={family: v.box(boxes, family, platform) for family in OS_FAMILIES},
        timeouts=Timeouts(
            command=v.positive(timeouts["command"], "timeouts.command"),
            boot=v.positive(timeouts["boot"], "timeouts.boot"),
        ),
        mirror=v.mirror(data["mirror"]),
        start=v.choice(data["start"], "start", STARTS),
        incus_remote=v.incus_remote(data["incus"], provider),
        platform=platform,
        manifest=declared,
    )


class Validator(FieldReader):

    def string(self, value: Any, path: str) -> str:
        if not isinstance(value, str) or not value:
            raise self.fail(path, f"expected a non-empty string, got {value_kind(value)}")
        if _control_character(value) is not None:
            raise self.fail(path, f"expected text without control characters (newline, tab, CR, NUL), got {value!r}")
        return value

    def match(self, value: Any, path: str, pattern: re.Pattern[str], what: str) -> str:
        """A string the whole of which matches `pattern` (no control characters get through one)."""
        if not isinstance(value, str) or not value:
            raise self.fail(path, f"expected a non-empty string, got {value_kind(value)}")
        if not pattern.fullmatch(value):
            raise self.fail(path, f"expected {what}, got {value!r}")
        return value

    def image(self, value: Any, path: str) -> str:
        what = "an image reference like nginx:1.27, localhost:5000/nginx:1.27 or nginx@sha256:<64 hex digits>"
        text = self.match(value, path, _IMAGE, what)
        name = _IMAGE.fullmatch(text)
        if name is not None and len(name["name"]) > _IMAGE_NAME_MAX:
            raise self.fail(path, f"expected an image name of at most {_IMAGE_NAME_MAX} characters, got {text!r}")
        return text

    def choice(self, value: Any, path: str, choices: tuple[str, ...]) -> str:
        if value not in choices:
            raise self.fail(path, f"expected one of {', '.join(choices)}, got {value!r}")
        return value

    def provider(self, value: Any, auto_provider: Callable[[], str] | None) -> str:
        """`auto` is the provider this host can run (VirtualBox or libvirt where usable, else docker),
        as `auto_provider` finds it."""
        if value == "auto":
            if auto_provider is None:
                raise self.fail("provider", "auto needs the host probed, which only reglab's commands do; "
                                            f"name one of {', '.join(PROVIDERS)}")
            return auto_provider()
        return self.choice(value, "provider", (*PROVIDERS, "auto"))

    def incus_remote(self, section: Any, provider: str) -> str | None:
        """`incus.remote`: the name of an Incus remote (`incus remote add NAME ...`), only for `provider: incus`."""
        value = self.mapping(section, "incus").get("remote")
        if value is None or value == "local":
            return None
        text = self.match(value, "incus.remote", _REMOTE, "the name of an Incus remote as `incus remote list` "
                                                          "shows it (letters, digits, '.', '_', '-')")
        if provider != "incus":
            raise self.fail("incus.remote", f"an Incus remote is for `provider: incus`, not {provider!r}")
        return text

    def mirror(self, value: Any, path: str = "mirror") -> str | None:
        """An http(s) URL of a Debian mirror or apt proxy, or nothing (the host's own)."""
        if value is None:
            return None
        text = self.match(value, path, _MIRROR, "an http:// or https:// URL of a Debian mirror")
        return text.rstrip("/")


    def ports(self, ports: Mapping[str, Any], declared: Manifest) -> Ports:
        """The scenario's ports, each of its own; a port the scenario fixes (its steps assume it) checked first."""
        order = sorted(declared.ports, key=lambda name: not declared.ports[name].fixed)
        numbers = {k: self.port(ports[k], f"ports.{k}") for k in order}
        for name in order:
            spec = declared.ports[name]
            if spec.fixed and numbers[name] != spec.default:
                raise self.fail(f"ports.{name}", f"expected {spec.default}: {spec.fixed}, got {numbers[name]}")
        taken: dict[int, str] = {SSH_PORT: "SSH, which reglab reaches the machines through"}
        for key, number in numbers.items():
            if number in taken:
                raise self.fail(f"ports.{key}", f"expected a port of its own, got {number}, already {taken[number]}")
            taken[number] = f"ports.{key}"
        return Ports(**{name: numbers[name] for name in declared.ports})

    def positive(self, value: Any, path: str) -> int:
        """Seconds for a wait: positive, and at most a day (a wait no one means, and one the clock's
        own bounds refuse: `Event.wait(1e20)` raises OverflowError)."""
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise self.fail(path, f"expected a positive number of seconds, got {value!r}")
        if value > MAX_WAIT:
            raise self.fail(path, f"expected at most {MAX_WAIT} seconds (a day), got {value!r}")
        return value

    def box(self, boxes: Mapping[str, Any], family: str, platform: str = DEFAULT_PLATFORM) -> Box:
        unknown = [name for name in boxes if name not in OS_FAMILIES]
        if unknown:
            raise self.fail(f"boxes.{unknown[0]}", f"unknown OS family; expected {', '.join(OS_FAMILIES)}")
        spec = boxes[family]
        where = f"boxes.{family}"
        if spec == "build":
            if family != "debian":
                raise self.fail(where, "only Debian boxes can be built here (no RHEL-family packages are "
                                "reachable); give a box name and version, or a url")
            return Box(name=built_box_name(platform), build=True)
        spec = self.mapping(spec, where) if not isinstance(spec, str) else self._not_build(spec, where)
        check_keys(spec, {"name": None, "version": None, "url": None}, where, self.source)
        name = self.string(spec.get("name"), f"{where}.name")
        version = spec.get("version")
        if isinstance(version, (int, float)) and not isinstance(version, bool):
            version = str(version)
        url = spec.get("url")
        if version is None and url is None:
            raise self.fail(where, "expected a version (from the Vagrant catalogue) or a url (a .box file), "
                            "or `build`")
        if version is not None:
            version = self.string(version, f"{where}.version")
            if not re.fullmatch(r"\d+(\.\d+)*", version):
                raise self.fail(f"{where}.version", f"expected a version like 4.3.12, got {version!r}")
        if url is not None:
            url = self.string(url, f"{where}.url")
            if not re.fullmatch(r"(https?|file)://\S+|/\S+", url):
                raise self.fail(f"{where}.url", f"expected an http(s):// or file:// URL or an absolute path, "
                                f"got {url!r}")
            if url.startswith("/"):
                url = f"file://{url}"
        return Box(name=name, version=version, url=url)

    def _not_build(self, value: str, where: str) -> Mapping[str, Any]:
        raise self.fail(where, f"expected `build` or a mapping with name and version (or url), got {value!r}")

    def machines(self, value: Any, provider: str = "docker", folder: Path | None = None,
                 roles: tuple[str, ...] = ()) -> tuple[MachineSpec, ...]:
        """The scenario's machines (`roles`). Vagrant's sit on one private /24 it makes; machines given
        over SSH (`provider: ssh`) also say where and as whom reglab logs in."""
        machines = self.mapping(value, "machines")
        roles = roles or manifests.load(default_scenario()).roles
        missing = [role for role in roles if role not in machines]
        if missing:
            raise self.fail("machines", f"missing machine {missing[0]!r} (the lab needs {' and '.join(roles)})")
        unknown = [name for name in machines if name not in roles]
        if unknown:
            raise self.fail(f"machines.{unknown[0]}", f"unknown machine; expected only {', '.join(roles)}")
        given = provider == "ssh"
        keys = dict.fromkeys(("ip", *SSH_MACHINE_KEYS) if given else ("ip",))
        result = []
        seen: dict[str, str] = {}
        for name in roles:
            where = f"machines.{name}"
            spec = self.mapping(machines[name], where)
            extra = [k for k in spec if k in SSH_MACHINE_KEYS and not given]
            if extra:
                raise self.fail(f"{where}.{extra[0]}", "only for `provider: ssh` (machines reglab does not boot), "
                                f"but the provider is {provider} (REGLAB_PROVIDER and --provider override the "
                                "lab file's); Vagrant says how its machines are reached")
            check_keys(spec, keys, where, self.source)
            ip = self.given_ip(spec.get("ip"), f"{where}.ip") if given else self.ip(spec.get("ip"), f"{where}.ip")
            if ip in seen:
                raise self.fail(f"{where}.ip", f"{ip} is already the IP of machine {seen[ip]!r}")
            seen[ip] = name
            if given:
                result.append(self.ssh_machine(name, ip, spec, folder or Path(".")))
            else:
                result.append(MachineSpec(name=name, ip=ip))
        if given:
            return tuple(result)
        net = ipaddress.ip_network(f"{result[0].ip}/24", strict=False)
        for machine in result[1:]:
            if ipaddress.ip_address(machine.ip) not in net:
                raise self.fail(f"machines.{machine.name}.ip", f"{machine.ip} is not on the private network {net}")
        return tuple(result)

    def ssh_machine(self, name: str, ip: str, spec: Mapping[str, Any], folder: Path) -> MachineSpec:
        where = f"machines.{name}"
        host = spec.get("host", ip)
        if host != ip:
            self.match(host, f"{where}.host", _HOST, "a host name or IPv4 address to reach the machine at")
        port = self.port(spec.get("port", SSH_PORT), f"{where}.port")
        if "user" not in spec:
            raise self.fail(where, "missing key 'user': the account reglab logs in as (it needs passwordless sudo)")
        user = self.match(spec["user"], f"{where}.user", _USER, "a user name (letters, digits, . _ -)")
        identity = None
        if spec.get("identity_file") is not None:
            identity = self.identity_file(spec["identity_file"], f"{where}.identity_file", folder)
        host_key = None
        if spec.get("host_key") is not None:
            host_key = self.match(spec["host_key"], f"{where}.host_key", _HOST_KEY,
                                  "a host key fingerprint as `ssh-keygen -lf KEY.pub` prints it "
                                  "(SHA256: and 43 base64 characters)")
        return MachineSpec(name=name, ip=ip, host=host, port=port, user=user, identity_file=identity,
                           host_key=host_key)

    def identity_file(self, value: Any, path: str, folder: Path) -> Path:
        """A private key only its owner can read, as ssh itself insists (relative to the lab file)."""
        text = self.string(value, path)
        file = (folder / Path(text).expanduser()).resolve()
        try:
            info = file.stat()
        except OSError as exc:
            raise self.fail(path, f"cannot read the private key {file}: {exc.strerror}") from None
        if not file.is_file():
            raise self.fail(path, f"expected a private key file, got {file}, not a regular file")
        if info.st_mode & 0o077:
            raise self.fail(path, f"the private key {file} is readable by others (mode {info.st_mode & 0o777:04o}); "
                            f"`chmod 600 {file}`")
        if info.st_size > PRIVATE_KEY_MAX_BYTES:
            raise self.fail(path, f"{file} is larger than {PRIVATE_KEY_MAX_BYTES // 1024} KiB: not a private key")
        problem = private_key_problem(file)
        if problem:
            raise self.fail(path, f"{file}: {problem}")
        return file

    def given_ip(self, value: Any, path: str) -> str:
        """Where the other machine reaches this one: any unicast IPv4 address (the school's network)."""
        try:
            address = ipaddress.IPv4Address(value if isinstance(value, str) else "")
        except ValueError:
            raise self.fail(path, f"expected an IPv4 address, got {value!r}") from None
        if address.is_loopback or address.is_unspecified or address.is_multicast or address.is_reserved:
            raise self.fail(path, f"expected the machine's own IPv4 address on the network both share, got {value}")
        return str(address)

    def ip(self, value: Any, path: str) -> str:
        try:
            address = ipaddress.IPv4Address(value if isinstance(value, str) else "")
        except ValueError:
            raise self.fail(path, f"expected an IPv4 address, got {value!r}") from None
        if (not address.is_private or address.is_loopback or address.is_unspecified
                or address.is_multicast or address.is_reserved):
            raise self.fail(path, f"expected a private IPv4 address, got {value}")
        if address in LINK_LOCAL:
            raise self.fail(path, f"expected a private IPv4 address, got {value}, a link-local address ({LINK_LOCAL})")
        if address in DOCKER_BRIDGE:
            raise self.fail(path, f"expected a private IPv4 address outside {DOCKER_BRIDGE}, got {value}, "
                            "inside Docker's own bridge network (docker0)")
        net = ipaddress.ip_network(f"{address}/24", strict=False)
        reserved = {
            net.network_address: "the network's own address",
            net.broadcast_address: "the network's broadcast address",
            net.network_address + 1: "the network's gateway, which Docker and libvirt take for the host",
        }
        if address in reserved:
            raise self.fail(path, f"expected a host address of {net} other than .0, .1 and .255, "
                            f"got {value}, {reserved[address]}")
        return str(address)

    def users(self, value: Any) -> tuple[User, ...]:
        if not isinstance(value, list) or not value:
            raise self.fail("users", f"expected a non-empty list of {{name, password}}, got {value_kind(value)}")
        users = []
        for i, entry in enumerate(value):
            path = f"users[{i}]"
            spec = self.mapping(entry, path)
            check_keys(spec, {"name": None, "password": None}, path, self.source)
            name = self.match(spec.get("name"), f"{path}.name", _USER,
                              "a user name (letters, digits, . _ -, not starting with - or .)")
            if any(u.name == name for u in users):
                raise self.fail(f"{path}.name", f"user {name!r} is listed twice")
            password = spec.get("password")
            if password is not None:  # nothing: generated into .lab/NAME/secrets.yml
                problem = password_problem(password)
                if problem:
                    raise self.fail(f"{path}.password", problem)
            users.append(User(name=name, password=password))
        return tuple(users)


def identity_file(value: Any, source: str, path: str, folder: Path) -> Path:
    """A private key reglab can log in with (relative to `folder`), as a lab file's machine or a roster's gives it."""
    return Validator(source).identity_file(value, path, folder)


def private_key_problem(file: Path) -> str | None:
    """Why paramiko, which reglab logs in with, cannot use this private key, or None.

    Found when the lab loads: at login, a key paramiko cannot read is only a
    machine that "does not answer", which sends the user looking at the machine.
    """
    import paramiko  # only labs given over SSH need it here

    from_path = getattr(paramiko.PKey, "from_path", None)  # paramiko 3.2 and later
    encrypted = ("encrypted key: use an unencrypted key (or leave identity_file out and add the key to "
                 "ssh-agent)")
    unreadable = "not a private key paramiko can read (an OpenSSH or PEM Ed25519, ECDSA or RSA key)"
    if from_path is not None:
        try:
            from_path(file)
        except (paramiko.PasswordRequiredException, TypeError):  # TypeError: cryptography's "no password given"
            return encrypted
        except Exception:  # noqa: BLE001 - whatever the parsers raise, paramiko cannot log in with it
            return unreadable
        return None
    found_encrypted = False
    for kind in (paramiko.Ed25519Key, paramiko.ECDSAKey, paramiko.RSAKey):
        try:
            kind.from_private_key_file(str(file))
        except paramiko.PasswordRequiredException:
            found_encrypted = True
        except Exception:  # noqa: BLE001 - not this kind of key; the next may read it
            continue
        else:
            return None
    return encrypted if found_encrypted else unreadable


def password_problem(value: Any) -> str | None:
    """What is wrong with a password for htpasswd and `docker login`, or None; never echoes it."""
    if not isinstance(value, str):
        return (f"expected a string, got {value_kind(value)}: YAML reads some unquoted values (12345678.90, "
                "0123456701, 2024-01-31, yes) as numbers, dates or booleans; put the password in quotes")
    rule = (f"expected a password of 8 or more characters and at most {HTPASSWD_MAX_BYTES} bytes (htpasswd's "
            "limits), without ':' or control characters (newline, tab, CR, NUL)")
    if len(value) < 8:
        return f"{rule}, got {len(value)} characters"
    if ":" in value:
        return f"{rule}, got one with ':' (htpasswd's separator of user and password)"
    control = _control_character(value)
    if control is not None:
        return f"{rule}, got one with {control!r}"
    size = len(value.encode("utf-8"))
    if size > HTPASSWD_MAX_BYTES:
        return f"{rule}, got {size} bytes"
    return None


def _control_character(text: str) -> str | None:
    """The first control character (C0, DEL or C1) in `text`, if any."""
    return next((c for c in text if unicodedata.category(c) == "Cc"), None)

def check_keys(value: Mapping[str, Any], known: Mapping[str, Any], path: str, source: str) -> None:
    if not isinstance(value, Mapping):
        raise ConfigError(source, path or "(top level)", f"expected a mapping, got {value_kind(value)}")
    for key in value:
        here = f"{path}.{key}" if path else str(key)
        if key not in known:
            raise ConfigError(source, here, f"unknown key; expected one of {', '.join(known)}")
        sub = known[key]
        # Nested sections with fixed keys are checked too (machines and boxes are
        # checked by the validator, which knows their names).
        if isinstance(sub, dict) and key not in ("machines", "boxes") and isinstance(value[key], Mapping):
            check_keys(value[key], sub, here, source)
