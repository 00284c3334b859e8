"""The reporting policy of a programme and the pure schedule rules derived from it."""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo

from workflow.calendar import WorkingCalendar, calendar_for
from workflow.errors import InvalidInput
from workflow.wording import worded


class Audience(StrEnum):
    CONTACT = "contact"  # the partner's reporting contacts
    CONTACT_AND_DEPUTY = "contact_and_deputy"  # reporting contacts, deputies in copy
    HEAD = "head"  # head of the organisation, reporting contacts in copy
    COORDINATORS = "coordinators"  # the programme's coordinators


@dataclass(frozen=True)
class OverdueStep:
    after_working_days: int
    email: str
    audience: Audience
    flags_non_reporting: bool = False


DEFAULT_OVERDUE_STEPS = (
    OverdueStep(3, "overdue_reminder", Audience.CONTACT),
    OverdueStep(10, "overdue_reminder", Audience.CONTACT_AND_DEPUTY),
    OverdueStep(20, "escalation_head", Audience.HEAD),
    OverdueStep(30, "non_reporting_notice", Audience.COORDINATORS, flags_non_reporting=True),
)


# Why a reporting policy (the ladder page's, or a TOML file's) is refused, in the page's language
# (German on the command line). The setting names are the policy's own and stay as they are.
POLICY_MESSAGES = {
    "not_a_table": {"de": "Die Berichtsregel muss eine Tabelle von Einstellungen sein.",
                    "en": "The reporting rule must be a table of settings."},
    "unknown_settings": {"de": "Unbekannte Einstellungen in der Berichtsregel: {keys}",
                         "en": "Unknown settings in the reporting rule: {keys}"},
    "invalid": {"de": "Ungültige Berichtsregel: {reason}",
                "en": "Invalid reporting rule: {reason}"},
    "needs_clock": {"de": "{key} braucht eine Uhrzeit wie \"08:00\"",
                    "en": "{key} needs a time like \"08:00\""},
    "digest_needs_clock": {"de": "digest_at braucht eine Uhrzeit wie \"07:00\" oder \"off\"",
                           "en": "digest_at needs a time like \"07:00\" or \"off\""},
    "window_order": {"de": "das Versandfenster endet vor seinem Beginn.",
                     "en": "the sending window ends before it begins."},
    "unknown_mail": {"de": "Unbekannte Mail in der Berichtsregel: {unknown} (bekannt: {known}).",
                     "en": "Unknown email in the reporting rule: {unknown} (known: {known})."},
    "needs_yes_no": {"de": "{key} muss true oder false sein.",
                     "en": "{key} must be true or false."},
    "whole_number": {"de": "{key} muss eine ganze Zahl zwischen {low} und {high} sein.",
                     "en": "{key} must be a whole number between {low} and {high}."},
    "days_twice": {"de": "{key}: jede Zahl von Tagen nur einmal.",
                   "en": "{key}: each number of days only once."},
    "every_year": {"de": "{key} muss ein Tag sein, den es in jedem Jahr gibt (MM-TT).",
                   "en": "{key} must be a day that every year has (MM-DD)."},
    "due_after_opening": {"de": "cycle_due muss im Jahr nach cycle_opens liegen.",
                          "en": "cycle_due must come after cycle_opens in the year."},
    "form_incomplete": {"de": "Das Formular ist unvollständig angekommen; nichts wurde geändert. "
                              "Bitte laden Sie die Seite neu.",
                        "en": "The form arrived incomplete; nothing was changed. Please reload "
                              "the page."},
    "unknown_holidays": {"de": "Keine Feiertage bekannt für {region}.",
                         "en": "No public holidays known for {region}."},
    "step_needs": {"de": "Jede Stufe in overdue_steps ist eine Tabelle mit after_working_days, "
                         "email und audience (flags_non_reporting ist freiwillig); "
                         "Stufe {n}: {problem}.",
                   "en": "Each step in overdue_steps is a table of after_working_days, email "
                         "and audience (flags_non_reporting is optional); step {n}: {problem}."},
    "step_not_table": {"de": "keine Tabelle", "en": "not a table"},
    "step_missing": {"de": "es fehlt {keys}", "en": "{keys} missing"},
    "step_unknown": {"de": "unbekannt: {keys}", "en": "unknown: {keys}"},
    "step_audience": {"de": "audience muss eines von {known} sein, nicht \"{value}\".",
                      "en": "audience must be one of {known}, not \"{value}\"."},
}

