"""Keeping the partner list in the signed-in pages, on SQLite and PostgreSQL: search and pages,
create, edit, group membership, deactivate, the CSV import with its preview, report forms."""
from __future__ import annotations

import html
import io
import json
import re
from datetime import date

import pytest
from sqlalchemy import func, select
from werkzeug.datastructures import FileStorage, MultiDict
from werkzeug.test import stream_encode_multipart

from tests.integration.conftest import berlin, partner_csv, seed_programme
from tests.support.report import load_shipped_template
from tests.support.sign_in import csrf_token, signed_in_client
from web import create_app
from workflow.cycles import get_programme, open_cycle
from workflow.events import EventKind
from workflow.models import (Base, Contact, Event, Partner, PartnerKind, ReportTemplate,
                             Submission)
from workflow.partners import ensure_programme

EMAIL = "koordination@example.org"
ROW = re.compile(r'<th scope="row"><a href="/setup/partners/(\d+)">')


@pytest.fixture
def app(services):
    return create_app(settings=services.settings, services=services)


@pytest.fixture
def coordinator(app, services):
    return signed_in_client(app, services, EMAIL, "coordinator")


def post(client, url, data, **kwargs):
    token = csrf_token(client.get("/setup/partners").get_data(as_text=True))
    return client.post(url, data={"csrf_token": token, **data}, **kwargs)


def row_counts(services) -> dict[str, int]:
    with services.database.unit_of_work() as uow:
        return {table.name: uow.session.scalar(select(func.count()).select_from(table))
                for table in Base.metadata.sorted_tables}


def partner_id(services, name: str) -> int:
    with services.database.unit_of_work() as uow:
        return uow.session.scalar(select(Partner.id).where(Partner.name == name))


def events(services, kind) -> list[tuple[str, dict]]:
    """(actor, payload) of each event of ``kind``, oldest first."""
    with services.database.unit_of_work() as uow:
        return [tuple(row) for row in uow.session.execute(
            select(Event.actor, Event.payload).where(Event.kind == kind).order_by(Event.id))]


def test_the_list_is_searched_and_paged_in_sql(coordinator, services):
    seed_programme(services, partners=120)
    first = coordinator.get("/setup/partners").get_data(as_text=True)
    assert len(ROW.findall(first)) == 50 and "120 Partner" in first and "Seite 1 von 3" in first
    last = coordinator.get("/setup/partners?page=3").get_data(as_text=True)
    assert len(ROW.findall(last)) == 20 and "Partner 00119" in last
    assert coordinator.get("/setup/partners?page=99").status_code == 200  # the last page
    by_name = coordinator.get("/setup/partners?q=artner 0011").get_data(as_text=True)
    assert len(ROW.findall(by_name)) == 10
    by_address = coordinator.get("/setup/partners?q=H7@EXAMPLE.org").get_data(as_text=True)
    assert len(ROW.findall(by_address)) == 1 and "Partner 00007" in by_address
    literal = coordinator.get("/setup/partners?q=%25_%00").get_data(as_text=True)
    assert "Kein Partner passt zur Suche." in literal
    for junk in ("page=-1", "page=x", "shown=evil", "q=" + "x" * 5000):
        assert coordinator.get(f"/setup/partners?{junk}").status_code == 200, junk
    for url in ("/setup/partners/999999", "/setup/partners/99999999999999999999",
                "/setup/cycles/99999999999999999999", "/setup/cycles/0/preview"):
        assert coordinator.get(url).status_code == 404, url


