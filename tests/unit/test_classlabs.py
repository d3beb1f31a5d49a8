"""Each student's lab file: the base's, with the student's own name, network, domain and user."""

from ipaddress import IPv4Network
from pathlib import Path
from typing import Any

import pytest
import yaml

from lab.classroom.labs import check_class_name, lab_name, student_lab
from lab.classroom.roster import Student
from lab.common.errors import ConfigError
from lab.common.sshkeys import new_key
from lab.model import labcheck, labfile

SUBNET = IPv4Network("10.77.3.0/24")
ROOT = Path(__file__).resolve().parents[2]


def base() -> dict[str, Any]:
    """The repository's own lab.yml, as an instructor would start from it."""
    return yaml.safe_load((ROOT / "lab.yml").read_text())


def test_a_student_lab_has_the_student_name_network_domain_and_user() -> None:
    lab = student_lab(base(), "net101", Student("s07", "Ann"), SUBNET)
    assert lab["name"] == "net101-s07"
    assert lab["machines"] == {"registry": {"ip": "10.77.3.10"}, "client": {"ip": "10.77.3.11"}}
    assert lab["domain"] == "s07.myregistrydomain.com"
    assert lab["users"] == [{"name": "s07"}]


def test_everything_else_of_the_base_is_kept() -> None:
    original = base()
    original["timeouts"] = {"command": 600, "boot": 900}
    lab = student_lab(original, "net101", Student("s07"), SUBNET)
    for key in ("provider", "edition", "os", "ports", "images", "boxes", "timeouts", "start"):
        assert lab[key] == original[key], key


def test_a_base_password_never_reaches_a_student_lab() -> None:
    """Every lab gets its own generated password; a shared one would let neighbours log in to each other."""
    original = {**base(), "users": [{"name": "student", "password": "shared-secret-1"}]}
    lab = student_lab(original, "net101", Student("s07"), SUBNET)
    assert "shared-secret-1" not in repr(lab)


def test_the_base_mapping_is_not_changed_nor_shared() -> None:
    original = base()
    before = yaml.safe_dump(original)
    lab = student_lab(original, "net101", Student("s07"), SUBNET)
    lab["images"]["registry"] = "changed:1"
    assert yaml.safe_dump(original) == before


def test_two_students_share_no_value_a_step_writes_down() -> None:
    first = student_lab(base(), "net101", Student("s01"), IPv4Network("10.77.0.0/24"))
    second = student_lab(base(), "net101", Student("s02"), IPv4Network("10.77.1.0/24"))
    for key in ("name", "domain", "machines", "users"):
        assert first[key] != second[key], key


def test_a_student_lab_is_a_valid_lab_file() -> None:
    """What the orchestration writes must load: lab.config's own validation accepts it."""
    lab = student_lab(base(), "net101", Student("ann-marie"), SUBNET)
    merged = labfile.layer(lab, {}, {}, "net101-ann-marie.yml")
    loaded = labcheck.validate(merged, ROOT / "lab.yml", "net101-ann-marie.yml")
    assert loaded.name == "net101-ann-marie"
    assert loaded.domain == "ann-marie.myregistrydomain.com"
    assert loaded.machine("registry").ip == "10.77.3.10" and loaded.machine("client").ip == "10.77.3.11"
    assert [user.name for user in loaded.users] == ["ann-marie"] and loaded.users[0].password is None


def test_an_empty_base_takes_the_default_domain() -> None:
    """The shipped tutorial declares the registry's name: myregistrydomain.com."""
    assert student_lab({}, "net101", Student("s01"), SUBNET)["domain"] == "s01.myregistrydomain.com"


def test_the_longest_class_name_and_id_still_make_a_valid_lab_name() -> None:
    assert lab_name("a" * 12, Student("b" * 16)) == "a" * 12 + "-" + "b" * 16


@pytest.mark.parametrize("name", ["", "Net101", "1net", "net-101", "a" * 13, "net_1"])
def test_unusable_class_names_are_refused(name: str) -> None:
    with pytest.raises(ConfigError, match=f"^class name: expected 1 to 12 lower-case letters or digits.*got {name!r}"):
        check_class_name(name)


def test_an_unusable_class_name_is_refused_by_student_lab_too() -> None:
    with pytest.raises(ConfigError, match="class name"):
        student_lab(base(), "Net 101", Student("s01"), SUBNET)


@pytest.mark.parametrize("student_id", ["S01", "s01-", "a_b", "x" * 17])
def test_a_student_id_that_would_not_fit_is_refused(student_id: str) -> None:
    """Student is a plain value: one made without the roster is checked here before it names a lab."""
    with pytest.raises(ConfigError, match=f"student {student_id!r}: id: not a usable student id"):
        student_lab(base(), "net101", Student(student_id), SUBNET)


def test_a_base_on_given_machines_is_refused() -> None:
    with pytest.raises(ConfigError, match="class.yml: provider: a class boots a lab per student"):
        student_lab({**base(), "provider": "ssh"}, "net101", Student("s01"), SUBNET, source="class.yml")


def test_a_base_domain_too_long_to_prefix_is_refused() -> None:
    long_domain = ".".join(["a" * 61] * 4) + ".com"  # 251 characters: valid alone, not with "s01."
    with pytest.raises(ConfigError, match="lab.yml: domain: too long to prefix"):
        student_lab({"domain": long_domain}, "net101", Student("s01"), SUBNET)


def test_a_base_domain_that_is_not_text_is_refused() -> None:
    with pytest.raises(ConfigError, match="lab.yml: domain: expected a DNS name"):
        student_lab({"domain": 42}, "net101", Student("s01"), SUBNET)


def test_a_subnet_other_than_a_24_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="each lab reglab boots takes a /24"):
        student_lab(base(), "net101", Student("s01"), IPv4Network("10.77.0.0/23"))


def test_a_student_with_given_machines_gets_an_ssh_lab_that_loads(tmp_path) -> None:  # noqa: ANN001
    """Issue 10: machines made by the school, reached over SSH; no /24 taken from the pool."""
    key = tmp_path / "k"
    new_key(key)
    student = Student("ada", machines={"registry": {"ip": "10.9.0.5", "user": "t", "identity_file": str(key)},
                                       "client": {"ip": "10.9.0.6", "user": "t", "identity_file": str(key)}})
    lab = student_lab(base(), "net101", student, None)
    assert lab["provider"] == "ssh" and lab["machines"]["client"]["ip"] == "10.9.0.6"
    path = tmp_path / "ada.yml"
    path.write_text(yaml.safe_dump(lab))
    loaded = labfile.load(path, environ={})
    assert loaded.provider == "ssh" and loaded.machine("registry").identity_file == key
    assert loaded.domain == "ada.myregistrydomain.com" and loaded.users[0].name == "ada"
