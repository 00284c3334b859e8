"""The engine rehearsed through a year, on SQLite and PostgreSQL, with a real SMTP server."""
from __future__ import annotations

import dataclasses
import threading
from collections import Counter
from datetime import date

import pytest
from sqlalchemy import func, select

from tests.integration.conftest import berlin, seed_programme
from tests.support.mail import addresses
from workflow.cycles import cycle_status, get_programme, open_cycle
from workflow.errors import InvalidInput
from workflow.models import Cycle, Event, Notification, NotificationStatus, Submission
from workflow.states import Action
from workflow.submissions import apply_action, extend_deadline
from workflow.sweep import sweep

OPENS, DUE = date(2027, 2, 1), date(2027, 4, 30)


def open_2027(services, opens=OPENS, due=DUE):
    with services.database.unit_of_work() as uow:
        cycle = open_cycle(uow, get_programme(uow), 2027, now=berlin(opens, 7, 0),
                           opens_on=opens, due_on=due)
        uow.commit()
        return cycle.id


def run_sweep(services, when, dry_run=False):
    with services.database.unit_of_work() as uow:
        result = sweep(uow, when, dry_run=dry_run)
        uow.commit()
    return result


def rungs_received(handler):
    return Counter(m["message"]["X-Reportcycles-Rung"] for m in handler.messages)


def submission_ids(services):
    with services.database.unit_of_work() as uow:
        return list(uow.session.scalars(select(Submission.id).order_by(Submission.id)))


