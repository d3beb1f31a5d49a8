"""Lab PKI: the tutorial's CA and server cert, made on the host, and served-cert checks.

The tutorial's file names (devdockerCA.crt/.key for the CA, domain.crt/.key for nginx)
are kept so the lab's steps read like the tutorial. The checks explain *why* Docker
would reject a certificate served by nginx, not just that it would.

NOTE: both machines trust the lab CA system-wide, so the CA that `ensure_pki`
makes can sign for nothing but the lab: no intermediate CA (path length 0) and
name constraints permitting only the lab's domain and its private /24. Its
key is needed on the host alone, where certificates are signed; a machine
needs only `PkiFiles.machine_files`. The as-written edition makes its own CA
with the tutorial's openssl commands on the machine; nothing here touches it.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.types import (
    CertificateIssuerPrivateKeyTypes,
    CertificatePublicKeyTypes,
)
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from cryptography.x509.verification import (
    DNSName,
    IPAddress,
    PolicyBuilder,
    Store,
    VerificationError,
)

from lab.common.errors import LabError
from lab.common.files import atomic_write, private_dir, write_private

CA_CERT_NAME = "devdockerCA.crt"
CA_KEY_NAME = "devdockerCA.key"
SERVER_CERT_NAME = "domain.crt"
SERVER_KEY_NAME = "domain.key"

LEGACY_CN_PROBLEM = (
    "certificate has no subjectAltName; it relies on the legacy Common Name field, "
    "which Docker rejects "
    "(x509: certificate relies on legacy Common Name field, use SANs instead)"
)

# Renew before Docker clients start failing mid-lab.
RENEW_MARGIN = timedelta(days=30)
# Tolerate small clock skew between the host that signs and the machines that verify.
BACKDATE = timedelta(minutes=5)
RSA_BITS = 2048
MIN_HASH_BITS = 256

_PEM_CERT_RE = re.compile(
    r"-----BEGIN CERTIFICATE-----(.*?)-----END CERTIFICATE-----", re.DOTALL
)

IPAddressType = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetworkType = ipaddress.IPv4Network | ipaddress.IPv6Network
# The lab's machines share one private network; the CA may sign for addresses in it alone.
LAB_PREFIX = {4: 24, 6: 64}


@dataclass(frozen=True)
class PkiFiles:
    """Where the tutorial-named PKI files live, so callers never spell the names."""

    directory: Path

    @property
    def ca_cert(self) -> Path:
        return self.directory / CA_CERT_NAME

    @property
    def ca_key(self) -> Path:
        return self.directory / CA_KEY_NAME

    @property
    def cert(self) -> Path:
        return self.directory / SERVER_CERT_NAME

    @property
    def key(self) -> Path:
        return self.directory / SERVER_KEY_NAME

    @property
    def machine_files(self) -> tuple[Path, ...]:
        """What a machine needs: the CA certificate to trust, nginx's certificate and key.

        Not the CA key: it signs on the host and never has to leave it.
        """
        return (self.ca_cert, self.cert, self.key)


@dataclass(frozen=True)
class CertFacts:
    """The parts of a certificate that explain Docker's TLS verdicts."""

    subject_cn: str | None
    issuer_cn: str | None
    dns_names: tuple[str, ...]
    ip_addresses: tuple[str, ...]
    not_after: datetime
    signature_hash: str | None


def lab_name_constraints(domain: str, ips: Iterable[str]) -> x509.NameConstraints:
    """What the lab CA may sign for: `domain` (and names under it) and the /24 of each IP.

    A name type with no permitted entry would be unconstrained (RFC 5280), so
    a lab without a DNS domain excludes every DNS name, and one without an IP
    address every address.
    """
    domain_ip = _as_ip(domain)
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


def make_ca(
    common_name: str = "reglab development CA",
    days: int = 3650,
    *,
    constraints: x509.NameConstraints | None = None,
    now: datetime | None = None,
) -> tuple[bytes, bytes]:
    """Make a self-signed CA as (key PEM, cert PEM); `now` pins the clock.

    It can sign leaf certificates only (path length 0); with `constraints`
    (see `lab_name_constraints`), only for the names they permit.
    """
    _require_positive_days(days)
    start = _aware(now) - BACKDATE
    key = rsa.generate_private_key(public_exponent=65537, key_size=RSA_BITS)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + BACKDATE + timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(ski, critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski),
            critical=False,
        )
    )
    if constraints is not None:
        # RFC 5280 wants name constraints critical, so a verifier that cannot apply them refuses the CA.
        builder = builder.add_extension(constraints, critical=True)
    cert = builder.sign(key, hashes.SHA256())
    return _key_pem(key), cert.public_bytes(serialization.Encoding.PEM)


