"""The class portal: the instructor's live view and each student's own page, behind logins.

Safe to expose on the class's network (it is served over TLS there, `serve.py`):

- no page or API answers without a session; a session comes only from a
  link's token (`access.py`), posted once by the login page's script;
- the session cookie is HttpOnly, SameSite=Strict and, over TLS, Secure with
  the `__Host-` prefix (no Domain, Path=/);
- every state-changing request (POST) needs the session's CSRF token in the
  `X-CSRF-Token` header and an Origin (else Referer) of this very site;
- a student's session reaches only their own data: no route takes a student
  id from a student, the id is always the session's;
- login attempts are rate-limited per client address, checks per student
  (and one at a time);
- the Content-Security-Policy allows this origin only, and no inline script
  or style: every script is a file under /static.

Flask's own signed-cookie session is not used: the cookie holds only a random
id, and everything else stays on the server (`access.Access`).
"""

from __future__ import annotations

import contextlib
import hmac
import ipaddress
import logging
import queue
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit

import flask
from flask_sock import ConnectionClosed, Sock

from lab.classroom.dashboard import WORDS, cause_or_check
from lab.common import clip
from lab.model.results import Status, StepResult, StudentResult
from lab.portal.access import Access, Identity, RateLimit, Session
from lab.portal.hints import hints
from lab.portal.progress import Progress
from lab.portal.terminal import SESSION_NAME, Bridge, Hub, Recording, Terminals, new_recording_path

log = logging.getLogger(__name__)

COOKIE = "reglab"
SECURE_COOKIE = "__Host-reglab"  # the browser keeps it only if Secure, Path=/ and without Domain
# xterm.js adds <style> elements of its own: the page's script gives each this response's nonce (portal.js),
# so no inline style is allowed that the page's own code did not make.
CSP = ("default-src 'self'; script-src 'self'; style-src 'self' 'nonce-{nonce}'; img-src 'self'; "
       "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
       "frame-ancestors 'none'")
# Failed logins per client address: attempts, seconds. Only failures count: a class behind one NAT address
# opens thirty good links at once.
LOGIN_ATTEMPTS = (10, 60.0)
CHECKS = (1, 5.0)  # per student: checks, seconds
STUCK_AFTER = 15 * 60  # seconds on one step without progress before the instructor sees "stuck"
SEEN_CHARS = 4000


class Backend(Protocol):
    """What the portal shows and runs, for a class; every text it returns is redacted already."""

    def students(self) -> list[str]: ...

    def steps(self) -> list[tuple[str, str]]:
        """(step id, title), in the tutorial's order."""
        ...

    def cells(self) -> dict[tuple[str, str], StudentResult]:
        """(student, step) -> the last result; missing: never checked."""
        ...

    def instructions(self, student: str, step: str) -> str:
        """The tutorial's text of the step, with this student's values in place of its placeholders."""
        ...

    def commands(self, student: str, step: str) -> str:
        """What `reglab show STEP` prints for this student's lab."""
        ...

    def check(self, student: str | None) -> None:
        """Re-run the observe-only checks of one student (None: everyone); blocks; updates `cells`."""
        ...


@dataclass
class Settings:
    secure: bool = True  # served over TLS: Secure cookie, HSTS
    allowed_hosts: frozenset[str] | None = None  # Host header names answered; None: any
    stuck_after: int = STUCK_AFTER
    every: int | None = None
    on_progress: Callable[[], None] | None = None  # after each change of progress (the progress CSV)
    terminals: Terminals | None = None  # None: no terminals in the browser
    sessions: Path | None = None  # where terminal sessions are recorded (a folder per student)


def _host_name(host: str) -> str:
    if host.startswith("["):
        return host[1:].split("]", 1)[0].lower()
    return (host.rsplit(":", 1)[0] if host.count(":") == 1 else host).lower()