MAX_LADDER_DAYS = 250  # working days: about a year
# Whole-number settings and the range each may take.
NUMBER_RANGES = {"link_grace_days": (0, 3650), "min_gap_working_days": (0, MAX_LADDER_DAYS),
                 "retention_cycles": (1, 100)}
YES_NO_SETTINGS = ("window_working_days_only", "deadline_notice", "roll_deadline_to_working_day",
                   "auto_open")


def policy_message(key: str, language: str = "de", /, **values) -> str:
    return worded(POLICY_MESSAGES, key, language, **values)


CLOCK = re.compile(r"\d\d:\d\d(:\d\d)?")


def parse_clock(value) -> time | None:
    """A time of day written "HH:MM" ("24:00": the end of the day); None if it is not one."""
    if isinstance(value, time):
        return value
    if value == "24:00":
        return END_OF_DAY
    if not isinstance(value, str) or not CLOCK.fullmatch(value):
        return None
    try:
        return time.fromisoformat(value)
    except ValueError:  # "25:00"
        return None


STEP_KEYS = {"after_working_days", "email", "audience", "flags_non_reporting"}


def overdue_step(step, n: int, say) -> OverdueStep:
    """One step of the ladder after the deadline, as a policy table writes it."""
    if not isinstance(step, dict):
        raise ValueError(say("step_needs", n=n, problem=say("step_not_table")))
    missing = sorted({"after_working_days", "email", "audience"} - set(step))
    unknown = sorted(set(step) - STEP_KEYS)
    if missing or unknown:
        problems = ([say("step_missing", keys=", ".join(missing))] if missing else []) \
            + ([say("step_unknown", keys=", ".join(unknown))] if unknown else [])
        raise ValueError(say("step_needs", n=n, problem="; ".join(problems)))
    try:
        audience = Audience(step["audience"])
    except ValueError:
        raise ValueError(say("step_audience", value=step["audience"],
                             known=", ".join(a.value for a in Audience))) from None
    flags = step.get("flags_non_reporting", False)
    if not isinstance(flags, bool):
        raise ValueError(say("needs_yes_no", key="flags_non_reporting"))
    if not isinstance(step["email"], str) or not step["email"]:
        raise ValueError(say("step_needs", n=n, problem=say("step_missing", keys="email")))
    return OverdueStep(ladder_days(step["after_working_days"], "after_working_days", say),
                       step["email"], audience, flags)


def ladder_days(value, key: str, say) -> int:
    """A number of (working) days on the ladder: a whole number from 1 to MAX_LADDER_DAYS."""
    if isinstance(value, bool) or not isinstance(value, int) \
            or not 1 <= value <= MAX_LADDER_DAYS:
        raise ValueError(say("whole_number", key=key, low=1, high=MAX_LADDER_DAYS))
    return value


