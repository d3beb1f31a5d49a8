"""Checking a served certificate chain the way Docker would, and saying why it would refuse it.

The checks explain *why* Docker would reject a certificate served by nginx, not
just that it would (`verify_chain`); `cert_facts` gives what a check shows.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.x509.verification import (
    DNSName,
    IPAddress,
    PolicyBuilder,
    Store,
    VerificationError,
)

from lab.pki.names import IPAddressType, as_ip, aware, common_name, describe_name, describe_san, san_matches, san_values

MIN_HASH_BITS = 256


_PEM_CERT_RE = re.compile(
    r"-----BEGIN CERTIFICATE-----(.*?)-----END CERTIFICATE-----", re.DOTALL
)


LEGACY_CN_PROBLEM = (
    "certificate has no subjectAltName; it relies on the legacy Common Name field, "
    "which Docker rejects "
    "(x509: certificate relies on legacy Common Name field, use SANs instead)"
)


@dataclass(frozen=True)
class CertFacts:
    """The parts of a certificate that explain Docker's TLS verdicts."""

    subject_cn: str | None
    issuer_cn: str | None
    dns_names: tuple[str, ...]
    ip_addresses: tuple[str, ...]
    not_after: datetime
    signature_hash: str | None


def extract_pem_certs(text: str) -> list[bytes]:
    """Pull each PEM cert, in order, out of `openssl s_client -showcerts` noise."""
    blocks = []
    for match in _PEM_CERT_RE.finditer(text):
        body = [line.strip() for line in match.group(1).splitlines() if line.strip()]
        pem = "\n".join(
            ["-----BEGIN CERTIFICATE-----", *body, "-----END CERTIFICATE-----"]
        )
        blocks.append((pem + "\n").encode("ascii"))
    return blocks


def cert_facts(pem: bytes) -> CertFacts:
    """Summarise a PEM certificate in the terms the checks report."""
    cert = x509.load_pem_x509_certificate(pem)
    dns_names, ip_addresses = san_values(cert)
    algorithm = cert.signature_hash_algorithm
    return CertFacts(
        subject_cn=common_name(cert.subject),
        issuer_cn=common_name(cert.issuer),
        dns_names=dns_names,
        ip_addresses=ip_addresses,
        not_after=cert.not_valid_after_utc,
        signature_hash=None if algorithm is None else algorithm.name,
    )


def verify_chain(
    chain: Sequence[bytes],
    ca_pem: bytes,
    hostname: str,
    now: datetime | None = None,
    check_names: bool = True,
) -> list[str]:
    """List why Docker would reject this served chain for `hostname` (empty = fine).

    `chain` is leaf first, as nginx serves it. Specific problems are worked out here so
    the message names the cause; the library's verdict is added only when none apply.
    check_names=False leaves the subjectAltName out (the tutorial's CN-only
    certificate, graded for its chain, dates and hash alone).
    """
    if not chain:
        return ["no certificate was presented"]
    at = aware(now)
    ca = x509.load_pem_x509_certificate(ca_pem)
    certs = [x509.load_pem_x509_certificate(pem) for pem in chain]
    leaf, intermediates = certs[0], certs[1:]

    problems = _chain_problems(leaf, intermediates, ca)
    problems += _constraint_problems(leaf, ca)
    if check_names:
        problems += _name_problems(leaf, hostname)
    labelled = [("server certificate", leaf)] + [
        (f"chain certificate {index}", cert)
        for index, cert in enumerate(intermediates, start=1)
        if cert != ca
    ]
    for label, cert in labelled:
        problems += _validity_problems(label, cert, at)
        problems += _hash_problems(label, cert)
    problems += _validity_problems("lab CA certificate", ca, at)

    # The library's verifier always matches names, so it speaks only when names count.
    library_error = _library_error(leaf, intermediates, ca, hostname, at) if check_names else None
    if library_error is not None and not problems:
        problems.append(
            f"chain does not verify against the lab CA for {hostname}: {library_error}"
        )
    return problems


def _chain_problems(
    leaf: x509.Certificate,
    intermediates: Sequence[x509.Certificate],
    ca: x509.Certificate,
) -> list[str]:
    """Explain a missing path to the lab CA by the first link that fails."""
    current = leaf
    remaining = [cert for cert in intermediates if cert != ca]
    while True:
        if _issued_by(current, ca):
            return []
        parent = next((cert for cert in remaining if _issued_by(current, cert)), None)
        if parent is None:
            break
        remaining.remove(parent)
        current = parent
    issuer = describe_name(current.issuer)
    if current.issuer == ca.subject:
        problem = (
            f"certificate is not signed by the lab CA: its issuer ({issuer}) has "
            "the lab CA's name but the signature does not verify with the lab CA's key "
            "(a different or regenerated CA)"
        )
        return [problem]
    lab_ca = describe_name(ca.subject)
    return [
        f"certificate does not chain to the lab CA ({lab_ca}): it is issued by {issuer}"
    ]