def test_a_partner_is_created_and_edited_with_its_name_shown_as_text(coordinator, services):
    seed_programme(services, partners=2)
    bad = post(coordinator, "/setup/partners/new", {
        "name": " ", "kind": "zoo", "employees": "viele", "joined_on": "31.02.2019"})
    assert bad.status_code == 422
    page = bad.get_data(as_text=True)
    for message in ("Bitte den Namen angeben.", "angebotenen Möglichkeiten",
                    "Bitte eine ganze Zahl zwischen 0 und", "Bitte ein Datum wie"):
        assert message in page
    assert 'class="error-summary"' in page and 'href="#employees"' in page
    taken = post(coordinator, "/setup/partners/new", {"name": "partner 00001", "kind": "kreis"})
    assert "Einen Partner mit diesem Namen gibt es schon." in taken.get_data(as_text=True)

    created = post(coordinator, "/setup/partners/new", {
        "name": "Verein <script>alert(1)</script>", "kind": "verband", "employees": "1.234",
        "joined_on": "15.05.2019"})
    assert created.status_code == 303, created.get_data(as_text=True)
    new_id = partner_id(services, "Verein <script>alert(1)</script>")
    assert created.headers["Location"] == f"/setup/partners/{new_id}"
    page = coordinator.get(f"/setup/partners/{new_id}").get_data(as_text=True)
    assert "Verein &lt;script&gt;alert(1)&lt;/script&gt;" in page and "<script>alert" not in page
    with services.database.unit_of_work() as uow:
        partner = uow.session.get(Partner, new_id)
        assert (partner.kind, partner.employees, partner.joined_on) == (
            PartnerKind.VERBAND, 1234, date(2019, 5, 15))
    [(actor, payload)] = events(services, EventKind.PARTNER_CREATED)
    assert actor == EMAIL and payload["partner_id"] == new_id

    edited = post(coordinator, f"/setup/partners/{new_id}", {
        "action": "save", "name": "Verein Vielfalt", "kind": "verband", "employees": "",
        "joined_on": "2019-05-15"})
    assert edited.status_code == 303
    [(actor, payload)] = events(services, EventKind.PARTNER_CHANGED)
    assert actor == EMAIL
    assert payload["changes"] == {
        "name": {"old": "Verein <script>alert(1)</script>", "new": "Verein Vielfalt"},
        "employees": {"old": 1234, "new": None}}
    same = post(coordinator, f"/setup/partners/{new_id}", {
        "action": "save", "name": "Verein Vielfalt", "kind": "verband", "joined_on": "15.05.2019"})
    assert same.status_code == 303 and len(events(services, EventKind.PARTNER_CHANGED)) == 1


def test_group_membership_is_one_level_deep(coordinator, services):
    seed_programme(services, partners=3)
    assert post(coordinator, "/setup/partners/new", {
        "name": "Städtekooperation", "kind": "kooperation"}).status_code == 303
    group, member, other = (partner_id(services, n) for n in
                            ("Städtekooperation", "Partner 00000", "Partner 00001"))
    form = coordinator.get(f"/setup/partners/{member}").get_data(as_text=True)
    assert f'<option value="{group}">Städtekooperation</option>' in form

    def set_group(pid, name, group_id):
        return post(coordinator, f"/setup/partners/{pid}", {
            "action": "save", "name": name, "kind": "kommune", "group_id": str(group_id)})

    assert set_group(member, "Partner 00000", group).status_code == 303
    with services.database.unit_of_work() as uow:
        assert uow.session.get(Partner, member).group_id == group
    group_page = coordinator.get(f"/setup/partners/{group}").get_data(as_text=True)
    assert "Mitglieder dieser Gruppe" in group_page and "Partner 00000" in group_page

    # A group cannot join a group, a member cannot take members, nobody is their own group.
    into_member = set_group(other, "Partner 00001", member)
    assert into_member.status_code == 422
    assert "Diese Gruppe ist nicht möglich" in into_member.get_data(as_text=True)
    group_joins = post(coordinator, f"/setup/partners/{group}", {
        "action": "save", "name": "Städtekooperation", "kind": "kooperation",
        "group_id": str(other)})
    assert group_joins.status_code == 422
    assert "hat selbst Mitglieder" in group_joins.get_data(as_text=True)
    own = set_group(other, "Partner 00001", other)
    assert "nicht seine eigene Gruppe" in own.get_data(as_text=True)
    unknown = set_group(other, "Partner 00001", 999999)
    assert unknown.status_code == 422
    with services.database.unit_of_work() as uow:
        assert uow.session.get(Partner, other).group_id is None
        assert uow.session.get(Partner, group).group_id is None


