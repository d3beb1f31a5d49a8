"""The host's own apt configuration: which Debian mirror (and proxy) it uses.

Images and boxes are built from Debian packages. Sites with their own mirror
or an apt proxy (air-gapped classrooms, companies) must be served by theirs,
so reglab never names a mirror itself: it reads the host's sources (one-line
`sources.list` and deb822 `*.sources`), unless `mirror:` in lab.yml or
REGLAB_MIRROR says otherwise. The parsers are pure and tested on text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from lab.common.errors import LabError
from lab.machines.host import probe
from lab.model.platforms import PLATFORMS

APT_DIR = Path("/etc/apt")


@dataclass(frozen=True)
class Source:
    uri: str
    suites: tuple[str, ...]
    components: tuple[str, ...]
    signed_by: str = ""  # deb822 `Signed-By:` (a keyring path), kept for a source made beside it


def parse_one_line(text: str) -> list[Source]:
    """`deb [options] URI SUITE COMPONENT...` lines; deb-src and comments ignored."""
    found = []
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line.startswith("deb "):
            continue
        line = re.sub(r"\[[^\]]*\]", " ", line[4:])
        words = line.split()
        if len(words) >= 2:
            found.append(Source(words[0], (words[1],), tuple(words[2:])))
    return found


def parse_deb822(text: str) -> list[Source]:
    """deb822 stanzas (`Types: deb`, `URIs:`, `Suites:`, `Components:`); `Enabled: no` skipped."""
    found = []
    for stanza in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        key = None
        for line in stanza.splitlines():
            if line.startswith("#") or not line.strip():
                continue
            if line[0].isspace() and key:
                fields[key] += " " + line.strip()
                continue
            key, _, value = line.partition(":")
            key = key.strip().lower()
            fields[key] = value.strip()
        if "deb" not in fields.get("types", "").split() or fields.get("enabled", "yes").lower() == "no":
            continue
        suites = tuple(fields.get("suites", "").split())
        components = tuple(fields.get("components", "").split())
        signed_by = fields.get("signed-by", "")
        found += [Source(uri, suites, components, signed_by) for uri in fields.get("uris", "").split()]
    return found


def debian_mirror(sources: list[Source], suite: str) -> str | None:
    """The first source that serves `suite` itself (not -security, -updates) with `main`; else
    the first that serves another release reglab knows (a Debian 12 host building Debian 13
    machines): one Debian archive serves every release."""
    for source in sources:
        if suite in source.suites and "main" in source.components:
            return source.uri.rstrip("/")
    releases = {platform.suite for platform in PLATFORMS.values()}
    for source in sources if suite in releases else ():
        if releases & set(source.suites) and "main" in source.components:
            return source.uri.rstrip("/")
    return None


def debian_source(sources: list[Source], suite: str) -> Source | None:
    """The source `debian_mirror` picks, whole (its keyring too)."""
    for source in sources:
        if suite in source.suites and "main" in source.components:
            return source
    return None


def backports_sources(source: Source, codename: str) -> str:
    """A deb822 file enabling CODENAME-backports from the host's own Debian mirror (and keyring). Pure."""
    lines = ["# reglab: Incus comes from backports on this release (python -m lab.machines.hostsetup)",
             "Types: deb", f"URIs: {source.uri}", f"Suites: {codename}-backports", "Components: main"]
    if source.signed_by:
        lines.append(f"Signed-By: {source.signed_by}")
    return "\n".join(lines) + "\n"


def parse_proxy(apt_config_dump: str) -> str | None:
    """`Acquire::http::Proxy "URL";` from `apt-config dump`, if any."""
    match = re.search(r'^Acquire::http::Proxy\s+"([^"]+)";', apt_config_dump, re.M)
    return match.group(1) if match and match.group(1).upper() not in ("DIRECT", "FALSE") else None


def host_sources(apt_dir: Path = APT_DIR) -> list[Source]:
    sources: list[Source] = []
    files = [apt_dir / "sources.list", *sorted((apt_dir / "sources.list.d").glob("*"))]
    for path in files:
        try:
            text = path.read_text(errors="replace")
        except OSError:
            continue
        if path.name.endswith(".sources"):
            sources += parse_deb822(text)
        elif path.name.endswith(".list"):
            sources += parse_one_line(text)
    return sources


def mirror_for(suite: str, configured: str | None, apt_dir: Path = APT_DIR) -> str:
    """The lab's mirror, else the host's own for `suite`, else a message saying what to set."""
    if configured:
        return configured
    found = debian_mirror(host_sources(apt_dir), suite)
    if found is None:
        raise LabError(
            f"no Debian mirror for {suite} in this host's apt sources ({apt_dir}); set `mirror:` in the lab "
            f"file or REGLAB_MIRROR to your Debian mirror's URL"
        )
    return found


def host_proxy() -> str | None:
    """The apt proxy the host uses, so builds on the host go through it as well."""
    dump = probe(["apt-config", "dump"], timeout=30)
    return parse_proxy(dump) if dump is not None else None
