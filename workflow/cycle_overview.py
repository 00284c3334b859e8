"""The read side of the coordinators' cycle overview and start page.

Every figure comes from a few grouped queries over one cycle (no loop over its submissions, no
query per row), so the page stays cheap at 20,000 partners. ``overview_version`` is the cheap
fingerprint the page polls; ``VersionedCache`` keeps the figures until it changes.
"""
from __future__ import annotations

import functools
import threading
from collections import OrderedDict, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta

from sqlalchemy import and_, bindparam, case, func, literal, or_, select, text
from sqlalchemy.orm import aliased

from workflow.cycles import policy_of, submitted_share
from workflow.delivery import EMAIL_ADDRESS, OUTBOX_ID
from workflow.events import EventKind
from workflow.models import (PLANNED_ROWS, Contact, Cycle, Event, ExtensionRequest,
                             ExtensionStatus, Notification, NotificationStatus, Outbox, Partner,
                             Programme, Submission)
from workflow.policy import Audience, ReportingPolicy, effective_deadline
from workflow.states import AWAITING_REPORT, SubmissionState
from workflow.uow import UnitOfWork

RECENT_EVENTS = 1000
LIST_LIMIT = 20  # the latest entries shown per list; the counts are always complete
PLANNED_DAYS = 7
# Statuses as literals, so that PostgreSQL's prepared plans still use the partial indexes on them.
QUEUED_ROWS = text("notification.status = 'queued'")
LADDER_DAYS = 42  # the default overdue ladder's length after the deadline (30 working days)
WITHIN_DAYS = 7  # "submitted within a week of receiving the mail"


# Rules -------------------------------------------------------------------------------------------

def overdue_cutoff(policy: ReportingPolicy, today: date) -> date:
    """The latest own deadline (``due_on``) that has passed by ``today``: a report still owed with
    ``due_on`` on or before it is overdue. A deadline on a weekend or holiday rolls to the next
    working day, so the rule runs on dates, and the database compares one date."""
    day = today - timedelta(days=1)
    while effective_deadline(policy, day) >= today:
        day -= timedelta(days=1)
    return day


def local_day(instant: datetime, policy: ReportingPolicy) -> date:
    return instant.astimezone(policy.zone).date()


def day_start(day: date, policy: ReportingPolicy) -> datetime:
    return datetime.combine(day, time(0), tzinfo=policy.zone).astimezone(UTC)


# Dialect helpers: the read side runs on SQLite and PostgreSQL alike -----------------------------

def _hour_bucket(uow: UnitOfWork, column):
    """The UTC hour of an instant (Berlin's offsets are whole hours, so an hour maps to one day)."""
    if uow.database.is_postgres:
        return func.date_trunc("hour", func.timezone("UTC", column))
    return func.substr(column, 1, 13)  # SQLite keeps naive UTC text "YYYY-MM-DD HH:MM:SS.ffffff"


def _as_instant(bucket) -> datetime:
    if isinstance(bucket, str):
        return datetime.strptime(bucket, "%Y-%m-%d %H").replace(tzinfo=UTC)
    return bucket.replace(tzinfo=UTC) if bucket.tzinfo is None else bucket.astimezone(UTC)


def _days_after(uow: UnitOfWork, later, earlier):
    """``later - earlier`` in days (fractional)."""
    if uow.database.is_postgres:
        return func.date_part("epoch", later - earlier) / 86400.0
    return func.julianday(later) - func.julianday(earlier)


# The figures -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class CycleHead:
    id: int
    programme_id: int
    programme_name: str
    year: int
    opens_on: date
    due_on: date
    effective_due_on: date
    state: str
    reminders_paused: bool


