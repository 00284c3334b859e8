"""Delivering ledger rows: claim, re-check, send, record – one mail at a time – and the relay.

A batch is claimed in one transaction under a fencing token. Each mail is recorded in its own
transaction as soon as the server accepted it, and that transaction renews the claim on the rest
of the batch, so a slow batch never loses its claim and a killed worker repeats at most the one
mail in flight. Only the holder of a claim may record its outcome.

When the mail server cannot be reached or refuses the login, no row is to blame: the outbox as a
whole pauses (with a growing back-off, at most 15 minutes) and the claimed rows go back to the
queue without losing an attempt. An outage of any length loses nothing.
"""
from __future__ import annotations

import json
import logging
import re
import secrets
import time
from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Protocol

from sqlalchemy import (JSON, Boolean, String, and_, bindparam, case, cast, delete, exists,
                        func, literal, or_, select, text, update)

from workflow.composition import Batch, Letterhead, OutgoingMail, compose
from workflow.events import EventKind
from workflow.ledger import (LedgerMove, Verdict, apply, hand_over_again, handed_over, sources,
                             still_owed, take_back, target, window_bound)
from workflow.models import (PLANNED_ROWS, AccessToken, Contact, Event, Handover, Notification,
                             NotificationStatus, Outbox, Partner, Submission, utcnow)
from workflow.policy import in_send_window, next_window_start
from workflow.redaction import blank_personal_links
from workflow.uow import Database, Recorder, UnitOfWork, release_mail_lock

log = logging.getLogger(__name__)
EMAIL_ADDRESS = re.compile(r"[\w.+-]+@[\w-]+(\.[\w-]+)+")  # kept out of logs
OUTBOX_ID = 1
LOCK_REFRESH_SECONDS = 1.0
MAX_PAUSE = timedelta(minutes=15)


class TransientMailError(Exception):
    """The server said 'try later' (4xx) for this mail; ``code``: its reply code, if any."""

    def __init__(self, message: str, code: int | None = None):
        super().__init__(message)
        self.code = code


# Replies that mean "you are sending too fast": the throttle slows down.
TOO_FAST = frozenset({421, 451, 452})


class PermanentMailError(Exception):
    """The server refused this mail for good (5xx); ``refused``: the addresses it refused."""

    def __init__(self, message: str, refused: dict[str, str] | None = None):
        super().__init__(message)
        self.refused = refused or {}


class ServerUnavailable(Exception):
    """No mail can go now: no connection, the login refused, or the server is shutting down."""

    def __init__(self, message: str, code: int | None = None):
        super().__init__(message)
        self.code = code


# A connection that waited this long for the throttle may have been dropped by the server.
IDLE_RECONNECT_SECONDS = 30


class MailConnection(Protocol):
    def send(self, mail: OutgoingMail) -> dict[str, str]:
        """Hand one mail to the server; returns the recipients refused while others took it."""


class MailTransport(Protocol):
    def connect(self) -> AbstractContextManager[MailConnection]: ...


class Throttle(Protocol):
    """A sending rate shared by every worker (a token bucket)."""

    def acquire(self) -> None:
        """Wait until one more mail may leave."""

    def slow_down(self) -> None:
        """The server said we send too fast."""


class NoThrottle:
    def acquire(self) -> None:
        pass

    def slow_down(self) -> None:
        pass


@dataclass
class MailService:
    """What delivering needs, assembled once by the composition root."""

    database: Database
    transport: MailTransport
    letterhead: Letterhead
    lease_seconds: int = 600
    max_attempts: int = 8
    throttle: Throttle = field(default_factory=NoThrottle)


@dataclass
class DeliveryReport:
    sent: list[int] = field(default_factory=list)
    cancelled: list[int] = field(default_factory=list)
    retrying: list[int] = field(default_factory=list)
    deferred: list[int] = field(default_factory=list)  # outside the window or server away
    held: list[int] = field(default_factory=list)  # paused by the partner: back to the sweep
    failed: list[int] = field(default_factory=list)
    passed: list[int] = field(default_factory=list)  # done, not yet due or claimed elsewhere
    lost: list[int] = field(default_factory=list)  # claim taken over while sending


