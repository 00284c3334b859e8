"""The coordinators' actions through the real Flask app, signed in, on SQLite and PostgreSQL, with
a real SMTP server: each action's effect on the submission, the ledger and the event's actor."""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from datetime import time as clock_time
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select, update

from tests.integration.conftest import seed_programme
from tests.integration.test_delivery import Holding
from tests.support.nu_checker import nu_check
from tests.support.report import VALID_ANSWERS
from tests.support.sign_in import csrf_token, sign_in, signed_in_client
from web import create_app
from workflow.cycles import get_programme, open_cycle
from workflow.delivery import deliver
from workflow.events import EventKind
from workflow.models import (AccessToken, Contact, ContactRole, Cycle, Event, ExtensionRequest,
                             Notification, Partner, Programme, Submission, utcnow)
from workflow.policy import END_OF_DAY, ReportingPolicy
from workflow.reporting import save_draft, submit_report
from workflow.requests import request_extension
from workflow.submissions import load_submission
from workflow.sweep import sweep

BERLIN = ZoneInfo("Europe/Berlin")
ALL_DAY = ReportingPolicy(window_start=clock_time(0, 0), window_end=END_OF_DAY,
                          window_working_days_only=False)
COORDINATOR = "koordinatorin@example.org"
MARKUP = '<script>alert("x")</script> & <b>fett</b>'
LINK = re.compile(r"http://127\.0\.0\.1:8000(/r/[A-Za-z0-9_-]+)")


@dataclass
class Desk:
    """A cycle that opened a month ago, its invitations sent, and a coordinator signed in."""

    services: object
    app: object
    client: object
    smtp: object
    cycle_id: int
    sids: list[int]
    today: date

    def post(self, path, **data):
        token = csrf_token(self.client.get("/coordinators").get_data(as_text=True))
        return self.client.post(path, data={"csrf_token": token, **data})

    def submission(self, sid) -> Submission:
        return self._detached(lambda uow: load_submission(uow, sid))

    def events(self, kind: EventKind) -> list[Event]:
        return self._detached(lambda uow: list(uow.session.scalars(
            select(Event).where(Event.kind == kind).order_by(Event.id))))

    def rows(self, sid, **where) -> list[Notification]:
        query = select(Notification).where(Notification.submission_id == sid)
        for key, value in where.items():
            query = query.where(getattr(Notification, key) == value)
        return self._detached(lambda uow: list(uow.session.scalars(
            query.order_by(Notification.id))))

    def _detached(self, read):
        """Rows as they are now, readable after their transaction ended."""
        with self.services.database.unit_of_work() as uow:
            result = read(uow)
            uow.session.expunge_all()
            return result

    def mails(self, rung: str) -> list:
        return [m["message"] for m in self.smtp.messages
                if m["message"]["X-Reportcycles-Rung"] == rung]

    def sweep_at(self, instant: datetime):
        with self.services.database.unit_of_work() as uow:
            result = sweep(uow, instant)
            uow.commit()
        return result

    def next_rung_due(self) -> datetime:
        """When the next rung of the ladder (the same for every partner here) is due."""
        return min(r.due_at for r in self.rows(self.sids[0], status="planned"))


def flashes(client) -> list[tuple[str, str]]:
    with client.session_transaction() as session:
        return list(session.pop("_flashes", []))


@pytest.fixture
def desk(services, smtp):
    seed_programme(services, partners=3, policy=ALL_DAY)
    today = utcnow().astimezone(BERLIN).date()
    with services.database.unit_of_work() as uow:
        cycle = open_cycle(uow, get_programme(uow), 2027, now=utcnow(),
                           opens_on=today - timedelta(days=30), due_on=today + timedelta(days=20))
        uow.session.execute(update(Partner).where(Partner.name == "Partner 00000")
                            .values(name=f"Partner 00000 {MARKUP}"))
        uow.commit()
        cycle_id = cycle.id
    with services.database.unit_of_work() as uow:
        sweep(uow, utcnow())  # the invitations (the latest rung due) leave
        uow.commit()
        sids = list(uow.session.scalars(select(Submission.id).order_by(Submission.id)))
    app = create_app(services.settings, services)
    client = signed_in_client(app, services, COORDINATOR)
    return Desk(services, app, client, smtp[1], cycle_id, sids, today)


