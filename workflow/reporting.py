"""Use cases of the partner's report: template, drafts, submission, review, time and intent."""
from __future__ import annotations

import hashlib
import secrets
from datetime import date, datetime
from pathlib import Path

from sqlalchemy import select

from workflow.cycles import policy_of
from workflow.errors import DomainError, InvalidInput, NotFound
from workflow.events import EventKind
from workflow.models import (Attachment, Cycle, ExtensionRequest, ExtensionStatus, MemberPart,
                             Submission, SubmissionState, utcnow)
from workflow.policy import Audience, effective_deadline
from workflow.report_form import check, display, text_in
from workflow.report_templates import template_of
from workflow.states import Action, awaits_report
from workflow.ledger import queue_immediate
from workflow.submissions import (apply_action, extend_deadline, load_submission,
                                  record)
from workflow.uow import UnitOfWork


# What the partner is told when a request is refused, in the page's language.
PARTNER_MESSAGES = {
    "already_submitted": ("Dieser Bericht ist bereits eingereicht.",
                          "This report has already been submitted."),
    "members_missing": ("{n} Mitglieder haben ihren Teil noch nicht fertig gemeldet: {names}.",
                        "{n} members have not yet marked their part as finished: {names}."),
    "no_extension_needed": ("Für einen eingereichten Bericht ist keine Verlängerung nötig.",
                            "A submitted report needs no extension."),
    "reason_needed": ("Bitte nennen Sie einen Grund (höchstens 2000 Zeichen).",
                      "Please give a reason (at most 2000 characters)."),
    "after_deadline": ("Das gewünschte Datum muss nach der jetzigen Frist ({due}) liegen.",
                       "The date you ask for must be after the current deadline ({due})."),
    "too_long_extension": ("Eine Verlängerung um mehr als ein Jahr ist nicht möglich.",
                           "An extension of more than a year is not possible."),
    "future_date": ("Bitte nennen Sie ein Datum in der Zukunft.",
                    "Please give a date in the future."),
    "too_far": ("Das Datum liegt zu weit nach der Frist: bitte beantragen Sie eine "
                "Fristverlängerung.",
                "The date is too far after the deadline: please request an extension."),
    "reason_missing": ("Bitte nennen Sie den Grund.", "Please give the reason."),
    "unknown_intent": ("Unbekannte Angabe.", "Unknown choice."),
    "group_submitted": ("Der gemeinsame Bericht ist bereits eingereicht.",
                        "The joint report has already been submitted."),
}


def _t(key: str, language: str, **values) -> str:
    german, english = PARTNER_MESSAGES[key]
    return (english if language == "en" else german).format(**values)



class DraftConflict(DomainError):
    """Someone else saved this report since the page was loaded."""


class IncompleteReport(InvalidInput):
    def __init__(self, errors: dict[str, str]):
        super().__init__("Der Bericht ist noch nicht vollständig.")
        self.errors = errors


def previous_answers(uow: UnitOfWork, submission: Submission) -> dict | None:
    """The partner's last accepted report of an earlier cycle (for prefill and comparison)."""
    return uow.session.scalars(
        select(Submission.answers).join(Cycle, Cycle.id == Submission.cycle_id)
        .where(Submission.partner_id == submission.partner_id,
               Submission.state == SubmissionState.ACCEPTED,
               Cycle.year < submission.cycle.year)
        .order_by(Cycle.year.desc()).limit(1)).first()


def answers_for_form(uow: UnitOfWork, submission: Submission) -> tuple[dict, bool]:
    """The draft if there is one, else last year's accepted answers; and whether prefilled."""
    if submission.answers is not None:
        return submission.answers, False
    previous = previous_answers(uow, submission)
    if previous:
        template = template_of(uow, submission)
        return {k: v for k, v in previous.items()
                if template.question(k) and template.question(k).type != "file"}, True
    return {}, False


# The partner's actions ---------------------------------------------------------------------------

def start_report(uow: UnitOfWork, submission_id: int, *, now: datetime, actor: str):
    """A person chose to work on the report: recorded as 'opened' (a link click is not)."""
    submission = load_submission(uow, submission_id, for_update=True)
    if submission.state == SubmissionState.INVITED:
        apply_action(uow, submission.id, Action.OPEN, now=now, actor=actor)
    return submission