@dataclass(frozen=True)
class StateCounts:
    partners: int
    by_state: dict[str, int]  # every SubmissionState value, zeros included
    by_level: dict[int, int]  # escalation levels above 0 that occur
    overdue: int
    non_reporting: int

    @property
    def share(self) -> float:
        """Submitted or accepted, of all partners not exempted (the rule in workflow.cycles)."""
        return submitted_share(self.by_state)

    @property
    def reported(self) -> int:
        return self.by_state[SubmissionState.SUBMITTED] + self.by_state[SubmissionState.ACCEPTED]

    @property
    def expected(self) -> int:
        return self.partners - self.by_state[SubmissionState.EXEMPTED]


@dataclass(frozen=True)
class BurnUp:
    """First submissions per day since the cycle opened, counted up."""

    year: int
    opens_on: date
    deadline_day: int  # days from opening to the (effective) deadline
    until_day: int  # the series runs to this day (today for a running cycle)
    steps: list[tuple[int, int]]  # (day since opening, cumulative count), days with submissions

    @property
    def total(self) -> int:
        return self.steps[-1][1] if self.steps else 0

    def on_day(self, day: int) -> int:
        count = 0
        for step_day, cumulative in self.steps:
            if step_day > day:
                break
            count = cumulative
        return count


@dataclass(frozen=True)
class PlannedMails:
    days: list[date]
    rungs: list[str]
    emails: dict[str, str]  # rung -> the mail it sends (to name the rung)
    counts: dict[tuple[date, str], int]

    def day_total(self, day: date) -> int:
        return sum(self.counts.get((day, rung), 0) for rung in self.rungs)

    @property
    def total(self) -> int:
        return sum(self.counts.values())


@dataclass(frozen=True)
class FailedMail:
    notification_id: int
    submission_id: int | None
    partner_name: str | None
    rung: str
    error: str


@dataclass(frozen=True)
class BouncingContact:
    submission_id: int
    partner_name: str
    role: str
    email: str
    bounced_at: datetime
    reason: str


@dataclass(frozen=True)
class OutboxPause:
    paused_since: datetime | None
    paused_until: datetime | None
    reason: str | None

    @property
    def paused(self) -> bool:
        return self.paused_since is not None


@dataclass(frozen=True)
class PendingExtension:
    request_id: int
    submission_id: int
    partner_name: str
    proposed_due: date
    reason: str
    created_at: datetime


@dataclass(frozen=True)
class DeclaredIntent:
    submission_id: int
    partner_name: str
    intent: str  # "will_submit_by" or "cannot_report"
    until: date | None
    reason: str
    at: datetime


@dataclass(frozen=True)
class FlaggedPartner:
    submission_id: int
    partner_name: str
    state: str
    escalation_level: int


@dataclass(frozen=True)
class RungEffect:
    """Of the partners a rung reached, how many submitted within a week of it."""

    rung: str
    email: str
    received: int
    submitted_within: int

    @property
    def share(self) -> float:
        return self.submitted_within / self.received if self.received else 0.0


@dataclass(frozen=True)
class Listing:
    count: int
    latest: list = field(default_factory=list)


@dataclass(frozen=True)
class CycleOverview:
    cycle: CycleHead
    today: date
    counts: StateCounts
    burn_up: BurnUp
    last_year: BurnUp | None
    planned: PlannedMails
    failed: Listing
    bouncing: Listing
    outbox: OutboxPause
    extensions: Listing
    intents: Listing
    non_reporting: Listing
    rungs: list[RungEffect]


def _head_columns():
    return (Cycle.id, Cycle.programme_id, Programme.name, Programme.policy, Cycle.year,
            Cycle.opens_on, Cycle.due_on, Cycle.state, Cycle.reminders_paused)


def _head(row) -> CycleHead:
    return CycleHead(id=row.id, programme_id=row.programme_id, programme_name=row.name,
                     year=row.year, opens_on=row.opens_on, due_on=row.due_on,
                     effective_due_on=effective_deadline(ReportingPolicy.from_dict(row.policy),
                                                         row.due_on),
                     state=str(row.state), reminders_paused=row.reminders_paused)