def backoff(attempts: int) -> timedelta:
    """1, 2, 4 … minutes, at most an hour."""
    return timedelta(minutes=min(60, 2 ** min(10, max(0, attempts - 1))))


def pause_length(failures: int) -> timedelta:
    """30 s, 1, 2, 4 … minutes, at most 15: a server back after a weekend is found quickly."""
    return min(MAX_PAUSE, timedelta(seconds=30 * 2 ** min(10, max(0, failures - 1))))


def deliver(service: MailService, ids: Sequence[int], as_of: datetime | None = None
            ) -> DeliveryReport:
    """Send the given ledger rows over one connection, recording each as it leaves, in the order
    of their ids: of a batch whose worker died, only the first row still being sent can have
    been in flight.

    From before the claim until each mail is recorded, the worker holds the mail lock of the
    submission it goes to (``uow.MAIL_LOCKS``): a row whose submission is being changed right
    now is passed, for the relay to hand out again after that change; a partner who submits
    meanwhile waits for the mail on the wire, or, if theirs is further back in the batch, at
    most ``LOCK_REFRESH_SECONDS`` until the worker lets the change through and hands that mail
    back unsent."""
    ids = sorted(set(ids))
    report = DeliveryReport()
    if outbox_paused_until(service.database, utcnow()) is not None:
        report.passed.extend(ids)  # the relay hands them out again when the pause ends
        return report
    recorder = service.database.recorder()
    connection_cm = connection = None
    try:
        locks, busy = recorder.hold_mail_locks(ids) if recorder.single_statements else ({}, set())
        token, mails = _claim(service, ids, as_of, report, busy)
        owned = {notification_id for notification_id, _ in mails}
        recorder.release_mail_locks([locks.pop(i) for i in list(locks) if i not in owned])
        # A mail's record renews the claim once a sixth of the lease has passed: far from expiry.
        renew_every = timedelta(seconds=service.lease_seconds / 6)
        renewed_at, resumed = utcnow(), False
        refreshed = time.monotonic()
        for position, (notification_id, mail) in enumerate(mails):
            if locks and time.monotonic() - refreshed >= LOCK_REFRESH_SECONDS:
                # A change waiting for one of the unsent mails' reports gets its lock now; that
                # mail goes back to the outbox unsent, for the claim after the change to decide.
                refreshed = time.monotonic()
                waited_for = recorder.refresh_mail_locks(
                    {i: locks[i] for i, _ in mails[position:] if i in owned and i in locks})
                if waited_for:
                    for i in waited_for:
                        locks.pop(i)
                    owned -= waited_for
                    _hand_back(service, token, sorted(waited_for), report)
            if notification_id not in owned:
                if notification_id not in report.passed:
                    report.lost.append(notification_id)
                _let_go(recorder, locks, [notification_id])
                continue
            rest = [i for i, _ in mails[position + 1:] if i in owned]
            try:
                asked = time.monotonic()
                service.throttle.acquire()
                if connection is not None and time.monotonic() - asked > IDLE_RECONNECT_SECONDS:
                    _close(connection_cm)
                    connection_cm = connection = None
                if connection is None:
                    connection_cm = service.transport.connect()
                    connection = connection_cm.__enter__()
                refused = connection.send(mail)
            except ServerUnavailable as exc:
                if exc.code in TOO_FAST:
                    service.throttle.slow_down()
                if connection_cm is not None:
                    _close(connection_cm)
                connection_cm = connection = None
                _release(service, token, [notification_id, *rest], str(exc), report)
                break
            except PermanentMailError as exc:
                _record_failure(service, token, notification_id, mail, str(exc), exc.refused,
                                permanent=True, report=report)
                _let_go(recorder, locks, [notification_id])
            except TransientMailError as exc:
                if exc.code in TOO_FAST:
                    service.throttle.slow_down()
                _record_failure(service, token, notification_id, mail, str(exc), {},
                                permanent=False, report=report)
                _let_go(recorder, locks, [notification_id])
                _close(connection_cm)  # the connection may be broken: start afresh
                connection_cm = connection = None
            else:
                renew = utcnow() - renewed_at >= renew_every
                recorded, still_ours = _record_sent(
                    service, recorder, token, notification_id, mail, refused,
                    rest if renew else [], resume=not resumed, lock=locks.get(notification_id))
                if recorder.retried:  # a new connection: the lost one's locks are taken again
                    refreshed = float("-inf")
                if recorded:
                    locks.pop(notification_id, None)  # let go of with its record
                    report.sent.append(notification_id)
                else:
                    _let_go(recorder, locks, [notification_id])
                    report.lost.append(notification_id)
                    log.warning("mail %s left after its claim was taken over: a second copy "
                                "with Message-ID %s is possible", notification_id,
                                mail.message_id)
                resumed = True
                if renew:
                    _let_go(recorder, locks, [i for i in rest if i not in still_ours])
                    owned, renewed_at = still_ours, utcnow()
    finally:
        if connection_cm is not None:
            _close(connection_cm)
        recorder.close()  # and with it every lock still held
    return report