def _issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    """True when `issuer`'s name and key produced `cert`'s signature."""
    if cert.issuer != issuer.subject:
        return False
    try:
        cert.verify_directly_issued_by(issuer)
    except InvalidSignature:
        return False
    return True


def _constraint_problems(leaf: x509.Certificate, ca: x509.Certificate) -> list[str]:
    """Names in the leaf that the CA's name constraints forbid, as Go's verifier would refuse them."""
    try:
        constraints = ca.extensions.get_extension_for_class(x509.NameConstraints).value
    except x509.ExtensionNotFound:
        return []
    try:
        san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    permitted = list(constraints.permitted_subtrees or [])
    excluded = list(constraints.excluded_subtrees or [])
    refused = [
        label
        for kind, name, label in _typed_names(san)
        if any(isinstance(c, kind) and _within(name, c) for c in excluded)
        or (
            any(isinstance(c, kind) for c in permitted)
            and not any(isinstance(c, kind) and _within(name, c) for c in permitted)
        )
    ]
    if not refused:
        return []
    allowed = ", ".join(_describe_constraint(c) for c in permitted) or "nothing"
    return [
        f"certificate names {', '.join(refused)}, which the lab CA's name constraints "
        f"do not permit (it may sign only for {allowed})"
    ]


def _typed_names(san: x509.SubjectAlternativeName) -> list[tuple[type, str | IPAddressType, str]]:
    return [(x509.DNSName, name, f"DNS:{name}") for name in san.get_values_for_type(x509.DNSName)] + [
        (x509.IPAddress, ip, f"IP:{ip}") for ip in san.get_values_for_type(x509.IPAddress)
    ]


def _within(name: str | IPAddressType, constraint: x509.GeneralName) -> bool:
    """RFC 5280 subtrees: a DNS name is itself or any name under it ("" is every name)."""
    if isinstance(constraint, x509.DNSName) and isinstance(name, str):
        base, name = constraint.value.lower().rstrip("."), name.lower().rstrip(".")
        if not base:
            return True
        if base.startswith("."):
            return name.endswith(base)
        return name == base or name.endswith("." + base)
    if isinstance(constraint, x509.IPAddress) and not isinstance(name, str):
        network = constraint.value
        return isinstance(network, ipaddress.IPv4Network | ipaddress.IPv6Network) and name in network
    return False


def _describe_constraint(constraint: x509.GeneralName) -> str:
    if isinstance(constraint, x509.DNSName):
        return f"DNS:{constraint.value}"
    if isinstance(constraint, x509.IPAddress):
        return f"IP:{constraint.value}"
    return str(constraint.value)


def _name_problems(leaf: x509.Certificate, hostname: str) -> list[str]:
    """Check the SAN the way Go does: CN is never consulted."""
    try:
        san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return [LEGACY_CN_PROBLEM]
    if san_matches(san, hostname):
        return []
    held = ", ".join(describe_san(san)) or "nothing"
    return [f"hostname {hostname} is not in the subjectAltName (it holds {held})"]


def _validity_problems(label: str, cert: x509.Certificate, at: datetime) -> list[str]:
    start, end = cert.not_valid_before_utc, cert.not_valid_after_utc
    checked = f"(checked at {at.isoformat()})"
    if at > end:
        return [f"{label} expired on {end.isoformat()} {checked}"]
    if at < start:
        return [f"{label} is not valid until {start.isoformat()} {checked}"]
    return []


def _hash_problems(label: str, cert: x509.Certificate) -> list[str]:
    algorithm = cert.signature_hash_algorithm
    if algorithm is None or algorithm.digest_size * 8 >= MIN_HASH_BITS:
        return []
    return [f"{label} is signed with {algorithm.name}, weaker than SHA-256"]


def _library_error(
    leaf: x509.Certificate,
    intermediates: Sequence[x509.Certificate],
    ca: x509.Certificate,
    hostname: str,
    at: datetime,
) -> str | None:
    """Ask cryptography's WebPKI verifier too, for what the specific checks miss."""
    verifier = (
        PolicyBuilder()
        .store(Store([ca]))
        .time(at)
        .build_server_verifier(_verification_subject(hostname))
    )
    try:
        verifier.verify(leaf, list(intermediates))
    except VerificationError as error:
        return str(error)
    return None


def _verification_subject(hostname: str) -> DNSName | IPAddress:
    ip = as_ip(hostname)
    return DNSName(hostname) if ip is None else IPAddress(ip)