def _heads(uow: UnitOfWork, *where) -> list[CycleHead]:
    rows = uow.session.execute(
        select(*_head_columns()).join(Programme, Programme.id == Cycle.programme_id).where(*where)
        .order_by(Cycle.year.desc(), Programme.id, Cycle.id)).all()
    return [_head(row) for row in rows]


def cycle_head(uow: UnitOfWork, cycle_id: int) -> CycleHead | None:
    """The cycle's own facts (read afresh on every request); None for an unknown id."""
    heads = _heads(uow, Cycle.id == cycle_id)
    return heads[0] if heads else None


def cycle_page_state(uow: UnitOfWork, cycle_id: int,
                     now: datetime) -> tuple[CycleHead, str] | None:
    """The cycle's own facts and the version of its figures, in one query (every request of the
    overview asks for both); None for an unknown id. Run as Core, like ``get_account``."""
    row = uow.session.connection().execute(_page_state_query(), {"cycle_id": cycle_id}).first()
    if row is None:
        return None
    head = _head(row)
    return head, _version(row[-4:], head.reminders_paused, now)


@functools.cache
def _page_state_query():
    """Built once: every request of the overview and the partner table runs it."""
    return (select(*_head_columns(), *_version_columns())
            .join(Programme, Programme.id == Cycle.programme_id)
            .where(Cycle.id == bindparam("cycle_id")))


def cycle_overview(uow: UnitOfWork, cycle_id: int, now: datetime) -> CycleOverview | None:
    """Everything the cycle's overview shows, as of ``now``; None for an unknown cycle."""
    head = cycle_head(uow, cycle_id)
    if head is None:
        return None
    programme = uow.session.get(Programme, head.programme_id)
    policy = policy_of(programme)
    today = local_day(now, policy)
    last_year_id = uow.session.scalar(select(Cycle.id).where(
        Cycle.programme_id == head.programme_id, Cycle.year == head.year - 1))
    last_year = None
    if last_year_id is not None:
        last = cycle_head(uow, last_year_id)
        last_year = burn_up(uow, last, policy, today=None)
    counts = state_counts(uow, cycle_id, policy, today)
    return CycleOverview(
        cycle=head, today=today, counts=counts,
        burn_up=burn_up(uow, head, policy, today=today), last_year=last_year,
        planned=planned_mails(uow, cycle_id, policy, today),
        failed=failed_mails(uow, cycle_id), bouncing=bouncing_contacts(uow, cycle_id),
        outbox=outbox_pause(uow), extensions=pending_extensions(uow, cycle_id),
        intents=declared_intents(uow, cycle_id),
        non_reporting=flagged_partners(uow, cycle_id, counts.non_reporting),
        rungs=rung_effects(uow, cycle_id))


def state_counts(uow: UnitOfWork, cycle_id: int, policy: ReportingPolicy,
                 today: date) -> StateCounts:
    """Counts by state, escalation level, overdue and non-reporting: one grouped scan."""
    owed = [str(state) for state in AWAITING_REPORT]
    overdue = case((and_(Submission.state.in_(owed),
                         Submission.due_on <= overdue_cutoff(policy, today)), 1), else_=0)
    rows = uow.session.execute(
        select(Submission.state, Submission.escalation_level, Submission.non_reporting,
               func.count(), func.sum(overdue))
        .where(Submission.cycle_id == cycle_id)
        .group_by(Submission.state, Submission.escalation_level, Submission.non_reporting)).all()
    by_state = {str(state): 0 for state in SubmissionState}
    by_level: dict[int, int] = defaultdict(int)
    overdue_count = non_reporting = 0
    for state, level, flagged, count, late in rows:
        by_state[str(SubmissionState(state))] += count
        if level:
            by_level[level] += count
        non_reporting += count if flagged else 0
        overdue_count += late or 0
    return StateCounts(partners=sum(by_state.values()), by_state=by_state,
                       by_level=dict(sorted(by_level.items())), overdue=overdue_count,
                       non_reporting=non_reporting)


