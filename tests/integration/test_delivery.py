"""Delivery under the faults an operator meets, on real PostgreSQL and SQLite and a real SMTP
server (aiosmtpd): slow batches, an outage over a weekend, a refused login, refused recipients,
the send window, a pause, a finished member part, a mail that cannot be composed, a poison batch,
the minimum gap between two mails. Each test asserts on the ledger and on what the server got."""
from __future__ import annotations

import dataclasses
import json
import threading
from contextlib import contextmanager
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from datetime import time as clock_time

import psycopg
import pytest
from aiosmtpd.smtp import AuthResult
from sqlalchemy import String, cast, func, select, update

from reportcycles.bootstrap import build
from tasks.scheduler import relay_outbox
from tests.integration.conftest import berlin, make_settings, seed_programme
from tests.support.mail import addresses
from tests.support.report import VALID_ANSWERS, load_shipped_template
from tests.support.servers import free_port, smtp_server
from workflow.cycles import get_programme, open_cycle
from workflow.delivery import deliver, retry_failed
from workflow.events import EventKind
from workflow.member_parts import complete_member_part, save_member_part
from workflow.models import Contact, Event, MemberPart, Notification, Outbox, utcnow
from workflow.partners import ensure_programme, import_partners
from workflow.policy import END_OF_DAY, ReportingPolicy
from workflow.requests import declare_intent
from workflow.sweep import sweep
from workflow.uow import Recorder

OPENS, DUE = date(2027, 2, 1), date(2027, 4, 30)
ALL_DAY = ReportingPolicy(window_start=clock_time(0, 0), window_end=END_OF_DAY,
                          window_working_days_only=False)


class Holding:
    """A dispatcher that hands nothing over: the test decides when rows are delivered."""

    def __init__(self):
        self.ids = []

    def send_notifications(self, ids, as_of=None):
        self.ids.extend(ids)

    def backlog(self):
        return None


def make_services(monkeypatch, tmp_path, database_url, smtp_port, **settings):
    built, _ = make_settings(monkeypatch, tmp_path, database_url, smtp_port, **settings)
    return build(built, "inline")


@pytest.fixture
def stack(monkeypatch, tmp_path, database_url, smtp):
    made = []

    def services(port=None, **settings):
        made.append(make_services(monkeypatch, tmp_path, database_url, port or smtp[0].port,
                                  **settings))
        return made[-1]

    yield services
    for services in made:
        services.database.dispose()


def open_and_queue(services, partners=3, policy=ALL_DAY, at=None):
    """A cycle opened and swept; the invitations are queued, not yet delivered."""
    seed_programme(services, partners=partners, policy=policy)
    with services.database.unit_of_work() as uow:
        open_cycle(uow, get_programme(uow), 2027, now=berlin(OPENS, 7), opens_on=OPENS,
                   due_on=DUE)
        uow.commit()
    real, services.database.dispatcher = services.database.dispatcher, Holding()
    with services.database.unit_of_work() as uow:
        sweep(uow, at or berlin(OPENS))
        uow.commit()
    held, services.database.dispatcher = services.database.dispatcher, real
    return held.ids


def statuses(services, **where) -> Counter:
    with services.database.unit_of_work() as uow:
        query = select(Notification.status, func.count()).group_by(Notification.status)
        for column, value in where.items():
            query = query.where(getattr(Notification, column) == value)
        return Counter({str(k): v for k, v in uow.session.execute(query).all()})


def rows(services, ids):
    with services.database.unit_of_work() as uow:
        found = {n.id: n for n in uow.session.scalars(
            select(Notification).where(Notification.id.in_(ids)))}
        uow.session.expunge_all()  # keep what was read for the assertions
        return found


def events(services, kind) -> list[Event]:
    with services.database.unit_of_work() as uow:
        found = list(uow.session.scalars(select(Event).where(Event.kind == kind)
                                         .order_by(Event.id)))
        uow.session.expunge_all()
        return found


def message_ids(handler) -> Counter:
    with handler.lock:
        return Counter(m["message"]["Message-ID"] for m in handler.messages)


