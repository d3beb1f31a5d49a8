"""Unit tests for lab.osfamily: /etc/os-release parsing, family mapping, command plans."""

from __future__ import annotations

import dataclasses
import shutil
import subprocess

import pytest

from lab.common.errors import LabError
from lab.machines.osfamily import DEBIAN, FAMILIES, RHEL, Family, OsRelease, UnsupportedOS, family_of, parse_os_release

# /etc/os-release as the distributions ship it.
DEBIAN_12 = """\
PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"
NAME="Debian GNU/Linux"
VERSION_ID="12"
VERSION="12 (bookworm)"
VERSION_CODENAME=bookworm
ID=debian
HOME_URL="https://www.debian.org/"
SUPPORT_URL="https://www.debian.org/support"
BUG_REPORT_URL="https://bugs.debian.org/"
"""

UBUNTU_2404 = """\
PRETTY_NAME="Ubuntu 24.04 LTS"
NAME="Ubuntu"
VERSION_ID="24.04"
VERSION="24.04 LTS (Noble Numbat)"
VERSION_CODENAME=noble
ID=ubuntu
ID_LIKE=debian
HOME_URL="https://www.ubuntu.com/"
SUPPORT_URL="https://help.ubuntu.com/"
BUG_REPORT_URL="https://bugs.launchpad.net/ubuntu/"
PRIVACY_POLICY_URL="https://www.ubuntu.com/legal/terms-and-policies/privacy-policy"
UBUNTU_CODENAME=noble
LOGO=ubuntu-logo
"""

ROCKY_9 = """\
NAME="Rocky Linux"
VERSION="9.4 (Blue Onyx)"
ID="rocky"
ID_LIKE="rhel centos fedora"
VERSION_ID="9.4"
PLATFORM_ID="platform:el9"
PRETTY_NAME="Rocky Linux 9.4 (Blue Onyx)"
ANSI_COLOR="0;32"
LOGO="fedora-logo-icon"
CPE_NAME="cpe:/o:rocky:rocky:9::baseos"
HOME_URL="https://rockylinux.org/"
BUG_REPORT_URL="https://bugs.rockylinux.org/"
SUPPORT_END="2032-05-31"
ROCKY_SUPPORT_PRODUCT="Rocky-Linux-9"
ROCKY_SUPPORT_PRODUCT_VERSION="9.4"
REDHAT_SUPPORT_PRODUCT="Rocky Linux"
REDHAT_SUPPORT_PRODUCT_VERSION="9.4"
"""

ALMALINUX_9 = """\
NAME="AlmaLinux"
VERSION="9.3 (Shamrock Pampas Cat)"
ID="almalinux"
ID_LIKE="rhel centos fedora"
VERSION_ID="9.3"
PLATFORM_ID="platform:el9"
PRETTY_NAME="AlmaLinux 9.3 (Shamrock Pampas Cat)"
ANSI_COLOR="0;34"
LOGO="fedora-logo-icon"
CPE_NAME="cpe:/o:almalinux:almalinux:9::baseos"
HOME_URL="https://almalinux.org/"
DOCUMENTATION_URL="https://wiki.almalinux.org/"
BUG_REPORT_URL="https://bugs.almalinux.org/"

ALMALINUX_MANTISBT_PROJECT="AlmaLinux-9"
ALMALINUX_MANTISBT_PROJECT_VERSION="9.3"
REDHAT_SUPPORT_PRODUCT="AlmaLinux"
REDHAT_SUPPORT_PRODUCT_VERSION="9.3"
"""

CENTOS_7 = """\
NAME="CentOS Linux"
VERSION="7 (Core)"
ID="centos"
ID_LIKE="rhel fedora"
VERSION_ID="7"
PRETTY_NAME="CentOS Linux 7 (Core)"
ANSI_COLOR="0;31"
CPE_NAME="cpe:/o:centos:centos:7"
HOME_URL="https://www.centos.org/"
BUG_REPORT_URL="https://bugs.centos.org/"

CENTOS_MANTISBT_PROJECT="CentOS-7"
CENTOS_MANTISBT_PROJECT_VERSION="7"
REDHAT_SUPPORT_PRODUCT="centos"
REDHAT_SUPPORT_PRODUCT_VERSION="7"
"""