def first_submissions(cycle_id: int):
    """Each submission's first SUBMITTED event (a returned and resubmitted report counts once)."""
    return (select(Event.submission_id.label("submission_id"),
                   func.min(Event.at).label("first_at"))
            .where(Event.cycle_id == cycle_id, Event.kind == EventKind.SUBMITTED)
            .group_by(Event.submission_id).subquery())


def burn_up(uow: UnitOfWork, head: CycleHead, policy: ReportingPolicy,
            today: date | None) -> BurnUp:
    """The cumulative count of first submissions per day since opening, in the policy's days.
    ``today`` ends a running cycle's series; None: the series ends with its last submission."""
    first = first_submissions(head.id)
    bucket = _hour_bucket(uow, first.c.first_at)
    rows = uow.session.execute(select(bucket, func.count()).group_by(bucket)).all()
    per_day: dict[int, int] = defaultdict(int)
    for hour, count in rows:
        per_day[(local_day(_as_instant(hour), policy) - head.opens_on).days] += count
    steps, cumulative = [], 0
    for day in sorted(per_day):
        cumulative += per_day[day]
        steps.append((max(day, 0), cumulative))
    deadline_day = (head.effective_due_on - head.opens_on).days
    last_step = steps[-1][0] if steps else 0
    # A running cycle's line runs to today; an old one's no further than its ladder reaches.
    end = max(last_step, deadline_day + LADDER_DAYS)
    until = min((today - head.opens_on).days, end) if today is not None else \
        max(last_step, deadline_day)
    return BurnUp(year=head.year, opens_on=head.opens_on, deadline_day=deadline_day,
                  until_day=max(until, last_step, 0), steps=steps)


def planned_mails(uow: UnitOfWork, cycle_id: int, policy: ReportingPolicy,
                  today: date) -> PlannedMails:
    """Mails planned or queued to leave from today through the next seven days, by day and rung."""
    days = [today + timedelta(days=n) for n in range(PLANNED_DAYS)]
    start, end = day_start(days[0], policy), day_start(days[-1] + timedelta(days=1), policy)
    bucket = _hour_bucket(uow, Notification.due_at)
    rows = uow.session.execute(
        select(bucket, Notification.rung, func.min(Notification.email), func.count())
        .where(Notification.cycle_id == cycle_id, or_(PLANNED_ROWS, QUEUED_ROWS),
               Notification.due_at >= start, Notification.due_at < end)
        .group_by(bucket, Notification.rung)).all()
    counts: dict[tuple[date, str], int] = defaultdict(int)
    emails = {}
    for hour, rung, email, count in rows:
        counts[(local_day(_as_instant(hour), policy), rung)] += count
        emails[rung] = email
    return PlannedMails(days=days, rungs=sorted(emails, key=rung_order), emails=emails,
                        counts=dict(counts))


def rung_order(rung: str) -> tuple[int, int]:
    """Invitation first, reminders counting down to the deadline, then the overdue steps."""
    name, _, number = rung.partition("-")
    order = {"invitation": 0, "member_invitation": 1, "reminder": 2, "overdue": 3}
    days = int(number) if number.isdigit() else 0
    return order.get(name, 4), -days if name == "reminder" else days


def _listing(uow: UnitOfWork, query, order, make) -> Listing:
    """The first LIST_LIMIT rows of ``query`` in ``order`` and how many there are, in one query."""
    rows = uow.session.execute(query.add_columns(func.count().over().label("total"))
                               .order_by(*order).limit(LIST_LIMIT)).all()
    return Listing(rows[0].total if rows else 0, [make(row) for row in rows])


def failed_mails(uow: UnitOfWork, cycle_id: int) -> Listing:
    query = (select(Notification.id, Notification.submission_id, Partner.name, Notification.rung,
                    Notification.last_error)
             .outerjoin(Submission, Submission.id == Notification.submission_id)
             .outerjoin(Partner, Partner.id == Submission.partner_id)
             .where(Notification.cycle_id == cycle_id,
                    Notification.status == NotificationStatus.FAILED))
    return _listing(uow, query, [Notification.id.desc()], lambda r: FailedMail(
        notification_id=r[0], submission_id=r[1], partner_name=r[2], rung=r[3],
        error=EMAIL_ADDRESS.sub("<address>", r[4] or "")[:300]))