def time_passes(services, minutes=15):
    """Move the outbox's pause into the past, as the clock would."""
    with services.database.unit_of_work() as uow:
        uow.session.execute(update(Outbox).values(
            paused_until=utcnow() - timedelta(seconds=1)))
        uow.session.execute(update(Notification).where(Notification.status == "queued")
                            .values(not_before=utcnow() - timedelta(seconds=1)))
        uow.commit()


def test_a_slow_batch_keeps_its_claim_and_no_mail_goes_out_twice(stack, smtp):
    """With a 2 s lease and 1 s per mail, another worker relaying all the while finds every row
    still claimed: the claim is renewed with each mail, and only its holder records."""
    services = stack(SEND_LEASE_SECONDS=2, DISPATCH_LEASE_SECONDS=0)
    _, handler = smtp
    handler.delay = 1.0
    ids = open_and_queue(services, partners=6)
    first = threading.Thread(target=deliver, args=(services.mail, ids))
    first.start()
    other = stack(SEND_LEASE_SECONDS=2, DISPATCH_LEASE_SECONDS=0)  # a second worker's view
    while first.is_alive():
        relay_outbox(other)  # hands stale claims to this process's own delivery at once
        first.join(0.3)
    assert statuses(services, rung="invitation") == {"sent": 6}
    received = message_ids(handler)
    assert len(received) == 6 and set(received.values()) == {1}


def test_every_mail_is_recorded_with_its_event_however_the_record_was_written(stack, smtp):
    """The first mail of a batch is recorded in a unit of work (it also ends an outbox pause);
    on PostgreSQL the others in one statement each. Rows, copies and events are the same."""
    services = stack()
    ids = open_and_queue(services, partners=4)
    report = deliver(services.mail, ids)
    assert report.sent == ids
    found = rows(services, ids)
    sent = {e.payload["message_id"]: e for e in events(services, EventKind.NOTIFICATION_SENT)}
    assert len(sent) == 4
    with smtp[1].lock:
        received = {m["message"]["Message-ID"]: m["message"]["To"] for m in smtp[1].messages}
    for notification in found.values():
        event = sent[notification.message_id]
        assert notification.status == "sent" and notification.claim_token is not None
        assert notification.sent_subject and "/r/…" in notification.sent_text
        assert notification.sent_to == [received[notification.message_id]]
        assert notification.refused is None and notification.last_error is None
        assert (event.cycle_id, event.submission_id, event.actor, event.at) == (
            notification.cycle_id, notification.submission_id, "worker", notification.sent_at)
        assert event.payload == {"rung": "invitation", "message_id": notification.message_id}
        assert notification.payload is None  # the ledger row's own payload is untouched
    with services.database.unit_of_work() as uow:  # the same JSON text, whichever path wrote it
        texts = uow.session.scalars(select(cast(Event.payload, String)).where(
            Event.kind == EventKind.NOTIFICATION_SENT)).all()
    assert all(text == json.dumps(json.loads(text)) for text in texts) and len(texts) == 4
    assert set(received) == {n.message_id for n in found.values()}


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)  # cutting its connections
def test_a_database_connection_lost_between_two_mails_costs_no_record(stack, smtp):
    """Every connection to PostgreSQL is cut after the third mail left: its record
    goes over a new connection, and every mail is sent and recorded once."""
    services = stack()
    ids = open_and_queue(services, partners=5)
    connect, sent = services.mail.transport.connect, []

    class CutAfterTheThirdMail:
        def __init__(self, connection):
            self.connection = connection

        def send(self, mail):
            refused = self.connection.send(mail)
            sent.append(mail.message_id)
            if len(sent) == 3:
                with services.database.engine.connect() as admin:
                    admin.exec_driver_sql(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        "WHERE datname = current_database() AND pid <> pg_backend_pid()")
            return refused

    @contextmanager
    def cutting():
        with connect() as connection:
            yield CutAfterTheThirdMail(connection)

    services.mail.transport.connect = cutting
    report = deliver(services.mail, ids)
    assert report.sent == ids and not report.lost
    assert statuses(services, rung="invitation") == {"sent": 5}
    assert len(events(services, EventKind.NOTIFICATION_SENT)) == 5
    assert message_ids(smtp[1]) == Counter({message_id: 1 for message_id in sent})


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)  # one-statement records
def test_a_record_whose_reply_was_lost_after_its_commit_counts_as_sent(stack, smtp, monkeypatch):
    """The third mail's record commits, then its connection dies before the reply arrives: the
    recorder tries again over a new connection, finds the row already sent under this worker's
    claim, and the mail counts as sent, once."""
    services = stack()
    ids = open_and_queue(services, partners=5)
    statements = []
    run = Recorder._run

    def loses_the_third_reply(driver_connection, sql, values, every_row):
        row = run(driver_connection, sql, values, every_row)  # autocommit: committed
        if "INSERT INTO event" not in sql:  # not a record (the mail locks)
            return row
        statements.append(sql)
        if len(statements) == 3:
            driver_connection.close()
            raise psycopg.OperationalError("server closed the connection unexpectedly")
        return row

    monkeypatch.setattr(Recorder, "_run", staticmethod(loses_the_third_reply))
    report = deliver(services.mail, ids)
    assert len(statements) >= 4  # the third was tried again
    assert report.sent == ids and not report.lost
    assert statuses(services, rung="invitation") == {"sent": 5}
    assert len(events(services, EventKind.NOTIFICATION_SENT)) == 5
    assert sum(message_ids(smtp[1]).values()) == 5


