"""The sweep: what is due at instant T? Set-based, idempotent, catching up after missed ticks."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import insert, select, update

from workflow.cycles import policy_of
from workflow.events import EventKind
from workflow.models import (Cycle, Event, Notification, NotificationStatus, Partner, Programme,
                             Submission, utcnow)
from workflow.policy import DueRung, choose_rungs_to_send, in_send_window
from workflow.states import AWAITING_REPORT
from workflow.uow import UnitOfWork

CHUNK = 900  # stays below SQLite's bound-parameter limit


@dataclass
class PlannedMail:
    notification_id: int
    partner: str | None
    rung: str
    email: str
    due_at: datetime
    action: str  # "send", "skip" or "cancel"

    def to_dict(self) -> dict:
        return {"notification_id": self.notification_id, "partner": self.partner,
                "rung": self.rung, "email": self.email, "due_at": self.due_at.isoformat(),
                "action": self.action}


@dataclass
class SweepResult:
    at: datetime
    dry_run: bool
    outside_window: list[str] = field(default_factory=list)  # programmes not sending right now
    mails: list[PlannedMail] = field(default_factory=list)
    escalated: int = 0
    flagged_non_reporting: int = 0

    def count(self, action: str) -> int:
        return sum(1 for m in self.mails if m.action == action)

    def to_dict(self) -> dict:
        return {"at": self.at.isoformat(), "dry_run": self.dry_run,
                "outside_window": self.outside_window, "send": self.count("send"),
                "skip": self.count("skip"), "cancel": self.count("cancel"),
                "escalated": self.escalated, "flagged_non_reporting": self.flagged_non_reporting,
                "mails": [m.to_dict() for m in self.mails]}


def sweep(uow: UnitOfWork, now: datetime, *, dry_run: bool = False) -> SweepResult:
    """Queue every rung due at or before ``now`` that is not done yet; cost follows what is due."""
    result = SweepResult(at=now, dry_run=dry_run)
    session = uow.session
    uow.lock("sweep")
    rows = session.execute(
        select(Notification.id, Notification.submission_id, Notification.member_part_id,
               Notification.seq, Notification.rung,
               Notification.email, Notification.due_at, Notification.escalation_level,
               Notification.flags_non_reporting, Notification.cycle_id, Cycle.programme_id,
               Submission.state, Submission.escalation_level.label("current_level"), Partner.name)
        .join(Cycle, Cycle.id == Notification.cycle_id)
        .outerjoin(Submission, Submission.id == Notification.submission_id)
        .outerjoin(Partner, Partner.id == Submission.partner_id)
        .where(Notification.status == NotificationStatus.PLANNED, Notification.due_at <= now)
        .order_by(Notification.due_at, Notification.id)).all()
    if not rows:
        return result

    sending_programmes = set()
    for programme in session.scalars(select(Programme).where(
            Programme.id.in_({r.programme_id for r in rows}))):
        if in_send_window(policy_of(programme), now):
            sending_programmes.add(programme.id)
        else:
            result.outside_window.append(programme.slug)
    rows = [r for r in rows if r.programme_id in sending_programmes]
    # A partner who said "we will submit by ..." hears nothing until that day has passed; its rungs
    # stay planned and the latest one is caught up afterwards.
    paused = _paused_submissions(uow, {r.submission_id for r in rows if r.submission_id}, now)
    rows = [r for r in rows if r.submission_id not in paused]

    # Belt and braces: a settled submission's rungs are cancelled when it settles; any left over
    # are cancelled here rather than sent.
    cancel = [r for r in rows if r.submission_id is not None and r.state not in AWAITING_REPORT]
    live = [r for r in rows if r.submission_id is None or r.state in AWAITING_REPORT]
    send_ids, skip_ids = choose_rungs_to_send(
        [DueRung(r.id, r.submission_id, r.seq, r.member_part_id) for r in live])
    send_set, skip_set = set(send_ids), set(skip_ids)
    by_id = {r.id: r for r in rows}
    cycle_of = {r.submission_id: r.cycle_id for r in rows if r.submission_id is not None}
    for row in rows:
        action = ("cancel" if row.id not in send_set and row.id not in skip_set
                  else "send" if row.id in send_set else "skip")
        result.mails.append(PlannedMail(row.id, row.name, row.rung, row.email, row.due_at, action))

    # Escalation level: the highest rung reached, whether it is sent or superseded.
    levels: dict[int, tuple[int, str, bool]] = {}
    for row in live:
        if row.escalation_level > (row.current_level or 0):
            best = levels.get(row.submission_id)
            if best is None or row.escalation_level > best[0]:
                levels[row.submission_id] = (row.escalation_level, row.rung, False)
        if row.flags_non_reporting:
            level, rung, _ = levels.get(row.submission_id, (row.escalation_level, row.rung, False))
            levels[row.submission_id] = (level, rung, True)
    result.escalated = len(levels)
    result.flagged_non_reporting = sum(1 for v in levels.values() if v[2])
    if dry_run:
        return result

    wall = utcnow()
    _set_status(uow, skip_ids, NotificationStatus.SKIPPED)
    _set_status(uow, [r.id for r in cancel], NotificationStatus.CANCELLED)
    _set_status(uow, send_ids, NotificationStatus.QUEUED, not_before=wall, dispatched_at=wall)
    if levels:
        session.execute(update(Submission), [
            {"id": sid, "escalation_level": level, **({"non_reporting": True} if flag else {})}
            for sid, (level, _, flag) in levels.items()])
    events = (
        [{"cycle_id": by_id[i].cycle_id, "submission_id": by_id[i].submission_id,
          "kind": EventKind.NOTIFICATION_SKIPPED, "at": now, "payload": {"rung": by_id[i].rung}}
         for i in skip_ids]
        + [{"cycle_id": r.cycle_id, "submission_id": r.submission_id,
            "kind": EventKind.NOTIFICATION_CANCELLED, "at": now,
            "payload": {"rung": r.rung, "reason": f"state {r.state}"}} for r in cancel]
        + [{"cycle_id": cycle_of[sid], "submission_id": sid,
            "kind": EventKind.ESCALATED, "at": now, "payload": {"level": level, "rung": rung}}
           for sid, (level, rung, _) in levels.items()]
        + [{"cycle_id": cycle_of[sid], "submission_id": sid,
            "kind": EventKind.FLAGGED_NON_REPORTING, "at": now, "payload": {"rung": rung}}
           for sid, (_, rung, flag) in levels.items() if flag])
    if events:
        session.execute(insert(Event), [{"actor": "scheduler", **e} for e in events])
    uow.dispatch(send_ids, as_of=now)
    return result


def _paused_submissions(uow: UnitOfWork, ids: set[int], now: datetime) -> set[int]:
    if not ids:
        return set()
    today = now.date()  # a pause ends at the end of its day, in any time zone of the programme
    paused = set()
    id_list = sorted(ids)
    for start in range(0, len(id_list), CHUNK):
        paused.update(uow.session.scalars(select(Submission.id).where(
            Submission.id.in_(id_list[start:start + CHUNK]), Submission.paused_until.is_not(None),
            Submission.paused_until >= today)))
    return paused


def _set_status(uow: UnitOfWork, ids: list[int], status: NotificationStatus, **values):
    for start in range(0, len(ids), CHUNK):
        chunk = ids[start:start + CHUNK]
        uow.session.execute(
            update(Notification)
            .where(Notification.id.in_(chunk), Notification.status == NotificationStatus.PLANNED)
            .values(status=status, **values)
            .execution_options(synchronize_session=False))
