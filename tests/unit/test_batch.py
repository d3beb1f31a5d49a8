"""Unit tests for lab.machines.batch: the script that runs several commands in one session, and its parser.

The script runs here with a local `bash -s` (as on a machine, minus sudo), so
what is tested is what the machines run.
"""

from __future__ import annotations

import base64
import os
import shlex
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from lab.machines import batch
from lab.machines.batch import COMMAND, KILL_GRACE, Item, Reply, build_script, parse_output, start_order

TAG = "reglab-batch-0123abcd"
SECRET = "s3cret-Passw0rd"

pytestmark = pytest.mark.skipif(shutil.which("bash") is None or shutil.which("timeout") is None,
                                reason="needs bash and coreutils' timeout")


def run(items: list[Item], tmp_path: Path | None = None) -> tuple[dict[int, Reply], subprocess.CompletedProcess]:
    script = build_script(items, TAG)
    env = {**os.environ, "TMPDIR": str(tmp_path)} if tmp_path else None
    done = subprocess.run(["bash", "-s"], input=script.encode(), capture_output=True, timeout=60, env=env)
    return parse_output(done.stdout.decode(), TAG, len(items)), done


def test_the_batch_starts_as_sudo_would_with_the_script_on_stdin() -> None:
    assert COMMAND == "sudo -n -H bash -s"


def test_each_command_gives_its_exit_status_and_its_own_output_exactly() -> None:
    replies, done = run([
        Item("printf 'out\\n'; printf 'err' >&2; exit 3", None, 10),
        Item("printf 'no newline at the end'", None, 10),
        Item("printf '\\xff\\x00\\x01'", None, 10),  # bytes that are no text
        Item("printf 'caf\\xc3\\xa9\\n\\n\\n'", None, 10),  # trailing newlines stay
        Item("true", None, 10),
    ])
    assert done.returncode == 0
    assert [r.exited for r in replies.values()] == [3, 0, 0, 0, 0]
    assert (replies[0].stdout, replies[0].stderr) == (b"out\n", b"err")
    assert replies[1].stdout == b"no newline at the end"
    assert replies[2].stdout == b"\xff\x00\x01"
    assert replies[3].stdout == "café\n\n\n".encode()
    assert (replies[4].stdout, replies[4].stderr) == (b"", b"")
    assert not any(r.timed_out for r in replies.values())
    assert all(0 <= r.seconds < 10 for r in replies.values())


def test_each_command_runs_in_a_bash_of_its_own() -> None:
    """A syntax error or an `exit` ends that command only; quotes, `$` and newlines reach bash as written."""
    replies, _ = run([
        Item("x=1; echo \"$x\" 'single $x' `echo back`", None, 10),
        Item("if then", None, 10),
        Item("exit 0; echo never", None, 10),
        Item("echo first\necho second", None, 10),
        Item("echo \"${x:-unset}\"", None, 10),  # nothing leaks from one command into the next
    ])
    assert replies[0].stdout == b"1 single $x back\n"
    assert replies[1].exited == 2 and b"syntax error" in replies[1].stderr
    assert (replies[2].exited, replies[2].stdout) == (0, b"")
    assert replies[3].stdout == b"first\nsecond\n"
    assert replies[4].stdout == b"unset\n"


def test_commands_run_at_once_up_to_parallel_and_answer_in_their_order() -> None:
    started = time.monotonic()
    replies, _ = run([Item(f"sleep 1; echo {i}", None, 10) for i in range(batch.PARALLEL)])
    assert time.monotonic() - started < 5  # not PARALLEL * 1 s; room for a busy 2-core host
    assert [r.stdout for r in replies.values()] == [f"{i}\n".encode() for i in range(batch.PARALLEL)]
    many = 3 * batch.PARALLEL + 1  # more than run at once: each still answers, in its place
    replies, done = run([Item(f"echo {i}", None, 10) for i in range(many)])
    assert sorted(replies) == list(range(many))
    assert [line.split(" ")[1] for line in done.stdout.decode().splitlines()] == [str(i) for i in range(many)]
    assert all(replies[i].stdout == f"{i}\n".encode() for i in range(many))