OPENSUSE_LEAP = """\
NAME="openSUSE Leap"
VERSION="15.5"
ID="opensuse-leap"
ID_LIKE="suse opensuse"
VERSION_ID="15.5"
PRETTY_NAME="openSUSE Leap 15.5"
ANSI_COLOR="0;32"
CPE_NAME="cpe:/o:opensuse:leap:15.5"
"""

ALPINE = """\
NAME="Alpine Linux"
ID=alpine
VERSION_ID=3.19.1
PRETTY_NAME="Alpine Linux v3.19"
HOME_URL="https://alpinelinux.org/"
BUG_REPORT_URL="https://gitlab.alpinelinux.org/alpine/aports/-/issues"
"""

RELEASES = [
    pytest.param(DEBIAN_12, OsRelease("debian", (), "12", "Debian GNU/Linux 12 (bookworm)", "bookworm"), DEBIAN,
                 id="debian-12"),
    pytest.param(UBUNTU_2404, OsRelease("ubuntu", ("debian",), "24.04", "Ubuntu 24.04 LTS", "noble"), DEBIAN,
                 id="ubuntu-24.04"),
    pytest.param(
        ROCKY_9,
        OsRelease("rocky", ("rhel", "centos", "fedora"), "9.4", "Rocky Linux 9.4 (Blue Onyx)"),
        RHEL,
        id="rocky-9",
    ),
    pytest.param(
        ALMALINUX_9,
        OsRelease("almalinux", ("rhel", "centos", "fedora"), "9.3", "AlmaLinux 9.3 (Shamrock Pampas Cat)"),
        RHEL,
        id="almalinux-9",
    ),
    pytest.param(CENTOS_7, OsRelease("centos", ("rhel", "fedora"), "7", "CentOS Linux 7 (Core)"), RHEL, id="centos-7"),
]


@pytest.mark.parametrize(("text", "expected", "family"), RELEASES)
def test_parse_os_release(text: str, expected: OsRelease, family: Family) -> None:
    assert parse_os_release(text) == expected


@pytest.mark.parametrize(("text", "expected", "family"), RELEASES)
def test_family_of(text: str, expected: OsRelease, family: Family) -> None:
    assert family_of(parse_os_release(text)) is family


def test_parse_tolerates_comments_blanks_and_odd_lines() -> None:
    release = parse_os_release('# comment\n\nnot a pair\nID="Fedora"\nID_LIKE=\nVERSION_ID=40\nBROKEN="unclosed\n')
    assert release.id == "fedora"  # lower-cased
    assert release.id_like == ()
    assert release.version_id == "40"
    assert release.pretty_name == "Fedora"  # falls back to ID as written
    assert family_of(release) is RHEL


def test_parse_empty_text() -> None:
    assert parse_os_release("") == OsRelease("", (), "", "unknown")


@pytest.mark.parametrize(
    ("text", "name"),
    [(OPENSUSE_LEAP, "openSUSE Leap 15.5"), (ALPINE, "Alpine Linux v3.19"), ("", "unknown")],
    ids=["opensuse", "alpine", "empty"],
)
def test_unknown_os_is_a_lab_error_naming_it(text: str, name: str) -> None:
    """A LabError, so the CLI prints one line (exit 2); still a ValueError for older callers."""
    with pytest.raises(UnsupportedOS) as info:
        family_of(parse_os_release(text))
    assert isinstance(info.value, LabError) and isinstance(info.value, ValueError)
    assert name in str(info.value)
    assert "Debian" in str(info.value) and "RHEL" in str(info.value)
    assert "lab.yml key `os`" in str(info.value)


def test_families_registry() -> None:
    assert FAMILIES == {"debian": DEBIAN, "rhel": RHEL}
    assert set(DEBIAN.packages) == set(RHEL.packages)


# --- command plans -------------------------------------------------------------

