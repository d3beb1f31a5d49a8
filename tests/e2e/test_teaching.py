"""Teaching mode on real machines: a student breaks a step by hand, `reglab check`
points at the fault without changing anything, `reglab solve` repairs it."""

import pytest

pytestmark = pytest.mark.e2e


def test_removing_basic_auth_is_caught_and_repaired(solved, reglab):
    registry = solved.provider.connect("registry")
    conf = "/root/docker-registry/nginx/registry.conf"
    registry.sudo(f"sed -i '/auth_basic/d' {conf} && cd /root/docker-registry && docker-compose restart nginx")
    before = registry.sudo(f"md5sum {conf}").stdout

    check = reglab("check", "basic-auth")
    assert check.status == 1, check.out + check.err
    assert "FAIL basic-auth" in check.out
    assert "without credentials nginx answers 401" in check.out
    assert "status 200" in check.out  # what it saw: nginx let the request through
    assert "Traceback" not in check.out + check.err
    assert registry.sudo(f"md5sum {conf}").stdout == before, "a check changed the machine"

    solve = reglab("solve", "basic-auth")
    assert solve.status == 0, solve.out + solve.err
    assert reglab("check", "basic-auth").status == 0


def test_show_prints_the_commands_of_a_step(reglab):
    result = reglab("show", "basic-auth")
    assert result.status == 0
    assert "htpasswd -c /root/docker-registry/nginx/registry.password" in result.out
    assert "auth_basic_user_file /etc/nginx/conf.d/registry.password;" in result.out


def test_unknown_step_is_a_usage_error(reglab):
    result = reglab("check", "nosuch-step")
    assert result.status == 2
    assert "no step 'nosuch-step'" in result.err