@dataclass(frozen=True)
class ReportingPolicy:
    timezone: str = "Europe/Berlin"
    holiday_country: str = "DE"
    holiday_subdivision: str | None = "NW"
    # Mails leave only inside this local window ...
    window_start: time = time(8, 0)
    window_end: time = time(10, 0)
    # ... and only on working days unless this is False.
    window_working_days_only: bool = True
    reminders_before: tuple[int, ...] = (28, 14, 7, 2)
    deadline_notice: bool = True
    overdue_steps: tuple[OverdueStep, ...] = DEFAULT_OVERDUE_STEPS
    # A deadline on a weekend or holiday moves to the next working day.
    roll_deadline_to_working_day: bool = True
    # The yearly cycle: month-day on which it opens and is due (used by the scheduler).
    cycle_opens: str = "02-01"
    cycle_due: str = "04-30"
    auto_open: bool = True
    # Personal links stay valid this many days after the cycle's deadline.
    link_grace_days: int = 90
    # At least this many working days between two ladder mails to the same partner (a re-planned
    # ladder or a catch-up must not write on consecutive days); answers and notices are exempt.
    min_gap_working_days: int = 3
    # Data care: send logs (the copies of mails, refusals, errors) and personal links of cycles
    # older than the newest this many are blanked or deleted by the scheduler, and so are the
    # contacts of partners that left and took part in none of those cycles.
    retention_cycles: int = 3
    # One digest a day to the coordinators at this local time (what happened since the last one);
    # None (written "off"): no digest.
    digest_at: time | None = time(7, 0)

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def calendar(self) -> WorkingCalendar:
        return calendar_for(self.holiday_country, self.holiday_subdivision)

    def to_dict(self) -> dict:
        data = asdict(self)
        data["window_start"] = _clock(self.window_start)
        data["window_end"] = _clock(self.window_end)
        data["digest_at"] = _clock(self.digest_at) if self.digest_at else DIGEST_OFF
        data["reminders_before"] = list(self.reminders_before)
        data["overdue_steps"] = [
            {**asdict(step), "audience": step.audience.value} for step in self.overdue_steps]
        return data

    @classmethod
    def from_dict(cls, data: dict | None, *, language: str = "de") -> "ReportingPolicy":
        """Build a policy from a mapping (JSON column or TOML file); unknown keys are an error.
        A refusal is worded in ``language``."""
        def say(key: str, /, **values) -> str:
            return policy_message(key, language, **values)

        def invalid(reason) -> InvalidInput:
            return InvalidInput(say("invalid", reason=reason))

        if not isinstance(data, dict | None):
            raise InvalidInput(say("not_a_table"))
        data = dict(data or {})
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(data) - known)
        if unknown:
            raise InvalidInput(say("unknown_settings", keys=", ".join(unknown)))
        try:
            for key in ("window_start", "window_end"):
                if key in data:
                    data[key] = parse_clock(data[key])
                    if data[key] is None:
                        raise ValueError(say("needs_clock", key=key))
            if data.get("digest_at") in (None, False, "", DIGEST_OFF):
                data["digest_at"] = None
            else:
                data["digest_at"] = parse_clock(data["digest_at"])
                if data["digest_at"] in (None, END_OF_DAY):
                    raise ValueError(say("digest_needs_clock"))
            if "reminders_before" in data:
                days = [ladder_days(n, "reminders_before", say) for n in data["reminders_before"]]
                if len(set(days)) != len(days):
                    raise ValueError(say("days_twice", key="reminders_before"))
                data["reminders_before"] = tuple(sorted(days, reverse=True))
            if "overdue_steps" in data:
                if not isinstance(data["overdue_steps"], list | tuple):
                    raise ValueError(say("step_needs", n=1, problem=say("step_not_table")))
                data["overdue_steps"] = tuple(overdue_step(step, n, say) for n, step
                                              in enumerate(data["overdue_steps"], start=1))
                after = [step.after_working_days for step in data["overdue_steps"]]
                if len(set(after)) != len(after):
                    raise ValueError(say("days_twice", key="after_working_days"))
            policy = cls(**data)
            ZoneInfo(policy.timezone)
            for key in ("cycle_opens", "cycle_due"):
                try:
                    month_day(getattr(policy, key), 2001)  # not a leap year: no 02-29
                except (ValueError, AttributeError):
                    raise ValueError(say("every_year", key=key)) from None
            if month_day(policy.cycle_due, 2001) <= month_day(policy.cycle_opens, 2001):
                raise ValueError(say("due_after_opening"))
            for key in YES_NO_SETTINGS:
                if not isinstance(getattr(policy, key), bool):
                    raise ValueError(say("needs_yes_no", key=key))
            for key, (low, high) in NUMBER_RANGES.items():
                value = getattr(policy, key)
                if isinstance(value, bool) or not isinstance(value, int) \
                        or not low <= value <= high:
                    raise ValueError(say("whole_number", key=key, low=low, high=high))
            try:
                policy.calendar.is_working_day(date(2001, 1, 2))
            except (NotImplementedError, KeyError, LookupError):
                region = "-".join(filter(None, (str(policy.holiday_country),
                                                str(policy.holiday_subdivision or ""))))
                raise ValueError(say("unknown_holidays", region=region)) from None
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise invalid(exc) from None
        if policy.window_end <= policy.window_start:
            raise invalid(say("window_order"))
        return policy

    def with_changes(self, **changes) -> "ReportingPolicy":
        return replace(self, **changes)


DIGEST_OFF = "off"
END_OF_DAY = time.max  # a window that lasts until midnight; written "24:00"


def _clock(value: time) -> str:
    return "24:00" if value == END_OF_DAY else value.strftime("%H:%M")


def month_day(value: str, year: int) -> date:
    month, day = (int(part) for part in value.split("-"))
    return date(year, month, day)


@dataclass(frozen=True, order=True)
class PlannedRung:
    """One step of the ladder for one submission (or, for the deadline notice, one cycle)."""

    seq: int  # order within the ladder: a later rung supersedes an earlier one when both are due
    rung: str  # stable name, part of the ledger's unique key
    email: str  # template folder in templates/email/
    send_on: date
    due_at: datetime = field(compare=False)  # UTC instant: window start on send_on, local time
    audience: Audience = field(compare=False, default=Audience.CONTACT)
    escalation_level: int = field(compare=False, default=0)
    flags_non_reporting: bool = field(compare=False, default=False)


