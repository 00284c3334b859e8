"""The sweep hands due mails to the workers without moving their ledger rows: a narrow hand-over
row each, the ledger row planned until a worker claims it. What that promises, on real
PostgreSQL and SQLite and a real SMTP server (aiosmtpd)."""
from __future__ import annotations

from datetime import date, timedelta

from sqlalchemy import select, update

from tasks.scheduler import relay_outbox
from tests.integration.conftest import berlin, seed_programme
from tests.integration.test_delivery import (ALL_DAY, OPENS, Holding, message_ids, open_and_queue,
                                             open_short_cycle, rows, stack, statuses)
from workflow.coordination import pause_reminders, resume_reminders
from workflow.cycles import get_programme, open_cycle
from workflow.delivery import deliver, outbox_state
from workflow.models import Handover, Notification, Submission
from workflow.sweep import sweep

__all__ = ["stack"]  # the fixture, shared with the delivery tests


class EmptyBroker(Holding):
    """A broker that says it holds nothing: it lost its queue (Redis restarted empty)."""

    def backlog(self):
        return 0


def handed_over(services) -> set[int]:
    """The planned rows that are handed over."""
    with services.database.unit_of_work() as uow:
        return set(uow.session.scalars(
            select(Handover.notification_id)
            .join(Notification, Notification.id == Handover.notification_id)
            .where(Notification.status == "planned")))


def hand_overs(services) -> int:
    with services.database.unit_of_work() as uow:
        return len(uow.session.scalars(select(Handover.notification_id)).all())


def sweep_holding(services, at):
    """A sweep whose dispatches are kept for the test to see."""
    real, services.database.dispatcher = services.database.dispatcher, Holding()
    with services.database.unit_of_work() as uow:
        result = sweep(uow, at)
        uow.commit()
    held, services.database.dispatcher = services.database.dispatcher, real
    return result, held.ids


def test_a_due_mail_is_handed_over_once_and_sent_straight_from_planned(stack, smtp):
    services = stack()
    ids = open_and_queue(services, partners=3)
    assert len(ids) == 3
    assert statuses(services, rung="invitation") == {"planned": 3}
    assert handed_over(services) == set(ids)
    with services.database.unit_of_work() as uow:
        assert outbox_state(uow).handed_over == 3
    again, dispatched = sweep_holding(services, berlin(OPENS, 9))
    assert again.count("send") == 0 and dispatched == []  # the next sweep passes them by
    report = deliver(services.mail, ids, as_of=berlin(OPENS, 9))
    assert sorted(report.sent) == sorted(ids)
    assert statuses(services, rung="invitation") == {"sent": 3}
    # The claim notes when each left: the minimum gap counts from it while it is being sent.
    assert all(row.dispatched_at is not None for row in rows(services, ids).values())
    assert len(message_ids(smtp[1])) == 3


def test_a_worker_claims_no_planned_row_the_sweep_did_not_hand_over(stack, smtp):
    services = stack()
    open_and_queue(services, partners=1)
    with services.database.unit_of_work() as uow:
        reminder = uow.session.scalar(select(Notification.id).where(
            Notification.rung != "invitation", Notification.submission_id.is_not(None),
            Notification.status == "planned").order_by(Notification.due_at).limit(1))
    report = deliver(services.mail, [reminder], as_of=berlin(OPENS, 9))
    assert report.passed == [reminder] and not report.sent
    assert rows(services, [reminder])[reminder].status == "planned"
    assert smtp[1].messages == []


def test_the_relay_hands_out_again_what_a_broker_that_lost_its_queue_never_delivered(stack,
                                                                                   smtp):
    services = stack(DISPATCH_LEASE_SECONDS=0)
    ids = open_and_queue(services, partners=3)
    services.database.dispatcher = Holding()  # a broker that cannot tell what it holds
    assert relay_outbox(services) == []  # the sending lease (10 min) has not run out
    services.database.dispatcher = EmptyBroker()
    assert sorted(relay_outbox(services)) == sorted(ids)
    assert sorted(services.database.dispatcher.ids) == sorted(ids)
    assert statuses(services, rung="invitation") == {"planned": 3}


