"""The portal under a class's load for a while: nothing grows, and a student's Check stays quick.

A benchmark, not a timed test (issue 19): `flock /tmp/reglab-e2e.lock pytest -s -p no:logging -o testpaths=
benchmarks/test_portal_soak.py`. It boots a class of REGLAB_SOAK_LABS labs (default 8) on the docker
provider from its own pool (REGLAB_SOAK_POOL, default 10.84.0.0/16; the class REGLAB_SOAK_CLASS, default
`soak`), serves its portal (`reglab class serve --listen 127.0.0.1:PORT
--every 10`, the real command in its own process), and for REGLAB_SOAK_SECONDS (default 600) keeps one
terminal open per student (a websocket to their client machine, typing a command every 5 s) while each
student presses Check every REGLAB_SOAK_CHECK_EVERY seconds (default 15, the students spread over it; the
portal allows one per 5 s), the HTTP POST timed through to its verdict. The labs are as `class up` leaves
them: no step solved, so every step's check fails and is diagnosed (the case a class starts from). Plain
HTTP on loopback: the portal's own code paths, without TLS's cost.

Sampled every REGLAB_SOAK_EVERY seconds (default 10): the serve process's open file descriptors, threads
and SSH connections, and on each machine its sshd processes and established connections to port 22
(`docker top`, `ss` in the machine's network namespace). Written to
`samples.csv`, `checks.csv` and `summary.json` in REGLAB_SOAK_OUT (default `.lab/soak/UTC-STAMP`).

Flat means: the last minute's largest value is at most the first minute's largest plus a small slack
(SLACK; the first minute starts once every terminal is open). Quick means: the 95th percentile of the
Checks' times is under 2 s. Both are asserted after the files are written and the summary printed.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from http.client import HTTPConnection
from pathlib import Path

import pytest
import yaml
from simple_websocket import Client, ConnectionClosed

from lab.classroom.room import Classroom
from lab.common.progress import Progress
from lab.engine.session import load_lab

pytestmark = pytest.mark.e2e

CLASS = os.environ.get("REGLAB_SOAK_CLASS", "soak")
POOL = os.environ.get("REGLAB_SOAK_POOL", "10.84.0.0/16")  # helpers sharing a host each take their own
LABS = int(os.environ.get("REGLAB_SOAK_LABS", "8"))
JOBS = int(os.environ.get("REGLAB_SOAK_JOBS", "4"))  # labs booted at once by `class up`
SECONDS = int(os.environ.get("REGLAB_SOAK_SECONDS", "600"))
EVERY = int(os.environ.get("REGLAB_SOAK_EVERY", "10"))
CHECK_EVERY = max(5.2, float(os.environ.get("REGLAB_SOAK_CHECK_EVERY", "15")))  # the portal allows one per 5 s
OUT = Path(os.environ.get("REGLAB_SOAK_OUT") or Path(".lab") / "soak" / datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ"))
CHECK_P95_LIMIT = 2.0
SLACK = {"serve_fds": 16, "serve_threads": 4, "serve_ssh": 2, "sshd": 2, "ssh_established": 2}


def reglab(*args: str) -> list[str]:
    return [str(Path(sys.executable).parent / "reglab"), *args]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Student:
    """One student's browser, as the portal sees it: a session cookie, the page's CSRF token, a terminal."""

    def __init__(self, base: str, link: str) -> None:
        self.base = base
        self.host, self.port = base.split("//", 1)[1].rsplit(":", 1)
        token = link.split("#", 1)[1]
        status, headers, _ = self._request("POST", "/login", json.dumps({"token": token}).encode(),
                                           {"Content-Type": "application/json"})
        assert status == 204, f"login: {status}"
        self.cookie = headers["Set-Cookie"].split(";", 1)[0]
        status, _, page = self._request("GET", "/")
        assert status == 200, f"student page: {status}"
        self.csrf = re.search(rb'name="csrf-token" content="([^"]+)"', page).group(1).decode()

    def _request(self, method: str, path: str, body: bytes | None = None, headers: dict | None = None):  # noqa: ANN202
        conn = HTTPConnection(self.host, int(self.port), timeout=120)
        try:
            sent = {"Origin": self.base, **(headers or {})}
            if getattr(self, "cookie", None):
                sent["Cookie"] = self.cookie
            conn.request(method, path, body=body, headers=sent)
            response = conn.getresponse()
            return response.status, dict(response.getheaders()), response.read()
        finally:
            conn.close()

    def check(self) -> tuple[int, float]:
        started = time.monotonic()
        status, _, _ = self._request("POST", "/api/check", b"", {"X-CSRF-Token": self.csrf})
        return status, time.monotonic() - started

    def terminal(self, machine: str) -> Client:
        url = f"ws://{self.host}:{self.port}/ws/terminal/{machine}?csrf={self.csrf}&cols=100&rows=30"
        # simple-websocket's client sends the Host header without the port: the origin as the server sees it
        return Client.connect(url, headers={"Origin": f"http://{self.host}", "Cookie": self.cookie})


def container_pids(names: list[str]) -> dict[str, int]:
    out = subprocess.run(["docker", "inspect", "-f", "{{.Name}} {{.State.Pid}}", *names], capture_output=True,
                         text=True, timeout=60, check=True).stdout
    return {name.lstrip("/"): int(pid) for name, pid in (line.split() for line in out.splitlines())}


def sshd_count(container: str) -> int:
    out = subprocess.run(["docker", "top", container, "-o", "pid,comm"], capture_output=True, text=True,
                         timeout=60, check=True).stdout.splitlines()[1:]
    return sum(line.split()[-1].startswith("sshd") for line in out if line.split())  # sshd-session since 9.8


def ssh_connections_of(pid: int) -> int:
    """The process's own established TCP connections to an SSH port (its terminals and checks)."""
    out = subprocess.run(["ss", "-Htnp", "state", "established", "( dport = :22 )"], capture_output=True,
                         text=True, timeout=60).stdout
    return sum(f"pid={pid}," in line for line in out.splitlines())