def bouncing_contacts(uow: UnitOfWork, cycle_id: int) -> Listing:
    """Contacts whose address was refused for good, of partners in this cycle (a member city's
    contact under its group's submission)."""
    reporter = aliased(Partner)
    query = (select(Submission.id, Partner.name, Contact.role, Contact.email, Contact.bounced_at,
                    Contact.bounce_reason)
             .select_from(Contact)
             .join(Partner, Partner.id == Contact.partner_id)
             .join(reporter, reporter.id == func.coalesce(Partner.group_id, Partner.id))
             .join(Submission, and_(Submission.partner_id == reporter.id,
                                    Submission.cycle_id == cycle_id))
             .where(Contact.bounced_at.is_not(None)))
    return _listing(uow, query, [Contact.bounced_at.desc(), Contact.id.desc()],
                    lambda r: BouncingContact(submission_id=r[0], partner_name=r[1],
                                              role=str(r[2]), email=r[3], bounced_at=r[4],
                                              reason=(r[5] or "")[:300]))


def outbox_pause(uow: UnitOfWork) -> OutboxPause:
    """Whether the whole outbox waits for the mail server (see workflow.delivery)."""
    outbox = uow.session.get(Outbox, OUTBOX_ID)
    if outbox is None:
        return OutboxPause(None, None, None)
    reason = EMAIL_ADDRESS.sub("<address>", outbox.reason) if outbox.reason else None
    return OutboxPause(outbox.paused_since, outbox.paused_until, reason)


def pending_extensions(uow: UnitOfWork, cycle_id: int) -> Listing:
    query = (select(ExtensionRequest.id, ExtensionRequest.submission_id, Partner.name,
                    ExtensionRequest.proposed_due, ExtensionRequest.reason,
                    ExtensionRequest.created_at)
             .join(Submission, Submission.id == ExtensionRequest.submission_id)
             .join(Partner, Partner.id == Submission.partner_id)
             .where(Submission.cycle_id == cycle_id,
                    ExtensionRequest.status == ExtensionStatus.PENDING))
    return _listing(uow, query, [ExtensionRequest.created_at, ExtensionRequest.id],
                    lambda r: PendingExtension(*r[:6]))


def declared_intents(uow: UnitOfWork, cycle_id: int) -> Listing:
    """Each partner's latest declared intent, while its report is still owed."""
    latest = (select(func.max(Event.id).label("id"))
              .where(Event.cycle_id == cycle_id, Event.kind == EventKind.INTENT_DECLARED)
              .group_by(Event.submission_id).subquery())
    query = (select(Event.submission_id, Partner.name, Event.payload, Event.at)
             .join(latest, latest.c.id == Event.id)
             .join(Submission, Submission.id == Event.submission_id)
             .join(Partner, Partner.id == Submission.partner_id)
             .where(Submission.state.in_([str(s) for s in AWAITING_REPORT])))

    def intent(row) -> DeclaredIntent:
        payload = row.payload or {}
        until = payload.get("until")
        return DeclaredIntent(submission_id=row.submission_id, partner_name=row.name,
                              intent=payload.get("intent", ""),
                              until=date.fromisoformat(until) if until else None,
                              reason=payload.get("reason") or "", at=row.at)
    return _listing(uow, query, [Event.id.desc()], intent)


def flagged_partners(uow: UnitOfWork, cycle_id: int, count: int) -> Listing:
    """The first partners flagged non-reporting, by name (``count`` comes from state_counts)."""
    if not count:
        return Listing(0, [])
    rows = uow.session.execute(
        select(Submission.id, Partner.name, Submission.state, Submission.escalation_level)
        .join(Partner, Partner.id == Submission.partner_id)
        .where(Submission.cycle_id == cycle_id, Submission.non_reporting.is_(True))
        .order_by(Partner.name).limit(LIST_LIMIT)).all()
    return Listing(count, [FlaggedPartner(r[0], r[1], str(r[2]), r[3]) for r in rows])


