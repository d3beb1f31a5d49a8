"""The roster: every input an instructor may hand over gives students or one message naming file and line."""

from pathlib import Path

import pytest

from lab.classroom.roster import MAX_STUDENTS, Student, load_roster
from lab.common.errors import ConfigError
from lab.common.sshkeys import new_key


def write(tmp_path: Path, name: str, data: str | bytes) -> str:
    path = tmp_path / name
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return str(path)


def ids(students: list[Student]) -> list[str]:
    return [student.id for student in students]


# --- a count ---------------------------------------------------------------

def test_a_count_of_one_gives_one_student_padded_to_two_digits() -> None:
    assert ids(load_roster("1")) == ["s01"]


def test_a_count_of_twelve_gives_s01_to_s12_in_order() -> None:
    assert ids(load_roster(" 12\n")) == [f"s{n:02d}" for n in range(1, 13)]


def test_a_three_digit_count_pads_to_three_digits() -> None:
    """Ids sort as the students were numbered: s001..s100, not s1, s10, s100."""
    students = load_roster("100")
    assert ids(students)[:2] == ["s001", "s002"] and ids(students)[-1] == "s100"


@pytest.mark.parametrize("count", ["0", "-3", str(MAX_STUDENTS + 1)])
def test_a_count_out_of_range_is_refused(count: str) -> None:
    with pytest.raises(ConfigError, match=f"from 1 to {MAX_STUDENTS}, got {count}"):
        load_roster(count)


# --- CSV --------------------------------------------------------------------

def test_csv_keeps_names_order_and_extra_columns(tmp_path: Path) -> None:
    path = write(tmp_path, "roster.csv", "id,name,email,group\nalice,Alice A,a@example.org,g1\nBob,Bob B,,g2\n")
    students = load_roster(path)
    assert ids(students) == ["alice", "bob"]
    assert students[0].name == "Alice A"
    assert students[0].email == "a@example.org"
    assert dict(students[0].extra) == {"email": "a@example.org", "group": "g1"}
    assert students[1].email == ""


def test_csv_with_a_byte_order_mark_and_crlf_line_ends(tmp_path: Path) -> None:
    """What a spreadsheet saves as 'CSV UTF-8': the BOM must not glue itself to the `id` header."""
    path = write(tmp_path, "roster.csv", b"\xef\xbb\xbfId,Name\r\ns01,Zo\xc3\xa9\r\ns02,Ann\r\n")
    students = load_roster(path)
    assert ids(students) == ["s01", "s02"]
    assert students[0].name == "Zoé"


def test_csv_skips_blank_rows_and_tolerates_trailing_empty_columns(tmp_path: Path) -> None:
    path = write(tmp_path, "roster.csv", "id,name,,\ns01,Ann,,\n,,,\n\ns02,Ben\n")
    assert ids(load_roster(path)) == ["s01", "s02"]


def test_csv_names_the_line_and_the_id_that_is_not_usable(tmp_path: Path) -> None:
    path = write(tmp_path, "roster.csv", "id,name\ns01,A\ns02,B\nBob Smith,C\n")
    with pytest.raises(ConfigError) as caught:
        load_roster(path)
    assert str(caught.value).startswith(f"{path}: line 4: id: 'Bob Smith' is not a usable student id")


def test_csv_refuses_a_duplicate_id_after_lower_casing(tmp_path: Path) -> None:
    path = write(tmp_path, "roster.csv", "id\ns01\nalice\nALICE\n")
    with pytest.raises(ConfigError, match=r"line 4: id: 'alice' is already the id of the student at line 3"):
        load_roster(path)


def test_csv_without_an_id_column_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "roster.csv", "name,email\nAnn,a@example.org\n")
    with pytest.raises(ConfigError, match=r"line 1: expected a header row with an `id` column"):
        load_roster(path)


def test_csv_with_only_a_header_is_an_empty_roster(tmp_path: Path) -> None:
    path = write(tmp_path, "roster.csv", "id,name\n")
    with pytest.raises(ConfigError, match="no students"):
        load_roster(path)


def test_an_empty_csv_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="empty file"):
        load_roster(write(tmp_path, "roster.csv", ""))