def make_server_cert(
    ca_key_pem: bytes,
    ca_cert_pem: bytes,
    domain: str,
    ips: Sequence[str] = (),
    days: int = 825,
    san: bool = True,
    *,
    now: datetime | None = None,
) -> tuple[bytes, bytes]:
    """Make nginx's key and cert, signed by the lab CA, as (key PEM, cert PEM).

    san=False reproduces the tutorial's CN-only cert, which modern Docker rejects.
    A `domain` that is an IP literal goes into the SAN as an IP address, since
    clients never match IPs against DNS names.
    """
    _require_positive_days(days)
    ca_key = _load_issuer_key(ca_key_pem)
    ca_cert = x509.load_pem_x509_certificate(ca_cert_pem)
    if _public_der(ca_key.public_key()) != _public_der(ca_cert.public_key()):
        raise ValueError("CA key does not belong to the CA certificate")
    start = _aware(now) - BACKDATE
    key = rsa.generate_private_key(public_exponent=65537, key_size=RSA_BITS)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, domain)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + BACKDATE + timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=True,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False
        )
        .add_extension(_authority_key_id(ca_cert), critical=False)
    )
    if san:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(_san_entries(domain, ips)), critical=False
        )
    cert = builder.sign(ca_key, hashes.SHA256())
    return _key_pem(key), cert.public_bytes(serialization.Encoding.PEM)


