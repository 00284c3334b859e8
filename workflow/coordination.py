"""The coordinators' actions on a partner or a cycle, each one use case and one transaction:
exempt and undo, resend the link, escalate now, pause and resume reminders, edit contacts, and
what the pages of these actions show. Accepting and returning live in ``review``, deciding an
extension in ``requests``; the ledger is changed only through ``ledger``."""
from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy import func, select

from workflow.cycles import policy_of
from workflow.errors import DomainError, InvalidInput, NotFound
from workflow.events import EventKind
from workflow.ledger import next_ladder_mail, queue_immediate, queue_now
from workflow.models import (Contact, ContactRole, Cycle, Event, ExtensionRequest,
                             ExtensionStatus, Notification, Partner, Submission, utcnow)
from workflow.policy import effective_deadline
from workflow.addresses import is_address
from workflow.report_form import text_in
from workflow.report_templates import template_of
from workflow.states import Action, SubmissionState, awaits_report
from workflow.submissions import apply_action, load_submission, record
from workflow.uow import UnitOfWork

MAX_REASON = 2000
MAX_BULK = 500  # one confirmation page, one transaction


class NotNow(DomainError):
    """The action does not fit the partner's (or cycle's) present state."""


# Exempt for this year, and undo -------------------------------------------------------------------

def exempt(uow: UnitOfWork, submission_id: int, *, reason: str, now: datetime,
           actor: str) -> Submission:
    """The partner need not report this year; its owed mails are cancelled."""
    reason = (reason or "").strip()
    if not reason:
        raise InvalidInput("Bitte nennen Sie den Grund der Befreiung.")
    if len(reason) > MAX_REASON:
        raise InvalidInput(f"Der Grund ist zu lang (höchstens {MAX_REASON} Zeichen).")
    submission = load_submission(uow, submission_id, for_update=True)
    if not awaits_report(submission.state):
        raise NotNow(_state_refusal(submission.state))
    return apply_action(uow, submission.id, Action.EXEMPT, now=now, actor=actor, reason=reason)


def unexempt(uow: UnitOfWork, submission_id: int, *, now: datetime, actor: str) -> Submission:
    """Take the exemption back: the partner owes the report again, the ladder from today on."""
    submission = load_submission(uow, submission_id, for_update=True)
    if submission.state != SubmissionState.EXEMPTED:
        raise NotNow("Dieser Partner ist nicht befreit.")
    return apply_action(uow, submission.id, Action.REVOKE_EXEMPTION, now=now, actor=actor)


def _state_refusal(state) -> str:
    if state == SubmissionState.EXEMPTED:
        return "Dieser Partner ist bereits befreit."
    return "Der Bericht ist bereits eingereicht; eine Befreiung ist nicht mehr möglich."


# Resend the link ---------------------------------------------------------------------------------

def resend_link(uow: UnitOfWork, submission_id: int, *, now: datetime,
                actor: str) -> Notification:
    """A new mail with a fresh personal link (composed at send time); older links keep working."""
    submission = load_submission(uow, submission_id, for_update=True)
    if submission.state == SubmissionState.EXEMPTED:
        raise NotNow("Dieser Partner ist befreit; er braucht keinen Link.")
    row = queue_immediate(uow, submission, "link_resent", now, occasion=secrets.token_hex(8),
                          wall=utcnow())
    record(uow, submission, EventKind.LINK_RESENT, now, actor, notification_id=row.id)
    return row


# Escalate now ------------------------------------------------------------------------------------

def escalate_now(uow: UnitOfWork, submission_id: int, *, now: datetime,
                 actor: str) -> Notification:
    """The next planned mail of the ladder leaves now instead of on its day.

    It is queued at once rather than made due for the next sweep: the sweep would hold it for
    the minimum gap between two reminders, and the coordinator asked for it now. The send-time
    check still applies (the report still owed, the send window for mails to partners)."""
    submission = load_submission(uow, submission_id, for_update=True)
    if not awaits_report(submission.state):
        raise NotNow("Der Bericht ist nicht mehr offen; es gibt nichts zu eskalieren.")
    if submission.reminders_paused or submission.cycle.reminders_paused:
        raise NotNow("Die Erinnerungen sind pausiert; bitte zuerst fortsetzen.")
    row = next_ladder_mail(uow, submission.id)
    if row is None:
        raise NotNow("Keine weitere Stufe geplant: es gibt nichts mehr zu eskalieren.")
    queue_now(uow, row, now, wall=utcnow())
    if row.escalation_level > submission.escalation_level:
        submission.escalation_level = row.escalation_level
    if row.flags_non_reporting and not submission.non_reporting:
        submission.non_reporting = True
        record(uow, submission, EventKind.FLAGGED_NON_REPORTING, now, actor, rung=row.rung)
    record(uow, submission, EventKind.ESCALATED, now, actor, level=submission.escalation_level,
           rung=row.rung, by_coordinator=True)
    return row