def submit(desk: Desk, sid: int):
    with desk.services.database.unit_of_work() as uow:
        version = load_submission(uow, sid).version
        save_draft(uow, sid, dict(VALID_ANSWERS), expected_version=version, now=utcnow(),
                   actor="partner")
        submit_report(uow, sid, expected_version=version + 1, now=utcnow(), actor="partner")
        uow.commit()


# Accept and return -------------------------------------------------------------------------------

def test_a_submitted_report_is_accepted_in_the_coordinators_name(desk):
    sid = desk.sids[1]
    refused = desk.post(f"/submissions/{sid}/accept")
    assert refused.status_code == 303 and desk.submission(sid).state == "invited"
    assert any(category == "error" for category, _ in flashes(desk.client))
    submit(desk, sid)
    response = desk.post(f"/submissions/{sid}/accept")
    assert response.status_code == 303 and response.headers["Location"] == f"/submissions/{sid}"
    assert desk.submission(sid).state == "accepted"
    [event] = desk.events(EventKind.ACCEPTED)
    assert event.actor == COORDINATOR and event.submission_id == sid
    assert ("success", "Der Bericht ist angenommen.") in flashes(desk.client)


def test_a_report_is_returned_with_a_comment_per_field_and_the_comments_go_on_resubmission(desk):
    sid = desk.sids[0]
    submit(desk, sid)
    page = desk.client.get(f"/submissions/{sid}/return")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert 'name="comment__general"' in html and 'name="comment_trainees_total"' in html
    assert "&lt;script&gt;" in html and "<script>alert" not in html  # the partner's name
    empty = desk.post(f"/submissions/{sid}/return", comment__general="  ")
    assert empty.status_code == 422 and "mindestens einen Kommentar" in empty.get_data(
        as_text=True)
    response = desk.post(f"/submissions/{sid}/return", comment__general="Bitte prüfen.",
                         comment_trainees_total=MARKUP)
    assert response.status_code == 303
    submission = desk.submission(sid)
    assert submission.state == "returned"
    assert submission.review_comments == {"_general": "Bitte prüfen.", "trainees_total": MARKUP}
    [event] = desk.events(EventKind.RETURNED)
    assert event.actor == COORDINATOR
    [mail] = desk.mails("returned")
    assert MARKUP in mail.get_body(("plain",)).get_content()
    assert "&lt;script&gt;" in mail.get_body(("html",)).get_content()
    again = desk.client.get(f"/submissions/{sid}/return").get_data(as_text=True)
    assert "Nur ein eingereichter Bericht" in again and 'name="comment__general"' not in again
    twice = desk.post(f"/submissions/{sid}/return", comment__general="Noch einmal")
    assert twice.status_code == 303 and [c for c, _ in flashes(desk.client)] == ["error"]
    submit(desk, sid)
    assert desk.submission(sid).review_comments is None


# Extension requests ------------------------------------------------------------------------------

def test_the_extension_mail_links_to_a_page_that_grants_in_one_click(desk):
    sid = desk.sids[0]
    due_before = desk.submission(sid).due_on
    with desk.services.database.unit_of_work() as uow:
        request_extension(uow, sid, reason=MARKUP, proposed_due=due_before + timedelta(days=30),
                          now=utcnow(), actor="partner")
        uow.commit()
    [mail] = desk.mails("extension_request")
    path = re.search(r"http://127\.0\.0\.1:8000(/extensions/\d+)",
                     mail.get_body(("plain",)).get_content()).group(1)
    assert path in mail.get_body(("html",)).get_content()

    stranger = desk.app.test_client()  # not signed in: sign-in first, then back to the request
    to_sign_in = stranger.get(path)
    assert to_sign_in.status_code == 303 and "next=" in to_sign_in.headers["Location"]
    signed = sign_in(stranger, COORDINATOR, next=path)
    assert signed.status_code == 303 and signed.headers["Location"] == path
    page = stranger.get(path).get_data(as_text=True)
    assert "&lt;script&gt;alert" in page and "<script>alert" not in page
    assert 'value="grant"' in page and 'value="refuse"' in page

    granted = stranger.post(path, data={"csrf_token": csrf_token(page), "decision": "grant"})
    assert granted.status_code == 303 and granted.headers["Location"] == path
    assert desk.submission(sid).due_on == due_before + timedelta(days=30)
    [extended] = desk.events(EventKind.EXTENDED)
    assert extended.actor == COORDINATOR

    decided = stranger.get(path).get_data(as_text=True)
    assert 'value="grant"' not in decided and "Gewährt" in decided and COORDINATOR in decided
    twice = stranger.post(path, data={"csrf_token": csrf_token(decided), "decision": "refuse"})
    assert twice.status_code == 303
    assert [c for c, _ in flashes(stranger)] == ["error"]
    with desk.services.database.unit_of_work() as uow:
        assert uow.session.scalars(select(ExtensionRequest.status)).one() == "granted"
    assert len(desk.mails("extension_decision")) == 1
    assert desk.client.get("/extensions/999999").status_code == 404


