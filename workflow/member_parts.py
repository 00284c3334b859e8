"""Group partners: each member fills its own part, the lead submits the whole."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import select

from workflow.errors import InvalidInput, NotFound
from workflow.events import EventKind
from workflow.models import MemberPart, Submission
from workflow.report_errors import DraftConflict, IncompleteReport, partner_message
from workflow.report_form import check
from workflow.report_templates import template_of
from workflow.states import awaits_report
from workflow.submissions import load_submission, record
from workflow.uow import UnitOfWork


def _load_part(uow: UnitOfWork, part_id: int,
               expected_version: int) -> tuple[MemberPart, Submission]:
    part = uow.session.scalars(select(MemberPart).where(MemberPart.id == part_id)
                               .with_for_update(key_share=True)).first()
    if part is None:
        raise NotFound("Diesen Teil gibt es nicht.")
    if part.version != expected_version:
        raise DraftConflict("Dieser Teil wurde inzwischen von jemand anderem gespeichert.")
    submission = load_submission(uow, part.submission_id)
    if not awaits_report(submission.state):
        raise InvalidInput(partner_message("group_submitted", "de"))
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
    uow.wait_for_mail_in_flight(submission.id)  # no invitation after the part's commit
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
