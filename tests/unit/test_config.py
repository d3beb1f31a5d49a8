"""Unit tests for lab.config: the shipped lab file, defaults, layering, and one clear error per bad input."""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path

import pytest

from lab.common.errors import ConfigError, ExitStatus, LabError
from lab.model.lab import Lab, User
from lab.model.labfile import DEFAULTS, load

PROJECT = Path(__file__).resolve().parents[2]
SHIPPED = PROJECT / "lab.yml"

MACHINES_OK = "machines:\n  registry: {ip: 192.168.33.10}\n  client: {ip: 192.168.33.11}\n"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "lab.yml"
    path.write_text(text)
    return path


def load_text(tmp_path: Path, text: str, **kwargs) -> Lab:
    kwargs.setdefault("environ", {})
    return load(write(tmp_path, text), **kwargs)


# --- the shipped lab file and the defaults ----------------------------------


def test_shipped_lab_file_has_the_tutorials_values() -> None:
    lab = load(SHIPPED, environ={})
    assert lab.source == SHIPPED
    assert lab.root == PROJECT
    assert lab.state_dir == PROJECT / ".lab" / "reglab"
    assert lab.name == "reglab"
    assert lab.provider == "docker"
    assert lab.edition == "modern"
    assert lab.os == "debian"
    assert lab.domain == "myregistrydomain.com"
    assert lab.machine("registry").ip == "192.168.33.10"
    assert lab.machine("client").ip == "192.168.33.11"
    assert [m.name for m in lab.machines] == ["registry", "client"]
    assert (lab.ports.registry, lab.ports.proxy, lab.ports.https) == (5000, 5043, 443)
    assert lab.network == ipaddress.ip_network("192.168.33.0/24")
    assert [u.name for u in lab.users] == ["student"]
    assert lab.users[0].password is None  # generated later, never in the lab file
    assert lab.images.source == "auto"
    assert lab.images.registry == "registry:2"
    assert lab.images.proxy == "nginx:1.27"
    assert lab.boxes["debian"].build and lab.boxes["debian"].name == "reglab/debian13"
    assert lab.boxes["rhel"].name == "generic/rocky9"
    assert lab.timeouts.command > 0 and lab.timeouts.boot > 0


@pytest.mark.parametrize("text", ["", "\n", "# only a comment\n", "---\n"])
def test_empty_file_gives_the_defaults(tmp_path: Path, text: str) -> None:
    lab = load_text(tmp_path, text)
    assert lab.name == DEFAULTS["name"]
    assert lab.provider == "docker"
    assert lab.edition == "modern"
    assert lab.os == "debian"
    assert lab.domain == "myregistrydomain.com"
    assert (lab.machine("registry").ip, lab.machine("client").ip) == ("192.168.33.10", "192.168.33.11")
    assert (lab.ports.registry, lab.ports.proxy, lab.ports.https) == (5000, 5043, 443)
    assert lab.users == (User(name="student", password=None),)
    assert lab.images.source == "auto"
    assert lab.images.base == "debian:bookworm"
    assert lab.boxes["debian"].build and lab.boxes["debian"].name == "reglab/debian13"
    assert lab.boxes["rhel"].version == "4.3.12"
    assert (lab.timeouts.command, lab.timeouts.boot) == (300, 300)


def test_defaults_are_not_mutated_by_a_load(tmp_path: Path) -> None:
    load_text(tmp_path, "ports:\n  proxy: 6000\nimages:\n  source: build\n")
    lab = load_text(tmp_path, "")
    assert lab.ports.proxy == 5043
    assert lab.images.source == "auto"


def test_file_values_merge_into_nested_defaults(tmp_path: Path) -> None:
    lab = load_text(tmp_path, "ports:\n  proxy: 6043\nboxes:\n  rhel:\n    version: 4.3.0\n")
    assert (lab.ports.registry, lab.ports.proxy, lab.ports.https) == (5000, 6043, 443)
    assert lab.boxes["rhel"] == type(lab.boxes["rhel"])(name="generic/rocky9", version="4.3.0")


