"""The partner CSV import against whatever a coordinator may upload: the outcome is the import or
a refusal naming the lines (InvalidInput) – never another exception, never half a file written."""
from __future__ import annotations

import re
from dataclasses import replace

import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from sqlalchemy import delete, select, update

from tests.support.strategies import (REQUIRED_COLUMNS, CsvLayout, PartnerSpec, csv_layouts,
                                      edgy_partner_files, messy_partner_texts,
                                      partner_file_bytes, partner_sets, property_settings,
                                      spec_text, valid_partner_files)
from workflow.errors import InvalidInput
from workflow.models import Contact, Partner, PartnerKind, Programme
from workflow.partners import (ABORTED, decode_partner_csv, ensure_programme, import_partners,
                               parse_partner_csv)

HEADER = ("name,kind,contact_name,contact_email,deputy_email,head_name,head_email,language,"
          "joined_on,employees,group")
# A failing example may hold a field beyond csv's limit (131,072 characters): hypothesis says
# its repr is large, which is no reason to hide the failure.
pytestmark = pytest.mark.filterwarnings("ignore:Generating overly large repr")

LINE_REFERENCE = re.compile(r"^(?:Zeilen? (\d+(?:, \d+)*)|Gespeicherte Partner|bereits "
                            r"gespeichert)[:;]? ")


def physical_lines(text: str) -> int:
    return len(re.split(r"\r\n|\r|\n", text))


def assert_clear_refusal(refusal: InvalidInput, text: str):
    """A refusal a coordinator can act on: a message, and every problem names its line(s), each
    a line the file has."""
    message = str(refusal)
    assert message.strip() and "Traceback" not in message
    if not refusal.problems:  # a refusal of the whole file (missing columns, not a text file)
        return
    assert refusal.args[0] == ABORTED
    bound = physical_lines(text)
    for problem in refusal.problems:
        if problem == "die Datei enthält keine Partner":
            continue
        match = LINE_REFERENCE.match(problem)
        assert match, f"problem without a line number: {problem!r}"
        for number in (match.group(1) or "").split(", "):
            if number:
                assert 2 <= int(number) <= bound, f"line {number} of {bound}: {problem!r}"


def read_or_refusal(text: str):
    try:
        return parse_partner_csv(text)
    except InvalidInput as refusal:
        assert_clear_refusal(refusal, text)
        return refusal


# Reading (no database) ----------------------------------------------------------------------------

@property_settings(100)
@given(text=messy_partner_texts() | st.text())
@example(text="x" * 131_073 + ",name\n")  # a header field beyond csv's field size limit
@example(text=HEADER + "\n" + "A,Kommune,K,a@example.org,,,,de,,99999999999999999999,\n")
def test_any_text_is_read_or_refused_naming_its_lines(text):
    read_or_refusal(text)


@property_settings(80)
@given(data=partner_file_bytes() | st.binary(max_size=400))
def test_any_upload_is_decoded_and_read_or_refused_by_name(data):
    try:
        text, notes = decode_partner_csv(data)
    except InvalidInput as refusal:
        assert str(refusal).strip()
        return
    assert all(note.strip() for note in notes)
    read_or_refusal(text)


@property_settings(50)
@given(file=valid_partner_files(),
       encoding=st.sampled_from(["utf-8", "utf-8-sig", "utf-16", "cp1252"]))
def test_a_valid_file_reads_the_same_in_every_encoding_excel_writes(file, encoding):
    text, specs = file
    try:
        data = text.encode(encoding)
    except UnicodeEncodeError:
        data = None
    if data is None or (encoding == "cp1252" and _is_utf8(data)):
        return  # not representable (or indistinguishable from UTF-8): nothing to compare
    decoded, notes = decode_partner_csv(data)
    assert parse_partner_csv(decoded) == parse_partner_csv(text)
    assert bool(notes) == (encoding == "cp1252" and not text.isascii())


def _is_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


@property_settings(60)
@given(specs=partner_sets(min_size=1, max_size=6), layout=csv_layouts())
@example(  # Excel for Mac's "CSV (Macintosh)": lines end in CR alone
    specs=[PartnerSpec("Verein " + ",".join("ABCDEFGHIJKLMNOPQRSTU"), PartnerKind.VERBAND,
                       "Verband", "Kim", "k@example.org", "", "", "", "de", "de", None, None, "")],
    layout=CsvLayout(REQUIRED_COLUMNS, REQUIRED_COLUMNS, delimiter=";", line_ending="\r"))
def test_valid_partners_are_read_back_as_written(specs, layout):
    specs = _fit(specs, layout)
    rows = parse_partner_csv(spec_text(layout, specs))
    assert [(r.name, r.kind, r.contact_name, r.contact_email, r.deputy_email, r.head_name,
             r.head_email, r.language, r.joined_on, r.employees, r.group) for r in rows] == [
        (s.name, s.kind, s.contact_name, s.contact_email, s.deputy_email, s.head_name,
         s.head_email, s.language, s.joined_on, s.employees, s.group) for s in specs]


