"""The coordinators' daily digest: what happened in a cycle since the last digest, in one mail.

At the policy's hour (`digest_at`) the scheduler plans one ledger row per open cycle and day; a day
with nothing to tell is recorded as skipped, so nobody gets an empty mail and the next digest
still starts where this one would have. The mail is composed at send time from the period on its
row: submissions, partners newly overdue, escalations, failed mails and bouncing addresses,
requests waiting for a decision and intents declared.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import func, select

from workflow.cycles import policy_of
from workflow.events import EventKind
from workflow.ledger import LedgerMove, apply, cycle_key, plan_cycle_notice
from workflow.models import (Cycle, CycleState, Event, ExtensionRequest, ExtensionStatus,
                             Notification, Partner, Submission)
from workflow.policy import DIGEST, digest_rung
from workflow.states import AWAITING_REPORT
from workflow.uow import UnitOfWork

LISTED = 50  # names per section; the rest is counted


@dataclass
class Section:
    total: int = 0
    items: list[dict] = field(default_factory=list)


@dataclass
class Digest:
    since: datetime
    until: datetime
    submitted: Section
    newly_overdue: Section
    escalated: Section
    failed: Section
    bounced: Section
    waiting_requests: Section
    intents: Section

    @property
    def empty(self) -> bool:
        return not any(s.total for s in (self.submitted, self.newly_overdue, self.escalated,
                                          self.failed, self.bounced, self.waiting_requests,
                                          self.intents))

    def to_context(self) -> dict:
        return {name: {"total": value.total, "items": value.items}
                for name, value in vars(self).items() if isinstance(value, Section)} | {
            "since": self.since, "until": self.until}


def _events(uow: UnitOfWork, cycle_id: int, kind: EventKind, since: datetime, until: datetime
            ) -> Section:
    where = (Event.cycle_id == cycle_id, Event.kind == kind, Event.at >= since, Event.at < until)
    total = uow.session.scalar(select(func.count()).select_from(Event).where(*where))
    rows = uow.session.execute(
        select(Event.submission_id, Event.at, Event.payload, Partner.name)
        .join(Submission, Submission.id == Event.submission_id, isouter=True)
        .join(Partner, Partner.id == Submission.partner_id, isouter=True)
        .where(*where).order_by(Event.at, Event.id).limit(LISTED)).all()
    return Section(total, [{"submission_id": r.submission_id, "at": r.at, "name": r.name or "",
                            **(r.payload or {})} for r in rows])


def digest_content(uow: UnitOfWork, cycle: Cycle, since: datetime, until: datetime) -> Digest:
    """Set-based: a count and the first names per section, whatever the cycle's size."""
    session = uow.session
    zone = policy_of(cycle.programme).zone
    first_day, last_day = since.astimezone(zone).date(), until.astimezone(zone).date()
    overdue_where = (Submission.cycle_id == cycle.id, Submission.state.in_(AWAITING_REPORT),
                     Submission.due_on >= first_day, Submission.due_on < last_day)
    overdue = Section(
        session.scalar(select(func.count()).select_from(Submission).where(*overdue_where)),
        [{"submission_id": r.id, "name": r.name, "due_on": r.due_on} for r in session.execute(
            select(Submission.id, Submission.due_on, Partner.name)
            .join(Partner, Partner.id == Submission.partner_id).where(*overdue_where)
            .order_by(Partner.name).limit(LISTED))])
    pending_where = (Submission.cycle_id == cycle.id,
                     ExtensionRequest.status == ExtensionStatus.PENDING)
    pending = Section(
        session.scalar(select(func.count()).select_from(ExtensionRequest)
                       .join(Submission, Submission.id == ExtensionRequest.submission_id)
                       .where(*pending_where)),
        [{"request_id": r.id, "submission_id": r.submission_id, "name": r.name,
          "proposed_due": r.proposed_due, "reason": r.reason}
         for r in session.execute(
            select(ExtensionRequest.id, ExtensionRequest.submission_id,
                   ExtensionRequest.proposed_due, ExtensionRequest.reason, Partner.name)
            .join(Submission, Submission.id == ExtensionRequest.submission_id)
            .join(Partner, Partner.id == Submission.partner_id)
            .where(*pending_where).order_by(ExtensionRequest.created_at).limit(LISTED))])
    return Digest(
        since=since, until=until,
        submitted=_events(uow, cycle.id, EventKind.SUBMITTED, since, until),
        newly_overdue=overdue,
        escalated=_events(uow, cycle.id, EventKind.ESCALATED, since, until),
        failed=_events(uow, cycle.id, EventKind.NOTIFICATION_FAILED, since, until),
        bounced=_events(uow, cycle.id, EventKind.CONTACT_BOUNCED, since, until),
        waiting_requests=pending,
        intents=_events(uow, cycle.id, EventKind.INTENT_DECLARED, since, until))


def _period_start(uow: UnitOfWork, cycle: Cycle, until: datetime) -> datetime:
    """Where the last digest ended (sent or skipped), else when the cycle opened, at most a
    day back."""
    previous = uow.session.scalar(
        select(func.max(Notification.due_at)).where(Notification.cycle_id == cycle.id,
                                                    Notification.email == DIGEST,
                                                    Notification.due_at < until))
    if previous is not None:
        return previous
    return max(cycle.created_at, until - timedelta(days=1))


def plan_digests(uow: UnitOfWork, now: datetime) -> list[Notification]:
    """Today's digest of every open cycle once its hour has come (idempotent: one per day)."""
    planned = []
    for cycle in uow.session.scalars(select(Cycle).where(Cycle.state == CycleState.OPEN)
                                     .order_by(Cycle.id)).all():
        policy = policy_of(cycle.programme)
        rung = digest_rung(policy, now.astimezone(policy.zone).date())
        if rung is None or now < rung.due_at or rung.due_at <= cycle.created_at:
            continue
        key = cycle_key(cycle.id, rung.rung, rung.send_on)
        if uow.session.scalar(select(Notification.id).where(Notification.dedupe_key == key)):
            continue
        since = _period_start(uow, cycle, rung.due_at)
        row = plan_cycle_notice(uow, cycle.id, rung.send_on, rung, now)
        row.payload = {"since": since.isoformat(), "until": rung.due_at.isoformat()}
        uow.session.flush()
        if digest_content(uow, cycle, since, rung.due_at).empty:
            apply(row, LedgerMove.SKIP, last_error="nothing to report")
        planned.append(row)
    return planned


def digest_of(uow: UnitOfWork, cycle: Cycle, payload: dict) -> Digest:
    """The digest a ledger row stands for, as it reads at send time."""
    return digest_content(uow, cycle, datetime.fromisoformat(payload["since"]),
                          datetime.fromisoformat(payload["until"]))
