"""Serving the portal: HTTPS off loopback (the class's own CA, or the instructor's certificate), plain on loopback.

The class's CA (`portal/pki/`, made by lab.pki like a lab's) is constrained to
the names it signs for: the host's name and the addresses the portal listens
on. A student's browser trusts it (the bundle carries `ca.crt`), and a copy of
it cannot vouch for any other site. The instructor's own `--cert/--key` are
used as given.

NOTE: the TLS handshake runs in the connection's own thread with a timeout,
not in the accepting loop (werkzeug's own TLS does it there): a client that
connects and says nothing would otherwise hold up every other one.
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import socket
import ssl
import struct
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from werkzeug.serving import ThreadedWSGIServer, WSGIRequestHandler

from lab.classroom.dashboard import listening_socket, serve_until
from lab.common.errors import LabError
from lab.pki.make import PkiFiles, ensure_pki

HANDSHAKE_SECONDS = 10
IDLE_SECONDS = 60  # a connection that sends nothing for this long is closed (a terminal's pings keep it)


@dataclass(frozen=True)
class Listen:
    host: str  # an IP address
    port: int

    @property
    def loopback(self) -> bool:
        return ipaddress.ip_address(self.host).is_loopback

    @property
    def unspecified(self) -> bool:
        return ipaddress.ip_address(self.host).is_unspecified

    def url(self, name: str | None = None, tls: bool = True) -> str:
        shown = name or self.host
        shown = f"[{shown}]" if ":" in shown else shown
        return f"{'https' if tls else 'http'}://{shown}:{self.port}"


def parse_listen(text: str) -> Listen:
    """`ADDR:PORT` (`[::1]:8443` for IPv6): the address to listen on, and its port."""
    host, sep, port = text.rpartition(":")
    host = host.strip("[]")
    if not sep or not host:
        raise LabError(f"--listen: expected ADDRESS:PORT like 10.77.0.1:8443, not {text!r}")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise LabError(f"--listen: {host!r} is not an IP address (give the address to listen on)") from None
    if not port.isdigit() or not 0 < int(port) <= 65535:
        raise LabError(f"--listen: {port!r} is not a TCP port from 1 to 65535")
    return Listen(host, int(port))


def host_addresses() -> list[str]:
    """The host's own IPv4 addresses but loopback (for a certificate of a portal on 0.0.0.0)."""
    found = []
    for _, name in socket.if_nameindex():
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe, contextlib.suppress(OSError):
            packed = fcntl.ioctl(probe.fileno(), 0x8915, struct.pack("256s", name[:15].encode()))  # SIOCGIFADDR
            address = socket.inet_ntoa(packed[20:24])
            if not ipaddress.ip_address(address).is_loopback:
                found.append(address)
    return sorted(set(found))


def names_for(listen: Listen, extra: list[str] | None = None) -> tuple[str, list[str]]:
    """(the DNS name, the IP addresses) the portal's certificate names."""
    ips = host_addresses() if listen.unspecified else [listen.host]
    dns = socket.getfqdn() or socket.gethostname()
    try:
        ipaddress.ip_address(dns)
        dns = socket.gethostname()
    except ValueError:
        pass
    return dns.lower(), sorted(set(ips + [e for e in extra or [] if _is_ip(e)]))


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
        return True
    except ValueError:
        return False


def class_certificate(pki_dir: Path, listen: Listen) -> tuple[PkiFiles, frozenset[str]]:
    """The portal's certificate from the class's CA (made or reused), and the host names it answers to."""
    dns, ips = names_for(listen)
    if not ips:
        raise LabError("--listen: no address of this host to put in the portal's certificate; listen on one "
                       "address (e.g. the class network's) rather than 0.0.0.0")
    files = ensure_pki(pki_dir, dns, ips)
    return files, frozenset([dns, *ips])


def tls_context(cert: Path, key: Path) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(str(cert), str(key))
    except (OSError, ssl.SSLError) as exc:
        raise LabError(f"cannot use the certificate {cert} with the key {key}: {exc}") from None
    return context


class _Handler(WSGIRequestHandler):
    """No access log (the pages poll); idle connections end."""

    timeout = IDLE_SECONDS

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass


class _Server(ThreadedWSGIServer):
    """werkzeug's threaded server, with the TLS handshake moved into each connection's thread."""

    daemon_threads = True
    tls: ssl.SSLContext | None = None

    def finish_request(self, request, client_address) -> None:  # noqa: ANN001
        if self.tls is None:
            super().finish_request(request, client_address)
            return
        request.settimeout(HANDSHAKE_SECONDS)
        try:
            wrapped = self.tls.wrap_socket(request, server_side=True)
        except (OSError, ssl.SSLError):
            return
        try:
            wrapped.settimeout(None)
            super().finish_request(wrapped, client_address)
        finally:
            wrapped.close()  # the plain socket handed over its descriptor: this is the one to close


def serve(app, listen: Listen, tls: ssl.SSLContext | None, stop: threading.Event,  # noqa: ANN001
          ready: Callable[[str], None] | None = None, url_name: str | None = None) -> None:
    """Serve `app` until `stop` is set or Ctrl-C; TLS required unless on loopback."""
    if tls is None and not listen.loopback:
        raise LabError("the portal serves students' data: off loopback it needs TLS (the class's certificate "
                       "or --cert/--key)")
    with listening_socket(listen.host, listen.port, stop) as listener:
        server = _Server(listen.host, listener.getsockname()[1], app, _Handler, fd=listener.fileno())
    server.tls = tls
    server.ssl_context = tls  # what werkzeug reads for wsgi.url_scheme
    url = Listen(listen.host, server.server_address[1]).url(url_name, tls is not None)
    serve_until(server, stop, None if ready is None else lambda: ready(url))
