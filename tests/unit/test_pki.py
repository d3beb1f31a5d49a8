"""Unit tests for lab.pki (make, names, verify): making certs, checking served chains, ensure_pki's files."""

from __future__ import annotations

import ipaddress
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.verification import DNSName, PolicyBuilder, Store, VerificationError

from lab.common.errors import LabError
from lab.pki.make import PkiFiles, ensure_pki, make_ca, make_server_cert
from lab.pki.names import lab_name_constraints
from lab.pki.verify import LEGACY_CN_PROBLEM, CertFacts, cert_facts, extract_pem_certs, verify_chain

DOMAIN = "registry.lab"
IP = "192.168.56.10"


@pytest.fixture(scope="module")
def ca() -> tuple[bytes, bytes]:
    return make_ca()


@pytest.fixture(scope="module")
def server(ca: tuple[bytes, bytes]) -> tuple[bytes, bytes]:
    return make_server_cert(*ca, DOMAIN, [IP])


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _resign(
    cert_pem: bytes, ca_key_pem: bytes, algorithm: hashes.HashAlgorithm
) -> bytes:
    """Re-sign a cert unchanged but for the hash, to test the weak-hash check."""
    cert = x509.load_pem_x509_certificate(cert_pem)
    key = serialization.load_pem_private_key(ca_key_pem, password=None)
    builder = x509.CertificateBuilder(
        issuer_name=cert.issuer,
        subject_name=cert.subject,
        public_key=cert.public_key(),
        serial_number=cert.serial_number,
        not_valid_before=cert.not_valid_before_utc,
        not_valid_after=cert.not_valid_after_utc,
        extensions=list(cert.extensions),
    )
    return builder.sign(key, algorithm).public_bytes(serialization.Encoding.PEM)


def test_ca_is_a_self_signed_ca(ca: tuple[bytes, bytes]) -> None:
    key_pem, cert_pem = ca
    assert key_pem.startswith(b"-----BEGIN PRIVATE KEY-----")
    cert = x509.load_pem_x509_certificate(cert_pem)
    assert cert.subject == cert.issuer
    constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert constraints.critical and constraints.value.ca
    usage = cert.extensions.get_extension_for_class(x509.KeyUsage)
    assert usage.critical and usage.value.key_cert_sign and usage.value.crl_sign
    cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
    assert cert.not_valid_before_utc < datetime.now(UTC) - timedelta(minutes=4)


def test_server_cert_verifies_cleanly(
    ca: tuple[bytes, bytes], server: tuple[bytes, bytes]
) -> None:
    assert verify_chain([server[1]], ca[1], DOMAIN) == []
    assert verify_chain([server[1]], ca[1], IP) == []


def test_chain_served_with_the_ca_appended_is_fine(
    ca: tuple[bytes, bytes], server: tuple[bytes, bytes]
) -> None:
    assert verify_chain([server[1], ca[1]], ca[1], DOMAIN) == []


def test_server_cert_extensions(server: tuple[bytes, bytes]) -> None:
    cert = x509.load_pem_x509_certificate(server[1])
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == [DOMAIN]
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == [IP]
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier)
    assert isinstance(cert.signature_hash_algorithm, hashes.SHA256)


def test_ip_domain_goes_into_san_as_ip(ca: tuple[bytes, bytes]) -> None:
    _, cert_pem = make_server_cert(*ca, IP, [IP])
    facts = cert_facts(cert_pem)
    assert facts.dns_names == ()
    assert facts.ip_addresses == (IP,)
    assert verify_chain([cert_pem], ca[1], IP) == []


def test_cn_only_cert_reports_legacy_common_name(ca: tuple[bytes, bytes]) -> None:
    _, cert_pem = make_server_cert(*ca, DOMAIN, san=False)
    assert verify_chain([cert_pem], ca[1], DOMAIN) == [LEGACY_CN_PROBLEM]
    assert (
        "x509: certificate relies on legacy Common Name field, use SANs instead"
        in LEGACY_CN_PROBLEM
    )


def test_without_name_checks_a_cn_only_cert_is_graded_on_its_chain(ca: tuple[bytes, bytes]) -> None:
    """The as-written edition's certificate: fine but for its names, which are not asked about."""
    _, cert_pem = make_server_cert(*ca, DOMAIN, san=False)
    assert verify_chain([cert_pem], ca[1], DOMAIN, check_names=False) == []
    _, other_ca = make_ca("someone else's CA")
    problems = verify_chain([cert_pem], other_ca, DOMAIN, check_names=False)
    assert len(problems) == 1 and "does not chain to the lab CA" in problems[0]


