"""The read side of a coordinator's page about one submission: the partner, its contacts, the
timeline of events and mails, the mails ahead, the answers beside last year's, the attachments,
review comments, pending extension requests and, for a group partner, its members' parts and
their summed figures. A fixed handful of queries whatever the history (no query per row).

Times are given in the programme's time zone (Europe/Berlin), ready to show.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from zoneinfo import ZoneInfo

from sqlalchemy import or_, select

from workflow.cycles import policy_of
from workflow.errors import NotFound
from workflow.events import EventKind
from workflow.group_totals import GroupTotal, group_totals
from workflow.ledger import handed_over
from workflow.models import (Attachment, Contact, ContactRole, Cycle, Event, ExtensionRequest,
                             ExtensionStatus, MemberPart, Notification, NotificationStatus,
                             Partner, Submission)
from workflow.policy import effective_deadline
from workflow.redaction import blank_personal_links
from workflow.report_form import ReportTemplateDef, display, text_in
from workflow.report_templates import template_of
from workflow.reporting import ALLOWED_UPLOADS, previous_answers
from workflow.uow import UnitOfWork

TIMELINE_LIMIT = 200  # newest events shown; a long history of saved drafts is cut, and said so
ROLE_ORDER = (ContactRole.REPORTING, ContactRole.DEPUTY, ContactRole.HEAD)
AHEAD = (NotificationStatus.PLANNED, NotificationStatus.QUEUED, NotificationStatus.SENDING)
IN_TIMELINE = (NotificationStatus.SENT, NotificationStatus.FAILED, NotificationStatus.CANCELLED)
# Mails are shown from the ledger (with a link to the copy), not a second time as events.
MAIL_EVENTS = frozenset({EventKind.NOTIFICATION_SENT, EventKind.NOTIFICATION_FAILED,
                         EventKind.NOTIFICATION_CANCELLED})
# What an event's payload may show, by key (anything else stays in the log).
EVENT_DETAILS = ("reason", "comment", "old_due", "new_due", "proposed_due", "until", "intent",
                 "level", "member", "reply", "error")
DATE_DETAILS = frozenset({"old_due", "new_due", "proposed_due", "until"})
# Content types an uploaded file is served with; anything else goes out as octet-stream.
HARMLESS_TYPES = frozenset(ALLOWED_UPLOADS)


@dataclass(frozen=True)
class ContactView:
    name: str
    email: str
    role: str
    language: str
    bounced_at: datetime | None
    bounce_reason: str | None


@dataclass(frozen=True)
class PendingExtension:
    id: int
    proposed_due: date
    reason: str
    created_at: datetime


@dataclass(frozen=True)
class TimelineEntry:
    at: datetime
    kind: str  # an event kind, or "mail"
    actor: str  # a coordinator's address, "partner", "member" or "system"
    details: list[tuple[str, object]] = field(default_factory=list)
    mail_id: int | None = None
    mail_kind: str | None = None  # the mail's template (invitation, reminder, …)
    mail_status: str | None = None
    mail_error: str | None = None
    member: str | None = None  # the member city a mail went to


@dataclass(frozen=True)
class PlannedMail:
    id: int
    due_at: datetime
    rung: str
    mail_kind: str
    audience: str
    status: str
    member: str | None


@dataclass(frozen=True)
class AnswerRow:
    label: str
    this_year: str
    last_year: str | None
    changed: bool


@dataclass(frozen=True)
class AnswerSection:
    title: str
    rows: list[AnswerRow]


@dataclass(frozen=True)
class AttachmentView:
    id: int
    filename: str
    size: int
    content_type: str
    question: str


@dataclass(frozen=True)
class MemberView:
    partner_id: int
    name: str
    progress: str  # "done", "draft" or "open"
    updated_at: datetime | None
    sections: list[AnswerSection]


@dataclass
class PartnerPage:
    """``sub`` on the partner page (the fields named in the dashboard's contract come first)."""

    id: int
    cycle_id: int
    partner_id: int
    partner_name: str
    state: str
    reminders_paused: bool
    cycle_reminders_paused: bool
    escalation_level: int
    pending_extensions: list[PendingExtension]
    year: int
    partner_kind: str
    non_reporting: bool
    due_on: date
    effective_due_on: date
    paused_until: date | None
    submitted_at: datetime | None
    version: int
    contacts: list[ContactView]
    timeline: list[TimelineEntry]
    timeline_cut: bool
    planned: list[PlannedMail]
    template_title: str
    sections: list[AnswerSection]
    previous_found: bool
    attachments: list[AttachmentView]
    comments: list[tuple[str | None, str]]  # (question label, or None for the whole report)
    members: list[MemberView]
    totals: list[GroupTotal]


def _local(moment: datetime | None, zone: ZoneInfo) -> datetime | None:
    return moment.astimezone(zone) if moment is not None else None


def _actor(actor: str) -> str:
    return actor if "@" in actor or actor in ("partner", "member") else "system"


def _details(payload: dict | None) -> list[tuple[str, object]]:
    details = []
    for key in EVENT_DETAILS:
        value = (payload or {}).get(key)
        if value in (None, "", [], {}) or not isinstance(value, (str, int)):
            continue
        if key in DATE_DETAILS and isinstance(value, str):
            try:
                value = date.fromisoformat(value)
            except ValueError:
                pass
        details.append((key, value))
    return details


def _sections(template: ReportTemplateDef | None, answers: dict, language: str,
              files: dict[str, str], previous: dict | None = None,
              compare: bool = False) -> list[AnswerSection]:
    if template is None:
        return []
    sections = []
    for section in template.sections:
        rows = []
        for question in section.questions:
            now = display(question, answers.get(question.id), language, files)
            before = display(question, (previous or {}).get(question.id), language, files) \
                if compare else None
            rows.append(AnswerRow(text_in(question.label, language), now, before,
                                  compare and previous is not None and before != now))
        sections.append(AnswerSection(text_in(section.title, language), rows))
    return sections


def _template(uow: UnitOfWork, submission: Submission) -> ReportTemplateDef | None:
    try:
        return template_of(uow, submission)
    except NotFound:
        return None


def member_totals(uow: UnitOfWork, submission: Submission) -> list[GroupTotal]:
    """The members' figures summed into a group partner's report; [] for a partner that
    reports alone. (For the print view and the receipt; the partner page loads its parts once.)"""
    parts = uow.session.scalars(select(MemberPart.answers).where(
        MemberPart.submission_id == submission.id).order_by(MemberPart.id)).all()
    template = _template(uow, submission) if parts else None
    return group_totals(template, list(parts)) if template is not None else []


def partner_page(uow: UnitOfWork, submission_id: int, *, language: str,
                 now: datetime) -> PartnerPage | None:
    """Everything the coordinators' page about one submission shows; None if there is none."""
    # template_of remembers the form on a submission that has none yet: reading must not write
    # that (an UPDATE would wait for a partner saving at the same moment), so nothing is flushed.
    with uow.session.no_autoflush:
        return _partner_page(uow, submission_id, language=language, now=now)


def _partner_page(uow: UnitOfWork, submission_id: int, *, language: str,
                  now: datetime) -> PartnerPage | None:
    session = uow.session
    found = session.execute(
        select(Submission, Partner, Cycle)
        .join(Partner, Partner.id == Submission.partner_id)
        .join(Cycle, Cycle.id == Submission.cycle_id)
        .where(Submission.id == submission_id)).first()
    if found is None:
        return None
    submission, partner, cycle = found
    policy = policy_of(cycle.programme)
    zone = policy.zone

    contacts = sorted(session.scalars(select(Contact).where(Contact.partner_id == partner.id)
                                      .order_by(Contact.id)),
                      key=lambda c: ROLE_ORDER.index(c.role) if c.role in ROLE_ORDER else 9)
    parts = session.execute(
        select(MemberPart, Partner.name).join(Partner, Partner.id == MemberPart.partner_id)
        .where(MemberPart.submission_id == submission.id).order_by(Partner.name)).all()
    member_names = {part.id: name for part, name in parts}

    template = _template(uow, submission)
    previous = previous_answers(uow, submission)
    earlier_files = [str(v) for q in (template.questions if template else [])
                     if q.type == "file" and (v := (previous or {}).get(q.id))]
    earlier_ids = [int(v) for v in earlier_files if v.isdigit()]
    attachments = session.scalars(select(Attachment).where(or_(
        Attachment.submission_id == submission.id, Attachment.id.in_(earlier_ids)))
        .order_by(Attachment.id)).all()
    files = {str(a.id): a.filename for a in attachments}
    labels = {q.id: text_in(q.label, language) for q in (template.questions if template else [])}

    events = session.execute(
        select(Event.at, Event.kind, Event.actor, Event.payload)
        .where(Event.submission_id == submission.id, Event.kind.not_in(list(MAIL_EVENTS)))
        .order_by(Event.at.desc(), Event.id.desc()).limit(TIMELINE_LIMIT + 1)).all()
    mails = session.scalars(select(Notification).where(
        Notification.submission_id == submission.id).order_by(Notification.due_at)).all()

    timeline = [TimelineEntry(at=_local(e.at, zone), kind=str(e.kind), actor=_actor(e.actor),
                              details=_details(e.payload)) for e in events[:TIMELINE_LIMIT]]
    for mail in mails:
        if mail.status not in IN_TIMELINE:
            continue
        if mail.status == NotificationStatus.CANCELLED and mail.due_at > now:
            continue  # a rung that was never due: not part of the history
        at = mail.sent_at or mail.claimed_at or mail.dispatched_at or mail.due_at
        timeline.append(TimelineEntry(
            at=_local(at, zone), kind="mail", actor="system", mail_id=mail.id,
            mail_kind=mail.email, mail_status=str(mail.status),
            mail_error=blank_personal_links(mail.last_error or "") or None,
            member=member_names.get(mail.member_part_id)))
    timeline.sort(key=lambda entry: entry.at, reverse=True)
    # A planned mail the sweep handed to the workers is on its way, as a queued one is.
    handed = handed_over(uow, [m.id for m in mails if m.status == NotificationStatus.PLANNED])
    planned = [PlannedMail(id=m.id, due_at=_local(m.due_at, zone), rung=m.rung,
                           mail_kind=m.email, audience=str(m.audience),
                           status=str(NotificationStatus.QUEUED if m.id in handed else m.status),
                           member=member_names.get(m.member_part_id))
               for m in mails if m.status in AHEAD]

    extensions = session.scalars(select(ExtensionRequest).where(
        ExtensionRequest.submission_id == submission.id,
        ExtensionRequest.status == ExtensionStatus.PENDING)
        .order_by(ExtensionRequest.created_at)).all()

    answers = submission.answers or {}
    members = [MemberView(partner_id=part.partner_id, name=name,
                          progress="done" if part.completed_at else
                          "draft" if part.answers is not None else "open",
                          updated_at=_local(part.updated_at, zone),
                          sections=_sections(template, part.answers or {}, language, files))
               for part, name in parts]
    comments = [(None if key == "_general" else labels.get(key, key), text)
                for key, text in (submission.review_comments or {}).items()]
    comments.sort(key=lambda c: c[0] is not None)  # the general comment first
    return PartnerPage(
        id=submission.id, cycle_id=cycle.id, partner_id=partner.id, partner_name=partner.name,
        state=str(submission.state), reminders_paused=bool(submission.reminders_paused),
        cycle_reminders_paused=bool(cycle.reminders_paused),
        escalation_level=submission.escalation_level,
        pending_extensions=[PendingExtension(r.id, r.proposed_due, r.reason,
                                             _local(r.created_at, zone)) for r in extensions],
        year=cycle.year, partner_kind=str(partner.kind),
        non_reporting=bool(submission.non_reporting), due_on=submission.due_on,
        effective_due_on=effective_deadline(policy, submission.due_on),
        paused_until=submission.paused_until,
        submitted_at=_local(submission.submitted_at, zone), version=submission.version,
        contacts=[ContactView(c.name, c.email, str(c.role), c.language,
                              _local(c.bounced_at, zone), c.bounce_reason) for c in contacts],
        timeline=timeline, timeline_cut=len(events) > TIMELINE_LIMIT, planned=planned,
        template_title=text_in(template.title, language) if template else "",
        sections=_sections(template, answers, language, files, previous, compare=True),
        previous_found=previous is not None,
        attachments=[AttachmentView(a.id, a.filename, a.size, a.content_type,
                                    labels.get(a.question_id, a.question_id))
                     for a in attachments if a.submission_id == submission.id],
        comments=comments, members=members,
        totals=group_totals(template, [part.answers for part, _ in parts])
        if parts and template else [])


@dataclass(frozen=True)
class AttachmentFile:
    filename: str
    content_type: str  # safe to send: a harmless type, else application/octet-stream
    storage_key: str


def attachment_file(uow: UnitOfWork, attachment_id: int) -> AttachmentFile | None:
    attachment = uow.session.get(Attachment, attachment_id)
    if attachment is None:
        return None
    content_type = attachment.content_type if attachment.content_type in HARMLESS_TYPES \
        else "application/octet-stream"
    return AttachmentFile(attachment.filename, content_type, attachment.storage_key)


@dataclass(frozen=True)
class MailCopy:
    id: int
    submission_id: int | None
    partner_name: str | None
    mail_kind: str
    rung: str
    status: str
    sent_at: datetime | None
    message_id: str | None
    subject: str | None
    recipients: list[str]
    text: str | None  # None: sent before copies were kept, or not sent
    error: str | None  # why it failed, if it did

    @property
    def has_copy(self) -> bool:
        return self.text is not None


def mail_copy(uow: UnitOfWork, notification_id: int) -> MailCopy | None:
    """One mail as it left (its personal link blanked out); None if there is no such mail."""
    found = uow.session.execute(
        select(Notification, Partner.name, Cycle)
        .join(Cycle, Cycle.id == Notification.cycle_id)
        .outerjoin(Submission, Submission.id == Notification.submission_id)
        .outerjoin(Partner, Partner.id == Submission.partner_id)
        .where(Notification.id == notification_id)).first()
    if found is None:
        return None
    mail, partner_name, cycle = found
    zone = policy_of(cycle.programme).zone
    return MailCopy(
        id=mail.id, submission_id=mail.submission_id, partner_name=partner_name,
        mail_kind=mail.email, rung=mail.rung, status=str(mail.status),
        sent_at=_local(mail.sent_at, zone), message_id=mail.message_id,
        subject=mail.sent_subject, recipients=list(mail.sent_to or []),
        text=blank_personal_links(mail.sent_text) if mail.sent_text is not None else None,
        error=blank_personal_links(mail.last_error) if mail.last_error else None)