def test_a_deactivated_partner_keeps_its_report_but_is_not_invited_later(coordinator, services):
    seed_programme(services, partners=3)
    with services.database.unit_of_work() as uow:
        open_cycle(uow, get_programme(uow), 2027, now=berlin(date(2027, 2, 1)),
                   opens_on=date(2027, 2, 1), due_on=date(2027, 4, 30))
        uow.commit()
    pid = partner_id(services, "Partner 00001")
    asked = post(coordinator, f"/setup/partners/{pid}", {"action": "deactivate"})
    assert asked.status_code == 200 and "wirklich deaktivieren?" in asked.get_data(as_text=True)
    with services.database.unit_of_work() as uow:
        assert uow.session.get(Partner, pid).active
    done = post(coordinator, f"/setup/partners/{pid}", {"action": "deactivate", "confirm": "1"})
    assert done.status_code == 303
    [(actor, _)] = events(services, EventKind.PARTNER_DEACTIVATED)
    assert actor == EMAIL
    with services.database.unit_of_work() as uow:
        assert not uow.session.get(Partner, pid).active
        open_cycle(uow, get_programme(uow), 2028, now=berlin(date(2028, 2, 1)),
                   opens_on=date(2028, 2, 1), due_on=date(2028, 4, 30))
        uow.commit()
        years = uow.session.scalars(select(Submission.cycle_id).where(
            Submission.partner_id == pid)).all()
        assert len(years) == 1  # 2027's submission stays; 2028 did not invite it
        assert uow.session.scalar(select(func.count()).select_from(Submission)) == 5
    listing = coordinator.get("/setup/partners?shown=inactive").get_data(as_text=True)
    assert ROW.findall(listing) == [str(pid)]
    assert post(coordinator, f"/setup/partners/{pid}", {"action": "reactivate"}).status_code == 303
    assert len(events(services, EventKind.PARTNER_REACTIVATED)) == 1
    with services.database.unit_of_work() as uow:
        assert uow.session.get(Partner, pid).active


def upload(client, data: bytes, name="partners.csv", url="/setup/partners/import"):
    """POST a file as the browser's form does."""
    token = csrf_token(client.get("/setup/partners").get_data(as_text=True))
    # In memory: the test client never closes the temporary file it spools a large body to.
    body, length, boundary = stream_encode_multipart(MultiDict({
        "csrf_token": token, "action": "preview",
        "file": FileStorage(io.BytesIO(data), filename=name)}), use_tempfile=False)
    return client.post(url, input_stream=body, content_length=length,
                       content_type=f'multipart/form-data; boundary="{boundary}"')


HIDDEN_TEXT = re.compile(r'<input type="hidden" name="text" value="([^"]*)">', re.S)


def test_a_csv_import_shows_each_line_first_and_saves_only_when_confirmed(coordinator, services):
    seed_programme(services, partners=2)
    lines = partner_csv(4).splitlines()
    lines[2] = lines[2].replace("Kontakt 1,", "Kontakt Eins,")  # Partner 00001 changes
    lines.insert(3, "Kaputt,Zoo,x,keine-adresse,,,,de,gestern")
    before = row_counts(services)
    refused = upload(coordinator, ("\n".join(lines) + "\n").encode())
    assert refused.status_code == 422
    page = refused.get_data(as_text=True)
    assert "Zeile 4:" in page and "unbekannte Art" in page and "ist kein Datum" in page
    assert "Jetzt importieren" not in page
    assert row_counts(services) == before

    del lines[3]
    lines.append("Neu &lt;i&gt; <b>fett</b>,Verband,Neu,p1@example.org,,,,en,")
    preview = upload(coordinator, ("\n".join(lines) + "\n").encode("cp1252"), "Excel.csv")
    assert preview.status_code == 200, preview.get_data(as_text=True)
    page = preview.get_data(as_text=True)
    assert row_counts(services) == before  # nothing written by the preview
    rows = re.findall(r'<tr><td class="num">(\d+)</td><th scope="row">([^<]*)</th>'
                      r'<td>([^<]*)</td></tr>', page)
    assert rows == [("2", "Partner 00000", "unverändert"), ("3", "Partner 00001", "geändert"),
                    ("4", "Partner 00002", "neu"), ("5", "Partner 00003", "neu"),
                    ("6", "Neu &amp;lt;i&amp;gt; &lt;b&gt;fett&lt;/b&gt;", "neu")]
    assert "als Windows-1252 gelesen" in page
    assert "Zeilen 3, 6: die E-Mail-Adresse p1@example.org ist Berichtskontakt mehrerer" in page
    text = HIDDEN_TEXT.search(page).group(1)

    import html
    imported = post(coordinator, "/setup/partners/import",
                    {"action": "import", "text": html.unescape(text)})
    assert imported.status_code == 303, imported.get_data(as_text=True)
    with services.database.unit_of_work() as uow:
        assert uow.session.scalar(select(func.count()).select_from(Partner)) == 5
        assert uow.session.scalar(select(Contact.name).where(
            Contact.email == "p1@example.org", Contact.name == "Kontakt Eins")) is not None
    [(actor, payload)] = events(services, EventKind.PARTNERS_IMPORTED)
    assert actor == EMAIL and payload == {"created": 3, "updated": 1, "unchanged": 1}