def _let_go(recorder: Recorder, locks: dict[int, int], ids: Sequence[int]):
    """Release the mail locks of rows that will not be sent in this batch."""
    recorder.release_mail_locks([locks.pop(i) for i in ids if i in locks])


def _hand_back(service: MailService, token: str, ids: list[int], report: DeliveryReport):
    """Claimed rows whose report a change is waiting for go back to the outbox unsent; the relay
    hands them out again, and the claim after the change decides."""
    with service.database.unit_of_work() as uow:
        _back_to_the_outbox(uow, token, ids, not_before=utcnow())
        uow.commit()
    report.passed.extend(ids)


def _back_to_the_outbox(uow: UnitOfWork, token: str, ids: list[int], *, not_before: datetime,
                        **values):
    """Our claimed rows wait in the outbox again, unsent and without losing an attempt."""
    uow.session.execute(
        update(Notification)
        .where(Notification.id.in_(ids), Notification.claim_token == token,
               Notification.status.in_(sources(LedgerMove.DEFER)))
        .values(status=target(LedgerMove.DEFER), not_before=not_before, dispatched_at=None,
                **values)
        .execution_options(synchronize_session=False))


def _close(connection_cm):
    try:
        connection_cm.__exit__(None, None, None)
    except Exception:  # closing a broken connection must not hide the outcome already recorded
        log.debug("closing the mail connection failed", exc_info=True)


def _claim(service: MailService, ids: Sequence[int], as_of: datetime | None,
           report: DeliveryReport, busy: set[int]) -> tuple[str, list[tuple[int, OutgoingMail]]]:
    """Lock the rows, re-check each, compose it, and mark it 'sending' under one token; pass
    the ``busy`` ones (their submission is being changed)."""
    wall = utcnow()
    instant = as_of or wall
    token = secrets.token_hex(16)
    mails, links = [], []
    with service.database.unit_of_work() as uow:
        rows = {n.id: n for n in uow.session.scalars(
            select(Notification).where(Notification.id.in_(list(ids)))
            .with_for_update(skip_locked=True))}
        handed = handed_over(uow, [n.id for n in rows.values()
                                   if n.status == NotificationStatus.PLANNED])
        claimable, held, in_flight = [], [], {}
        for notification_id in ids:
            notification = None if notification_id in busy else rows.get(notification_id)
            if notification is None or not _claimable(service, uow, notification, wall, handed,
                                                      in_flight, report):
                if notification_id not in report.failed:
                    report.passed.append(notification_id)
                continue
            claimable.append(notification)
        batch = Batch(uow, claimable)
        for notification in claimable:
            submission, part = batch.submission_of(notification), batch.part_of(notification)
            cycle = batch.cycles[notification.cycle_id]
            policy = batch.policy(cycle)
            owed = still_owed(
                needs_open_report=notification.needs_open_report,
                state=submission.state if submission else None,
                paused_until=submission.paused_until if submission else None,
                reminders_paused=cycle.reminders_paused or bool(
                    submission and submission.reminders_paused),
                part_completed=part is not None and part.completed_at is not None,
                today=instant.astimezone(policy.zone).date())
            if owed.verdict is Verdict.CANCEL:
                apply(notification, LedgerMove.CANCEL, last_error=f"cancelled at send time: "
                                                              f"{owed.reason}")
                _event(uow, notification, EventKind.NOTIFICATION_CANCELLED, wall,
                       reason=owed.reason)
                report.cancelled.append(notification.id)
                continue
            if owed.verdict is Verdict.WAIT:
                apply(notification, LedgerMove.HOLD, dispatched_at=None)
                held.append(notification.id)
                continue
            if window_bound(notification) and not in_send_window(policy, instant):
                apply(notification, LedgerMove.DEFER, dispatched_at=None,
                      not_before=next_window_start(policy, instant))
                report.deferred.append(notification.id)
                continue
            try:
                mail, link_row = compose(batch, service.letterhead, notification, instant)
            except Exception as exc:
                # No retry can fix a mail that cannot be composed (an unknown kind, a broken
                # template, no address left): it fails at once and the coordinators are told.
                log.exception("composing mail %s failed", notification.id)
                _fail(uow, notification, f"cannot compose: {exc!r}", wall, report)
                continue
            if link_row is not None:
                links.append(link_row)
            mails.append((notification.id, mail))
        take_back(uow, held)  # back to the sweep, which waits for the pause to end
        report.held.extend(held)
        # The claims and links of the whole batch in two statements, without loading them back.
        connection = uow.session.connection()
        if links:
            connection.execute(ACCESS_TOKENS.insert(), links)
        if mails:
            connection.execute(CLAIM_ROW, [
                {"notification_id": notification_id, "token": token, "wall": wall,
                 "claimed_message_id": mail.message_id} for notification_id, mail in mails])
        uow.commit()
    return token, mails


