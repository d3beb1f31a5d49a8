"""Known causes of failed checks, matched against the text a check saw.

A failing check only shows raw tool output; this table turns the usual
messages (Docker, curl, nginx, Compose, Vagrant, pip) into a cause and a fix
a learner can act on. Add a row to CAUSES to teach reglab a new failure.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


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


CAUSES: tuple[Cause, ...] = (
    Cause(
        "legacy-cn",
        _match(
            r"x509: certificate relies on legacy Common Name field",
            r"certificate is not valid for any names",
            r"no subjectAltName",
        ),
        "The server certificate names the domain only in its Common Name; "
        "current TLS clients (Go 1.15+, so Docker) only accept subjectAltName.",
        "Reissue the server certificate with a subjectAltName for the domain "
        "(and its IP), signed with SHA-256, then restart nginx.",
    ),
    Cause(
        "wrong-name",
        _match(
            r"certificate is valid for \S.*?, not \S",
            r"is not in the certificate's subjectAltName",
            r"no alternative certificate subject name matches target host name",
        ),
        "The certificate does not name the host the client connected to.",
        "Connect with the exact domain in the certificate, or reissue it with "
        "a subjectAltName for that domain (and its IP).",
    ),
    Cause(
        "http-to-https",
        _match(
            r"server gave HTTP response to HTTPS client",
            r"wrong version number",
        ),
        "The client spoke HTTPS to a port that answers plain HTTP: it reached "
        "the registry's own port, or nginx is not serving TLS there.",
        "Point the client at the nginx TLS port and make nginx listen with "
        "`listen 443 ssl;` in the server block.",
    ),
    Cause(
        "no-basic-auth",
        _match(r"no basic auth credentials"),
        "A pull or push without `docker login` on this machine: Docker has no "
        "stored credentials for this registry here (each machine logs in on its own).",
        "Run `docker login <domain>` on that machine first (the registry "
        "server needs it too before it can pull).",
    ),
    Cause(
        "name-not-pushed",
        _match(
            # What Docker's daemon says for a registry's MANIFEST_UNKNOWN, DENIED and NAME_UNKNOWN
            # (moby distribution/errors.go, notFoundError), then containerd's image store, then the API.
            r"manifest for \S+ not found: manifest unknown",
            r"repository does not exist or may require 'docker login'",
            r"pull access denied for \S+",
            r"repository \S+ not found: name unknown",
            r"failed to resolve reference \S+ \S+: not found",
            r"repository name not known to registry",
        ),
        "The image name pulled is not the one pushed, so the registry holds no such "
        "repository (the tutorial pushes test-image and pulls test-images).",
        "Pull exactly the name that was pushed (`docker pull <domain>/test-image`); "
        "`curl -u USER https://<domain>/v2/_catalog` lists the names the registry holds.",
    ),
    Cause(
        "compose-v1-file",
        _match(r"Additional property \w+ is not allowed"),
        "Compose v2 read a version-1 docker-compose.yml (services at the top "
        "level, no `services:` key), a format it no longer accepts.",
        "Nest the services under a top-level `services:` key, or run the file "
        "with docker-compose 1.29.",
    ),
    Cause(
        "unknown-ssl-directive",
        _match(r'unknown directive "ssl"'),
        "nginx 1.25.1 and later removed the `ssl on;` directive the tutorial's "
        "config uses, so nginx refuses to start.",
        "Delete `ssl on;` and write `listen 443 ssl;` instead.",
    ),
    Cause(
        "ssl-on-deprecated",
        _match(r'the "ssl" directive is deprecated'),
        "The config uses `ssl on;`, deprecated since nginx 1.15; it still "
        "runs but breaks on nginx 1.25.1 and later.",
        "Delete `ssl on;` and write `listen 443 ssl;` instead.",
    ),
    Cause(
        "too-large",
        _match(r"413 Request Entity Too Large", r"HTTP 413\b"),
        "nginx rejected an image layer larger than its default 1 MB body limit.",
        "Add `client_max_body_size 0;` to the nginx server block and reload nginx.",
    ),
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
        "untrusted-ca",
        _match(
            r"x509: certificate signed by unknown authority",
            r"SSL certificate problem: unable to get local issuer certificate",
            r"self.signed certificate in certificate chain",
        ),
        "This machine does not trust the lab CA that signed the registry certificate.",
        "Install the lab CA into the system trust store (update-ca-certificates "
        "or update-ca-trust) and restart Docker, or copy it to "
        "/etc/docker/certs.d/<domain>/ca.crt.",
    ),
    Cause(
        "unauthorized",
        _match(
            r"401 Unauthorized",
            r"unauthorized: authentication required",
            r"incorrect username or password",
        ),
        "The registry refused the credentials: wrong user or wrong password.",
        "Check the user in the htpasswd file nginx reads and the password "
        "given to `docker login`; regenerate the htpasswd entry if unsure.",
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
    Cause(
        "schema1-manifest",
        _match(
            r"manifest version 2, schema 1",
            r"schema\s*1 support",
        ),
        "The image is from 2015 (like nginx:1.9) and uses the schema 1 "
        "manifest format current Docker refuses to pull.",
        "Use a current image tag (for example nginx:stable) instead of the "
        "tutorial's old one.",
    ),
    Cause(
        "pip-compose",
        _match(
            r"externally-managed-environment",
            r"cython_sources",
            r"kwargs_from_env\(\) got an unexpected keyword argument "
            r"'ssl_version'",
        ),
        "docker-compose 1.x from pip no longer installs or runs on current "
        "Python and docker-py.",
        "Do not pip install docker-compose: use the distribution package or "
        "Compose v2 (`docker compose`).",
    ),
)

_BY_ID: dict[str, Cause] = {cause.id: cause for cause in CAUSES}
if len(_BY_ID) != len(CAUSES):
    raise ValueError("duplicate cause ids in CAUSES")


def cause_by_id(cause_id: str) -> Cause:
    """Look a cause up by id, so stored results can refer to causes by name."""
    try:
        return _BY_ID[cause_id]
    except KeyError:
        raise ValueError(f"unknown cause id: {cause_id!r}") from None


def diagnose(text: str) -> Cause | None:
    """Return the most specific known cause found in the text, or None."""
    return next((cause for cause in CAUSES if cause.pattern.search(text)), None)


def diagnose_all(text: str) -> list[Cause]:
    """Return every known cause found in the text, most specific first."""
    return [cause for cause in CAUSES if cause.pattern.search(text)]


def format_diagnosis(cause: Cause) -> str:
    """Render a cause as the two lines shown to the learner."""
    return f"likely cause: {cause.cause}\nfix: {cause.fix}"
