"""The instructor's live dashboard: every student's lab, step by step, on one page.

A small Flask app over a `Board`, which knows the students, the steps and each
student's result per step (a StudentResult, the gradebook's row), and re-runs
the observe-only checks on demand. The dashboard neither grades nor reaches a
machine itself; how a Board grades is another module's concern. Its status
words are the gradebook's (`WORDS`).

The grid holds students' data, so `serve` listens on loopback only and every
request must name a loopback host (a DNS-rebinding page cannot read it). The page
is self-contained: inline CSS and JavaScript, nothing fetched from elsewhere
(its Content-Security-Policy says so).
"""

from __future__ import annotations

import ipaddress
import logging
import secrets
import socket
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Protocol

import flask
from markupsafe import Markup
from werkzeug.serving import WSGIRequestHandler, make_server

from lab.classroom.gradebook import WORDS, not_checked
from lab.common import clip
from lab.common.errors import LabError
from lab.model.results import Status, StepResult, StudentResult
from lab.reports.text import plain_text

log = logging.getLogger(__name__)

LABELS = {WORDS[Status.PASS]: "pass", WORDS[Status.FAIL]: "fail", WORDS[Status.NOT_RUN]: "not yet",
          WORDS[Status.UNREACHABLE]: "unreachable"}  # a cell's text, by its status word
ERROR_LINES = 10


def cause_or_check(result: StepResult) -> str:
    """What to show of a failure: its known cause, else what the check expected and the first thing it saw."""
    if result.cause_line or result.status is Status.PASS:
        return result.cause_line
    seen = result.seen.strip().splitlines()[0] if result.seen.strip() else "nothing"
    return f"expected {result.expected}; saw {seen}" if result.expected else ""


def cell(step: str, row: StudentResult | None) -> dict[str, str]:
    """One student's result on one step as /api/grid gives it and the page shows it; None: never checked."""
    row = row or not_checked("", step)
    result = row.result
    return {"step": step, "status": WORDS[result.status], "cause": plain_text(cause_or_check(result)),
            "fix": " / ".join(cause.fix for cause in result.causes), "expected": plain_text(result.expected),
            "seen": plain_text(result.seen), "checked_at": row.checked_at}


class Board(Protocol):
    """What the dashboard shows and what "Check now" runs."""

    def students(self) -> list[str]: ...

    def steps(self) -> list[tuple[str, str]]:
        """(step id, title), in the tutorial's order."""
        ...

    def cells(self) -> dict[tuple[str, str], StudentResult]:
        """(student, step id) -> the last result, its texts redacted; a missing pair is shown as not yet checked."""
        ...

    def refresh(self, student: str | None = None) -> None:
        """Re-run the observe-only checks (of one student, or all); blocks, may take seconds."""
        ...

    def refreshing(self) -> bool: ...


class _Refresher:
    """Runs `board.refresh` one at a time, in the background, and keeps how the last one ended."""

    def __init__(self, board: Board, redact: Callable[[str], str]) -> None:
        self._board = board
        self._redact = redact
        self._lock = threading.Lock()
        self._running = False
        self.last_error = ""
        self.last_finished = ""

    @property
    def running(self) -> bool:
        with self._lock:
            return self._running

    def _claim(self) -> bool:
        with self._lock:
            if self._running or self._board.refreshing():
                return False
            self._running = True
            return True

    def start(self, student: str | None = None) -> bool:
        """Start a refresh in a thread unless one is running; True if this call started it."""
        if not self._claim():
            return False
        threading.Thread(target=self._run, args=(student,), name="reglab-refresh", daemon=True).start()
        return True

    def run_now(self) -> bool:
        """Refresh in this thread unless one is running (the periodic refresh); True if it ran."""
        if not self._claim():
            return False
        self._run(None)
        return True

    def _run(self, student: str | None) -> None:
        error = ""
        try:
            self._board.refresh(student)
        except Exception as exc:  # shown on the page: a failed check must not stop the server
            error = clip.tail(self._redact(str(exc) or type(exc).__name__), ERROR_LINES)
            log.error("refresh failed: %s", error)
        finished = _now()
        with self._lock:
            self.last_error = error
            self.last_finished = finished
            self._running = False


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _when(iso: str) -> datetime | None:
    try:
        return datetime.fromisoformat(iso)
    except ValueError:
        return None