def _claimable(service: MailService, uow: UnitOfWork, notification: Notification,
               wall: datetime, handed: set[int], in_flight: dict[str, int],
               report: DeliveryReport) -> bool:
    if notification.status == NotificationStatus.PLANNED:
        return notification.id in handed  # the sweep found it due and handed it over
    if notification.status == NotificationStatus.QUEUED:
        return notification.not_before is None or notification.not_before <= wall
    if (notification.status != NotificationStatus.SENDING or notification.claimed_at is None
            or notification.claimed_at >= wall - timedelta(seconds=service.lease_seconds)):
        return False
    # The claim outlived its lease: its worker died mid-send. Its batch went in the order of the
    # ids and each mail was recorded as it left, so of the rows still being sent under that claim
    # only the first can have been in flight: it alone may have reached the server (a possible
    # duplicate) and counts as an attempt, so a mail that kills every worker that sends it is
    # parked after max_attempts. The others were never tried.
    token = notification.claim_token
    if token not in in_flight:
        in_flight[token] = uow.session.scalar(select(func.min(Notification.id)).where(
            Notification.claim_token == token, Notification.status == NotificationStatus.SENDING))
    if notification.id != in_flight[token]:
        return True
    notification.takeovers += 1
    notification.attempts += 1
    if notification.attempts >= service.max_attempts:
        _fail(uow, notification, f"the worker sending it stopped {notification.takeovers} times",
              wall, report)
        return False
    return True


def _event(uow: UnitOfWork, notification: Notification, kind: EventKind, at: datetime, **payload):
    uow.session.add(Event(cycle_id=notification.cycle_id,
                          submission_id=notification.submission_id, kind=kind, at=at,
                          actor="worker", payload={"rung": notification.rung, **payload}))


def _fail(uow: UnitOfWork, notification: Notification, error: str, wall: datetime,
          report: DeliveryReport):
    apply(notification, LedgerMove.FAIL, last_error=error[:2000])
    _event(uow, notification, EventKind.NOTIFICATION_FAILED, wall, error=error[:500],
           attempts=notification.attempts)
    report.failed.append(notification.id)
    log.warning("mail %s failed for good and needs a coordinator (`reportcycles outbox "
                "retry`): %s", notification.id, EMAIL_ADDRESS.sub("<address>", error))


NOTIFICATIONS, EVENTS, ACCESS_TOKENS = (Notification.__table__, Event.__table__,
                                        AccessToken.__table__)


