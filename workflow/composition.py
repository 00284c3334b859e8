"""Composing mails: one function per kind of mail, found by the name of its template folder in
templates/email/. Each returns the context its templates need; the recipients, the personal link
and the headers are the same for every kind and are settled here once."""
from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime

from sqlalchemy import select

from workflow.addresses import is_address
from workflow.cycles import cycle_status, policy_of
from workflow.models import (Contact, ContactRole, Cycle, MemberPart, Notification, Partner,
                             Submission)
from workflow.policy import Audience, ReportingPolicy, effective_deadline
from workflow.programmes import coordinator_addresses
from workflow.states import AWAITING_REPORT, SubmissionState
from workflow.submissions import new_link_token
from workflow.uow import UnitOfWork


class UnknownMailKind(Exception):
    """A ledger row names a mail that has no composer (e.g. a typo in a policy's ladder)."""


@dataclass(frozen=True)
class OutgoingMail:
    """Everything the transport needs; it builds the MIME message from this."""

    subject: str
    text: str
    html: str
    sender: str
    to: list[str]
    cc: list[str]
    message_id: str
    language: str
    rung: str
    partner_id: int | None = None  # whose contacts these are (to mark a refused address)
    return_path: str | None = None  # the envelope sender, where bounces arrive (None: From)


Renderer = Callable[[str, str, dict], tuple[str, str, str]]  # (kind, language, ctx) -> s, text, html


@dataclass
class Letterhead:
    """What every mail needs from the composition root."""

    render: Renderer
    base_url: str
    mail_from: str
    coordinator_emails: tuple[str, ...]
    message_id_domain: str = "reportcycles.invalid"
    # Given one mail's ledger row, its envelope sender (VERP), so a bounce names its mail.
    return_path: Callable[[Notification], str | None] = lambda notification: None


@dataclass
class MailFacts:
    """One ledger row and what is known about it, loaded for a whole batch at once."""

    uow: UnitOfWork
    notification: Notification
    cycle: Cycle
    policy: ReportingPolicy
    submission: Submission | None
    partner: Partner | None  # the addressee's organisation (a member city for its own part)
    as_of: datetime  # when it is sent (a rehearsal's instant): days left are counted from here
    contacts: list[Contact] = field(default_factory=list)
    link: str | None = None
    language: str = "de"


# The kinds ---------------------------------------------------------------------------------------

COMPOSERS: dict[str, Callable[[MailFacts], dict]] = {}


def composes(kind: str):
    def register(function):
        COMPOSERS[kind] = function
        return function
    return register


def mail_kinds() -> frozenset[str]:
    return frozenset(COMPOSERS)


@composes("invitation")
def invitation(facts: MailFacts) -> dict:
    return _about_the_report(facts)


@composes("member_invitation")
def member_invitation(facts: MailFacts) -> dict:
    return _about_the_report(facts)


@composes("reminder")
def reminder(facts: MailFacts) -> dict:
    return _about_the_report(facts)


@composes("overdue_reminder")
def overdue_reminder(facts: MailFacts) -> dict:
    return _about_the_report(facts)


@composes("escalation_head")
def escalation_head(facts: MailFacts) -> dict:
    return _about_the_report(facts)


@composes("non_reporting_notice")
def non_reporting_notice(facts: MailFacts) -> dict:
    return _about_the_report(facts)


@composes("deadline_notice")
def deadline_notice(facts: MailFacts) -> dict:
    return _cycle_summary(facts)


@composes("digest")
def digest(facts: MailFacts) -> dict:
    from workflow.digest import digest_of  # the digest reads cycles: import on use
    return {"digest": digest_of(facts.uow, facts.cycle, facts.notification.payload or {})
            .to_context(), "cycle_id": facts.cycle.id}


@composes("receipt")
def receipt(facts: MailFacts) -> dict:
    from workflow.reporting import answer_sections
    context = _about_the_report(facts)
    context["answer_sections"] = answer_sections(facts.uow, facts.submission, facts.language)
    context["member_totals"] = _member_totals(facts)
    if facts.link:
        context["print_url"] = facts.link + "/print"
    return context


def _member_totals(facts: MailFacts) -> list[dict]:
    """A group partner's members' figures summed into its report; [] for a partner alone."""
    from workflow.partner_page import member_totals
    return [{"label": total.label(facts.language), "value": total.value(facts.language),
             "contributors": total.contributors, "members": total.members}
            for total in member_totals(facts.uow, facts.submission)]