def _shown_time(iso: str) -> str:
    """An ISO time as the page shows it; what cannot be parsed is shown as it came."""
    when = _when(iso)
    if when is None:
        return iso
    if when.utcoffset() is not None and not when.utcoffset():
        return when.strftime("%Y-%m-%d %H:%M:%S UTC")
    return when.strftime("%Y-%m-%d %H:%M:%S %z").strip()


def _last_checked(cells: list[dict[str, str]]) -> str:
    times = [(when, c["checked_at"]) for c in cells if c["checked_at"] and (when := _when(c["checked_at"]))]
    if not times:
        return ""
    try:
        return max(times, key=lambda pair: pair[0])[1]
    except TypeError:  # naive and aware times mixed: the Board broke its contract; show the newest string
        return max(text for _, text in times)


def grid(board: Board, refresher: _Refresher, every: int | None) -> dict:
    """The whole dashboard as plain data: what /api/grid returns and the page renders."""
    steps = board.steps()
    cells = board.cells()
    rows = []
    for student in board.students():
        row = [cell(step, cells.get((student, step))) for step, _ in steps]
        rows.append(
            {
                "student": student,
                "passed": sum(c["status"] == WORDS[Status.PASS] for c in row),
                "total": len(row),
                "last_checked": _last_checked(row),
                "cells": row,
            }
        )
    return {
        "students": [row["student"] for row in rows],
        "steps": [{"id": step, "title": title} for step, title in steps],
        "rows": rows,
        "passed_per_step": [sum(row["cells"][i]["status"] == "pass" for row in rows) for i in range(len(steps))],
        "refreshing": refresher.running or board.refreshing(),
        "every": every,
        "last_error": refresher.last_error,
        "last_finished": refresher.last_finished,
    }


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _host_name(host: str) -> str:
    """The name in a Host header, without its port: "[::1]:5000" -> "::1", "localhost:80" -> "localhost"."""
    if host.startswith("["):
        return host[1:].split("]", 1)[0]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def _periodic(refresher: _Refresher, every: int, stop: threading.Event) -> None:
    while not stop.is_set():
        refresher.run_now()
        if stop.wait(every):
            return


def create_app(
    board: Board,
    every: int | None = None,
    *,
    stop: threading.Event | None = None,
    redact: Callable[[str], str] = str,
) -> flask.Flask:
    """The dashboard over `board`; with `every`, a daemon thread refreshes it every `every` seconds.

    `stop` (also `app.extensions["reglab_stop"]`) ends the periodic refresh. `redact` is
    applied to a failed refresh's message before the page shows it (a Board's own
    texts are expected redacted already).
    """
    if every is not None and (isinstance(every, bool) or not isinstance(every, int) or every <= 0):
        raise LabError(f"--every must be a whole number of seconds above 0, not {every!r}")
    stop = stop if stop is not None else threading.Event()
    refresher = _Refresher(board, redact)
    app = flask.Flask(__name__)
    app.extensions["reglab_stop"] = stop
    app.extensions["reglab_refresher"] = refresher

    @app.before_request
    def loopback_hosts_only() -> flask.Response | None:
        if not _is_loopback(_host_name(flask.request.host)):
            return flask.Response("this dashboard answers on loopback addresses only\n", 400, mimetype="text/plain")
        flask.g.nonce = secrets.token_urlsafe(16)
        return None

    @app.after_request
    def self_contained(response: flask.Response) -> flask.Response:
        nonce = flask.g.get("nonce", "")
        response.headers["Content-Security-Policy"] = (
            f"default-src 'none'; script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; "
            "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
        )
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Cache-Control"] = "no-store"
        return response

    def render(fragment: bool) -> str:
        data = grid(board, refresher, every)
        board_html = flask.render_template_string(_FRAGMENT, grid=data, labels=LABELS, shown_time=_shown_time)
        if fragment:
            return board_html
        return flask.render_template_string(_PAGE, grid=data, nonce=flask.g.nonce, board_html=Markup(board_html))

    @app.get("/")
    def page() -> str:
        return render(fragment=False)

    @app.get("/grid")
    def grid_fragment() -> str:
        """The grid alone, as HTML: the page swaps it in after a check (one renderer, escaped by Jinja)."""
        return render(fragment=True)

    @app.get("/api/grid")
    def api_grid() -> flask.Response:
        return flask.jsonify(grid(board, refresher, every))

    @app.post("/refresh")
    def refresh() -> tuple[flask.Response, int]:
        student = flask.request.form.get("student") or None
        if student is not None and student not in board.students():
            return flask.jsonify({"started": False, "error": f"no student {student!r} in this class"}), 400
        return flask.jsonify({"started": refresher.start(student)}), 202

    if every is not None:
        threading.Thread(target=_periodic, args=(refresher, every, stop), name="reglab-every", daemon=True).start()
    return app