def test_unreadable_uploads_get_a_clear_message(coordinator, services):
    for data, name, message in [
            (b"PK\x03\x04rest", "partners.xlsx", "Arbeitsmappe"),
            (b"\xff\xfe\x00\xd8", "unicode.txt", "UTF-16"),
            (b"name,kind\n\x00\x81", "nul.csv", "Null-Bytes"),
            (b"x" * (4 * 1024 * 1024 + 1), "big.csv", "zu groß"),
            (b"", "empty.csv", "Die Datei ist leer."),
            (b"a;b\n1;2\n", "columns.csv", "fehlen Spalten")]:
        response = upload(coordinator, data, name)
        assert response.status_code == 422, name
        assert message in response.get_data(as_text=True), name
    huge = upload(coordinator, b"x" * (12 * 1024 * 1024 + 1), "huge.csv")
    assert huge.status_code == 413 and "Datei zu groß" in huge.get_data(as_text=True)
    stale = post(coordinator, "/setup/partners/import", {"action": "import", "text": ""})
    assert stale.status_code == 422
    assert row_counts(services)["partner"] == 0


def test_report_form_versions_are_listed_and_loaded_from_json(coordinator, services):
    with services.database.unit_of_work() as uow:
        programme = ensure_programme(uow)
        load_shipped_template(uow, programme)
        definition = uow.session.scalars(select(ReportTemplate.definition)).one()
        uow.commit()
    page = coordinator.get("/setup/templates").get_data(as_text=True)
    assert "Jahresbericht 2027" in page

    def send(data: bytes, name="vorlage.json"):
        return upload(coordinator, data, name, url="/setup/templates")

    new = {**definition, "year": 2028, "version": 2}
    assert send(json.dumps(new).encode()).status_code == 303
    [(actor, payload)] = events(services, EventKind.TEMPLATE_LOADED)
    assert actor == EMAIL and payload["year"] == 2028
    again = send(json.dumps(new).encode())
    assert again.status_code == 303 and len(events(services, EventKind.TEMPLATE_LOADED)) == 1
    assert "ist schon geladen" in coordinator.get(again.headers["Location"]).get_data(
        as_text=True)
    for data, message in [
            (json.dumps({**new, "version": 3, "sections": [{"id": "a", "questions": [
                {"id": "x", "type": "decimal", "label": {"de": "x"},
                 "decimals": "z"}]}]}).encode(), "Die Berichtsvorlage ist fehlerhaft"),
            (json.dumps({**new, "title": {"de": "Anders"}}).encode(),
             "bitte die Versionsnummer erhöhen"),
            (b"{nicht json", "kein gültiges JSON"),
            ("{}".encode("utf-16"), "nicht in UTF-8"),
            (b"[1, 2]", "JSON-Objekt"),
            (json.dumps({**new, "year": 10**12}).encode(), "year muss zwischen 2000 und 2100"),
            (json.dumps({**new, "version": 2**40}).encode(), "version muss zwischen 1 und"),
            (b"[" * 100_000, "zu tief verschachtelt")]:
        response = send(data)
        assert response.status_code == 422, message
        assert message in response.get_data(as_text=True), response.get_data(as_text=True)
    with services.database.unit_of_work() as uow:
        assert uow.session.scalar(select(func.count()).select_from(ReportTemplate)) == 2