def test_a_weekend_without_a_mail_server_loses_nothing_and_burns_no_attempt(stack, tmp_path):
    port = free_port()  # nothing listens here until the server comes back
    services = stack(port=port)
    ids = open_and_queue(services, partners=4)
    deliver(services.mail, ids)
    assert statuses(services, rung="invitation") == {"queued": 4}
    [paused] = events(services, EventKind.OUTBOX_PAUSED)
    assert "no connection" in paused.payload["reason"]
    # 72 hours of probing every 15 minutes at most: 288 tries, none of them a row's attempt.
    for _ in range(288):
        time_passes(services)
        relay_outbox(services)
    after = rows(services, ids)
    assert {n.status for n in after.values()} == {"queued"}
    assert {n.attempts for n in after.values()} == {0}
    with smtp_server(port=port) as (_, handler):
        time_passes(services)
        relay_outbox(services)
        assert statuses(services, rung="invitation") == {"sent": 4}
        assert len(message_ids(handler)) == 4
    assert len(events(services, EventKind.OUTBOX_RESUMED)) == 1
    assert len(events(services, EventKind.OUTBOX_PAUSED)) == 1  # one pause, not 289


class MeetsTheOthers:
    """A transport that lets every worker reach the server at the same moment."""

    def __init__(self, transport, workers: int):
        self.transport, self.barrier = transport, threading.Barrier(workers, timeout=10)

    def connect(self):
        self.barrier.wait()
        return self.transport.connect()