class _QuietHandler(WSGIRequestHandler):
    """No access log: the page polls twice a second while checks run, which would flood the terminal."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass


def serve(
    board: Board,
    host: str = "127.0.0.1",
    port: int = 0,
    every: int | None = None,
    ready: Callable[[str], None] | None = None,
    *,
    stop: threading.Event | None = None,
    redact: Callable[[str], str] = str,
) -> None:
    """Serve the dashboard on loopback until Ctrl-C or `stop` is set; `ready(url)` once listening."""
    if not _is_loopback(host):
        raise LabError(
            f"the dashboard listens on loopback only (it shows students' results), not on {host!r}; "
            "use 127.0.0.1 and an SSH tunnel to reach it from elsewhere"
        )
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise LabError(f"port must be a number from 0 to 65535, not {port!r}")
    bind = "127.0.0.1" if host.lower() == "localhost" else host.strip("[]")
    stop = stop if stop is not None else threading.Event()
    app = create_app(board, every, stop=stop, redact=redact)
    with listening_socket(bind, port, stop) as listener:
        bound = listener.getsockname()[1]
        server = make_server(bind, bound, app, threaded=True, request_handler=_QuietHandler, fd=listener.fileno())
    shown = f"[{bind}]" if ":" in bind else bind
    serve_until(server, stop, None if ready is None else lambda: ready(f"http://{shown}:{bound}/"))


def listening_socket(host: str, port: int, stop: threading.Event) -> socket.socket:
    """A socket bound and listening on host:port; a clear LabError (and `stop` set) when it cannot be.

    NOTE: bound here, not by werkzeug's make_server, which prints and calls sys.exit on a busy port.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        return socket.create_server((host, port), family=family)
    except OSError as exc:
        stop.set()
        raise LabError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc


def serve_until(server, stop: threading.Event, announce: Callable[[], None] | None = None) -> None:  # noqa: ANN001
    """Handle requests until `stop` is set or Ctrl-C; `announce()` once serving; the server closed either way."""
    server.timeout = 0.2  # how often the loop below looks at `stop`
    try:
        if announce is not None:
            announce()
        while not stop.is_set():
            server.handle_request()
    except KeyboardInterrupt:
        pass
    finally:
        stop.set()
        server.server_close()


_FRAGMENT = """\
<p id="state">
  {%- if grid.every %}checked every {{ grid.every }} s{% else %}checked on demand{% endif %}
  {%- if grid.last_finished %}; last check finished {{ shown_time(grid.last_finished) }}{% endif %}
  {%- if grid.refreshing %}; <strong>checking now…</strong>{% endif %}
</p>
{% if grid.last_error %}<p id="error" class="error" role="alert">last check failed: {{ grid.last_error }}</p>{% endif %}
<table id="grid">
  <caption>Each student's lab, step by step ({{ grid.rows | length }} students)</caption>
  <thead>
    <tr>
      <th scope="col">student</th>
      {%- for step in grid.steps %}
      <th scope="col" title="{{ step.title }}">{{ step.id }}</th>
      {%- endfor %}
      <th scope="col">passed</th>
      <th scope="col">last checked</th>
      <th scope="col"><span class="sr">check one student</span></th>
    </tr>
  </thead>
  <tbody>
    {%- for row in grid.rows %}
    <tr data-student="{{ row.student }}">
      <th scope="row">{{ row.student }}</th>
      {%- for cell in row.cells %}
      <td class="cell cell-{{ cell.status }}" data-student="{{ row.student }}" data-step="{{ cell.step }}"
          data-status="{{ cell.status }}"{% if cell.cause %} title="{{ cell.cause }}"{% endif %}>
        {%- if cell.status in ("fail", "unreachable") and (cell.cause or cell.fix or cell.expected or cell.seen) %}
        <details>
          <summary>{{ labels[cell.status] }}</summary>
          <dl>
            {%- for key in ("cause", "fix", "expected", "seen") if cell[key] %}
            <dt>{{ key }}</dt>
            <dd>{% if key == "seen" %}<pre>{{ cell[key] }}</pre>{% else %}{{ cell[key] }}{% endif %}</dd>
            {%- endfor %}
            {%- if cell.checked_at %}<dt>checked</dt><dd>{{ shown_time(cell.checked_at) }}</dd>{% endif %}
          </dl>
        </details>
        {%- else %}{{ labels[cell.status] }}{% endif -%}
      </td>
      {%- endfor %}
      <td class="passed">{{ row.passed }}/{{ row.total }}</td>
      <td class="checked">{% if row.last_checked %}<time datetime="{{ row.last_checked }}">
        {{- shown_time(row.last_checked) }}</time>{% else %}never{% endif %}</td>
      <td><button type="button" class="check-one" data-student="{{ row.student }}"
          aria-label="Check {{ row.student }} now">check</button></td>
    </tr>
    {%- endfor %}
  </tbody>
  <tfoot>
    <tr>
      <th scope="row">passed</th>
      {%- for count in grid.passed_per_step %}
      <td>{{ count }}/{{ grid.rows | length }}</td>
      {%- endfor %}
      <td colspan="3"></td>
    </tr>
  </tfoot>
</table>
"""

