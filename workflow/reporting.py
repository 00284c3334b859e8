"""Use cases of the partner's report: the form's answers, drafts, attachments and submission."""
from __future__ import annotations

import hashlib
import secrets
from datetime import datetime
from pathlib import Path

from sqlalchemy import select

from workflow.errors import InvalidInput, NotFound
from workflow.events import EventKind
from workflow.member_parts import unfinished_members
from workflow.models import Attachment, Cycle, Submission, SubmissionState
from workflow.report_errors import DraftConflict, IncompleteReport, partner_message
from workflow.report_form import check, display, text_in
from workflow.report_templates import template_of
from workflow.states import Action, awaits_report
from workflow.submissions import apply_action, load_submission, record
from workflow.uow import UnitOfWork


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
        raise InvalidInput(partner_message("already_submitted", language))
    errors = check(template_of(uow, submission), submission.answers or {}, complete=True,
                   language=language)
    if errors:
        raise IncompleteReport(errors)
    waiting = unfinished_members(uow, submission)
    if waiting:
        raise InvalidInput(partner_message("members_missing", language, n=len(waiting),
                              names=", ".join(waiting)))
    submission.paused_until = None
    submission.review_comments = None  # a returned report's comments were answered by this one
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
