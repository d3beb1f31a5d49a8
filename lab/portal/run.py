"""`reglab class serve`: the portal of one class, its links, its certificate and its files.

Everything the portal keeps is under the class's folder, `portal/`:
  access.json      the SHA-256 of every link's token (0600)
  progress.json    each student's position, failed checks and hints shown (0600)
  progress.csv     minutes, hints and failed checks per student and step (the gradebook has the
                   minutes and hints too, as of its last write)
  pki/             the class's CA and the portal's certificate (keys 0600)
  sessions/ID/     each student's terminal sessions, asciicast v2 (0600)
  gateway/         the SSH gateway's sshd_config, host key and log
  url              where the portal was last served (for the links `bundle --new-link` prints)
and in each student's bundle folder (`students/ID/`, 0600): `portal-link`, and `ca.crt` to trust.
"""

from __future__ import annotations

import shutil
import threading
from collections.abc import Callable
from pathlib import Path

from lab.classroom.gradebook import Effort
from lab.classroom.room import ClassBoard, Classroom
from lab.common.errors import LabError
from lab.common.files import atomic_write, private_dir, write_private
from lab.portal.access import Access
from lab.portal.app import STUCK_AFTER, Settings, create_app
from lab.portal.backend import ClassPortal, ClassTerminals
from lab.portal.gateway import Entry, Gateway, known_hosts_line, parse_ssh_config, student_ssh_config
from lab.portal.progress import Progress, progress_csv
from lab.portal.serve import Listen, class_certificate, serve, tls_context

LINK_FILE = "portal-link"


def portal_dir(classroom: Classroom) -> Path:
    return private_dir(classroom.dir / "portal")


def access_for(classroom: Classroom) -> Access:
    return Access(portal_dir(classroom) / "access.json")


def portal_url(classroom: Classroom) -> str:
    path = classroom.dir / "portal" / "url"
    return path.read_text().strip() if path.is_file() else ""


def new_link(classroom: Classroom, student: str, access: Access | None = None) -> str:
    """A new personal link for `student` (the old one stops working), written into their bundle."""
    member = classroom.member(student)
    url = portal_url(classroom)
    if not url:
        raise LabError("the portal has not been served yet: `reglab class serve --listen ADDR:PORT` makes the "
                       "links (its address goes into them)")
    access = access or access_for(classroom)
    token = access.new_student_token(member.id)
    link = f"{url}/login#{token}"
    folder = private_dir(classroom.dir / "students" / member.id)
    write_private(folder / LINK_FILE, link + "\n")
    return link


def _give_links(classroom: Classroom, access: Access, ca_cert: Path | None) -> None:
    for member in classroom.members:
        folder = classroom.dir / "students" / member.id
        if not folder.is_dir():
            continue  # no bundle yet: its lab is not up
        link_file = folder / LINK_FILE
        if not link_file.is_file() or not access.has_token(member.id) \
                or not link_file.read_text().startswith(portal_url(classroom) + "/"):
            new_link(classroom, member.id, access)
        if ca_cert is not None:
            shutil.copyfile(ca_cert, folder / "ca.crt")


def gateway_entries(classroom: Classroom) -> list[Entry]:
    """Each student with a bundle: their public key and their machines' SSH addresses."""
    entries = []
    for member in classroom.members:
        folder = classroom.dir / "students" / member.id
        if not (folder / "id_ed25519.pub").is_file():
            continue
        machines = parse_ssh_config(_direct_config(folder).read_text())
        entries.append(Entry(member.id, (folder / "id_ed25519.pub").read_text(),
                             tuple(f"{m.host}:{m.port}" for m in machines)))
    return entries


def _direct_config(folder: Path) -> Path:
    """The bundle's ssh_config as `class up` wrote it (straight to the machines), kept aside once."""
    direct = folder / "ssh_config.direct"
    current = folder / "ssh_config"
    if current.is_file() and "ProxyJump" not in current.read_text():
        write_private(direct, current.read_text())
    return direct


def give_gateway(classroom: Classroom, gateway: Gateway, address: str) -> None:
    """Each bundle's ssh_config through the gateway, and the gateway's host key in its known_hosts."""
    host_key = gateway.public_host_key()
    for member in classroom.members:
        folder = classroom.dir / "students" / member.id
        if not (folder / "id_ed25519.pub").is_file():
            continue
        machines = parse_ssh_config(_direct_config(folder).read_text())
        known = folder / "known_hosts"
        lines = [line for line in (known.read_text().splitlines(keepends=True) if known.is_file() else [])
                 if "reglab-gateway" not in line and not line.startswith(f"[{address}]:{gateway.port} ")]
        write_private(known, "".join(lines) + known_hosts_line(address, gateway.port, host_key))
        write_private(folder / "ssh_config", student_ssh_config(machines, address, gateway.port, gateway.user,
                                                                folder / "id_ed25519", known))


