"""The coordinators' start page and cycle overview: figures of a scripted cycle, the burn-up
against last year, the live version, escaping, 404, viewers, and valid HTML in both languages."""
from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import event, select, update

from tests.integration.conftest import berlin, seed_programme
from tests.support.nu_checker import nu_check
from tests.support.report import load_shipped_template
from tests.support.sign_in import csrf_token, signed_in_client
from web import create_app
from workflow.cycle_overview import cycle_overview
from workflow.cycles import get_programme, open_cycle
from workflow.models import Notification, Partner, Submission
from workflow.policy import ReportingPolicy, plan_submission_rungs
from workflow.requests import declare_intent, request_extension
from workflow.review import return_report
from workflow.states import Action
from workflow.submissions import apply_action
from workflow.sweep import sweep

POLICY = ReportingPolicy()
OPENS, DUE = date(2027, 2, 1), date(2027, 4, 30)
LAST_OPENS, LAST_DUE = date(2026, 2, 2), date(2026, 4, 30)
MARKUP_NAME = "<b>Stadt & Co</b>"
RUNGS = {rung.rung: rung for rung in plan_submission_rungs(POLICY, OPENS, DUE)}
INVITED_AT = RUNGS["invitation"].due_at + timedelta(minutes=30)
R14_AT = RUNGS["reminder-14"].due_at + timedelta(minutes=30)
FINAL_AT = RUNGS["overdue-30"].due_at + timedelta(minutes=30)


def act(services, submission_id, action, when, **payload):
    with services.database.unit_of_work() as uow:
        apply_action(uow, submission_id, action, now=when, actor="test", **payload)
        uow.commit()


def run_sweep(services, when, sent_at):
    """A sweep at ``when``; the mails it sent are recorded as having left at ``sent_at`` (the
    worker stamps the wall clock, the script lives in 2027)."""
    wall = datetime.now(UTC)
    with services.database.unit_of_work() as uow:
        sweep(uow, when)
        uow.commit()
    with services.database.unit_of_work() as uow:
        uow.session.execute(update(Notification).where(
            Notification.sent_at.between(wall, datetime.now(UTC)),
            Notification.needs_open_report.is_(True)).values(sent_at=sent_at))
        uow.commit()


def open_year(services, year, opens, due):
    with services.database.unit_of_work() as uow:
        cycle = open_cycle(uow, get_programme(uow), year, now=berlin(opens, 7, 0), opens_on=opens,
                           due_on=due)
        uow.commit()
        ids = list(uow.session.scalars(select(Submission.id).where(
            Submission.cycle_id == cycle.id).order_by(Submission.partner_id)))
        return cycle.id, ids


def scripted_cycle(services, smtp):
    """Eight partners. 2026: three submitted on days 3, 10 and 10. 2027 (opened 1 Feb):
    P0 submits two days after the invitation; P1's only address refuses the invitation (a
    failed mail and a bouncing contact); P2 submits on day 14 and is accepted; P3 submits three
    days after reminder-14 (returned and resubmitted later: counted once); P4 submits 7.5 days
    after it; P5 asks for an extension; P6 (markup in its name) declares it cannot report; P7 is
    exempted. A last sweep after overdue-30 flags P1, P5 and P6 as non-reporting."""
    programme_id = seed_programme(services, partners=8)
    with services.database.unit_of_work() as uow:
        load_shipped_template(uow, get_programme(uow), year=2026)
        seventh = uow.session.scalars(select(Partner).where(Partner.programme_id == programme_id)
                                      .order_by(Partner.id).offset(6)).first()
        seventh.name = MARKUP_NAME
        uow.commit()
    last_id, last = open_year(services, 2026, LAST_OPENS, LAST_DUE)
    for sid, day in zip(last[:3], (3, 10, 10)):
        act(services, sid, Action.SUBMIT, berlin(LAST_OPENS + timedelta(days=day), 11))
    cycle_id, p = open_year(services, 2027, OPENS, DUE)
    smtp[1].refuse_recipients = {"p1@example.org": "550 5.1.1 user unknown"}
    run_sweep(services, INVITED_AT, INVITED_AT)
    smtp[1].refuse_recipients = {}
    act(services, p[0], Action.SUBMIT, INVITED_AT + timedelta(days=2))
    act(services, p[7], Action.EXEMPT, INVITED_AT + timedelta(days=9), reason="Fusion")
    act(services, p[2], Action.SUBMIT, INVITED_AT + timedelta(days=14))
    act(services, p[2], Action.ACCEPT, INVITED_AT + timedelta(days=20))
    run_sweep(services, R14_AT, R14_AT)
    act(services, p[3], Action.SUBMIT, R14_AT + timedelta(days=3))
    act(services, p[4], Action.SUBMIT, R14_AT + timedelta(days=7, hours=12))
    with services.database.unit_of_work() as uow:
        return_report(uow, p[3], comments={"_general": "Zahl prüfen"},
                      now=R14_AT + timedelta(days=8), actor="koordination@example.org")
        request_extension(uow, p[5], reason="<i>Personalmangel</i>", proposed_due=date(2027, 6, 30),
                          now=R14_AT + timedelta(days=8), actor="partner")
        declare_intent(uow, p[6], intent="cannot_report", reason="Umstrukturierung",
                       now=R14_AT + timedelta(days=8), actor="partner")
        uow.commit()
    return cycle_id, last_id, p