def switch_language(client, language: str):
    client.post("/language", data={"lang": language, "next": "/setup/partners", "csrf_token":
                                   csrf_token(client.get("/setup/partners").get_data(as_text=True))})


HEADER = ("name,kind,contact_name,contact_email,deputy_email,head_name,head_email,language,"
          "joined_on,group")
# What the import and the template upload say, in each language of the set-up pages.
WORDING = {
    "de": {"aborted": "Import abgebrochen, nichts wurde gespeichert:",
           "line": "Zeile 3: unbekannte Art 'Zoo' (erlaubt: Kommune, Kreis, Behörde, Polizei, "
                   "Jobcenter, Verband, Unternehmen, Kooperation); contact_email: ungültige "
                   "E-Mail-Adresse 'keine-adresse'; joined_on: 'gestern' ist kein Datum "
                   "(JJJJ-MM-TT)",
           "twice": "Zeile 4: Name doppelt (schon in Zeile 2)",
           "group": "Zeile 2: Gruppe 'Niemand' ist kein bekannter Partner",
           "note": "Datei war nicht UTF-8; als Windows-1252 gelesen.",
           "shared": "Zeilen 3, 4: die E-Mail-Adresse p1@example.org ist Berichtskontakt "
                     "mehrerer Partner ('Partner 00001', 'Zweiter Partner'); sie erhält die Mails "
                     "aller dieser Partner.",
           "workbook": "Die Datei ist eine Arbeitsmappe (Excel oder LibreOffice), keine CSV-Datei",
           "template": "Die Berichtsvorlage ist fehlerhaft:",
           "question": "Abschnitt a, Frage x: unbekannter Typ 'decimal'",
           "version": "Version 2 der Vorlage 2028 gibt es schon mit anderem Inhalt: bitte die "
                      "Versionsnummer erhöhen.",
           "bounds": "Die Berichtsvorlage ist fehlerhaft: year muss zwischen 2000 und 2100 liegen.",
           "object": "Die Berichtsvorlage muss ein JSON-Objekt sein.",
           "group_rule": "Diese Gruppe ist nicht möglich: bereits gespeichert: 'Partner 00000' "
                         "ist Mitglied von 'Städtekooperation' (bereits gespeichert) und hat "
                         "selbst Mitglieder: 'Partner 00001' (bereits gespeichert); Mitglieder "
                         "einer Gruppe können keine eigenen Mitglieder haben"},
    "en": {"aborted": "Import cancelled, nothing was saved:",
           "line": "Line 3: unknown kind 'Zoo' (allowed: Kommune, Kreis, Behörde, Polizei, "
                   "Jobcenter, Verband, Unternehmen, Kooperation); contact_email: invalid email "
                   "address 'keine-adresse'; joined_on: 'gestern' is not a date (YYYY-MM-DD)",
           "twice": "Line 4: name appears twice (already in line 2)",
           "group": "Line 2: group 'Niemand' is not a known partner",
           "note": "The file was not UTF-8; it was read as Windows-1252.",
           "shared": "Lines 3, 4: the email address p1@example.org is the reporting contact of "
                     "several partners ('Partner 00001', 'Zweiter Partner'); it receives the "
                     "emails of all these partners.",
           "workbook": "The file is a workbook (Excel or LibreOffice), not a CSV file",
           "template": "The report template has errors:",
           "question": "Section a, question x: unknown type 'decimal'",
           "version": "Version 2 of the 2028 template already exists with different content: "
                      "please increase the version number.",
           "bounds": "The report template has errors: year must be between 2000 and 2100.",
           "object": "The report template must be a JSON object.",
           "group_rule": "This group is not possible: Already saved: 'Partner 00000' is a "
                         "member of 'Städtekooperation' (already saved) and has members of its "
                         "own: 'Partner 00001' (already saved); members of a group cannot have "
                         "members of their own"},
}


