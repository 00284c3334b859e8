"""Setting a cycle up in the signed-in pages, on SQLite and PostgreSQL: a planned cycle and its
dates, its opening on its own day (scheduler) or by command, the preview of every mail with
nothing written, the ladder, test mails to oneself through a real SMTP server, the migration."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from datetime import date

import pytest
from sqlalchemy import create_engine, func, insert, select, text
from sqlalchemy.exc import IntegrityError

from infra.migrate import downgrade, upgrade
from tests.integration.conftest import berlin, seed_programme
from tests.support.servers import ROOT
from tests.support.sign_in import csrf_token, signed_in_client
from web import create_app
from workflow.cycle_setup import plan_cycle, preview_cycle_mails
from workflow.cycles import get_programme, open_cycle, open_due_cycles
from workflow.events import EventKind
from workflow.models import (Base, Cycle, CycleState, Event, Notification, Partner, Submission,
                             utcnow)
from workflow.partners import import_partners
from workflow.policy import ReportingPolicy
from workflow.redaction import blank_personal_links
from workflow.sweep import sweep

NEXT_YEAR = date.today().year + 1
OPENS, DUE = date(NEXT_YEAR, 2, 1), date(NEXT_YEAR, 4, 30)
EMAIL = "koordination@example.org"
TOKEN_LINK = re.compile(r"/r/[A-Za-z0-9_-]{8,}")


@pytest.fixture
def app(services):
    return create_app(settings=services.settings, services=services)


@pytest.fixture
def coordinator(app, services):
    seed_programme(services, partners=3)
    return signed_in_client(app, services, EMAIL, "coordinator")


def post(client, url, data, **kwargs):
    page = client.get(url if not url.endswith("test-mail") else "/setup/cycles")
    return client.post(url, data={"csrf_token": csrf_token(page.get_data(as_text=True)), **data},
                       **kwargs)


def plan(client, year=NEXT_YEAR, opens="01.02.%d" % NEXT_YEAR, due=f"{NEXT_YEAR}-04-30"):
    return post(client, "/setup/cycles/new", {"year": str(year), "opens_on": opens, "due_on": due})


def cycle_id_of(services, year=NEXT_YEAR) -> int:
    with services.database.unit_of_work() as uow:
        return uow.session.scalar(select(Cycle.id).where(Cycle.year == year))


def row_counts(services) -> dict[str, int]:
    with services.database.unit_of_work() as uow:
        return {table.name: uow.session.scalar(select(func.count()).select_from(table))
                for table in Base.metadata.sorted_tables}


def test_a_planned_cycle_is_set_up_edited_and_opens_on_its_own_day(coordinator, services):
    created = plan(coordinator)
    assert created.status_code == 303, created.get_data(as_text=True)
    cycle_id = cycle_id_of(services)
    assert created.headers["Location"] == f"/setup/cycles/{cycle_id}"
    with services.database.unit_of_work() as uow:
        cycle = uow.session.get(Cycle, cycle_id)
        assert (cycle.state, cycle.opens_on, cycle.due_on) == (CycleState.PLANNED, OPENS, DUE)
        assert not uow.session.scalar(select(func.count()).select_from(Submission))
        assert not uow.session.scalar(select(func.count()).select_from(Notification))
        event = uow.session.scalars(select(Event).where(
            Event.kind == EventKind.CYCLE_PLANNED)).one()
        assert event.actor == EMAIL and event.cycle_id == cycle_id

    listing = coordinator.get("/setup/cycles").get_data(as_text=True)
    assert f"Berichtsjahr {NEXT_YEAR}" in listing and "geplant" in listing
    page = coordinator.get(f"/setup/cycles/{cycle_id}").get_data(as_text=True)
    assert "Einladung" in page and "Erinnerung 28 Arbeitstage vor der Frist" in page

    moved = post(coordinator, f"/setup/cycles/{cycle_id}",
                 {"opens_on": f"{NEXT_YEAR}-02-08", "due_on": f"15.05.{NEXT_YEAR}"})
    assert moved.status_code == 303
    with services.database.unit_of_work() as uow:
        cycle = uow.session.get(Cycle, cycle_id)
        assert (cycle.opens_on, cycle.due_on) == (date(NEXT_YEAR, 2, 8), date(NEXT_YEAR, 5, 15))
        change = uow.session.scalars(select(Event).where(
            Event.kind == EventKind.CYCLE_CHANGED)).one()
        assert change.actor == EMAIL
        assert change.payload["old"]["opens_on"] == OPENS.isoformat()

        # The scheduler leaves it alone the day before and opens it on its day, with its dates.
        assert open_due_cycles(uow, berlin(date(NEXT_YEAR, 2, 7), 9, 0)) == []
        [opened] = open_due_cycles(uow, berlin(date(NEXT_YEAR, 2, 8), 7, 0))
        uow.commit()
        assert opened.id == cycle_id and opened.state == CycleState.OPEN
        assert (opened.opens_on, opened.due_on) == (date(NEXT_YEAR, 2, 8), date(NEXT_YEAR, 5, 15))
        assert uow.session.scalar(select(func.count()).select_from(Submission)) == 3
    assert coordinator.get(f"/setup/cycles/{cycle_id}/preview").status_code == 404
    refused = post(coordinator, f"/setup/cycles/{cycle_id}",
                   {"opens_on": f"{NEXT_YEAR}-02-09", "due_on": f"{NEXT_YEAR}-05-20"})
    assert refused.status_code == 422
    assert "schon geöffnet" in refused.get_data(as_text=True)


def test_a_late_scheduler_opens_a_planned_cycle_as_of_today_but_never_after_its_deadline(
        services):
    seed_programme(services, partners=2)
    with services.database.unit_of_work() as uow:
        programme = get_programme(uow)
        for year in (NEXT_YEAR, NEXT_YEAR + 1):
            plan_cycle(uow, programme, year, date(year, 2, 1), date(year, 4, 30),
                       now=berlin(date(NEXT_YEAR, 1, 5)), actor="test")
        uow.commit()
    with services.database.unit_of_work() as uow:
        [opened] = open_due_cycles(uow, berlin(date(NEXT_YEAR, 2, 10), 9, 0))
        uow.commit()
        assert (opened.year, opened.opens_on, opened.due_on) == (
            NEXT_YEAR, date(NEXT_YEAR, 2, 10), date(NEXT_YEAR, 4, 30))
        # Down from before its opening until after its deadline: left to a coordinator.
        assert open_due_cycles(uow, berlin(date(NEXT_YEAR + 1, 5, 2), 9, 0)) == []
        states = dict(uow.session.execute(select(Cycle.year, Cycle.state)).all())
        assert states == {NEXT_YEAR: CycleState.OPEN, NEXT_YEAR + 1: CycleState.PLANNED}


def test_bad_dates_years_and_ids_get_the_form_again_or_a_404(coordinator, services):
    cases = [
        ({"year": "20x8"}, "Bitte eine Jahreszahl angeben"),
        ({"due_on": f"{NEXT_YEAR}-01-15"}, "Die Frist muss nach der Öffnung liegen."),
        ({"opens_on": "31.02.%d" % NEXT_YEAR}, "Bitte ein Datum wie 31.03.2027"),
        ({"opens_on": "2001-02-01", "year": "2001"}, "nicht in der Vergangenheit"),
        ({"opens_on": f"{NEXT_YEAR + 3}-02-01"}, "im Jahr davor oder im Jahr danach"),
        ({"due_on": ""}, "Bitte ein Datum angeben"),
        ({"year": "1999"}, "zwischen 2000 und 2100"),
    ]
    for change, message in cases:
        data = {"year": str(NEXT_YEAR), "opens_on": f"{NEXT_YEAR}-02-01",
                "due_on": f"{NEXT_YEAR}-04-30", **change}
        response = post(coordinator, "/setup/cycles/new", data)
        assert response.status_code == 422, change
        page = response.get_data(as_text=True)
        assert message in page, (change, page)
        assert 'class="error-summary"' in page
    assert plan(coordinator).status_code == 303
    twice = plan(coordinator)
    assert twice.status_code == 422
    assert f"Für {NEXT_YEAR} gibt es schon einen Berichtszyklus." in twice.get_data(as_text=True)
    with services.database.unit_of_work() as uow:
        assert uow.session.scalar(select(func.count()).select_from(Cycle)) == 1
    for url in ("/setup/cycles/999999", "/setup/cycles/999999/preview",
                "/setup/cycles/0/preview?partner=abc"):
        assert coordinator.get(url).status_code == 404, url
    assert post(coordinator, "/setup/cycles/999999/test-mail",
                {"kind": "invitation"}).status_code == 404
    cycle_id = cycle_id_of(services)
    assert coordinator.get(f"/setup/cycles/{cycle_id}/preview?partner=999999").status_code == 404
    assert coordinator.get(f"/setup/cycles/{cycle_id}/preview?partner=x&q=%00").status_code == 200


def test_cycles_open_on_the_command_line_opens_the_planned_cycle_and_lists_still_work(
        coordinator, services):
    assert plan(coordinator).status_code == 303
    # A planned cycle among the others: the start page, the JSON API and `cycles status`.
    start = coordinator.get("/")
    assert start.status_code == 200 and "geplant, öffnet am" in start.get_data(as_text=True)
    planned_page = coordinator.get(f"/cycles/{cycle_id_of(services)}").get_data(as_text=True)
    assert "Geplant: öffnet am" in planned_page and "Vorschau der E-Mails" in planned_page
    api = coordinator.get("/api/v1/cycles")
    assert api.status_code == 200
    assert {"year": NEXT_YEAR, "state": "planned", "partners": 0}.items() <= \
        api.get_json()[0].items()
    status = subprocess.run([sys.executable, "-m", "reportcycles.cli", "cycles", "status",
                             str(NEXT_YEAR), "--json"], cwd=ROOT, env=os.environ,
                            capture_output=True, text=True, timeout=120)
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["state"] == "planned"

    with services.database.unit_of_work() as uow:
        cycle = open_cycle(uow, get_programme(uow), NEXT_YEAR, now=utcnow(), actor="cli")
        uow.commit()
        assert cycle.id == cycle_id_of(services) and cycle.state == CycleState.OPEN
        assert (cycle.opens_on, cycle.due_on) == (OPENS, DUE)
        assert uow.session.scalar(select(func.count()).select_from(Submission)) == 3
    assert coordinator.get("/").status_code == 200


GROUP_CSV = """name,kind,contact_name,contact_email,deputy_email,head_name,head_email,language,joined_on,group
Städtekooperation <b>Integration</b>,Kooperation,Lea Lead,lead@example.org,vertretung@example.org,Chefin,chefin@example.org,de,2019-01-01,
Stadt Duisburg,Kommune,Dora Duis,duisburg@example.org,,,,en,2019-01-01,Städtekooperation <b>Integration</b>
"""


def test_the_preview_shows_every_mail_writes_nothing_and_follows_the_ladder(
        coordinator, services):
    with services.database.unit_of_work() as uow:
        import_partners(uow, get_programme(uow), GROUP_CSV)
        uow.commit()
        group_id = uow.session.scalar(select(Partner.id).where(Partner.name.like("Städte%")))
    assert plan(coordinator).status_code == 303
    cycle_id = cycle_id_of(services)
    before = row_counts(services)

    first = coordinator.get(f"/setup/cycles/{cycle_id}/preview")
    assert first.status_code == 200
    page = first.get_data(as_text=True)
    # The first partner by name is the default; every rung of the ladder is there.
    assert "E-Mails zu „Partner 00000“" in page
    assert "Erinnerung 28 Arbeitstage vor der Frist" in page
    assert "p0@example.org" in page and "h0@example.org" in page and "d0@example.org" in page
    assert "/r/…" in page and not TOKEN_LINK.search(page)

    group = coordinator.get(f"/setup/cycles/{cycle_id}/preview?partner={group_id}&q=Städte")
    page = group.get_data(as_text=True)
    assert group.status_code == 200
    assert "&lt;b&gt;Integration&lt;/b&gt;" in page and "<b>Integration" not in page
    assert "Stadt Duisburg" in page and "duisburg@example.org" in page  # the member's own mail
    assert "lead@example.org" in page and "chefin@example.org" in page
    assert "koordination@example.org" in page  # the coordinators' notices
    assert not TOKEN_LINK.search(page)
    assert row_counts(services) == before

    changed = post(coordinator, "/setup/ladder", {
        "steps": "1", "reminders_before": "21, 5", "deadline_notice": "1",
        "step-0-days": "4", "step-0-email": "overdue_reminder", "step-0-audience": "contact",
        "window_start": "09:00", "window_end": "11:30", "window_working_days_only": "1"})
    assert changed.status_code == 303, changed.get_data(as_text=True)
    page = coordinator.get(f"/setup/cycles/{cycle_id}/preview").get_data(as_text=True)
    assert "Erinnerung 21 Arbeitstage vor der Frist" in page
    assert "Erinnerung 28 Arbeitstage" not in page
    assert "4 Arbeitstage nach der Frist" in page and "10 Arbeitstage nach" not in page
    assert "09:00–11:30 Uhr" in page
    with services.database.unit_of_work() as uow:
        event = uow.session.scalars(select(Event).where(
            Event.kind == EventKind.POLICY_CHANGED)).one()
        assert event.actor == EMAIL
        assert event.payload["changes"]["reminders_before"] == {"old": [28, 14, 7, 2],
                                                               "new": [21, 5]}


def test_the_preview_is_what_the_cycle_plans_and_sends_once_it_opens(services, smtp):
    seed_programme(services, partners=2)
    with services.database.unit_of_work() as uow:
        programme = get_programme(uow)
        cycle = plan_cycle(uow, programme, NEXT_YEAR, OPENS, DUE,
                           now=berlin(date(NEXT_YEAR, 1, 5)), actor="test")
        partner_id = uow.session.scalar(select(Partner.id).where(Partner.name == "Partner 00000"))
        _, mails = preview_cycle_mails(uow, services.mail.letterhead, cycle, partner_id)
        uow.commit()
    with services.database.unit_of_work() as uow:
        open_cycle(uow, get_programme(uow), NEXT_YEAR, now=berlin(OPENS, 7, 0), actor="test")
        uow.commit()
        planned = set(uow.session.execute(
            select(Notification.rung, Notification.due_at)
            .join(Submission, Submission.id == Notification.submission_id, isouter=True)
            .where((Submission.partner_id == partner_id) | Notification.submission_id.is_(None)))
            .all())
    assert planned == {(m.step.rung, m.step.send_at) for m in mails}
    with services.database.unit_of_work() as uow:
        sweep(uow, berlin(OPENS, 8, 30))  # sent in this process after commit
        uow.commit()
    with smtp[1].lock:
        [sent] = [m["message"] for m in smtp[1].messages if m["message"]["To"] == "p0@example.org"]
    invitation = next(m for m in mails if m.step.rung == "invitation")
    assert sent["Subject"] == invitation.subject
    assert blank_personal_links(sent.get_body(("plain",)).get_content()) == invitation.text


def test_the_ladder_form_refuses_bad_input_and_says_what_it_governs(coordinator, services):
    page = coordinator.get("/setup/ladder").get_data(as_text=True)
    assert "jeden Berichtszyklus, der sich von jetzt an öffnet" in page
    assert 'value="28, 14, 7, 2"' in page
    base = {"steps": "2", "reminders_before": "28, 14", "window_start": "08:00",
            "window_end": "10:00", "step-0-days": "3", "step-0-email": "overdue_reminder",
            "step-0-audience": "contact"}
    for change, message in [
            ({"reminders_before": "28, vierzehn"}, "durch Kommas getrennt"),
            ({"reminders_before": "14, 14"}, "nur einmal vorkommen"),
            ({"step-1-days": "3", "step-1-email": "escalation_head",
              "step-1-audience": "head"}, "nur einmal vorkommen"),
            ({"step-0-email": "receipt"}, "angebotenen Möglichkeiten"),
            ({"window_end": "07:00"}, "nach seinem Beginn enden"),
            ({"window_start": "8 Uhr"}, "Uhrzeit wie 08:00")]:
        response = post(coordinator, "/setup/ladder", {**base, **change})
        assert response.status_code == 422, change
        assert message in response.get_data(as_text=True), change
    # A request without the step rows is not read as "no steps": the ladder stays.
    rows = [k for k in base if k.startswith("step-")]
    truncated = post(coordinator, "/setup/ladder", {k: v for k, v in base.items() if k not in rows})
    assert truncated.status_code == 422
    assert "unvollständig angekommen" in truncated.get_data(as_text=True)
    with services.database.unit_of_work() as uow:
        assert not uow.session.scalar(select(func.count()).select_from(Event).where(
            Event.kind == EventKind.POLICY_CHANGED))
        assert len(ReportingPolicy.from_dict(get_programme(uow).policy).overdue_steps) == 4
    # Rows beyond the form's own (or without its first) are refused, not dropped.
    far = {**{k: v for k, v in base.items() if k not in rows}, "step-45-days": "5",
           "step-45-email": "overdue_reminder", "step-45-audience": "contact"}
    assert post(coordinator, "/setup/ladder", far).status_code == 422
    assert post(coordinator, "/setup/ladder", {**base, "step-40-days": "9"}).status_code == 422
    # The rows count, whatever the form says their number is.
    for steps in ("0", "abc", "100", None):
        form = {**base, "steps": steps} if steps else {k: v for k, v in base.items()
                                                       if k != "steps"}
        assert post(coordinator, "/setup/ladder", form).status_code == 303, steps
        with services.database.unit_of_work() as uow:
            [step] = ReportingPolicy.from_dict(get_programme(uow).policy).overdue_steps
            assert step.after_working_days == 3, steps


def test_the_ladder_is_refused_in_the_page_language(coordinator, services):
    # A policy stored by hand (or before today's rules) that the rules now refuse: saving the
    # ladder on top of it says why, in the page's words; nothing is saved.
    with services.database.unit_of_work() as uow:
        programme = get_programme(uow)
        programme.policy = {**programme.policy, "retention_cycles": 0}
        uow.commit()
    ladder = {"steps": "1", "reminders_before": "28, 14", "window_start": "08:00",
              "window_end": "10:00", "step-0-days": "3", "step-0-email": "overdue_reminder",
              "step-0-audience": "contact"}
    wording = {"de": ("Ungültige Berichtsregel: retention_cycles muss eine ganze Zahl zwischen 1 "
                      "und 100 sein.", "Das Versandfenster muss nach seinem Beginn enden."),
               "en": ("Invalid reporting rule: retention_cycles must be a whole number between 1 "
                      "and 100.", "The sending window must end after it begins.")}
    for language, other in (("en", "de"), ("de", "en")):
        coordinator.post("/language", data={"lang": language, "csrf_token": csrf_token(
            coordinator.get("/setup/cycles").get_data(as_text=True))})
        for change, index in (({}, 0), ({"window_end": "07:00"}, 1)):
            response = post(coordinator, "/setup/ladder", {**ladder, **change})
            assert response.status_code == 422, (language, change)
            page = response.get_data(as_text=True)
            assert f'<html lang="{language}">' in page
            assert wording[language][index] in page and wording[other][index] not in page, \
                (language, change)
    with services.database.unit_of_work() as uow:
        assert get_programme(uow).policy["retention_cycles"] == 0
        assert not uow.session.scalar(select(func.count()).select_from(Event).where(
            Event.kind == EventKind.POLICY_CHANGED))


def test_a_test_mail_goes_to_the_signed_in_coordinator_only(coordinator, services, smtp):
    assert plan(coordinator).status_code == 303
    cycle_id = cycle_id_of(services)
    page = coordinator.get(f"/setup/cycles/{cycle_id}/preview").get_data(as_text=True)
    assert 'name="kind" value="reminder"' in page
    sent = post(coordinator, f"/setup/cycles/{cycle_id}/test-mail", {"kind": "reminder"})
    assert sent.status_code == 303
    with smtp[1].lock:
        messages = list(smtp[1].messages)
    assert len(messages) == 1
    message = messages[0]["message"]
    assert message["To"] == EMAIL and message["Cc"] is None
    assert message["Subject"].startswith("[Test] ")
    body = message.get_body(("plain",)).get_content()
    assert "/r/…" in body and not TOKEN_LINK.search(body)
    assert "Partner 00000" in body
    with services.database.unit_of_work() as uow:
        assert not uow.session.scalar(select(func.count()).select_from(Notification))
    followed = coordinator.get(sent.headers["Location"]).get_data(as_text=True)
    assert "Test-E-Mail" in followed and EMAIL in followed
    unknown = post(coordinator, f"/setup/cycles/{cycle_id}/test-mail", {"kind": "receipt"})
    assert unknown.status_code == 303
    with smtp[1].lock:
        assert len(smtp[1].messages) == 1


def test_the_planned_state_migrates_up_and_down_with_data(database_url):
    downgrade(database_url, "0008")
    engine = create_engine(database_url)
    try:
        with engine.begin() as connection:
            programme = connection.execute(text(
                "INSERT INTO programme (slug, name, policy, coordinator_emails, created_at) "
                "VALUES ('p', 'P', '{}', '[]', CURRENT_TIMESTAMP) RETURNING id")).scalar()
            partner = connection.execute(text(
                "INSERT INTO partner (programme_id, name, kind, active) "
                "VALUES (:p, 'A', 'kommune', true) RETURNING id"), {"p": programme}).scalar()
            cycle = connection.execute(text(
                "INSERT INTO cycle (programme_id, year, opens_on, due_on, state, created_at, "
                "reminders_paused) VALUES (:p, 2027, '2027-02-01', '2027-04-30', 'open', "
                "CURRENT_TIMESTAMP, false) RETURNING id"), {"p": programme}).scalar()
            connection.execute(text(
                "INSERT INTO submission (cycle_id, partner_id, state, due_on, escalation_level, "
                "non_reporting, version, created_at, updated_at, reminders_paused) VALUES "
                "(:c, :a, 'invited', '2027-04-30', 0, false, 0, CURRENT_TIMESTAMP, "
                "CURRENT_TIMESTAMP, false)"), {"c": cycle, "a": partner})
        engine.dispose()
        upgrade(database_url)  # the cycle table is rebuilt on SQLite with rows referring to it
        with engine.begin() as connection:
            planned = connection.execute(text(
                "INSERT INTO cycle (programme_id, year, opens_on, due_on, state, created_at, "
                "reminders_paused) VALUES (:p, 2028, '2028-02-01', '2028-04-30', 'planned', "
                "CURRENT_TIMESTAMP, false) RETURNING id"), {"p": programme}).scalar()
            connection.execute(insert(Event.__table__).values(
                programme_id=programme, cycle_id=planned, kind="cycle_planned", at=utcnow(),
                actor="x"))
        with pytest.raises(IntegrityError), engine.begin() as connection:
            connection.execute(text("UPDATE cycle SET state = 'bogus' WHERE id = :c"),
                               {"c": cycle})
        engine.dispose()
        downgrade(database_url, "0008")  # the planned cycle goes, its event stays
        with engine.begin() as connection:
            assert connection.execute(text("SELECT year FROM cycle")).scalars().all() == [2027]
            assert connection.execute(text("SELECT count(*) FROM submission")).scalar() == 1
            assert connection.execute(text(
                "SELECT cycle_id FROM event WHERE kind = 'cycle_planned'")).scalar() is None
        with pytest.raises(IntegrityError), engine.begin() as connection:
            connection.execute(text("UPDATE cycle SET state = 'planned'"))
        engine.dispose()
        upgrade(database_url)
    finally:
        engine.dispose()


def set_up_pages(client, services, group_id: int, cycle_id: int, open_id: int) -> dict:
    """Every set-up page as a coordinator meets it, with its error variants."""
    pid = group_id
    bad_csv = b"name,kind,contact_name,contact_email,deputy_email,head_name,head_email," \
        b"language,joined_on\nX,Zoo,a,b,,,,de,\n"
    good_csv = b"name,kind,contact_name,contact_email,deputy_email,head_name,head_email," \
        b"language,joined_on\nNeu <b>fett</b>,Kommune,a,neu@example.org,,,,de,\n"

    def upload(url, data, name):
        return client.post(url, data={
            "csrf_token": csrf_token(client.get("/setup/cycles").get_data(as_text=True)),
            "action": "preview", "file": (__import__("io").BytesIO(data), name)},
            content_type="multipart/form-data")

    return {
        "cycles": client.get("/setup/cycles"),
        "cycle_new": client.get("/setup/cycles/new"),
        "cycle_new_errors": post(client, "/setup/cycles/new", {
            "year": "x", "opens_on": "31.02.2028", "due_on": ""}),
        "cycle_planned": client.get(f"/setup/cycles/{cycle_id}"),
        "cycle_planned_errors": post(client, f"/setup/cycles/{cycle_id}", {
            "opens_on": f"{NEXT_YEAR}-04-01", "due_on": f"{NEXT_YEAR}-03-01"}),
        "cycle_open": client.get(f"/setup/cycles/{open_id}"),
        "cycle_open_errors": post(client, f"/setup/cycles/{open_id}", {
            "opens_on": f"{NEXT_YEAR}-04-01", "due_on": f"{NEXT_YEAR}-05-01"}),
        "preview": client.get(f"/setup/cycles/{cycle_id}/preview"),
        "preview_group": client.get(f"/setup/cycles/{cycle_id}/preview?partner={pid}&q=t"),
        "preview_no_match": client.get(f"/setup/cycles/{cycle_id}/preview?q=zzz"),
        "ladder": client.get("/setup/ladder"),
        "ladder_errors": post(client, "/setup/ladder", {
            "steps": "2", "reminders_before": "x", "step-0-days": "0", "step-1-days": "5",
            "step-1-email": "zzz", "window_start": "8", "window_end": "25:00"}),
        "partners": client.get("/setup/partners?q=a"),
        "partner_new": client.get("/setup/partners/new"),
        "partner_new_errors": post(client, "/setup/partners/new", {"kind": "x",
                                                                   "employees": "-1"}),
        "partner": client.get(f"/setup/partners/{pid}"),
        "partner_errors": post(client, f"/setup/partners/{pid}", {
            "action": "save", "name": "", "kind": "kommune", "joined_on": "morgen"}),
        "partner_confirm": post(client, f"/setup/partners/{pid}", {"action": "deactivate"}),
        "import": client.get("/setup/partners/import"),
        "import_errors": upload("/setup/partners/import", bad_csv, "a.csv"),
        "import_preview": upload("/setup/partners/import", good_csv, "a.csv"),
        "import_unreadable": upload("/setup/partners/import", b"PK\x03\x04", "a.xlsx"),
        "templates": client.get("/setup/templates"),
        "templates_errors": upload("/setup/templates", b"[]", "a.json"),
        "not_found": client.get("/setup/partners/999999"),
    }


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_every_set_up_page_is_valid_html_in_german_and_english(coordinator, services, tmp_path):
    from tests.support.nu_checker import nu_check
    with services.database.unit_of_work() as uow:
        import_partners(uow, get_programme(uow), GROUP_CSV)
        open_cycle(uow, get_programme(uow), NEXT_YEAR + 1, now=utcnow(),
                   opens_on=date(NEXT_YEAR + 1, 2, 1), due_on=date(NEXT_YEAR + 1, 4, 30))
        uow.commit()
        group_id = uow.session.scalar(select(Partner.id).where(Partner.name.like("Städte%")))
    assert plan(coordinator).status_code == 303
    cycle_id, open_id = cycle_id_of(services), cycle_id_of(services, NEXT_YEAR + 1)
    expected = {"errors": 422, "unreadable": 422, "found": 404}
    files = []
    for language in ("de", "en"):
        coordinator.post("/language", data={"lang": language, "csrf_token": csrf_token(
            coordinator.get("/setup/cycles").get_data(as_text=True))})
        pages = set_up_pages(coordinator, services, group_id, cycle_id, open_id)
        for name, response in pages.items():
            status = expected.get(name.rsplit("_", 1)[-1], 200)
            assert response.status_code == status, (language, name, response.status_code)
            html = response.get_data(as_text=True)
            assert f'<html lang="{language}">' in html
            assert "<b>" not in html.split("</head>", 1)[1].replace("<b>fett", "")
            files.append(tmp_path / f"{language}_{name}.html")
            files[-1].write_text(html, encoding="utf-8")
        if language == "en":
            assert "Preview of the emails" in pages["preview"].get_data(as_text=True)
            assert "Reminders and overdue notices" in pages["ladder"].get_data(as_text=True)
    problems = [m for m in nu_check(files) if m.type != "info" or m.is_warning]
    assert not problems, "\n".join(map(str, problems))