def test_machines_and_users_are_replaced_whole(tmp_path: Path) -> None:
    lab = load_text(
        tmp_path,
        "machines:\n  registry: {ip: 10.0.5.2}\n  client: {ip: 10.0.5.3}\n"
        "users:\n  - name: alice\n    password: wonderland\n",
    )
    assert [(m.name, m.ip) for m in lab.machines] == [("registry", "10.0.5.2"), ("client", "10.0.5.3")]
    assert lab.users == (User(name="alice", password="wonderland"),)
    assert lab.network == ipaddress.ip_network("10.0.5.0/24")


def test_lab_machine_lookup(tmp_path: Path) -> None:
    lab = load_text(tmp_path, "")
    assert lab.machine("client").ip == "192.168.33.11"
    with pytest.raises(KeyError):
        lab.machine("mirror")


# --- layering: defaults < file < environment < overrides --------------------

FILE_LAYER = "provider: virtualbox\nedition: as-written\nimages:\n  source: preload\n"


def test_file_overrides_defaults(tmp_path: Path) -> None:
    lab = load_text(tmp_path, FILE_LAYER)
    assert (lab.provider, lab.edition, lab.images.source) == ("virtualbox", "as-written", "preload")


def test_environment_overrides_file(tmp_path: Path) -> None:
    environ = {"REGLAB_PROVIDER": "libvirt", "REGLAB_EDITION": "modern", "REGLAB_IMAGES": "build"}
    lab = load_text(tmp_path, FILE_LAYER, environ=environ)
    assert (lab.provider, lab.edition, lab.images.source) == ("libvirt", "modern", "build")
    # Only the environment's one key changed in images; the rest still come from defaults.
    assert lab.images.proxy == "nginx:1.27"


def test_empty_environment_variables_are_ignored(tmp_path: Path) -> None:
    environ = {"REGLAB_PROVIDER": "", "REGLAB_EDITION": "", "REGLAB_IMAGES": ""}
    lab = load_text(tmp_path, FILE_LAYER, environ=environ)
    assert (lab.provider, lab.edition, lab.images.source) == ("virtualbox", "as-written", "preload")


def test_overrides_beat_environment(tmp_path: Path) -> None:
    environ = {"REGLAB_PROVIDER": "libvirt", "REGLAB_EDITION": "modern", "REGLAB_IMAGES": "build"}
    overrides = {"provider": "docker", "edition": "as-written", "images.source": None}
    lab = load_text(tmp_path, FILE_LAYER, environ=environ, overrides=overrides)
    assert lab.provider == "docker"
    assert lab.edition == "as-written"
    assert lab.images.source == "build"  # a None override leaves the layer below alone


def test_environ_defaults_to_the_process_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REGLAB_PROVIDER", "libvirt")
    monkeypatch.delenv("REGLAB_EDITION", raising=False)
    monkeypatch.delenv("REGLAB_IMAGES", raising=False)
    assert load(write(tmp_path, FILE_LAYER)).provider == "libvirt"
    # An explicit environ replaces os.environ entirely.
    assert load(write(tmp_path, FILE_LAYER), environ={}).provider == "virtualbox"


# --- every bad input: one ConfigError naming file, key path and expectation --