def _may(move: LedgerMove):
    """The row's status allows ``move``: its source statuses as fixed bound values, not an
    expanding IN, which neither executemany nor a prepared statement can take."""
    return or_(*(NOTIFICATIONS.c.status == status for status in sources(move)))


# The hot path's statements, built once: claiming a batch, recording one mail.
CLAIM_ROW = (
    NOTIFICATIONS.update()
    .where(NOTIFICATIONS.c.id == bindparam("notification_id"), _may(LedgerMove.CLAIM))
    .values(status=target(LedgerMove.CLAIM), claimed_at=bindparam("wall"),
            claim_token=bindparam("token"), message_id=bindparam("claimed_message_id"),
            # When it left for the minimum gap between two mails (a handed-over row has none).
            dispatched_at=func.coalesce(NOTIFICATIONS.c.dispatched_at, bindparam("wall"))))
RECORD_SENT = (
    NOTIFICATIONS.update()
    .where(NOTIFICATIONS.c.id == bindparam("notification_id"),
           NOTIFICATIONS.c.claim_token == bindparam("token"), _may(LedgerMove.RECORD_SENT))
    .values(status=target(LedgerMove.RECORD_SENT), sent_at=bindparam("wall"), last_error=None,
            refused=bindparam("refused"), sent_subject=bindparam("sent_subject"),
            sent_text=bindparam("sent_text"), sent_to=bindparam("sent_to", type_=JSON))
    .returning(NOTIFICATIONS.c.cycle_id, NOTIFICATIONS.c.submission_id, NOTIFICATIONS.c.rung,
               NOTIFICATIONS.c.takeovers))
RECORD_EVENT = EVENTS.insert()
# The same record and its event in one statement, committed on its own (PostgreSQL, which can
# update inside a WITH): one round trip per mail instead of four. The event's payload is written
# as the same JSON text _record_sent writes (``sent_payload``); the row's takeovers choose.
_SENT = RECORD_SENT.cte("sent")
RECORD_SENT_WITH_EVENT = (
    EVENTS.insert()
    .from_select(["cycle_id", "submission_id", "kind", "at", "actor", "payload"], select(
        _SENT.c.cycle_id, _SENT.c.submission_id,
        literal(EventKind.NOTIFICATION_SENT.value), bindparam("wall", type_=EVENTS.c.at.type),
        literal("worker"),
        # Parameter names that are no column of notification: the UPDATE would set those.
        case((_SENT.c.takeovers > 0,
              cast(bindparam("event_payload_duplicate", type_=String), JSON)),
             else_=cast(bindparam("event_payload", type_=String), JSON))))
    # The mail's lock goes with its record (see deliver).
    .returning(EVENTS.c.id, release_mail_lock(EVENTS.c.submission_id,
                                              bindparam("release", type_=Boolean))))

SENT_UNDER_CLAIM = (
    select(NOTIFICATIONS.c.id)
    .where(NOTIFICATIONS.c.id == bindparam("notification_id"),
           NOTIFICATIONS.c.claim_token == bindparam("token"),
           NOTIFICATIONS.c.status == target(LedgerMove.RECORD_SENT)))

RENEW_CLAIM = (
    NOTIFICATIONS.update()
    .where(NOTIFICATIONS.c.id.in_(bindparam("rest", expanding=True)),
           NOTIFICATIONS.c.claim_token == bindparam("token"),
           NOTIFICATIONS.c.status == NotificationStatus.SENDING)
    .values(claimed_at=bindparam("wall"))
    .returning(NOTIFICATIONS.c.id))


def sent_payload(rung: str, message_id: str, *, takeovers: int = 0, refused: int = 0) -> dict:
    """What the event of a sent mail says."""
    payload = {"rung": rung, "message_id": message_id}
    if takeovers:
        payload["possible_duplicate"] = True  # an earlier worker died after sending
    if refused:
        payload["refused"] = refused
    return payload


def sent_copy(mail: OutgoingMail) -> dict:
    """What is kept of a mail as it left: never a working personal link."""
    return {"sent_subject": mail.subject[:300], "sent_text": blank_personal_links(mail.text),
            "sent_to": [*mail.to, *mail.cc]}