@composes("returned")
def returned(facts: MailFacts) -> dict:
    from workflow.review import comment_labels
    return {**_about_the_report(facts), "comments": facts.submission.review_comments or {},
            "comment_labels": comment_labels(facts.uow, facts.submission, facts.language)}


@composes("link_resent")
def link_resent(facts: MailFacts) -> dict:
    return {**_about_the_report(facts), "awaiting": facts.submission.state in AWAITING_REPORT}


@composes("extension_request")
def extension_request(facts: MailFacts) -> dict:
    return _with_request(facts)


@composes("extension_decision")
def extension_decision(facts: MailFacts) -> dict:
    return _with_request(facts)


@composes("intent_notice")
def intent_notice(facts: MailFacts) -> dict:
    return _with_request(facts)


def _about_the_report(facts: MailFacts) -> dict:
    submission, policy = facts.submission, facts.policy
    deadline = effective_deadline(policy, submission.due_on)
    today = facts.as_of.astimezone(policy.zone).date()
    context = {
        "partner_name": facts.partner.name,
        "deadline": deadline,
        "working_days_left": policy.calendar.working_days_between(today, deadline),
        "state": str(submission.state),
        "submitted_at": submission.submitted_at,
        "contacts": [{"name": c.name, "email": c.email, "role": str(c.role)}
                     for c in facts.contacts],
    }
    if facts.partner.id != submission.partner_id:  # a member city's own part
        context["group_name"] = facts.uow.session.get(Partner, submission.partner_id).name
    return context


def _with_request(facts: MailFacts) -> dict:
    """The facts fixed when the request was made (a reason, a proposed date), as stored."""
    context = {**_about_the_report(facts), **(facts.notification.payload or {})}
    for key in ("proposed_due", "intent_date"):
        if context.get(key):
            context[key] = date.fromisoformat(context[key])
    return context


def _cycle_summary(facts: MailFacts) -> dict:
    session, cycle = facts.uow.session, facts.cycle
    waiting = session.execute(
        select(Partner.name, Submission.state, Submission.due_on)
        .join(Partner, Partner.id == Submission.partner_id)
        .where(Submission.cycle_id == cycle.id, Submission.state.in_(AWAITING_REPORT))
        .order_by(Partner.name).limit(200)).all()
    status = cycle_status(facts.uow, cycle)
    return {"deadline": effective_deadline(facts.policy, cycle.due_on),
            "status": status.to_dict(),
            "waiting": [{"name": w.name, "state": str(SubmissionState(w.state)),
                         "due_on": w.due_on} for w in waiting],
            "waiting_total": sum(status.by_state[s] for s in map(str, AWAITING_REPORT))}


# One batch ---------------------------------------------------------------------------------------

class Batch:
    """What composing a batch needs, loaded with a handful of queries instead of a few per mail."""

    def __init__(self, uow: UnitOfWork, notifications: list[Notification]):
        session = uow.session
        self.uow = uow

        def by_id(model, ids):
            ids = {i for i in ids if i is not None}
            return {row.id: row for row in session.scalars(
                select(model).where(model.id.in_(ids)))} if ids else {}

        self.submissions = by_id(Submission, (n.submission_id for n in notifications))
        self.parts = by_id(MemberPart, (n.member_part_id for n in notifications))
        self.partners = by_id(Partner, [s.partner_id for s in self.submissions.values()]
                              + [p.partner_id for p in self.parts.values()])
        self.cycles = by_id(Cycle, (n.cycle_id for n in notifications))
        self.contacts: dict[int, list[Contact]] = {}
        if self.partners:
            for contact in session.scalars(select(Contact).where(
                    Contact.partner_id.in_(list(self.partners))).order_by(Contact.id)):
                self.contacts.setdefault(contact.partner_id, []).append(contact)
        self._policies: dict[int, ReportingPolicy] = {}

    def policy(self, cycle: Cycle) -> ReportingPolicy:
        if cycle.programme_id not in self._policies:
            self._policies[cycle.programme_id] = policy_of(cycle.programme)
        return self._policies[cycle.programme_id]

    def submission_of(self, notification: Notification) -> Submission | None:
        return self.submissions.get(notification.submission_id)

    def part_of(self, notification: Notification) -> MemberPart | None:
        return self.parts.get(notification.member_part_id)