def test_csv_row_with_more_cells_than_columns_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "roster.csv", "id,name\ns01,Ann,extra\n")
    with pytest.raises(ConfigError, match="line 2: 3 cells, but the header names 2 columns"):
        load_roster(path)


def test_csv_value_under_an_unnamed_column_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "roster.csv", "id,\ns01,lost\n")
    with pytest.raises(ConfigError, match="line 2: column 2 holds 'lost' but has no name"):
        load_roster(path)


def test_csv_column_named_twice_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="line 1: column 'id' is named twice"):
        load_roster(write(tmp_path, "roster.csv", "id,ID\ns01,s02\n"))


def test_csv_row_without_an_id_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="line 3: id: missing"):
        load_roster(write(tmp_path, "roster.csv", "id,name\ns01,A\n,B\n"))


def test_csv_that_is_not_utf8_names_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, "roster.csv", b"id,name\ns01,Zo\xe9\n")
    with pytest.raises(ConfigError, match="line 2: expected UTF-8 text, got the byte 0xe9"):
        load_roster(path)


def test_csv_with_an_unclosed_quote_is_one_config_error(tmp_path: Path) -> None:
    """Without strict parsing, the quote would swallow every row after it into one name."""
    csv_file = write(tmp_path, "roster.csv", 'id,name\ns01,"Ann\ns02,Ben\n')
    with pytest.raises(ConfigError, match="line 3: not valid CSV: unexpected end of data"):
        load_roster(csv_file)


@pytest.mark.parametrize("bad", ["-s01", "s01-", "a_b", "x" * 17, "élise"])
def test_ids_outside_the_rule_are_refused(tmp_path: Path, bad: str) -> None:
    """A trailing '-' too: the id begins a DNS name (the student's registry domain)."""
    with pytest.raises(ConfigError, match="is not a usable student id"):
        load_roster(write(tmp_path, "roster.csv", f"id\n{bad}\n"))


def test_more_than_the_maximum_number_of_students_is_refused(tmp_path: Path) -> None:
    rows = "".join(f"s{n}\n" for n in range(MAX_STUDENTS + 1))
    with pytest.raises(ConfigError, match=f"{MAX_STUDENTS + 1} students, expected at most {MAX_STUDENTS}"):
        load_roster(write(tmp_path, "roster.csv", "id\n" + rows))


# --- YAML ---------------------------------------------------------------------

def test_yaml_list_of_ids(tmp_path: Path) -> None:
    assert ids(load_roster(write(tmp_path, "roster.yml", "- s01\n- Alice\n"))) == ["s01", "alice"]


def test_yaml_list_of_mappings_keeps_names_and_other_keys(tmp_path: Path) -> None:
    path = write(tmp_path, "class.yaml", "- id: s01\n  name: Ann\n  email: a@example.org\n- id: s02\n")
    students = load_roster(path)
    assert students == [Student("s01", "Ann", {"email": "a@example.org"}), Student("s02")]


def test_yaml_entry_errors_name_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, "roster.yml", "- s01\n- id: s02\n\n- id: Bob Smith\n")
    with pytest.raises(ConfigError, match=r"roster.yml: line 4: id: 'Bob Smith' is not a usable"):
        load_roster(path)


def test_yaml_number_id_must_be_quoted(tmp_path: Path) -> None:
    """`- 007` is the integer 7 to YAML: taking it as '7' would silently rename the student."""
    with pytest.raises(ConfigError, match="line 2: id: expected the id as text, got a number 7; put it in quotes"):
        load_roster(write(tmp_path, "roster.yml", "- s01\n- 007\n"))


def test_yaml_mapping_without_id_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="line 1: missing key `id`"):
        load_roster(write(tmp_path, "roster.yml", "- name: Ann\n"))


def test_yaml_nested_value_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="line 1: group: expected a text value, got a list"):
        load_roster(write(tmp_path, "roster.yml", "- {id: s01, group: [a, b]}\n"))


@pytest.mark.parametrize("text", ["students: [s01]\n", "s01\n"])
def test_yaml_that_is_not_a_list_is_refused(tmp_path: Path, text: str) -> None:
    with pytest.raises(ConfigError, match="expected a list of student ids"):
        load_roster(write(tmp_path, "roster.yml", text))


