"""The coordinators' partner table on the real Flask app, SQLite and PostgreSQL: every filter and
sort (alone, combined, with junk), pagination at its edges, free text with LIKE's own characters
and markup, the count, the bulk selection's form, and who may see it."""
from __future__ import annotations

import html
import re
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select, update

from tests.integration.conftest import berlin
from tests.support.report import load_shipped_template
from tests.support.sign_in import signed_in_client
from web import create_app
from workflow.cycles import open_cycle
from workflow.models import Partner, Submission
from workflow.partners import ensure_programme, import_partners
from workflow.reporting import start_report

HEADER = ("name,kind,contact_name,contact_email,deputy_email,head_name,head_email,language,"
          "joined_on,group\n")
ROW = re.compile(r'<th scope="row"><a href="/submissions/(\d+)">([^<]*)</a></th>')


def csv_line(name, kind="Kommune", contact="Kontakt", email=None, group=""):
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "x"
    return (f'"{name}",{kind},"{contact}",{email or slug + "@example.org"},,,,de,2019-01-01,'
            f'"{group}"\n')


SPECIAL = [
    csv_line("100% Vielfalt e.V.", "Verband", "Frau Prozent"),
    csv_line("Bau_Gesellschaft", "Unternehmen", "Herr Unterstrich"),
    csv_line("<b>Fett</b> GmbH", "Unternehmen", "<i>Kursiv</i> Kontakt", "fett@example.org"),
    csv_line("Städtekooperation", "Kooperation", "Lead"),
    csv_line("Stadt Herne", "Kommune", "Herne Kontakt", group="Städtekooperation"),
    csv_line("Jobcenter Köln", "Jobcenter", "Dagmar ÖZTÜRK", "d.oeztuerk@jobcenter.example"),
]


def seed(services, extra=0):
    """Partners "Partner 000" … plus the special ones; the 2027 cycle open (due 30 April)."""
    lines = [csv_line(f"Partner {n:03d}", ("Kommune", "Kreis", "Polizei")[n % 3], f"Kontakt {n}")
             for n in range(extra)]
    with services.database.unit_of_work() as uow:
        programme = ensure_programme(uow, coordinator_emails=("koordination@example.org",))
        import_partners(uow, programme, HEADER + "".join(lines + SPECIAL))
        load_shipped_template(uow, programme)
        cycle = open_cycle(uow, programme, 2027, now=berlin(date(2027, 2, 1), 7),
                           opens_on=date(2027, 2, 1), due_on=date(2027, 4, 30))
        uow.commit()
        return cycle.id


def ids_by_name(services) -> dict[str, int]:
    with services.database.unit_of_work() as uow:
        return dict(uow.session.execute(select(Partner.name, Submission.id).join(
            Submission, Submission.partner_id == Partner.id)).all())


def change(services, names, **values):
    ids = ids_by_name(services)
    with services.database.unit_of_work() as uow:
        uow.session.execute(update(Submission).where(Submission.id.in_([ids[n] for n in names]))
                            .values(**values))
        uow.commit()


@pytest.fixture
def app(services):
    return create_app(settings=services.settings, services=services)


@pytest.fixture
def client(app, services):
    return signed_in_client(app, services, "koordination@example.org")


def listed(client, cycle_id, **params):
    response = client.get(f"/cycles/{cycle_id}/partners", query_string=params)
    assert response.status_code == 200, (params, response.status_code)
    page = response.get_data(as_text=True)
    return [html.unescape(name) for _, name in ROW.findall(page)], page


def names(client, cycle_id, **params):
    return listed(client, cycle_id, **params)[0]


def total(page) -> int:
    found = re.search(r"(\d+) Partner gefunden", page)
    return int(found.group(1)) if found else 0


def today_in_berlin() -> date:
    return datetime.now(UTC).astimezone(ZoneInfo("Europe/Berlin")).date()


def test_every_filter_alone_and_combined(client, services):
    cycle_id = seed(services, extra=6)
    everyone = names(client, cycle_id)
    assert len(everyone) == 11 and "Stadt Herne" not in everyone  # members report via the group
    change(services, ["Partner 000", "Partner 003"], state="submitted",
           submitted_at=datetime(2027, 3, 1, 9, tzinfo=UTC))
    change(services, ["Partner 001"], state="draft", escalation_level=2)
    change(services, ["Partner 004", "Jobcenter Köln"], escalation_level=2)
    # Overdue: still owed and its own deadline (moved by an extension or not) is past.
    long_ago = today_in_berlin() - timedelta(days=40)
    change(services, ["Partner 001", "Partner 002", "Partner 000"], due_on=long_ago)
    change(services, ["Partner 005"], due_on=today_in_berlin() + timedelta(days=3))

    assert names(client, cycle_id, state="submitted") == ["Partner 000", "Partner 003"]
    assert names(client, cycle_id, state="draft") == ["Partner 001"]
    assert names(client, cycle_id, kind="polizei") == ["Partner 002", "Partner 005"]
    assert names(client, cycle_id, kind="jobcenter") == ["Jobcenter Köln"]
    assert names(client, cycle_id, level="2") == ["Jobcenter Köln", "Partner 001", "Partner 004"]
    assert names(client, cycle_id, level="0", kind="kommune") == ["Partner 000", "Partner 003"]
    assert names(client, cycle_id, overdue="1") == ["Partner 001", "Partner 002"]
    assert names(client, cycle_id, overdue="1", level="2") == ["Partner 001"]
    assert names(client, cycle_id, overdue="1", kind="polizei") == ["Partner 002"]
    assert names(client, cycle_id, state="submitted", kind="kommune") == ["Partner 000",
                                                                          "Partner 003"]
    assert names(client, cycle_id, state="submitted", kind="kreis") == []
    _, page = listed(client, cycle_id, state="submitted", kind="kreis")
    assert "Keine Partner gefunden." in page and total(page) == 0
    _, page = listed(client, cycle_id, level="2")
    assert total(page) == 3