BAD = [
    pytest.param("name: reglab\n  bad: indent\n", "line 2", ["invalid YAML"], id="yaml-syntax"),
    pytest.param("ports:\n  proxy: [1,\n", "line 3", ["invalid YAML"], id="yaml-unclosed"),
    pytest.param("- a\n- b\n", "(top level)", ["expected a mapping", "list"], id="top-level-list"),
    pytest.param("just a string\n", "(top level)", ["expected a mapping", "string"], id="top-level-string"),
    pytest.param("ports:\n  proxy: abc\n", "ports.proxy", ["port number", "1-65535", "'abc'"], id="port-type"),
    pytest.param("ports:\n  https: 70000\n", "ports.https", ["port number", "70000"], id="port-range-high"),
    pytest.param("ports:\n  registry: 0\n", "ports.registry", ["port number", "got 0"], id="port-range-zero"),
    pytest.param("ports:\n  https: true\n", "ports.https", ["port number", "True"], id="port-boolean"),
    pytest.param(
        "machines:\n  registry: {ip: 192.168.33.10}\n  client: {ip: 300.1.1.1}\n",
        "machines.client.ip",
        ["IPv4 address", "300.1.1.1"],
        id="ip-not-an-address",
    ),
    pytest.param(
        "machines:\n  registry: {ip: 192.168.33.10}\n  client: {}\n",
        "machines.client.ip",
        ["IPv4 address", "None"],
        id="ip-missing",
    ),
    pytest.param(
        "machines:\n  registry: {ip: 8.8.8.8}\n  client: {ip: 8.8.8.9}\n",
        "machines.registry.ip",
        ["private", "8.8.8.8"],
        id="ip-public",
    ),
    pytest.param(
        "machines:\n  registry: {ip: 192.168.33.10}\n  client: {ip: 192.168.33.10}\n",
        "machines.client.ip",
        ["192.168.33.10", "already", "registry"],
        id="ip-twice",
    ),
    pytest.param(
        "machines:\n  registry: {ip: 192.168.33.10}\n  client: {ip: 192.168.34.11}\n",
        "machines.client.ip",
        ["192.168.34.11", "not on the private network", "192.168.33.0/24"],
        id="ip-outside-the-24",
    ),
    pytest.param("provider: vmware\n", "provider", ["docker", "virtualbox", "libvirt", "'vmware'"], id="provider"),
    pytest.param("edition: latest\n", "edition", ["modern", "as-written", "'latest'"], id="edition"),
    pytest.param("os: suse\n", "os", ["debian", "rhel", "'suse'"], id="os"),
    pytest.param("images:\n  source: mirror\n", "images.source", ["pull", "preload", "build"], id="image-source"),
    pytest.param("nmae: reglab\n", "nmae", ["unknown key", "name", "provider"], id="unknown-top-level-key"),
    pytest.param("ports:\n  foo: 1\n", "ports.foo", ["unknown key", "registry", "proxy", "https"], id="ports.foo"),
    pytest.param(
        "machines:\n  registry: {ip: 192.168.33.10}\n  client: {ip: 192.168.33.11, memory: 2048}\n",
        "machines.client.memory",
        ["unknown key", "ip"],
        id="machines.client.memory",
    ),
    pytest.param(
        "machines:\n  registry: {ip: 192.168.33.10}\n",
        "machines",
        ["missing machine", "'client'"],
        id="missing-machine",
    ),
    pytest.param(
        MACHINES_OK + "  mirror: {ip: 192.168.33.12}\n",
        "machines.mirror",
        ["unknown machine", "registry", "client"],
        id="unknown-machine",
    ),
    pytest.param("machines:\n", "machines", ["expected a mapping", "nothing"], id="machines-empty"),
    pytest.param("ports: 5000\n", "ports", ["expected a mapping", "number"], id="ports-not-a-mapping"),
    pytest.param("users: {name: student}\n", "users", ["list", "mapping"], id="users-not-a-list"),
    pytest.param("users: []\n", "users", ["non-empty list"], id="users-empty"),
    pytest.param("users:\n  - name: ann\n  - name: ann\n", "users[1].name", ["'ann'", "twice"], id="duplicate-user"),
    pytest.param("users:\n  - name: 'a b'\n", "users[0].name", ["user name", "'a b'"], id="bad-user-name"),
    pytest.param("users:\n  - name: ann\n    role: admin\n", "users[0].role", ["unknown key"], id="user-unknown-key"),
    pytest.param(
        "users:\n  - name: ann\n    password: 'a:b'\n", "users[0].password", ["without ':'"], id="password-colon"
    ),
    pytest.param(
        "images:\n  proxy: 'Nginx:latest'\n",
        "images.proxy",
        ["image reference", "'Nginx:latest'"],
        id="bad-image-ref",
    ),
    pytest.param("images:\n  registry: 'registry:'\n", "images.registry", ["image reference"], id="empty-image-tag"),
    pytest.param("domain: My_Registry\n", "domain", ["DNS name", "'My_Registry'"], id="bad-domain"),
    pytest.param("name: Reglab\n", "name", ["lower-case name", "'Reglab'"], id="bad-name"),
    pytest.param("timeouts:\n  boot: 0\n", "timeouts.boot", ["positive", "got 0"], id="timeout-zero"),
    # Event.wait(10**20) raises OverflowError: bounded here, not deep in a thread
    pytest.param("timeouts:\n  command: 100000000000000000000\n", "timeouts.command", ["at most 86400"],
                 id="timeout-huge"),
    pytest.param("boxes:\n  debian: generic\n", "boxes.debian", ["expected `build` or a mapping", "'generic'"],
                 id="box-string"),
]