def test_a_request_is_refused_with_a_comment(desk):
    sid = desk.sids[2]
    with desk.services.database.unit_of_work() as uow:
        request = request_extension(uow, sid, reason="Personalwechsel",
                                    proposed_due=desk.today + timedelta(days=60), now=utcnow(),
                                    actor="partner")
        uow.commit()
        request_id = request.id
    due = desk.submission(sid).due_on
    response = desk.post(f"/extensions/{request_id}", decision="refuse", comment=MARKUP)
    assert response.status_code == 303 and desk.submission(sid).due_on == due
    [refused] = desk.events(EventKind.EXTENSION_REFUSED)
    assert refused.actor == COORDINATOR and refused.payload["comment"] == MARKUP
    page = desk.client.get(f"/extensions/{request_id}").get_data(as_text=True)
    assert "Abgelehnt" in page and "&lt;script&gt;" in page


# Exempt and undo ---------------------------------------------------------------------------------

def test_exempting_cancels_the_owed_mails_and_undoing_plans_the_ladder_from_today(desk):
    sid = desk.sids[1]
    assert desk.rows(sid, status="planned")
    confirm = desk.client.get(f"/submissions/{sid}/exempt")
    assert confirm.status_code == 200 and 'name="reason"' in confirm.get_data(as_text=True)
    no_reason = desk.post(f"/submissions/{sid}/exempt", reason=" ")
    assert no_reason.status_code == 422 and desk.submission(sid).state == "invited"
    assert desk.post(f"/submissions/{sid}/exempt", reason="Umstrukturierung").status_code == 303
    assert desk.submission(sid).state == "exempted"
    assert not desk.rows(sid, status="planned", needs_open_report=True)
    [event] = desk.events(EventKind.EXEMPTED)
    assert event.actor == COORDINATOR and event.payload["reason"] == "Umstrukturierung"
    again = desk.post(f"/submissions/{sid}/exempt", reason="noch einmal")
    assert again.status_code == 303 and ("error", "Dieser Partner ist bereits befreit.") in \
        flashes(desk.client)

    assert desk.post(f"/submissions/{sid}/unexempt").status_code == 303
    assert desk.submission(sid).state == "invited"
    planned = desk.rows(sid, status="planned", needs_open_report=True)
    assert planned and all(row.due_at > utcnow() for row in planned)
    [revoked] = desk.events(EventKind.EXEMPTION_REVOKED)
    assert revoked.actor == COORDINATOR


# Resend the link ---------------------------------------------------------------------------------