def test_wrong_hostname_names_the_san(
    ca: tuple[bytes, bytes], server: tuple[bytes, bytes]
) -> None:
    problems = verify_chain([server[1]], ca[1], "other.lab")
    assert len(problems) == 1
    assert "other.lab" in problems[0]
    assert f"DNS:{DOMAIN}" in problems[0] and f"IP:{IP}" in problems[0]


def test_ip_hostname_not_in_san(
    ca: tuple[bytes, bytes], server: tuple[bytes, bytes]
) -> None:
    problems = verify_chain([server[1]], ca[1], "192.168.56.11")
    assert len(problems) == 1
    assert "192.168.56.11" in problems[0] and "subjectAltName" in problems[0]


def test_cert_from_another_ca(server: tuple[bytes, bytes]) -> None:
    _, other_ca = make_ca("someone else's CA")
    problems = verify_chain([server[1]], other_ca, DOMAIN)
    assert len(problems) == 1
    assert "does not chain to the lab CA" in problems[0]
    assert "CN=someone else's CA" in problems[0]
    assert "CN=reglab development CA" in problems[0]


def test_cert_from_regenerated_ca_with_same_name(server: tuple[bytes, bytes]) -> None:
    _, regenerated_ca = make_ca()
    problems = verify_chain([server[1]], regenerated_ca, DOMAIN)
    assert len(problems) == 1
    assert "not signed by the lab CA" in problems[0]


def test_expired_cert(ca: tuple[bytes, bytes]) -> None:
    long_ago = datetime.now(UTC) - timedelta(days=400)
    _, cert_pem = make_server_cert(*ca, DOMAIN, days=30, now=long_ago)
    problems = verify_chain([cert_pem], ca[1], DOMAIN)
    assert len(problems) == 1
    assert "expired on" in problems[0]
    assert cert_facts(cert_pem).not_after.date().isoformat() in problems[0]


def test_not_yet_valid(ca: tuple[bytes, bytes], server: tuple[bytes, bytes]) -> None:
    yesterday = datetime.now(UTC) - timedelta(days=1)
    problems = verify_chain([server[1]], ca[1], DOMAIN, now=yesterday)
    assert any(p.startswith("server certificate is not valid until") for p in problems)


def test_negative_days_is_refused(ca: tuple[bytes, bytes]) -> None:
    with pytest.raises(ValueError, match="days must be positive"):
        make_server_cert(*ca, DOMAIN, days=-1)


def test_weak_signature_hash(
    ca: tuple[bytes, bytes], server: tuple[bytes, bytes]
) -> None:
    weak = _resign(server[1], ca[0], hashes.SHA224())
    assert verify_chain([weak], ca[1], DOMAIN) == [
        "server certificate is signed with sha224, weaker than SHA-256"
    ]
    assert (
        verify_chain([_resign(server[1], ca[0], hashes.SHA384())], ca[1], DOMAIN) == []
    )


def test_empty_chain() -> None:
    assert verify_chain([], make_ca()[1], DOMAIN) == ["no certificate was presented"]


def test_naive_now_is_refused(
    ca: tuple[bytes, bytes], server: tuple[bytes, bytes]
) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        verify_chain([server[1]], ca[1], DOMAIN, now=datetime.now())


def test_cert_facts(ca: tuple[bytes, bytes], server: tuple[bytes, bytes]) -> None:
    facts = cert_facts(server[1])
    cert = x509.load_pem_x509_certificate(server[1])
    assert facts == CertFacts(
        subject_cn=DOMAIN,
        issuer_cn="reglab development CA",
        dns_names=(DOMAIN,),
        ip_addresses=(IP,),
        not_after=cert.not_valid_after_utc,
        signature_hash="sha256",
    )
    assert cert_facts(ca[1]).dns_names == ()