@pytest.mark.parametrize(("text", "key_path", "words"), BAD)
def test_bad_lab_file_is_one_config_error(tmp_path: Path, text: str, key_path: str, words: list[str]) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load(path, environ={})
    message = str(info.value)
    assert message.startswith(f"{path}: "), message
    assert key_path in info.value.path
    assert key_path in message
    for word in words:
        assert word in message, f"{word!r} not in {message!r}"
    assert "Traceback" not in message
    assert isinstance(info.value, LabError)
    assert info.value.exit_status == ExitStatus.USAGE


def test_missing_file_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "nowhere" / "lab.yml"
    with pytest.raises(ConfigError) as info:
        load(path, environ={})
    assert str(info.value) == (f"{path}: no such file; `reglab init {path.parent}` writes a commented lab.yml to "
                               "start from")
    assert info.value.source == str(path)


def test_unreadable_path_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load(tmp_path, environ={})  # a directory


@pytest.mark.parametrize(
    ("environ", "key_path", "words"),
    [
        ({"REGLAB_EDITION": "2016"}, "REGLAB_EDITION", ["modern", "as-written", "'2016'"]),
        ({"REGLAB_PROVIDER": "vmware"}, "REGLAB_PROVIDER", ["docker", "'vmware'"]),
        ({"REGLAB_IMAGES": "mirror"}, "REGLAB_IMAGES", ["pull", "preload", "build", "'mirror'"]),
    ],
)
def test_bad_value_from_environment(tmp_path: Path, environ: dict[str, str], key_path: str, words: list[str]) -> None:
    """A bad value from the environment names the variable, not the lab file."""
    path = write(tmp_path, "")
    with pytest.raises(ConfigError) as info:
        load(path, environ=environ)
    message = str(info.value)
    assert message.startswith(f"environment variable {key_path}: ")
    for word in words:
        assert word in message


def test_bad_value_from_overrides(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"provider: expected one of .*'hyperv'"):
        load_text(tmp_path, "", overrides={"provider": "hyperv"})


def test_environment_into_a_non_mapping_section_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="images"):
        load_text(tmp_path, "images: foo\n", environ={"REGLAB_IMAGES": "build"})


# --- users never show their password ----------------------------------------


def test_user_repr_hides_the_password() -> None:
    user = User(name="student", password="hunter2-very-secret")
    assert "hunter2-very-secret" not in repr(user)
    assert "student" in repr(user)
    assert "hunter2-very-secret" not in repr((user,))
    assert "hunter2-very-secret" not in f"{user!r} {[user]}"


def test_lab_repr_hides_passwords(tmp_path: Path) -> None:
    lab = load_text(tmp_path, "users:\n  - name: ann\n    password: pa55word-xyz\n")
    assert lab.users[0].password == "pa55word-xyz"
    assert "pa55word-xyz" not in repr(lab)