# Pause and resume reminders ----------------------------------------------------------------------

def pause_reminders(uow: UnitOfWork, submission_id: int, *, now: datetime, actor: str,
                    paused: bool = True) -> Submission:
    """Stop (or let go again) one partner's reminders; after resuming, the sweep catches up."""
    submission = load_submission(uow, submission_id, for_update=True)
    if paused and not awaits_report(submission.state):
        raise NotNow("Der Bericht ist nicht mehr offen; es gibt keine Erinnerungen zu pausieren.")
    if submission.reminders_paused == paused:
        raise NotNow("Die Erinnerungen sind bereits pausiert." if paused else
                     "Die Erinnerungen sind nicht pausiert.")
    if paused:
        uow.wait_for_mail_in_flight(submission.id)  # no reminder after the pause's commit
    submission.reminders_paused = paused
    record(uow, submission, EventKind.REMINDERS_PAUSED if paused else EventKind.REMINDERS_RESUMED,
           now, actor, scope="submission")
    uow.session.flush()
    return submission


def resume_reminders(uow: UnitOfWork, submission_id: int, *, now: datetime,
                     actor: str) -> Submission:
    return pause_reminders(uow, submission_id, now=now, actor=actor, paused=False)


def pause_cycle(uow: UnitOfWork, cycle_id: int, *, now: datetime, actor: str,
                paused: bool = True) -> Cycle:
    """Stop (or let go again) every reminder of a cycle; answers and notices still go."""
    cycle = uow.session.scalars(select(Cycle).where(Cycle.id == cycle_id)
                                .with_for_update()).first()
    if cycle is None:
        raise NotFound("Diesen Berichtszyklus gibt es nicht.")
    if cycle.reminders_paused == paused:
        raise NotNow("Die Erinnerungen dieses Zyklus sind bereits pausiert." if paused else
                     "Die Erinnerungen dieses Zyklus sind nicht pausiert.")
    cycle.reminders_paused = paused
    uow.session.add(Event(programme_id=cycle.programme_id, cycle_id=cycle.id, at=now, actor=actor,
                          kind=EventKind.REMINDERS_PAUSED if paused
                          else EventKind.REMINDERS_RESUMED, payload={"scope": "cycle"}))
    uow.session.flush()
    return cycle


def resume_cycle(uow: UnitOfWork, cycle_id: int, *, now: datetime, actor: str) -> Cycle:
    return pause_cycle(uow, cycle_id, now=now, actor=actor, paused=False)


# Bulk actions on a selection ---------------------------------------------------------------------

BULK_ACTIONS = ("pause", "resume", "resend_link", "escalate")


@dataclass(frozen=True)
class BulkResult:
    done: int
    refused: list[tuple[str, str]]  # (partner, why)


def selection(uow: UnitOfWork, cycle_id: int, submission_ids: list[int]) -> list[tuple[int, str]]:
    """The selected submissions of this cycle (id, partner), by name; others are ignored."""
    ids = sorted(set(submission_ids))[:MAX_BULK]
    if not ids:
        return []
    return [(row.id, row.name) for row in uow.session.execute(
        select(Submission.id, Partner.name).join(Partner, Partner.id == Submission.partner_id)
        .where(Submission.cycle_id == cycle_id, Submission.id.in_(ids))
        .order_by(Partner.name))]


def bulk(uow: UnitOfWork, cycle_id: int, submission_ids: list[int], action: str, *,
         now: datetime, actor: str) -> BulkResult:
    """One action on each selected partner, in one transaction; a partner the action does not
    fit (e.g. already paused) is reported and left alone."""
    if action not in BULK_ACTIONS:
        raise InvalidInput("Unbekannte Aktion.")
    chosen = selection(uow, cycle_id, submission_ids)
    if not chosen:
        raise InvalidInput("Bitte wählen Sie mindestens einen Partner aus.")
    use_case = {"pause": pause_reminders, "resume": resume_reminders,
                "resend_link": resend_link, "escalate": escalate_now}[action]
    done, refused = 0, []
    for submission_id, name in chosen:
        try:  # each use case checks before it writes: a refusal leaves nothing behind
            use_case(uow, submission_id, now=now, actor=actor)
            done += 1
        except DomainError as refusal:
            refused.append((name, str(refusal)))
    return BulkResult(done, refused)


# Contacts ----------------------------------------------------------------------------------------

ROLES = (ContactRole.REPORTING, ContactRole.DEPUTY, ContactRole.HEAD)
LANGUAGES = ("de", "en")