INVITATION = "invitation"
DEADLINE_NOTICE = "deadline_notice"


def effective_deadline(policy: ReportingPolicy, due_on: date) -> date:
    if policy.roll_deadline_to_working_day:
        return policy.calendar.on_or_after(due_on)
    return due_on


def send_instant(policy: ReportingPolicy, day: date) -> datetime:
    """The UTC instant at which mails for ``day`` may first leave (window start, local time)."""
    return datetime.combine(day, policy.window_start, tzinfo=policy.zone).astimezone(UTC)


def in_send_window(policy: ReportingPolicy, now: datetime) -> bool:
    local = now.astimezone(policy.zone)
    if policy.window_working_days_only and not policy.calendar.is_working_day(local.date()):
        return False
    return policy.window_start <= local.time().replace(tzinfo=None) < policy.window_end


def next_window_start(policy: ReportingPolicy, now: datetime) -> datetime:
    """The first instant at or after ``now`` inside the send window (UTC)."""
    if in_send_window(policy, now):
        return now
    day = now.astimezone(policy.zone).date()
    for _ in range(400):
        start = send_instant(policy, day)
        if start >= now and (not policy.window_working_days_only
                             or policy.calendar.is_working_day(day)):
            return start
        day += timedelta(days=1)
    raise ValueError("no send window within a year")  # only with a broken calendar


def plan_submission_rungs(policy: ReportingPolicy, opens_on: date, due_on: date,
                          include_invitation: bool = True) -> list[PlannedRung]:
    """Every mail the ladder plans for one submission, in order.

    Reminders that would fall on or before the day the invitation goes out are left out: a partner
    invited ten days before the deadline gets the invitation, not a "28 days left" reminder.
    """
    cal = policy.calendar
    deadline = effective_deadline(policy, due_on)
    invite_on = cal.on_or_after(opens_on) if policy.window_working_days_only else opens_on
    rungs: list[tuple[str, str, date, Audience, int, bool]] = []
    if include_invitation:
        rungs.append((INVITATION, "invitation", invite_on, Audience.CONTACT, 0, False))
    for days in policy.reminders_before:
        send_on = cal.add_working_days(deadline, -days)
        if send_on > invite_on:
            rungs.append((f"reminder-{days}", "reminder", send_on, Audience.CONTACT, 0, False))
    for level, step in enumerate(policy.overdue_steps, start=1):
        send_on = cal.add_working_days(deadline, step.after_working_days)
        rungs.append((f"overdue-{step.after_working_days}", step.email, send_on, step.audience,
                      level, step.flags_non_reporting))
    rungs.sort(key=lambda r: r[2])
    return [PlannedRung(seq, name, email, day, send_instant(policy, day), audience, level, flags)
            for seq, (name, email, day, audience, level, flags) in enumerate(rungs)]


def plan_cycle_rungs(policy: ReportingPolicy, due_on: date) -> list[PlannedRung]:
    if not policy.deadline_notice:
        return []
    day = effective_deadline(policy, due_on)
    return [PlannedRung(0, DEADLINE_NOTICE, "deadline_notice", day, send_instant(policy, day),
                        Audience.COORDINATORS)]


DIGEST = "digest"


def digest_rung(policy: ReportingPolicy, day: date) -> PlannedRung | None:
    """The coordinators' digest of ``day``, at the policy's hour (any day: news do not wait)."""
    if policy.digest_at is None:
        return None
    instant = datetime.combine(day, policy.digest_at, tzinfo=policy.zone).astimezone(UTC)
    return PlannedRung(0, DIGEST, DIGEST, day, instant, Audience.COORDINATORS)


@dataclass(frozen=True)
class DueRung:
    notification_id: int
    submission_id: int | None
    seq: int
    member_part_id: int | None = None  # a group member's own mails form a ladder of their own


def choose_rungs_to_send(due: list[DueRung]) -> tuple[list[int], list[int]]:
    """Of the rungs due now, send only the latest per submission; the others are skipped.

    Cycle-level rungs (no submission) are all sent.
    """
    latest: dict[tuple[int, int | None], DueRung] = {}
    send: list[int] = []
    for rung in due:
        if rung.submission_id is None:
            send.append(rung.notification_id)
            continue
        ladder = (rung.submission_id, rung.member_part_id)
        current = latest.get(ladder)
        if current is None or rung.seq > current.seq:
            latest[ladder] = rung
    chosen = {r.notification_id for r in latest.values()}
    send.extend(sorted(chosen))
    skip = sorted(r.notification_id for r in due
                  if r.submission_id is not None and r.notification_id not in chosen)
    return send, skip
