"""The foundation on real machines: both up, on their IPs, reachable, reachable by `reglab ssh`."""

import pytest

pytestmark = pytest.mark.e2e


def test_both_machines_run_at_their_ips(reglab, lab_session):
    status = reglab("status")
    assert status.status == 0, status.err
    for machine in lab_session.lab.machines:
        assert any(line.split()[:4] == [machine.name, lab_session.lab.provider, "running", machine.ip]
                   for line in status.out.splitlines()), status.out


@pytest.mark.parametrize(("source", "target"), [("registry", "client"), ("client", "registry")])
def test_each_machine_reaches_the_other_on_the_private_network(lab_session, source, target):
    ip = lab_session.lab.machine(target).ip
    machine = lab_session.provider.connect(source)
    own = machine.run("ip -4 -o addr show").stdout
    assert f"inet {lab_session.lab.machine(source).ip}/24" in own
    reply = machine.run(f"ping -c 1 -W 3 {ip}", warn=True)
    assert reply.ok, reply.stdout + reply.stderr
    assert "1 received" in reply.stdout


def test_reglab_ssh_passes_exit_codes_through(reglab):
    assert reglab("ssh", "client", "--", "exit", "3").status == 3
    assert reglab("ssh", "client", "--", "true").status == 0


def test_reglab_ssh_runs_one_command(reglab, lab_session):
    """On the machine named: its own private address (not a machine name, which each provider's DNS
    resolves its own way: libvirt's to the management network)."""
    result = reglab("ssh", "client", "--", "ip", "-4", "-o", "addr", "show")
    assert result.status == 0, result.err
    assert f"inet {lab_session.lab.machine('client').ip}/24" in result.out
    assert f"inet {lab_session.lab.machine('registry').ip}/" not in result.out


def test_reglab_ssh_names_an_unknown_machine(reglab):
    result = reglab("ssh", "nosuch", "--", "true")
    assert result.status == 2
    assert "no machine 'nosuch'" in result.err


def test_reglab_up_again_is_quick_and_prints_the_table(reglab):
    result = reglab("up")
    assert result.status == 0, result.err
    assert result.out.splitlines()[0].split() == ["MACHINE", "PROVIDER", "STATE", "IP", "START"]