def save_draft(uow: UnitOfWork, submission_id: int, answers: dict, *, expected_version: int,
               now: datetime, actor: str, language: str = "de") -> dict[str, str]:
    """Keep what was typed, whatever it is; return the field problems found so far."""
    submission = load_submission(uow, submission_id, for_update=True)
    if submission.version != expected_version:
        raise DraftConflict("Der Bericht wurde inzwischen von jemand anderem gespeichert.")
    template = template_of(uow, submission)
    apply_action(uow, submission.id, Action.SAVE_DRAFT, now=now, actor=actor, answers=answers)
    return check(template, answers, complete=False, language=language)


def submit_report(uow: UnitOfWork, submission_id: int, *, expected_version: int, now: datetime,
                  actor: str, language: str = "de") -> Submission:
    submission = load_submission(uow, submission_id, for_update=True)
    if submission.version != expected_version:
        raise DraftConflict("Der Bericht wurde inzwischen von jemand anderem gespeichert.")
    if not awaits_report(submission.state):
        raise InvalidInput(_t("already_submitted", language))
    errors = check(template_of(uow, submission), submission.answers or {}, complete=True,
                   language=language)
    if errors:
        raise IncompleteReport(errors)
    waiting = unfinished_members(uow, submission)
    if waiting:
        raise InvalidInput(_t("members_missing", language, n=len(waiting),
                              names=", ".join(waiting)))
    submission.paused_until = None
    return apply_action(uow, submission.id, Action.SUBMIT, now=now, actor=actor)


ALLOWED_UPLOADS = {
    "application/pdf": b"%PDF-",
    "image/png": b"\x89PNG\r\n\x1a\n",
    "image/jpeg": b"\xff\xd8\xff",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document": b"PK\x03\x04",
}


def add_attachment(uow: UnitOfWork, submission_id: int, question_id: str, *, filename: str,
                   content_type: str, data: bytes, storage: Path, now: datetime,
                   actor: str, language: str = "de") -> Attachment:
    """Check size and type (by content, not by name), store under a random name, record it."""
    submission = load_submission(uow, submission_id)
    question = template_of(uow, submission).question(question_id)
    if question is None or question.type != "file":
        raise InvalidInput("Unbekanntes Dateifeld.")
    accepted = [t for t in (question.accept or ALLOWED_UPLOADS) if t in ALLOWED_UPLOADS]
    kind = next((t for t in accepted if data.startswith(ALLOWED_UPLOADS[t])), None)
    if len(data) > question.max_bytes:
        raise InvalidInput({"de": f"Die Datei ist zu groß (höchstens "
                                  f"{question.max_bytes // (1024 * 1024)} MB).",
                            "en": f"The file is too large (at most "
                                  f"{question.max_bytes // (1024 * 1024)} MB)."}[language])
    if not data or kind is None:
        raise InvalidInput({"de": "Dieser Dateityp ist nicht erlaubt (erlaubt: PDF, DOCX, PNG, "
                                  "JPEG).",
                            "en": "This file type is not allowed (allowed: PDF, DOCX, PNG, "
                                  "JPEG)."}[language])
    key = secrets.token_hex(16)
    storage.mkdir(parents=True, exist_ok=True)
    path = storage / key
    path.write_bytes(data)
    uow.on_rollback(lambda: path.unlink(missing_ok=True))
    safe_name = "".join(c for c in Path(filename or "datei").name if c.isprintable())[:200]
    attachment = Attachment(submission_id=submission.id, question_id=question_id,
                            filename=safe_name or "datei", content_type=kind, size=len(data),
                            sha256=hashlib.sha256(data).hexdigest(), storage_key=key,
                            created_at=now)
    uow.session.add(attachment)
    uow.session.flush()
    record(uow, submission, EventKind.ATTACHMENT_ADDED, now, actor, question=question_id,
           size=len(data), type=kind)
    return attachment


def attachment_names(uow: UnitOfWork, submission_id: int) -> dict[str, str]:
    return {str(a.id): a.filename for a in uow.session.scalars(
        select(Attachment).where(Attachment.submission_id == submission_id))}