def test_the_import_the_group_rule_and_the_template_upload_refuse_in_the_page_language(
        coordinator, services):
    seed_programme(services, partners=2)
    assert post(coordinator, "/setup/partners/new", {
        "name": "Städtekooperation", "kind": "kooperation"}).status_code == 303
    group, member, other = (partner_id(services, n) for n in
                            ("Städtekooperation", "Partner 00000", "Partner 00001"))
    assert post(coordinator, f"/setup/partners/{member}", {
        "action": "save", "name": "Partner 00000", "kind": "kommune",
        "group_id": str(group)}).status_code == 303
    with services.database.unit_of_work() as uow:
        definition = uow.session.scalars(select(ReportTemplate.definition)).one()
    loaded = {**definition, "year": 2028, "version": 2}
    assert upload(coordinator, json.dumps(loaded).encode(), "v2.json",
                  url="/setup/templates").status_code == 303
    partner = "Partner 00000,Kommune,K,p0@example.org,,,,de,,"
    bad_lines = [HEADER, partner, "Kaputt,Zoo,x,keine-adresse,,,,de,gestern,", partner]
    unknown_group = [HEADER, partner + "Niemand"]
    shared = [HEADER, partner, "Partner 00001,Kreis,Kontakt Eins,p1@example.org,,,,de,,",
              "Zweiter Partner,Verband,Jürgen,p1@example.org,,,,en,,"]
    templates = {"question": {**loaded, "version": 3, "sections": [{"id": "a", "questions": [
                     {"id": "x", "type": "decimal", "label": {"de": "x"}}]}]},
                 "version": {**loaded, "title": {"de": "Anders"}},
                 "bounds": {**loaded, "year": 10**12}, "object": [1, 2]}
    before = row_counts(services)
    for language, other_language in (("en", "de"), ("de", "en")):
        switch_language(coordinator, language)
        said, unsaid = WORDING[language], WORDING[other_language]

        def shown(response, status: int) -> str:
            assert response.status_code == status, (language, response.get_data(as_text=True))
            page = html.unescape(response.get_data(as_text=True))
            assert f'<html lang="{language}">' in page
            return page

        page = shown(upload(coordinator, "\n".join(bad_lines).encode()), 422)
        for key in ("aborted", "line", "twice"):
            assert said[key] in page and unsaid[key] not in page, (language, key)
        page = shown(upload(coordinator, "\n".join(unknown_group).encode()), 422)
        assert said["group"] in page and unsaid["group"] not in page, language
        page = shown(upload(coordinator, "\n".join(shared).encode("cp1252")), 200)
        for key in ("note", "shared"):
            assert said[key] in page and unsaid[key] not in page, (language, key)
        page = shown(upload(coordinator, b"PK\x03\x04rest", "partners.xlsx"), 422)
        assert said["workbook"] in page and unsaid["workbook"] not in page, language
        page = shown(post(coordinator, f"/setup/partners/{other}", {
            "action": "save", "name": "Partner 00001", "kind": "kreis",
            "group_id": str(member)}), 422)
        assert said["group_rule"] in page and unsaid["group_rule"] not in page, language
        for key, refused in templates.items():
            page = shown(upload(coordinator, json.dumps(refused).encode(), "t.json",
                                url="/setup/templates"), 422)
            assert said[key] in page and unsaid[key] not in page, (language, key)
        page = shown(upload(coordinator, json.dumps(templates["question"]).encode(), "t.json",
                            url="/setup/templates"), 422)
        assert said["template"] in page, language
    assert row_counts(services) == before


def test_viewers_see_the_set_up_pages_but_cannot_change_anything(app, services):
    seed_programme(services, partners=2)
    viewer = signed_in_client(app, services, "viewer@example.org", "viewer")
    pid = partner_id(services, "Partner 00000")
    for url in ("/setup/cycles", "/setup/cycles/new", "/setup/ladder", "/setup/partners",
                f"/setup/partners/{pid}", "/setup/partners/import", "/setup/templates"):
        response = viewer.get(url)
        assert response.status_code == 200, url
        assert "Speichern</button>" not in response.get_data(as_text=True)
    token = csrf_token(viewer.get("/setup/partners").get_data(as_text=True))
    refused = viewer.post(f"/setup/partners/{pid}", data={
        "csrf_token": token, "action": "deactivate", "confirm": "1"})
    assert refused.status_code == 403
    with services.database.unit_of_work() as uow:
        assert uow.session.get(Partner, pid).active
