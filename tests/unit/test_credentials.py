"""Unit tests for lab.credentials: generated passwords, secrets.yml, redaction, private files."""

from __future__ import annotations

import base64
import json
import multiprocessing
import os
import stat
import time
import urllib.parse
from pathlib import Path

import bcrypt
import pytest
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from lab.common.clip import tail
from lab.common.errors import ConfigError, LabError
from lab.model.credentials import KEY_MASK, MASK, Redactor, generate_password, resolve_passwords, write_private
from lab.model.lab import Lab, User
from lab.model.labfile import load

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
    path = tmp_path / ".lab" / "reglab" / "secrets.yml"
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
    path.parent.mkdir(parents=True)
    path.write_text("student: kept-from-before\n")
    os.chmod(path, 0o644)
    resolved = resolve_passwords(lab)
    assert resolved.users[0].password == "kept-from-before"
    assert _mode(path) == 0o600


@pytest.mark.parametrize(
    ("text", "words"),
    [("student: [unclosed\n", "invalid YAML"), ("- a\n- b\n", "expected a mapping")],
    ids=["bad-yaml", "not-a-mapping"],
)
def test_broken_secrets_file_is_a_config_error(tmp_path: Path, text: str, words: str) -> None:
    lab = make_lab(tmp_path)
    path = secrets_path(lab)
    path.parent.mkdir(parents=True)
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        resolve_passwords(lab)
    assert str(path) in str(info.value)
    assert words in str(info.value)


def _stored(tmp_path: Path, content: str | bytes) -> tuple[Lab, Path]:
    lab = make_lab(tmp_path)
    path = secrets_path(lab)
    path.parent.mkdir(parents=True)
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
    assert ".lab/reglab/secrets.yml" in message
    for word in words:
        assert word in message, f"{word!r} not in {message!r}"
    assert path.read_text() == text  # nothing rewritten