def _record_sent(service: MailService, recorder: Recorder, token: str, notification_id: int,
                 mail: OutgoingMail, refused: dict[str, str], rest: list[int], *,
                 resume: bool, lock: int | None) -> tuple[bool, set[int]]:
    """Record one mail as sent under our claim, with its event, and commit; renew the claim on
    ``rest`` of the batch; let go of the mail's ``lock`` (its submission's id) once recorded.
    Returns whether the claim was still ours, and the ids of ``rest`` that are."""
    recorder.retried = False  # (the unit of work below does not use the recorder)
    wall = utcnow()
    record = {"notification_id": notification_id, "token": token, "wall": wall,
              "refused": refused or None, **sent_copy(mail)}
    if recorder.single_statements and not (refused or rest or resume):
        row = recorder.execute(RECORD_SENT_WITH_EVENT, {
            **record,
            "event_payload": json.dumps(sent_payload(mail.rung, mail.message_id)),
            "event_payload_duplicate": json.dumps(sent_payload(mail.rung, mail.message_id,
                                                         takeovers=1)),
            "release": lock is not None})
        if row is None and recorder.retried:
            # The first try committed before its reply was lost: the row is ours and sent.
            row = recorder.execute(SENT_UNDER_CLAIM, record)
        return row is not None, set()
    with service.database.unit_of_work(record=True) as uow:
        connection = uow.session.connection()
        row = connection.execute(RECORD_SENT, record).first()
        if row is not None:
            connection.execute(RECORD_EVENT, {
                "cycle_id": row.cycle_id, "submission_id": row.submission_id,
                "kind": EventKind.NOTIFICATION_SENT, "at": wall, "actor": "worker",
                "payload": sent_payload(row.rung, mail.message_id, takeovers=row.takeovers,
                                        refused=len(refused))})
            if refused:  # kept on the row; only a refusal for good (5xx) is a bounce
                _mark_bouncing(uow, mail, {address: reply for address, reply in refused.items()
                                           if reply.startswith("5")},
                               wall, row.cycle_id, row.submission_id)
        owned = set(connection.scalars(RENEW_CLAIM, {"rest": rest, "token": token,
                                                     "wall": wall})) if rest else set()
        if resume:  # the first mail through ends a pause another worker may have begun
            _resume_outbox(uow, wall)
        uow.commit()
    if row is not None and lock is not None:
        recorder.release_mail_locks([lock])
    return row is not None, owned


def _mark_bouncing(uow: UnitOfWork, mail: OutgoingMail, refused: dict[str, str], wall: datetime,
                   cycle_id: int, submission_id: int | None):
    """A refused address is a bounce: the contact is marked and the ladder writes to the next."""
    if mail.partner_id is None or not refused:
        return
    contacts = uow.session.scalars(select(Contact).where(
        Contact.partner_id == mail.partner_id, Contact.email.in_(list(refused)),
        Contact.bounced_at.is_(None))).all()
    for contact in contacts:
        contact.bounced_at, contact.bounce_reason = wall, refused[contact.email][:500]
        uow.session.add(Event(cycle_id=cycle_id, submission_id=submission_id,
                              kind=EventKind.CONTACT_BOUNCED, at=wall, actor="worker",
                              payload={"contact_id": contact.id, "role": str(contact.role),
                                       "reply": refused[contact.email][:200]}))
    log.warning("mail to partner %s: %d recipient(s) refused: %s", mail.partner_id, len(refused),
                EMAIL_ADDRESS.sub("<address>", "; ".join(refused.values())))


