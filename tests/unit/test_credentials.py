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
from lab.errors import ConfigError, LabError

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


def _stored(tmp_path: Path, content: str | bytes) -> tuple[Lab, Path]:
    lab = make_lab(tmp_path)
    path = secrets_path(lab)
    path.parent.mkdir()
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    return lab, path


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("student: 12345678.90\n", ["expected a string", "a number", "quotes"]),
        ("student: 0123456701\n", ["expected a string", "a number"]),
        ("student: 2024-01-31\n", ["expected a string", "a date"]),
        ('student: "long-enough\\r"\n', ["control characters", "'\\r'"]),
        ('student: "long\\tenough"\n', ["control characters"]),
        ("student: short\n", ["8 or more characters"]),
        ("student: 'pass:word-long'\n", ["without ':'"]),
        ("student: " + "a" * 256 + "\n", ["at most 255 bytes"]),
        ("student: ''\n", ["8 or more characters"]),
    ],
    ids=["float", "octal", "date", "cr", "tab", "short", "colon", "256-bytes", "empty"],
)
def test_bad_stored_password_is_a_config_error_naming_file_and_user(
    tmp_path: Path, text: str, words: list[str]
) -> None:
    """A stored password goes into htpasswd and `docker login` too, so it obeys the lab file's rules."""
    lab, path = _stored(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        resolve_passwords(lab)
    message = str(info.value)
    assert message.startswith(f"{path}: student: expected "), message
    assert ".lab/secrets.yml" in message
    for word in words:
        assert word in message, f"{word!r} not in {message!r}"
    assert path.read_text() == text  # nothing rewritten


@pytest.mark.parametrize(
    ("content", "words"),
    [
        ("just a string\n", "expected a mapping"),
        ("student: one-password\nstudent: another-one\n", "'student' again at line 2"),
        ("student: caf\u00e9-password\n".encode("latin-1"), "expected UTF-8 text"),
        (b"student: \x00\n", "not valid YAML"),
    ],
    ids=["scalar", "duplicate-user", "latin-1", "nul-byte"],
)
def test_corrupt_secrets_file_is_one_config_error(tmp_path: Path, content: str | bytes, words: str) -> None:
    lab, path = _stored(tmp_path, content)
    with pytest.raises(ConfigError) as info:
        resolve_passwords(lab)
    assert str(info.value).startswith(f"{path}: ")
    assert words in str(info.value)


def test_stored_password_for_another_user_is_left_alone(tmp_path: Path) -> None:
    """Only the passwords the lab uses are checked; an old user's entry is kept as it was."""
    lab, path = _stored(tmp_path, "old-user: 12345\nstudent: kept-from-before\n")
    assert resolve_passwords(lab).users[0].password == "kept-from-before"


def test_planted_link_at_a_temporary_name_is_never_followed(tmp_path: Path) -> None:
    """A fixed `secrets.yml.tmp` name let a planted link redirect the new secret elsewhere."""
    lab = make_lab(tmp_path)
    path = secrets_path(lab)
    path.parent.mkdir()
    victim = tmp_path / "victim"
    victim.write_text("untouched\n")
    (path.parent / "secrets.yml.tmp").symlink_to(victim)
    password = resolve_passwords(lab).users[0].password
    assert victim.read_text() == "untouched\n"
    assert not path.is_symlink() and _mode(path) == 0o600
    assert yaml.safe_load(path.read_text()) == {"student": password}


def test_link_at_secrets_yml_is_refused_not_followed(tmp_path: Path) -> None:
    lab = make_lab(tmp_path)
    path = secrets_path(lab)
    path.parent.mkdir()
    elsewhere = tmp_path / "elsewhere.yml"
    elsewhere.write_text("student: chosen-by-someone-else\n")
    os.chmod(elsewhere, 0o644)
    path.symlink_to(elsewhere)
    with pytest.raises(ConfigError, match="found a link"):
        resolve_passwords(lab)
    assert _mode(elsewhere) == 0o644  # not chmod-ed through the link either


def test_secrets_in_a_folder_others_can_write_are_refused(tmp_path: Path) -> None:
    """Anyone who can write to .lab could plant the passwords the lab then uses."""
    lab, path = _stored(tmp_path, "student: kept-from-before\n")
    os.chmod(path.parent, 0o777)
    with pytest.raises(LabError, match="others can write"):
        resolve_passwords(lab)


def test_secrets_file_is_not_read_when_every_password_is_given(tmp_path: Path) -> None:
    lab = make_lab(tmp_path, "users:\n  - name: ann\n    password: given-in-file\n")
    secrets_path(lab).parent.mkdir()
    secrets_path(lab).write_text("[broken\n")
    assert resolve_passwords(lab).users[0].password == "given-in-file"


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