def test_a_command_gets_its_own_stdin_or_eof_at_once() -> None:
    replies, _ = run([
        Item("cat", f"user = \"student:{SECRET}\"\n".encode(), 10),
        Item("cat", None, 10),  # no stdin: EOF at once, never the script itself
        Item("cat", b"", 10),
        Item("wc -c", bytes(range(256)) * 4, 10),
        Item("echo still here", None, 10),
    ])
    assert replies[0].stdout == f"user = \"student:{SECRET}\"\n".encode()
    assert replies[1].stdout == b"" and replies[1].exited == 0
    assert replies[2].stdout == b""
    assert replies[3].stdout.strip() == b"1024"
    assert replies[4].stdout == b"still here\n"


def test_a_stdin_secret_is_on_no_command_line_only_escaped_in_the_script() -> None:
    """The script itself reaches bash on stdin; `ps` while the command reads its stdin shows no secret.

    (The stdin travels as `\\xHH` escapes for bash's builtin printf, no longer as base64 for a `base64 -d`
    process per item: the same guarantee, one process less.)"""
    secret_line = f"user = \"student:{SECRET}\"\n".encode()
    script = build_script([Item("ps -eo args; cat >/dev/null", secret_line, 10)], TAG)
    assert SECRET not in script
    encoded = "".join(f"\\x{byte:02x}" for byte in secret_line)
    assert encoded in script  # the only form it travels in
    replies, _ = run([Item("ps -eo args; cat >/dev/null", secret_line, 10)])
    seen = replies[0].stdout.decode()
    assert "ps -eo args" in seen  # ps did list the processes
    assert SECRET not in seen and encoded not in seen


def test_a_command_past_its_bound_is_ended_and_marked_timed_out() -> None:
    started = time.monotonic()
    replies, _ = run([
        Item("echo begun; sleep 30", None, 0.3),
        Item("echo next", None, 10),
    ])
    assert time.monotonic() - started < 5
    assert replies[0].timed_out and replies[0].exited == 124
    assert replies[0].stdout == b"begun\n"  # what it printed before its end
    assert replies[0].seconds >= 0.3
    assert replies[1] == Reply(0, b"next\n", b"", False, replies[1].seconds)


def test_a_command_that_ignores_term_is_killed_after_the_grace(monkeypatch: pytest.MonkeyPatch) -> None:
    assert KILL_GRACE == 5
    monkeypatch.setattr(batch, "KILL_GRACE", 1)
    started = time.monotonic()
    replies, _ = run([Item("trap '' TERM; sleep 30", None, 0.2)])
    assert time.monotonic() - started < 5
    assert replies[0].timed_out and replies[0].exited == 137


def test_a_command_exiting_124_on_its_own_is_no_timeout() -> None:
    """`timeout 10 openssl ...` inside a check may exit 124 itself: only the batch's own bound counts."""
    replies, _ = run([Item("exit 124", None, 10)])
    assert replies[0].exited == 124 and not replies[0].timed_out


def test_the_script_leaves_no_temporary_files(tmp_path: Path) -> None:
    replies, _ = run([Item("echo x", None, 10), Item("echo y >&2", None, 10)], tmp_path)
    assert len(replies) == 2
    assert list(tmp_path.iterdir()) == []


def test_a_batch_that_cannot_start_gives_no_replies(tmp_path: Path) -> None:
    """No writable temporary folder: the script ends at once, every item unanswered (they run alone)."""
    replies, done = run([Item("echo x", None, 10)], tmp_path / "missing")
    assert done.returncode == 97
    assert replies == {}


def test_bounds_are_written_as_timeout_reads_them() -> None:
    script = build_script([Item("a", None, 300), Item("b", None, 0.5), Item("c", None, 2.25)], TAG)
    lines = script.splitlines()[-5:-2]
    assert lines == ["_go 0 300 300000000 - x a", "_go 1 0.5 500000 - x b", "_go 2 2.25 2250000 - x c"]


