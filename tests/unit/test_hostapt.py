"""The Debian mirror comes from the host's apt configuration (issue 7, item 16)."""

from __future__ import annotations

import pytest

from lab.common.errors import LabError
from lab.machines import hostapt

DEB822 = """\
Types: deb
# a comment
URIs: http://mirror.example/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://mirror.example/debian-security
Suites: bookworm-security
Components: main

Types: deb
Enabled: no
URIs: http://disabled.example/debian
Suites: trixie
Components: main
"""


def test_deb822_sources_give_the_mirror_of_the_suite_itself():
    sources = hostapt.parse_deb822(DEB822)
    assert [s.uri for s in sources] == ["http://mirror.example/debian", "http://mirror.example/debian-security"]
    assert hostapt.debian_mirror(sources, "bookworm") == "http://mirror.example/debian"
    # Another release reglab builds (Debian 13 machines on a Debian 12 host): the same archive.
    assert hostapt.debian_mirror(sources, "trixie") == "http://mirror.example/debian"
    assert hostapt.debian_mirror(sources, "focal") is None  # not a release reglab knows


def test_one_line_sources_with_options_and_comments():
    text = ("# deb http://old.example/debian bookworm main\n"
            "deb-src http://src.example/debian bookworm main\n"
            "deb [arch=amd64 signed-by=/k.gpg] http://proxy.example:3142/debian/ bookworm main contrib\n")
    sources = hostapt.parse_one_line(text)
    assert len(sources) == 1
    assert hostapt.debian_mirror(sources, "bookworm") == "http://proxy.example:3142/debian"


def test_the_lab_files_mirror_wins_and_a_host_without_one_is_told_what_to_set(tmp_path):
    assert hostapt.mirror_for("bookworm", "http://mine.example/debian", tmp_path) == "http://mine.example/debian"
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list").write_text("deb http://archive.example/ubuntu jammy main\n")
    with pytest.raises(LabError, match=r"set `mirror:` in the lab file or REGLAB_MIRROR"):
        hostapt.mirror_for("bookworm", None, tmp_path)
    (tmp_path / "sources.list.d" / "debian.sources").write_text(DEB822)
    assert hostapt.mirror_for("bookworm", None, tmp_path) == "http://mirror.example/debian"


def test_apt_proxy_from_apt_config_dump():
    dump = 'Acquire "";\nAcquire::http::Proxy "http://cache.example:3142";\n'
    assert hostapt.parse_proxy(dump) == "http://cache.example:3142"
    assert hostapt.parse_proxy('Acquire::http::Proxy "DIRECT";\n') is None
    assert hostapt.parse_proxy("") is None
