"""Use cases around cycles: open a year's cycle, plan its ladder, report its state."""
from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy import and_, func, insert, literal, select

from workflow.errors import DomainError, InvalidInput, NotFound
from workflow.events import EventKind
from workflow.models import (Cycle, CycleState, Event, MemberPart, Notification,
                             NotificationStatus, Partner, Programme, Submission, UTCDateTime)
from workflow.ledger import (plan_cycle_notice, plan_member_invitations, plan_rung_for_cycle,
                             plan_submission_rung)
from workflow.policy import (ReportingPolicy, effective_deadline, month_day, plan_cycle_rungs,
                             plan_submission_rungs, policy_message)
from workflow.report_templates import template_for_new_cycle
from workflow.states import SubmissionState
from workflow.uow import UnitOfWork

log = logging.getLogger(__name__)


def get_programme(uow: UnitOfWork, slug: str | None = None) -> Programme:
    query = select(Programme).order_by(Programme.id)
    if slug:
        query = query.where(Programme.slug == slug)
    programme = uow.session.scalars(query.limit(1)).first()
    if programme is None:
        raise NotFound(f"Programm {slug!r} nicht gefunden." if slug else
                       "Es gibt noch kein Programm: zuerst `reportcycles demo` oder "
                       "`reportcycles partners import` ausführen.")
    return programme


def policy_of(programme: Programme) -> ReportingPolicy:
    return ReportingPolicy.from_dict(programme.policy)


def template_carried_from(uow: UnitOfWork, cycle: Cycle) -> int | None:
    """The year whose report template this cycle took over when it opened, if any."""
    payload = uow.session.scalar(select(Event.payload).where(
        Event.cycle_id == cycle.id, Event.kind == EventKind.TEMPLATE_CARRIED_FORWARD).limit(1))
    return payload["from_year"] if payload else None


def find_cycle(uow: UnitOfWork, programme: Programme, year: int) -> Cycle:
    cycle = uow.session.scalars(select(Cycle).where(Cycle.programme_id == programme.id,
                                                    Cycle.year == year)).first()
    if cycle is None:
        years = uow.session.scalars(select(Cycle.year).where(Cycle.programme_id == programme.id)
                                    .order_by(Cycle.year)).all()
        known = ", ".join(map(str, years)) or "keine"
        raise NotFound(f"Für {year} gibt es keinen Berichtszyklus (vorhanden: {known}).")
    return cycle


def near_reporting_year(year: int, day: date) -> bool:
    """A cycle's opening and deadline lie in its reporting year, the year before or after."""
    return year - 1 <= day.year <= year + 1


def open_cycle(uow: UnitOfWork, programme: Programme, year: int, *, now: datetime,
               opens_on: date | None = None, due_on: date | None = None,
               actor: str = "system") -> Cycle:
    """Open the cycle of ``year``: one submission per active partner and its whole ladder planned.

    A cycle planned ahead for the year opens with its own dates (unless others are given).
    A cycle never invites to a form that does not exist: without a template for the year, the
    latest earlier one is carried forward (an event says so), and with none at all it refuses.
    """
    if not 2000 <= year <= 2100:
        raise InvalidInput(f"Ungültiges Berichtsjahr: {year}.")
    policy = policy_of(programme)
    uow.lock(f"open-cycle:{programme.id}")
    planned = uow.session.scalars(select(Cycle).where(Cycle.programme_id == programme.id,
                                                      Cycle.year == year)).first()
    if planned is not None and planned.state != CycleState.PLANNED:
        raise InvalidInput(f"Der Berichtszyklus {year} ist bereits geöffnet.")
    opens_on = opens_on or (planned.opens_on if planned else month_day(policy.cycle_opens, year))
    due_on = due_on or (planned.due_on if planned else month_day(policy.cycle_due, year))
    for day in (opens_on, due_on):
        if not near_reporting_year(year, day):
            raise InvalidInput(f"Das Datum {day:%d.%m.%Y} muss im Berichtsjahr {year}, im Jahr "
                               "davor oder im Jahr danach liegen.")
    if due_on <= opens_on:
        raise InvalidInput(f"Die Frist ({due_on:%d.%m.%Y}) muss nach der Öffnung "
                           f"({opens_on:%d.%m.%Y}) liegen.")
    session = uow.session
    template, carried_from = template_for_new_cycle(uow, programme, year, now=now)
    if planned is None:
        cycle = Cycle(programme_id=programme.id, year=year, opens_on=opens_on, due_on=due_on)
        session.add(cycle)
    else:
        cycle = planned
        cycle.opens_on, cycle.due_on, cycle.state = opens_on, due_on, CycleState.OPEN
    session.flush()
    if carried_from is not None:
        session.add(Event(cycle_id=cycle.id, kind=EventKind.TEMPLATE_CARRIED_FORWARD, at=now,
                          actor=actor, payload={"from_year": carried_from,
                                                "template_id": template.id}))

    # Group members report through their group partner: one submission for the group.
    session.execute(insert(Submission).from_select(
        ["cycle_id", "partner_id", "state", "due_on", "escalation_level", "non_reporting",
         "version", "created_at", "updated_at"],
        select(literal(cycle.id), Partner.id, literal(SubmissionState.INVITED.value),
               literal(due_on), literal(0), literal(False), literal(0), _instant(now), _instant(now))
        .where(Partner.programme_id == programme.id, Partner.active.is_(True),
               Partner.group_id.is_(None))))
    partners = session.scalar(select(func.count()).select_from(Submission)
                              .where(Submission.cycle_id == cycle.id))
    if not partners:
        raise InvalidInput("Es gibt keine aktiven Partner: zuerst Partner importieren.")
    session.execute(insert(Event).from_select(
        ["cycle_id", "submission_id", "kind", "at", "actor"],
        select(literal(cycle.id), Submission.id, literal(EventKind.INVITED.value), _instant(now),
               literal(actor)).where(Submission.cycle_id == cycle.id)))
    rungs = plan_submission_rungs(policy, opens_on, due_on)
    for rung in rungs:
        plan_rung_for_cycle(uow, cycle.id, due_on, rung, now)
    _create_member_parts(uow, cycle)
    plan_member_invitations(uow, cycle.id, rungs[0], now)
    for rung in plan_cycle_rungs(policy, due_on):
        plan_cycle_notice(uow, cycle.id, due_on, rung, now)
    session.add(Event(cycle_id=cycle.id, kind=EventKind.CYCLE_OPENED, at=now, actor=actor,
                      payload={"opens_on": opens_on.isoformat(), "due_on": due_on.isoformat(),
                               "partners": partners}))
    session.flush()
    return cycle


