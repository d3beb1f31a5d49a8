"""A class on this host, measured: how many labs boot at once, how long a student waits.

`tox -e bench -- benchmarks/test_class_benchmark.py` (REGLAB_BENCH_LABS: how
many labs, default 8; REGLAB_BENCH_GIVEN: how many labs' machines to grade
over SSH, default 20). Reports, in the benchmark's extra info and printed:

- capacity: the time from `class up` to every lab provisioned, and the memory
  each lab's two machines use (their containers' cgroup memory);
- waiting: how long `reglab check STEP` and `reglab check --all` take for one
  student (the real command, Python's start included) while the whole class
  runs, and on an idle host with one lab;
- grading machines given over SSH: `class check --all` of many labs whose
  machines reglab did not boot (plain containers of the node image).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from lab.classroom.room import Classroom
from lab.classroom.roster import Student
from lab.common.progress import Progress
from lab.common.sshkeys import new_key
from lab.machines.images import MACHINE_ARGS
from lab.model.results import Status

pytestmark = pytest.mark.e2e

LABS = int(os.environ.get("REGLAB_BENCH_LABS", "8"))
GIVEN = int(os.environ.get("REGLAB_BENCH_GIVEN", "20"))


def reglab(lab_file: Path, *args: str) -> tuple[int, float]:
    """The student's command, timed as they wait for it."""
    started = time.monotonic()
    done = subprocess.run([str(Path(sys.executable).parent / "reglab"), "--lab", str(lab_file), "-q", *args],
                          capture_output=True, text=True, timeout=600)
    return done.returncode, time.monotonic() - started


def memory_mib(container: str) -> float:
    """The resident memory of every process of a machine (docker stats says 0 where cgroups do not count it)."""
    out = subprocess.run(["docker", "top", container, "-o", "pid,rss"], capture_output=True, text=True,
                         timeout=60).stdout.splitlines()[1:]
    return sum(int(line.split()[1]) for line in out if len(line.split()) == 2 and line.split()[1].isdigit()) / 1024


def test_a_class_of_labs_boots_and_students_wait_little(benchmark, tmp_path):
    base = tmp_path / "lab.yml"
    base.write_text(yaml.safe_dump({"provider": "docker", "images": {"source": os.environ.get("REGLAB_IMAGES",
                                                                                               "build")}}))
    room = Classroom(base, "bench", Progress())
    room.enrol([Student(f"s{i:02d}") for i in range(1, LABS + 1)])
    try:
        outcomes = benchmark.pedantic(lambda: room.up(room.members, jobs=LABS), rounds=1, iterations=1)
        assert all(o.ok for o in outcomes), [(o.member.id, o.message) for o in outcomes if not o.ok]
        up = benchmark.stats.stats.max
        memory = [memory_mib(f"bench-{m.id}-{role}") for m in room.members for role in ("registry", "client")]
        first = room.members[0].lab_file
        code, _ = reglab(first, "solve", "hosts")
        assert code == 0
        step = [reglab(first, "check", "hosts")[1] for _ in range(3)]
        every = [reglab(first, "check", "--all")[1] for _ in range(2)]
        info = {
            "labs": LABS,
            "all_provisioned_s": round(up, 1),
            "memory_per_lab_mib": round(sum(memory) / LABS, 0),
            "check_step_busy_s": round(min(step), 2),
            "check_all_busy_s": round(min(every), 2),
        }
    finally:
        room.down(jobs=LABS)
    alone = Classroom(base, "bench", Progress())  # one lab alone on the host (down took the labs' files)
    alone.enrol([room.members[0].student])
    idle = alone.members[0].lab_file
    try:
        assert all(o.ok for o in alone.up(alone.members[:1], jobs=1))
        reglab(idle, "solve", "hosts")
        info["check_step_idle_s"] = round(min(reglab(idle, "check", "hosts")[1] for _ in range(3)), 2)
        info["check_all_idle_s"] = round(min(reglab(idle, "check", "--all")[1] for _ in range(2)), 2)
    finally:
        Classroom(base, "bench", Progress()).down(jobs=1)
    benchmark.extra_info.update(info)
    print("\nclass capacity:\n" + "\n".join(f"  {k:<22} {v}" for k, v in info.items()))