@pytest.mark.parametrize(("command", "words"), [
    ("curl -sS -i --max-time 10 -K - https://example.test/v2/",
     ["curl", "-sS", "-i", "--max-time", "10", "-K", "-", "https://example.test/v2/"]),
    ("stat -c '%F %a %U' /root/docker-registry/data", ["stat", "-c", "%F %a %U", "/root/docker-registry/data"]),
    ("docker image inspect example.test/test-image", ["docker", "image", "inspect", "example.test/test-image"]),
    ("cat ~/.docker/config.json", None),  # bash expands ~
    ("docker ps -aq --filter name=^/registry$", None),  # not as shlex.quote writes it: bash reads it itself
    ("getent hosts a | head -1", None),
    ("openssl s_client </dev/null", None),
    ("A=1 env", None),  # an assignment
    ("test -f /x", None),  # a builtin: bash's own, not /usr/bin/test
    ("echo hi", None),
    ("'curl' -sS", None),
    ("x=$(date)", None),
    ("", None),
    ("unclosed 'quote", None),
])
def test_only_plain_words_run_without_a_bash_of_their_own(command: str, words: list[str] | None) -> None:
    assert batch.argv(command) == words


def test_plain_words_answer_as_bash_c_would() -> None:
    """Quoted words arrive as one argument; a program that is not there fails as bash says it."""
    quoted = shlex.join(["env", "printf", "%s|", "a b", "c'd", "", "$HOME"])
    assert batch.argv(quoted) is not None
    replies, _ = run([
        Item(quoted, None, 10),
        Item("reglab-no-such-program --version", None, 10),
    ])
    assert replies[0].stdout == b"a b|c'd||$HOME|"
    assert replies[1].exited == 127 and b"reglab-no-such-program: command not found" in replies[1].stderr


@pytest.mark.parametrize("bad", ["", "tag with space", "tag;rm", "tag$x"])
def test_the_tag_is_letters_digits_and_dashes(bad: str) -> None:
    with pytest.raises(ValueError, match="tag"):
        build_script([Item("true", None, 1)], bad)


@pytest.mark.parametrize("bound", [0, -1])
def test_a_bound_must_be_positive(bound: float) -> None:
    with pytest.raises(ValueError, match="positive"):
        build_script([Item("true", None, bound)], TAG)


# --- the parser alone ------------------------------------------------------------------------------


def frame(index: int, exited: int = 0, ended: str = "0", micros: int = 1500, out: bytes = b"", err: bytes = b"",
          tag: str = TAG) -> str:
    return f"{tag} {index} {exited} {ended} {micros} {base64.b64encode(out).decode()} {base64.b64encode(err).decode()}"


def test_parse_reads_each_frame() -> None:
    text = "\n".join([frame(0, 0, out=b"a\n"), frame(1, 7, err=b"refused"), frame(2, 124, "1", 2_000_000)]) + "\n"
    assert parse_output(text, TAG, 3) == {
        0: Reply(0, b"a\n", b"", False, 0.0015),
        1: Reply(7, b"", b"refused", False, 0.0015),
        2: Reply(124, b"", b"", True, 2.0),
    }


def test_parse_ignores_what_is_not_a_frame_of_this_batch() -> None:
    text = "\n".join([
        "bash: some warning of the script itself",
        frame(0, tag="reglab-batch-other"),  # another batch's tag
        frame(5),  # no such item
        frame(-1),
        f"{TAG} 1 0 0 10 !!notbase64 ",
        f"{TAG} 1 x 0 10  ",
        f"{TAG} 1 0 maybe 10  ",
        f"{TAG} 1 0 0 10",  # cut short
        frame(2, out=b"kept"),
        frame(2, out=b"a second frame for the same item"),
    ])
    assert parse_output(text, TAG, 3) == {2: Reply(0, b"kept", b"", False, 0.0015)}


def test_parse_a_timeout_mark_counts_only_with_timeouts_exit() -> None:
    assert parse_output(frame(0, 1, "1"), TAG, 1)[0].timed_out is False
    assert parse_output(frame(0, 137, "1"), TAG, 1)[0].timed_out is True


def test_dockers_commands_start_first_and_answer_in_their_order() -> None:
    """A check's `docker run` (the slowest item) starts first, other docker commands next, so the rest
    run beside them; each answer still comes back under its own index."""
    items = [Item("stat /x", None, 1), Item("docker image inspect a", None, 1), Item("curl -sS b", None, 1),
             Item("docker run --rm a ls /", None, 1), Item("cat /y", None, 1)]
    assert start_order(items) == [3, 1, 0, 2, 4]
    script = build_script(items, TAG)
    assert [line.split()[1] for line in script.splitlines() if line.startswith("_go ")] == ["3", "1", "0", "2", "4"]


