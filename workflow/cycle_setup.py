"""Setting cycles up before they open: planned cycles and their dates, the programme's ladder,
a preview of every mail a planned cycle will send (nothing is written), report form versions."""
from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from datetime import date, datetime, time

from sqlalchemy import func, select

from workflow.composition import (Batch, Letterhead, NoRecipient, OutgoingMail, UnknownMailKind,
                                  compose)
from workflow.cycles import near_reporting_year, policy_of, set_policy
from workflow.errors import InvalidInput, NotFound
from workflow.events import EventKind
from workflow.models import (Contact, Cycle, CycleState, Event, MemberPart, Notification, Partner,
                             Programme, ReportTemplate, Submission)
from workflow.partners import name_contains
from workflow.policy import (MAX_LADDER_DAYS, Audience, PlannedRung, ReportingPolicy, parse_clock,
                             plan_cycle_rungs, plan_submission_rungs, policy_message)
from workflow.redaction import blank_personal_links
from workflow.report_templates import load_template
from workflow.states import SubmissionState
from workflow.uow import UnitOfWork

FIRST_YEAR, LAST_YEAR = 2000, 2100  # the reporting years this service plans for
PERSONAL_LINK_PLACEHOLDER = "/r/…"  # what a preview shows where each mail carries its own link
MAX_ID = 2**31 - 1  # the database's integer ids: a larger one is no row (and no query)


class FormProblems(InvalidInput):
    """Input a set-up form must show again: ``fields`` maps a form field to (code, parameters);
    the page words each code in its language (the message is for other callers)."""

    def __init__(self, fields: dict[str, tuple[str, dict]]):
        super().__init__("Eingaben abgelehnt: " + ", ".join(
            f"{field} ({code})" for field, (code, _) in fields.items()))
        self.fields = fields


# Planned cycles ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class CycleRow:
    id: int
    year: int
    state: str
    opens_on: date
    due_on: date
    partners: int  # submissions; for a planned cycle, the partners it would invite today


def setup_cycles(uow: UnitOfWork, programme_id: int) -> list[CycleRow]:
    """The programme's cycles, newest first, with their number of partners (one grouped scan)."""
    counts = (select(Submission.cycle_id, func.count().label("n"))
              .join(Cycle, Cycle.id == Submission.cycle_id)
              .where(Cycle.programme_id == programme_id)
              .group_by(Submission.cycle_id).subquery())
    rows = uow.session.execute(
        select(Cycle.id, Cycle.year, Cycle.state, Cycle.opens_on, Cycle.due_on,
               func.coalesce(counts.c.n, 0))
        .outerjoin(counts, counts.c.cycle_id == Cycle.id)
        .where(Cycle.programme_id == programme_id)
        .order_by(Cycle.year.desc())).all()
    invited = None
    if any(row.state == CycleState.PLANNED for row in rows):
        invited = invited_partner_count(uow, programme_id)
    return [CycleRow(id=row.id, year=row.year, state=str(CycleState(row.state)),
                     opens_on=row.opens_on, due_on=row.due_on,
                     partners=invited if row.state == CycleState.PLANNED else row[5])
            for row in rows]


def invited_partner_count(uow: UnitOfWork, programme_id: int) -> int:
    """Partners a cycle opening now would invite (group members report through their group)."""
    return uow.session.scalar(select(func.count()).select_from(Partner).where(
        *_invited(programme_id))) or 0


def _invited(programme_id: int):
    return (Partner.programme_id == programme_id, Partner.active.is_(True),
            Partner.group_id.is_(None))


def cycle_date_problems(year: int, opens_on: date, due_on: date, *,
                        today: date) -> dict[str, tuple[str, dict]]:
    """What is wrong with a planned cycle's year and dates (empty if nothing)."""
    problems: dict[str, tuple[str, dict]] = {}
    if not FIRST_YEAR <= year <= LAST_YEAR:
        problems["year"] = ("year_range", {"first": FIRST_YEAR, "last": LAST_YEAR})
    else:
        for field, day in (("opens_on", opens_on), ("due_on", due_on)):
            if not near_reporting_year(year, day):
                problems[field] = ("date_far_from_year", {"year": year})
    if "opens_on" not in problems and opens_on < today:
        problems["opens_on"] = ("opens_in_past", {})
    if "due_on" not in problems and due_on <= opens_on:
        problems["due_on"] = ("due_not_after_opening", {})
    return problems