def test_a_resent_link_comes_in_a_new_mail_and_older_links_keep_working(desk):
    sid = desk.sids[1]
    [first] = [m for m in desk.smtp.messages  # the ladder's mail when the cycle was swept
               if sid == _submission_of_mail(desk, m["message"])]
    old = LINK.search(first["message"].get_body(("plain",)).get_content()).group(1)
    for _ in range(2):
        assert desk.post(f"/submissions/{sid}/resend-link").status_code == 303
    resent = desk.mails("link_resent")
    assert len(resent) == 2
    # Built like every other mail to a partner (what spam filters weigh): the same headers, a
    # text and an HTML part, the same sender.
    assert set(resent[0].keys()) == set(first["message"].keys())
    assert resent[0]["From"] == first["message"]["From"]
    assert resent[0].get_body(("plain",)) and resent[0].get_body(("html",))
    new = [LINK.search(m.get_body(("plain",)).get_content()).group(1) for m in resent]
    assert len({old, *new}) == 3
    for path in (old, *new):
        assert desk.client.get(path).status_code == 200
    events = desk.events(EventKind.LINK_RESENT)
    assert [e.actor for e in events] == [COORDINATOR, COORDINATOR]
    with desk.services.database.unit_of_work() as uow:
        assert len(uow.session.scalars(select(AccessToken).where(
            AccessToken.submission_id == sid)).all()) == 3


def _submission_of_mail(desk, message) -> int | None:
    with desk.services.database.unit_of_work() as uow:
        return uow.session.scalar(select(Notification.submission_id).where(
            Notification.message_id == message["Message-ID"]))


# Escalate now ------------------------------------------------------------------------------------

def test_escalating_now_sends_the_next_planned_rung_in_the_coordinators_name(desk):
    sid = desk.sids[2]
    [upcoming, *_] = sorted(desk.rows(sid, status="planned", needs_open_report=True),
                            key=lambda r: (r.due_at, r.seq))
    confirm = desk.client.get(f"/submissions/{sid}/escalate").get_data(as_text=True)
    assert upcoming.rung in confirm
    assert desk.post(f"/submissions/{sid}/escalate").status_code == 303
    [row] = [r for r in desk.rows(sid) if r.id == upcoming.id]
    assert row.status == "sent"
    assert len(desk.mails(upcoming.rung)) == 1
    [event] = desk.events(EventKind.ESCALATED)
    assert event.actor == COORDINATOR and event.payload["rung"] == upcoming.rung

    with desk.services.database.unit_of_work() as uow:  # the ladder is used up
        uow.session.execute(update(Notification).where(
            Notification.submission_id == sid, Notification.status == "planned")
            .values(status="cancelled"))
        uow.commit()
    flashes(desk.client)
    assert desk.post(f"/submissions/{sid}/escalate").status_code == 303
    assert ("error", "Keine weitere Stufe geplant: es gibt nichts mehr zu eskalieren.") in \
        flashes(desk.client)
    assert len(desk.events(EventKind.ESCALATED)) == 1


# Pause and resume --------------------------------------------------------------------------------

def test_a_paused_partner_gets_no_reminder_at_the_sweep_nor_at_send_time_until_resumed(desk):
    paused, other, queued_then_paused = desk.sids
    assert desk.post(f"/submissions/{paused}/pause").status_code == 303
    assert desk.submission(paused).reminders_paused
    [event] = desk.events(EventKind.REMINDERS_PAUSED)
    assert event.actor == COORDINATOR and event.submission_id == paused

    # The sweep passes the paused partner by; a mail queued before a pause is held at send time.
    due = desk.next_rung_due() + timedelta(hours=1)
    [rung] = {r.rung for r in desk.rows(paused, status="planned") if r.due_at < due}
    desk.services.database.dispatcher, real = Holding(), desk.services.database.dispatcher
    desk.sweep_at(due)
    held_ids, desk.services.database.dispatcher = desk.services.database.dispatcher.ids, real
    assert {r.submission_id for r in _rows_by_id(desk, held_ids)} == {other, queued_then_paused}
    assert desk.post(f"/submissions/{queued_then_paused}/pause").status_code == 303
    report = deliver(desk.services.mail, held_ids, as_of=due)
    assert len(report.sent) == 1 and len(report.held) == 1
    assert {r.submission_id: r.status for r in _rows_by_id(desk, held_ids)} == {
        other: "sent", queued_then_paused: "planned"}
    assert [r.status for r in desk.rows(paused) if r.rung == rung] == ["planned"]
    assert len(desk.mails(rung)) == 1  # only the other partner's

    assert desk.post(f"/submissions/{paused}/resume").status_code == 303
    assert not desk.submission(paused).reminders_paused
    [resumed] = desk.events(EventKind.REMINDERS_RESUMED)
    assert resumed.actor == COORDINATOR
    desk.sweep_at(due + timedelta(hours=1))
    assert [r.status for r in desk.rows(paused) if r.rung == rung] == ["sent"]
    assert len(desk.mails(rung)) == 2