def ensure_pki(directory: Path, domain: str, ips: Sequence[str]) -> PkiFiles:
    """Create the lab's CA and server files once, regenerating only what no longer fits.

    The CA is kept while valid and constrained to this lab's names, so Docker
    clients that already trust it keep working; a new domain or network means
    a new CA. The server cert is remade when it expires within 30 days, misses
    `domain` or an IP, or no longer verifies against the CA. A file that cannot
    be used (not PEM, truncated, a certificate that does not match its key) is
    a LabError naming it, never overwritten.
    """
    for ip in ips:
        ipaddress.ip_address(ip)
    files = PkiFiles(directory)
    private_dir(directory)
    now = datetime.now(UTC)
    constraints = lab_name_constraints(domain, ips)

    if _ca_reusable(files, constraints, now):
        ca_key_pem, ca_cert_pem = files.ca_key.read_bytes(), files.ca_cert.read_bytes()
    else:
        ca_key_pem, ca_cert_pem = make_ca(constraints=constraints)
        write_private(files.ca_key, ca_key_pem)
        atomic_write(files.ca_cert, ca_cert_pem, 0o644)

    if not _server_reusable(files, ca_cert_pem, domain, ips, now):
        key_pem, cert_pem = make_server_cert(ca_key_pem, ca_cert_pem, domain, ips)
        write_private(files.key, key_pem)
        atomic_write(files.cert, cert_pem, 0o644)

    for path, mode in (
        (files.ca_key, 0o600),
        (files.key, 0o600),
        (files.ca_cert, 0o644),
        (files.cert, 0o644),
    ):
        path.chmod(mode)
    return files


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
    dns_names, ip_addresses = _san_values(cert)
    algorithm = cert.signature_hash_algorithm
    return CertFacts(
        subject_cn=_common_name(cert.subject),
        issuer_cn=_common_name(cert.issuer),
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
    at = _aware(now)
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
    issuer = _describe_name(current.issuer)
    if current.issuer == ca.subject:
        problem = (
            f"certificate is not signed by the lab CA: its issuer ({issuer}) has "
            "the lab CA's name but the signature does not verify with the lab CA's key "
            "(a different or regenerated CA)"
        )
        return [problem]
    lab_ca = _describe_name(ca.subject)
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
    if _san_matches(san, hostname):
        return []
    held = ", ".join(_describe_san(san)) or "nothing"
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
    ip = _as_ip(hostname)
    return DNSName(hostname) if ip is None else IPAddress(ip)


def _ca_reusable(files: PkiFiles, names: x509.NameConstraints, now: datetime) -> bool:
    """The CA on disk, if it is whole, valid, and limited to exactly this lab's names."""
    if not (files.ca_cert.exists() and files.ca_key.exists()):
        return False
    cert = _read_cert(files.ca_cert)
    _read_matching_key(files.ca_key, cert, files.ca_cert)
    try:
        basic = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
        constrained = cert.extensions.get_extension_for_class(x509.NameConstraints)
    except x509.ExtensionNotFound:
        return False  # made before the CA was limited to the lab: replace it
    return (
        basic.ca
        and basic.path_length == 0
        and constrained.critical
        and constrained.value == names
        and _valid_with_margin(cert, now)
    )


def _server_reusable(
    files: PkiFiles, ca_cert_pem: bytes, domain: str, ips: Sequence[str], now: datetime
) -> bool:
    if not (files.cert.exists() and files.key.exists()):
        return False
    cert = _read_cert(files.cert)
    _read_matching_key(files.key, cert, files.cert)
    if not _valid_with_margin(cert, now):
        return False
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return False
    if not all(_san_matches(san, name) for name in (domain, *ips)):
        return False
    return not verify_chain([files.cert.read_bytes()], ca_cert_pem, domain, now)


def _valid_with_margin(cert: x509.Certificate, now: datetime) -> bool:
    return (
        cert.not_valid_before_utc <= now
        and cert.not_valid_after_utc - now > RENEW_MARGIN
    )


def _unusable(path: Path, problem: str) -> LabError:
    return LabError(f"{path}: {problem}; remove {path.parent} to make the lab's CA and certificates again")


def _read_cert(path: Path) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(path.read_bytes())
    except OSError as error:
        raise _unusable(path, f"cannot be read ({error.strerror})") from None
    except ValueError:
        raise _unusable(path, "is not a PEM certificate (empty, cut short or damaged)") from None


def _read_matching_key(path: Path, cert: x509.Certificate, cert_path: Path) -> None:
    """Read the key that goes with `cert`, so a truncated or swapped key is found now, not mid-lab."""
    try:
        key = _load_issuer_key(path.read_bytes())
    except OSError as error:
        raise _unusable(path, f"cannot be read ({error.strerror})") from None
    except TypeError as error:  # encrypted, or a key type that cannot sign
        raise _unusable(path, f"is not a key reglab can sign with ({error})") from None
    except (ValueError, UnsupportedAlgorithm):
        raise _unusable(path, "is not a PEM private key (empty, cut short or damaged)") from None
    if _public_der(key.public_key()) != _public_der(cert.public_key()):
        raise _unusable(path, f"is not the key of {cert_path.name} (the two files do not match)")


def _load_issuer_key(pem: bytes) -> CertificateIssuerPrivateKeyTypes:
    key = serialization.load_pem_private_key(pem, password=None)
    if not isinstance(key, CertificateIssuerPrivateKeyTypes):
        raise TypeError(f"{type(key).__name__} cannot sign certificates")
    return key


def _san_entries(domain: str, ips: Sequence[str]) -> list[x509.GeneralName]:
    entries: list[x509.GeneralName] = []
    domain_ip = _as_ip(domain)
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


def _san_values(cert: x509.Certificate) -> tuple[tuple[str, ...], tuple[str, ...]]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return (), ()
    return (
        tuple(san.get_values_for_type(x509.DNSName)),
        tuple(str(ip) for ip in san.get_values_for_type(x509.IPAddress)),
    )


def _san_matches(san: x509.SubjectAlternativeName, hostname: str) -> bool:
    """Match like Go's crypto/x509: IPs only against IP SANs, names against DNS SANs."""
    ip = _as_ip(hostname)
    if ip is not None:
        return ip in san.get_values_for_type(x509.IPAddress)
    return any(
        _dns_matches(pattern, hostname)
        for pattern in san.get_values_for_type(x509.DNSName)
    )


def _dns_matches(pattern: str, hostname: str) -> bool:
    """Exact match, or a leading `*.` wildcard standing for exactly one label."""
    pattern, hostname = pattern.lower().rstrip("."), hostname.lower().rstrip(".")
    if pattern.startswith("*."):
        label, _, rest = hostname.partition(".")
        return bool(label) and rest == pattern[2:]
    return pattern == hostname


def _describe_san(san: x509.SubjectAlternativeName) -> list[str]:
    return [f"DNS:{name}" for name in san.get_values_for_type(x509.DNSName)] + [
        f"IP:{ip}" for ip in san.get_values_for_type(x509.IPAddress)
    ]


def _describe_name(name: x509.Name) -> str:
    return name.rfc4514_string() or "an empty name"


def _common_name(name: x509.Name) -> str | None:
    attributes = name.get_attributes_for_oid(NameOID.COMMON_NAME)
    if not attributes:
        return None
    value = attributes[0].value
    return value if isinstance(value, str) else value.decode("utf-8")


def _authority_key_id(ca_cert: x509.Certificate) -> x509.AuthorityKeyIdentifier:
    try:
        ski = ca_cert.extensions.get_extension_for_class(
            x509.SubjectKeyIdentifier
        ).value
    except x509.ExtensionNotFound:
        return x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_cert.public_key())
    return x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)


def _as_ip(text: str) -> IPAddressType | None:
    """Classify a host string; None means it is a DNS name."""
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _public_der(public_key: CertificatePublicKeyTypes) -> bytes:
    return public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _key_pem(key: rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _aware(now: datetime | None) -> datetime:
    """Default to now in UTC; refuse naive datetimes, whose zone would be a guess."""
    if now is None:
        return datetime.now(UTC)
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    return now


def _require_positive_days(days: int) -> None:
    if days <= 0:
        raise ValueError(
            f"days must be positive, got {days}; "
            "pass now= in the past for an expired cert"
        )