def plan_cycle(uow: UnitOfWork, programme: Programme, year: int, opens_on: date, due_on: date, *,
               now: datetime, actor: str) -> Cycle:
    """Set up the cycle of ``year`` ahead: its dates only; it opens on its opening day."""
    today = now.astimezone(policy_of(programme).zone).date()
    problems = cycle_date_problems(year, opens_on, due_on, today=today)
    uow.lock(f"open-cycle:{programme.id}")  # as open_cycle: one cycle per year
    if "year" not in problems and uow.session.scalar(select(Cycle.id).where(
            Cycle.programme_id == programme.id, Cycle.year == year)):
        problems["year"] = ("year_taken", {"year": year})
    if problems:
        raise FormProblems(problems)
    cycle = Cycle(programme_id=programme.id, year=year, opens_on=opens_on, due_on=due_on,
                  state=CycleState.PLANNED, created_at=now)
    uow.session.add(cycle)
    uow.session.flush()
    uow.session.add(Event(programme_id=programme.id, cycle_id=cycle.id,
                          kind=EventKind.CYCLE_PLANNED, at=now, actor=actor,
                          payload={"year": year, "opens_on": opens_on.isoformat(),
                                   "due_on": due_on.isoformat()}))
    uow.session.flush()
    return cycle


def get_cycle(uow: UnitOfWork, cycle_id: int) -> Cycle:
    cycle = uow.session.get(Cycle, cycle_id) if 0 < cycle_id <= MAX_ID else None
    if cycle is None:
        raise NotFound(f"Es gibt keinen Berichtszyklus {cycle_id}.")
    return cycle


def change_planned_cycle(uow: UnitOfWork, cycle_id: int, opens_on: date, due_on: date, *,
                         now: datetime, actor: str) -> Cycle:
    """New dates for a cycle that has not opened yet (an opened cycle keeps its own)."""
    cycle = get_cycle(uow, cycle_id)
    uow.lock(f"open-cycle:{cycle.programme_id}")
    uow.session.refresh(cycle)  # as it is now that nobody can open it meanwhile
    if cycle.state != CycleState.PLANNED:
        raise FormProblems({"state": ("not_planned", {"year": cycle.year})})
    today = now.astimezone(policy_of(cycle.programme).zone).date()
    problems = cycle_date_problems(cycle.year, opens_on, due_on, today=today)
    if problems:
        raise FormProblems(problems)
    old = {"opens_on": cycle.opens_on.isoformat(), "due_on": cycle.due_on.isoformat()}
    new = {"opens_on": opens_on.isoformat(), "due_on": due_on.isoformat()}
    if old != new:
        cycle.opens_on, cycle.due_on = opens_on, due_on
        uow.session.add(Event(programme_id=cycle.programme_id, cycle_id=cycle.id,
                              kind=EventKind.CYCLE_CHANGED, at=now, actor=actor,
                              payload={"old": old, "new": new}))
        uow.session.flush()
    return cycle


# The ladder -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class LadderStep:
    """One mail of a cycle's ladder: when the send window opens for it (local time)."""

    send_at: datetime  # local time in the programme's zone
    window_end: time
    rung: str
    kind: str
    audience: str
    escalation_level: int
    flags_non_reporting: bool
    whole_cycle: bool  # once for the whole cycle (the coordinators' deadline notice)


def cycle_ladder(policy: ReportingPolicy, opens_on: date, due_on: date) -> list[LadderStep]:
    """Every mail the ladder plans for a cycle with these dates, in order."""
    steps = [(rung, False) for rung in plan_submission_rungs(policy, opens_on, due_on)]
    steps += [(rung, True) for rung in plan_cycle_rungs(policy, due_on)]
    steps.sort(key=lambda step: (step[0].due_at, step[1], step[0].seq))
    return [_step(policy, rung, whole) for rung, whole in steps]


def _step(policy: ReportingPolicy, rung: PlannedRung, whole_cycle: bool) -> LadderStep:
    return LadderStep(send_at=rung.due_at.astimezone(policy.zone), window_end=policy.window_end,
                      rung=rung.rung, kind=rung.email, audience=str(rung.audience),
                      escalation_level=rung.escalation_level,
                      flags_non_reporting=rung.flags_non_reporting, whole_cycle=whole_cycle)