def at_the_same_instant(action, copies=2):
    """Run ``action`` in several threads released together; return results, raise any error."""
    barrier = threading.Barrier(copies)
    results, errors = [], []

    def one():
        try:
            barrier.wait()
            results.append(action())
        except Exception as exc:  # re-raised in the test's thread below
            errors.append(exc)

    threads = [threading.Thread(target=one) for _ in range(copies)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    if errors:
        raise errors[0]
    assert len(results) == copies
    return results


def contact_email(services, submission_id):
    from workflow.models import Contact
    with services.database.unit_of_work() as uow:
        partner_id = uow.session.get(Submission, submission_id).partner_id
        return uow.session.scalars(select(Contact.email).where(
            Contact.partner_id == partner_id, Contact.role == "reporting")).one()


def submit(services, submission_id, when):
    with services.database.unit_of_work() as uow:
        apply_action(uow, submission_id, Action.SUBMIT, now=when, actor="partner")
        uow.commit()


def test_opening_a_cycle_plans_every_partner_ladder_in_one_go(services):
    seed_programme(services, partners=30)
    cycle_id = open_2027(services)
    with services.database.unit_of_work() as uow:
        assert uow.session.scalar(select(func.count()).select_from(Submission)) == 30
        per_rung = dict(uow.session.execute(
            select(Notification.rung, func.count()).group_by(Notification.rung)).all())
        assert per_rung == {"invitation": 30, "reminder-28": 30, "reminder-14": 30,
                            "reminder-7": 30, "reminder-2": 30, "overdue-3": 30,
                            "overdue-10": 30, "overdue-20": 30, "overdue-30": 30,
                            "deadline_notice": 1}
        assert uow.session.scalar(select(func.count()).select_from(Event)
                                  .where(Event.kind == "invited")) == 30
        status = cycle_status(uow, uow.session.get(Cycle, cycle_id))
        assert status.by_state["invited"] == 30


def test_a_year_rehearsed_sends_each_mail_once_and_stops_for_those_who_submit(services, smtp):
    _, handler = smtp
    seed_programme(services, partners=30)
    open_2027(services)

    # Opening morning: exactly one invitation each, with a personal link.
    first = run_sweep(services, berlin(OPENS))
    assert first.count("send") == 30
    assert rungs_received(handler) == {"invitation": 30}
    links = {m["message"].get_body(("plain",)).get_content().count("/r/") for m in handler.messages}
    assert links == {1}
    assert len({m["message"]["Message-ID"] for m in handler.messages}) == 30

    # The same instant again, and a later tick the same morning: nothing new.
    assert run_sweep(services, berlin(OPENS)).count("send") == 0
    assert run_sweep(services, berlin(OPENS, 9, 55)).count("send") == 0
    assert len(handler.messages) == 30

    ids = submission_ids(services)
    submitters = ids[:6]
    for sid in submitters:
        submit(services, sid, berlin(date(2027, 3, 1), 14))
    assert rungs_received(handler)["receipt"] == 6

    # Reminder 28 working days before the deadline goes to the 24 who have not submitted.
    handler.clear()
    result = run_sweep(services, berlin(date(2027, 3, 19)))
    assert rungs_received(handler) == {"reminder-28": 24}
    assert result.count("cancel") == 0
    recipients = {a for m in handler.messages for a in m["envelope_to"]}
    assert not recipients & {f"p{n}@example.org" for n in range(6)}

    # Jump from 14 days before to 5 days after the deadline: one catch-up mail each, not three.
    run_sweep(services, berlin(date(2027, 4, 12)))
    handler.clear()
    jump = run_sweep(services, berlin(date(2027, 5, 7)))
    partner_mails = [m for m in handler.messages
                     if m["message"]["X-Reportcycles-Rung"] != "deadline_notice"]
    assert rungs_received(handler) == {"overdue-3": 24, "deadline_notice": 1}
    assert len({m["message"]["To"] for m in partner_mails}) == 24
    assert jump.count("skip") == 48  # reminder-7 and reminder-2 of the 24 open partners
    notice = next(m["message"] for m in handler.messages
                  if m["message"]["X-Reportcycles-Rung"] == "deadline_notice")
    assert addresses(notice["To"]) == ["koordination@example.org"]

    # The ladder goes on: deputy in copy at +10, head of organisation at +20, coordinators at +30.
    handler.clear()
    run_sweep(services, berlin(date(2027, 5, 18)))
    assert rungs_received(handler) == {"overdue-10": 24}
    assert all(m["message"]["Cc"] for m in handler.messages)
    handler.clear()
    run_sweep(services, berlin(date(2027, 6, 2)))
    assert rungs_received(handler) == {"overdue-20": 24}
    assert all(addresses(m["message"]["To"])[0].startswith("h") for m in handler.messages)
    handler.clear()
    run_sweep(services, berlin(date(2027, 6, 16)))
    assert rungs_received(handler) == {"overdue-30": 24}
    with services.database.unit_of_work() as uow:
        flagged = uow.session.scalar(select(func.count()).select_from(Submission)
                                     .where(Submission.non_reporting.is_(True)))
        levels = set(uow.session.scalars(select(Submission.escalation_level)
                                         .where(Submission.id.not_in(submitters))))
        assert flagged == 24 and levels == {4}
        # Every ledger row is settled: sent, skipped or cancelled, none left behind.
        open_rows = uow.session.scalar(select(func.count()).select_from(Notification).where(
            Notification.status.in_(["planned", "queued", "sending"])))
        assert open_rows == 0
    # Over the whole year no partner address got the same rung twice.
    handler.clear()
    run_sweep(services, berlin(date(2027, 12, 1)))
    assert handler.messages == []


def test_mails_wait_for_the_morning_window(services, smtp):
    _, handler = smtp
    seed_programme(services, partners=3)
    open_2027(services)
    result = run_sweep(services, berlin(OPENS, 14, 0))
    assert result.count("send") == 0 and result.outside_window == ["nrw-vielfalt"]
    assert handler.messages == []
    # Saturday morning: still nothing. Monday 08:30 the missed invitation leaves, once.
    assert run_sweep(services, berlin(date(2027, 2, 6), 8, 30)).count("send") == 0
    assert run_sweep(services, berlin(date(2027, 2, 8), 8, 30)).count("send") == 3
    assert rungs_received(handler) == {"invitation": 3}


def test_deadline_on_a_holiday_rolls_to_the_next_working_day(services, smtp):
    _, handler = smtp
    seed_programme(services, partners=2)
    open_2027(services, due=date(2027, 5, 27))  # Fronleichnam
    run_sweep(services, berlin(OPENS))
    handler.clear()
    assert run_sweep(services, berlin(date(2027, 5, 27))).count("send") == 0
    run_sweep(services, berlin(date(2027, 5, 28)))
    # The holiday's sweep sent nothing; the next working day catches up with the latest reminder.
    assert rungs_received(handler) == {"reminder-2": 2, "deadline_notice": 1}
    body = next(m["message"] for m in handler.messages
                if m["message"]["X-Reportcycles-Rung"] == "deadline_notice")
    assert "28.05.2027" in body.get_body(("plain",)).get_content()


def test_reminders_right_after_the_dst_switch_leave_at_eight_local(services, smtp):
    _, handler = smtp
    seed_programme(services, partners=2)
    open_2027(services, due=date(2027, 4, 1))  # reminder-2 falls on Tuesday 30 March (summer time)
    run_sweep(services, berlin(OPENS))
    handler.clear()
    assert run_sweep(services, berlin(date(2027, 3, 30), 7, 59)).count("send") == 0
    assert run_sweep(services, berlin(date(2027, 3, 30), 8, 0)).count("send") == 2
    assert run_sweep(services, berlin(date(2027, 3, 30), 9, 59)).count("send") == 0
    assert rungs_received(handler) == {"reminder-2": 2}


def test_submitted_partner_gets_the_receipt_and_nothing_else(services, smtp):
    _, handler = smtp
    seed_programme(services, partners=1)
    open_2027(services)
    run_sweep(services, berlin(OPENS))
    [sid] = submission_ids(services)
    submit(services, sid, berlin(date(2027, 2, 10), 11))
    handler.clear()
    for day in (date(2027, 3, 19), date(2027, 4, 28), date(2027, 5, 7), date(2027, 6, 16)):
        run_sweep(services, berlin(day))
    assert rungs_received(handler) == {"deadline_notice": 1}


def test_reminder_queued_before_a_submission_is_cancelled_at_send_time(services, smtp):
    _, handler = smtp
    seed_programme(services, partners=1)
    open_2027(services)
    [sid] = submission_ids(services)
    services.database.dispatcher, real = _Holding(), services.database.dispatcher
    run_sweep(services, berlin(OPENS))  # queued, not yet sent
    submit(services, sid, berlin(OPENS, 9))
    services.database.dispatcher = real
    from tasks.scheduler import relay_outbox
    services.settings = dataclasses.replace(services.settings, send_lease_seconds=0,
                                            dispatch_lease_seconds=0)
    relay_outbox(services)
    assert rungs_received(handler) == {"receipt": 1}
    with services.database.unit_of_work() as uow:
        invitation = uow.session.scalars(select(Notification)
                                         .where(Notification.rung == "invitation")).one()
        assert invitation.status == NotificationStatus.CANCELLED


class _Holding:
    def send_notifications(self, ids, as_of=None):
        pass


def test_an_extension_replans_the_ladder_from_the_new_deadline(services, smtp):
    _, handler = smtp
    seed_programme(services, partners=2)
    open_2027(services)
    run_sweep(services, berlin(OPENS))
    first, second = submission_ids(services)
    with services.database.unit_of_work() as uow:
        extend_deadline(uow, first, date(2027, 6, 30), now=berlin(date(2027, 4, 1)),
                        actor="koordination", reason="Personalwechsel")
        uow.commit()
    handler.clear()
    run_sweep(services, berlin(date(2027, 5, 7)))
    to = Counter(m["message"]["To"] for m in handler.messages
                 if m["message"]["X-Reportcycles-Rung"] != "deadline_notice")
    extended_email, other_email = (contact_email(services, sid) for sid in (first, second))
    assert list(to) == [other_email]  # only the partner without an extension is overdue
    handler.clear()
    run_sweep(services, berlin(date(2027, 6, 28)))  # 2 working days before the new deadline
    extended = [m["message"]["X-Reportcycles-Rung"] for m in handler.messages
                if extended_email in m["envelope_to"]]
    assert extended == ["reminder-2"]
    with services.database.unit_of_work() as uow:
        with pytest.raises(InvalidInput, match="nach der bisherigen"):
            extend_deadline(uow, first, date(2027, 6, 1), now=berlin(date(2027, 6, 1)),
                            actor="koordination")


def test_two_sweeps_at_the_same_instant_send_nothing_twice(services, smtp):
    _, handler = smtp
    seed_programme(services, partners=40)
    open_2027(services)
    results = at_the_same_instant(lambda: run_sweep(services, berlin(OPENS)))
    assert sorted(r.count("send") for r in results) == [0, 40]
    assert rungs_received(handler) == {"invitation": 40}


def test_smtp_refusals_are_retried_or_recorded_as_failed(services, smtp):
    _, handler = smtp
    seed_programme(services, partners=2)
    open_2027(services)
    handler.fail_next = ["451 4.3.0 try again later"]
    handler.refuse_recipients = {"p1@example.org": "550 5.1.1 no such user"}
    run_sweep(services, berlin(OPENS))
    with services.database.unit_of_work() as uow:
        rows = list(uow.session.scalars(
            select(Notification).where(Notification.rung == "invitation")))
        assert sorted(str(n.status) for n in rows) == ["failed", "queued"]
        retry = next(n for n in rows if n.status == "queued")
        assert retry.attempts == 1 and "451" in retry.last_error and retry.not_before is not None
        failed = next(n for n in rows if n.status == "failed")
        assert "550" in failed.last_error
        assert uow.session.scalar(select(func.count()).select_from(Event)
                                  .where(Event.kind == "notification_failed")) == 1


def test_scheduler_ticks_open_the_year_once_even_when_two_run_at_once(services, smtp):
    from tasks.scheduler import tick
    _, handler = smtp
    seed_programme(services, partners=5)
    results = at_the_same_instant(lambda: tick(services, berlin(date(2027, 2, 1), 8, 15)))
    with services.database.unit_of_work() as uow:
        assert uow.session.scalar(select(func.count()).select_from(Submission)) == 5
    assert sorted(r.count("send") for r in results) == [0, 5]
    assert rungs_received(handler) == {"invitation": 5}
    # A later tick the same morning finds the year open and nothing new to send.
    assert tick(services, berlin(date(2027, 2, 1), 9, 0)).count("send") == 0


def test_a_scheduler_stopped_across_the_opening_day_opens_the_year_once_late(services, smtp):
    from tasks.scheduler import tick
    _, handler = smtp
    seed_programme(services, partners=3)
    # Down from Friday 29 January to Wednesday 3 February: the year opens at the first tick.
    tick(services, berlin(date(2027, 2, 3), 8, 5))
    tick(services, berlin(date(2027, 2, 3), 8, 10))  # the second scheduler, or the next tick
    with services.database.unit_of_work() as uow:
        [cycle] = uow.session.scalars(select(Cycle)).all()
        assert cycle.opens_on == date(2027, 2, 3) and cycle.year == 2027
        assert uow.session.scalar(select(func.count()).select_from(Event).where(
            Event.kind == "cycle_opened")) == 1
    assert rungs_received(handler) == {"invitation": 3}