def test_junk_in_the_address_is_ignored_never_an_error(client, services):
    cycle_id = seed(services, extra=3)
    everyone = names(client, cycle_id)
    for junk in ({"state": "gelöscht"}, {"kind": "KOMMUNE'--"}, {"level": "10"},
                 {"level": "-1"}, {"level": "zwei"}, {"level": "1.5"}, {"overdue": "yes"},
                 {"sort": "password"}, {"sort": "--name"}, {"sort": "name-"}, {"sort": ""},
                 {"page": "0"}, {"page": "-3"}, {"page": "x"}, {"page": "9" * 30},
                 {"q": ""}, {"q": "   "}, {"q": "\x00"}, {"unknown": "1"}):
        found = names(client, cycle_id, **junk)
        assert sorted(found) == sorted(everyone), junk
    assert client.get("/cycles/999999/partners").status_code == 404


def test_sorting_by_every_column_both_ways(client, services):
    cycle_id = seed(services, extra=4)
    change(services, ["Partner 002"], state="submitted",
           submitted_at=datetime(2027, 3, 2, 9, tzinfo=UTC))
    change(services, ["Partner 001"], state="accepted",
           submitted_at=datetime(2027, 3, 1, 9, tzinfo=UTC))
    change(services, ["Partner 003"], state="draft", escalation_level=3,
           due_on=date(2027, 6, 30))
    change(services, ["Partner 000"], escalation_level=1, due_on=date(2027, 5, 31))
    everyone = names(client, cycle_id)
    assert everyone == sorted(everyone)
    assert names(client, cycle_id, sort="-name") == everyone[::-1]
    by_state = names(client, cycle_id, sort="state")
    # Invited first, then draft, submitted, accepted: the way through a cycle.
    assert by_state[-3:] == ["Partner 003", "Partner 002", "Partner 001"]
    assert names(client, cycle_id, sort="-state")[0] == "Partner 001"
    assert names(client, cycle_id, sort="-level")[:2] == ["Partner 003", "Partner 000"]
    assert names(client, cycle_id, sort="level")[-2:] == ["Partner 000", "Partner 003"]
    assert names(client, cycle_id, sort="-due")[:2] == ["Partner 003", "Partner 000"]
    assert names(client, cycle_id, sort="due")[-2:] == ["Partner 000", "Partner 003"]
    # Not submitted yet: at the end in both directions.
    assert names(client, cycle_id, sort="submitted")[:2] == ["Partner 001", "Partner 002"]
    assert names(client, cycle_id, sort="-submitted")[:2] == ["Partner 002", "Partner 001"]
    _, page = listed(client, cycle_id, sort="-level", state="draft")
    assert 'aria-sort="descending"' in page and page.count("aria-sort=") == 1
    # The header of the sorted column turns the order round and keeps the filters.
    assert 'href="/cycles/%d/partners?state=draft&amp;sort=level"' % cycle_id in page
    _, page = listed(client, cycle_id)
    assert 'aria-sort="ascending"' in page


def test_pages_of_fifty_with_a_count_and_navigation(client, services):
    cycle_id = seed(services, extra=114)  # 114 + 5 special ones reporting = 119
    first, page = listed(client, cycle_id)
    assert len(first) == 50 and total(page) == 119
    assert "Seite 1 von 3" in page and "Zeilen 1–50" in page
    assert re.search(r'href="[^"]*page=1"[^>]*aria-current="page"', page) is None  # page 1: bare
    assert re.search(r'href="/cycles/\d+/partners" aria-current="page"', page)
    second = names(client, cycle_id, page="2")
    last, page = listed(client, cycle_id, page="3")
    assert len(second) == 50 and len(last) == 19
    assert len(set(first) | set(second) | set(last)) == 119  # nothing twice, nothing lost
    assert 'page=3" aria-current="page"' in page and "Nächste Seite" not in page
    assert "Vorherige Seite" in page and "Zeilen 101–119" in page
    beyond, page = listed(client, cycle_id, page="99")
    assert beyond == last and "Seite 3 von 3" in page  # past the end: the last page
    # Filters stay on every page link.
    _, page = listed(client, cycle_id, q="partner", sort="-name")
    assert 'href="/cycles/%d/partners?q=partner&amp;sort=-name&amp;page=2"' % cycle_id in page
    assert names(client, cycle_id, q="partner", sort="-name", page="3")[-1] == "Partner 000"