def test_extract_pem_certs_from_s_client_transcript(
    ca: tuple[bytes, bytes], server: tuple[bytes, bytes]
) -> None:
    leaf, root = server[1].decode(), ca[1].decode()
    transcript = (
        "CONNECTED(00000003)\n"
        "depth=1 CN = reglab development CA\n"
        "verify return:1\n"
        f"depth=0 CN = {DOMAIN}\n"
        "verify return:1\n"
        "---\n"
        "Certificate chain\n"
        f" 0 s:CN = {DOMAIN}\n"
        "   i:CN = reglab development CA\n"
        "   a:PKEY: rsaEncryption, 2048 (bit); sigalg: RSA-SHA256\n"
        f"{leaf}"
        " 1 s:CN = reglab development CA\n"
        "   i:CN = reglab development CA\n"
        f"{root.replace(chr(10), chr(13) + chr(10))}"
        "---\n"
        "Server certificate\n"
        f"subject=CN = {DOMAIN}\n"
        "issuer=CN = reglab development CA\n"
        "---\n"
        "No client certificate CA names sent\n"
        "SSL handshake has read 2145 bytes and written 393 bytes\n"
        "Verify return code: 0 (ok)\n"
        "DONE\n"
    )
    certs = extract_pem_certs(transcript)
    assert certs == [server[1], ca[1]]
    assert verify_chain(certs, ca[1], DOMAIN) == []


def test_extract_pem_certs_without_certs() -> None:
    assert extract_pem_certs("connect: Connection refused\nconnect:errno=111\n") == []


def test_pki_files_use_tutorial_names(tmp_path: Path) -> None:
    files = PkiFiles(tmp_path)
    assert (files.ca_cert.name, files.ca_key.name, files.cert.name, files.key.name) == (
        "devdockerCA.crt",
        "devdockerCA.key",
        "domain.crt",
        "domain.key",
    )


def test_ensure_pki_modes_and_validity(tmp_path: Path) -> None:
    directory = tmp_path / "pki"
    files = ensure_pki(directory, DOMAIN, [IP])
    assert files == PkiFiles(directory)
    assert _mode(directory) == 0o700
    assert _mode(files.ca_key) == 0o600
    assert _mode(files.key) == 0o600
    assert _mode(files.ca_cert) == 0o644
    assert _mode(files.cert) == 0o644
    assert sorted(p.name for p in directory.iterdir()) == [
        "devdockerCA.crt",
        "devdockerCA.key",
        "domain.crt",
        "domain.key",
    ]
    ca_pem, cert_pem = files.ca_cert.read_bytes(), files.cert.read_bytes()
    assert verify_chain([cert_pem], ca_pem, DOMAIN) == []
    assert verify_chain([cert_pem], ca_pem, IP) == []


def test_ensure_pki_is_idempotent(tmp_path: Path) -> None:
    files = ensure_pki(tmp_path / "pki", DOMAIN, [IP])
    paths = (files.ca_cert, files.ca_key, files.cert, files.key)
    before = [p.read_bytes() for p in paths]
    ensure_pki(tmp_path / "pki", DOMAIN, [IP])
    assert [p.read_bytes() for p in paths] == before


def test_ensure_pki_makes_a_new_ca_and_cert_on_domain_change(tmp_path: Path) -> None:
    """The old CA may sign for the old domain alone, so a new domain needs a new CA."""
    files = ensure_pki(tmp_path / "pki", DOMAIN, [IP])
    ca_before, key_before = files.ca_cert.read_bytes(), files.key.read_bytes()
    ensure_pki(tmp_path / "pki", "registry.example", [IP])
    assert files.ca_cert.read_bytes() != ca_before
    assert files.key.read_bytes() != key_before
    facts = cert_facts(files.cert.read_bytes())
    assert facts.dns_names == ("registry.example",)
    assert verify_chain([files.cert.read_bytes()], files.ca_cert.read_bytes(), "registry.example") == []


def test_ensure_pki_regenerates_on_added_ip(tmp_path: Path) -> None:
    files = ensure_pki(tmp_path / "pki", DOMAIN, [IP])
    ensure_pki(tmp_path / "pki", DOMAIN, [IP, "10.0.0.7"])
    assert cert_facts(files.cert.read_bytes()).ip_addresses == (IP, "10.0.0.7")


def test_ensure_pki_replaces_legacy_cn_cert(tmp_path: Path) -> None:
    files = ensure_pki(tmp_path / "pki", DOMAIN, [])
    key_pem, cert_pem = make_server_cert(
        files.ca_key.read_bytes(), files.ca_cert.read_bytes(), DOMAIN, san=False
    )
    files.key.write_bytes(key_pem)
    files.cert.write_bytes(cert_pem)
    ensure_pki(tmp_path / "pki", DOMAIN, [])
    assert (
        verify_chain([files.cert.read_bytes()], files.ca_cert.read_bytes(), DOMAIN)
        == []
    )


def test_ensure_pki_regenerates_server_cert_when_ca_is_replaced(tmp_path: Path) -> None:
    files = ensure_pki(tmp_path / "pki", DOMAIN, [IP])
    files.ca_key.unlink()
    ensure_pki(tmp_path / "pki", DOMAIN, [IP])
    assert (
        verify_chain([files.cert.read_bytes()], files.ca_cert.read_bytes(), DOMAIN)
        == []
    )


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:300])


