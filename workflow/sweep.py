"""The sweep: what is due at instant T? Set-based, idempotent, catching up after missed ticks.

What it sends it hands over (``ledger.hand_over``): the rows stay planned until a worker claims
them, and the sweep passes them by from then on."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime

from sqlalchemy import exists, func, insert, or_, select, text, union_all, update

from workflow.events import EventKind
from workflow.ledger import (LedgerMove, Verdict, apply_to_ids, hand_over, still_owed,
                             window_bound)
from workflow.models import (LADDER_MAIL_OUT, PLANNED_ROWS, Cycle, Event, Handover, MemberPart,
                             Notification, Partner, Programme, Submission, utcnow)
from workflow.policy import (Audience, DueRung, ReportingPolicy, choose_rungs_to_send,
                             in_send_window)
from workflow.states import AWAITING_REPORT, SubmissionState
from workflow.uow import UnitOfWork

@dataclass
class PlannedMail:
    notification_id: int
    submission_id: int | None
    rung: str
    action: str  # "send", "skip" or "cancel"
    # For a person reading the result (``describe_mails``); deciding needs none of them.
    partner: str | None = None
    email: str | None = None
    due_at: datetime | None = None

    def to_dict(self) -> dict:
        return {"notification_id": self.notification_id, "partner": self.partner,
                "rung": self.rung, "email": self.email,
                "due_at": self.due_at.isoformat() if self.due_at else None,
                "action": self.action}


@dataclass
class SweepResult:
    at: datetime
    dry_run: bool
    outside_window: list[str] = field(default_factory=list)  # programmes not sending right now
    mails: list[PlannedMail] = field(default_factory=list)
    escalated: int = 0
    flagged_non_reporting: int = 0
    held: int = 0  # ladders waiting for the minimum gap since their last mail

    def count(self, action: str) -> int:
        return sum(1 for m in self.mails if m.action == action)

    def to_dict(self) -> dict:
        return {"at": self.at.isoformat(), "dry_run": self.dry_run,
                "outside_window": self.outside_window, "send": self.count("send"),
                "skip": self.count("skip"), "cancel": self.count("cancel"),
                "escalated": self.escalated, "flagged_non_reporting": self.flagged_non_reporting,
                "held": self.held,
                "mails": [m.to_dict() for m in self.mails]}




def sweep(uow: UnitOfWork, now: datetime, *, dry_run: bool = False) -> SweepResult:
    """Hand over every rung due at or before ``now`` that is still owed; cost follows what is
    due."""
    result = SweepResult(at=now, dry_run=dry_run)
    session = uow.session
    uow.lock("sweep")
    if uow.database.is_postgres:
        # The sweep reads at most a few thousand rows, each by key. PostgreSQL overestimates
        # some of these reads (it cannot know how few ids an array holds or how many hand-overs
        # are dead) and started parallel workers for them, or could compile them (JIT): either
        # took longer than the read itself.
        session.execute(text("SELECT set_config('max_parallel_workers_per_gather', '0', true), "
                             "set_config('jit', 'off', true)"))
    rows = _due_rows(uow, now)
    if not rows:
        return result

    policies, window_open = {}, set()
    for programme in session.connection().execute(
            select(Programme.id, Programme.slug, Programme.policy)
            .where(Programme.id.in_({r.programme_id for r in rows}))):
        policies[programme.id] = ReportingPolicy.from_dict(programme.policy)
        if in_send_window(policies[programme.id], now):
            window_open.add(programme.id)
        else:
            result.outside_window.append(programme.slug)
    # Outside the window only what may go at any hour: notices and digests to coordinators.
    rows = [r for r in rows if r.programme_id in window_open or not window_bound(r)]

    # One rule decides: cancelled if no longer owed; a partner who said "we will submit by ..."
    # hears nothing until that day has passed (its rungs stay planned and the latest is caught up).
    cancel, live = [], []
    today = {programme_id: now.astimezone(policy.zone).date()
             for programme_id, policy in policies.items()}
    for row in rows:
        owed = still_owed(needs_open_report=row.needs_open_report, state=row.state,
                          paused_until=row.paused_until,
                          reminders_paused=bool(row.reminders_paused or row.cycle_paused),
                          part_completed=row.completed_at is not None,
                          today=today[row.programme_id])
        if owed.verdict is Verdict.CANCEL:
            cancel.append((row, owed.reason))
        elif owed.verdict is Verdict.SEND:
            live.append(row)
    held = _too_soon_after_last_mail(uow, live, policies, now)
    live = [r for r in live if (r.submission_id, r.member_part_id) not in held]
    send_ids, skip_ids = choose_rungs_to_send(
        [DueRung(r.id, r.submission_id, r.seq, r.member_part_id) for r in live])
    send_set, skip_set = set(send_ids), set(skip_ids)
    by_id = {r.id: r for r in rows}
    cycle_of = {r.submission_id: r.cycle_id for r in rows if r.submission_id is not None}
    for row, _ in cancel:
        result.mails.append(PlannedMail(row.id, row.submission_id, row.rung, "cancel"))
    for row in live:
        action = "send" if row.id in send_set else "skip" if row.id in skip_set else None
        if action:
            result.mails.append(PlannedMail(row.id, row.submission_id, row.rung, action))
    result.held = len(held)

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
    apply_to_ids(uow, skip_ids, LedgerMove.SKIP)
    apply_to_ids(uow, [r.id for r, _ in cancel], LedgerMove.CANCEL)
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
            "payload": {"rung": r.rung, "reason": reason}} for r, reason in cancel]
        + [{"cycle_id": cycle_of[sid], "submission_id": sid,
            "kind": EventKind.ESCALATED, "at": now, "payload": {"level": level, "rung": rung}}
           for sid, (level, rung, _) in levels.items()]
        + [{"cycle_id": cycle_of[sid], "submission_id": sid,
            "kind": EventKind.FLAGGED_NON_REPORTING, "at": now, "payload": {"rung": rung}}
           for sid, (_, rung, flag) in levels.items() if flag])
    if events:
        session.execute(insert(Event), [{"actor": "scheduler", **e} for e in events])
    hand_over(uow, send_ids, wall=wall, as_of=now)
    return result


def describe_mails(uow: UnitOfWork, result: SweepResult):
    """Put the partner's name, the kind of mail and its due time on the sweep's mails, for a
    person reading them."""
    described = {}
    for condition in uow.among(Notification.id, [m.notification_id for m in result.mails]):
        described.update((row.id, row) for row in uow.session.execute(
            select(Notification.id, Notification.email, Notification.due_at, Partner.name)
            .outerjoin(Submission, Submission.id == Notification.submission_id)
            .outerjoin(Partner, Partner.id == Submission.partner_id)
            .where(condition)))
    for mail in result.mails:
        row = described[mail.notification_id]
        mail.partner, mail.email, mail.due_at = row.name, row.email, row.due_at


@dataclass(slots=True)
class _DueRow:
    """A planned ledger row that is due, with what deciding about it needs."""
    id: int
    submission_id: int | None
    member_part_id: int | None
    seq: int
    rung: str
    audience: Audience
    escalation_level: int
    flags_non_reporting: bool
    needs_open_report: bool
    cycle_id: int
    programme_id: int
    cycle_paused: bool
    state: str | None
    paused_until: date | None
    reminders_paused: bool
    current_level: int | None
    completed_at: datetime | None


# A submission that changes the sweep's decision about a due row: what still_owed reads of it
# (no longer awaiting the report, a pause) or a level below the row's. Only these are read; any
# other submission awaits the report and has reached the row's level, as most do.
_SETTLED = sorted(state.value for state in SubmissionState if state not in AWAITING_REPORT)
_DECIDING_SUBMISSION = exists().where(
    Submission.id == Notification.submission_id,
    or_(Submission.state.in_(_SETTLED), Submission.paused_until.is_not(None),
        Submission.reminders_paused, Submission.escalation_level < Notification.escalation_level))


def _due_rows(uow: UnitOfWork, now: datetime) -> list[_DueRow]:
    """The planned rows due by ``now`` and not yet handed over, in the order they fell due.

    The ledger's rows are read with their cycles (a handful) and whether their submission
    changes the decision (through the partial index on planned rows, a key lookup each); then
    only those submissions, and the member parts, by primary key. Joined with the submissions in
    one statement, PostgreSQL hashed the whole submission and partner tables when it misjudged
    how few planned rows are due."""
    connection = uow.session.connection()
    mails = connection.execute(
        select(Notification.id, Notification.submission_id, Notification.member_part_id,
               Notification.seq, Notification.rung, Notification.audience,
               Notification.escalation_level, Notification.flags_non_reporting,
               Notification.needs_open_report, Notification.cycle_id, Cycle.programme_id,
               Cycle.reminders_paused, _DECIDING_SUBMISSION)
        .join(Cycle, Cycle.id == Notification.cycle_id)
        .where(PLANNED_ROWS, Notification.due_at <= now,
               ~exists().where(Handover.notification_id == Notification.id))
        .order_by(Notification.due_at, Notification.id)).all()
    rows, deciding, parts = [], {}, set()
    for (notification_id, submission_id, part_id, seq, rung, audience, level, flags,
         needs_open_report, cycle_id, programme_id, cycle_paused, decides) in mails:
        # Until read below: a submission that awaits the report and has reached this level.
        row = _DueRow(notification_id, submission_id, part_id, seq, rung, audience, level, flags,
                      needs_open_report, cycle_id, programme_id, bool(cycle_paused),
                      None, None, False, level, None)
        rows.append(row)
        if decides:
            deciding.setdefault(submission_id, []).append(row)
        if part_id is not None:
            parts.add(part_id)
    for condition in uow.among(Submission.id, deciding):
        for submission in connection.execute(
                select(Submission.id, Submission.state, Submission.paused_until,
                       Submission.reminders_paused, Submission.escalation_level)
                .where(condition)):
            for row in deciding[submission.id]:
                row.state, row.paused_until = submission.state, submission.paused_until
                row.reminders_paused = bool(submission.reminders_paused)
                row.current_level = submission.escalation_level
    if parts:
        completed = {}
        for condition in uow.among(MemberPart.id, parts):
            completed.update(connection.execute(
                select(MemberPart.id, MemberPart.completed_at).where(condition)).all())
        for row in rows:
            row.completed_at = completed.get(row.member_part_id)
    return rows


def _too_soon_after_last_mail(uow: UnitOfWork, rows, policies, now: datetime) -> set:
    """Ladders (submission, member part) that had a ladder mail to the partner fewer than the
    policy's minimum gap of working days ago: they wait, their rungs stay planned."""
    ladders = {(r.submission_id, r.member_part_id): r for r in rows
               if r.submission_id is not None and r.needs_open_report
               and Audience(r.audience) is not Audience.COORDINATORS
               and policies[r.programme_id].min_gap_working_days > 0}
    if not ladders:
        return set()
    # When it left, or (in a rehearsal with --at, where the clock is elsewhere) when it was due;
    # a mail handed over and not yet claimed counts from its hand-over.
    left = (select(Notification.submission_id, Notification.member_part_id,
                   func.max(Notification.due_at),
                   func.max(func.coalesce(Notification.sent_at, Notification.dispatched_at)))
            # As literals, like the partial index that finds these rows.
            .where(text(LADDER_MAIL_OUT))
            .group_by(Notification.submission_id, Notification.member_part_id))
    handed_over = (select(Notification.submission_id, Notification.member_part_id,
                          func.max(Notification.due_at), func.max(Handover.handed_at))
                   .join(Handover, Handover.notification_id == Notification.id)
                   .where(PLANNED_ROWS, Notification.needs_open_report,
                          Notification.audience != Audience.COORDINATORS)
                   .group_by(Notification.submission_id, Notification.member_part_id))
    held = set()
    for condition in uow.among(Notification.submission_id, {sid for sid, _ in ladders}):
        for sid, part, last_due, last_left in uow.session.connection().execute(
                union_all(left.where(condition), handed_over.where(condition))):
            row = ladders.get((sid, part))
            last = max(t for t in (last_due, last_left) if t is not None)
            if row is None or last > now:
                continue
            policy = policies[row.programme_id]
            gap = policy.calendar.working_days_between(last.astimezone(policy.zone).date(),
                                                       now.astimezone(policy.zone).date())
            if gap < policy.min_gap_working_days:
                held.add((sid, part))
    return held

