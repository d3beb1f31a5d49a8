"""The lab's CA and server certificate, made on the host with `cryptography`.

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
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.types import (
    CertificateIssuerPrivateKeyTypes,
    CertificatePublicKeyTypes,
)
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from lab.common.errors import LabError
from lab.common.files import atomic_write, private_dir, write_private
from lab.pki.names import aware, lab_name_constraints, san_entries, san_matches
from lab.pki.verify import verify_chain

CA_CERT_NAME = "devdockerCA.crt"


CA_KEY_NAME = "devdockerCA.key"


SERVER_CERT_NAME = "domain.crt"


SERVER_KEY_NAME = "domain.key"


# Renew before Docker clients start failing mid-lab.
RENEW_MARGIN = timedelta(days=30)


# Tolerate small clock skew between the host that signs and the machines that verify.
BACKDATE = timedelta(minutes=5)


RSA_BITS = 2048


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
    start = aware(now) - BACKDATE
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
    start = aware(now) - BACKDATE
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
            x509.SubjectAlternativeName(san_entries(domain, ips)), critical=False
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
    if not all(san_matches(san, name) for name in (domain, *ips)):
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


def _authority_key_id(ca_cert: x509.Certificate) -> x509.AuthorityKeyIdentifier:
    try:
        ski = ca_cert.extensions.get_extension_for_class(
            x509.SubjectKeyIdentifier
        ).value
    except x509.ExtensionNotFound:
        return x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_cert.public_key())
    return x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)


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


def _require_positive_days(days: int) -> None:
    if days <= 0:
        raise ValueError(
            f"days must be positive, got {days}; "
            "pass now= in the past for an expired cert"
        )