def test_workers_that_find_the_server_away_at_once_pause_the_outbox_once(stack):
    """Four processes failing within the same moment are one failure, not four: the first pause
    stays 30 s and does not grow to four minutes."""
    services = stack(port=free_port())  # nothing listens there
    ids = open_and_queue(services, partners=4)
    gate = MeetsTheOthers(services.mail.transport, workers=4)
    workers = [dataclasses.replace(services.mail, transport=gate) for _ in range(4)]
    threads = [threading.Thread(target=deliver, args=(worker, [one]))
               for worker, one in zip(workers, ids)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    with services.database.unit_of_work() as uow:
        outbox = uow.session.get(Outbox, 1)
        assert outbox.failures == 1
        assert outbox.paused_until - outbox.paused_since <= timedelta(seconds=31)
    assert statuses(services, rung="invitation") == {"queued": 4}
    assert {n.attempts for n in rows(services, ids).values()} == {0}


def test_a_refused_login_pauses_the_outbox_instead_of_failing_mails(stack):
    def refuse(server, session, envelope, mechanism, auth_data):
        return AuthResult(success=False, handled=False)

    with smtp_server(authenticator=refuse, auth_require_tls=False) as (server, handler):
        services = stack(SMTP_URL=f"smtp://u:wrong@127.0.0.1:{server.port}?allow_plaintext=1")
        ids = open_and_queue(services, partners=2)
        report = deliver(services.mail, ids)
        assert sorted(report.deferred) == sorted(ids) and not report.failed
        assert statuses(services, rung="invitation") == {"queued": 2}
        assert {n.attempts for n in rows(services, ids).values()} == {0}
        assert "login refused: 535" in events(services, EventKind.OUTBOX_PAUSED)[0].payload[
            "reason"]
        assert relay_outbox(services) == []  # nothing is handed out while the outbox pauses
        assert handler.messages == []


def test_partner_mails_wait_for_the_window_while_coordinator_notices_go_at_once(stack, smtp):
    services = stack()
    ids = open_and_queue(services, partners=2, policy=ReportingPolicy())
    with services.database.unit_of_work() as uow:
        notice = uow.session.scalar(select(Notification.id).where(
            Notification.rung == "deadline_notice"))
        uow.session.execute(update(Notification).where(Notification.id == notice).values(
            status="queued", not_before=utcnow()))
        uow.commit()
    saturday_night = datetime(2027, 2, 6, 22, 30, tzinfo=UTC)
    report = deliver(services.mail, [*ids, notice], as_of=saturday_night)
    assert sorted(report.deferred) == sorted(ids) and report.sent == [notice]
    waiting = rows(services, ids)
    assert {n.not_before for n in waiting.values()} == {datetime(2027, 2, 8, 7, 0, tzinfo=UTC)}
    assert {n.attempts for n in waiting.values()} == {0}
    assert [m["message"]["X-Reportcycles-Rung"] for m in smtp[1].messages] == ["deadline_notice"]
    monday = datetime(2027, 2, 8, 7, 0, 5, tzinfo=UTC)
    time_passes(services)
    assert sorted(deliver(services.mail, ids, as_of=monday).sent) == sorted(ids)


def test_retries_of_a_busy_server_wait_their_backoff_even_when_handed_out_twice(stack, smtp):
    services = stack()
    _, handler = smtp
    handler.fail_next = ["451 try again later"]
    [first, *rest] = open_and_queue(services, partners=3)
    report = deliver(services.mail, [first])
    assert report.retrying == [first]
    for _ in range(5):  # duplicate hand-overs arrive at once
        assert deliver(services.mail, [first]).passed == [first]
    retried = rows(services, [first])[first]
    assert retried.attempts == 1 and retried.status == "queued"
    assert retried.not_before > utcnow() + timedelta(seconds=50)


def send_the_reminder_with_the_deputy_in_copy(services):
    """One partner, overdue by 10 working days: its reporting contact, the deputy in copy."""
    seed_programme(services, partners=1, policy=ALL_DAY)
    with services.database.unit_of_work() as uow:
        open_cycle(uow, get_programme(uow), 2027, now=berlin(OPENS, 7), opens_on=OPENS,
                   due_on=DUE)
        uow.commit()
    with services.database.unit_of_work() as uow:
        sweep(uow, berlin(date(2027, 5, 20)))
        uow.commit()


def test_a_recipient_refused_beside_accepted_ones_is_recorded_and_bounces(stack, smtp):
    services = stack()
    _, handler = smtp
    handler.refuse_recipients = {"d0@example.org": "550 5.1.1 no such mailbox"}
    send_the_reminder_with_the_deputy_in_copy(services)
    [mail] = [m for m in handler.messages if m["message"]["X-Reportcycles-Rung"] == "overdue-10"]
    assert mail["envelope_to"] == ["p0@example.org"]
    with services.database.unit_of_work() as uow:
        row = uow.session.scalars(select(Notification).where(
            Notification.rung == "overdue-10")).one()
        assert row.status == "sent" and row.refused == {
            "d0@example.org": "550 5.1.1 no such mailbox"}
        deputy = uow.session.scalars(select(Contact).where(
            Contact.email == "d0@example.org")).one()
        assert deputy.bounced_at is not None and "no such mailbox" in deputy.bounce_reason
    [bounced] = events(services, EventKind.CONTACT_BOUNCED)
    assert bounced.payload["role"] == "deputy"


def test_when_the_contact_bounces_the_next_mail_of_the_ladder_goes_to_the_deputy(stack, smtp):
    services = stack()
    _, handler = smtp
    handler.refuse_recipients = {"p0@example.org": "550 5.1.1 user unknown"}
    ids = open_and_queue(services, partners=1)
    report = deliver(services.mail, ids)
    assert report.failed == ids  # its only recipient refused: failed at once, told
    [failed] = events(services, EventKind.NOTIFICATION_FAILED)
    assert "550" in failed.payload["error"]
    with services.database.unit_of_work() as uow:
        sweep(uow, berlin(date(2027, 4, 1)))  # the 28-days reminder ... and the others
        uow.commit()
    [reminder] = handler.messages
    assert addresses(reminder["message"]["To"]) == ["d0@example.org"]


def test_the_send_time_check_honours_a_pause_the_partner_asked_for(stack, smtp):
    services = stack()
    [invitation] = open_and_queue(services, partners=1)
    with services.database.unit_of_work() as uow:
        submission_id = rows(services, [invitation])[invitation].submission_id
        declare_intent(uow, submission_id, intent="will_submit_by", until=date(2027, 5, 20),
                       now=berlin(OPENS, 9), actor="partner")
        uow.commit()
    report = deliver(services.mail, [invitation], as_of=berlin(OPENS, 9))
    assert report.held == [invitation] and rows(services, [invitation])[invitation].status == (
        "planned")
    assert [m["message"]["X-Reportcycles-Rung"] for m in smtp[1].messages] == ["intent_notice"]


def test_a_member_whose_part_is_finished_gets_no_invitation(stack, smtp):
    services = stack()
    group_csv = ("name,kind,contact_name,contact_email,deputy_email,head_name,head_email,"
                 "language,joined_on,group\n"
                 "Städtekooperation,Kooperation,K,k@example.org,,,,de,2019-01-01,\n"
                 "Stadt Herne,Kommune,H,herne@example.org,,,,de,2019-01-01,Städtekooperation\n")
    with services.database.unit_of_work() as uow:
        programme = ensure_programme(uow, policy=ALL_DAY)
        import_partners(uow, programme, group_csv)
        load_shipped_template(uow, programme)
        open_cycle(uow, programme, 2027, now=berlin(OPENS, 7), opens_on=OPENS, due_on=DUE)
        uow.commit()
    services.database.dispatcher, real = Holding(), services.database.dispatcher
    with services.database.unit_of_work() as uow:
        sweep(uow, berlin(OPENS))
        uow.commit()
    queued, services.database.dispatcher = services.database.dispatcher.ids, real
    with services.database.unit_of_work() as uow:
        part = uow.session.scalars(select(MemberPart)).one()
        save_member_part(uow, part.id, dict(VALID_ANSWERS), expected_version=part.version,
                         now=berlin(OPENS, 9), actor="member")
        complete_member_part(uow, part.id, expected_version=part.version, now=berlin(OPENS, 9),
                             actor="member")
        uow.commit()
    report = deliver(services.mail, queued, as_of=berlin(OPENS, 9))
    assert len(report.cancelled) == 1 and len(report.sent) == 1
    [sent] = smtp[1].messages
    assert addresses(sent["message"]["To"]) == ["k@example.org"]


def test_a_mail_that_cannot_be_composed_fails_at_once_and_is_retried_after_the_fix(stack, smtp):
    services = stack()
    [first, second] = open_and_queue(services, partners=2)
    with services.database.unit_of_work() as uow:
        uow.session.execute(update(Notification).where(Notification.id == first)
                            .values(email="einladung_mit_tippfehler"))
        uow.commit()
    report = deliver(services.mail, [first, second])
    assert report.failed == [first] and report.sent == [second]
    failed = rows(services, [first])[first]
    assert failed.status == "failed" and failed.attempts == 0
    assert "einladung_mit_tippfehler" in failed.last_error
    with services.database.unit_of_work() as uow:
        uow.session.execute(update(Notification).where(Notification.id == first)
                            .values(email="invitation"))
        assert retry_failed(uow, now=utcnow(), actor="cli") == [first]
        uow.commit()  # dispatched after commit: sent in this process
    assert statuses(services, rung="invitation") == {"sent": 2}
    assert len(events(services, EventKind.NOTIFICATION_REQUEUED)) == 1


def test_an_address_stored_before_addresses_were_checked_fails_its_mail_instead_of_sticking(
        stack, smtp):
    """A contact's address with an umlaut, from before the rule: the mail cannot leave without
    SMTPUTF8. It fails at once and says why; it must not stay 'sending' until its lease."""
    services = stack()
    [first, second] = open_and_queue(services, partners=2)
    with services.database.unit_of_work() as uow:
        contact = uow.session.scalars(select(Contact).where(
            Contact.email == "p0@example.org")).one()
        contact.email = "jürgen@example.org"
        uow.commit()
    report = deliver(services.mail, [first, second])
    assert report.failed == [first] and report.sent == [second]
    failed = rows(services, [first])[first]
    assert failed.status == "failed" and "not ASCII" in failed.last_error
    assert [m["message"]["X-Reportcycles-Rung"] for m in smtp[1].messages] == ["invitation"]


def test_a_batch_that_kills_its_worker_every_time_is_parked_after_its_attempts(stack, smtp):
    """Only the mail in flight when the worker died counts: it is flagged as a possible duplicate
    and its attempts grow until it is parked; the batch's later mails were never tried."""
    services = stack(SEND_LEASE_SECONDS=1, MAX_SEND_ATTEMPTS=3)
    ids = open_and_queue(services, partners=3)
    first, *rest = sorted(ids)

    def worker_dies_mid_send():
        """Claimed and then nothing: the worker was killed while sending the batch's first."""
        with services.database.unit_of_work() as uow:
            uow.session.execute(update(Notification).where(Notification.id.in_(ids)).values(
                status="sending", claim_token="dead", claimed_at=utcnow() - timedelta(seconds=5)))
            uow.commit()

    for _ in range(2):
        worker_dies_mid_send()
        services.database.dispatcher, real = Holding(), services.database.dispatcher
        relay_outbox(services)  # the stale claims are handed out again ...
        services.database.dispatcher = real
        report = deliver(services.mail, ids)  # ... and taken over
    assert report.sent == sorted(ids)
    flagged = {e.submission_id for e in events(services, EventKind.NOTIFICATION_SENT)
               if e.payload.get("possible_duplicate")}
    assert flagged == {rows(services, [first])[first].submission_id}
    assert {i: n.attempts for i, n in rows(services, ids).items()} == {
        first: 2, **{i: 0 for i in rest}}  # two deaths, each with the first in flight
    with services.database.unit_of_work() as uow:
        uow.session.execute(update(Notification).where(Notification.id.in_(ids)).values(
            status="sending", claim_token="dead", attempts=2,
            claimed_at=utcnow() - timedelta(seconds=5)))
        uow.commit()
    report = deliver(services.mail, ids)
    assert report.failed == [first] and report.sent == rest
    assert rows(services, [first])[first].status == "failed"
    assert all("stopped" in e.payload["error"]
               for e in events(services, EventKind.NOTIFICATION_FAILED))


def open_short_cycle(services):
    """One partner, the default policy, a deadline 9 days after the opening: the 7-days reminder
    falls due two days after the invitation."""
    seed_programme(services, partners=1, policy=ReportingPolicy())
    with services.database.unit_of_work() as uow:
        open_cycle(uow, get_programme(uow), 2027, now=berlin(OPENS, 7), opens_on=OPENS,
                   due_on=date(2027, 2, 12))
        uow.commit()


def test_a_replanned_ladder_waits_the_minimum_gap_after_the_last_mail(stack, smtp):
    services = stack()
    open_short_cycle(services)
    monday = date(2027, 2, 1)
    with services.database.unit_of_work() as uow:
        sweep(uow, berlin(monday))  # the invitation goes on Monday
        uow.commit()
    with services.database.unit_of_work() as uow:  # the 7-days reminder is due on Wednesday
        result = sweep(uow, berlin(monday + timedelta(days=2)))
        uow.commit()
    assert result.count("send") == 0 and result.held == 1
    with services.database.unit_of_work() as uow:  # Thursday: three working days later
        result = sweep(uow, berlin(monday + timedelta(days=3)))
        uow.commit()
    assert result.count("send") == 1
    assert [m["message"]["X-Reportcycles-Rung"] for m in smtp[1].messages] == [
        "invitation", "reminder-7"]


class DropsAfterTheFinalDot:
    """Takes the mail, then drops the connection before answering (a crash, a network cut)."""

    def __init__(self, handler):
        self.handler, self.dropped = handler, False

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        return await self.handler.handle_EHLO(server, session, envelope, hostname, responses)

    async def handle_RCPT(self, server, session, envelope, address, options):
        return await self.handler.handle_RCPT(server, session, envelope, address, options)

    async def handle_DATA(self, server, session, envelope):
        reply = await self.handler.handle_DATA(server, session, envelope)
        if not self.dropped:
            self.dropped = True
            server.transport.close()
        return reply


def test_a_connection_dropped_after_the_final_dot_is_retried_with_the_same_message_id(
        stack, smtp):
    services = stack()
    controller, handler = smtp
    controller.handler = DropsAfterTheFinalDot(handler)
    [only] = open_and_queue(services, partners=1)
    assert deliver(services.mail, [only]).retrying == [only]
    time_passes(services)
    assert deliver(services.mail, [only]).sent == [only]
    row = rows(services, [only])[only]
    assert row.status == "sent" and row.attempts == 1
    # The server may hold two copies; both carry the one Message-ID, so clients show one.
    assert list(message_ids(handler).values()) == [2]


def test_a_recipient_refused_only_for_now_is_kept_on_the_row_but_does_not_bounce(stack, smtp):
    services = stack()
    _, handler = smtp
    handler.refuse_recipients = {"d0@example.org": "452 4.2.2 mailbox full, try later"}
    send_the_reminder_with_the_deputy_in_copy(services)
    with services.database.unit_of_work() as uow:
        row = uow.session.scalars(select(Notification).where(
            Notification.rung == "overdue-10")).one()
        assert row.status == "sent" and "452" in row.refused["d0@example.org"]
        deputy = uow.session.scalars(select(Contact).where(
            Contact.email == "d0@example.org")).one()
        assert deputy.bounced_at is None
    assert events(services, EventKind.CONTACT_BOUNCED) == []


class ClosingAfterTheFirstMail:
    """Answers 421 to the second mail of a session: the server is shutting down."""

    def __init__(self, handler):
        self.handler, self.mails = handler, 0

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        return await self.handler.handle_EHLO(server, session, envelope, hostname, responses)

    async def handle_RCPT(self, server, session, envelope, address, options):
        self.mails += 1
        if self.mails == 2:
            return "421 4.3.2 shutting down"
        return await self.handler.handle_RCPT(server, session, envelope, address, options)

    async def handle_DATA(self, server, session, envelope):
        return await self.handler.handle_DATA(server, session, envelope)


class CountingThrottle:
    def __init__(self):
        self.acquired = self.slowed = 0

    def acquire(self):
        self.acquired += 1

    def slow_down(self):
        self.slowed += 1


def test_a_421_mid_batch_pauses_the_outbox_and_slows_the_throttle(stack, smtp):
    services = stack()
    controller, handler = smtp
    controller.handler = ClosingAfterTheFirstMail(handler)
    services.mail.throttle = throttle = CountingThrottle()
    ids = open_and_queue(services, partners=3)
    report = deliver(services.mail, ids)
    assert len(report.sent) == 1 and len(report.deferred) == 2
    assert throttle.slowed == 1 and throttle.acquired == 2
    assert {n.attempts for n in rows(services, ids).values()} == {0}
    assert "421" in events(services, EventKind.OUTBOX_PAUSED)[0].payload["reason"]
