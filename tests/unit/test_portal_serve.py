"""Unit tests for serving the portal: --listen, TLS with the class's CA or one's own, links in bundles.

A real server on 127.0.0.1 (loopback only), fetched with urllib over TLS; a class enrolled on a
fake host network, with no machine.
"""

from __future__ import annotations

import io
import ipaddress
import json
import re
import ssl
import stat
import threading
import urllib.error
import urllib.request
from ipaddress import IPv4Network
from pathlib import Path

import pytest
from cryptography import x509

from lab.classroom import netpool
from lab.classroom.room import Classroom
from lab.classroom.roster import Student
from lab.cli.main import main
from lab.common.errors import LabError
from lab.common.files import write_private
from lab.common.polling import poll
from lab.common.progress import Progress
from lab.pki.make import make_ca, make_server_cert
from lab.portal import run as portal
from lab.portal import serve as serving
from lab.portal.serve import Listen, parse_listen


@pytest.fixture
def room(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Classroom:
    monkeypatch.setattr(netpool, "host_networks", lambda: [IPv4Network("10.77.0.0/24")])
    base = tmp_path / "lab.yml"
    base.write_text("provider: docker\n")
    classroom = Classroom(base, "web1", Progress(io.StringIO()))
    classroom.enrol([Student("ada"), Student("bob")])
    for member in classroom.members:  # what `class up` leaves in a bundle
        folder = classroom.dir / "students" / member.id
        write_private(folder / "ssh_config", f"Host registry\n  HostName {member.subnet.network_address + 10}\n")
        write_private(folder / "credentials.txt", f"registry user: {member.id}\n")
    return classroom


@pytest.mark.parametrize("text,words", [("10.0.0.1", "ADDRESS:PORT"), ("host.test:8443", "not an IP address"),
                                        ("10.0.0.1:0", "not a TCP port"), ("10.0.0.1:http", "not a TCP port")])
def test_listen_must_be_an_address_and_port(text: str, words: str) -> None:
    with pytest.raises(LabError, match=words):
        parse_listen(text)


def test_listen_parses_ipv4_and_ipv6() -> None:
    assert parse_listen("10.77.0.1:8443") == Listen("10.77.0.1", 8443)
    assert parse_listen("[::1]:8443") == Listen("::1", 8443)
    assert Listen("::1", 8443).url() == "https://[::1]:8443"


def test_off_loopback_without_tls_is_refused() -> None:
    with pytest.raises(LabError, match="needs TLS"):
        serving.serve(None, Listen("10.77.0.1", 8443), None, threading.Event())


def test_the_class_certificate_names_the_host_and_its_ca_signs_for_nothing_else(tmp_path: Path,
                                                                              monkeypatch) -> None:  # noqa: ANN001
    monkeypatch.setattr(serving, "names_for", lambda listen, extra=None: ("classhost.test", ["10.77.0.1"]))
    files, names = serving.class_certificate(tmp_path / "pki", Listen("10.77.0.1", 8443))
    assert names == {"classhost.test", "10.77.0.1"}
    cert = x509.load_pem_x509_certificate(files.cert.read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["classhost.test"]
    assert san.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("10.77.0.1")]
    ca = x509.load_pem_x509_certificate(files.ca_cert.read_bytes())
    constraints = ca.extensions.get_extension_for_class(x509.NameConstraints).value
    assert x509.DNSName("classhost.test") in constraints.permitted_subtrees
    assert stat.S_IMODE(files.ca_key.stat().st_mode) == 0o600 and stat.S_IMODE(files.key.stat().st_mode) == 0o600


def test_bundle_new_link_renews_the_link_and_the_old_one_stops(room: Classroom, tmp_path: Path) -> None:
    lab = str(room.base_lab)
    out, err = io.StringIO(), io.StringIO()
    assert main(["--lab", lab, "class", "bundle", "ada", "--new-link"], stdout=out, stderr=err) == 2
    assert "has not been served yet" in err.getvalue()
    (room.dir / "portal").mkdir(mode=0o700)
    (room.dir / "portal" / "url").write_text("https://10.77.0.1:8443\n")
    out = io.StringIO()
    assert main(["--lab", lab, "class", "bundle", "ada", "--new-link"], stdout=out, stderr=err) == 0
    first = re.search(r"portal: (https://10\.77\.0\.1:8443/login#\S+)", out.getvalue()).group(1)
    out = io.StringIO()
    assert main(["--lab", lab, "class", "bundle", "ada", "--new-link"], stdout=out, stderr=err) == 0
    second = re.search(r"portal: (\S+)", out.getvalue()).group(1)
    assert first != second
    access = portal.access_for(room)
    assert access.login(first.split("#", 1)[1]) is None
    assert access.login(second.split("#", 1)[1]).__getitem__(1).identity.student == "ada"
    link_file = room.dir / "students" / "ada" / portal.LINK_FILE
    assert stat.S_IMODE(link_file.stat().st_mode) == 0o600
    assert second.split("#", 1)[1] not in (room.dir / "portal" / "access.json").read_text()


@pytest.mark.parametrize("args,words", [(["--cert", "x.pem"], "go with --listen"),
                                        (["--listen", "10.0.0.1"], "ADDRESS:PORT"),
                                        (["--listen", "127.0.0.1:8443", "--cert", "nope.pem"], "go together")])
def test_bad_serve_options_are_exit_2(room: Classroom, args: list[str], words: str) -> None:
    err = io.StringIO()
    assert main(["--lab", str(room.base_lab), "class", "serve", *args], stdout=io.StringIO(), stderr=err) == 2
    assert words in err.getvalue() and "Traceback" not in err.getvalue()


def test_serves_https_with_ones_own_certificate_and_gives_every_student_a_link(room: Classroom,
                                                                             tmp_path: Path) -> None:
    ca_key, ca_cert = make_ca("test CA")
    key, cert = make_server_cert(ca_key, ca_cert, "localhost", ["127.0.0.1"])
    (tmp_path / "ca.pem").write_bytes(ca_cert)
    (tmp_path / "cert.pem").write_bytes(cert)
    write_private(tmp_path / "key.pem", key)
    stop = threading.Event()
    said: list[str] = []
    port = _free_port()
    server = threading.Thread(target=portal.run, args=(room, Listen("127.0.0.1", port)), daemon=True,
                              kwargs={"cert": tmp_path / "cert.pem", "key": tmp_path / "key.pem", "say": said.append,
                                      "stop": stop})
    server.start()
    try:
        assert poll(lambda: any("instructor's link" in line for line in said), 10, 0.1), said
        secret = next(line for line in said if "instructor's link" in line).split("#", 1)[1]
        context = ssl.create_default_context(cafile=str(tmp_path / "ca.pem"))
        base = f"https://127.0.0.1:{port}"
        import socket

        silent = socket.create_connection(("127.0.0.1", port))  # connects, never says hello: holds up no one
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"{base}/api/class", context=context, timeout=5)
        assert refused.value.code == 401
        login = urllib.request.Request(f"{base}/login", data=json.dumps({"token": secret}).encode(),
                                       headers={"Content-Type": "application/json", "Origin": base}, method="POST")
        with urllib.request.urlopen(login, context=context, timeout=5) as answer:
            assert answer.status == 204
            cookie = answer.headers["Set-Cookie"]
        assert cookie.startswith("__Host-reglab=") and "Secure" in cookie and "SameSite=Strict" in cookie
        session = cookie.split(";", 1)[0]
        grid = urllib.request.Request(f"{base}/api/class", headers={"Cookie": session})
        with urllib.request.urlopen(grid, context=context, timeout=5) as answer:
            assert [row["student"] for row in json.loads(answer.read())["rows"]] == ["ada", "bob"]
            assert "max-age" in answer.headers["Strict-Transport-Security"]
        with pytest.raises(OSError):  # plain HTTP on the TLS port gets nothing: the connection is dropped
            urllib.request.urlopen(f"http://127.0.0.1:{port}/api/class", timeout=5).read()
        silent.close()
    finally:
        stop.set()
        server.join(5)
    for member in room.members:
        link = (room.dir / "students" / member.id / portal.LINK_FILE).read_text().strip()
        assert link.startswith(f"https://127.0.0.1:{port}/login#")
        assert portal.access_for(room).has_token(member.id)


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