def rung_effects(uow: UnitOfWork, cycle_id: int) -> list[RungEffect]:
    """Per rung of the ladder to partners: how many partners it reached, and how many of them
    first submitted within seven days after it left (one grouped query)."""
    first = first_submissions(cycle_id)
    gap = _days_after(uow, first.c.first_at, Notification.sent_at)
    # Counted per ledger row: a partner gets a rung twice only for two deadlines (an extension).
    within = case((and_(gap >= 0, gap <= WITHIN_DAYS), 1), else_=0)
    rows = uow.session.execute(
        select(Notification.rung, func.min(Notification.email), func.count(), func.sum(within))
        .outerjoin(first, first.c.submission_id == Notification.submission_id)
        .where(Notification.cycle_id == cycle_id,
               Notification.status == NotificationStatus.SENT,
               Notification.needs_open_report.is_(True),
               Notification.audience != Audience.COORDINATORS,
               Notification.submission_id.is_not(None))
        .group_by(Notification.rung)).all()
    effects = [RungEffect(rung=r, email=e, received=n, submitted_within=w or 0)
               for r, e, n, w in rows]
    return sorted(effects, key=lambda effect: rung_order(effect.rung))


# The start page ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class CycleSummary:
    cycle: CycleHead
    counts: StateCounts
    failed_mails: int


def cycle_summaries(uow: UnitOfWork, now: datetime) -> list[CycleSummary]:
    """Every cycle of every programme, newest first, with its key figures (grouped queries)."""
    heads = _heads(uow)
    if not heads:
        return []
    ids = [head.id for head in heads]
    policies = {programme.id: policy_of(programme)
                for programme in uow.session.scalars(select(Programme))}
    owed = [str(state) for state in AWAITING_REPORT]
    # Each programme's overdue cutoff (its own calendar and time zone), compared in one query.
    cutoff = case(*[(Cycle.programme_id == pid, literal(overdue_cutoff(
        policy, local_day(now, policy)))) for pid, policy in policies.items()])
    rows = uow.session.execute(
        select(Submission.cycle_id, Submission.state, func.count(), func.sum(case(
            (and_(Submission.state.in_(owed), Submission.due_on <= cutoff), 1), else_=0)),
            func.sum(case((Submission.non_reporting.is_(True), 1), else_=0)))
        .join(Cycle, Cycle.id == Submission.cycle_id)
        .where(Submission.cycle_id.in_(ids))
        .group_by(Submission.cycle_id, Submission.state)).all()
    failed = dict(uow.session.execute(
        select(Notification.cycle_id, func.count())
        .where(Notification.cycle_id.in_(ids), Notification.status == NotificationStatus.FAILED)
        .group_by(Notification.cycle_id)).all())
    by_cycle: dict[int, dict] = {cid: {"by_state": {str(s): 0 for s in SubmissionState},
                                       "overdue": 0, "non_reporting": 0} for cid in ids}
    for cycle_id, state, count, late, flagged in rows:
        figures = by_cycle[cycle_id]
        figures["by_state"][str(SubmissionState(state))] += count
        figures["overdue"] += late or 0
        figures["non_reporting"] += flagged or 0
    return [CycleSummary(cycle=head, failed_mails=failed.get(head.id, 0), counts=StateCounts(
        partners=sum(by_cycle[head.id]["by_state"].values()), by_state=by_cycle[head.id][
            "by_state"], by_level={}, overdue=by_cycle[head.id]["overdue"],
        non_reporting=by_cycle[head.id]["non_reporting"])) for head in heads]


# Freshness ---------------------------------------------------------------------------------------

def _version_columns():
    newest = select(func.max(Event.id)).scalar_subquery()
    outbox = select(Outbox).where(Outbox.id == OUTBOX_ID)
    return (newest,
            select(func.count()).where(Event.id > newest - RECENT_EVENTS).scalar_subquery(),
            outbox.with_only_columns(Outbox.paused_since).scalar_subquery(),
            outbox.with_only_columns(Outbox.paused_until).scalar_subquery())