def _is_loopback(name: str) -> bool:
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def _minutes(seconds: float) -> str:
    minutes = int(seconds // 60)
    return f"{minutes // 60} h {minutes % 60:02d} min" if minutes >= 60 else f"{minutes} min"


def create_app(backend: Backend, access: Access, progress: Progress, settings: Settings | None = None) \
        -> flask.Flask:
    settings = settings or Settings()
    app = flask.Flask(__name__)
    app.config.update(MAX_CONTENT_LENGTH=16 * 1024, SESSION_COOKIE_SECURE=settings.secure)
    cookie_name = SECURE_COOKIE if settings.secure else COOKIE
    logins = RateLimit(*LOGIN_ATTEMPTS)
    checks = RateLimit(*CHECKS)
    running: set[str] = set()  # students whose check runs now
    running_lock = threading.Lock()
    class_check = threading.Lock()  # the instructor's "Check now": one at a time
    order = [step for step, _ in backend.steps()]

    def observe(student: str, *, by_student: bool) -> None:
        cells = backend.cells()
        passed = {step: (row := cells.get((student, step))) is not None and row.result.status is Status.PASS
                  for step in order}
        progress.observe(student, passed, order, by_student=by_student)
        if settings.on_progress is not None:
            settings.on_progress()

    # -- every request -------------------------------------------------------------
    @app.before_request
    def guard() -> flask.Response | None:
        flask.g.nonce = secrets.token_urlsafe(16)
        host = _host_name(flask.request.host)
        if settings.allowed_hosts is not None and host not in settings.allowed_hosts:
            return _plain("this portal does not answer to that host name\n", 400)
        if not settings.secure and not _is_loopback(host):
            return _plain("without TLS this portal answers on loopback addresses only\n", 400)
        flask.g.session = access.session(flask.request.cookies.get(cookie_name))
        if flask.request.method not in ("GET", "HEAD", "OPTIONS"):
            if not _same_origin():
                return _plain("refused: a state-changing request must come from this site's own pages\n", 403)
            if flask.request.endpoint != "login_post":
                session: Session | None = flask.g.session
                if session is None:
                    return _plain("log in first: open your link\n", 401)
                sent = flask.request.headers.get("X-CSRF-Token", "")
                if not sent or not hmac.compare_digest(sent, session.csrf):
                    return _plain("refused: missing or wrong CSRF token; reload the page\n", 403)
        return None

    def _same_origin() -> bool:
        own = f"{flask.request.scheme}://{flask.request.host}".lower()
        origin = flask.request.headers.get("Origin")
        if origin is None:
            referer = flask.request.headers.get("Referer")
            if not referer:
                return False
            parts = urlsplit(referer)
            origin = f"{parts.scheme}://{parts.netloc}"
        return origin.lower() == own

    @app.after_request
    def headers(response: flask.Response) -> flask.Response:
        response.headers["Content-Security-Policy"] = CSP.format(nonce=flask.g.get("nonce", "none"))
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["X-Frame-Options"] = "DENY"
        response.headers["Referrer-Policy"] = "no-referrer"
        response.headers["Cross-Origin-Opener-Policy"] = "same-origin"
        response.headers["Cross-Origin-Resource-Policy"] = "same-origin"
        response.headers["Cache-Control"] = "no-store"
        if settings.secure:
            response.headers["Strict-Transport-Security"] = "max-age=31536000"
        return response

    def who() -> Identity | None:
        session = flask.g.get("session")
        return session.identity if session is not None else None

    def csrf() -> str:
        return flask.g.session.csrf if flask.g.get("session") is not None else ""

    # -- logging in ------------------------------------------------------------------
    @app.get("/login")
    def login_page() -> str:
        return flask.render_template("login.html")

    @app.post("/login")
    def login_post() -> flask.Response:
        address = flask.request.remote_addr or "?"
        if not logins.allow(address, count=False):
            return _plain("too many failed login attempts; wait a minute\n", 429)
        data = flask.request.get_json(silent=True) or {}
        token = data.get("token") if isinstance(data, dict) else None
        found = access.login(token) if isinstance(token, str) else None
        if found is None:
            logins.hit(address)
            return _plain("this link is not valid (or was renewed); ask your instructor for yours\n", 403)
        session_id, _ = found
        response = flask.Response(status=204)
        response.set_cookie(cookie_name, session_id, httponly=True, secure=settings.secure, samesite="Strict",
                            path="/", max_age=None)
        return response

    @app.post("/logout")
    def logout() -> flask.Response:
        access.logout(flask.request.cookies.get(cookie_name, ""))
        response = flask.Response(status=204)
        response.delete_cookie(cookie_name, path="/", secure=settings.secure, httponly=True, samesite="Strict")
        return response

    # -- pages ---------------------------------------------------------------------------
    @app.get("/favicon.ico")
    def favicon() -> flask.Response:
        return flask.Response(status=204)  # browsers ask; a 404 would be an error in every page's console

    @app.get("/")
    def home() -> flask.Response | str:
        identity = who()
        if identity is None:
            return flask.make_response(flask.render_template("nologin.html"), 401)
        if identity.instructor:
            return flask.render_template("instructor.html", data=class_view(), csrf=csrf(), nonce=flask.g.nonce,
                                         sessions=sessions_list())
        machines = settings.terminals.machines(identity.student) if settings.terminals else []
        return flask.render_template("student.html", data=student_view(identity.student), csrf=csrf(),
                                     nonce=flask.g.nonce, machines=machines)

    @app.get("/api/me")
    def api_me() -> flask.Response:
        identity = who()
        if identity is None or identity.instructor:
            return _plain("a student's page: open your own link\n", 401 if identity is None else 404)
        return flask.jsonify(student_view(identity.student))

    @app.post("/api/check")
    def api_check() -> flask.Response:
        identity = who()
        if identity is None or identity.instructor:
            return _plain("a student's check: open your own link\n", 404)
        student = identity.student
        with running_lock:
            if student in running:
                return _plain("your check is already running\n", 409)
            if not checks.allow(student):
                return _plain("checked a moment ago; wait a few seconds\n", 429)
            running.add(student)
        try:
            backend.check(student)
            observe(student, by_student=True)
        except Exception as exc:  # shown to the student, never a traceback
            log.error("check of %s failed: %s", student, exc)
            return _plain("the check could not run just now; try again in a minute\n", 503)
        finally:
            with running_lock:
                running.discard(student)
        return flask.jsonify(student_view(student))

    @app.get("/api/class")
    def api_class() -> flask.Response:
        identity = who()
        if identity is None or not identity.instructor:
            return _plain("the instructor's view\n", 404 if identity else 401)
        return flask.jsonify(class_view())

    @app.post("/api/refresh")
    def api_refresh() -> flask.Response:
        identity = who()
        if identity is None or not identity.instructor:
            return _plain("the instructor's view\n", 404)
        if not class_check.acquire(blocking=False):
            return _plain("a check of the class is running\n", 409)
        try:
            backend.check(None)
            for student in backend.students():
                observe(student, by_student=False)
        except Exception as exc:
            log.error("class check failed: %s", exc)
            return _plain("the class check failed; see the log\n", 503)
        finally:
            class_check.release()
        return flask.jsonify(class_view())

    # -- what the pages show ------------------------------------------------------------
    def student_view(student: str) -> dict:
        cells = backend.cells()
        current, on_it = progress.position(student)
        steps = []
        for step, title in backend.steps():
            row = cells.get((student, step))
            result: StepResult | None = row.result if row else None
            status = WORDS[result.status] if result else WORDS[Status.NOT_RUN]
            earned = hints(result, progress.fails(student, step),
                           backend.commands(student, step) if progress.fails(student, step) >= 3 else "")
            for hint in earned:
                progress.shown(student, step, hint.level)
            steps.append({
                "id": step, "title": title, "status": status, "current": step == current,
                "instructions": backend.instructions(student, step),
                "cause": cause_or_check(result) if result else "",
                "seen": clip.tail(result.seen, 40)[-SEEN_CHARS:] if result and result.status is not Status.PASS
                else "",
                "checked_at": row.checked_at if row else "",
                "hints": [{"level": h.level, "kind": h.kind, "text": h.text} for h in earned],
            })
        return {"student": student, "current": current, "time_on_step": _minutes(on_it), "steps": steps,
                "passed": sum(s["status"] == WORDS[Status.PASS] for s in steps), "total": len(steps)}

    def class_view() -> dict:
        cells = backend.cells()
        rows = []
        for student in backend.students():
            current, on_it = progress.position(student)
            statuses = []
            for step in order:
                row = cells.get((student, step))
                statuses.append({"step": step, "status": WORDS[row.result.status] if row else
                                 WORDS[Status.NOT_RUN], "cause": cause_or_check(row.result) if row else ""})
            rows.append({"student": student, "current": current if progress.seen(student) else None,
                         "time_on_step": _minutes(on_it) if progress.seen(student) else "",
                         "seconds_on_step": round(on_it), "stuck": bool(current) and on_it >= settings.stuck_after,
                         "hints": progress.hints_used(student), "cells": statuses,
                         "passed": sum(c["status"] == WORDS[Status.PASS] for c in statuses)})
        return {"steps": [{"id": s, "title": t} for s, t in backend.steps()], "rows": rows,
                "stuck_after": _minutes(settings.stuck_after), "every": settings.every}

    # -- terminals ---------------------------------------------------------------------------
    hub = Hub()
    app.extensions["reglab_hub"] = hub
    app.config["SOCK_SERVER_OPTIONS"] = {"ping_interval": 25, "max_message_size": 64 * 1024}
    sock = Sock(app)

    def ws_allowed(instructor: bool) -> Identity | None:
        """A websocket's handshake: this site's own page (Origin), a session of the right kind, its CSRF token."""
        identity = who()
        if identity is None or identity.instructor != instructor or not _same_origin():
            return None
        sent = flask.request.args.get("csrf", "")
        if not sent or not hmac.compare_digest(sent, csrf()):
            return None
        return identity

    def _size(name: str, default: int, most: int) -> int:
        value = flask.request.args.get(name, "")
        return min(int(value), most) if value.isdigit() and int(value) > 0 else default

    @sock.route("/ws/terminal/<machine>")
    def ws_terminal(ws, machine: str) -> None:  # noqa: ANN001
        identity = ws_allowed(instructor=False)
        if identity is None or settings.terminals is None or settings.sessions is None:
            ws.close(reason=1008, message="refused")
            return
        student = identity.student
        if machine not in settings.terminals.machines(student):
            ws.close(reason=1008, message="no such machine in your lab")
            return
        cols, rows = _size("cols", 80, 500), _size("rows", 24, 200)
        try:
            channel = settings.terminals.open(student, machine, cols, rows)
        except Exception as exc:  # noqa: BLE001  said to the student in their terminal, never a traceback
            log.error("terminal %s/%s: %s", student, machine, exc)
            ws.send(f"\r\n[reglab: could not reach {machine}: {settings.terminals.redact(student, str(exc))}]\r\n")
            ws.close(reason=1011, message="could not reach the machine")
            return
        key = (student, machine)
        recording = Recording(new_recording_path(settings.sessions, student, machine), cols, rows,
                              f"{student} on {machine}")
        bridge = Bridge(channel, recording, hub, key, lambda text: settings.terminals.redact(student, text),
                        lambda text: settings.terminals.unfinished(student, text))
        closed = threading.Event()
        hub.started(key)
        pump = threading.Thread(target=bridge.pump_output, args=(ws.send, closed), daemon=True,
                                name=f"terminal-{student}-{machine}")
        pump.start()
        try:
            while not closed.is_set():
                message = ws.receive(timeout=1)
                if message is not None:
                    bridge.handle(message if isinstance(message, str) else message.decode("utf-8", "replace"))
        except ConnectionClosed:
            pass
        finally:
            closed.set()
            channel.close()
            pump.join(5)
            recording.close()
            hub.ended(key)
            with contextlib.suppress(Exception):
                ws.close()

    @sock.route("/ws/watch/<student>/<machine>")
    def ws_watch(ws, student: str, machine: str) -> None:  # noqa: ANN001
        if ws_allowed(instructor=True) is None or student not in backend.students():
            ws.close(reason=1008, message="refused")
            return
        key = (student, machine)
        watcher = hub.watch(key)
        try:
            while ws.connected:
                try:
                    ws.send(watcher.get(timeout=1))
                except queue.Empty:
                    if key not in hub.live():
                        ws.send("\r\n[reglab: the session ended]\r\n")
                        break
        except ConnectionClosed:
            pass
        finally:
            hub.unwatch(key, watcher)
            with contextlib.suppress(Exception):
                ws.close()

    def sessions_list() -> list[dict]:
        if settings.sessions is None or not settings.sessions.is_dir():
            return []
        found = []
        live = set(hub.live())
        for student in backend.students():
            folder = settings.sessions / student
            for path in sorted(folder.glob("*.cast")) if folder.is_dir() else []:
                machine = path.stem.split("-", 1)[1].rsplit("-", 1)[0] if path.stem.count("-") > 1 \
                    else path.stem.split("-", 1)[1]
                found.append({"student": student, "name": path.name, "machine": machine,
                              "bytes": path.stat().st_size})
        return found + [{"student": s, "name": "", "machine": m, "live": True} for s, m in sorted(live)]

    @app.get("/api/sessions")
    def api_sessions() -> flask.Response:
        identity = who()
        if identity is None or not identity.instructor:
            return _plain("the instructor's view\n", 404 if identity else 401)
        return flask.jsonify(sessions_list())

    @app.get("/api/sessions/<student>/<name>")
    def api_session(student: str, name: str) -> flask.Response:
        identity = who()
        if identity is None or not identity.instructor:
            return _plain("the instructor's view\n", 404 if identity else 401)
        if student not in backend.students() or not SESSION_NAME.fullmatch(name) or settings.sessions is None:
            return _plain("no such session\n", 404)
        path = settings.sessions / student / name
        if not path.is_file():
            return _plain("no such session\n", 404)
        return flask.Response(path.read_text(encoding="utf-8", errors="replace"), 200,
                              mimetype="application/x-asciicast")

    app.extensions["reglab_observe"] = observe
    return app


def _plain(text: str, status: int) -> flask.Response:
    return flask.Response(text, status, mimetype="text/plain")