def test_invalid_yaml_names_the_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"line 2, column \d+: invalid YAML"):
        load_roster(write(tmp_path, "roster.yml", "- s01\n- a: b: c\n- s03\n"))


def test_yaml_key_given_twice_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"\[0\]\.id: expected each key once, got 'id' again at line 1"):
        load_roster(write(tmp_path, "roster.yml", "- {id: s01, id: s02}\n"))


def test_empty_yaml_file_is_an_empty_roster(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no students"):
        load_roster(write(tmp_path, "roster.yml", "# nobody yet\n"))


def test_duplicate_ids_in_yaml_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="line 2: id: 's01' is already the id"):
        load_roster(write(tmp_path, "roster.yml", "- s01\n- S01\n"))


# --- the file itself -------------------------------------------------------------

def test_a_missing_file_is_one_config_error(tmp_path: Path) -> None:
    path = str(tmp_path / "nobody.csv")
    with pytest.raises(ConfigError, match=f"^{path}: no such roster$"):
        load_roster(path)


def test_a_folder_is_one_config_error(tmp_path: Path) -> None:
    (tmp_path / "class.csv").mkdir()
    with pytest.raises(ConfigError, match="cannot read the roster"):
        load_roster(str(tmp_path / "class.csv"))


def test_an_unknown_kind_of_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"expected a number of students, or a roster file ending in \.csv"):
        load_roster(write(tmp_path, "roster.txt", "s01\n"))


def test_student_is_a_frozen_value_with_a_read_only_extra() -> None:
    student = Student("s01", "Ann", {"email": "a@example.org"})
    with pytest.raises(AttributeError):
        student.id = "s02"  # type: ignore[misc]
    with pytest.raises(TypeError):
        student.extra["email"] = "b@example.org"  # type: ignore[index]
    assert hash(student) == hash(Student("s01", "Ann"))


def test_a_yaml_roster_may_give_each_students_machines_over_ssh(tmp_path) -> None:  # noqa: ANN001
    """Issue 10: a school's own machines per student; identity files are relative to the roster."""
    (tmp_path / "keys").mkdir()
    new_key(tmp_path / "keys" / "ada")
    roster = tmp_path / "given.yml"
    roster.write_text("- id: ada\n  machines:\n    registry: {ip: 10.9.0.5, user: teacher, identity_file: keys/ada}\n"
                      "    client: {ip: 10.9.0.6, host: pc6.school.example, port: 2222, user: teacher}\n- bob\n")
    ada, bob = load_roster(str(roster))
    assert ada.machines["registry"] == {"ip": "10.9.0.5", "user": "teacher",
                                        "identity_file": str(tmp_path / "keys" / "ada")}
    assert ada.machines["client"]["port"] == 2222
    assert bob.machines is None  # reglab boots bob's


def test_a_misspelt_machine_key_in_a_roster_names_the_entry(tmp_path) -> None:  # noqa: ANN001
    roster = tmp_path / "given.yml"
    roster.write_text("- id: ada\n  machines:\n    registry: {ip: 10.9.0.5, usr: teacher}\n")
    with pytest.raises(ConfigError, match=r"line 1: machines.registry.usr.*unknown key"):
        load_roster(str(roster))


def test_a_roster_key_paramiko_cannot_read_names_the_entry(tmp_path: Path) -> None:
    """Checked with the roster: later it would be a class of labs whose machines "do not answer"."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = tmp_path / "locked"
    key.write_bytes(Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.BestAvailableEncryption(b"pw")))
    key.chmod(0o600)
    garbage = tmp_path / "garbage"
    garbage.write_text("-----BEGIN OPENSSH PRIVATE KEY-----\nnonsense\n-----END OPENSSH PRIVATE KEY-----\n")
    garbage.chmod(0o600)
    roster = tmp_path / "given.yml"
    for name, words in (("locked", "encrypted key: use an unencrypted key"),
                        ("garbage", "not a private key paramiko can read")):
        roster.write_text(f"- bob\n- id: ada\n  machines:\n"
                          f"    registry: {{ip: 10.9.0.5, user: t, identity_file: {name}}}\n")
        with pytest.raises(ConfigError) as info:
            load_roster(str(roster))
        assert str(info.value).startswith(f"{roster}: line 2: machines.registry.identity_file: {tmp_path / name}: ")
        assert words in str(info.value)