def test_a_report_no_longer_owed_cannot_have_its_reminders_paused(desk):
    sid = desk.sids[1]
    submit(desk, sid)
    assert desk.post(f"/submissions/{sid}/accept").status_code == 303
    flashes(desk.client)
    refused = desk.post(f"/submissions/{sid}/pause")
    assert refused.status_code == 303
    assert ("error", "Der Bericht ist nicht mehr offen; es gibt keine Erinnerungen zu "
                     "pausieren.") in flashes(desk.client)
    assert not desk.submission(sid).reminders_paused
    assert desk.events(EventKind.REMINDERS_PAUSED) == []


def test_ids_typed_into_forms_that_name_no_row_are_refused_without_an_error(desk):
    # "²" passes str.isdigit but not int(); 11 digits overflow PostgreSQL's integer.
    partner_id = desk.submission(desk.sids[0]).partner_id
    for odd in ("²", "١", "99999999999", str(2**63), "-1"):
        assert desk.client.get(f"/partners/{partner_id}/contacts?edit={odd}").status_code == 200
        changed = desk.post(f"/partners/{partner_id}/contacts", contact_id=odd, role="deputy",
                            name="Vertretung", email="vertretung@example.org", language="de")
        assert changed.status_code == 404, odd
        chosen = desk.post(f"/cycles/{desk.cycle_id}/bulk", action="pause", confirm="1",
                           submission_id=[odd, str(desk.sids[1])])
        assert chosen.status_code == 303, odd
    assert desk.submission(desk.sids[1]).reminders_paused


def test_a_nul_byte_in_any_posted_field_is_dropped_not_an_error(desk):
    # PostgreSQL refuses NUL in text: a sign-in or a contact's name with one gave a 500.
    stranger = desk.app.test_client()
    token = csrf_token(stranger.get("/login").get_data(as_text=True))
    signed = stranger.post("/login", data={"csrf_token": token, "email": "nie\x00mand@x.org",
                                           "password": "x" * 12})
    assert signed.status_code in (200, 422), signed.status_code
    partner_id = desk.submission(desk.sids[0]).partner_id
    added = desk.post(f"/partners/{partner_id}/contacts", role="deputy", name="Ver\x00tretung",
                      email="vertretung@example.org", language="de")
    assert added.status_code == 303
    with desk.services.database.unit_of_work() as uow:
        assert uow.session.scalar(select(Contact.name).where(
            Contact.email == "vertretung@example.org")) == "Vertretung"


def _rows_by_id(desk, ids) -> list[Notification]:
    return desk._detached(lambda uow: list(uow.session.scalars(
        select(Notification).where(Notification.id.in_(ids)))))


def test_pausing_the_whole_cycle_asks_first_and_holds_every_reminder(desk):
    confirm = desk.client.get(f"/cycles/{desk.cycle_id}/pause")
    assert confirm.status_code == 200
    paused = desk.post(f"/cycles/{desk.cycle_id}/pause")
    assert paused.status_code == 303 and paused.headers["Location"] == f"/cycles/{desk.cycle_id}"
    with desk.services.database.unit_of_work() as uow:
        assert uow.session.get(Cycle, desk.cycle_id).reminders_paused
    [event] = desk.events(EventKind.REMINDERS_PAUSED)
    assert event.actor == COORDINATOR and event.payload == {"scope": "cycle"}
    # Every open report shows it, in its row of the table and on its page; a submitted one not.
    submit(desk, desk.sids[2])
    table = desk.client.get(f"/cycles/{desk.cycle_id}/partners").get_data(as_text=True)
    assert table.count('<span class="marker">pausiert</span>') == 2
    page = desk.client.get(f"/submissions/{desk.sids[0]}").get_data(as_text=True)
    assert "für das ganze Berichtsjahr pausiert" in page
    page = desk.client.get(f"/submissions/{desk.sids[2]}").get_data(as_text=True)
    assert "keine mehr: der Bericht ist nicht mehr offen" in page
    due = desk.next_rung_due() + timedelta(hours=1)
    sent_before = len(desk.smtp.messages)
    desk.sweep_at(due)
    assert len(desk.smtp.messages) == sent_before
    assert desk.post(f"/cycles/{desk.cycle_id}/resume").status_code == 303
    [resumed] = desk.events(EventKind.REMINDERS_RESUMED)
    assert resumed.actor == COORDINATOR and resumed.submission_id is None
    desk.sweep_at(due)
    assert len(desk.smtp.messages) == sent_before + 2  # not to the partner who submitted


