"""lab.machines.host: host commands as argument lists, bounded, logged, and stopped with all they started."""

from __future__ import annotations

import contextlib
import os
import signal
import stat
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from lab.common.errors import LabFailure
from lab.machines import host
from lab.machines.host import Runner, probe


@contextlib.contextmanager
def ctrl_c_once(path: Path) -> Iterator[None]:
    """A real SIGINT to the main thread, as the terminal sends on Ctrl-C, once the command has written
    `path` (so it runs, however loaded the host), and never after the block has ended."""
    main = threading.main_thread().ident
    assert main is not None
    ended = threading.Event()

    def press() -> None:
        deadline = time.monotonic() + 20
        while not (path.exists() and path.read_text().strip()):
            if ended.wait(0.02) or time.monotonic() > deadline:
                return
        if not ended.wait(0.1):
            signal.pthread_kill(main, signal.SIGINT)

    # A job started in the background inherits SIGINT ignored: the test sets the handler it relies on.
    inherited = signal.signal(signal.SIGINT, signal.default_int_handler)
    thread = threading.Thread(target=press, daemon=True)
    thread.start()
    try:
        yield
    finally:
        ended.set()
        thread.join()
        signal.signal(signal.SIGINT, inherited)


def _gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return True
    return state in ("Z", "X")  # a zombie waiting for init still counts as ended


def _pid(path: Path) -> int:
    deadline = time.monotonic() + 5
    while not path.exists() or not path.read_text().strip():
        assert time.monotonic() < deadline, f"{path} never written"
        time.sleep(0.02)
    return int(path.read_text())


def test_runner_passes_arguments_unquoted_and_never_through_a_shell(tmp_path):
    run = Runner(tmp_path / "build.log")
    assert run(["printf", "%s", "a; touch pwned $(id)"]).stdout == "a; touch pwned $(id)"
    assert not list(tmp_path.glob("pwned*"))
    assert "a; touch pwned" in (tmp_path / "build.log").read_text()


def test_runner_failure_is_one_message_with_the_end_of_the_output(tmp_path):
    run = Runner(tmp_path / "build.log")
    with pytest.raises(LabFailure, match=r"(?s)failed \(exit 3\).*the cause"):
        run(["sh", "-c", "echo the cause >&2; exit 3"])
    with pytest.raises(LabFailure, match="did not finish within 1s"):
        run(["sleep", "5"], timeout=1)


def test_check_false_hands_back_the_exit_and_a_missing_tool_is_one_message(tmp_path):
    run = Runner(tmp_path / "build.log")
    assert run(["sh", "-c", "exit 4"], check=False).returncode == 4
    with pytest.raises(LabFailure, match=r"^`/nonexistent/tool x` could not start \(No such file or directory\)"):
        run(["/nonexistent/tool", "x"])


def test_stdin_is_data_or_nothing(tmp_path):
    run = Runner(tmp_path / "build.log")
    assert run(["cat"], stdin="label: dos\n").stdout == "label: dos\n"
    assert run(["cat"], timeout=5).stdout == ""  # EOF at once, or this would time out: nothing waits on a terminal


def test_the_log_names_each_command_and_how_it_ended_and_is_private(tmp_path):
    log = tmp_path / "logs" / "build.log"
    run = Runner(log)
    run(["echo", "made it"])
    run(["sh", "-c", "exit 2"], check=False)
    assert log.read_text() == "$ echo 'made it'\nmade it\n[exit 0]\n$ sh -c 'exit 2'\n[exit 2]\n"
    assert stat.S_IMODE(log.stat().st_mode) == 0o600


def test_a_streamed_command_writes_its_output_to_the_log_and_fails_with_its_end(tmp_path):
    log = tmp_path / "hostsetup.log"
    run = Runner(log)
    with pytest.raises(LabFailure, match=r"(?s)^apt-get update failed \(exit 100\); see .*hostsetup.log:\n.*E: no"):
        run(["sh", "-c", "echo reading; echo E: no >&2; exit 100"], what="apt-get update", stream=True)
    assert run(["echo", "done"], stream=True).stdout == ""
    run(["printf", "no newline"], stream=True)
    text = log.read_text()
    assert "reading\nE: no\n[exit 100]\n" in text and "$ echo done\ndone\n[exit 0]\n" in text
    assert text.endswith("$ printf 'no newline'\nno newline\n[exit 0]\n")


def test_a_timeout_ends_what_the_command_started_too(tmp_path, monkeypatch):
    """A grandchild holding the output open would keep the wait going for ever."""
    monkeypatch.setattr(host, "STOP_GRACE", 1)
    run = Runner(tmp_path / "build.log")
    started = time.monotonic()
    with pytest.raises(LabFailure, match="did not finish within 5s"):  # 5 s: time to start on a loaded host
        run(["sh", "-c", f"sleep 30 & echo $! > {tmp_path}/child; echo started; wait"], timeout=5)
    assert time.monotonic() - started < 15  # not the 30 s the grandchild would keep the output open
    assert _gone(_pid(tmp_path / "child"))
    assert "started\n[timed out after 5s]" in (tmp_path / "build.log").read_text()


def test_ctrl_c_stops_the_command_and_all_it_started_at_once(tmp_path):
    run = Runner(tmp_path / "build.log")
    started = time.monotonic()
    with pytest.raises(KeyboardInterrupt), ctrl_c_once(tmp_path / "child"):
        run(["sh", "-c", f"sleep 30 & echo $! > {tmp_path}/child; wait"], timeout=60)
    assert time.monotonic() - started < 10
    assert _gone(_pid(tmp_path / "child"))
    assert (tmp_path / "build.log").read_text().endswith("[interrupted]\n")


def test_ctrl_c_to_a_command_that_ignores_sigterm_ends_in_sigkill(tmp_path, monkeypatch):
    monkeypatch.setattr(host, "STOP_GRACE", 0.3)
    script = tmp_path / "stubborn.py"
    script.write_text("import os, pathlib, signal, sys, time\n"
                      "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
                      "pathlib.Path(sys.argv[1]).write_text(str(os.getpid()))\n"
                      "time.sleep(30)\n")
    started = time.monotonic()
    with pytest.raises(KeyboardInterrupt), ctrl_c_once(tmp_path / "pid"):
        Runner(None)([sys.executable, script, tmp_path / "pid"], timeout=60)
    assert time.monotonic() - started < 10  # SIGTERM ignored: SIGKILL after 0.3 s, not the 30 s sleep
    assert _gone(_pid(tmp_path / "pid"))


def test_a_runner_without_a_log_writes_none_and_a_probe_says_none_for_what_did_not_work(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert Runner()(["echo", "x"]).stdout == "x\n"
    assert list(tmp_path.iterdir()) == []
    assert probe(["echo", "answer"]) == "answer\n"
    assert probe(["sh", "-c", "echo half; exit 1"]) is None
    assert probe(["/nonexistent/tool"]) is None
    assert probe(["sleep", "5"], timeout=0.3) is None


def test_the_environment_given_is_added_to_reglabs(tmp_path, monkeypatch):
    monkeypatch.setenv("REGLAB_KEPT", "kept")
    out = Runner()(["sh", "-c", 'echo "$REGLAB_KEPT $TMPDIR"'], env={"TMPDIR": str(tmp_path)}).stdout
    assert out == f"kept {tmp_path}\n"
    assert os.environ.get("TMPDIR") != str(tmp_path)
