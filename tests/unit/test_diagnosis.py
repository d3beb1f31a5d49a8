"""Each known cause must be recognized from the real text the tools print."""

import re

import pytest

from lab.common.errors import ConfigError
from lab.model import diagnosis, manifest
from lab.model.diagnosis import GENERAL, Cause, cause_by_id, causes_from, format_diagnosis
from lab.model.lab import default_scenario

# The table a tutorial run diagnoses with: the tutorial's own causes (scenarios/tutorial/causes.yaml), then GENERAL.
CAUSES = manifest.load(default_scenario()).table


def diagnose(text: str) -> Cause | None:
    return diagnosis.diagnose(text, CAUSES)


def diagnose_all(text: str) -> list[Cause]:
    return diagnosis.diagnose_all(text, CAUSES)


EXAMPLES: dict[str, list[str]] = {
    "ca-without-key-usage": [
        # reglab's TLS check on Debian 13 (issue 20): the tutorial's CA (openssl req -x509), a SAN server certificate.
        "chain does not verify against the lab CA for myregistrydomain.com: validation failed: candidates "
        "exhausted: invalid extension: 2.5.29.15: Certificate is missing required extension",
    ],
    "docker-ipv6-control": [
        # Docker 26.1.5 (Debian 13) in a docker-provider machine, seen by `reglab run` (issue 20).
        "docker: Error response from daemon: failed to create task for container: failed to create shim task: "
        "OCI runtime create failed: runc create failed: unable to start container process: error during "
        "container init: error running hook #0: error running hook: exit status 1, stdout: , stderr: failed to "
        'add interface veth33b4a2e to sandbox: error setting interface "veth33b4a2e" IPv6 to <nil>: failed to '
        "configure ipv6: failed to disable IPv6 on container's interface eth0, set env var "
        "DOCKER_ALLOW_IPV6_ON_IPV4_INTERFACE=1 to ignore this error: unknown.",
    ],
    "legacy-cn": [
        'Error response from daemon: Get "https://myregistrydomain.com/v2/": '
        "x509: certificate relies on legacy Common Name field, use SANs instead",
        'Error response from daemon: Get "https://myregistrydomain.com/v2/": '
        "x509: certificate relies on legacy Common Name field, use SANs or "
        "temporarily enable Common Name matching with GODEBUG=x509ignoreCN=0",
        "x509: certificate is not valid for any names, "
        "but wanted to match myregistrydomain.com",
        "certificate has no subjectAltName; it relies on the legacy Common Name field",
    ],
    "wrong-name": [
        'Error response from daemon: Get "https://myregistrydomain.com/v2/": '
        "tls: failed to verify certificate: x509: certificate is valid for "
        "localhost, not myregistrydomain.com",
        "hostname myregistrydomain.com is not in the certificate's subjectAltName "
        "(it holds DNS:localhost)",
        "curl: (60) SSL: no alternative certificate subject name matches target "
        "host name 'myregistrydomain.com'",
    ],
    "http-to-https": [
        'Error response from daemon: Get "https://myregistrydomain.com:5000/v2/": '
        "http: server gave HTTP response to HTTPS client",
        "curl: (35) error:0A00010B:SSL routines::wrong version number",
    ],
    "no-basic-auth": [
        'Error response from daemon: Head "https://myregistrydomain.com/v2/'
        'test-images/manifests/latest": no basic auth credentials',
        'Error response from daemon: Get "https://myregistrydomain.com/v2/test-images/manifests/latest": '
        "no basic auth credentials",
        "Using default tag: latest\nError response from daemon: Get \"https://myregistrydomain.com/v2/\": "
        "no basic auth credentials",
    ],
    "name-not-pushed": [
        "Error response from daemon: manifest for myregistrydomain.com/test-images:latest not found: "
        "manifest unknown: manifest unknown",
        "Unable to find image 'myregistrydomain.com/test-images:latest' locally\n"
        "docker: Error response from daemon: manifest for myregistrydomain.com/test-images:latest not found: "
        "manifest unknown: manifest unknown.",
        "Error response from daemon: pull access denied for myregistrydomain.com/test-images, repository does "
        "not exist or may require 'docker login': denied: requested access to the resource is denied",
        '{"errors":[{"code":"NAME_UNKNOWN","message":"repository name not known to registry",'
        '"detail":{"name":"test-images"}}]}',
        # Docker 20.10 to 26 on a registry's NAME_UNKNOWN: the registry's own message follows "name unknown: ".
        "Using default tag: latest\nError response from daemon: repository myregistrydomain.com/test-images not "
        "found: name unknown: The repository with name 'test-images' does not exist",
        "Error response from daemon: repository myregistrydomain.com/test-images not found: name unknown: "
        "repository name not known to registry",
        "docker: Error response from daemon: repository myregistrydomain.com/test-images not found: name unknown: "
        "The repository with name 'test-images' does not exist.\nSee 'docker run --help'.",
        # Docker with the containerd image store.
        'Error response from daemon: failed to resolve reference "myregistrydomain.com/test-images:latest": '
        "myregistrydomain.com/test-images:latest: not found",
    ],
    "image-registry-unreachable": [
        'Error response from daemon: Get "https://registry-1.docker.io/v2/": dial tcp: '
        "lookup registry-1.docker.io on 10.0.2.3:53: no such host",
        "Pulling registry (registry:2)...\nERROR: Get https://registry-1.docker.io/v2/: dial tcp: "
        "lookup registry-1.docker.io: Temporary failure in name resolution",
        "Error response from daemon: toomanyrequests: You have reached your pull rate limit. "
        "You may increase the limit by authenticating and upgrading: https://www.docker.com/increase-rate-limit",
    ],
    "box-catalogue-unreachable": [
        "The box 'generic/debian12' could not be found or\ncould not be accessed in the remote catalog. "
        "If this is a private\nbox on HashiCorp's Vagrant Cloud, please verify you're logged in via",
    ],
    "apparmor-parser-missing": [
        "docker: Error response from daemon: AppArmor enabled on system but the docker-default profile could "
        "not be loaded: running `apparmor_parser apparmor_parser --version` failed with output: \n"
        'error: exec: "apparmor_parser": executable file not found in $PATH.',
    ],
    "docker-start-limit": [
        'Job for docker.service failed because start of the service was attempted too often.\n'
        'See "systemctl status docker.service" and "journalctl -xeu docker.service" for details.\n'
        "To force a start use \"systemctl reset-failed docker.service\" followed by "
        "\"systemctl start docker.service\" again.",
        "docker.service: Start request repeated too quickly.",
    ],
    "compose-v1-file": [
        "validating /root/docker-registry/docker-compose.yml: "
        "(root) Additional property registry is not allowed",
    ],
    "unknown-ssl-directive": [
        'nginx: [emerg] unknown directive "ssl" in /etc/nginx/conf.d/registry.conf:8',
    ],
    "ssl-on-deprecated": [
        'nginx: [warn] the "ssl" directive is deprecated, use the "listen ... ssl" '
        "directive instead in /etc/nginx/conf.d/registry.conf:8",
    ],
    "too-large": [
        "error parsing HTTP 413 response body: invalid character '<' looking for "
        'beginning of value: "<html>\\r\\n<head><title>413 Request Entity Too Large'
        '</title></head>"',
        "<center><h1>413 Request Entity Too Large</h1></center>",
    ],
    "unresolved-name": [
        "curl: (6) Could not resolve host: myregistrydomain.com",
        'Error response from daemon: Get "https://myregistrydomain.com/v2/": '
        "dial tcp: lookup myregistrydomain.com on 127.0.0.53:53: no such host",
        "ping: myregistrydomain.com: Name or service not known",
        "ping: myregistrydomain.com: Temporary failure in name resolution",
    ],
    "untrusted-ca": [
        'Error response from daemon: Get "https://myregistrydomain.com/v2/": '
        "tls: failed to verify certificate: "
        "x509: certificate signed by unknown authority",
        "curl: (60) SSL certificate problem: unable to get local issuer certificate",
        "curl: (60) SSL certificate problem: "
        "self-signed certificate in certificate chain",
        "curl: (60) SSL certificate problem: "
        "self signed certificate in certificate chain",
    ],
    "unauthorized": [
        "Error response from daemon: login attempt to https://myregistrydomain.com/v2/ "
        "failed with status: 401 Unauthorized",
        "unauthorized: authentication required",
        'Error response from daemon: Get "https://myregistrydomain.com/v2/": '
        "unauthorized: incorrect username or password",
    ],
    "connection-refused": [
        "curl: (7) Failed to connect to localhost port 5043 after 0 ms: "
        "Connection refused",
        'Error response from daemon: Get "https://myregistrydomain.com/v2/": '
        "dial tcp 192.168.33.10:443: connect: connection refused",
    ],
    "vbox-hostonly-range": [
        "The IP address configured for the host-only network is not within the\n"
        "allowed ranges. Please update the address used to be within the allowed\n"
        "ranges and run the command again.",
    ],
    "schema1-manifest": [
        "[DEPRECATION NOTICE] Docker Image Format v1 and Docker Image manifest "
        "version 2, schema 1 support is disabled by default and will be removed in "
        "an upcoming release. Suggest the author of docker.io/library/nginx:1.9 to "
        "upgrade the image to the OCI Format or Docker Image manifest v2, schema 2.",
        "[DEPRECATION NOTICE] registry v2 schema1 support will be removed in an "
        "upcoming release. Please contact admins of the docker.io registry NOW to "
        "avoid future disruption.",
    ],
    "pip-compose": [
        "error: externally-managed-environment\n\n"
        "× This environment is externally managed",
        "AttributeError: cython_sources",
        "TypeError: kwargs_from_env() got an unexpected keyword argument 'ssl_version'",
    ],
}