# Bulk actions ------------------------------------------------------------------------------------

def test_a_bulk_action_confirms_the_selection_and_acts_in_one_transaction(desk):
    first, second, _ = desk.sids
    table = f"/cycles/{desk.cycle_id}/partners?state=invited"
    asked = desk.post(f"/cycles/{desk.cycle_id}/bulk", action="pause",
                      submission_id=[str(first), str(second)], next=table)
    assert asked.status_code == 303 and not desk.submission(first).reminders_paused
    page = desk.client.get(asked.headers["Location"])
    html = page.get_data(as_text=True)
    assert page.status_code == 200 and "Partner 00001" in html and "&lt;script&gt;" in html
    done = desk.client.post(f"/cycles/{desk.cycle_id}/bulk", data={
        "csrf_token": csrf_token(html), "action": "pause", "confirm": "1", "next": table,
        "submission_id": [str(first), str(second)]})
    assert done.status_code == 303 and done.headers["Location"] == table
    assert desk.submission(first).reminders_paused and desk.submission(second).reminders_paused
    assert [e.actor for e in desk.events(EventKind.REMINDERS_PAUSED)] == [COORDINATOR] * 2
    assert ("success", "Erinnerungen pausieren: bei 2 Partnern erledigt.") in flashes(desk.client)

    many = desk.post(f"/cycles/{desk.cycle_id}/bulk", action="resume", next=table,
                     submission_id=[str(n) for n in range(1, 600)])  # no URL holds them all
    assert many.status_code == 200 and "höchstens 500 Partner" in many.get_data(as_text=True)

    elsewhere = desk.post(f"/cycles/{desk.cycle_id}/bulk", action="resend_link", confirm="1",
                          submission_id=[str(first)], next="https://evil.example/")
    assert elsewhere.status_code == 303 and elsewhere.headers["Location"] == "/"
    assert len(desk.mails("link_resent")) == 1


# Contacts and coordinators -----------------------------------------------------------------------

def test_contacts_are_added_changed_and_removed_with_clear_messages(desk):
    with desk.services.database.unit_of_work() as uow:
        partner_id = uow.session.scalar(select(Submission.partner_id).where(
            Submission.id == desk.sids[1]))
        contact = uow.session.scalars(select(Contact).where(
            Contact.partner_id == partner_id, Contact.role == ContactRole.REPORTING)).one()
        contact.bounced_at, contact.bounce_reason = utcnow(), "550 no such user"
        uow.commit()
        contact_id, old_email = contact.id, contact.email
    page = f"/partners/{partner_id}/contacts"
    assert desk.client.get(page).status_code == 200

    bad = desk.post(page, role="deputy", name="X", email="kein-at-zeichen", language="de")
    assert bad.status_code == 422 and "Diese E-Mail-Adresse ist ungültig." in bad.get_data(
        as_text=True)
    duplicate = desk.post(page, role="reporting", name="", email=old_email.upper(),
                          language="de")
    assert duplicate.status_code == 422
    assert "in dieser Rolle schon eingetragen" in duplicate.get_data(as_text=True)
    added = desk.post(page, role="deputy", name=MARKUP, email="zweite@example.org",
                      language="en")
    assert added.status_code == 303
    listed = desk.client.get(page).get_data(as_text=True)
    assert "zweite@example.org" in listed and "&lt;script&gt;" in listed
    assert "<script>alert" not in listed

    fixed = desk.post(page, contact_id=str(contact_id), role="reporting", name="Neu",
                      email="richtig@example.org", language="de")
    assert fixed.status_code == 303
    with desk.services.database.unit_of_work() as uow:
        corrected = uow.session.get(Contact, contact_id)
        assert corrected.email == "richtig@example.org" and corrected.bounced_at is None
        added_id = uow.session.scalar(select(Contact.id).where(
            Contact.email == "zweite@example.org"))

    remove = f"/partners/{partner_id}/contacts/{added_id}/remove"
    assert "zweite@example.org" in desk.client.get(remove).get_data(as_text=True)
    assert desk.post(remove).status_code == 303
    with desk.services.database.unit_of_work() as uow:
        assert uow.session.get(Contact, added_id) is None
    events = desk.events(EventKind.CONTACTS_CHANGED)
    assert [e.payload["change"] for e in events] == ["added", "changed", "removed"]
    assert all(e.actor == COORDINATOR and e.submission_id == desk.sids[1] for e in events)
    assert "@" not in json.dumps([e.payload for e in events])  # no address in the log
    assert "bounce_cleared" in events[1].payload["fields"]
    assert desk.client.get("/partners/999999/contacts").status_code == 404