def _swap_server_key(files: PkiFiles) -> None:
    files.key.write_bytes(make_ca()[0])


def _swap_ca_key(files: PkiFiles) -> None:
    files.ca_key.write_bytes(make_ca()[0])


@pytest.mark.parametrize(
    ("damage", "name", "words"),
    [
        (lambda f: _truncate(f.ca_key), "devdockerCA.key", "not a PEM private key"),
        (lambda f: _truncate(f.key), "domain.key", "not a PEM private key"),
        (lambda f: f.cert.write_text("not a certificate\n"), "domain.crt", "not a PEM certificate"),
        (lambda f: f.ca_cert.write_bytes(b"\x00garbage"), "devdockerCA.crt", "not a PEM certificate"),
        (lambda f: f.ca_cert.write_bytes(b""), "devdockerCA.crt", "not a PEM certificate"),
        (_swap_server_key, "domain.key", "is not the key of domain.crt"),
        (_swap_ca_key, "devdockerCA.key", "is not the key of devdockerCA.crt"),
    ],
    ids=["truncated-ca-key", "truncated-key", "garbage-cert", "garbage-ca-cert", "empty-ca-cert",
         "key-of-another-cert", "ca-key-of-another-ca"],
)
def test_a_damaged_pki_file_is_a_lab_error_naming_it(tmp_path: Path, damage, name: str, words: str) -> None:  # noqa: ANN001
    """A user can damage .lab/pki; they get one message (exit 2) naming the file, and nothing is overwritten."""
    files = ensure_pki(tmp_path / "pki", DOMAIN, [IP])
    damage(files)
    before = {p.name: p.read_bytes() for p in (tmp_path / "pki").iterdir()}
    with pytest.raises(LabError) as info:
        ensure_pki(tmp_path / "pki", DOMAIN, [IP])
    message = str(info.value)
    assert message.startswith(f"{tmp_path / 'pki' / name}: ")
    assert words in message
    assert f"remove {tmp_path / 'pki'} to make the lab's CA and certificates again" in message
    assert info.value.exit_status == 2
    assert {p.name: p.read_bytes() for p in (tmp_path / "pki").iterdir()} == before