@pytest.mark.parametrize(
    ("content", "words"),
    [
        ("just a string\n", "expected a mapping"),
        ("student: one-password\nstudent: another-one\n", "'student' again at line 2"),
        ("student: caf\u00e9-password\n".encode("latin-1"), "expected UTF-8 text"),
        (b"student: \x00\n", "invalid YAML"),
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
    path.parent.mkdir(parents=True)
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
    path.parent.mkdir(parents=True)
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
    secrets_path(lab).parent.mkdir(parents=True)
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


# --- Redactor: keys cut in pieces --------------------------------------------


@pytest.fixture(scope="module")
def real_key() -> str:
    """A real 2048-bit key in PKCS#8 PEM: 28 lines, 26 of them base64 body."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def _body(pem: str) -> list[str]:
    return [line for line in pem.splitlines() if line and not line.startswith("-----")]


def _leaked(pem: str, text: str) -> list[str]:
    return [line for line in _body(pem) if line in text]


def test_key_tail_clipped_before_redaction_leaves_no_key_line(real_key: str) -> None:
    """The incident: output clipped to its tail first kept the END line and body lines no pattern knew."""
    clipped = tail(f"$ cat domain.key\n{real_key}\nexit 0", 20)
    assert "BEGIN" not in clipped and len(_leaked(real_key, clipped)) >= 17  # the shape that leaked
    out = Redactor().redact(clipped)
    assert _leaked(real_key, out) == []
    assert KEY_MASK in out
    assert out.startswith("... (") and out.endswith("\nexit 0")


def test_key_cut_before_its_end_is_masked_to_the_end_of_the_text(real_key: str) -> None:
    head = "\n".join(real_key.splitlines()[:12])
    out = Redactor().redact(f"$ head -12 domain.key\n{head}")
    assert out == f"$ head -12 domain.key\n{KEY_MASK}"


def test_orphan_end_line_masks_only_base64_lines_above_it(real_key: str) -> None:
    lines = real_key.splitlines()
    text = "\n".join(["step 3 of 4", "", *lines[-4:], "after the key"])
    out = Redactor().redact(text)
    assert out == f"step 3 of 4\n\n{KEY_MASK}\nafter the key"


def test_registered_key_lines_are_masked_wherever_they_appear(real_key: str) -> None:
    """A key's middle printed alone (no BEGIN, no END), or its body as one line, still leaks nothing."""
    redactor = Redactor()
    redactor.add_private_key(real_key.encode())
    middle = "\n".join(_body(real_key)[5:9])
    one_line = "".join(_body(real_key))
    out = redactor.redact(f"debug: {middle}\nb64: {one_line}\n")
    assert _leaked(real_key, out) == []
    assert out.startswith(f"debug: {MASK}\n")
    assert Redactor().redact(middle) == middle  # unregistered, these lines are just text


def test_add_private_key_takes_text_too(real_key: str) -> None:
    redactor = Redactor()
    redactor.add_private_key(real_key)
    assert redactor.redact(_body(real_key)[3]) == MASK


# --- Redactor: htpasswd hashes, config.json, encoded passwords ---------------

APR1 = "$apr1$r31.....$HqJZimcKQFAMYayBlzkrA/"
SHA1 = "{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g="
SHA256_CRYPT = "$5$rounds=5000$usesomesillystri$KqJWpanXZHKq2BOB43TSaYhEWsQ1Lr5QNyPCDH/Tp.6"
SHA512_CRYPT = (
    "$6$rounds=5000$usesomesillystri$D4IrlXatmP7rx3P3InaxBeoomnAihCKRVQP22JZ6EY47Wc6BkroIuUUBOov1i.S5KPgErtP/EN5"
    "mcO.ChWQW21"
)
DES = "rqXexS6ZhobKA"
BCRYPT = {prefix: bcrypt.hashpw(b"pw", bcrypt.gensalt(4, prefix=prefix.encode())).decode() for prefix in ("2a", "2b")}
BCRYPT["2y"] = BCRYPT["2b"].replace("$2b$", "$2y$", 1)


@pytest.mark.parametrize(
    "hashed",
    [APR1, SHA1, SHA256_CRYPT, SHA512_CRYPT, DES, *BCRYPT.values()],
    ids=["apr1", "sha1", "sha256-crypt", "sha512-crypt", "des", *(f"bcrypt-{p}" for p in BCRYPT)],
)
def test_htpasswd_hashes_are_masked(hashed: str) -> None:
    """`cat htpasswd` in a log: user names stay (they are evidence), hashes go, whoever the user is."""
    text = f"$ cat /srv/registry/auth/htpasswd\nstudent:{hashed}\nother:{hashed}\n"
    assert Redactor().redact(text) == f"$ cat /srv/registry/auth/htpasswd\nstudent:{MASK}\nother:{MASK}\n"


def test_htpasswd_hash_in_a_command_line_is_masked() -> None:
    out = Redactor().redact(f"echo 'student:{APR1}' > auth/htpasswd && htpasswd -nbB x y")
    assert APR1 not in out and out == f"echo 'student:{MASK}' > auth/htpasswd && htpasswd -nbB x y"


DOCKER_PUSH = (
    "The push refers to repository [myregistrydomain.com/test-image]\n"
    "5f70bf18a086: Pushed\n"
    "a3ed95caeb02: Layer already exists\n"
    f"latest: digest: sha256:{'3b1c' * 16} size: 527\n"
    f"sha256:{'9f86d081884c7d65' * 4}\n"
    "Status: Downloaded newer image for myregistrydomain.com/test-image:latest\n"
    "mode:authenticated\n"
    "ts:1700000000000\n"
)


def test_docker_push_digests_and_plain_key_values_are_not_masked() -> None:
    """Digests are the evidence the checks show; 13-character words and numbers are not DES hashes."""
    redactor = Redactor.for_users([User("student", "Tr0ub4dor-and-more")])
    assert redactor.redact(DOCKER_PUSH) == DOCKER_PUSH


def test_docker_config_auth_is_masked_whatever_the_user() -> None:
    """A check logs config.json before it knows the password, so the shape alone must mask it."""
    token = base64.b64encode(b"someone-else:unknown-pw").decode()
    config = json.dumps({"auths": {"myregistrydomain.com": {"auth": token}}, "identitytoken": "eyJ.abc-_x"}, indent=1)
    out = Redactor().redact(config + "\n" + json.dumps(config))
    assert token not in out and "eyJ.abc-_x" not in out
    assert f'"auth": "{MASK}"' in out and f'\\"auth\\": \\"{MASK}\\"' in out
    assert "myregistrydomain.com" in out


def test_basic_authorization_header_is_masked_whatever_the_user() -> None:
    token = base64.b64encode(b"x:y-unknown").decode()
    assert Redactor().redact(f"> Authorization: Basic {token}\n") == f"> Authorization: Basic {MASK}\n"


PASSWORD = "p@ss w/rd+Tr0ub4dor"


@pytest.mark.parametrize(
    "form",
    [
        base64.b64encode(PASSWORD.encode()).decode(),
        base64.urlsafe_b64encode(PASSWORD.encode()).decode(),
        urllib.parse.quote(PASSWORD, safe=""),
        urllib.parse.quote_plus(PASSWORD),
    ],
    ids=["base64", "base64url", "url-quote", "url-quote-plus"],
)
def test_encoded_forms_of_a_password_are_masked(form: str) -> None:
    assert Redactor([PASSWORD]).redact(f"seen {form} here") == f"seen {MASK} here"


@pytest.mark.parametrize("prefix", ["", "a", "ab"])
def test_password_inside_a_longer_base64_stream_is_masked(prefix: str) -> None:
    """Inside a stream the password's encoding depends on its offset; each of the three is known."""
    stream = base64.b64encode(f"{prefix}{PASSWORD}-and-more".encode()).decode()
    assert MASK not in Redactor().redact(stream)
    assert MASK in Redactor([PASSWORD]).redact(stream)


# --- Redactor: idempotent and fast ------------------------------------------


def _mixed_text(real_key: str) -> str:
    token = base64.b64encode(b"student:Tr0ub4dor-and-more").decode()
    return "\n".join(
        [
            DOCKER_PUSH,
            f"student:{APR1}",
            f"bob:{DES}",
            f'{{"auths": {{"r": {{"auth": "{token}"}}}}}}',
            "password Tr0ub4dor-and-more, url " + urllib.parse.quote("Tr0ub4dor-and-more"),
            real_key,
            tail(real_key, 5),
            "\n".join(real_key.splitlines()[:6]),
        ]
    )


def test_redact_is_idempotent(real_key: str) -> None:
    redactor = Redactor.for_users([User("student", "Tr0ub4dor-and-more")])
    redactor.add_private_key(real_key)
    once = redactor.redact(_mixed_text(real_key))
    assert redactor.redact(once) == once
    assert "Tr0ub4dor" not in once and APR1 not in once and _leaked(real_key, once) == []


def test_redact_is_fast_on_a_megabyte(real_key: str) -> None:
    """The remote layer redacts every command's whole output: 1 MB must take well under a second."""
    redactor = Redactor.for_users([User("student", "Tr0ub4dor-and-more"), User("bob", generate_password())])
    redactor.add_private_key(real_key)
    texts = {
        "mixed": (_mixed_text(real_key) * 200)[: 1 << 20],
        "one long base64 line": "QUJD" * (1 << 18),
        "base64 lines without END": ("A" * 64 + "\n") * (1 << 14),
        "only END lines": ("-----END PRIVATE KEY-----\n" + "B" * 64 + "\n") * 11000,
        "colons": "a:" * (1 << 19),
    }
    for name, text in texts.items():
        started = time.perf_counter()
        redactor.redact(text)
        assert time.perf_counter() - started < 1.0, name


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


def test_write_private_never_follows_a_link_planted_at_the_temporary_name(tmp_path: Path) -> None:
    """Another user who can guess the temporary name must not get the secret written where they point."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.write_text("untouched")
    path = tmp_path / "secrets.yml"
    (tmp_path / "secrets.yml.tmp").symlink_to(elsewhere)
    write_private(path, "student: s3cret")
    assert elsewhere.read_text() == "untouched"
    assert path.read_text() == "student: s3cret" and not path.is_symlink()
    assert _mode(path) == 0o600


def test_write_private_replaces_a_link_at_the_target_instead_of_following_it(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.write_text("untouched")
    path = tmp_path / "secrets.yml"
    path.symlink_to(elsewhere)
    write_private(path, "student: s3cret")
    assert elsewhere.read_text() == "untouched"
    assert not path.is_symlink() and path.read_text() == "student: s3cret"


def _write_many(path: str, payload: str, rounds: int) -> None:
    for _ in range(rounds):
        write_private(Path(path), payload)


def test_two_processes_writing_at_once_never_corrupt_the_file(tmp_path: Path) -> None:
    """Two reglab commands at once (say `reglab run` and `reglab check`) each write secrets.yml."""
    path = tmp_path / "secrets.yml"
    payloads = ["a: " + "1" * 200_000 + "\n", "b: " + "2" * 100_000 + "\n"]
    context = multiprocessing.get_context("fork")
    writers = [context.Process(target=_write_many, args=(str(path), payload, 100)) for payload in payloads]
    for writer in writers:
        writer.start()
    seen = set()
    while any(writer.is_alive() for writer in writers):
        if path.exists():
            seen.add(path.read_text())
    for writer in writers:
        writer.join()
    assert [writer.exitcode for writer in writers] == [0, 0]
    assert seen | {path.read_text()} <= set(payloads)
    assert [p.name for p in tmp_path.iterdir()] == ["secrets.yml"]


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
    path.parent.mkdir(parents=True)
    path.write_text("student:\n")
    password = resolve_passwords(lab).users[0].password
    assert password not in (None, "", "None")