def _curl_can_share() -> bool:
    """curl 7.75 or later (-Z, --stderr, -w %{exitcode}), as Debian 12 and 13 and RHEL 9 have."""
    if shutil.which("curl") is None:
        return False
    done = subprocess.run(["curl", "-sS", "-Z", "-o", "/dev/null", "-w", "%{exitcode}", "file:///dev/null"],
                          capture_output=True, text=True)
    return done.returncode == 0 and done.stdout == "0"


@pytest.mark.skipif(not _curl_can_share(), reason="needs curl 7.75 or later")
def test_curl_requests_share_one_curl_and_each_answers_exactly_as_alone(tmp_path: Path) -> None:
    """Refused, missing, read: each request's exit status, output and curl's own words on stderr are
    what the same command gives alone; its credentials come from its own stdin."""
    page = tmp_path / "page"
    page.write_text("hello\n")
    commands = [
        ("curl -sS -i --max-time 10 http://127.0.0.1:1/v2/", None),  # refused: exit 7
        (f"curl -sS -i --max-time 10 file://{page}", None),
        (f"curl -sS -i --max-time 10 file://{tmp_path}/missing", None),  # exit 37
        (f"curl -sS -i --max-time 10 -K - file://{page}", b'user = "student:s3cret"\n'),
        (f"curl -sS -i --max-time 10 -A docker/1.5.0 -H 'Accept: text/plain' -I file://{page}", None),
        ("echo not curl", None),
    ]
    items = [Item(command, stdin, 10) for command, stdin in commands]
    script = build_script(items, TAG)
    assert script.count("curl -Z --no-progress-meter --stderr -") == 1 and script.count("_cc+=(--next)") == 5
    assert "s3cret" not in script
    replies, _ = run(items, tmp_path / "tmp" if (tmp_path / "tmp").mkdir() is None else None)
    for index, (command, stdin) in enumerate(commands):
        alone = subprocess.run(["bash", "-c", command], input=stdin or b"", capture_output=True, timeout=30)
        assert replies[index].exited == alone.returncode, command
        assert (replies[index].stdout, replies[index].stderr) == (alone.stdout, alone.stderr), command
    assert list((tmp_path / "tmp").iterdir()) == []  # the credentials' file went with the batch's folder


@pytest.mark.parametrize(("command", "stdin", "shares"), [
    ("curl -sS -i --max-time 10 https://example.test/v2/", None, True),
    ("curl -sS -i --max-time 10 -K - https://example.test/v2/", b"user = x\n", True),
    ("curl -sS -i --max-time 10 -K - https://example.test/v2/", None, False),  # -K - with no stdin
    ("curl -sS -i --max-time 10 https://example.test/v2/", b"x", False),  # stdin it would not read
    ("curl -sS -i --max-time 10 -K /root/x https://example.test/v2/", None, False),
    ("curl -i --max-time 10 https://example.test/v2/", None, False),  # no -sS
    ("curl -sS -o /tmp/x https://example.test/v2/", None, False),  # an option not on the list
    ("curl -sS -i https://example.test/v2/ | head -1", None, False),
    ("curl -sS -i --max-time 10", None, False),  # no URL
])
def test_only_a_checks_own_curl_requests_share_a_curl(command: str, stdin: bytes | None, shares: bool) -> None:
    assert (batch.curl_words(Item(command, stdin, 10)) is not None) is shares


def test_only_requests_that_need_no_dns_share_a_curl() -> None:
    """A name the DNS does not answer takes one curl alone 5 s to give up on (exit 6) and a shared curl
    its --max-time (exit 28): such a request runs alone. An address, localhost or a name in
    /etc/hosts needs no DNS."""
    name = next(line.split()[1] for line in Path("/etc/hosts").read_text().splitlines()
                if line.strip() and not line.startswith("#") and len(line.split()) > 1)
    script = batch._PRELUDE.replace("TAG", TAG).replace("KILL", "5").replace("PARALLEL", "8") + (
        f"_hosts_read\nfor h in localhost 10.1.2.3 {shlex.quote(name)} no-such-name.invalid 10.1.2; do\n"
        '  if _here "$h"; then echo "$h: here"; else echo "$h: dns"; fi\ndone\n')
    done = subprocess.run(["bash", "-s"], input=script.encode(), capture_output=True, timeout=30)
    assert done.stdout.decode().splitlines() == [
        "localhost: here", "10.1.2.3: here", f"{name}: here", "no-such-name.invalid: dns", "10.1.2: dns"]