@pytest.mark.parametrize(
    ("text", "key_path"),
    [
        ("boxes:\n  debian: {name: generic/debian12, version: null}\n", "boxes.debian"),
        ("boxes:\n  debian: {nmae: generic/debian11}\n", "boxes.debian.nmae"),
        ("boxes:\n  suse: {name: opensuse/leap}\n", "boxes.suse"),
    ],
    ids=["null-version", "unknown-box-key", "unknown-box-family"],
)
def test_bad_boxes_are_config_errors(tmp_path: Path, text: str, key_path: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_text(tmp_path, text)
    assert key_path in str(info.value)


# --- the file itself: duplicate keys, encoding --------------------------------

DUPLICATES = [
    pytest.param("name: reglab\nedition: modern\nname: other\n", "name", ["'name' again at line 3", "line 1"],
                 id="top-level"),
    pytest.param("ports:\n  proxy: 5043\n  registry: 5000\n  proxy: 6043\n", "ports.proxy",
                 ["'proxy' again at line 4", "first at line 2"], id="nested"),
    pytest.param("users:\n  - name: ann\n    password: first-one\n    password: second-one\n",
                 "users[0].password", ["'password' again at line 4", "first at line 3"], id="in-a-list"),
]


@pytest.mark.parametrize(("text", "key_path", "words"), DUPLICATES)
def test_duplicate_key_is_refused_with_its_lines(tmp_path: Path, text: str, key_path: str, words: list[str]) -> None:
    """PyYAML silently keeps the last of two equal keys: the first value would be ignored unseen."""
    test_bad_lab_file_is_one_config_error(tmp_path, text, key_path, [*words, "expected each key once"])


def test_a_merge_key_may_be_overridden(tmp_path: Path) -> None:
    """Overriding what `<<:` brings in is what a merge is for, not a duplicate."""
    text = "boxes:\n  debian:\n    <<: {name: generic/debian12, version: '1.0'}\n    version: '4.3.12'\n"
    assert load_text(tmp_path, text).boxes["debian"].version == "4.3.12"


def test_lab_file_that_is_not_utf8_is_one_config_error(tmp_path: Path) -> None:
    path = tmp_path / "lab.yml"
    path.write_bytes("name: reglab\ndomain: caf\u00e9.example.com\n".encode("latin-1"))
    with pytest.raises(ConfigError) as info:
        load(path, environ={})
    assert str(info.value) == f"{path}: line 2: expected UTF-8 text, got the byte 0xe9; save the file as UTF-8"


# --- values are whole: a trailing newline, a leading '-', control characters --

WHOLE = [
    pytest.param('domain: "myregistrydomain.com\\n"\n', "domain", ["DNS name"], id="domain-trailing-newline"),
    pytest.param('name: "reglab\\n"\n', "name", ["lower-case name"], id="name-trailing-newline"),
    pytest.param('users:\n  - name: "ann\\n"\n', "users[0].name", ["user name"], id="user-trailing-newline"),
    pytest.param('images:\n  proxy: "nginx:1.27\\n"\n', "images.proxy", ["image reference"], id="image-newline"),
    pytest.param("users:\n  - name: -rf\n", "users[0].name", ["user name", "'-rf'"], id="user-leading-dash"),
    pytest.param("users:\n  - name: .ann\n", "users[0].name", ["user name", "'.ann'"], id="user-leading-dot"),
    pytest.param("name: -reglab\n", "name", ["lower-case name"], id="name-leading-dash"),
    pytest.param("domain: -my.example.com\n", "domain", ["DNS name"], id="domain-leading-dash"),
    pytest.param("domain: my.-example.com\n", "domain", ["DNS name"], id="domain-label-leading-dash"),
    pytest.param("images:\n  base: -debian\n", "images.base", ["image reference"], id="image-leading-dash"),
    pytest.param(
        'boxes:\n  debian: {name: "generic/debian12\\t"}\n', "boxes.debian.name", ["control characters"], id="box-tab"
    ),
    pytest.param(
        'boxes:\n  rhel: {version: "4.3.12\\r"}\n', "boxes.rhel.version", ["control characters"], id="box-version-cr"
    ),
]


@pytest.mark.parametrize(("text", "key_path", "words"), WHOLE)
def test_values_must_match_whole_and_not_start_with_a_dash(
    tmp_path: Path, text: str, key_path: str, words: list[str]
) -> None:
    """`re.match` with `$` let a trailing newline through; a leading '-' would be read as an option."""
    test_bad_lab_file_is_one_config_error(tmp_path, text, key_path, words)


def test_user_names_with_dots_dashes_and_underscores_are_accepted(tmp_path: Path) -> None:
    lab = load_text(tmp_path, "users:\n  - name: ann.lee\n  - name: _svc-1\n")
    assert [u.name for u in lab.users] == ["ann.lee", "_svc-1"]


# --- passwords: YAML strings only, htpasswd's rules --------------------------

PASSWORDS = [
    pytest.param("12345679.5", ["expected a string", "a number", "quotes"], id="float"),
    pytest.param("0712345670", ["expected a string", "a number", "quotes"], id="octal-int"),
    pytest.param("2023-12-24", ["expected a string", "a date", "quotes"], id="date"),
    pytest.param("2023-12-24 10:00:00", ["expected a string", "a date", "quotes"], id="datetime"),
    pytest.param("off", ["expected a string", "a boolean", "quotes"], id="boolean"),
    pytest.param('"long-enough\\r"', ["control characters", "'\\r'"], id="trailing-cr"),
    pytest.param('"long\\tenough"', ["control characters", "'\\t'"], id="tab"),
    pytest.param('"long-enough\\0"', ["control characters", "'\\x00'"], id="nul"),
    pytest.param('"long-enough\\x85"', ["control characters"], id="c1-control"),
    pytest.param("a" * 256, ["at most 255 bytes", "got 256"], id="256-bytes"),
    pytest.param("é" * 128, ["at most 255 bytes", "got 256"], id="128-characters-256-bytes"),
    pytest.param("short", ["8 or more characters", "got 5"], id="short"),
    pytest.param("'long:enough'", ["without ':'"], id="colon"),
]


@pytest.mark.parametrize(("value", "words"), PASSWORDS)
def test_bad_password_is_refused_and_never_echoed(tmp_path: Path, value: str, words: list[str]) -> None:
    """A password YAML reads as a number changes its text (octal, float); control characters break htpasswd."""
    path = write(tmp_path, f"users:\n  - name: ann\n    password: {value}\n")
    with pytest.raises(ConfigError) as info:
        load(path, environ={})
    message = str(info.value)
    assert message.startswith(f"{path}: users[0].password: expected "), message
    for word in words:
        assert word in message, f"{word!r} not in {message!r}"
    assert value.strip("'\"") not in message


@pytest.mark.parametrize(
    ("value", "expected"),
    [("'0123456701'", "0123456701"), ('"12345678.90"', "12345678.90"), ("a" * 255, "a" * 255),
     ("pässwört-ok", "pässwört-ok"), ("'with space and #'", "with space and #")],
    ids=["quoted-octal", "quoted-float", "255-bytes", "non-ascii", "spaces"],
)
def test_good_password_is_kept_as_written(tmp_path: Path, value: str, expected: str) -> None:
    lab = load_text(tmp_path, f"users:\n  - name: ann\n    password: {value}\n")
    assert lab.users[0].password == expected


# --- machine addresses --------------------------------------------------------

IPS = [
    pytest.param("192.168.33.0", "192.168.33.11", "machines.registry.ip", ["network's own address"], id="network"),
    pytest.param("192.168.33.10", "192.168.33.255", "machines.client.ip", ["broadcast"], id="broadcast"),
    pytest.param("192.168.33.1", "192.168.33.11", "machines.registry.ip", ["gateway", "192.168.33.0/24"], id="gateway"),
    pytest.param("169.254.3.10", "169.254.3.11", "machines.registry.ip", ["link-local"], id="link-local"),
    pytest.param("172.17.0.10", "172.17.0.11", "machines.registry.ip", ["172.17.0.0/16", "docker0"], id="docker0"),
    pytest.param("127.0.0.10", "127.0.0.11", "machines.registry.ip", ["private", "127.0.0.10"], id="loopback"),
    pytest.param("240.0.0.10", "240.0.0.11", "machines.registry.ip", ["private", "240.0.0.10"], id="reserved"),
    pytest.param("10.0.5.10", "10.0.6.11", "machines.client.ip", ["not on the private network"], id="two-24s"),
]


@pytest.mark.parametrize(("registry", "client", "key_path", "words"), IPS)
def test_machine_address_the_network_cannot_give_is_refused(
    tmp_path: Path, registry: str, client: str, key_path: str, words: list[str]
) -> None:
    """.0, .255 and .1 (the host's side) are not a machine's; docker0 and link-local would be shadowed."""
    text = f"machines:\n  registry: {{ip: {registry}}}\n  client: {{ip: {client}}}\n"
    test_bad_lab_file_is_one_config_error(tmp_path, text, key_path, words)


def test_machine_addresses_next_to_the_reserved_ones_are_accepted(tmp_path: Path) -> None:
    lab = load_text(tmp_path, "machines:\n  registry: {ip: 172.16.0.2}\n  client: {ip: 172.16.0.254}\n")
    assert (lab.machine("registry").ip, lab.machine("client").ip) == ("172.16.0.2", "172.16.0.254")


# --- ports --------------------------------------------------------------------

PORTS = [
    pytest.param("ports:\n  proxy: 443\n", "ports.proxy", ["of its own", "443", "ports.https"], id="proxy-is-https"),
    pytest.param("ports:\n  proxy: 5000\n", "ports.proxy", ["of its own", "ports.registry"], id="proxy-is-registry"),
    pytest.param("ports:\n  registry: 443\n", "ports.registry", ["of its own", "ports.https"], id="registry-is-https"),
    pytest.param("ports:\n  registry: 22\n", "ports.registry", ["of its own", "SSH"], id="registry-is-ssh"),
    pytest.param("ports:\n  https: 8443\n", "ports.https", ["expected 443", "443 only", "got 8443"], id="https-8443"),
]


@pytest.mark.parametrize(("text", "key_path", "words"), PORTS)
def test_ports_are_distinct_and_https_is_443(tmp_path: Path, text: str, key_path: str, words: list[str]) -> None:
    """Two services on one port cannot both bind; the steps' https://DOMAIN/v2/ URLs assume 443."""
    test_bad_lab_file_is_one_config_error(tmp_path, text, key_path, words)


def test_other_distinct_ports_are_accepted(tmp_path: Path) -> None:
    lab = load_text(tmp_path, "ports:\n  registry: 6000\n  proxy: 6043\n")
    assert (lab.ports.registry, lab.ports.proxy, lab.ports.https) == (6000, 6043, 443)


# --- image references -----------------------------------------------------------

DIGEST = "sha256:" + "0123456789abcdef" * 4


@pytest.mark.parametrize(
    "ref",
    ["registry:2", "nginx", f"registry@{DIGEST}", "localhost:5000/nginx:1.22", f"my.reg:5000/x/y:tag@{DIGEST}",
     "reglab/docker-registry:2.8.2-debian12", "Quay.IO/org/app_name__x.y-z:V1.0_rc", "[::1]:5000/nginx"],
)
def test_valid_image_references_are_accepted(tmp_path: Path, ref: str) -> None:
    """A digest or a registry with a port is a valid Docker reference and must get through."""
    lab = load_text(tmp_path, f"images:\n  registry: '{ref}'\n")
    assert lab.images.registry == ref


@pytest.mark.parametrize(
    "ref",
    ["library/Nginx:1", "localhost:5000/Nginx", "-nginx", "nginx 1.27", "nginx:1.27\n", "nginx@sha256:abc",
     f"nginx@sha512:{'0' * 64}", "nginx:-x", "my_reg:5000/x", "a___b", "nginx/", "/nginx", "x" * 256],
)
def test_invalid_image_references_are_refused(tmp_path: Path, ref: str) -> None:
    path = write(tmp_path, "images:\n  proxy: " + yaml_quote(ref) + "\n")
    with pytest.raises(ConfigError) as info:
        load(path, environ={})
    assert info.value.path == "images.proxy"
    assert "image" in info.value.problem


def yaml_quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


# --- mirror -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [("http://apt-proxy.example:3142/debian/", "http://apt-proxy.example:3142/debian"),
     ("https://mirror.example/debian", "https://mirror.example/debian"), ("http://10.0.0.2:3142", "http://10.0.0.2:3142")],
)
def test_mirror_url_is_accepted_without_its_trailing_slash(tmp_path: Path, value: str, expected: str) -> None:
    assert load_text(tmp_path, f"mirror: {value}\n").mirror == expected
    assert load_text(tmp_path, "", environ={"REGLAB_MIRROR": value}).mirror == expected