BREAKAGES = {
    "kind": "Raumstation", "contact_email": "kein-at.example.org", "name": "", "language": "fr",
    "joined_on": "31.02.2020", "head_email": "leitung@", "employees": "viele",
}


@property_settings(60)
@given(specs=partner_sets(min_size=1, max_size=6), layout=csv_layouts(), data=st.data())
def test_a_wrong_line_is_named_by_the_number_it_has_in_the_file(specs, layout, data):
    """Fields with line breaks make a record span lines: the number is the file's, not the
    record's."""
    specs = _fit(specs, layout)
    broken = data.draw(st.integers(0, len(specs) - 1), label="broken line")
    column = data.draw(st.sampled_from([c for c in BREAKAGES if c in layout.columns]),
                       label="broken column")
    cells = [{**s.cells(), "group": ""} if s.group == specs[broken].name else s.cells()
             for s in specs]  # members of a group whose name is broken are not the point here
    cells[broken] = {**cells[broken], column: BREAKAGES[column]}
    lines = [layout.line(c) for c in cells]
    text = layout.text(lines)
    expected = 2 + sum(physical_lines(line) for line in lines[:broken])
    with pytest.raises(InvalidInput) as refused:
        parse_partner_csv(text)
    assert_clear_refusal(refused.value, text)
    assert [p.split(":")[0] for p in refused.value.problems] == [f"Zeile {expected}"]


def _fit(specs, layout: CsvLayout):
    """The partners as ``layout`` can hold them (without a column, its values are empty)."""
    if "group" not in layout.columns:
        specs = [replace(s, group="") for s in specs]
    if "employees" not in layout.columns:
        specs = [replace(s, employees=None, employees_text="") for s in specs]
    return specs


# Importing (real database: SQLite and PostgreSQL) -------------------------------------------------

def reset(database):
    with database.unit_of_work() as uow:
        uow.session.execute(update(Partner).values(group_id=None))
        uow.session.execute(delete(Contact))
        uow.session.execute(delete(Partner))
        uow.session.execute(delete(Programme))
        uow.commit()


def stored(database):
    """Every programme, partner and contact row, ids included."""
    with database.unit_of_work() as uow:
        return [uow.session.execute(select(*model.__table__.c).order_by(model.id)).all()
                for model in (Programme, Partner, Contact)]


def run_import(database, text):
    with database.unit_of_work() as uow:
        programme = ensure_programme(uow, coordinator_emails=("koordination@example.org",))
        result = import_partners(uow, programme, text)
        uow.commit()
    return result


def read_back(database):
    with database.unit_of_work() as uow:
        partners = uow.session.scalars(select(Partner).order_by(Partner.id)).all()
        by_id = {p.id: p.name for p in partners}
        return {p.name: (p.kind, p.joined_on, p.employees, by_id.get(p.group_id, ""), p.active,
                         {(str(c.role), c.email, c.name, c.language) for c in p.contacts})
                for p in partners}


@property_settings(25, fixtures=True)
@given(earlier=st.none() | valid_partner_files(max_size=4),
       upload=messy_partner_texts() | edgy_partner_files() | partner_file_bytes())
@example(earlier=None,
         upload=HEADER + "\nA,Kommune,K,a@example.org,,,,de,,99999999999999999999,\n")
@example(earlier=None, upload=HEADER + "\nA,Kommune,K,a@example.org,,,,de,,3000000000,\n")
@example(earlier=None, upload=HEADER + "\nA,Kommune," + "K" * 301 + ",a@example.org,,,,de,,,\n")
@example(earlier=None, upload=HEADER + "\nA\x00,Kommune,K,a@example.org,,,,de,,,\n")
def test_an_import_is_all_or_nothing(import_database, earlier, upload):
    """Whatever the file, the import ends in a result or a refusal naming lines; after a
    refusal every row in the database is as it was, ids included."""
    database = import_database
    reset(database)
    if earlier is not None:
        run_import(database, earlier[0])
    before = stored(database)
    text = upload
    try:
        if isinstance(upload, bytes):
            text, _ = decode_partner_csv(upload)
        result = run_import(database, text)
    except InvalidInput as refusal:  # a file that is no text is refused as a whole
        assert_clear_refusal(refusal, text if isinstance(text, str) else "")
        assert stored(database) == before, "a refused import changed the database"
        return
    assert result.created + result.updated + result.unchanged == len(parse_partner_csv(text))


@property_settings(20, fixtures=True)
@given(file=valid_partner_files(max_size=8))
def test_valid_partners_import_and_read_back_and_a_second_import_changes_nothing(
        import_database, file):
    database = import_database
    text, specs = file
    reset(database)
    first = run_import(database, text)
    assert (first.created, first.updated, first.unchanged) == (len(specs), 0, 0)
    assert read_back(database) == {
        s.name: (s.kind, s.joined_on, s.employees, s.group, True, s.expected_contacts())
        for s in specs}
    before = stored(database)
    again = run_import(database, text)
    assert (again.created, again.updated, again.unchanged) == (0, 0, len(specs))
    assert stored(database) == before