def test_a_mail_held_at_send_time_goes_back_to_the_sweep_until_the_pause_ends(stack, smtp):
    services = stack(DISPATCH_LEASE_SECONDS=0)
    [invitation] = open_and_queue(services, partners=1)
    submission_id = rows(services, [invitation])[invitation].submission_id
    with services.database.unit_of_work() as uow:
        pause_reminders(uow, submission_id, now=berlin(OPENS, 9), actor="koordination")
        uow.commit()
    report = deliver(services.mail, [invitation], as_of=berlin(OPENS, 9))
    assert report.held == [invitation] and handed_over(services) == set()
    services.database.dispatcher = EmptyBroker()
    assert relay_outbox(services) == []  # taken back: not handed out again while paused
    result, dispatched = sweep_holding(services, berlin(OPENS, 10))
    assert result.count("send") == 0 and dispatched == []
    with services.database.unit_of_work() as uow:
        resume_reminders(uow, submission_id, now=berlin(OPENS, 11), actor="koordination")
        uow.commit()
    result, dispatched = sweep_holding(services, berlin(OPENS, 11))
    assert dispatched == [invitation]
    assert deliver(services.mail, [invitation], as_of=berlin(OPENS, 11)).sent == [invitation]
    assert len(message_ids(smtp[1])) == 1


def test_a_submission_cancels_its_handed_over_invitation_before_a_worker_claims_it(stack, smtp):
    from workflow.states import Action
    from workflow.submissions import apply_action
    services = stack()
    [invitation] = open_and_queue(services, partners=1)
    submission_id = rows(services, [invitation])[invitation].submission_id
    with services.database.unit_of_work() as uow:
        apply_action(uow, submission_id, Action.SUBMIT, now=berlin(OPENS, 10), actor="partner")
        uow.commit()
    assert rows(services, [invitation])[invitation].status == "cancelled"
    report = deliver(services.mail, [invitation], as_of=berlin(OPENS, 10))
    assert report.passed == [invitation]
    assert [m["message"]["X-Reportcycles-Rung"] for m in smtp[1].messages] == ["receipt"]
    # The relay lets go of hand-overs whose row is no longer planned.
    relay_outbox(services)
    assert hand_overs(services) == 0


def test_the_minimum_gap_counts_a_mail_handed_over_and_not_yet_sent(stack, smtp):
    services = stack()
    open_short_cycle(services)
    monday = date(2027, 2, 1)
    result, [invitation] = sweep_holding(services, berlin(monday))
    assert result.count("send") == 1  # handed over; no worker has taken it (a long backlog)
    # Wednesday: the 7-days reminder is due, the invitation still waits for a worker.
    result, dispatched = sweep_holding(services, berlin(monday + timedelta(days=2)))
    assert result.count("send") == 0 and result.held == 1 and dispatched == []


def test_a_replanned_rung_loses_the_hand_over_it_had_before_it_was_cancelled(stack, smtp):
    from workflow.ledger import plan_submission_rung
    from workflow.policy import PlannedRung
    services = stack()
    [invitation] = open_and_queue(services, partners=1, policy=ALL_DAY)
    with services.database.unit_of_work() as uow:
        reminder = uow.session.scalars(select(Notification).where(
            Notification.rung != "invitation", Notification.submission_id.is_not(None))
            .order_by(Notification.due_at).limit(1)).one()
        submission = uow.session.get(Submission, reminder.submission_id)
        rung = PlannedRung(rung=reminder.rung, email=reminder.email, audience=reminder.audience,
                           seq=reminder.seq, send_on=reminder.due_at.date(),
                           escalation_level=reminder.escalation_level,
                           flags_non_reporting=reminder.flags_non_reporting,
                           due_at=reminder.due_at)
        uow.session.add(Handover(notification_id=reminder.id, handed_at=berlin(OPENS, 8)))
        uow.session.execute(update(Notification).where(Notification.id == reminder.id)
                            .values(status="cancelled"))
        uow.commit()
    with services.database.unit_of_work() as uow:
        submission = uow.session.get(Submission, submission.id)
        plan_submission_rung(uow, submission, rung, berlin(OPENS, 9))
        uow.commit()
    assert rows(services, [reminder.id])[reminder.id].status == "planned"
    assert handed_over(services) == {invitation}  # the sweep decides about it again


