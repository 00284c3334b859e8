"""Reading a partners CSV file as coordinators export it (Excel, LibreOffice): no database."""
from __future__ import annotations

import pytest

from workflow.errors import InvalidInput
from workflow.models import PartnerKind
from workflow.partners import (CP1252_NOTE, GroupEntry, decode_partner_csv, group_problems,
                               parse_partner_csv, shared_email_warnings)

HEADER = ("name,kind,contact_name,contact_email,deputy_email,head_name,head_email,language,"
          "joined_on,employees,group")


def line(name, email, group="", kind="Verband", head_name="Leitung"):
    return f"{name},{kind},Kontakt,{email},,{head_name},,de,2020-01-01,,{group}"


def csv_text(*lines, header=HEADER):
    return "\n".join([header, *lines]) + "\n"


def refusal(text) -> list[str]:
    with pytest.raises(InvalidInput) as caught:
        parse_partner_csv(text)
    assert "nichts wurde gespeichert" in str(caught.value)
    return caught.value.problems


def test_a_doubled_quote_inside_a_quoted_field_is_one_quote():
    rows = parse_partner_csv(csv_text(
        '"Verein ""Vielfalt"" e.V.",Verband,"Ayşe ""Ayşo"" Demir",a@example.org,,'
        '"Vorstand, Dr. Kim",,de,2020-01-01,,'))
    assert [(r.name, r.contact_name, r.head_name) for r in rows] == [
        ('Verein "Vielfalt" e.V.', 'Ayşe "Ayşo" Demir', "Vorstand, Dr. Kim")]


def test_a_semicolon_file_from_german_excel_is_read():
    text = csv_text('"Stadt Köln; Integrationsrat";Kommune;Kontakt;k@example.org;;;;de;'
                    '2020-01-01;1.200;',
                    "Verein Vielfalt;Verband;Kontakt;v@example.org;;;;en;;;",
                    header=HEADER.replace(",", ";"))
    rows = parse_partner_csv(text)
    assert [(r.name, r.kind, r.employees, r.language) for r in rows] == [
        ("Stadt Köln; Integrationsrat", PartnerKind.KOMMUNE, 1200, "de"),
        ("Verein Vielfalt", PartnerKind.VERBAND, None, "en")]


def test_a_tab_separated_file_is_read():
    rows = parse_partner_csv(csv_text(line("Verein Vielfalt", "v@example.org").replace(",", "\t"),
                                      header=HEADER.replace(",", "\t")))
    assert [r.contact_email for r in rows] == ["v@example.org"]


def test_the_delimiter_is_guessed_outside_quotes():
    header = '"name;kind",x'  # one semicolon inside quotes, one comma outside
    with pytest.raises(InvalidInput) as caught:
        parse_partner_csv(header + "\n")
    assert "Zeile 1: name;kind, x" in str(caught.value)


def test_empty_trailing_fields_from_excel_are_ignored_but_extra_values_are_not():
    rows = parse_partner_csv(csv_text(line("Verein Vielfalt", "v@example.org") + ",,,"))
    assert [r.name for r in rows] == ["Verein Vielfalt"]
    assert refusal(csv_text(line("Verein Vielfalt", "v@example.org") + ",zu viel")) == [
        "Zeile 2: mehr Felder als Spalten (12 statt 11)"]


def test_lines_are_numbered_as_in_the_file_when_a_field_spans_lines():
    problems = refusal(csv_text(line("Verein Vielfalt", "v@example.org",
                                     head_name='"Vorstand\nDr. Kim"'),
                                "",
                                line("Stadt Essen", "nicht-gültig", kind="Kommune")))
    assert problems == ["Zeile 5: contact_email: ungültige E-Mail-Adresse 'nicht-gültig'"]


def test_a_group_loop_of_two_is_refused_naming_both_lines():
    problems = refusal(csv_text(line("Verein A", "a@example.org", group="Verein B"),
                                line("Verein B", "b@example.org", group="Verein A")))
    assert len(problems) == 1
    assert problems[0].startswith("Zeilen 2, 3: Gruppen im Kreis ('Verein A' → 'Verein B' → "
                                  "'Verein A')")


def test_a_longer_group_loop_is_refused_once_with_all_its_lines():
    problems = refusal(csv_text(line("Verein C", "c@example.org", group="Verein A"),
                                line("Verein A", "a@example.org", group="Verein B"),
                                line("Verein X", "x@example.org"),
                                line("Verein B", "b@example.org", group="Verein C")))
    assert len(problems) == 1
    assert problems[0].startswith("Zeilen 2, 3, 5: Gruppen im Kreis")