LADDER_KEYS = ("reminders_before", "deadline_notice", "overdue_steps", "window_start",
               "window_end", "window_working_days_only")
# The mails an overdue step may send (each has a composer in workflow/composition.py).
OVERDUE_MAILS = ("overdue_reminder", "escalation_head", "non_reporting_notice")


def ladder_of(policy: ReportingPolicy) -> dict:
    """The ladder's part of a policy, as the policy stores it."""
    stored = policy.to_dict()
    return {key: stored[key] for key in LADDER_KEYS}


def ladder_step_rows(form) -> int:
    """How many overdue-step rows the form carries, read from the rows' own fields (a count
    sent beside them could drop rows): one past the highest row any field names."""
    return max((int(m.group(1)) for key in form if (m := STEP_FIELD.fullmatch(key))),
               default=-1) + 1


STEP_FIELD = re.compile(r"step-([0-9]{1,9})-[a-z]+")  # any field of an overdue-step row
MAX_STEP_ROWS = 40  # rows the form offers at most


def parse_ladder(form: dict[str, str], language: str = "de") -> dict:
    """The ladder from the set-up form's fields; FormProblems names each field that is wrong.

    ``form``: reminders_before ("28, 14, 7, 2"), deadline_notice ("1" when on), window_start and
    window_end ("08:00"; the end may be "24:00"), window_working_days_only ("1" when on), and
    per overdue step row i: step-i-days (empty: no step), step-i-email, step-i-audience,
    step-i-flags ("1" when on). The form always has a row (an empty one for a new step): a
    request without any is refused, not read as "no steps".
    """
    steps = ladder_step_rows(form)
    if "step-0-days" not in form or steps > MAX_STEP_ROWS or "reminders_before" not in form:
        raise InvalidInput(policy_message("form_incomplete", language))
    problems: dict[str, tuple[str, dict]] = {}
    reminders = []
    for part in form.get("reminders_before", "").replace(";", ",").split(","):
        if not part.strip():
            continue
        days = _days(part)
        if days is None:
            problems["reminders_before"] = ("days_list", {"most": MAX_LADDER_DAYS})
            break
        reminders.append(days)
    if len(set(reminders)) != len(reminders):
        problems.setdefault("reminders_before", ("days_twice", {}))
    overdue, seen = [], set()
    for index in range(steps):
        raw = form.get(f"step-{index}-days", "").strip()
        if not raw:
            continue
        days = _days(raw)
        if days is None:
            problems[f"step-{index}-days"] = ("days_one", {"most": MAX_LADDER_DAYS})
            continue
        if days in seen:
            problems[f"step-{index}-days"] = ("days_twice", {})
            continue
        seen.add(days)
        email = form.get(f"step-{index}-email", "")
        if email not in OVERDUE_MAILS:
            problems[f"step-{index}-email"] = ("choose", {})
            continue
        audience = form.get(f"step-{index}-audience", "")
        if audience not in {a.value for a in Audience}:
            problems[f"step-{index}-audience"] = ("choose", {})
            continue
        overdue.append({"after_working_days": days, "email": email, "audience": audience,
                        "flags_non_reporting": form.get(f"step-{index}-flags") == "1"})
    overdue.sort(key=lambda step: step["after_working_days"])  # the order gives the levels
    window = {}
    for key in ("window_start", "window_end"):
        value = form.get(key, "").strip()
        if not _clock_ok(value, allow_midnight=key == "window_end"):
            problems[key] = ("clock", {})
        window[key] = value
    if not problems and (parse_clock(window["window_end"])
                         <= parse_clock(window["window_start"])):
        problems["window_end"] = ("window_order", {})
    if problems:
        raise FormProblems(problems)
    return {"reminders_before": sorted(reminders, reverse=True),
            "deadline_notice": form.get("deadline_notice") == "1",
            "overdue_steps": overdue, **window,
            "window_working_days_only": form.get("window_working_days_only") == "1"}


def _days(text: str) -> int | None:
    text = text.strip()
    if not text.isdigit() or not text.isascii():
        return None
    days = int(text)
    return days if 1 <= days <= MAX_LADDER_DAYS else None


def _clock_ok(value: str, *, allow_midnight: bool) -> bool:
    return parse_clock(value) is not None and (allow_midnight or value != "24:00")