def finish(services, p):
    act(services, p[3], Action.SUBMIT, FINAL_AT - timedelta(days=1))
    run_sweep(services, FINAL_AT, FINAL_AT)


def test_the_figures_follow_a_scripted_cycle(services, smtp):
    cycle_id, _, p = scripted_cycle(services, smtp)
    before_reminder_7 = berlin(RUNGS["reminder-7"].send_on - timedelta(days=1), 12)
    with services.database.unit_of_work() as uow:
        planned = cycle_overview(uow, cycle_id, before_reminder_7).planned
    # Still owed then: P1, P3 (returned), P5, P6; reminder-7 is due the next day.
    assert planned.counts == {(RUNGS["reminder-7"].send_on, "reminder-7"): 4}
    assert planned.days[0] == before_reminder_7.date() and len(planned.days) == 7

    finish(services, p)
    with services.database.unit_of_work() as uow:
        o = cycle_overview(uow, cycle_id, FINAL_AT + timedelta(hours=2))
    c = o.counts
    assert c.by_state == {"invited": 3, "opened": 0, "draft": 0, "submitted": 3, "returned": 0,
                          "accepted": 1, "exempted": 1}
    assert (c.partners, c.reported, c.expected, round(c.share, 3)) == (8, 4, 7, 0.571)
    assert c.overdue == 3 and c.non_reporting == 3 and c.by_level == {4: 3}
    # First submissions by day since opening: P0 day 2, P2 day 14, P3 and P4 after reminder-14.
    r14_day = (R14_AT.astimezone(POLICY.zone).date() - OPENS).days
    assert o.burn_up.steps == [(2, 1), (14, 2), (r14_day + 3, 3), (r14_day + 7, 4)]
    assert o.burn_up.deadline_day == (DUE - OPENS).days
    # The line runs to today, but not beyond the ladder's six weeks after the deadline.
    today = (FINAL_AT + timedelta(hours=2)).astimezone(POLICY.zone).date()
    assert o.burn_up.until_day == min((today - OPENS).days, (DUE - OPENS).days + 42)
    assert o.last_year.year == 2026 and o.last_year.steps == [(3, 1), (10, 3)]
    assert o.failed.count == 1 and o.failed.latest[0].submission_id == p[1]
    assert "user unknown" in o.failed.latest[0].error
    assert o.bouncing.count == 1 and o.bouncing.latest[0].email == "p1@example.org"
    assert [e.submission_id for e in o.extensions.latest] == [p[5]] and o.extensions.count == 1
    assert [(i.submission_id, i.intent) for i in o.intents.latest] == [(p[6], "cannot_report")]
    assert {f.submission_id for f in o.non_reporting.latest} == {p[1], p[5], p[6]}
    effects = {e.rung: (e.received, e.submitted_within) for e in o.rungs}
    # The invitation reached seven (P1's failed); only P0 submitted within a week of it.
    # Reminder-14 reached P1 (its deputy), P3, P4, P5, P6; P3 submitted within a week, P4 later.
    assert effects == {"invitation": (7, 1), "reminder-14": (5, 1)}
    assert o.planned.counts == {}  # the ladder is at its end