def test_escalating_now_takes_the_rung_after_the_one_already_handed_over(stack, smtp):
    from workflow.coordination import escalate_now
    services = stack()
    [invitation] = open_and_queue(services, partners=1)
    submission_id = rows(services, [invitation])[invitation].submission_id
    with services.database.unit_of_work() as uow:
        escalated = escalate_now(uow, submission_id, now=berlin(OPENS, 9), actor="koordination")
        escalated_id, rung = escalated.id, escalated.rung
        uow.commit()  # sent at once: these services deliver in the committing process
    assert escalated_id != invitation and rung != "invitation"
    assert [m["message"]["X-Reportcycles-Rung"] for m in smtp[1].messages] == [rung]
    assert handed_over(services) == {invitation}  # still on its way, once


def test_the_partner_page_shows_a_handed_over_mail_as_on_its_way(stack, smtp):
    from workflow.partner_page import partner_page
    services = stack()
    [invitation] = open_and_queue(services, partners=1)
    submission_id = rows(services, [invitation])[invitation].submission_id
    with services.database.unit_of_work() as uow:
        page = partner_page(uow, submission_id, language="de", now=berlin(OPENS, 9))
    shown = {mail.id: mail.status for mail in page.planned}
    assert shown[invitation] == "queued"  # "in Versand", not "geplant" with a past due time
    assert {status for mail_id, status in shown.items() if mail_id != invitation} == {"planned"}


# Every combination of what still_owed reads of a submission: the sweep reads a submission only
# when one of these is set, and must decide exactly as still_owed does with all of them read.
STATES = ("invited", "opened", "draft", "returned", "submitted", "accepted", "exempted")
PAUSES = (None, date(2027, 1, 15), date(2027, 3, 1))  # none, over, still running on Feb 1


def test_the_sweep_decides_as_still_owed_does_whatever_the_submission_holds(stack, smtp):
    import itertools

    from workflow.ledger import Verdict, still_owed
    services = stack()
    combinations = list(itertools.product(STATES, PAUSES, (False, True)))
    seed_programme(services, partners=len(combinations), policy=ALL_DAY)
    with services.database.unit_of_work() as uow:
        open_cycle(uow, get_programme(uow), 2027, now=berlin(OPENS, 7), opens_on=OPENS,
                   due_on=date(2027, 4, 30))
        uow.commit()
    with services.database.unit_of_work() as uow:
        ids = list(uow.session.scalars(select(Submission.id).order_by(Submission.id)))
        for submission_id, (state, paused_until, paused) in zip(ids, combinations):
            uow.session.execute(update(Submission).where(Submission.id == submission_id).values(
                state=state, paused_until=paused_until, reminders_paused=paused))
        uow.commit()
    with services.database.unit_of_work() as uow:  # a dry run: decides, changes nothing
        decided = {m.submission_id: m.action for m in sweep(uow, berlin(OPENS), dry_run=True).mails
                   if m.submission_id is not None}
    expected = {}
    for submission_id, (state, paused_until, paused) in zip(ids, combinations):
        owed = still_owed(needs_open_report=True, state=state, paused_until=paused_until,
                          part_completed=False, today=OPENS, reminders_paused=paused)
        if owed.verdict is not Verdict.WAIT:
            expected[submission_id] = "send" if owed.verdict is Verdict.SEND else "cancel"
    assert decided == expected
    assert set(expected.values()) == {"send", "cancel"} and len(expected) < len(ids)