def change_ladder(uow: UnitOfWork, programme: Programme, ladder: dict, *, now: datetime,
                  actor: str, language: str = "de") -> bool:
    """Replace the ladder of the programme's policy (every cycle that opens from now on follows
    it; open cycles keep theirs). An event keeps what changed. False if nothing did. A refusal
    is worded in ``language``."""
    old = ladder_of(ReportingPolicy.from_dict(programme.policy, language=language))
    policy = set_policy(uow, programme, {**programme.policy, **ladder}, language=language)
    new = ladder_of(policy)
    changed = {key: {"old": old[key], "new": new[key]} for key in LADDER_KEYS
               if old[key] != new[key]}
    if changed:
        uow.session.add(Event(programme_id=programme.id, kind=EventKind.POLICY_CHANGED, at=now,
                              actor=actor, payload={"changes": changed}))
        uow.session.flush()
    return bool(changed)


# Preview of a planned cycle's mails (nothing is written) -----------------------------------------

@dataclass(frozen=True)
class PartnerChoice:
    id: int
    name: str


def preview_partners(uow: UnitOfWork, programme_id: int, query: str = "",
                     limit: int = 50) -> list[PartnerChoice]:
    """Partners a cycle opening now would invite, by name; ``query`` narrows them."""
    select_ = select(Partner.id, Partner.name).where(*_invited(programme_id))
    if query.strip():
        select_ = select_.where(name_contains(query.strip()))
    return [PartnerChoice(row.id, row.name) for row in uow.session.execute(
        select_.order_by(Partner.name, Partner.id).limit(limit))]


@dataclass(frozen=True)
class PreviewMail:
    """One mail as the ladder would send it: rendered, with the personal link left out."""

    step: LadderStep
    kind: str
    member: str | None  # a group member's own invitation: that member
    to: list[str]
    cc: list[str]
    language: str
    subject: str
    text: str
    html: str
    problem: str | None = None  # "no_recipient": every address of the audience is missing


class _PreviewBatch(Batch):
    """What compose() needs, for rows that exist only in this preview (never added to the
    session, so nothing is flushed)."""

    def __init__(self, uow: UnitOfWork, cycle: Cycle, policy: ReportingPolicy,
                 submission: Submission, parts: dict[int, MemberPart],
                 partners: list[Partner], contacts: dict[int, list[Contact]]):
        self.uow = uow
        self.cycles = {cycle.id: cycle}
        self.partners = {partner.id: partner for partner in partners}
        self.contacts = contacts
        self._submission, self._parts = submission, parts
        self._policies = {cycle.programme_id: policy}

    def submission_of(self, notification: Notification) -> Submission | None:
        return self._submission if notification.needs_open_report else None  # not a cycle notice

    def part_of(self, notification: Notification) -> MemberPart | None:
        return self._parts.get(id(notification))


def preview_cycle_mails(uow: UnitOfWork, letterhead: Letterhead, cycle: Cycle,
                        partner_id: int) -> tuple[PartnerChoice, list[PreviewMail]]:
    """The partner, and every mail the cycle's ladder would send about it (its members' own
    invitations and the coordinators' notices included), rendered as the worker renders them,
    by the programme's policy as it is now. Reads only: the rows it builds are never added."""
    if cycle.state != CycleState.PLANNED:
        raise NotFound("Nur ein geplanter Zyklus hat eine Vorschau.")
    session = uow.session
    partner = session.get(Partner, partner_id) if 0 < partner_id <= MAX_ID else None
    if partner is None or not (partner.programme_id == cycle.programme_id and partner.active
                               and partner.group_id is None):
        raise NotFound(f"Partner {partner_id} wäre in diesem Zyklus nicht eingeladen.")
    members = session.scalars(select(Partner).where(
        Partner.group_id == partner.id, Partner.active.is_(True))
        .order_by(Partner.name, Partner.id)).all()
    contacts: dict[int, list[Contact]] = {}
    for contact in session.scalars(select(Contact).where(
            Contact.partner_id.in_([partner.id, *(m.id for m in members)])).order_by(Contact.id)):
        contacts.setdefault(contact.partner_id, []).append(contact)
    policy = policy_of(cycle.programme)
    submission = Submission(cycle_id=cycle.id, partner_id=partner.id,
                            state=SubmissionState.INVITED, due_on=cycle.due_on,
                            escalation_level=0, non_reporting=False, version=0)
    rows: list[tuple[Notification, LadderStep, Partner | None]] = []
    parts: dict[int, MemberPart] = {}
    for step in cycle_ladder(policy, cycle.opens_on, cycle.due_on):
        rows.append((_row(cycle, step.rung, step.kind, step), step, None))
        if step.rung == "invitation":
            for member in members:
                row = _row(cycle, "member_invitation", "member_invitation", step)
                parts[id(row)] = MemberPart(partner_id=member.id, version=0)
                rows.append((row, step, member))
    batch = _PreviewBatch(uow, cycle, policy, submission, parts, [partner, *members], contacts)
    # No envelope sender of its own: a preview row has no id for a bounce to name.
    letterhead = dataclasses.replace(letterhead, return_path=lambda notification: None)
    return PartnerChoice(partner.id, partner.name), [
        _rendered(batch, letterhead, row, step, member) for row, step, member in rows]