def request_extension(uow: UnitOfWork, submission_id: int, *, reason: str, proposed_due: date,
                      now: datetime, actor: str, language: str = "de") -> ExtensionRequest:
    submission = load_submission(uow, submission_id, for_update=True)
    if not awaits_report(submission.state):
        raise InvalidInput(_t("no_extension_needed", language))
    reason = (reason or "").strip()
    if not reason or len(reason) > 2000:
        raise InvalidInput(_t("reason_needed", language))
    if proposed_due <= submission.due_on:
        raise InvalidInput(_t("after_deadline", language, due=submission.due_on.strftime(
            "%d.%m.%Y" if language != "en" else "%Y-%m-%d")))
    if (proposed_due - submission.due_on).days > 366:
        raise InvalidInput(_t("too_long_extension", language))
    request = ExtensionRequest(submission_id=submission.id, reason=reason,
                               proposed_due=proposed_due, created_at=now)
    uow.session.add(request)
    uow.session.flush()
    record(uow, submission, EventKind.EXTENSION_REQUESTED, now, actor,
           proposed_due=proposed_due.isoformat(), request_id=request.id)
    _queue(uow, submission, "extension_request", now, occasion=request.id,
           audience=Audience.COORDINATORS,
           payload={"request_id": request.id, "reason": reason,
                    "proposed_due": proposed_due.isoformat()})
    return request


def decide_extension(uow: UnitOfWork, request_id: int, *, grant: bool, now: datetime,
                     actor: str, new_due: date | None = None, comment: str = ""):
    request = uow.session.get(ExtensionRequest, request_id)
    if request is None:
        raise NotFound(f"Antrag {request_id} gibt es nicht.")
    if request.status != ExtensionStatus.PENDING:
        raise InvalidInput(f"Über Antrag {request_id} wurde schon entschieden ({request.status}).")
    submission = load_submission(uow, request.submission_id, for_update=True)
    request.status = ExtensionStatus.GRANTED if grant else ExtensionStatus.REFUSED
    request.decided_at, request.decided_by, request.decision_comment = now, actor, comment
    if grant:
        extend_deadline(uow, submission.id, new_due or request.proposed_due, now=now, actor=actor,
                        reason=request.reason)
    else:
        record(uow, submission, EventKind.EXTENSION_REFUSED, now, actor, comment=comment,
               request_id=request.id)
    _queue(uow, submission, "extension_decision", now, occasion=request.id,
           payload={"granted": grant, "decision_comment": comment})
    return request


def declare_intent(uow: UnitOfWork, submission_id: int, *, intent: str, now: datetime,
                   actor: str, until: date | None = None, reason: str = "", language: str = "de"):
    """"We will submit by DATE" pauses reminders until then; "we cannot report" tells coordinators."""
    submission = load_submission(uow, submission_id, for_update=True)
    if not awaits_report(submission.state):
        raise InvalidInput(_t("already_submitted", language))
    reason = (reason or "").strip()[:2000]
    if intent == "will_submit_by":
        if until is None or until <= now.date():
            raise InvalidInput(_t("future_date", language))
        policy = policy_of(submission.cycle.programme)
        if (until - effective_deadline(policy, submission.due_on)).days > 90:
            raise InvalidInput(_t("too_far", language))
        submission.paused_until = until
    elif intent == "cannot_report":
        if not reason:
            raise InvalidInput(_t("reason_missing", language))
    else:
        raise InvalidInput(_t("unknown_intent", language))
    record(uow, submission, EventKind.INTENT_DECLARED, now, actor, intent=intent,
           until=until.isoformat() if until else None, reason=reason)
    uow.session.flush()
    _queue(uow, submission, "intent_notice", now, occasion=secrets.token_hex(6),
           audience=Audience.COORDINATORS,
           payload={"intent": intent, "intent_date": until.isoformat() if until else None,
                    "reason": reason})
    return submission