def test_free_text_finds_names_contacts_and_addresses_in_any_case(client, services):
    cycle_id = seed(services, extra=3)
    assert names(client, cycle_id, q="%") == ["100% Vielfalt e.V."]  # % is no wildcard here
    assert names(client, cycle_id, q="_") == ["Bau_Gesellschaft"]
    assert names(client, cycle_id, q="0%") == ["100% Vielfalt e.V."]
    assert names(client, cycle_id, q="\\") == []
    assert names(client, cycle_id, q="frau PROZENT") == ["100% Vielfalt e.V."]  # contact name
    assert names(client, cycle_id, q="FETT@example") == ["<b>Fett</b> GmbH"]  # contact address
    assert names(client, cycle_id, q="jobcenter.EXAMPLE") == ["Jobcenter Köln"]
    assert names(client, cycle_id, q="öztürk") == ["Jobcenter Köln"]  # not only A to Z
    assert names(client, cycle_id, q="KÖLN") == ["Jobcenter Köln"]
    assert names(client, cycle_id, q="herne") == ["Städtekooperation"]  # a member finds its group
    assert names(client, cycle_id, q="  partner   00 ") == ["Partner 000", "Partner 001",
                                                           "Partner 002"]
    assert names(client, cycle_id, q="partner", kind="kreis") == ["Partner 001"]
    found, page = listed(client, cycle_id, q="<b>")
    assert found == ["<b>Fett</b> GmbH"] and total(page) == 1
    assert "<b>Fett</b>" not in page and "&lt;b&gt;Fett&lt;/b&gt; GmbH" in page
    assert 'value="&lt;b&gt;"' in page  # the search field keeps the text, as text
    assert names(client, cycle_id, q="x" * 1000) == []


def test_the_table_carries_the_bulk_selection_and_markers(client, services):
    cycle_id = seed(services, extra=2)
    change(services, ["Partner 001"], reminders_paused=True, non_reporting=True,
           due_on=today_in_berlin() - timedelta(days=30))
    found, page = listed(client, cycle_id, sort="-name")
    ids = ids_by_name(services)
    form = page[page.index('<form method="post"'):page.index("</form>", page.index(
        '<form method="post"'))]
    assert 'name="csrf_token"' in form
    assert f'name="next" value="/cycles/{cycle_id}/partners?sort=-name"' in form
    for name in found:
        sid = ids[name]
        assert f'name="submission_id" value="{sid}"' in form
        assert f'<label for="select-{sid}"' in form
    assert "Partner 001 auswählen" in form
    row = next(r for r in page.split("<tr>") if "Partner 001</a>" in r)
    assert "pausiert" in row and "als säumig markiert" in row and "überfällig" in row
    other = next(r for r in page.split("<tr>") if "Partner 000</a>" in r)
    assert "pausiert" not in other and "überfällig" not in other


def test_viewers_may_read_the_table_and_strangers_may_not(app, services):
    cycle_id = seed(services, extra=1)
    viewer = signed_in_client(app, services, "viewer@example.org", "viewer")
    response = viewer.get(f"/cycles/{cycle_id}/partners?q=partner")
    assert response.status_code == 200 and "Partner 000" in response.get_data(as_text=True)
    stranger = app.test_client().get(f"/cycles/{cycle_id}/partners")
    assert stranger.status_code == 303 and "/login" in stranger.headers["Location"]


def test_the_page_reads_in_english(client, services):
    cycle_id = seed(services, extra=1)
    with client.session_transaction() as session:
        session["lang"] = "en"
    change(services, ["Partner 000"], state="submitted",
           submitted_at=datetime(2027, 3, 1, 9, tzinfo=UTC))
    _, page = listed(client, cycle_id, state="submitted")
    assert 'lang="en"' in page and "1 March 2027, 10:00" in page  # Berlin time


def test_a_page_shown_before_shows_a_partners_move_at_once(client, services):
    # The rows are kept per process until the cycle's figures may have changed (like the
    # overview's): a use case's event must make the same address show the new state.
    cycle_id = seed(services, extra=2)
    assert "Partner 000" in names(client, cycle_id, state="invited")
    with services.database.unit_of_work() as uow:
        start_report(uow, ids_by_name(services)["Partner 000"], now=datetime.now(UTC),
                     actor="partner")
        uow.commit()
    assert "Partner 000" not in names(client, cycle_id, state="invited")
    assert names(client, cycle_id, state="opened") == ["Partner 000"]