CASES = [(cause_id, text) for cause_id, texts in EXAMPLES.items() for text in texts]


def test_every_cause_has_examples() -> None:
    assert set(EXAMPLES) == {cause.id for cause in CAUSES}


def test_cause_ids_are_unique() -> None:
    assert len({cause.id for cause in CAUSES}) == len(CAUSES)


@pytest.mark.parametrize(("cause_id", "text"), CASES)
def test_diagnose_finds_cause(cause_id: str, text: str) -> None:
    cause = diagnose(text)
    assert cause is not None
    assert cause.id == cause_id


@pytest.mark.parametrize(("cause_id", "text"), CASES)
def test_diagnose_finds_cause_inside_longer_output(cause_id: str, text: str) -> None:
    output = f"$ some command\nsome progress line\n{text}\nexit status 1\n"
    cause = diagnose(output)
    assert cause is not None
    assert cause.id == cause_id


@pytest.mark.parametrize(
    "text",
    [
        "",
        "latest: digest: sha256:0123abcd size: 528",
        "Login Succeeded",
        "nginx: the configuration file /etc/nginx/nginx.conf syntax is ok",
    ],
)
def test_unrelated_text_gives_none(text: str) -> None:
    assert diagnose(text) is None
    assert diagnose_all(text) == []


def test_diagnose_all_lists_every_cause_in_table_order() -> None:
    text = "\n".join(
        [
            "curl: (6) Could not resolve host: myregistrydomain.com",
            'nginx: [emerg] unknown directive "ssl" in '
            "/etc/nginx/conf.d/registry.conf:8",
        ]
    )
    assert [c.id for c in diagnose_all(text)] == [
        "unknown-ssl-directive",
        "unresolved-name",
    ]
    assert diagnose(text) == cause_by_id("unknown-ssl-directive")


