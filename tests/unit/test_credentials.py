"""Unit tests for lab.credentials: generated passwords, secrets.yml, redaction, private files."""

from __future__ import annotations

import base64
import os
import stat
from pathlib import Path

import pytest
import yaml

from lab.config import Lab, User, load
from lab.credentials import MASK, Redactor, generate_password, resolve_passwords, write_private
from lab.errors import ConfigError

PEM_KEY = """-----BEGIN PRIVATE KEY-----
MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7VJTUt9Us8cKj
MzEfYyjiWA4R4/M2bS1GB4t7NXp98C3SC6dVMvDuictGeurT8jNbvJZHtCSuYEvu
-----END PRIVATE KEY-----"""

RSA_KEY = """-----BEGIN RSA PRIVATE KEY-----
MIIEowIBAAKCAQEAu1SU1LfVLPHCozMxH2Mo4lgOEePzNm0tRgeLezV6ffAt0gun
-----END RSA PRIVATE KEY-----"""

CERT = """-----BEGIN CERTIFICATE-----
MIIDdzCCAl+gAwIBAgIEAgAAuTANBgkqhkiG9w0BAQUFADBaMQswCQYDVQQGEwJJ
-----END CERTIFICATE-----"""


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def make_lab(tmp_path: Path, users: str = "users:\n  - name: student\n") -> Lab:
    path = tmp_path / "lab.yml"
    path.write_text(users)
    return load(path, environ={})


def secrets_path(lab: Lab) -> Path:
    return lab.state_dir / "secrets.yml"


# --- resolve_passwords --------------------------------------------------------


def test_generates_a_password_once_into_secrets_yml(tmp_path: Path) -> None:
    lab = make_lab(tmp_path)
    assert lab.users[0].password is None

    first = resolve_passwords(lab)
    path = tmp_path / ".lab" / "secrets.yml"
    assert secrets_path(lab) == path
    assert path.is_file()
    assert _mode(path) == 0o600
    password = first.users[0].password
    assert password and len(password) >= 16
    assert yaml.safe_load(path.read_text()) == {"student": password}
    assert not list(path.parent.glob("*.tmp"))  # written atomically, nothing left over

    before = path.stat().st_mtime_ns
    second = resolve_passwords(make_lab(tmp_path))
    assert second.users[0].password == password
    assert path.stat().st_mtime_ns == before  # reused, not rewritten


def test_resolved_lab_keeps_everything_else(tmp_path: Path) -> None:
    lab = make_lab(tmp_path)
    resolved = resolve_passwords(lab)
    assert resolved.users[0].name == "student"
    assert resolved.machines == lab.machines
    assert resolved.source == lab.source
    assert lab.users[0].password is None  # the input Lab is frozen and untouched


def test_password_in_lab_file_is_kept_and_not_stored(tmp_path: Path) -> None:
    lab = make_lab(tmp_path, "users:\n  - name: ann\n    password: given-in-file\n")
    resolved = resolve_passwords(lab)
    assert resolved.users == (User(name="ann", password="given-in-file"),)
    assert not secrets_path(lab).exists()


def test_only_missing_passwords_are_written(tmp_path: Path) -> None:
    lab = make_lab(tmp_path, "users:\n  - name: ann\n    password: given-in-file\n  - name: bob\n")
    resolved = resolve_passwords(lab)
    ann, bob = resolved.users
    assert ann.password == "given-in-file"
    assert bob.password and bob.password != "given-in-file"
    stored = yaml.safe_load(secrets_path(lab).read_text())
    assert stored == {"bob": bob.password}
    assert "given-in-file" not in secrets_path(lab).read_text()


def test_a_new_user_is_added_without_changing_the_others(tmp_path: Path) -> None:
    first = resolve_passwords(make_lab(tmp_path, "users:\n  - name: ann\n"))
    second = resolve_passwords(make_lab(tmp_path, "users:\n  - name: ann\n  - name: bob\n"))
    assert second.users[0].password == first.users[0].password
    stored = yaml.safe_load(secrets_path(second).read_text())
    assert set(stored) == {"ann", "bob"}
    assert _mode(secrets_path(second)) == 0o600


def test_loose_secrets_file_is_tightened(tmp_path: Path) -> None:
    lab = make_lab(tmp_path)
    path = secrets_path(lab)
    path.parent.mkdir()
    path.write_text("student: kept-from-before\n")
    os.chmod(path, 0o644)
    resolved = resolve_passwords(lab)
    assert resolved.users[0].password == "kept-from-before"
    assert _mode(path) == 0o600