def overview_version(uow: UnitOfWork, cycle_id: int | None, now: datetime) -> str | None:
    """Changes whenever a figure of the page may have changed; None for an unknown cycle.

    Every change a page shows writes an event (a submission's move, a mail sent, failed or
    bounced, a contact edited or erased), so the log's newest id stands for them, with how many
    events lie in its last thousand ids (a transaction that took its id earlier but committed
    later still changes the version). Events of other cycles change it too: the figures are then
    computed once more, which is cheap beside missing a change. Every use case that changes a
    figure writes an event, the policy and a partner import included. The cycle's pause, the
    outbox's pause and the hour (the seven days ahead, what counts as overdue) are added. One
    query of primary-key lookups. ``cycle_id`` None: the start page."""
    row = uow.session.execute(_version_query(cycle_id is not None),
                              {"cycle_id": cycle_id}).one()
    if cycle_id is not None and row[4] is None:
        return None
    return _version(row[:4], bool(cycle_id is not None and row[4]), now)


@functools.cache
def _version_query(of_cycle: bool):
    columns = list(_version_columns())
    if of_cycle:
        columns.append(select(Cycle.reminders_paused).where(Cycle.id == bindparam("cycle_id"))
                       .scalar_subquery())
    return select(*columns)


def _version(values, reminders_paused: bool, now: datetime) -> str:
    newest, recent, paused_since, paused_until = values
    paused = f"{_instant_key(paused_since)}-{_instant_key(paused_until)}"
    # What counts as overdue and the seven days ahead change at midnight in the programme's
    # zone: with the hour in the version, the figures follow within the hour in any zone.
    hour = now.astimezone(UTC)
    return f"{newest or 0}.{recent}.{paused}.{hour:%Y%m%d%H}{'p' if reminders_paused else ''}"


def _instant_key(value) -> str:
    """A pause instant as text (a scalar subquery gives SQLite's stored text, PostgreSQL's
    datetime)."""
    if value is None:
        return ""
    return "".join(ch for ch in str(value) if ch.isdigit())[:14]


class VersionedCache:
    """What a page shows, kept per key until its version changes (one cache per web process):
    the overview's figures, a page of the partner table. At most ``max_entries`` keys are kept;
    the one used least recently goes first.

    Stale entries are computed by one request at a time. ``stale_ok``: while another request
    computes them, the previous entry is given at once, with its own version; the page carries
    that version, so its next poll sees the newer one and fetches the page again."""

    def __init__(self, max_entries: int = 256):
        self.max_entries = max_entries
        self._lock = threading.Lock()
        self._entries: OrderedDict[object, tuple[str, object]] = OrderedDict()
        self._computing: dict[object, threading.Lock] = {}

    def get(self, key, version: str, compute, *, stale_ok: bool = False) -> tuple[str, object]:
        """(the version of the entry given, the entry)."""
        entry = self._entries.get(key)
        if entry is not None and entry[0] == version:
            self._touch(key)
            return entry
        with self._lock:
            computing = self._computing.setdefault(key, threading.Lock())
        if not computing.acquire(blocking=not (stale_ok and entry is not None)):
            return entry
        try:
            entry = self._entries.get(key)
            if entry is None or entry[0] != version:
                entry = (version, compute())
                with self._lock:
                    self._entries[key] = entry
                    self._entries.move_to_end(key)
                    while len(self._entries) > self.max_entries:
                        oldest, _ = self._entries.popitem(last=False)
                        self._computing.pop(oldest, None)
            return entry
        finally:
            computing.release()
            with self._lock:
                if key not in self._entries:  # computing failed: keep no lock for it
                    self._computing.pop(key, None)

    def _touch(self, key):
        with self._lock:
            if key in self._entries:
                self._entries.move_to_end(key)
