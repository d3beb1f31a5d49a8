"""A platform matrix: the editions run on each platform, one lab per platform.

`reglab run --platform debian12,debian13` makes, for each platform, a lab
file of its own beside the lab's state (`.lab/NAME/platforms/PLATFORM/lab.yml`):
the lab's own file as written, with the name `NAME-PLATFORM`, the platform,
and the machines moved to a /24 of their own (the lab's third octet plus the
platform's place in lab/model/platforms.py, plus one), so the labs never
share a container name or a Docker network with each other or with the lab
itself. The Vagrantfile reads that file as it reads any lab's. The
maintainer's report then reads every platform lab's last runs.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path

import yaml

from lab.common.errors import LabError
from lab.common.files import atomic_write, private_dir
from lab.model import labfile
from lab.model.lab import EDITIONS, Lab
from lab.model.platforms import PLATFORMS
from lab.model.results import RunResult
from lab.reports.files import load_results

FOLDER = "platforms"


def matrix_dir(lab: Lab) -> Path:
    return lab.state_dir / FOLDER


def platform_name(lab_name: str, platform: str) -> str:
    return f"{lab_name}-{platform}"


def shifted(ip: str, platform: str) -> str:
    """The machine's address on the platform lab's own /24: the third octet moved by the platform's place + 1."""
    step = list(PLATFORMS).index(platform) + 1
    moved = ipaddress.ip_address(ip) + 256 * step
    if moved.packed[:2] != ipaddress.ip_address(ip).packed[:2]:
        raise LabError(f"machines: {ip} leaves no room for the platform labs' /24s above it "
                       f"(they take the next {len(PLATFORMS)}); give the lab a lower /24")
    return str(moved)


def write_lab_file(lab: Lab, platform: str) -> Path:
    """The platform lab's file (written again each run, so it follows the lab's own)."""
    if not lab.provider or lab.provider == "ssh":
        raise LabError("--platform with several platforms: machines given over SSH (provider: ssh) run one "
                       "platform, their own; a matrix needs a provider that makes machines")
    raw = labfile.read_lab_file(lab.source)
    raw["name"] = platform_name(lab.name, platform)
    raw["platform"] = platform
    raw["provider"] = lab.provider  # `auto` decided once, for every platform alike
    raw["machines"] = {machine.name: {"ip": shifted(machine.ip, platform)} for machine in lab.machines}
    if lab.manifest is not None and raw.get("scenario") is not None:
        raw["scenario"] = str(lab.manifest.path)  # relative to the lab's own file, which is elsewhere
    # Private, as the lab's state is: the lab file may hold a user's password.
    for folder in (lab.state_dir.parent, lab.state_dir, matrix_dir(lab), matrix_dir(lab) / platform):
        private_dir(folder)
    path = matrix_dir(lab) / platform / "lab.yml"
    atomic_write(path, "# Written by `reglab run --platform ...` from " + str(lab.source) + "; edit that one.\n"
                 + yaml.safe_dump(raw, sort_keys=False), mode=0o600)
    return path


def platform_reports(lab: Lab) -> dict[str, Path]:
    """Each platform lab's reports folder that exists, by platform."""
    found = {}
    for platform in PLATFORMS:
        reports = matrix_dir(lab) / platform / ".lab" / platform_name(lab.name, platform) / "reports"
        if reports.is_dir():
            found[platform] = reports
    return found


def matrix_results(lab: Lab) -> list[RunResult]:
    """The lab's own last runs and every platform lab's: one per (edition, platform), a platform lab's
    winning over the lab's own run of the same edition on the same platform."""
    chosen: dict[tuple[str, str], RunResult] = {}
    for result in load_results(lab.state_dir / "reports"):
        chosen[(result.edition, result.platform or lab.platform)] = result
    for platform, reports in platform_reports(lab).items():
        for result in load_results(reports):
            chosen[(result.edition, result.platform or platform)] = result
    rank = {edition: n for n, edition in enumerate(EDITIONS)}
    return [chosen[column] for column in sorted(chosen, key=lambda c: (rank.get(c[0], len(rank)), c[1]))]