def test_the_programmes_coordinators_are_edited(desk):
    assert desk.client.get("/coordinators").status_code == 200
    bad = desk.post("/coordinators", emails="a@example.org\nkaputt")
    assert bad.status_code == 422 and "kaputt" in bad.get_data(as_text=True)
    assert desk.post("/coordinators",
                     emails="a@example.org\nb@example.org\n").status_code == 303
    with desk.services.database.unit_of_work() as uow:
        assert uow.session.scalars(select(Programme.coordinator_emails)).one() == [
            "a@example.org", "b@example.org"]
    [event] = desk.events(EventKind.COORDINATORS_CHANGED)
    assert event.actor == COORDINATOR


# Viewers, validity -------------------------------------------------------------------------------

def test_a_viewer_may_look_at_the_action_pages_but_every_action_is_refused(desk):
    viewer = signed_in_client(desk.app, desk.services, "leserin@example.org", "viewer")
    sid = desk.sids[0]
    token = csrf_token(viewer.get("/coordinators").get_data(as_text=True))
    for path in (f"/submissions/{sid}/accept", f"/submissions/{sid}/return",
                 f"/submissions/{sid}/exempt", f"/submissions/{sid}/unexempt",
                 f"/submissions/{sid}/resend-link", f"/submissions/{sid}/escalate",
                 f"/submissions/{sid}/pause", f"/submissions/{sid}/resume",
                 f"/cycles/{desk.cycle_id}/pause", f"/cycles/{desk.cycle_id}/resume",
                 f"/cycles/{desk.cycle_id}/bulk", "/coordinators", "/extensions/1",
                 "/partners/1/contacts", "/partners/1/contacts/1/remove"):
        assert viewer.post(path, data={"csrf_token": token}).status_code == 403, path
    assert viewer.get("/coordinators").status_code == 200
    assert 'name="emails"' in viewer.get("/coordinators").get_data(as_text=True)
    contacts = viewer.get("/partners/1/contacts").get_data(as_text=True)
    assert "Kontakt hinzufügen" not in contacts
    for page in (f"/submissions/{sid}", f"/cycles/{desk.cycle_id}",
                 f"/cycles/{desk.cycle_id}/partners"):  # the others' pages, without actions
        html = viewer.get(page).get_data(as_text=True)
        assert "/resend-link" not in html and "/pause" not in html and "/bulk" not in html, page
    assert "/resend-link" in desk.client.get(f"/submissions/{sid}").get_data(as_text=True)
    assert f"/cycles/{desk.cycle_id}/pause" in desk.client.get(
        f"/cycles/{desk.cycle_id}").get_data(as_text=True)
    assert "/bulk" in desk.client.get(f"/cycles/{desk.cycle_id}/partners").get_data(
        as_text=True)
    assert not desk.events(EventKind.ACCEPTED) and not desk.events(EventKind.LINK_RESENT)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_the_action_pages_pass_the_nu_html_checker(desk, tmp_path):
    sid = desk.sids[0]
    submit(desk, desk.sids[2])
    with desk.services.database.unit_of_work() as uow:
        request_id = request_extension(uow, sid, reason=MARKUP,
                                       proposed_due=desk.today + timedelta(days=40),
                                       now=utcnow(), actor="partner").id
        partner_id = load_submission(uow, sid).partner_id
        uow.commit()
    pages = {
        "return": f"/submissions/{desk.sids[2]}/return",
        "exempt": f"/submissions/{sid}/exempt",
        "escalate": f"/submissions/{sid}/escalate",
        "pause_cycle": f"/cycles/{desk.cycle_id}/pause",
        "extension": f"/extensions/{request_id}",
        "bulk": f"/cycles/{desk.cycle_id}/bulk?action=escalate&submission_id={sid}"
                f"&submission_id={desk.sids[1]}&next=/",
        "contacts": f"/partners/{partner_id}/contacts",
        "contact_edit": f"/partners/{partner_id}/contacts?edit=1",
        "remove_contact": f"/partners/{partner_id}/contacts/1/remove",
        "coordinators": "/coordinators",
    }
    files = []
    for name, path in pages.items():
        response = desk.client.get(path)
        assert response.status_code == 200, (name, response.status_code)
        files.append(tmp_path / f"{name}.html")
        files[-1].write_text(response.get_data(as_text=True), encoding="utf-8")
    for name, response in {
            "exempt_error": desk.post(f"/submissions/{sid}/exempt", reason=""),
            "return_error": desk.post(f"/submissions/{desk.sids[2]}/return"),
            "contacts_error": desk.post(f"/partners/{partner_id}/contacts", role="head",
                                        email="x", language="de"),
            "coordinators_error": desk.post("/coordinators", emails="x")}.items():
        assert response.status_code == 422, name
        files.append(tmp_path / f"{name}.html")
        files[-1].write_text(response.get_data(as_text=True), encoding="utf-8")
    desk.post(f"/extensions/{request_id}", decision="grant", comment=MARKUP)
    files.append(tmp_path / "extension_decided.html")
    files[-1].write_text(desk.client.get(pages["extension"]).get_data(as_text=True),
                         encoding="utf-8")
    files += _partials(desk, tmp_path)
    problems = [m for m in nu_check(files) if m.type != "info"]
    assert not problems, "\n".join(map(str, problems))