def _record_failure(service: MailService, token: str, notification_id: int, mail: OutgoingMail,
                    error: str, refused: dict[str, str], *, permanent: bool,
                    report: DeliveryReport):
    wall = utcnow()
    with service.database.unit_of_work() as uow:
        notification = uow.session.scalars(
            select(Notification).where(Notification.id == notification_id)
            .with_for_update()).first()
        if notification.claim_token != token or notification.status != NotificationStatus.SENDING:
            report.lost.append(notification_id)
            return
        if refused:
            _mark_bouncing(uow, mail, refused, wall, notification.cycle_id,
                           notification.submission_id)
        notification.attempts += 1
        if permanent or notification.attempts >= service.max_attempts:
            _fail(uow, notification, error, wall, report)
        else:
            apply(notification, LedgerMove.RETRY, last_error=error[:2000], dispatched_at=None,
                  not_before=wall + backoff(notification.attempts))
            report.retrying.append(notification_id)
            log.warning("mail %s not sent, will retry: %s", notification_id,
                        EMAIL_ADDRESS.sub("<address>", error))
        _resume_outbox(uow, wall)
        uow.commit()


# The outbox as a whole ---------------------------------------------------------------------------

def outbox_paused_until(database: Database, wall: datetime) -> datetime | None:
    with database.unit_of_work() as uow:
        until = uow.session.scalar(select(Outbox.paused_until).where(Outbox.id == OUTBOX_ID))
    return until if until is not None and until > wall else None


def _release(service: MailService, token: str, ids: list[int], reason: str,
             report: DeliveryReport):
    """The server is away: pause the outbox; our claimed rows wait without losing an attempt.

    Only a failure after the pause ran out lengthens it: the other workers that found the server
    away at the same moment are not more evidence (four of them at once made a first pause of
    four minutes)."""
    wall = utcnow()
    with service.database.unit_of_work() as uow:
        outbox = uow.session.get(Outbox, OUTBOX_ID, with_for_update=True)  # made by migration
        first = outbox.paused_since is None
        if outbox.paused_until is None or outbox.paused_until <= wall:
            outbox.failures += 1
            outbox.paused_until = wall + pause_length(outbox.failures)
        outbox.paused_since = outbox.paused_since or wall
        outbox.reason = EMAIL_ADDRESS.sub("<address>", reason)[:2000]
        _back_to_the_outbox(uow, token, ids, not_before=outbox.paused_until,
                            last_error=f"server unavailable: {outbox.reason}"[:2000])
        if first:
            uow.session.add(Event(kind=EventKind.OUTBOX_PAUSED, at=wall, actor="worker",
                                  payload={"reason": outbox.reason}))
        until = outbox.paused_until
        uow.commit()
    report.deferred.extend(ids)
    log.warning("mail server unavailable (%s): the outbox pauses until %s; %d mails wait, none "
                "is lost", EMAIL_ADDRESS.sub("<address>", reason), until.isoformat(), len(ids))


def _resume_outbox(uow: UnitOfWork, wall: datetime):
    """A mail got through: end a pause (cheap when there is none)."""
    resumed = uow.session.execute(
        update(Outbox).where(Outbox.id == OUTBOX_ID, Outbox.paused_since.is_not(None))
        .values(paused_until=None, paused_since=None, failures=0, reason=None)
        .returning(Outbox.reason)).first()
    if resumed is not None:
        uow.session.add(Event(kind=EventKind.OUTBOX_RESUMED, at=wall, actor="worker",
                              payload={"after": resumed.reason}))
        log.info("mail server reachable again: the outbox resumes")


# The relay ---------------------------------------------------------------------------------------

# As a literal, so that PostgreSQL uses the partial index on the outbox even for a prepared plan.
IN_THE_OUTBOX = text("notification.status IN ('queued', 'sending')")