@dataclass(frozen=True)
class ContactInput:
    role: str
    name: str
    email: str
    language: str

    def checked(self) -> dict[str, str]:
        """Problems per field, in German (the page translates the ones it knows)."""
        problems = {}
        if self.role not in {r.value for r in ROLES}:
            problems["role"] = "Bitte wählen Sie eine Rolle."
        if not self.email:
            problems["email"] = "Bitte geben Sie eine E-Mail-Adresse an."
        elif not is_address(self.email):
            problems["email"] = "Diese E-Mail-Adresse ist ungültig."
        if len(self.name) > 300:
            problems["name"] = "Der Name ist zu lang (höchstens 300 Zeichen)."
        if self.language not in LANGUAGES:
            problems["language"] = "Bitte wählen Sie Deutsch oder Englisch."
        return problems


class ContactProblems(InvalidInput):
    def __init__(self, problems: dict[str, str]):
        super().__init__("Bitte prüfen Sie die Angaben.")
        self.fields = problems


def contact_input(role: str, name: str, email: str, language: str) -> ContactInput:
    """A contact as typed into the form, trimmed (whitespace inside a name collapsed)."""
    return ContactInput((role or "").strip(), " ".join((name or "").split()),
                        (email or "").strip(), (language or "de").strip())


def _partner(uow: UnitOfWork, partner_id: int) -> Partner:
    partner = uow.session.scalars(select(Partner).where(Partner.id == partner_id)
                                  .with_for_update()).first()
    if partner is None:
        raise NotFound("Diesen Partner gibt es nicht.")
    return partner


def _contact(uow: UnitOfWork, partner: Partner, contact_id: int) -> Contact:
    contact = uow.session.get(Contact, contact_id)
    if contact is None or contact.partner_id != partner.id:
        raise NotFound("Diesen Kontakt gibt es nicht.")
    return contact


def _check(uow: UnitOfWork, partner: Partner, data: ContactInput, *, other_than: int | None):
    problems = data.checked()
    if "email" not in problems and "role" not in problems:
        duplicate = uow.session.scalar(
            select(func.count()).select_from(Contact).where(
                Contact.partner_id == partner.id, Contact.role == ContactRole(data.role),
                func.lower(Contact.email) == data.email.lower(),
                Contact.id != (other_than or 0)))
        if duplicate:
            problems["email"] = "Diese Adresse ist in dieser Rolle schon eingetragen."
    if problems:
        raise ContactProblems(problems)


def _contacts_changed(uow: UnitOfWork, partner: Partner, now: datetime, actor: str, **payload):
    # Addresses are personal data: the event names the contact and what changed, not the values.
    # It sits in the timeline of the partner's latest submission, where coordinators look.
    latest = _latest_submission(uow, partner.id)
    uow.session.add(Event(programme_id=partner.programme_id, at=now, actor=actor,
                          cycle_id=latest.cycle_id if latest else None,
                          submission_id=latest.id if latest else None,
                          kind=EventKind.CONTACTS_CHANGED,
                          payload={"partner_id": partner.id, **payload}))
    uow.session.flush()


def add_contact(uow: UnitOfWork, partner_id: int, data: ContactInput, *, now: datetime,
                actor: str) -> Contact:
    """One more contact of a partner (several per role are fine, one address once per role)."""
    partner = _partner(uow, partner_id)
    _check(uow, partner, data, other_than=None)
    contact = Contact(partner_id=partner.id, role=ContactRole(data.role), name=data.name,
                      email=data.email, language=data.language)
    uow.session.add(contact)
    uow.session.flush()
    _contacts_changed(uow, partner, now, actor, change="added", contact_id=contact.id,
                      role=data.role)
    return contact


def change_contact(uow: UnitOfWork, partner_id: int, contact_id: int, data: ContactInput, *,
                   now: datetime, actor: str) -> Contact:
    """Change a contact; a corrected address is no longer marked as bouncing."""
    partner = _partner(uow, partner_id)
    contact = _contact(uow, partner, contact_id)
    _check(uow, partner, data, other_than=contact.id)
    changed = [key for key, new in (("role", ContactRole(data.role)), ("name", data.name),
                                    ("email", data.email), ("language", data.language))
               if getattr(contact, key) != new]
    if not changed:
        return contact
    contact.role, contact.name = ContactRole(data.role), data.name
    contact.email, contact.language = data.email, data.language
    if "email" in changed and contact.bounced_at is not None:
        contact.bounced_at, contact.bounce_reason = None, None
        changed.append("bounce_cleared")
    _contacts_changed(uow, partner, now, actor, change="changed", contact_id=contact.id,
                      fields=changed)
    return contact


def remove_contact(uow: UnitOfWork, partner_id: int, contact_id: int, *, now: datetime,
                   actor: str):
    """Remove a contact; a partner keeps at least one."""
    partner = _partner(uow, partner_id)
    contact = _contact(uow, partner, contact_id)
    others = uow.session.scalar(select(func.count()).select_from(Contact).where(
        Contact.partner_id == partner.id, Contact.id != contact.id))
    if not others:
        raise InvalidInput("Der letzte Kontakt eines Partners kann nicht entfernt werden; "
                           "ändern Sie ihn stattdessen.")
    role = str(contact.role)
    uow.session.delete(contact)
    _contacts_changed(uow, partner, now, actor, change="removed", contact_id=contact_id,
                      role=role)