def test_ensure_pki_rejects_bad_ip(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        ensure_pki(tmp_path / "pki", DOMAIN, ["not-an-ip"])


# --- the lab CA signs for the lab alone ----------------------------------------


def test_ensure_pki_ca_is_limited_to_the_lab(tmp_path: Path) -> None:
    """Both machines trust the CA system-wide: no intermediate CAs, only the lab's domain and /24."""
    files = ensure_pki(tmp_path / "pki", DOMAIN, [IP])
    ca = x509.load_pem_x509_certificate(files.ca_cert.read_bytes())
    basic = ca.extensions.get_extension_for_class(x509.BasicConstraints)
    assert basic.critical and basic.value.ca and basic.value.path_length == 0
    names = ca.extensions.get_extension_for_class(x509.NameConstraints)
    assert names.critical
    assert names.value.permitted_subtrees == [
        x509.DNSName(DOMAIN),
        x509.IPAddress(ipaddress.ip_network("192.168.56.0/24")),
    ]
    assert names.value.excluded_subtrees is None


def test_ca_of_an_ip_only_lab_excludes_every_dns_name() -> None:
    """With no DNS entry permitted, DNS names would be unconstrained (RFC 5280); exclude them all."""
    constraints = lab_name_constraints(IP, [])
    assert constraints.permitted_subtrees == [x509.IPAddress(ipaddress.ip_network("192.168.56.0/24"))]
    assert constraints.excluded_subtrees == [x509.DNSName("")]
    ca = make_ca(constraints=constraints)
    assert verify_chain([make_server_cert(*ca, IP, [IP])[1]], ca[1], IP) == []
    _, leaf = make_server_cert(*ca, "evil.example")
    assert any("DNS:evil.example" in p for p in verify_chain([leaf], ca[1], "evil.example", check_names=False))


def test_ca_of_a_lab_without_ips_excludes_every_address() -> None:
    constraints = lab_name_constraints(DOMAIN, [])
    assert constraints.permitted_subtrees == [x509.DNSName(DOMAIN)]
    ca = make_ca(constraints=constraints)
    _, leaf = make_server_cert(*ca, DOMAIN, ["10.9.8.7"])
    assert any("IP:10.9.8.7" in p for p in verify_chain([leaf], ca[1], DOMAIN))


def test_chain_made_by_ensure_pki_still_verifies(tmp_path: Path) -> None:
    files = ensure_pki(tmp_path / "pki", DOMAIN, [IP])
    chain = [files.cert.read_bytes(), files.ca_cert.read_bytes()]
    for host in (DOMAIN, IP):
        assert verify_chain(chain, files.ca_cert.read_bytes(), host) == []


@pytest.fixture(scope="module")
def lab_ca() -> tuple[bytes, bytes]:
    return make_ca(constraints=lab_name_constraints(DOMAIN, [IP]))


@pytest.mark.parametrize(
    ("domain", "ips", "refused"),
    [("evil.example", [], "DNS:evil.example"), (DOMAIN, ["10.1.2.3"], "IP:10.1.2.3")],
    ids=["other-domain", "ip-outside-the-lab"],
)
def test_leaf_outside_the_name_constraints_is_refused(
    lab_ca: tuple[bytes, bytes], domain: str, ips: list[str], refused: str
) -> None:
    """Even signed by the lab CA's key, a certificate for another name must not verify anywhere."""
    _, leaf = make_server_cert(*lab_ca, domain, ips)
    for check_names in (True, False):
        problems = verify_chain([leaf], lab_ca[1], domain, check_names=check_names)
        assert len(problems) == 1
        assert f"certificate names {refused}, which the lab CA's name constraints do not permit" in problems[0]
        assert f"DNS:{DOMAIN}, IP:192.168.56.0/24" in problems[0]


def _library_verdict(ca_pem: bytes, leaf_pem: bytes, hostname: str) -> str:
    verifier = PolicyBuilder().store(Store([x509.load_pem_x509_certificate(ca_pem)])).build_server_verifier(
        DNSName(hostname)
    )
    try:
        verifier.verify(x509.load_pem_x509_certificate(leaf_pem), [])
    except VerificationError as error:
        return str(error)
    return "ok"


def test_cryptography_verifier_enforces_the_constraints_too(lab_ca: tuple[bytes, bytes]) -> None:
    """What the library does on its own (it enforces them), so verify_chain's own check is not the only one."""
    assert "name constraints" in _library_verdict(lab_ca[1], make_server_cert(*lab_ca, "evil.example")[1],
                                                  "evil.example")
    assert _library_verdict(lab_ca[1], make_server_cert(*lab_ca, f"sub.{DOMAIN}", [IP])[1], f"sub.{DOMAIN}") == "ok"


def test_an_unconstrained_ca_from_before_is_replaced(tmp_path: Path) -> None:
    """A lab made before this fix has a CA that could sign for any name: it is remade, with its cert."""
    directory = tmp_path / "pki"
    files = PkiFiles(directory)
    directory.mkdir(mode=0o700)
    old_key, old_ca = make_ca()
    files.ca_key.write_bytes(old_key)
    files.ca_cert.write_bytes(old_ca)
    ensure_pki(directory, DOMAIN, [IP])
    assert files.ca_cert.read_bytes() != old_ca
    new_ca = x509.load_pem_x509_certificate(files.ca_cert.read_bytes())
    new_ca.extensions.get_extension_for_class(x509.NameConstraints)
    assert verify_chain([files.cert.read_bytes()], files.ca_cert.read_bytes(), DOMAIN) == []


def test_keys_are_never_readable_by_others_even_while_written(tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001
    """Keys go through lab.files.write_private: created 0600, not chmod-ed afterwards."""
    import lab.pki.make

    written: dict[str, int] = {}

    def spy(path: Path, data: bytes | str, mode: int = 0o644) -> Path:
        written[Path(path).name] = mode
        return real(path, data, mode)

    real = lab.pki.make.atomic_write
    monkeypatch.setattr(lab.pki.make, "atomic_write", spy)
    monkeypatch.setattr(lab.pki.make, "write_private", lambda path, data: spy(path, data, 0o600))
    ensure_pki(tmp_path / "pki", DOMAIN, [IP])
    assert written == {"devdockerCA.key": 0o600, "devdockerCA.crt": 0o644, "domain.key": 0o600, "domain.crt": 0o644}


def test_a_machine_needs_no_ca_key(tmp_path: Path) -> None:
    """The CA key signs on the host; what a machine gets is the CA cert and nginx's pair."""
    files = PkiFiles(tmp_path)
    assert files.machine_files == (files.ca_cert, files.cert, files.key)
    assert files.ca_key not in files.machine_files