def _instant(value: datetime):
    return literal(value, UTCDateTime())


def _create_member_parts(uow: UnitOfWork, cycle: Cycle):
    """Each active member of a group partner gets its own part of the group's report."""
    uow.session.execute(insert(MemberPart).from_select(
        ["submission_id", "partner_id", "version"],
        select(Submission.id, Partner.id, literal(0))
        .join(Partner, Partner.group_id == Submission.partner_id)
        .where(Submission.cycle_id == cycle.id, Partner.active.is_(True))))


def plan_rungs_for_submission(uow: UnitOfWork, submission: Submission, policy: ReportingPolicy,
                              *, after: datetime):
    """Plan the ladder of one submission for its current deadline, for rungs still in the future."""
    for rung in plan_submission_rungs(policy, submission.cycle.opens_on, submission.due_on,
                                      include_invitation=False):
        if rung.due_at > after:
            plan_submission_rung(uow, submission, rung, after)


REPORTED_STATES = (SubmissionState.SUBMITTED, SubmissionState.ACCEPTED)


def submitted_share(by_state: dict[str, int]) -> float:
    """The share of partners who reported: submitted or accepted, of all who were not exempted."""
    done = sum(by_state.get(str(state), 0) for state in REPORTED_STATES)
    expected = sum(by_state.values()) - by_state.get(str(SubmissionState.EXEMPTED), 0)
    return done / expected if expected else 0.0


@dataclass
class CycleStatus:
    year: int
    opens_on: date
    due_on: date
    effective_due_on: date
    state: str
    partners: int
    by_state: dict[str, int]
    escalation_levels: dict[int, int]
    non_reporting: int
    notifications: dict[str, int]

    @property
    def submitted_share(self) -> float:
        return submitted_share(self.by_state)

    def to_dict(self) -> dict:
        return {"year": self.year, "opens_on": self.opens_on.isoformat(),
                "due_on": self.due_on.isoformat(),
                "effective_due_on": self.effective_due_on.isoformat(), "state": self.state,
                "partners": self.partners, "by_state": self.by_state,
                "submitted_share": round(self.submitted_share, 4),
                "escalation_levels": {str(k): v for k, v in self.escalation_levels.items()},
                "non_reporting": self.non_reporting, "notifications": self.notifications}