def test_a_name_never_pushed_is_not_taken_for_a_login_problem() -> None:
    """Docker's "may require 'docker login'" is about the name here: the registry has no such repository."""
    text = ("Error response from daemon: pull access denied for myregistrydomain.com/test-images, repository does "
            "not exist or may require 'docker login': denied: requested access to the resource is denied")
    assert [c.id for c in diagnose_all(text)] == ["name-not-pushed"]


@pytest.mark.parametrize("text", [
    "Error response from daemon: manifest for myregistrydomain.com/test-images:latest not found: "
    "manifest unknown: manifest unknown",
    "Error response from daemon: repository myregistrydomain.com/test-images not found: name unknown: "
    "The repository with name 'test-images' does not exist",
    "Error response from daemon: pull access denied for myregistrydomain.com/test-images, repository does not "
    "exist or may require 'docker login': denied: requested access to the resource is denied",
], ids=["manifest-unknown", "name-unknown", "denied"])
def test_the_pull_of_test_images_is_only_the_name_never_pushed(text: str) -> None:
    """The as-written server-pull after a login: each text Docker 20.10/24/26 prints names one cause, this one."""
    assert [c.id for c in diagnose_all(text)] == ["name-not-pushed"]


def test_format_diagnosis_is_two_lines() -> None:
    cause = cause_by_id("too-large")
    lines = format_diagnosis(cause).splitlines()
    assert lines == [f"likely cause: {cause.cause}", f"fix: {cause.fix}"]
    assert "client_max_body_size 0;" in lines[1]


