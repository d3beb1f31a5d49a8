"""What a scenario declares about the lab it runs on: the `lab:` section of its file.

The harness in `lab/` knows no tutorial. The roles of the machines and their
default addresses, the domain, the ports and images the steps use (and the
recipe each image is built from here), the folder of the config templates,
the folder on the machines the steps work in, what a reset takes away and
the tutorial's own known failure causes are the scenario's facts, declared
beside its steps. Paths are relative to the scenario file.

    lab:
      machines: {registry: {ip: 192.168.33.10}, client: {ip: 192.168.33.11}}
      domain: myregistrydomain.com
      ports:
        proxy: 5043
        https: {default: 443, fixed: "why no other port will do"}
      images:
        proxy: {default: "nginx:1.27", recipe: images/nginx.Dockerfile, name: reglab/nginx}
      templates: templates
      workdir: /root/docker-registry
      reset: {all: [...], made: [...], given: [...]}
      causes: causes.yaml

`lab.model.labfile` validates a lab file against this; the engine renders with its
templates; `lab.machines.images` builds its images; `lab.engine.cleanup` resets with it.
"""

from __future__ import annotations

import functools
import ipaddress
import posixpath
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lab.common.errors import ConfigError
from lab.common.fields import FieldReader
from lab.common.yamlfile import read_yaml
from lab.model.diagnosis import GENERAL, Cause, causes_from

RESET_KINDS = ("all", "made", "given")  # every machine; machines reglab made; machines given over SSH
_ROLE = re.compile(r"[a-z][a-z0-9-]{0,30}")
_KEY = re.compile(r"[a-z][a-z0-9_]{0,30}")  # a port or image name: a template reads it as ports.NAME
_ABSOLUTE = re.compile(r"/[A-Za-z0-9._/-]+")
SECTION_KEYS = ("machines", "domain", "ports", "images", "templates", "workdir", "reset", "causes")


class Named(Mapping[str, Any]):
    """A frozen mapping whose values templates and code read as attributes too (`ports.proxy`)."""

    def __init__(self, **values: Any) -> None:
        object.__setattr__(self, "_values", dict(values))

    def __getattr__(self, name: str) -> Any:
        try:
            return self.__dict__["_values"][name]
        except KeyError:
            raise AttributeError(name) from None

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"{type(self).__name__} is frozen")

    def __getitem__(self, name: str) -> Any:
        return self._values[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Named):
            return type(self) is type(other) and self._values == other._values
        return NotImplemented

    def __hash__(self) -> int:
        return hash((type(self).__name__, tuple(self._values.items())))

    def __repr__(self) -> str:
        inner = ", ".join(f"{key}={value!r}" for key, value in self._values.items())
        return f"{type(self).__name__}({inner})"


@dataclass(frozen=True)
class PortSpec:
    default: int
    fixed: str = ""  # why the port can only be its default ("": any free port)


@dataclass(frozen=True)
class ImageSpec:
    """An image the steps use: its reference for `pull`/`preload`, and how `build` makes it here."""

    default: str
    recipe: Path | None = None  # a Dockerfile that installs one Debian package (FROM $BASE)
    name: str | None = None  # the built image's name; its tag is the package's version
    files: tuple[Path, ...] = ()  # what else the recipe copies in


@dataclass(frozen=True)
class Manifest:
    path: Path  # the scenario file
    machines: dict[str, str] = field(hash=False)  # role -> default IP, in the scenario's order
    domain: str
    ports: dict[str, PortSpec] = field(hash=False)
    images: dict[str, ImageSpec] = field(hash=False)
    templates: Path
    workdir: str
    reset: dict[str, tuple[str, ...]] = field(hash=False)
    causes: tuple[Cause, ...] = ()  # the scenario's own, most specific first (the harness's come after)

    @property
    def roles(self) -> tuple[str, ...]:
        return tuple(self.machines)

    @property
    def table(self) -> tuple[Cause, ...]:
        """Every known cause for this scenario, in the order a diagnosis tries them."""
        return (*self.causes, *GENERAL)

    def defaults(self) -> dict[str, Any]:
        """What a lab file for this scenario gets where it says nothing."""
        return {
            "domain": self.domain,
            "machines": {role: {"ip": ip} for role, ip in self.machines.items()},
            "ports": {name: spec.default for name, spec in self.ports.items()},
            "images": {name: spec.default for name, spec in self.images.items()},
        }