def _row(cycle: Cycle, rung: str, kind: str, step: LadderStep) -> Notification:
    return Notification(cycle_id=cycle.id, rung=rung, email=kind,
                        audience=Audience(step.audience), escalation_level=step.escalation_level,
                        flags_non_reporting=step.flags_non_reporting,
                        needs_open_report=not step.whole_cycle, dedupe_key=f"preview:{rung}",
                        due_at=step.send_at, payload=None)


def _rendered(batch: _PreviewBatch, letterhead: Letterhead, row: Notification, step: LadderStep,
              member: Partner | None) -> PreviewMail:
    try:
        mail, _ = compose(batch, letterhead, row, as_of=row.due_at)
    except (NoRecipient, UnknownMailKind) as exc:
        return PreviewMail(step=step, kind=row.email, member=member.name if member else None,
                           to=[], cc=[], language="de", subject="", text="", html="",
                           problem="no_recipient" if isinstance(exc, NoRecipient)
                           else "unknown_kind")
    return PreviewMail(
        step=step, kind=row.email, member=member.name if member else None, to=mail.to,
        cc=mail.cc, language=mail.language, subject=mail.subject,
        text=blank_personal_links(mail.text, PERSONAL_LINK_PLACEHOLDER),
        html=blank_personal_links(mail.html, PERSONAL_LINK_PLACEHOLDER))


def as_test_mail(mail: PreviewMail, address: str, *, sender: str, message_id: str) -> OutgoingMail:
    """A previewed mail as a test to one address only, marked as a test in its subject."""
    return OutgoingMail(subject=f"[Test] {mail.subject}", text=mail.text, html=mail.html,
                        sender=sender, to=[address], cc=[], message_id=message_id,
                        language=mail.language, rung=f"test_{mail.step.rung}")


# Report form versions ---------------------------------------------------------------------------

@dataclass(frozen=True)
class TemplateRow:
    id: int
    year: int
    version: int
    title: dict
    created_at: datetime
    in_use: int  # submissions written on it


def template_versions(uow: UnitOfWork, programme_id: int) -> list[TemplateRow]:
    """The programme's report forms, newest first (a handful: one or two per year)."""
    used = (select(Submission.template_id, func.count().label("n"))
            .where(Submission.template_id.is_not(None))
            .group_by(Submission.template_id).subquery())
    rows = uow.session.execute(
        select(ReportTemplate, func.coalesce(used.c.n, 0))
        .outerjoin(used, used.c.template_id == ReportTemplate.id)
        .where(ReportTemplate.programme_id == programme_id)
        .order_by(ReportTemplate.year.desc(), ReportTemplate.version.desc())).all()
    return [TemplateRow(id=t.id, year=t.year, version=t.version,
                        title=t.definition.get("title") or {}, created_at=t.created_at,
                        in_use=n) for t, n in rows]


def load_template_version(uow: UnitOfWork, programme: Programme, data, *, now: datetime,
                          actor: str, language: str = "de") -> tuple[ReportTemplate, bool]:
    """Store a report form version (checked by load_template); True if it is new. A refusal is
    worded in ``language``."""
    before = set(uow.session.scalars(select(ReportTemplate.id).where(
        ReportTemplate.programme_id == programme.id)))
    template = load_template(uow, programme, data, language=language)
    if template.id in before:
        return template, False
    uow.session.add(Event(programme_id=programme.id, kind=EventKind.TEMPLATE_LOADED, at=now,
                          actor=actor, payload={"year": template.year,
                                                "version": template.version,
                                                "template_id": template.id}))
    uow.session.flush()
    return template, True