def test_a_member_of_a_member_is_refused_naming_the_lines():
    problems = refusal(csv_text(line("Kooperation", "k@example.org"),
                                line("Stadt Bochum", "b@example.org", group="Kooperation"),
                                line("Bezirk Wattenscheid", "w@example.org",
                                     group="stadt bochum")))
    assert problems == [
        "Zeile 3: 'Stadt Bochum' ist Mitglied von 'Kooperation' (Zeile 2) und hat selbst "
        "Mitglieder: 'Bezirk Wattenscheid' (Zeile 4); Mitglieder einer Gruppe können keine "
        "eigenen Mitglieder haben"]


def test_groups_one_level_deep_are_accepted():
    rows = parse_partner_csv(csv_text(line("Kooperation", "k@example.org"),
                                      line("Stadt Bochum", "b@example.org", group="Kooperation"),
                                      line("Stadt Herne", "h@example.org", group="Kooperation")))
    assert [r.group for r in rows] == ["", "Kooperation", "Kooperation"]


def test_group_check_counts_partners_only_in_the_database():
    problems = group_problems([GroupEntry("Stadt Bochum", 2, "Kooperation"),
                               GroupEntry("Kooperation", None, "Dachverband"),
                               GroupEntry("Dachverband", None, "")])
    assert problems == [
        "bereits gespeichert: 'Kooperation' ist Mitglied von 'Dachverband' (bereits gespeichert) "
        "und hat selbst Mitglieder: 'Stadt Bochum' (Zeile 2); Mitglieder einer Gruppe können "
        "keine eigenen Mitglieder haben"]


def test_utf8_with_or_without_bom_is_read_without_a_note():
    text = csv_text(line("Verein Vielfalt Münster", "v@example.org"))
    assert decode_partner_csv(text.encode("utf-8")) == (text, [])
    assert decode_partner_csv(b"\xef\xbb\xbf" + text.encode("utf-8")) == (text, [])
    assert decode_partner_csv(text.encode("utf-16")) == (text, [])


def test_excel_windows_1252_bytes_are_read_with_a_note():
    text = csv_text(line("Jürgen Müller – Beratung für Vielfalt", "j@example.org"),
                    header=HEADER).replace(",", ";")
    decoded, notes = decode_partner_csv(text.encode("cp1252"))
    assert decoded == text and notes == [CP1252_NOTE]
    assert CP1252_NOTE == "Datei war nicht UTF-8; als Windows-1252 gelesen."
    assert parse_partner_csv(decoded)[0].name == "Jürgen Müller – Beratung für Vielfalt"


def test_files_that_are_not_text_are_refused_by_name():
    with pytest.raises(InvalidInput, match="Arbeitsmappe"):
        decode_partner_csv(b"PK\x03\x04\x14\x00\x06\x00")
    with pytest.raises(InvalidInput, match="weder UTF-8 noch Windows-1252.*0x81"):
        decode_partner_csv(b"name\x81")
    with pytest.raises(InvalidInput, match="Null-Bytes"):
        decode_partner_csv(b"\x00\x00\xe4")


def test_one_reporting_address_for_several_partners_is_a_warning_with_lines():
    rows = parse_partner_csv(csv_text(line("Verein A", "berichte@example.org"),
                                      line("Verein B", "b@example.org"),
                                      line("Verein C", "Berichte@example.org")))
    warnings = shared_email_warnings([(r.contact_email, r.name, r.line) for r in rows]
                                     + [("b@example.org", "Verein D", None)])
    assert warnings == [
        "Zeilen 2, 4: die E-Mail-Adresse berichte@example.org ist Berichtskontakt mehrerer "
        "Partner ('Verein A', 'Verein C'); sie erhält die Mails aller dieser Partner.",
        "Zeile 3: die E-Mail-Adresse b@example.org ist Berichtskontakt mehrerer Partner "
        "('Verein D' (bereits gespeichert), 'Verein B'); sie erhält die Mails aller dieser "
        "Partner."]


@pytest.mark.parametrize("typed, kept", [("1234", 1234), ("1.234", 1234), ("1 234", 1234),
                                         ("", None)])
def test_a_headcount_is_read_with_or_without_thousands_separators(typed, kept):
    [row] = parse_partner_csv(csv_text(
        f"Stadt A,Kommune,Kontakt,a@example.org,,Leitung,,de,2020-01-01,{typed},"))
    assert row.employees == kept


@pytest.mark.parametrize("typed", ["1.5", "1.2.3", "1.23", "١٢", "-3", "10000001"])
def test_a_headcount_that_is_no_whole_number_of_people_is_refused(typed):
    [problem] = refusal(csv_text(
        f"Stadt A,Kommune,Kontakt,a@example.org,,Leitung,,de,2020-01-01,{typed},"))
    assert f"employees: '{typed}' ist keine Anzahl" in problem


@pytest.mark.parametrize("day", ["0001-01-01", "9999-12-31"])
def test_a_joining_date_beyond_any_meant_year_is_refused(day):
    [problem] = refusal(csv_text(
        f"Stadt A,Kommune,Kontakt,a@example.org,,Leitung,,de,{day},,"))
    assert day in problem