def relay(uow: UnitOfWork, *, lease_seconds: int, dispatch_lease_seconds: int,
          broker_backlog: int | None, limit: int = 5000) -> list[int]:
    """Hand out again what a crash, a lost broker message, a retry or a pause left waiting.

    Rows handed over by the sweep and queued rows are handed out again when their hand-over is
    older than the dispatch lease and the broker holds nothing (it lost its queue, e.g. Redis
    restarted empty); when the broker cannot tell, only after the sending lease. A duplicate
    hand-over is harmless: the claim decides who sends.
    """
    wall = utcnow()
    paused = uow.session.scalar(select(Outbox.paused_until).where(Outbox.id == OUTBOX_ID))
    if paused is not None and paused > wall:
        return []
    stale_claim = wall - timedelta(seconds=lease_seconds)
    handed_out_before = (wall - timedelta(seconds=dispatch_lease_seconds) if broker_backlog == 0
                         else stale_claim)
    due = and_(Notification.status == NotificationStatus.QUEUED,
               or_(Notification.not_before.is_(None), Notification.not_before <= wall))
    ids = list(uow.session.scalars(
        select(Notification.id).where(IN_THE_OUTBOX, or_(
            and_(due, or_(Notification.dispatched_at.is_(None),
                          Notification.dispatched_at < handed_out_before)),
            and_(Notification.status == NotificationStatus.SENDING,
                 Notification.claimed_at < stale_claim)))
        .order_by(Notification.id).limit(limit)))
    if ids:
        for condition in uow.among(Notification.id, ids):
            uow.session.execute(update(Notification)
                                .where(condition)
                                .values(dispatched_at=wall)
                                .execution_options(synchronize_session=False))
        uow.dispatch(ids)
    # Hand-overs end when a worker claims the row; those of rows no longer planned go.
    uow.session.execute(delete(Handover).where(~exists().where(
        Notification.id == Handover.notification_id, PLANNED_ROWS)))
    again = hand_over_again(uow, list(uow.session.scalars(
        select(Handover.notification_id).where(Handover.handed_at < handed_out_before)
        .order_by(Handover.notification_id).limit(limit))), wall=wall)
    return ids + again


# Coordinators' tools -----------------------------------------------------------------------------

def retry_failed(uow: UnitOfWork, *, now: datetime, actor: str, ids: Sequence[int] | None = None,
                 cycle_id: int | None = None) -> list[int]:
    """Put failed mails back in the outbox with fresh attempts (after the cause is fixed)."""
    query = select(Notification).where(Notification.status == NotificationStatus.FAILED)
    if ids:
        query = query.where(Notification.id.in_(list(ids)))
    if cycle_id is not None:
        query = query.where(Notification.cycle_id == cycle_id)
    rows = list(uow.session.scalars(query.order_by(Notification.id).with_for_update()))
    for notification in rows:
        apply(notification, LedgerMove.REQUEUE, attempts=0, takeovers=0, not_before=now,
              dispatched_at=now, claim_token=None)
        uow.session.add(Event(cycle_id=notification.cycle_id,
                              submission_id=notification.submission_id,
                              kind=EventKind.NOTIFICATION_REQUEUED, at=now, actor=actor,
                              payload={"rung": notification.rung,
                                       "error": (notification.last_error or "")[:500]}))
    uow.dispatch([n.id for n in rows])
    return [n.id for n in rows]


@dataclass
class OutboxState:
    by_status: dict[str, int]
    handed_over: int  # planned rows the sweep handed to the workers, not yet claimed
    paused_until: datetime | None
    paused_since: datetime | None
    reason: str | None
    failed: list[dict]


def outbox_state(uow: UnitOfWork, *, failed_limit: int = 50) -> OutboxState:
    counts = dict(uow.session.execute(select(Notification.status, func.count())
                                      .group_by(Notification.status)).all())
    handed = uow.session.scalar(select(func.count()).select_from(Handover).join(
        Notification, Notification.id == Handover.notification_id).where(PLANNED_ROWS))
    outbox = uow.session.get(Outbox, OUTBOX_ID)
    failed = uow.session.execute(
        select(Notification.id, Notification.rung, Notification.last_error, Partner.name)
        .outerjoin(Submission, Submission.id == Notification.submission_id)
        .outerjoin(Partner, Partner.id == Submission.partner_id)
        .where(Notification.status == NotificationStatus.FAILED)
        .order_by(Notification.id.desc()).limit(failed_limit)).all()
    return OutboxState(
        by_status={str(NotificationStatus(k)): v for k, v in sorted(counts.items())},
        handed_over=handed,
        paused_until=outbox.paused_until if outbox else None,
        paused_since=outbox.paused_since if outbox else None,
        reason=outbox.reason if outbox else None,
        failed=[{"id": f.id, "rung": f.rung, "partner": f.name,
                 "error": EMAIL_ADDRESS.sub("<address>", f.last_error or "")} for f in failed])
