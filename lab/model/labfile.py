"""The lab file: `lab.yml` read and layered, then checked into a Lab.

Layers are merged in one order: built-in defaults, the lab file, the
environment (REGLAB_*), then the command line. Every error names the file
and the key path, so a bad lab file is one clear message, never a traceback.
The values are lab.model.lab's; checking them is lab.model.labcheck's."""

from __future__ import annotations

import copy
import os
import shlex
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from lab.common.errors import ConfigError
from lab.common.fields import value_kind
from lab.common.yamlfile import MissingFileError, read_yaml
from lab.model import manifest as manifests
from lab.model.lab import EDITIONS, IMAGE_SOURCES, PROVIDERS, STARTS, Lab, default_scenario
from lab.model.labcheck import Validator, check_keys, validate
from lab.model.manifest import Manifest
from lab.model.platforms import DEFAULT_PLATFORM, PLATFORMS

DEFAULTS: dict[str, Any] = {
    "name": "reglab",
    "provider": "docker",
    "edition": "modern",
    "os": "debian",
    # The Debian release the machines run and the lab's images are built from (lab/model/platforms.py).
    "platform": DEFAULT_PLATFORM,
    # The scenario (its steps file) the lab runs, relative to the lab file; None: the tutorial shipped
    # with reglab. What it declares (lab/model/manifest.py) gives the defaults of domain, machines, ports, images.
    "scenario": None,
    "users": [{"name": "student"}],
    "images": {"source": "auto"},
    "boxes": {
        # Built here from Debian packages: no catalogue (HCP Vagrant closes on 2026-12-31).
        "debian": "build",
        "rhel": {"name": "generic/rocky9", "version": "4.3.12"},
    },
    "timeouts": {"command": 300, "boot": 300},
    # The Debian mirror images and boxes are built from; None: the host's own apt configuration.
    "mirror": None,
    # warm: boot from a saved, already-provisioned machine image when its plan still matches; fresh: never.
    "start": "warm",
    # provider: incus: the Incus remote the machines run on (`incus remote list`); None: this host's own Incus.
    "incus": {"remote": None},
}


CHOICES = {"provider": (*PROVIDERS, "auto"), "edition": EDITIONS, "platform": tuple(PLATFORMS),
           "images.source": IMAGE_SOURCES, "mirror": None, "start": STARTS}


# Environment layer: variable -> key in the lab file.
ENVIRONMENT = {
    "REGLAB_PROVIDER": "provider",
    "REGLAB_EDITION": "edition",
    "REGLAB_PLATFORM": "platform",
    "REGLAB_IMAGES": "images.source",
    "REGLAB_MIRROR": "mirror",
    "REGLAB_START": "start",
}


def load(
    path: Path,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, str | None] | None = None,
    auto_provider: Callable[[], str] | None = None,
) -> Lab:
    """Read, layer and validate a lab file; raise ConfigError naming the key path.

    `provider: auto` is resolved by `auto_provider`, which probes the host: the
    model does not (lab.engine.session.load_lab passes lab.machines.hostsetup's).
    """
    source = str(path)
    raw = read_lab_file(path)
    declared = scenario_manifest(raw, Path(path).resolve().parent, overrides or {}, source)
    merged = layer(raw, environ if environ is not None else os.environ, overrides or {}, source,
                   defaults_for(declared))
    return validate(merged, Path(path).resolve(), source, declared, auto_provider)


def scenario_manifest(raw: Mapping[str, Any], folder: Path, overrides: Mapping[str, str | None],
                      source: str) -> Manifest:
    """What the lab's scenario declares: `--scenario`, else the lab file's `scenario:` (relative to
    it), else the shipped tutorial. A file or a folder holding `scenario.yaml`."""
    given = overrides.get("scenario")
    origin = "--scenario" if given is not None else source
    if given is None:
        given = raw.get("scenario")
    if given is None:
        return manifests.load(default_scenario())
    if not isinstance(given, str) or not given.strip():
        raise ConfigError(origin, "scenario", f"expected the path of a scenario file, got {value_kind(given)}")
    path = folder / Path(given).expanduser() if origin == source else Path(given).expanduser().resolve()
    if path.is_dir():
        path = path / "scenario.yaml"
    if not path.is_file():
        raise ConfigError(origin, "scenario", f"expected a scenario file (or a folder with scenario.yaml), "
                                              f"got {path}, which is not one")
    return manifests.load(path)


def defaults_for(declared: Manifest) -> dict[str, Any]:
    """The built-in defaults, with what the scenario declares (domain, machines, ports, images)."""
    defaults = copy.deepcopy(DEFAULTS)
    scenario = declared.defaults()
    defaults.update(domain=scenario["domain"], machines=scenario["machines"], ports=scenario["ports"])
    defaults["images"] = {"source": DEFAULTS["images"]["source"], **scenario["images"]}
    return defaults


def read_lab_file(path: Path) -> dict[str, Any]:
    """A lab file's mapping as written, before layering; a missing one says how to make one."""
    source = str(path)
    try:
        data = read_yaml(path, "lab file")
    except MissingFileError:
        folder = Path(path).parent
        init = "reglab init" if folder.resolve() == Path.cwd() else f"reglab init {shlex.quote(str(folder))}"
        then = "" if Path(path).name == "lab.yml" else f" (then give --lab {shlex.quote(str(folder / 'lab.yml'))})"
        raise ConfigError(source, "", f"no such file; `{init}` writes a commented lab.yml to start from{then}"
                          ) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(source, "(top level)", f"expected a mapping, got {value_kind(data)}")
    return data


def layer(
    raw: Mapping[str, Any],
    environ: Mapping[str, str],
    overrides: Mapping[str, str | None],
    source: str,
    defaults: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Defaults (with the scenario's), then the file, then the environment, then the command line."""
    defaults = defaults if defaults is not None else defaults_for(manifests.load(default_scenario()))
    check_keys(raw, defaults, "", source)
    merged = _merge(copy.deepcopy(dict(defaults)), raw)
    for variable, key in ENVIRONMENT.items():
        value = environ.get(variable)
        if value:
            origin = f"environment variable {variable}"
            if CHOICES[key] is None:  # free-form: checked here too, so an error names the variable
                Validator(origin).mirror(value, "")
            elif value not in CHOICES[key]:
                raise ConfigError(origin, "", f"expected one of {', '.join(CHOICES[key])}, got {value!r}")
            _set(merged, key, value, source)
    for key, value in overrides.items():
        if value is not None:
            _set(merged, key, value, source)
    return merged




def _merge(base: dict[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    for key, value in top.items():
        if key in ("machines", "users"):
            base[key] = value  # replaced whole: merging two machine sets would surprise
        elif isinstance(value, Mapping) and isinstance(base.get(key), dict):
            base[key] = _merge(base[key], value)
        else:
            base[key] = value
    return base


def _set(data: dict[str, Any], dotted: str, value: Any, source: str) -> None:
    *parents, last = dotted.split(".")
    for i, key in enumerate(parents):
        data = data[key]
        if not isinstance(data, dict):
            raise ConfigError(source, ".".join(parents[: i + 1]), f"expected a mapping, got {value_kind(data)}")
    data[last] = value