def load(path: Path) -> Manifest:
    """The `lab:` section of a scenario file; ConfigError naming the file and key path."""
    path = Path(path).resolve()
    try:
        stat = path.stat()
    except FileNotFoundError:
        raise ConfigError(str(path), "", "no such scenario file") from None
    except OSError as exc:
        raise ConfigError(str(path), "", f"cannot read: {exc.strerror}") from None
    return _load(path, stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=16)
def _load(path: Path, _mtime: int, _size: int) -> Manifest:
    """Read once per version of the file: the lab file and the scenario both ask for it."""
    data = read_yaml(path, "scenario file")
    if not isinstance(data, dict) or "lab" not in data:
        raise ConfigError(str(path), "lab", "expected a `lab:` section: the machines, ports, images, templates, "
                                            "workdir and reset this scenario needs (lab/model/manifest.py)")
    return parse(data["lab"], path)


def parse(value: Any, path: Path) -> Manifest:
    """A `lab:` section, validated."""
    v = _Reader(str(path))
    section = v.mapping(value, "lab")
    v.keys(section, SECTION_KEYS, "lab", required=SECTION_KEYS[:-1])
    folder = path.parent
    machines = v.mapping(section["machines"], "lab.machines")
    if len(machines) < 1:
        raise v.fail("lab.machines", "expected at least one machine")
    roles: dict[str, str] = {}
    for role, spec in machines.items():
        where = f"lab.machines.{role}"
        v.match(role, where, _ROLE, "a lower-case machine name like 'registry'")
        spec = v.mapping(spec, where)
        v.keys(spec, ("ip",), where, required=("ip",))
        try:
            roles[role] = str(ipaddress.IPv4Address(spec["ip"]))
        except ValueError:
            raise v.fail(f"{where}.ip", f"expected an IPv4 address, got {spec['ip']!r}") from None
    ports = {}
    for name, spec in v.mapping(section["ports"], "lab.ports").items():
        where = f"lab.ports.{name}"
        v.match(name, where, _KEY, "a name like proxy (letters, digits, _)")
        if isinstance(spec, Mapping):
            v.keys(spec, ("default", "fixed"), where, required=("default",))
            ports[name] = PortSpec(v.port(spec["default"], f"{where}.default"),
                                   v.text(spec.get("fixed", "x"), f"{where}.fixed") if "fixed" in spec else "")
        else:
            ports[name] = PortSpec(v.port(spec, where))
    images = {}
    for name, spec in v.mapping(section["images"], "lab.images").items():
        where = f"lab.images.{name}"
        v.match(name, where, _KEY, "a name like proxy (letters, digits, _)")
        if name == "source":
            raise v.fail(where, "`images.source` is the lab file's (pull, preload or build); name the image otherwise")
        if isinstance(spec, str):
            images[name] = ImageSpec(spec)
            continue
        spec = v.mapping(spec, where)
        v.keys(spec, ("default", "recipe", "name", "files"), where, required=("default",))
        recipe = v.file(spec["recipe"], f"{where}.recipe", folder) if "recipe" in spec else None
        if (recipe is None) != ("name" not in spec):
            raise v.fail(where, "expected both `recipe` (the Dockerfile) and `name` (the built image's name), "
                                "or neither (then `images.source: build` cannot make it)")
        files = spec.get("files", [])
        if not isinstance(files, list):
            raise v.fail(f"{where}.files", "expected a list of files beside the recipe")
        images[name] = ImageSpec(
            default=v.text(spec["default"], f"{where}.default"),
            recipe=recipe,
            name=v.text(spec["name"], f"{where}.name") if "name" in spec else None,
            files=tuple(v.file(f, f"{where}.files[{i}]", folder) for i, f in enumerate(files)),
        )
    for name, spec in images.items():
        for extra in spec.files:
            if spec.recipe is not None and extra.parent != spec.recipe.parent:
                raise v.fail(f"lab.images.{name}.files", f"expected files in the recipe's folder "
                                                         f"{spec.recipe.parent}, got {extra}")
    templates = (folder / v.text(section["templates"], "lab.templates")).resolve()
    if not templates.is_dir():
        raise v.fail("lab.templates", f"expected a folder of templates, got {templates}, not a folder")
    workdir = checked_workdir(v.match(section["workdir"], "lab.workdir", _ABSOLUTE, "an absolute path on the machines"),
                              v)
    reset = v.mapping(section["reset"], "lab.reset")
    v.keys(reset, RESET_KINDS, "lab.reset")
    commands = {}
    for kind in RESET_KINDS:
        items = reset.get(kind, [])
        if not isinstance(items, list):
            raise v.fail(f"lab.reset.{kind}", "expected a list of shell commands")
        commands[kind] = tuple(v.text(c, f"lab.reset.{kind}[{i}]") for i, c in enumerate(items))
    causes: tuple[Cause, ...] = ()
    if "causes" in section:
        causes_path = v.file(section["causes"], "lab.causes", folder)
        try:
            causes = causes_from(read_yaml(causes_path, "causes file"))
        except ValueError as exc:
            raise ConfigError(str(causes_path), "", str(exc).splitlines()[0]) from None
        general = {cause.id for cause in GENERAL}
        clash = next((cause.id for cause in causes if cause.id in general), None)
        if clash:
            raise ConfigError(str(causes_path), clash, "the harness knows this cause already (lab/model/diagnosis.py); "
                                                       "give the scenario's own another id")
    return Manifest(path=path, machines=roles, domain=v.text(section["domain"], "lab.domain"), ports=ports,
                    images=images, templates=templates, workdir=workdir, reset=commands,
                    causes=causes)