def _partials(desk, tmp_path):
    """The partials on the pages of the others, each inside a page of its own."""
    from types import SimpleNamespace

    from flask import render_template_string
    from flask_login import login_user

    from web.auth import SignedIn
    from workflow.users import find_account

    with desk.services.database.unit_of_work() as uow:
        account = find_account(uow, COORDINATOR)
    page = ('{% extends "base.html" %}{% block title %}t{% endblock %}{% block main %}'
            '<h1>t</h1>{% include name %}{% endblock %}')
    files = []
    extension = SimpleNamespace(id=1, proposed_due=desk.today, reason=MARKUP,
                                created_at=utcnow())
    for n, (name, context) in enumerate([
            ("_submission_actions.html", {"sub": SimpleNamespace(
                id=1, cycle_id=1, partner_id=1, partner_name=MARKUP, state=state,
                reminders_paused=paused, cycle_reminders_paused=False, escalation_level=0,
                pending_extensions=[extension] if state == "invited" else [])})
            for state, paused in (("invited", False), ("submitted", False),
                                  ("exempted", False), ("draft", True))] + [
            ("_bulk_actions.html", {"cycle_id": 1}),
            ("_cycle_actions.html", {"cycle": SimpleNamespace(id=1, reminders_paused=False)}),
            ("_cycle_actions.html", {"cycle": SimpleNamespace(id=1, reminders_paused=True)})]):
        with desk.app.test_request_context("/"):
            login_user(SignedIn(account))
            include = f'{{% include "{name}" %}}'
            if name == "_bulk_actions.html":  # inside the table's form
                include = f'<form method="post">{include}</form>'
            html = render_template_string(page.replace("{% include name %}", include),
                                          **context)
        assert "<button" in html or "button" in html
        files.append(tmp_path / f"partial{n}.html")
        files[-1].write_text(html, encoding="utf-8")
    return files