def test_mirror_is_unset_by_default(tmp_path: Path) -> None:
    assert load_text(tmp_path, "").mirror is None


@pytest.mark.parametrize(
    "value", ["ftp://x", "http://host\n", "http://my host/debian", "mirror.example/debian", "http://"]
)
def test_bad_mirror_is_refused(tmp_path: Path, value: str) -> None:
    path = write(tmp_path, "mirror: " + yaml_quote(value) + "\n")
    with pytest.raises(ConfigError) as info:
        load(path, environ={})
    assert str(info.value).startswith(f"{path}: mirror: expected an http:// or https:// URL")


@pytest.mark.parametrize("value", ["ftp://x", "http://host\n", "http://my host/debian"])
def test_bad_mirror_from_environment_names_the_variable(tmp_path: Path, value: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_text(tmp_path, "", environ={"REGLAB_MIRROR": value})
    assert str(info.value).startswith("environment variable REGLAB_MIRROR: expected an http:// or https:// URL")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", ("reglab/debian13", None, None, True)),
        ("boxes:\n  debian: build\n", ("reglab/debian13", None, None, True)),
        ("boxes:\n  debian: {name: generic/debian12, version: 4.3.12}\n", ("generic/debian12", "4.3.12", None, False)),
        ("boxes:\n  debian: {name: mine/debian, url: /srv/boxes/debian.box}\n",
         ("mine/debian", None, "file:///srv/boxes/debian.box", False)),
        ("boxes:\n  debian: {name: mine/debian, url: 'https://boxes.example/debian.box'}\n",
         ("mine/debian", None, "https://boxes.example/debian.box", False)),
    ],
)
def test_box_sources(tmp_path: Path, text: str, expected: tuple) -> None:
    box = load_text(tmp_path, text).boxes["debian"]
    assert (box.name, box.version, box.url, box.build) == expected


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("boxes:\n  rhel: build\n", "only Debian boxes can be built here"),
        ("boxes:\n  debian: {name: x/y}\n", "expected a version"),
        ("boxes:\n  debian: {name: x/y, version: latest}\n", "expected a version like 4.3.12"),
        ("boxes:\n  debian: {name: x/y, url: 'ftp://x/y.box'}\n", "expected an http(s):// or file:// URL"),
    ],
)
def test_bad_box_sources(tmp_path: Path, text: str, words: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(words)):
        load_text(tmp_path, text)