def established_22(pid: int) -> int:
    out = subprocess.run(["nsenter", "-t", str(pid), "-n", "ss", "-Htn", "state", "established", "( sport = :22 )"],
                         capture_output=True, text=True, timeout=60).stdout
    return len([line for line in out.splitlines() if line.strip()])


def process_counts(pid: int) -> tuple[int, int]:
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    threads = int(re.search(r"^Threads:\s+(\d+)", Path(f"/proc/{pid}/status").read_text(), re.M).group(1))
    return fds, threads


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))]


def flatness(samples: list[dict], key: str, start: float, end: float) -> dict:
    first = [s[key] for s in samples if s["t"] < start + 60]
    last = [s[key] for s in samples if s["t"] >= end - 60]
    return {"first_minute_max": max(first), "last_minute_max": max(last), "slack": SLACK[key.split(":")[0]],
            "flat": max(last) <= max(first) + SLACK[key.split(":")[0]]}


def test_the_portal_stays_flat_and_quick_under_a_class(tmp_path):
    OUT.mkdir(parents=True, exist_ok=True)
    base = tmp_path / "lab.yml"
    base.write_text(yaml.safe_dump({"provider": "docker"}))
    roster = tmp_path / f"{CLASS}.csv"
    roster.write_text("id\n" + "".join(f"s{i:02d}\n" for i in range(1, LABS + 1)))
    started_up = time.monotonic()
    done = subprocess.run(reglab("--lab", str(base), "-q", "class", "--name", CLASS, "up", str(roster), "--pool",
                                 POOL, "--jobs", str(JOBS), "--students-are-root-on-this-host"),
                          capture_output=True, text=True, timeout=1800)
    up_seconds = time.monotonic() - started_up
    serve = None
    clients: list[Client] = []
    try:
        if done.returncode != 0:  # keep each lab's Vagrant log: `class down` below takes the labs' folders
            for log in (tmp_path / ".class" / CLASS / "labs" / ".lab").glob("*/logs/vagrant.log"):
                (OUT / f"{log.parent.parent.name}-vagrant.log").write_bytes(log.read_bytes())
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        room = Classroom.open(base, CLASS, Progress(quiet=True))
        machines = [f"{load_lab(m.lab_file).name}-{machine.name}" for m in room.members
                    for machine in load_lab(m.lab_file).machines]
        pids = container_pids(machines)
        port = free_port()
        serve = subprocess.Popen(reglab("--lab", str(base), "class", "--name", CLASS, "serve", "--listen",
                                        f"127.0.0.1:{port}", "--every", "10"),
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                 start_new_session=True)
        said: list[str] = []

        def read_serve() -> None:
            for line in serve.stdout:
                said.append(line)

        threading.Thread(target=read_serve, daemon=True).start()
        deadline = time.monotonic() + 120
        while not any("instructor's link" in line for line in said):
            assert serve.poll() is None and time.monotonic() < deadline, "".join(said)
            time.sleep(0.2)
        base_url = f"http://127.0.0.1:{port}"
        students = [Student(base_url, (room.dir / "students" / m.id / "portal-link").read_text().strip())
                    for m in room.members]

        stop = threading.Event()
        checks: list[tuple[float, str, int, float]] = []
        typed: list[int] = [0] * len(students)
        echoed: list[int] = [0] * len(students)  # commands whose output came back to the browser
        last: list[str] = [""] * len(students)  # the end of what each terminal showed
        errors: list[str] = []

        def terminal(i: int, student: Student) -> None:
            try:
                ws = student.terminal("client")
                clients.append(ws)
                shown = ""
                while not stop.is_set():
                    typed[i] += 1
                    line = f"date; uptime; ls /etc | wc -l; echo soak-{i}-$(( {typed[i]} * 1 ))\r"
                    ws.send(json.dumps({"type": "input", "data": line}))  # as terminal.js sends a key
                    end = time.monotonic() + 5
                    while time.monotonic() < end and not stop.is_set():
                        got = ws.receive(timeout=1)
                        if got:
                            shown = (shown + (got if isinstance(got, str) else got.decode(errors="replace")))[-4000:]
                            last[i] = shown[-300:]
                            if f"soak-{i}-{typed[i]}\r" in shown:
                                echoed[i] += 1
                                shown = ""
            except ConnectionClosed as exc:
                if not stop.is_set():
                    errors.append(f"terminal {i}: closed {exc}")
            except Exception as exc:  # noqa: BLE001  noted, shown in the summary
                errors.append(f"terminal {i}: {exc!r}")

        def checker(i: int, student: Student) -> None:
            time.sleep(i * CHECK_EVERY / len(students))  # the students' presses spread over the interval
            while not stop.is_set():
                try:
                    status, seconds = student.check()
                except OSError as exc:
                    errors.append(f"check {i}: {exc!r}")
                    status, seconds = 0, 0.0
                checks.append((time.monotonic(), f"s{i + 1:02d}", status, seconds))
                stop.wait(max(0.0, CHECK_EVERY - seconds))

        threads = [threading.Thread(target=terminal, args=(i, s), daemon=True) for i, s in enumerate(students)]
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 120
        while not all(echoed) and not errors and time.monotonic() < deadline:
            time.sleep(0.5)
        assert all(echoed), f"every terminal answers its first command: {echoed}; {errors}; {last}"
        threads += [threading.Thread(target=checker, args=(i, s), daemon=True) for i, s in enumerate(students)]
        for thread in threads[len(students):]:
            thread.start()

        samples: list[dict] = []
        start = time.monotonic()
        end = start + SECONDS
        loads = []
        while True:
            now = time.monotonic()
            fds, nthreads = process_counts(serve.pid)
            sample = {"t": round(now - start, 1), "serve_fds": fds, "serve_threads": nthreads,
                      "serve_ssh": ssh_connections_of(serve.pid), "load1": os.getloadavg()[0]}
            for name, pid in pids.items():
                sample[f"sshd:{name}"] = sshd_count(name)
                sample[f"ssh_established:{name}"] = established_22(pid)
            samples.append(sample)
            loads.append(os.getloadavg()[0])
            assert serve.poll() is None, "the portal ended: " + "".join(said[-20:])
            if now >= end:
                break
            time.sleep(max(0.0, min(EVERY, end - time.monotonic())))
        stop.set()
        for thread in threads:
            thread.join(30)
    finally:
        for ws in clients:
            with contextlib.suppress(Exception):
                ws.close()
        if serve is not None and serve.poll() is None:
            os.killpg(serve.pid, signal.SIGINT)
            try:
                serve.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(serve.pid, signal.SIGKILL)
        down = subprocess.run(reglab("--lab", str(base), "-q", "class", "--name", CLASS, "down"),
                              capture_output=True, text=True, timeout=1800)

    keys = [k for k in samples[0] if k not in ("t", "load1")]
    with (OUT / "samples.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, ["t", "load1", *keys])
        writer.writeheader()
        writer.writerows(samples)
    with (OUT / "checks.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["t", "student", "status", "seconds"])
        writer.writerows([(round(t - start, 1), s, status, round(sec, 3)) for t, s, status, sec in checks])
    times = [sec for t, _, status, sec in checks if status == 200 and t >= start]
    flat = {key: flatness(samples, key, 0.0, samples[-1]["t"]) for key in keys}
    summary = {
        "labs": LABS, "seconds": SECONDS, "every": 10, "check_every": CHECK_EVERY,
        "case": "labs as `class up` leaves them, no step solved",
        "class_up_s": round(up_seconds, 1),
        "checks": len(checks), "checks_ok": len(times),
        "check_statuses": {str(code): sum(1 for c in checks if c[2] == code) for code in {c[2] for c in checks}},
        "check_p50_s": round(statistics.median(times), 2) if times else None,
        "check_p95_s": round(percentile(times, 95), 2) if times else None,
        "check_max_s": round(max(times), 2) if times else None,
        "commands_typed": typed, "commands_answered": echoed,
        "load1_mean": round(statistics.mean(loads), 2), "load1_max": round(max(loads), 2),
        "serve": {k: flat[k] for k in ("serve_fds", "serve_threads", "serve_ssh")},
        "machines_flat": all(v["flat"] for k, v in flat.items() if ":" in k),
        "machines_last_minute_max": {k: v["last_minute_max"] for k, v in flat.items() if ":" in k},
        "machines_first_minute_max": {k: v["first_minute_max"] for k, v in flat.items() if ":" in k},
        "errors": errors[:20],
        "down_ok": down.returncode == 0,
    }
    (OUT / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    print(f"\nportal soak ({OUT}):")
    for key in ("labs", "seconds", "check_every", "case", "class_up_s", "checks", "checks_ok", "check_statuses",
                "check_p50_s", "check_p95_s", "check_max_s", "commands_typed", "commands_answered", "load1_mean",
                "load1_max", "serve", "machines_flat", "errors", "down_ok"):
        print(f"  {key:<16} {summary[key]}")
    not_flat = {k: v for k, v in flat.items() if not v["flat"]}
    assert not errors, errors
    assert all(e >= t // 2 for e, t in zip(echoed, typed, strict=True)), f"terminals answered {echoed} of {typed}"
    assert not not_flat, f"grew over the run: {not_flat}"
    assert times and summary["check_p95_s"] < CHECK_P95_LIMIT, \
        f"a student's Check: 95th percentile {summary['check_p95_s']} s, limit {CHECK_P95_LIMIT} s"
    assert down.returncode == 0, down.stdout[-2000:] + down.stderr[-2000:]
