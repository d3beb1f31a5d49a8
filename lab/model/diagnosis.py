"""Known causes of failed checks, matched against the text a check saw.

A failing check only shows raw tool output; a table of causes turns the usual
messages into a cause and a fix a learner can act on. The table is the
scenario's own causes (its `lab.causes` file: what its tutorial gets wrong),
then the harness's general ones here (GENERAL: machines, Docker Hub, Vagrant,
systemd, names and ports), most specific first. Add a row to GENERAL to teach
reglab a failure of any lab; a tutorial's own go in its scenario folder.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Cause:
    """One known failure: the text that reveals it, why it happens, how to fix it."""

    id: str
    pattern: re.Pattern[str]
    cause: str
    fix: str

    def __post_init__(self) -> None:
        """Reject rows that would render badly, so mistakes show up at import time."""
        if not re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", self.id):
            raise ValueError(f"cause id must be kebab-case: {self.id!r}")
        for name in ("cause", "fix"):
            value = getattr(self, name)
            if not value.strip() or "\n" in value:
                raise ValueError(f"{self.id}: {name} must be one non-empty line")


def _match(*alternatives: str) -> re.Pattern[str]:
    """Compile regex alternatives case-insensitively, a space matching any whitespace.

    Tools wrap long messages (Vagrant does), so a space in a phrase must also
    match a line break. Alternatives must not put spaces in character classes
    or before quantifiers.
    """
    flexible = (alt.replace(" ", r"\s+") for alt in alternatives)
    return re.compile("|".join(f"(?:{alt})" for alt in flexible), re.IGNORECASE)


GENERAL: tuple[Cause, ...] = (
    Cause(
        "image-registry-unreachable",
        _match(
            r"lookup (?:[a-z0-9-]+\.)*docker\.(?:io|com)\b",
            r"toomanyrequests: You have reached your pull rate limit",
        ),
        "A machine tried to pull an image from Docker Hub, which this network does not reach "
        "(or whose anonymous pull limit is used up); it is not the lab's registry.",
        "Let the host provide the images: `images.source: auto` (the default) or `build` in lab.yml "
        "(or REGLAB_IMAGES=build) builds them from Debian packages and loads them into the machines.",
    ),
    Cause(
        "box-catalogue-unreachable",
        _match(r"could not be found or could not be accessed in the remote catalog"),
        "Vagrant tried to download a box from the HCP Vagrant catalogue, which this network does not "
        "reach (and which shuts down on 2026-12-31).",
        "Use `boxes.debian: build` in lab.yml (reglab builds the box here from Debian packages), or "
        "`{name, url}` pointing at a box file you have.",
    ),
    Cause(
        "apparmor-parser-missing",
        _match(r'apparmor_parser"?:? executable file not found',
               r"AppArmor enabled on system but the docker-default profile could not be loaded"),
        "The kernel has AppArmor on, but the machine lacks apparmor_parser, so Docker cannot load "
        "its default profile and refuses to start containers.",
        "Install the apparmor package on the machine (`apt-get install apparmor`), then restart docker; "
        "reglab's boxes include it.",
    ),
    Cause(
        "docker-start-limit",
        _match(
            r"start of the service was attempted too often",
            r"start request repeated too quickly",
        ),
        "systemd refused to start docker.service again: it was restarted more times than its "
        "start limit allows within a short window.",
        "Run `systemctl reset-failed docker.service` and start it again; reglab's machines raise the "
        "limit with a drop-in (reglab provision applies it).",
    ),
    Cause(
        "docker-ipv6-control",
        _match(r"failed to disable IPv6 on container's interface",
               r"DOCKER_ALLOW_IPV6_ON_IPV4_INTERFACE"),
        "Docker 26 (Debian 13's) turns IPv6 off on each IPv4-only container's interface and refuses to start "
        "the container where it cannot, as inside a container-based machine without IPv6 control.",
        "Start dockerd with DOCKER_ALLOW_IPV6_ON_IPV4_INTERFACE=1 (a systemd drop-in: "
        "`[Service]` `Environment=DOCKER_ALLOW_IPV6_ON_IPV4_INTERFACE=1`, then restart docker); reglab's "
        "provisioning writes it.",
    ),
    Cause(
        "unresolved-name",
        _match(
            r"Could not resolve host",
            r"no such host",
            r"Name or service not known",
            r"Temporary failure in name resolution",
        ),
        "This machine cannot resolve the registry domain: it is not in DNS "
        "and not in /etc/hosts here.",
        "Add a line `<registry IP> <domain>` to /etc/hosts on this machine.",
    ),
    Cause(
        "connection-refused",
        _match(r"Connection refused", r"Failed to connect to"),
        "Nothing is listening on that address and port.",
        "Check that the compose stack is up (`docker compose ps`) and that "
        "the port is published on the host and open in the firewall.",
    ),
    Cause(
        "vbox-hostonly-range",
        _match(
            r"The IP address configured for the host-only network is not "
            r"within the allowed ranges"
        ),
        "VirtualBox 6.1.28 and later only allow host-only networks in "
        "192.168.56.0/21 unless told otherwise.",
        "Create /etc/vbox/networks.conf on the host with the line "
        "`* 192.168.33.0/24 192.168.56.0/21`.",
    ),
)

CAUSE_KEYS = ("id", "match", "cause", "fix")
# Every cause known in this process by id: the general ones, and those of the scenarios loaded,
# so a stored result names its cause by id. NOTE: a scenario's causes are added when it loads.
_BY_ID: dict[str, Cause] = {cause.id: cause for cause in GENERAL}
if len(_BY_ID) != len(GENERAL):
    raise ValueError("duplicate cause ids in GENERAL")


def causes_from(data: Any) -> tuple[Cause, ...]:
    """A scenario's causes file (a list of {id, match, cause, fix}) as Causes; ValueError naming the entry.

    Known from then on by id (`cause_by_id`), for the results that name them.
    """
    if not isinstance(data, list):
        raise ValueError("expected a list of causes, each {id, match, cause, fix}")
    causes = []
    for i, entry in enumerate(data):
        where = f"[{i}]"
        if not isinstance(entry, Mapping):
            raise ValueError(f"{where}: expected a mapping with {', '.join(CAUSE_KEYS)}")
        where = f"[{i}] ({entry.get('id')})"
        unknown = [key for key in entry if key not in CAUSE_KEYS]
        missing = [key for key in CAUSE_KEYS if key not in entry]
        if unknown or missing:
            raise ValueError(f"{where}: expected the keys {', '.join(CAUSE_KEYS)}, "
                             + (f"got {unknown[0]!r} too" if unknown else f"missing {missing[0]!r}"))
        alternatives = entry["match"]
        if (not isinstance(alternatives, list) or not alternatives
                or not all(isinstance(a, str) and a for a in alternatives)):
            raise ValueError(f"{where}.match: expected a list of regular expressions")
        if not all(isinstance(entry[k], str) for k in ("id", "cause", "fix")):
            raise ValueError(f"{where}: expected id, cause and fix as strings")
        try:
            causes.append(Cause(entry["id"], _match(*alternatives), entry["cause"], entry["fix"]))
        except re.error as exc:
            raise ValueError(f"{where}.match: not a regular expression: {exc}") from None
    ids = [cause.id for cause in causes]
    twice = next((i for i in ids if ids.count(i) > 1), None)
    if twice:
        raise ValueError(f"cause id {twice!r} is given twice")
    for cause in causes:
        _BY_ID[cause.id] = cause
    return tuple(causes)


def cause_by_id(cause_id: str) -> Cause:
    """Look a cause up by id, so stored results can refer to causes by name."""
    try:
        return _BY_ID[cause_id]
    except KeyError:
        raise ValueError(f"unknown cause id: {cause_id!r}") from None


def diagnose(text: str, causes: Iterable[Cause] = GENERAL) -> Cause | None:
    """Return the first cause of the table (most specific first) found in the text, or None."""
    return next((cause for cause in causes if cause.pattern.search(text)), None)


def diagnose_all(text: str, causes: Iterable[Cause] = GENERAL) -> list[Cause]:
    """Return every cause of the table found in the text, most specific first."""
    return [cause for cause in causes if cause.pattern.search(text)]


def format_diagnosis(cause: Cause) -> str:
    """Render a cause as the two lines shown to the learner."""
    return f"likely cause: {cause.cause}\nfix: {cause.fix}"
