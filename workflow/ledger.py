"""The notification ledger, in one place: its rows' keys, how rows are built, the moves between
statuses (one table, like the submission's), and whether a mail is still owed.

One row per (submission, rung, deadline) – or per cycle notice, member invitation or immediate
mail – with a unique key; its status is also the outbox. Everything that writes a row or changes
its status goes through this module.

The sweep hands a due row to the workers without moving it: the row stays planned and a narrow
hand-over row says so (``hand_over``), and a worker claims it straight from planned. Moving a due
row to queued cost the sweep an update with every index of the ledger for each row. Rows that go
back to the outbox with a time (a retry, a deferral) or leave at once are queued.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from enum import StrEnum

from sqlalchemy import (ARRAY, Integer, String, cast, delete, exists, func, insert, literal,
                        select, update)

from workflow.errors import IllegalTransition
from workflow.models import (Handover, MemberPart, Notification, NotificationStatus, Submission,
                             UTCDateTime)
from workflow.policy import INVITATION, Audience, PlannedRung
from workflow.states import AWAITING_REPORT, SubmissionState
from workflow.uow import UnitOfWork



class LedgerMove(StrEnum):
    QUEUE = "queue"  # to the outbox now (a coordinator's "escalate now")
    SKIP = "skip"  # superseded by a later rung due at the same time
    CANCEL = "cancel"  # no longer owed (submitted, exempted, deadline moved)
    HOLD = "hold"  # owed, but not now (the partner paused reminders): back to the sweep
    CLAIM = "claim"  # a worker takes it to send it now: handed over, queued, or a dead worker's
    RECORD_SENT = "record_sent"  # the server accepted it
    RETRY = "retry"  # the server said "try later" for this mail: again after a backoff
    DEFER = "defer"  # not this mail's fault (server away, outside the window): later, no attempt
    FAIL = "fail"  # refused for good, cannot be composed, or out of attempts
    REQUEUE = "requeue"  # a coordinator asks for failed mails to be tried again
    REPLAN = "replan"  # owed again (returned report, revoked exemption, new deadline)


N, M = NotificationStatus, LedgerMove

MOVES: dict[tuple[NotificationStatus, LedgerMove], NotificationStatus] = {
    (N.PLANNED, M.QUEUE): N.QUEUED,
    (N.PLANNED, M.SKIP): N.SKIPPED,
    (N.PLANNED, M.CANCEL): N.CANCELLED,
    # A planned row handed over by the sweep, as a worker finds it:
    (N.PLANNED, M.CLAIM): N.SENDING,
    (N.PLANNED, M.HOLD): N.PLANNED,
    (N.PLANNED, M.DEFER): N.QUEUED,
    (N.PLANNED, M.FAIL): N.FAILED,
    (N.QUEUED, M.CANCEL): N.CANCELLED,
    (N.QUEUED, M.HOLD): N.PLANNED,
    (N.QUEUED, M.CLAIM): N.SENDING,
    (N.QUEUED, M.DEFER): N.QUEUED,
    (N.QUEUED, M.FAIL): N.FAILED,
    (N.SENDING, M.CLAIM): N.SENDING,
    (N.SENDING, M.CANCEL): N.CANCELLED,
    (N.SENDING, M.HOLD): N.PLANNED,
    (N.SENDING, M.RECORD_SENT): N.SENT,
    (N.SENDING, M.RETRY): N.QUEUED,
    (N.SENDING, M.DEFER): N.QUEUED,
    (N.SENDING, M.FAIL): N.FAILED,
    (N.FAILED, M.REQUEUE): N.QUEUED,
    (N.CANCELLED, M.REPLAN): N.PLANNED,
}


def moved(status: NotificationStatus | str, move: LedgerMove | str) -> NotificationStatus:
    """The status ``move`` leads to from ``status``; IllegalTransition otherwise."""
    status, move = NotificationStatus(status), LedgerMove(move)
    try:
        return MOVES[(status, move)]
    except KeyError:
        raise IllegalTransition(status, move) from None


def sources(move: LedgerMove) -> list[NotificationStatus]:
    """The statuses a move may start from (for set-based updates)."""
    return sorted({status for status, m in MOVES if m is move})


def target(move: LedgerMove) -> NotificationStatus:
    """Every move has exactly one target status."""
    [status] = {to for (_, m), to in MOVES.items() if m is move}
    return status


def apply(notification: Notification, move: LedgerMove, **values):
    """Move one loaded row; ``values`` are the other columns that change with it."""
    notification.status = moved(notification.status, move)
    for key, value in values.items():
        setattr(notification, key, value)


def apply_to_ids(uow: UnitOfWork, ids: Sequence[int], move: LedgerMove, **values) -> int:
    """Move many rows at once; rows not in a source status of ``move`` are left alone."""
    changed = 0
    for condition in uow.among(Notification.id, ids):
        changed += uow.session.execute(
            update(Notification)
            .where(condition, Notification.status.in_(sources(move)))
            .values(status=target(move), **values)
            .execution_options(synchronize_session=False)).rowcount
    return changed


# Handing over ------------------------------------------------------------------------------------

def hand_over(uow: UnitOfWork, ids: Sequence[int], *, wall: datetime,
              as_of: datetime | None = None):
    """Hand planned rows that are not handed over to the workers (the sweep's, under its lock):
    a hand-over row each, written in this transaction and dispatched after commit."""
    if not ids:
        return
    ids = list(ids)
    connection = uow.session.connection()
    if uow.database.is_postgres:  # one statement and one array, however many rows
        connection.execute(insert(Handover).from_select(
            ["notification_id", "handed_at"],
            select(func.unnest(literal(ids, ARRAY(Integer))), _instant(wall))))
    else:
        connection.execute(insert(Handover), [{"notification_id": i, "handed_at": wall}
                                              for i in ids])
    uow.dispatch(ids, as_of=as_of)


def hand_over_again(uow: UnitOfWork, ids: Sequence[int], *, wall: datetime) -> list[int]:
    """Hand out again rows still handed over (the broker lost them); a hand-over taken back
    meanwhile (the row was held at send time) stays taken back."""
    again = []
    for condition in uow.among(Handover.notification_id, ids):
        again += uow.session.scalars(update(Handover).where(condition)
                                     .values(handed_at=wall)
                                     .returning(Handover.notification_id)).all()
    uow.dispatch(again)
    return again


def take_back(uow: UnitOfWork, ids: Sequence[int]):
    """The rows are no longer handed over (held at send time): the sweep decides about them."""
    for condition in uow.among(Handover.notification_id, ids):
        uow.session.execute(delete(Handover).where(condition))


def handed_over(uow: UnitOfWork, ids: Sequence[int]) -> set[int]:
    """Which of the rows are handed over."""
    found = set()
    for condition in uow.among(Handover.notification_id, ids):
        found.update(uow.session.scalars(select(Handover.notification_id).where(condition)))
    return found


# Keys --------------------------------------------------------------------------------------------

def rung_key(rung: str, due_on: date) -> str:
    """The rung's part of a key: deadline-relative rungs are unique per deadline."""
    return rung if rung == INVITATION else f"{rung}@{due_on.isoformat()}"


def submission_key(submission_id: int, rung: str, due_on: date) -> str:
    return f"s{submission_id}:{rung_key(rung, due_on)}"


def cycle_key(cycle_id: int, rung: str, due_on: date) -> str:
    return f"c{cycle_id}:{rung}@{due_on.isoformat()}"


def member_key(member_part_id: int) -> str:
    return f"m{member_part_id}:invitation"


def immediate_key(submission_id: int, kind: str, occasion: str | int) -> str:
    """A mail that answers an event: one per (kind, occasion), e.g. per submitted version."""
    return f"s{submission_id}:{kind}:{occasion}"


# Building rows -----------------------------------------------------------------------------------

def _instant(value: datetime):
    return literal(value, UTCDateTime())


_COLUMNS = ["cycle_id", "submission_id", "member_part_id", "dedupe_key", "rung", "email",
            "audience", "seq", "escalation_level", "flags_non_reporting", "needs_open_report",
            "due_at", "status", "attempts", "created_at"]


def plan_rung_for_cycle(uow: UnitOfWork, cycle_id: int, due_on: date, rung: PlannedRung,
                        now: datetime):
    """One rung for every submission of a cycle: a single INSERT … SELECT."""
    uow.session.execute(insert(Notification).from_select(
        _COLUMNS,
        select(literal(cycle_id), Submission.id, literal(None), literal("s")
               + cast(Submission.id, String) + literal(":" + rung_key(rung.rung, due_on)),
               literal(rung.rung), literal(rung.email), literal(rung.audience.value),
               literal(rung.seq), literal(rung.escalation_level),
               literal(rung.flags_non_reporting), literal(True), _instant(rung.due_at),
               literal(NotificationStatus.PLANNED.value), literal(0), _instant(now))
        .where(Submission.cycle_id == cycle_id)))


def plan_member_invitations(uow: UnitOfWork, cycle_id: int, invitation: PlannedRung,
                            now: datetime):
    """Each group member's part gets its own invitation, due with the group's."""
    uow.session.execute(insert(Notification).from_select(
        _COLUMNS,
        select(literal(cycle_id), MemberPart.submission_id, MemberPart.id,
               literal("m") + cast(MemberPart.id, String) + literal(":invitation"),
               literal("member_invitation"), literal("member_invitation"),
               literal(invitation.audience.value), literal(0), literal(0), literal(False),
               literal(True), _instant(invitation.due_at),
               literal(NotificationStatus.PLANNED.value), literal(0), _instant(now))
        .join(Submission, Submission.id == MemberPart.submission_id)
        .where(Submission.cycle_id == cycle_id)))


def plan_cycle_notice(uow: UnitOfWork, cycle_id: int, due_on: date, rung: PlannedRung,
                      now: datetime) -> Notification:
    """A notice about the whole cycle to the coordinators (e.g. on the deadline)."""
    row = Notification(
        cycle_id=cycle_id, submission_id=None, dedupe_key=cycle_key(cycle_id, rung.rung, due_on),
        rung=rung.rung, email=rung.email, audience=rung.audience, seq=rung.seq,
        needs_open_report=False, due_at=rung.due_at, created_at=now)
    uow.session.add(row)
    return row


def plan_submission_rung(uow: UnitOfWork, submission: Submission, rung: PlannedRung,
                         now: datetime):
    """One rung for one submission (a re-planned ladder); a cancelled row is owed again."""
    key = submission_key(submission.id, rung.rung, submission.due_on)
    existing = uow.session.scalars(select(Notification)
                                   .where(Notification.dedupe_key == key)).first()
    if existing is not None:
        if existing.status == NotificationStatus.CANCELLED:
            apply(existing, LedgerMove.REPLAN, last_error=None)
            take_back(uow, [existing.id])  # a hand-over from before it was cancelled
        return existing
    row = Notification(
        cycle_id=submission.cycle_id, submission_id=submission.id, dedupe_key=key,
        rung=rung.rung, email=rung.email, audience=rung.audience, seq=rung.seq,
        escalation_level=rung.escalation_level, flags_non_reporting=rung.flags_non_reporting,
        needs_open_report=True, due_at=rung.due_at, created_at=now)
    uow.session.add(row)
    return row


def queue_immediate(uow: UnitOfWork, submission: Submission, email: str, now: datetime, *,
                    occasion: str | int, wall: datetime,
                    audience: Audience = Audience.CONTACT, payload: dict | None = None
                    ) -> Notification:
    """A mail that answers an event and leaves at once (receipt, decision): written to the
    outbox in this transaction, dispatched after commit. It does not wait for an open report."""
    row = Notification(
        cycle_id=submission.cycle_id, submission_id=submission.id,
        dedupe_key=immediate_key(submission.id, email, occasion), rung=email, email=email,
        audience=audience, seq=0, needs_open_report=False, due_at=now,
        status=NotificationStatus.QUEUED, not_before=wall, dispatched_at=wall, created_at=wall,
        payload=payload)
    uow.session.add(row)
    uow.session.flush()
    uow.dispatch([row.id], as_of=now)
    return row


def next_ladder_mail(uow: UnitOfWork, submission_id: int) -> Notification | None:
    """The submission's next planned mail of its ladder (not a member's own invitation, not one
    already handed to the workers), locked: no worker can claim it meanwhile."""
    return uow.session.scalars(
        select(Notification)
        .where(Notification.submission_id == submission_id,
               Notification.member_part_id.is_(None),
               Notification.status == NotificationStatus.PLANNED,
               Notification.needs_open_report.is_(True),
               ~exists().where(Handover.notification_id == Notification.id))
        .order_by(Notification.due_at, Notification.seq, Notification.id).limit(1)
        .with_for_update()).first()


def queue_now(uow: UnitOfWork, row: Notification, now: datetime, *, wall: datetime):
    """A planned mail becomes due now and goes to the outbox in this transaction (a
    coordinator's "escalate now"); dispatched after commit like every queued row."""
    apply(row, LedgerMove.QUEUE, due_at=now, not_before=wall, dispatched_at=wall)
    uow.session.flush()
    uow.dispatch([row.id], as_of=now)


def cancel_open_rungs(uow: UnitOfWork, submission_id: int, reason: str) -> int:
    """A settled submission's planned rungs will never be sent (queued ones are re-checked); a
    mail being sent to it is waited for, so none leaves after the commit."""
    uow.wait_for_mail_in_flight(submission_id)
    return uow.session.execute(
        update(Notification)
        .where(Notification.submission_id == submission_id,
               Notification.status == NotificationStatus.PLANNED,
               Notification.needs_open_report.is_(True))
        .values(status=target(LedgerMove.CANCEL), last_error=f"cancelled: {reason}")
        .execution_options(synchronize_session=False)).rowcount


# Is it still owed? -------------------------------------------------------------------------------

class Verdict(StrEnum):
    SEND = "send"
    WAIT = "wait"  # paused by the partner: the sweep catches up after the pause
    CANCEL = "cancel"


@dataclass(frozen=True)
class Owed:
    verdict: Verdict
    reason: str = ""


def still_owed(*, needs_open_report: bool, state: SubmissionState | str | None,
               paused_until: date | None, part_completed: bool, today: date,
               reminders_paused: bool = False) -> Owed:
    """The one rule, used by the sweep, by settling and at send time: a mail about an owed report
    goes only while the report is owed, never during a pause the partner asked for or one a
    coordinator set (``reminders_paused``: the partner's or the whole cycle's), and a group
    member's invitation not once its part is finished."""
    if not needs_open_report:
        return Owed(Verdict.SEND)
    if state is not None and SubmissionState(state) not in AWAITING_REPORT:
        return Owed(Verdict.CANCEL, f"state {SubmissionState(state)}")
    if part_completed:
        return Owed(Verdict.CANCEL, "member part finished")
    if paused_until is not None and paused_until >= today:
        return Owed(Verdict.WAIT, f"paused until {paused_until.isoformat()}")
    if reminders_paused:
        return Owed(Verdict.WAIT, "reminders paused by a coordinator")
    return Owed(Verdict.SEND)


def window_bound(notification: Notification) -> bool:
    """Ladder mails to partners leave only inside the send window; coordinator notices and
    answers to a partner's own action (receipt, decisions) may leave at any time."""
    return notification.needs_open_report and notification.audience is not Audience.COORDINATORS