def class_effort(progress: Progress, students: list[str], steps: list[str]) -> dict[tuple[str, str], Effort]:
    """The gradebook's time on each step and hints used, for every student the portal has seen."""
    return {(student, step): Effort(progress.seconds_on(student, step), progress.hints_used(student, step))
            for student in students if progress.seen(student) for step in steps}


def run(classroom: Classroom, listen: Listen, *, cert: Path | None = None, key: Path | None = None,
        every: int | None = None, stuck_after: int = STUCK_AFTER, say: Callable[[str], None] = print,
        stop: threading.Event | None = None, ssh_port: int | None = None) -> None:
    """Serve the class's portal until Ctrl-C; print the instructor's one-time link first."""
    stop = stop or threading.Event()
    folder = portal_dir(classroom)
    tls = None
    names: frozenset[str] | None = None
    ca_cert = None
    url_name = None
    if cert is not None or key is not None:
        if cert is None or key is None:
            raise LabError("--cert and --key go together: the portal's certificate and its private key")
        tls = tls_context(cert, key)
    elif not listen.loopback:
        files, names = class_certificate(folder / "pki", listen)
        tls = tls_context(files.cert, files.key)
        ca_cert = files.ca_cert
        url_name = None if listen.unspecified else listen.host
        if listen.unspecified:
            url_name = sorted(n for n in names if not n[0].isdigit())[0]
    scheme_url = listen.url(url_name, tls is not None)
    atomic_write(folder / "url", scheme_url + "\n", 0o600)
    access = access_for(classroom)
    _give_links(classroom, access, ca_cert)
    secret = access.new_instructor_secret()
    progress = Progress(folder / "progress.json")
    board = ClassBoard(classroom)
    backend = ClassPortal(classroom, board)
    steps = [s for s, _ in board.steps()]

    def write_progress() -> None:
        atomic_write(folder / "progress.csv", progress_csv(progress, board.students(), steps), 0o600)

    board.effort = lambda: class_effort(progress, board.students(), steps)

    allowed = None if names is None else names | {"localhost", "127.0.0.1"}
    settings = Settings(secure=tls is not None, allowed_hosts=allowed, stuck_after=stuck_after, every=every,
                        on_progress=write_progress, terminals=ClassTerminals(classroom),
                        sessions=private_dir(folder / "sessions"))
    app = create_app(backend, access, progress, settings)
    if every is not None:
        observe = app.extensions["reglab_observe"]

        def periodic() -> None:
            while not stop.wait(every):
                try:
                    board.refresh(fresher_than=every)  # a lab its student just checked is fresh already
                    for student in board.students():
                        observe(student, by_student=False)
                except Exception as exc:  # noqa: BLE001  a failed round must not end the portal
                    say(f"periodic check failed: {exc}")

        threading.Thread(target=periodic, name="reglab-every", daemon=True).start()

    gateway = None
    if ssh_port is not None:
        if listen.loopback or listen.unspecified:
            raise LabError("--ssh-port: the gateway listens on the portal's --listen address, which must be one "
                           "address of the class network (not loopback, not 0.0.0.0)")
        gateway = Gateway(folder / "gateway", listen.host, ssh_port, classroom.name)
        gateway.start(gateway_entries(classroom))
        try:
            give_gateway(classroom, gateway, listen.host)
        except BaseException:
            gateway.stop()
            raise
        say(f"SSH gateway: {listen.host}:{ssh_port} (account {gateway.user}); bundles reach the machines through "
            "it (ProxyJump)")

    def ready(url: str) -> None:
        say(f"portal of class {classroom.name}: {url}/ (Ctrl-C stops it)")
        say(f"instructor's link, shown only now: {url}/login#{secret}")
        if ca_cert is not None:
            say(f"students' links are in their bundles (`reglab class bundle ID`), with the class CA {ca_cert}")

    try:
        serve(app, listen, tls, stop, ready, url_name)
    finally:
        try:
            board.save_effort()  # the hints shown since the last check count too
        except LabError as exc:
            say(f"the gradebook's time on step and hints were not saved: {exc}")
        finally:
            if gateway is not None:
                gateway.stop()