_PAGE = """\
<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>reglab: the class</title>
<style nonce="{{ nonce }}">
  body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5rem; color: #222; }
  table { border-collapse: collapse; }
  th, td { border: 1px solid #ccc; padding: .25rem .5rem; text-align: left; vertical-align: top; }
  thead th { background: #f3f3f3; }
  .cell-pass { background: #dff5e1; color: #14532d; }
  .cell-fail { background: #fde2e1; color: #7f1d1d; font-weight: bold; }
  .cell-not-checked { color: #777; }
  .cell-unreachable { background: #eee; color: #555; font-style: italic; }
  details summary { cursor: pointer; }
  details dl { font-weight: normal; max-width: 32rem; margin: .25rem 0; }
  details dt { font-weight: bold; }
  details dd { margin: 0 0 .25rem 0; }
  details pre { white-space: pre-wrap; margin: 0; }
  .error { color: #7f1d1d; white-space: pre-wrap; }
  .sr { position: absolute; width: 1px; height: 1px; overflow: hidden; clip: rect(0 0 0 0); }
</style>
</head>
<body>
<h1>reglab: the class</h1>
<p><button type="button" id="check-now">Check now</button> <span id="note" role="status"></span></p>
<div id="board">
{{ board_html }}
</div>
<script nonce="{{ nonce }}">
(function () {
  "use strict";
  const board = document.getElementById("board");
  const note = document.getElementById("note");
  const checkNow = document.getElementById("check-now");
  const urls = {grid: {{ url_for("grid_fragment") | tojson }}, api: {{ url_for("api_grid") | tojson }},
                refresh: {{ url_for("refresh") | tojson }}};
  const every = {{ (grid.every or 0) | tojson }};
  let busy = false;

  function key(td) { return td.dataset.student + "\\u0000" + td.dataset.step; }

  async function reload() {
    const open = new Set(Array.from(board.querySelectorAll("td details[open]"), d => key(d.closest("td"))));
    const response = await fetch(urls.grid, {cache: "no-store"});
    if (!response.ok) { throw new Error("the grid answered " + response.status); }
    board.innerHTML = await response.text();
    board.querySelectorAll("td details").forEach(d => { if (open.has(key(d.closest("td")))) { d.open = true; } });
  }

  async function settled() {
    for (;;) {
      const response = await fetch(urls.api, {cache: "no-store"});
      if (!response.ok) { throw new Error("the grid answered " + response.status); }
      if (!(await response.json()).refreshing) { return; }
      await reload();
      await new Promise(resolve => setTimeout(resolve, 500));
    }
  }

  async function check(student) {
    if (busy) { return; }
    busy = true;
    checkNow.disabled = true;
    note.textContent = student ? "checking " + student + "…" : "checking…";
    try {
      const form = new FormData();
      if (student) { form.append("student", student); }
      const response = await fetch(urls.refresh, {method: "POST", body: form});
      if (response.status !== 202) {
        throw new Error((await response.json()).error || "refresh answered " + response.status);
      }
      await settled();
      await reload();
      note.textContent = "";
    } catch (error) {
      note.textContent = "could not check: " + error.message;
    } finally {
      busy = false;
      checkNow.disabled = false;
    }
  }

  checkNow.addEventListener("click", () => check(null));
  board.addEventListener("click", event => {
    const button = event.target.closest("button.check-one");
    if (button) { check(button.dataset.student); }
  });
  if (every > 0) {
    setInterval(() => { if (!busy) { reload().catch(error => { note.textContent = error.message; }); } },
                Math.max(every, 2) * 1000);
  }
})();
</script>
</body>
</html>
"""