def cycle_status(uow: UnitOfWork, cycle: Cycle) -> CycleStatus:
    """Counts per state for one cycle, from three grouped queries."""
    session = uow.session
    by_state = dict(session.execute(
        select(Submission.state, func.count()).where(Submission.cycle_id == cycle.id)
        .group_by(Submission.state)).all())
    levels = dict(session.execute(
        select(Submission.escalation_level, func.count())
        .where(Submission.cycle_id == cycle.id, Submission.escalation_level > 0)
        .group_by(Submission.escalation_level)).all())
    non_reporting = session.scalar(select(func.count()).select_from(Submission).where(
        and_(Submission.cycle_id == cycle.id, Submission.non_reporting.is_(True))))
    notifications = dict(session.execute(
        select(Notification.status, func.count()).where(Notification.cycle_id == cycle.id)
        .group_by(Notification.status)).all())
    states = Counter({str(SubmissionState(k)): v for k, v in by_state.items()})
    policy = policy_of(cycle.programme)
    return CycleStatus(
        year=cycle.year, opens_on=cycle.opens_on, due_on=cycle.due_on,
        effective_due_on=effective_deadline(policy, cycle.due_on), state=str(cycle.state),
        partners=sum(states.values()),
        by_state={str(s): states.get(str(s), 0) for s in SubmissionState},
        escalation_levels=dict(sorted(levels.items())), non_reporting=non_reporting or 0,
        notifications={str(NotificationStatus(k)): v for k, v in sorted(notifications.items())})


def open_due_cycles(uow: UnitOfWork, now: datetime) -> list[Cycle]:
    """Open every cycle due by now (idempotent): a cycle planned ahead on its own opening day,
    else this year's cycle of every programme whose policy says it opens by now.

    A late run opens a cycle as of today (reminders already past are left out). A cycle whose
    deadline has passed is left to a coordinator. A programme whose cycle cannot open (no report
    template, say) is logged and left closed; it never keeps the other programmes' cycles from
    opening, nor the sweep that follows.
    """
    opened = []
    for programme in uow.session.scalars(select(Programme).order_by(Programme.id)).all():
        policy = policy_of(programme)
        today = now.astimezone(policy.zone).date()
        planned = uow.session.execute(select(Cycle.year, Cycle.opens_on).where(
            Cycle.programme_id == programme.id, Cycle.state == CycleState.PLANNED,
            Cycle.opens_on <= today, Cycle.due_on > today).order_by(Cycle.year)).all()
        for year, opens_on in planned:
            cycle = _open_on_schedule(uow, programme, year, now,
                                      opens_on=today if today > opens_on else None)
            if cycle is not None:
                opened.append(cycle)
        if not policy.auto_open or today < month_day(policy.cycle_opens, today.year):
            continue
        uow.lock(f"open-cycle:{programme.id}")
        if uow.session.scalar(select(Cycle.id).where(Cycle.programme_id == programme.id,
                                                     Cycle.year == today.year)):
            continue  # open already, or planned ahead with dates of its own
        if month_day(policy.cycle_due, today.year) <= today:
            continue  # the whole cycle would already be over: a coordinator opens it by hand
        cycle = _open_on_schedule(uow, programme, today.year, now, opens_on=today
                                  if today > month_day(policy.cycle_opens, today.year) else None)
        if cycle is not None:
            opened.append(cycle)
    return opened


def _open_on_schedule(uow: UnitOfWork, programme: Programme, year: int, now: datetime, *,
                      opens_on: date | None) -> Cycle | None:
    # Counted as open_cycle counts: group members report through their group partner.
    if not uow.session.scalar(select(func.count()).select_from(Partner).where(
            Partner.programme_id == programme.id, Partner.active.is_(True),
            Partner.group_id.is_(None))):
        return None
    try:
        with uow.session.begin_nested():  # a refusal undoes only this programme's part
            return open_cycle(uow, programme, year, now=now, opens_on=opens_on, actor="scheduler")
    except DomainError as exc:
        log.warning("cycle %s of programme %r not opened: %s", year, programme.slug, exc)
        return None


def set_policy(uow: UnitOfWork, programme: Programme, settings: dict, *,
               language: str = "de") -> ReportingPolicy:
    """Replace the programme's reporting policy; keys left out keep their defaults. A refusal
    is worded in ``language``.

    Cycles already open keep the ladder planned when they opened.
    """
    from workflow.composition import mail_kinds  # composition reads cycles: import on use
    policy = ReportingPolicy.from_dict(settings, language=language)
    unknown = sorted({step.email for step in policy.overdue_steps} - mail_kinds())
    if unknown:
        raise InvalidInput(policy_message("unknown_mail", language, unknown=", ".join(unknown),
                                          known=", ".join(sorted(mail_kinds()))))
    programme.policy = policy.to_dict()
    uow.session.flush()
    return policy


def replace_policy(uow: UnitOfWork, programme: Programme, settings: dict, *, now: datetime,
                   actor: str) -> dict:
    """``set_policy``, and an event keeps what changed (a page showing figures that depend on
    the policy, such as who is overdue, then shows them anew). Returns the changes."""
    old = ReportingPolicy.from_dict(programme.policy).to_dict()
    new = set_policy(uow, programme, settings).to_dict()
    changes = {key: {"old": old.get(key), "new": value} for key, value in new.items()
               if old.get(key) != value}
    if changes:
        uow.session.add(Event(programme_id=programme.id, kind=EventKind.POLICY_CHANGED, at=now,
                              actor=actor, payload={"changes": changes}))
        uow.session.flush()
    return changes
