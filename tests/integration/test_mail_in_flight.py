"""A partner who submits while a reminder to them is being sent: no reminder leaves after the
submission's commit. On real PostgreSQL (its advisory locks carry the rule; SQLite has none) and
a real SMTP server (aiosmtpd) that holds a mail at DATA until the test lets it through."""
from __future__ import annotations

import asyncio
import logging
import threading
import time
from contextlib import contextmanager
from datetime import timedelta

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import select, text, update

from tests.integration.conftest import berlin
from tests.integration.test_delivery import DUE, OPENS, Holding, open_and_queue, rows, stack
from tests.integration.test_handover import sweep_holding
from tests.support.servers import RecordingHandler, free_port
from workflow.delivery import deliver
from workflow.models import Notification, Submission, utcnow
from workflow.states import Action
from workflow.submissions import apply_action
import workflow.uow
from workflow.uow import MAIL_LOCKS

__all__ = ["stack"]  # the fixture, shared with the delivery tests
pytestmark = pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)

REMINDER_DAY = berlin(DUE - timedelta(days=28))  # the "28 days left" reminder is due


class GatedHandler(RecordingHandler):
    """Takes each mail up to DATA, then holds it there while the gate is closed."""

    def __init__(self):
        super().__init__()
        self.gate = threading.Event()
        self.gate.set()
        self.at_data = threading.Event()

    async def handle_DATA(self, server, session, envelope):
        self.at_data.set()
        while not self.gate.is_set():
            await asyncio.sleep(0.01)
        return await super().handle_DATA(server, session, envelope)

    def rungs(self) -> list[str]:
        with self.lock:
            return [m["message"]["X-Reportcycles-Rung"] for m in self.messages]