def test_grading_many_labs_given_over_ssh(benchmark, tmp_path, lab_session):
    """`class check --all` of GIVEN labs whose machines are plain containers reglab did not boot."""
    node = lab_session.builder.node()
    lab_memory = sum(memory_mib(f"{lab_session.lab.name}-{m.name}") for m in lab_session.lab.machines)
    benchmark.extra_info["memory_per_provisioned_lab_mib"] = round(lab_memory)
    print(f"\nmemory of one provisioned lab's two machines: {lab_memory:.0f} MiB")

    net = f"reglab-bench-given-{os.getpid()}"
    subprocess.run(["docker", "network", "create", "--subnet", "192.168.96.0/22", net], check=True, timeout=60,
                   capture_output=True)
    names: list[str] = []
    try:
        public = new_key(tmp_path / "key")
        # Two labs per pair of machines: this host stops starting systemd containers past about 21
        # (the 22nd exits at once; the host's inotify instances), and grading only observes.
        pairs = []
        for p in range(-(-GIVEN // 2)):
            pair = {}
            for j, role in enumerate(("registry", "client")):
                ip = f"192.168.{96 + (2 * p + j) // 250}.{10 + (2 * p + j) % 250}"
                name = f"{net}-{p}-{role}"
                subprocess.run(["docker", "run", "-d", "--name", name, "--network", net, "--ip", ip, *MACHINE_ARGS,
                                node, "/sbin/init"], check=True, timeout=120, capture_output=True)
                names.append(name)
                pair[role] = {"ip": ip, "user": "teacher", "identity_file": str(tmp_path / "key")}
            pairs.append(pair)
        roster = [{"id": f"g{i:02d}", "machines": pairs[i // 2]} for i in range(GIVEN)]
        for name in names:  # an account of the school's own with the test's key (as tests/e2e/test_7 makes)
            done = subprocess.run(["docker", "exec", name, "sh", "-c",
                                   "for i in $(seq 120); do systemctl is-active -q ssh && break; sleep 1; done; "
                                   "id teacher >/dev/null 2>&1 || useradd -m -s /bin/bash teacher; "
                                   "install -d -m 0700 -o teacher -g teacher /home/teacher/.ssh && "
                                   f"echo '{public}' > /home/teacher/.ssh/authorized_keys && "
                                   "chown teacher: /home/teacher/.ssh/authorized_keys && "
                                   "echo 'teacher ALL=(ALL) NOPASSWD: ALL' > /etc/sudoers.d/teacher"],
                                  capture_output=True, text=True, timeout=180)
            assert done.returncode == 0, f"{name}: {done.stdout}{done.stderr}"
        (tmp_path / "given.yml").write_text(yaml.safe_dump(roster))
        base = tmp_path / "lab.yml"
        base.write_text("{}\n")
        from lab.classroom.roster import load_roster

        room = Classroom(base, "given", Progress())
        room.enrol(load_roster(str(tmp_path / "given.yml")))
        rows = benchmark.pedantic(lambda: room.check(room.members, None, jobs=8, timeout=60), rounds=1,
                                  iterations=1)
        assert {r.student for r in rows} == {f"g{i:02d}" for i in range(GIVEN)}
        assert not [r for r in rows if r.result.status is Status.UNREACHABLE], "every given machine answers"
        benchmark.extra_info.update(given_labs=GIVEN, class_check_all_s=round(benchmark.stats.stats.max, 1))
        print(f"\nclass check --all of {GIVEN} labs given over SSH: {benchmark.stats.stats.max:.1f}s")
    finally:
        for name in names:
            subprocess.run(["docker", "rm", "-f", "-v", name], timeout=120, capture_output=True)
        subprocess.run(["docker", "network", "rm", net], timeout=60, capture_output=True)