# What the action pages show ----------------------------------------------------------------------

@dataclass(frozen=True)
class SubmissionFacts:
    id: int
    cycle_id: int
    year: int
    partner_id: int
    partner_name: str
    state: str
    due_on: date
    reminders_paused: bool
    cycle_reminders_paused: bool
    escalation_level: int
    review_comments: dict
    next_rung: str | None = None
    next_email: str | None = None  # the kind of mail the next rung sends
    next_rung_due: datetime | None = None


def submission_facts(uow: UnitOfWork, submission_id: int, *,
                     with_next_rung: bool = False) -> SubmissionFacts:
    submission = load_submission(uow, submission_id)
    policy = policy_of(submission.cycle.programme)
    upcoming = next_ladder_mail(uow, submission.id) if with_next_rung else None
    return SubmissionFacts(
        submission.id, submission.cycle_id, submission.cycle.year, submission.partner_id,
        submission.partner.name, str(submission.state),
        effective_deadline(policy, submission.due_on), submission.reminders_paused,
        submission.cycle.reminders_paused, submission.escalation_level,
        dict(submission.review_comments or {}),
        upcoming.rung if upcoming else None, upcoming.email if upcoming else None,
        upcoming.due_at if upcoming else None)


def review_questions(uow: UnitOfWork, submission_id: int, language: str) -> list[dict]:
    """The report's sections and questions (id, label), for a comment box each."""
    template = template_of(uow, load_submission(uow, submission_id))
    return [{"title": text_in(section.title, language),
             "questions": [{"id": q.id, "label": text_in(q.label, language)}
                           for q in section.questions]}
            for section in template.sections]


@dataclass(frozen=True)
class CycleFacts:
    id: int
    year: int
    reminders_paused: bool


def cycle_facts(uow: UnitOfWork, cycle_id: int) -> CycleFacts:
    cycle = uow.session.get(Cycle, cycle_id)
    if cycle is None:
        raise NotFound("Diesen Berichtszyklus gibt es nicht.")
    return CycleFacts(cycle.id, cycle.year, bool(cycle.reminders_paused))


@dataclass(frozen=True)
class ExtensionFacts:
    id: int
    submission_id: int
    cycle_id: int
    year: int
    partner_name: str
    reason: str
    proposed_due: date
    current_due: date
    created_at: datetime
    status: str
    decided_at: datetime | None
    decided_by: str | None
    decision_comment: str | None

    @property
    def pending(self) -> bool:
        return self.status == ExtensionStatus.PENDING


def extension_facts(uow: UnitOfWork, request_id: int) -> ExtensionFacts:
    request = uow.session.get(ExtensionRequest, request_id)
    if request is None:
        raise NotFound("Diesen Antrag gibt es nicht.")
    submission = load_submission(uow, request.submission_id)
    policy = policy_of(submission.cycle.programme)
    return ExtensionFacts(
        request.id, submission.id, submission.cycle_id, submission.cycle.year,
        submission.partner.name, request.reason, request.proposed_due,
        effective_deadline(policy, submission.due_on), request.created_at, str(request.status),
        request.decided_at, request.decided_by, request.decision_comment)


@dataclass(frozen=True)
class ContactRow:
    id: int
    role: str
    name: str
    email: str
    language: str
    bounced: bool


def partner_contacts(uow: UnitOfWork, partner_id: int) -> tuple[str, list[ContactRow]]:
    """The partner's name and contacts, by role."""
    partner = uow.session.get(Partner, partner_id)
    if partner is None:
        raise NotFound("Diesen Partner gibt es nicht.")
    order = {role: n for n, role in enumerate(ROLES)}
    contacts = sorted(uow.session.scalars(select(Contact).where(Contact.partner_id == partner_id)),
                      key=lambda c: (order[c.role], c.id))
    return partner.name, [ContactRow(c.id, str(c.role), c.name, c.email, c.language,
                                     c.bounced_at is not None) for c in contacts]


def current_submission_of(uow: UnitOfWork, partner_id: int) -> int | None:
    """The partner's submission in its latest cycle (to link back to its page)."""
    latest = _latest_submission(uow, partner_id)
    return latest.id if latest else None


def _latest_submission(uow: UnitOfWork, partner_id: int):
    return uow.session.execute(
        select(Submission.id, Submission.cycle_id).join(Cycle, Cycle.id == Submission.cycle_id)
        .where(Submission.partner_id == partner_id).order_by(Cycle.year.desc()).limit(1)).first()