@pytest.mark.parametrize(
    ("text", "words"),
    [("student: [unclosed\n", "not valid YAML"), ("- a\n- b\n", "expected a mapping")],
    ids=["bad-yaml", "not-a-mapping"],
)
def test_broken_secrets_file_is_a_config_error(tmp_path: Path, text: str, words: str) -> None:
    lab = make_lab(tmp_path)
    path = secrets_path(lab)
    path.parent.mkdir()
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        resolve_passwords(lab)
    assert str(path) in str(info.value)
    assert words in str(info.value)


def test_generated_passwords_differ_and_are_htpasswd_safe() -> None:
    passwords = {generate_password() for _ in range(50)}
    assert len(passwords) == 50
    for password in passwords:
        assert ":" not in password and "\n" not in password
        assert len(password) >= 16


# --- Redactor ----------------------------------------------------------------


def test_masks_a_password_everywhere() -> None:
    redactor = Redactor(["s3cret-pass"])
    text = "docker login -u student -p s3cret-pass\nagain: s3cret-pass!"
    assert redactor.redact(text) == f"docker login -u student -p {MASK}\nagain: {MASK}!"


def test_for_users_masks_password_and_basic_auth_form() -> None:
    users = [User("student", "Tr0ub4dor-x"), User("nopass", None)]
    redactor = Redactor.for_users(users)
    token = base64.b64encode(b"student:Tr0ub4dor-x").decode()
    config_json = f'{{"auths": {{"myregistrydomain.com": {{"auth": "{token}"}}}}}}'
    out = redactor.redact(config_json + "\nAuthorization: Basic " + token + "\npassword Tr0ub4dor-x")
    assert token not in out
    assert "Tr0ub4dor-x" not in out
    assert out.count(MASK) == 3
    assert "myregistrydomain.com" in out


@pytest.mark.parametrize("block", [PEM_KEY, RSA_KEY, PEM_KEY.replace("PRIVATE", "ENCRYPTED PRIVATE")])
def test_masks_private_key_blocks(block: str) -> None:
    text = f"before\n{block}\n{CERT}\nafter"
    out = Redactor().redact(text)
    assert "PRIVATE KEY REDACTED" in out
    assert "MIIEvQIBADAN" not in out and "MIIEowIBAAKCAQEA" not in out
    assert CERT in out  # certificates are public and stay
    assert out.startswith("before\n") and out.endswith("\nafter")


def test_masks_each_of_several_key_blocks_but_not_text_between() -> None:
    out = Redactor().redact(f"{PEM_KEY}\nkeep me\n{RSA_KEY}")
    assert out.count("PRIVATE KEY REDACTED") == 2
    assert "keep me" in out


@pytest.mark.parametrize("short", ["a", "ab", "abc"])
def test_short_strings_are_not_secrets(short: str) -> None:
    redactor = Redactor([short, ""])
    assert redactor.redact(f"{short} is common: {short}{short}") == f"{short} is common: {short}{short}"


def test_four_characters_are_a_secret() -> None:
    assert Redactor(["abcd"]).redact("xabcdx") == f"x{MASK}x"


def test_longest_secret_wins_when_secrets_overlap() -> None:
    redactor = Redactor(["pass", "password-long"])
    assert redactor.redact("password-long") == MASK


def test_redact_leaves_empty_text_alone() -> None:
    redactor = Redactor(["secret"])
    assert redactor.redact("") == ""
    assert redactor.redact(None) is None  # type: ignore[arg-type]


def test_add_registers_more_secrets() -> None:
    redactor = Redactor()
    assert redactor.redact("later-secret") == "later-secret"
    redactor.add("later-secret", "ab")
    assert redactor.redact("later-secret ab") == f"{MASK} ab"


# --- write_private -----------------------------------------------------------


def test_write_private_creates_owner_only_file(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "dir" / "key.pem"
    write_private(path, "secret text")
    assert path.read_text() == "secret text"
    assert _mode(path) == 0o600
    assert not (path.parent / "key.pem.tmp").exists()


def test_write_private_replaces_a_loose_file(tmp_path: Path) -> None:
    path = tmp_path / "key.pem"
    path.write_text("old")
    os.chmod(path, 0o644)
    write_private(path, "new")
    assert path.read_text() == "new"
    assert _mode(path) == 0o600


def test_write_private_ignores_a_permissive_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        write_private(tmp_path / "k", "x")
    finally:
        os.umask(old)
    assert _mode(tmp_path / "k") == 0o600


def test_null_password_in_secrets_file_is_regenerated(tmp_path: Path) -> None:
    lab = make_lab(tmp_path)
    path = secrets_path(lab)
    path.parent.mkdir()
    path.write_text("student:\n")
    password = resolve_passwords(lab).users[0].password
    assert password not in (None, "", "None")