@contextmanager
def gated_smtp():
    handler = GatedHandler()
    controller = Controller(handler, hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        yield controller, handler
    finally:
        handler.gate.set()
        controller.stop()


def invited_and_reminder_due(services) -> tuple[int, int]:
    """One partner invited; its first reminder due and handed over, not yet delivered."""
    [invitation] = open_and_queue(services, partners=1)
    assert deliver(services.mail, [invitation], as_of=berlin(OPENS)).sent == [invitation]
    _, [reminder] = sweep_holding(services, REMINDER_DAY)
    return reminder, rows(services, [reminder])[reminder].submission_id


def state_of(services, submission_id) -> str:
    with services.database.unit_of_work() as uow:
        return str(uow.session.get(Submission, submission_id).state)


def mail_locks_held(services) -> int:
    with services.database.unit_of_work() as uow:
        return uow.session.scalar(text(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND classid = :space"
        ), {"space": MAIL_LOCKS})


def submit(services, submission_id):
    with services.database.unit_of_work() as uow:
        apply_action(uow, submission_id, Action.SUBMIT, now=REMINDER_DAY, actor="partner")
        uow.commit()


def in_thread(target, *args, **kwargs) -> tuple[threading.Thread, dict]:
    outcome = {}

    def run():
        outcome["result"] = target(*args, **kwargs)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, outcome


def reminder_on_the_wire(services, handler):
    """The reminder held at the server's DATA, its delivery in a thread."""
    reminder, submission_id = invited_and_reminder_due(services)
    handler.gate.clear()
    handler.at_data.clear()
    sending, sent = in_thread(deliver, services.mail, [reminder], as_of=REMINDER_DAY)
    assert handler.at_data.wait(10)
    return reminder, submission_id, sending, sent


def test_a_partner_who_submits_while_their_reminder_is_being_sent_waits_for_it(stack):
    with gated_smtp() as (server, handler):
        services = stack(port=server.port)
        reminder, submission_id, sending, sent = reminder_on_the_wire(services, handler)
        submitting, _ = in_thread(submit, services, submission_id)
        time.sleep(0.5)  # time enough to commit, were it not waiting
        # While the reminder is at the server the submission has not committed: it waits.
        assert submitting.is_alive() and state_of(services, submission_id) == "invited"
        handler.gate.set()
        # At once: its events and links refer to the report, which the waiting change has
        # locked FOR NO KEY UPDATE (under FOR UPDATE the worker's record would wait on it).
        submitting.join(3)
        sending.join(3)
        assert not sending.is_alive() and not submitting.is_alive()
        assert sent["result"].sent == [reminder]
        assert state_of(services, submission_id) == "submitted"
        assert handler.rungs() == ["invitation", "reminder-28", "receipt"]
    assert mail_locks_held(services) == 0  # the worker kept none after its batch


def test_a_reminder_whose_partner_is_submitting_right_now_is_passed_and_then_cancelled(stack):
    """The submission is being written when the worker comes: the worker does not wait for it
    (the submission might wait for the worker), passes the reminder, and the next delivery
    finds the report submitted."""
    with gated_smtp() as (server, handler):
        services = stack(port=server.port)
        reminder, submission_id = invited_and_reminder_due(services)
        with services.database.unit_of_work() as uow:  # a retry, say: queued, due now
            uow.session.execute(update(Notification).where(Notification.id == reminder)
                                .values(status="queued", not_before=utcnow()))
            uow.commit()
        with services.database.unit_of_work() as submitting:
            apply_action(submitting, submission_id, Action.SUBMIT, now=REMINDER_DAY,
                         actor="partner")
            delivering, delivered = in_thread(deliver, services.mail, [reminder],
                                              as_of=REMINDER_DAY)
            delivering.join(10)
            assert not delivering.is_alive()
            assert delivered["result"].passed == [reminder] and not delivered["result"].sent
            submitting.commit()
        report = deliver(services.mail, [reminder], as_of=REMINDER_DAY)
        assert report.cancelled == [reminder]
        assert handler.rungs() == ["invitation", "receipt"]
    with services.database.unit_of_work() as uow:
        assert uow.session.scalar(select(Notification.status).where(
            Notification.id == reminder)) == "cancelled"
    assert mail_locks_held(services) == 0


def test_a_mail_stuck_at_a_slow_server_holds_the_submission_up_only_so_long(stack, monkeypatch,
                                                                          caplog):
    monkeypatch.setattr(workflow.uow, "MAIL_WAIT_SECONDS", 0.5)
    caplog.set_level(logging.WARNING, logger="workflow.uow")
    with gated_smtp() as (server, handler):
        services = stack(port=server.port)
        reminder, submission_id, sending, sent = reminder_on_the_wire(services, handler)
        started = time.monotonic()
        # (Its receipt, sent once it commits, waits at the gate like the reminder.)
        submitting, _ = in_thread(submit, services, submission_id)
        while state_of(services, submission_id) != "submitted":
            assert time.monotonic() - started < 10
            time.sleep(0.05)
        assert time.monotonic() - started >= 0.5
        assert f"a mail to submission {submission_id} was still being sent after 0.5 s" in (
            caplog.text)
        handler.gate.set()
        sending.join(10)
        submitting.join(10)
        assert sent["result"].sent == [reminder]
        assert sorted(handler.rungs()) == ["invitation", "receipt", "reminder-28"]


def test_a_partner_whose_mail_is_further_back_in_the_batch_is_let_through_within_a_second(
        stack, smtp):
    """Eight invitations in one batch to a server that takes 0.4 s a mail. A partner whose mail
    has been recorded changes at once (its lock went with the record); the one whose mail is
    last does not wait for the seven before it: the worker lets the change through at its next
    refresh and hands that mail back unsent, and the next claim cancels it."""
    services = stack()
    ids = open_and_queue(services, partners=8)
    submission_of = {i: n.submission_id for i, n in rows(services, ids).items()}
    first, last = submission_of[ids[1]], submission_of[ids[-1]]
    services.database.dispatcher = Holding()  # receipts stay in the outbox: timed are the waits
    handler = smtp[1]
    handler.delay = 0.4
    sending, sent = in_thread(deliver, services.mail, ids, as_of=REMINDER_DAY)
    while len(handler.messages) < 3:  # the second mail is recorded: the third has left
        assert sending.is_alive()
        time.sleep(0.02)
    started = time.monotonic()
    submit(services, first)
    assert time.monotonic() - started < 0.3
    started = time.monotonic()
    submit(services, last)
    assert time.monotonic() - started < 1.0 + 2 * 0.4  # a refresh, at most two mails
    sending.join(10)
    report = sent["result"]
    assert report.passed == [ids[-1]] and len(report.sent) == 7
    received = {m["envelope_to"][0] for m in handler.messages
                if m["message"]["X-Reportcycles-Rung"] == "invitation"}
    assert len(received) == 7
    assert deliver(services.mail, [ids[-1]], as_of=REMINDER_DAY).cancelled == [ids[-1]]
    assert mail_locks_held(services) == 0
