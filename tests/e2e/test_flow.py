"""The tutorial's promise in one place: pushed on the client, pulled on the server,
same digest, `initcron` inside. Runs the scenario's steps first where this
session has not (pytest scenarios/ before tests/e2e does)."""

import re

import pytest

pytestmark = pytest.mark.e2e

DIGEST = re.compile(r"@(sha256:[0-9a-f]{64})")


def test_image_pushed_on_client_is_pulled_on_server_with_same_digest(solved):
    domain = solved.lab.domain
    client = solved.provider.connect("client")
    registry = solved.provider.connect("registry")
    inspect = f"docker image inspect -f '{{{{json .RepoDigests}}}}' {domain}/test-image"
    pushed = DIGEST.findall(client.sudo(inspect).stdout)
    pulled = DIGEST.findall(registry.sudo(inspect).stdout)
    assert pushed and pulled
    assert pushed == pulled
    listing = registry.sudo(f"docker run --rm {domain}/test-image ls /").stdout.split()
    assert "initcron" in listing


def test_check_all_passes_again_after_the_run(solved, reglab):
    result = reglab("check", "--all")
    assert result.status == 0, result.out + result.err
    assert "11 passed, 0 failed" in result.out


def test_provision_a_second_time_changes_nothing(solved, reglab):
    result = reglab("provision")
    assert result.status == 0, result.err
    assert result.out.count("nothing to change") == 2, result.out


def test_no_password_in_logs_or_reports(solved):
    state = solved.lab.state_dir
    passwords = [u.password for u in solved.lab.users]
    for path in [*state.glob("logs/*.log"), *state.glob("reports/*")]:
        text = path.read_text(errors="replace")
        for password in passwords:
            assert password not in text, f"password leaked into {path}"
