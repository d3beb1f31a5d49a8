"""Names in certificates: subjectAltName entries, how a name matches one, and the lab's name constraints."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime

from cryptography import x509
from cryptography.x509.oid import NameOID

IPAddressType = ipaddress.IPv4Address | ipaddress.IPv6Address


IPNetworkType = ipaddress.IPv4Network | ipaddress.IPv6Network


# The lab's machines share one private network; the CA may sign for addresses in it alone.
LAB_PREFIX = {4: 24, 6: 64}


def as_ip(text: str) -> IPAddressType | None:
    """Classify a host string; None means it is a DNS name."""
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def san_entries(domain: str, ips: Sequence[str]) -> list[x509.GeneralName]:
    entries: list[x509.GeneralName] = []
    domain_ip = as_ip(domain)
    if domain_ip is None:
        entries.append(x509.DNSName(domain))
    seen: set[IPAddressType] = set()
    for ip in ([domain_ip] if domain_ip is not None else []) + [
        ipaddress.ip_address(i) for i in ips
    ]:
        if ip not in seen:
            seen.add(ip)
            entries.append(x509.IPAddress(ip))
    return entries


def san_values(cert: x509.Certificate) -> tuple[tuple[str, ...], tuple[str, ...]]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return (), ()
    return (
        tuple(san.get_values_for_type(x509.DNSName)),
        tuple(str(ip) for ip in san.get_values_for_type(x509.IPAddress)),
    )


def san_matches(san: x509.SubjectAlternativeName, hostname: str) -> bool:
    """Match like Go's crypto/x509: IPs only against IP SANs, names against DNS SANs."""
    ip = as_ip(hostname)
    if ip is not None:
        return ip in san.get_values_for_type(x509.IPAddress)
    return any(
        dns_matches(pattern, hostname)
        for pattern in san.get_values_for_type(x509.DNSName)
    )


def dns_matches(pattern: str, hostname: str) -> bool:
    """Exact match, or a leading `*.` wildcard standing for exactly one label."""
    pattern, hostname = pattern.lower().rstrip("."), hostname.lower().rstrip(".")
    if pattern.startswith("*."):
        label, _, rest = hostname.partition(".")
        return bool(label) and rest == pattern[2:]
    return pattern == hostname


def describe_san(san: x509.SubjectAlternativeName) -> list[str]:
    return [f"DNS:{name}" for name in san.get_values_for_type(x509.DNSName)] + [
        f"IP:{ip}" for ip in san.get_values_for_type(x509.IPAddress)
    ]


def describe_name(name: x509.Name) -> str:
    return name.rfc4514_string() or "an empty name"


def common_name(name: x509.Name) -> str | None:
    attributes = name.get_attributes_for_oid(NameOID.COMMON_NAME)
    if not attributes:
        return None
    value = attributes[0].value
    return value if isinstance(value, str) else value.decode("utf-8")


def aware(now: datetime | None) -> datetime:
    """Default to now in UTC; refuse naive datetimes, whose zone would be a guess."""
    if now is None:
        return datetime.now(UTC)
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    return now


def lab_name_constraints(domain: str, ips: Iterable[str]) -> x509.NameConstraints:
    """What the lab CA may sign for: `domain` (and names under it) and the /24 of each IP.

    A name type with no permitted entry would be unconstrained (RFC 5280), so
    a lab without a DNS domain excludes every DNS name, and one without an IP
    address every address.
    """
    domain_ip = as_ip(domain)
    addresses = [ipaddress.ip_address(ip) for ip in ips] + ([domain_ip] if domain_ip is not None else [])
    networks: list[IPNetworkType] = []
    for address in addresses:
        network = ipaddress.ip_network(f"{address}/{LAB_PREFIX[address.version]}", strict=False)
        if network not in networks:
            networks.append(network)
    permitted: list[x509.GeneralName] = [x509.IPAddress(network) for network in networks]
    excluded: list[x509.GeneralName] = []
    if domain_ip is None:
        permitted.insert(0, x509.DNSName(domain.lower().rstrip(".")))
    else:
        excluded.append(x509.DNSName(""))
    if not networks:
        excluded += [x509.IPAddress(ipaddress.ip_network("0.0.0.0/0")), x509.IPAddress(ipaddress.ip_network("::/0"))]
    return x509.NameConstraints(permitted_subtrees=permitted, excluded_subtrees=excluded or None)