# Folders a reset's `rm -rf` must never take (a folder of the lab's own inside /root, /home/USER,
# /opt, /srv, /tmp... is fine), and system trees nothing of a lab's may live in.
SYSTEM_FOLDERS = ("/", "/bin", "/boot", "/dev", "/etc", "/home", "/lib", "/lib32", "/lib64", "/libx32",
                  "/media", "/mnt", "/opt", "/proc", "/root", "/run", "/sbin", "/snap", "/srv", "/sys",
                  "/tmp", "/usr", "/var", "/var/tmp")
_SYSTEM_TREES = ("/bin", "/boot", "/dev", "/etc", "/lib", "/lib32", "/lib64", "/libx32", "/proc", "/run",
                 "/sbin", "/snap", "/sys", "/usr", "/var")


def checked_workdir(workdir: str, v: FieldReader) -> str:
    """The scenario's folder on the machines, normalised; refused when a reset's `rm -rf` of it would
    take something not the lab's: `..`, a system folder, or a folder inside one. Pure."""
    if any(part == ".." for part in workdir.split("/")):
        raise v.fail("lab.workdir", f"expected a path without '..' (a reset removes it with rm -rf), got {workdir}")
    normal = posixpath.normpath(workdir)
    if normal.startswith("//"):
        normal = "/" + normal.lstrip("/")
    inside = next((tree for tree in _SYSTEM_TREES if normal == tree or normal.startswith(tree + "/")), None)
    if normal in SYSTEM_FOLDERS or inside is not None:
        where = f"a system folder ({normal})" if normal in SYSTEM_FOLDERS else f"inside the system folder {inside}"
        raise v.fail("lab.workdir", f"expected a folder of the lab's own, e.g. /root/my-lab (a reset removes it "
                                    f"with rm -rf), got {workdir}: {where}")
    parent = posixpath.dirname(normal)
    if normal.count("/") < 2 or (parent == "/home" and normal.count("/") < 3):
        raise v.fail("lab.workdir", f"expected a folder of its own (a reset removes it), e.g. /root/my-lab, "
                                    f"got {workdir}")
    return normal


class _Reader(FieldReader):

    def keys(self, value: Mapping[str, Any], known: tuple[str, ...], path: str,
             required: tuple[str, ...] = ()) -> None:
        unknown = [key for key in value if key not in known]
        if unknown:
            raise self.fail(f"{path}.{unknown[0]}", f"unknown key; expected {', '.join(known)}")
        missing = [key for key in required if key not in value]
        if missing:
            raise self.fail(path, f"missing key {missing[0]!r}")

    def text(self, value: Any, path: str) -> str:
        if not isinstance(value, str) or not value.strip():
            raise self.fail(path, "expected a non-empty string")
        return value

    def match(self, value: Any, path: str, pattern: re.Pattern[str], what: str) -> str:
        if not isinstance(value, str) or not pattern.fullmatch(value):
            raise self.fail(path, f"expected {what}, got {value!r}")
        return value


    def file(self, value: Any, path: str, folder: Path) -> Path:
        found = (folder / self.text(value, path)).resolve()
        if not found.is_file():
            raise self.fail(path, f"expected a file, got {found}, which is not one")
        return found