def return_report(uow: UnitOfWork, submission_id: int, *, comments: dict[str, str],
                  now: datetime, actor: str) -> Submission:
    """A coordinator sends the report back with comments; the partner is mailed, the ladder resumes."""
    comments = {k: v.strip() for k, v in comments.items() if v and v.strip()}
    if not comments:
        raise InvalidInput("Bitte geben Sie mindestens einen Kommentar an.")
    submission = load_submission(uow, submission_id, for_update=True)
    template = template_of(uow, submission)
    unknown = [k for k in comments if k != "_general" and template.question(k) is None]
    if unknown:
        raise InvalidInput(f"Unbekannte Fragen: {', '.join(unknown)}")
    apply_action(uow, submission.id, Action.RETURN, now=now, actor=actor,
                 comments=sorted(comments))
    submission.review_comments = comments
    from workflow.cycles import plan_rungs_for_submission
    plan_rungs_for_submission(uow, submission, policy_of(submission.cycle.programme), after=now)
    _queue(uow, submission, "returned", now, occasion=f"v{submission.version}")
    return submission


def accept_report(uow: UnitOfWork, submission_id: int, *, now: datetime, actor: str):
    submission = apply_action(uow, submission_id, Action.ACCEPT, now=now, actor=actor)
    submission.review_comments = None
    return submission


def _queue(uow, submission, email, now, *, occasion, audience=Audience.CONTACT, payload=None):
    return queue_immediate(uow, submission, email, now, occasion=occasion, wall=utcnow(),
                           audience=audience, payload=payload)


# What mails about a report show ------------------------------------------------------------------

def answer_sections(uow: UnitOfWork, submission: Submission, language: str) -> list[dict]:
    try:
        template = template_of(uow, submission)
    except NotFound:
        return []
    answers = submission.answers or {}
    files = attachment_names(uow, submission.id)
    return [{"title": text_in(section.title, language),
             "items": [{"label": text_in(q.label, language),
                        "value": display(q, answers.get(q.id), language, files)}
                       for q in section.questions]}
            for section in template.sections]


def comment_labels(uow: UnitOfWork, submission: Submission, language: str) -> dict[str, str]:
    try:
        template = template_of(uow, submission)
    except NotFound:
        return {}
    return {q.id: text_in(q.label, language) for q in template.questions}


# Group partners: each member fills its own part, the lead submits the whole ------------------------

def _load_part(uow: UnitOfWork, part_id: int, expected_version: int) -> tuple[MemberPart, Submission]:
    part = uow.session.scalars(select(MemberPart).where(MemberPart.id == part_id)
                               .with_for_update()).first()
    if part is None:
        raise NotFound("Diesen Teil gibt es nicht.")
    if part.version != expected_version:
        raise DraftConflict("Dieser Teil wurde inzwischen von jemand anderem gespeichert.")
    submission = load_submission(uow, part.submission_id)
    if not awaits_report(submission.state):
        raise InvalidInput(_t("group_submitted", "de"))
    return part, submission


def save_member_part(uow: UnitOfWork, part_id: int, answers: dict, *, expected_version: int,
                     now: datetime, actor: str, language: str = "de") -> dict[str, str]:
    """Keep a member's input; a part changed after it was finished must be finished again."""
    part, submission = _load_part(uow, part_id, expected_version)
    part.answers, part.updated_at, part.completed_at = answers, now, None
    part.version += 1
    record(uow, submission, EventKind.MEMBER_PART_SAVED, now, actor, member=part.partner.name)
    return check(template_of(uow, submission), answers, complete=False, language=language)


def complete_member_part(uow: UnitOfWork, part_id: int, *, expected_version: int, now: datetime,
                         actor: str, language: str = "de") -> MemberPart:
    part, submission = _load_part(uow, part_id, expected_version)
    errors = check(template_of(uow, submission), part.answers or {}, complete=True,
                   language=language)
    if errors:
        raise IncompleteReport(errors)
    part.completed_at, part.updated_at = now, now
    part.version += 1
    record(uow, submission, EventKind.MEMBER_PART_COMPLETED, now, actor, member=part.partner.name)
    return part


def member_progress(uow: UnitOfWork, submission: Submission) -> list[dict]:
    parts = uow.session.scalars(select(MemberPart).where(MemberPart.submission_id == submission.id)
                                .order_by(MemberPart.id)).all()
    return [{"name": p.partner.name,
             "state": "done" if p.completed_at else "draft" if p.answers is not None else "open",
             "updated_at": p.updated_at} for p in parts]


def unfinished_members(uow: UnitOfWork, submission: Submission) -> list[str]:
    return [m["name"] for m in member_progress(uow, submission) if m["state"] != "done"]