NEEDS = ("docker", "compose", "htpasswd")


def test_debian_install_plan() -> None:
    command = DEBIAN.install(NEEDS)
    assert "apt-get" in command
    assert "DEBIAN_FRONTEND=noninteractive" in command
    assert command.endswith("install -y --no-install-recommends docker.io docker-compose apache2-utils")
    assert "yum" not in command and "dnf" not in command
    assert "apt-get" in DEBIAN.prepare and "update" in DEBIAN.prepare
    assert DEBIAN.compose == "docker-compose"


def test_rhel_install_plan() -> None:
    command = RHEL.install(NEEDS)
    assert "dnf install -y docker-ce docker-compose-plugin httpd-tools" in command
    assert "yum install -y docker-ce docker-compose-plugin httpd-tools" in command
    assert command.index("dnf") < command.index("yum")  # dnf when there is one, else yum (CentOS 7)
    assert "apt-get" not in command
    assert "docker-ce.repo" in RHEL.prepare
    assert RHEL.compose == "docker compose"


def test_package_names_follow_the_needs_order() -> None:
    assert DEBIAN.package_names(("htpasswd", "curl")) == ["apache2-utils", "curl"]
    assert RHEL.package_names(("htpasswd", "curl")) == ["httpd-tools", "curl"]
    with pytest.raises(KeyError):
        DEBIAN.package_names(("no-such-need",))


@pytest.mark.parametrize(
    ("family", "anchor_dir", "update"),
    [
        (DEBIAN, "/usr/local/share/ca-certificates", "update-ca-certificates"),
        (RHEL, "/etc/pki/ca-trust/source/anchors", "update-ca-trust"),
    ],
    ids=["debian", "rhel"],
)
def test_ca_trust_plans(family: Family, anchor_dir: str, update: str) -> None:
    assert family.ca_path("reglab-ca.crt") == f"{anchor_dir}/reglab-ca.crt"
    trust = family.trust_ca("/tmp/my ca.crt", "reglab-ca.crt")
    assert trust.startswith(f"install -m 0644 '/tmp/my ca.crt' {anchor_dir}/reglab-ca.crt && ")
    assert update in trust
    untrust = family.untrust_ca("reglab-ca.crt")
    assert untrust.startswith(f"rm -f {anchor_dir}/reglab-ca.crt && ")
    assert update in untrust


def test_other_family_paths_never_leak() -> None:
    assert "/etc/pki" not in DEBIAN.trust_ca("x.crt", "a.crt")
    assert "update-ca-trust" not in DEBIAN.trust_ca("x.crt", "a.crt")
    assert "/usr/local/share" not in RHEL.trust_ca("x.crt", "a.crt")
    assert "update-ca-certificates" not in RHEL.trust_ca("x.crt", "a.crt")


def test_missing_plans_use_the_family_package_query() -> None:
    assert "dpkg-query" in DEBIAN.missing(NEEDS)
    assert "docker.io docker-compose apache2-utils" in DEBIAN.missing(NEEDS)
    assert "rpm -q" in RHEL.missing(NEEDS)
    assert "docker-ce docker-compose-plugin httpd-tools" in RHEL.missing(NEEDS)


@pytest.mark.skipif(shutil.which("dpkg-query") is None, reason="needs a Debian-family host (dpkg-query)")
def test_debian_missing_runs_locally_and_prints_only_absent_packages() -> None:
    family = dataclasses.replace(DEBIAN, packages={"x": "bash", "y": "no-such-package-xyz"})
    done = subprocess.run(["bash", "-c", family.missing(("x", "y"))], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "no-such-package-xyz\n"
    assert done.stdout.strip() == "no-such-package-xyz"


@pytest.mark.skipif(shutil.which("dpkg-query") is None, reason="needs a Debian-family host (dpkg-query)")
def test_debian_missing_prints_nothing_when_all_installed() -> None:
    family = dataclasses.replace(DEBIAN, packages={"x": "bash", "y": "coreutils"})
    done = subprocess.run(["bash", "-c", family.missing(("x", "y"))], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert done.stdout == ""