def test_the_page_shows_the_figures_as_text_and_links_them(services, smtp):
    cycle_id, last_id, p = scripted_cycle(services, smtp)
    finish(services, p)
    app = create_app(settings=services.settings, services=services)
    client = signed_in_client(app, services, "koordination@example.org")
    page = client.get(f"/cycles/{cycle_id}").get_data(as_text=True)
    assert MARKUP_NAME not in page and "&lt;b&gt;Stadt &amp; Co&lt;/b&gt;" in page
    assert "&lt;i&gt;Personalmangel&lt;/i&gt;" in page
    assert f'href="/cycles/{cycle_id}/partners?state=submitted"' in page
    assert f'href="/cycles/{cycle_id}/partners?level=4"' in page
    assert f'href="/cycles/{cycle_id}/partners?overdue=1"' in page
    for sid in (p[1], p[5], p[6]):  # failed mail, bounce, extension, intent, non-reporting
        assert f'href="/submissions/{sid}"' in page
    assert "57\u00a0%" in page and "Welche Erinnerung wirkt" in page
    assert 'class="last-year"' in page and "<th scope=\"col\" class=\"num\">2026</th>" in page
    assert "Übersicht aktualisiert" in page and 'src="/static/refresh.js"' in page

    start = client.get("/").get_data(as_text=True)
    assert start.index(f'href="/cycles/{cycle_id}"') < start.index(f'href="/cycles/{last_id}"')
    assert "Berichtsjahr 2027" in start and "57\u00a0%" in start

    assert client.get("/cycles/999999").status_code == 404
    assert client.get("/cycles/999999/live").status_code == 404
    viewer = signed_in_client(app, services, "ansicht@example.org", "viewer")
    assert viewer.get(f"/cycles/{cycle_id}").status_code == 200
    assert app.test_client().get(f"/cycles/{cycle_id}").headers["Location"].startswith("/login")


def test_the_live_version_changes_when_a_partner_submits_and_not_otherwise(services):
    seed_programme(services, partners=3)
    cycle_id, p = open_year(services, 2027, OPENS, DUE)
    app = create_app(settings=services.settings, services=services)
    client = signed_in_client(app, services, "koordination@example.org")
    first = client.get(f"/cycles/{cycle_id}/live")
    assert first.headers["Cache-Control"] == "no-store"
    page = client.get(f"/cycles/{cycle_id}").get_data(as_text=True)
    assert f'data-version="{first.json["version"]}"' in page
    assert client.get(f"/cycles/{cycle_id}/live").json == first.json
    assert "0\u00a0%" in page
    act(services, p[0], Action.SUBMIT, datetime.now(UTC))
    second = client.get(f"/cycles/{cycle_id}/live").json
    assert second != first.json
    assert "33\u00a0%" in client.get(f"/cycles/{cycle_id}").get_data(as_text=True)
    assert client.get(f"/cycles/{cycle_id}/live").json == second


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)  # cutting its connections
def test_a_pages_reads_share_one_connection_and_survive_the_database_cutting_it(services):
    """The signed-in person and the page's version are read over one pooled connection per
    request; when PostgreSQL has ended every connection, the next page still answers."""
    seed_programme(services, partners=3)
    cycle_id, _ = open_year(services, 2027, OPENS, DUE)
    app = create_app(settings=services.settings, services=services)
    client = signed_in_client(app, services, "koordination@example.org")
    checkouts = []
    event.listen(services.database.engine.pool, "checkout", lambda *args: checkouts.append(1))
    for path in (f"/cycles/{cycle_id}", f"/cycles/{cycle_id}/partners", "/"):
        client.get(path)  # the figures computed and kept
        checkouts.clear()
        assert client.get(path).status_code == 200
        assert len(checkouts) == 1, path
    with services.database.engine.connect() as admin:
        admin.exec_driver_sql(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()")
    for path in (f"/cycles/{cycle_id}", f"/cycles/{cycle_id}/partners", "/"):
        assert client.get(path).status_code == 200, path


def test_the_start_page_says_how_to_open_a_cycle(services):
    app = create_app(settings=services.settings, services=services)
    client = signed_in_client(app, services, "koordination@example.org")
    page = client.get("/").get_data(as_text=True)
    assert "reportcycles cycles open --year" in page


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_the_pages_are_valid_html_in_german_and_english(services, smtp, tmp_path):
    cycle_id, _, p = scripted_cycle(services, smtp)
    finish(services, p)
    app = create_app(settings=services.settings, services=services)
    client = signed_in_client(app, services, "koordination@example.org")
    files = []
    for language in ("de", "en"):
        start = client.get("/")
        client.post("/language", data={"lang": language, "next": "/",
                                       "csrf_token": csrf_token(start.get_data(as_text=True))})
        for name, path in (("start", "/"), ("cycle", f"/cycles/{cycle_id}"),
                           ("missing", "/cycles/999999")):
            response = client.get(path)
            html = response.get_data(as_text=True)
            assert re.search(f'<html lang="{language}"', html), (language, name)
            files.append(tmp_path / f"{name}-{language}.html")
            files[-1].write_text(html, encoding="utf-8")
    english = files[4].read_text(encoding="utf-8")
    assert "Which reminder works" in english and "Overview updated" in english
    problems = [m for m in nu_check(files) if m.type != "info"]
    assert not problems, "\n".join(map(str, problems))