def test_cause_by_id_rejects_unknown_id() -> None:
    with pytest.raises(ValueError, match="no-such-cause"):
        cause_by_id("no-such-cause")


def test_cause_rejects_multiline_fix() -> None:
    with pytest.raises(ValueError, match="fix"):
        Cause("x", re.compile("x"), "a cause", "first line\nsecond line")


# --- the tutorial's causes are the scenario's, the harness keeps the general ones ------------------------


def test_the_harness_knows_no_cause_of_the_tutorials_own() -> None:
    """lab/ would serve another tutorial: nginx's `ssl on;` or test-images mean nothing there."""
    tutorial_only = {"legacy-cn", "no-basic-auth", "name-not-pushed", "compose-v1-file", "unknown-ssl-directive"}
    assert not tutorial_only & {cause.id for cause in GENERAL}
    assert diagnosis.diagnose('nginx: [emerg] unknown directive "ssl"') is None  # the harness's table alone
    assert diagnose('nginx: [emerg] unknown directive "ssl"') == cause_by_id("unknown-ssl-directive")
    assert [cause.id for cause in CAUSES[-len(GENERAL):]] == [cause.id for cause in GENERAL]  # tried last


@pytest.mark.parametrize(("data", "problem"), [
    ({"id": "x"}, "list of causes"),
    ([{"id": "x", "match": ["a"], "cause": "c"}], "missing 'fix'"),
    ([{"id": "x", "match": ["a"], "cause": "c", "fix": "f", "hint": "h"}], "got 'hint' too"),
    ([{"id": "x", "match": "a", "cause": "c", "fix": "f"}], "match: expected a list"),
    ([{"id": "x", "match": ["(a"], "cause": "c", "fix": "f"}], "not a regular expression"),
    ([{"id": "Not Kebab", "match": ["a"], "cause": "c", "fix": "f"}], "kebab-case"),
    ([{"id": "x", "match": ["a"], "cause": "c", "fix": "f"}] * 2, "given twice"),
], ids=["not-a-list", "missing-key", "unknown-key", "match-not-list", "bad-regex", "bad-id", "twice"])
def test_a_bad_causes_file_entry_is_refused_with_its_reason(data: object, problem: str) -> None:
    with pytest.raises(ValueError, match=re.escape(problem)):
        causes_from(data)


def test_a_scenarios_causes_file_may_not_redefine_a_general_cause(tmp_path) -> None:
    (tmp_path / "templates").mkdir()
    (tmp_path / "causes.yaml").write_text("- {id: docker-start-limit, match: [x], cause: c, fix: f}\n")
    section = {"machines": {"a": {"ip": "10.0.0.2"}}, "domain": "a.example", "ports": {}, "images": {},
               "templates": "templates", "workdir": "/root/a-lab", "reset": {}, "causes": "causes.yaml"}
    with pytest.raises(ConfigError, match="docker-start-limit: the harness knows this cause already"):
        manifest.parse(section, tmp_path / "scenario.yaml")