def compose(batch: Batch, letterhead: Letterhead, notification: Notification,
            as_of: datetime) -> tuple[OutgoingMail, dict | None]:
    """The mail for one ledger row, and the values of the personal link's ``access_token`` row
    to store if it carries one."""
    composer = COMPOSERS.get(notification.email)
    if composer is None:
        raise UnknownMailKind(f"no mail kind '{notification.email}' (templates/email/ has "
                              f"{', '.join(sorted(COMPOSERS))})")
    cycle = batch.cycles[notification.cycle_id]
    programme = cycle.programme
    submission = batch.submission_of(notification)
    part = batch.part_of(notification)
    partner = (batch.partners[part.partner_id if part else submission.partner_id]
               if submission is not None else None)
    contacts = batch.contacts.get(partner.id, []) if partner else []
    if notification.audience is Audience.COORDINATORS:
        to, cc, language = coordinator_addresses(programme, letterhead.coordinator_emails), [], "de"
    else:
        to, cc, language = recipients(notification.audience, contacts)
    if not to:
        raise NoRecipient(f"no recipient for audience {notification.audience}")
    unusable = [address for address in (*to, *cc) if not is_address(address)]
    if unusable:  # stored before addresses were checked: mail without SMTPUTF8 cannot carry it
        raise UnusableAddress(f"{len(unusable)} address(es) that mail cannot carry (not ASCII "
                              f"or malformed): {', '.join(unusable)}")
    facts = MailFacts(batch.uow, notification, cycle, batch.policy(cycle), submission, partner,
                      as_of, contacts, language=language)
    link_row = None
    if submission is not None and notification.audience is not Audience.COORDINATORS:
        token, link_row = new_link_token(submission, facts.policy, now=as_of,
                                         notification_id=notification.id,
                                         member_part_id=notification.member_part_id)
        facts.link = f"{letterhead.base_url}/r/{token}"
    context = {
        "programme_name": programme.name, "year": cycle.year, "rung": notification.rung,
        "base_url": letterhead.base_url, "reply_to": letterhead.mail_from,
        "contact_name": next((c.name for c in contacts if c.email in to and c.name), ""),
        "dashboard_url": f"{letterhead.base_url}/", "language": language,
        **({"link": facts.link} if facts.link else {}),
        **composer(facts),
    }
    subject, text, html = letterhead.render(notification.email, language, context)
    return OutgoingMail(subject=subject, text=text, html=html, sender=letterhead.mail_from,
                        to=to, cc=cc, message_id=message_id(notification,
                                                            letterhead.message_id_domain),
                        language=language, rung=notification.rung,
                        partner_id=partner.id if partner else None,
                        return_path=letterhead.return_path(notification)), link_row


class NoRecipient(Exception):
    """Every address of the audience is missing or bouncing."""


class UnusableAddress(Exception):
    """An address of the mail is not one this service accepts (kept from before the rule)."""


def recipients(audience: Audience, contacts: list[Contact]) -> tuple[list[str], list[str], str]:
    """To, copy and language for a partner audience. A bouncing address is left out, and the
    ladder writes to the next contact: the deputy, then the head."""
    def emails(role):
        return [c.email for c in contacts if c.role == role and c.bounced_at is None]

    reporting, deputies, heads = (emails(ContactRole.REPORTING), emails(ContactRole.DEPUTY),
                                  emails(ContactRole.HEAD))
    if audience is Audience.HEAD:
        to, cc = heads or reporting or deputies, reporting if heads else deputies
    elif audience is Audience.CONTACT_AND_DEPUTY:
        to, cc = reporting or deputies or heads, deputies if reporting else []
    else:
        to, cc = reporting or deputies or heads, []
    to = list(dict.fromkeys(to))
    language = next((c.language for c in contacts if c.email in to), "de")
    return to, [e for e in dict.fromkeys(cc) if e not in to], language


def message_id(notification: Notification, domain: str) -> str:
    """Stable per ledger row: a resend after a crash carries the same Message-ID."""
    digest = hashlib.sha256(notification.dedupe_key.encode()).hexdigest()[:12]
    return f"<rc.{notification.id}.{digest}@{domain}>"
