"""The partner's requests to the coordinators: an extension (and its decision) and an intent
("we will submit by …", "we cannot report")."""
from __future__ import annotations

import secrets
from datetime import date, datetime

from sqlalchemy import select

from workflow.cycles import policy_of
from workflow.errors import InvalidInput, NotFound
from workflow.events import EventKind
from workflow.ledger import queue_immediate
from workflow.models import ExtensionRequest, ExtensionStatus, utcnow
from workflow.policy import Audience, effective_deadline
from workflow.report_errors import RequestProblems, partner_message
from workflow.states import awaits_report
from workflow.submissions import extend_deadline, load_submission, record
from workflow.uow import UnitOfWork


def pending_extension(uow: UnitOfWork, submission_id: int) -> ExtensionRequest | None:
    """The partner's request still waiting for a decision, if any (one at a time)."""
    return uow.session.scalars(
        select(ExtensionRequest)
        .where(ExtensionRequest.submission_id == submission_id,
               ExtensionRequest.status == ExtensionStatus.PENDING)
        .order_by(ExtensionRequest.id).limit(1)).first()


def request_extension(uow: UnitOfWork, submission_id: int, *, reason: str,
                      proposed_due: date | None, now: datetime, actor: str,
                      language: str = "de") -> ExtensionRequest:
    """A partner asks for a later deadline; one request waits for a decision at a time."""
    submission = load_submission(uow, submission_id, for_update=True)
    if not awaits_report(submission.state):
        raise InvalidInput(partner_message("no_extension_needed", language))
    waiting = pending_extension(uow, submission.id)
    if waiting is not None:
        raise InvalidInput(partner_message(
            "request_pending", language, asked=_day(waiting.created_at.date(), language),
            day=_day(waiting.proposed_due, language)))
    problems = {}
    if proposed_due is None:
        problems["proposed_due"] = partner_message("date_needed", language)
    elif proposed_due <= submission.due_on:
        problems["proposed_due"] = partner_message(
            "after_deadline", language, due=_day(submission.due_on, language))
    elif (proposed_due - submission.due_on).days > 366:
        problems["proposed_due"] = partner_message("too_long_extension", language)
    reason = (reason or "").strip()
    if not reason or len(reason) > 2000:
        problems["reason"] = partner_message("reason_needed", language)
    if problems:
        raise RequestProblems(problems)
    request = ExtensionRequest(submission_id=submission.id, reason=reason,
                               proposed_due=proposed_due, created_at=now)
    uow.session.add(request)
    uow.session.flush()
    record(uow, submission, EventKind.EXTENSION_REQUESTED, now, actor,
           proposed_due=proposed_due.isoformat(), request_id=request.id)
    queue_immediate(uow, submission, "extension_request", now, wall=utcnow(),
                    occasion=request.id, audience=Audience.COORDINATORS,
                    payload={"request_id": request.id, "reason": reason,
                             "proposed_due": proposed_due.isoformat()})
    return request


def _day(day: date, language: str) -> str:
    return day.strftime("%Y-%m-%d" if language == "en" else "%d.%m.%Y")


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
    queue_immediate(uow, submission, "extension_decision", now, wall=utcnow(),
                    occasion=request.id, payload={"granted": grant, "decision_comment": comment})
    return request


def declare_intent(uow: UnitOfWork, submission_id: int, *, intent: str, now: datetime,
                   actor: str, until: date | None = None, reason: str = "", language: str = "de"):
    """"We will submit by DATE" pauses reminders until then; "we cannot report" tells
    coordinators."""
    submission = load_submission(uow, submission_id, for_update=True)
    if not awaits_report(submission.state):
        raise InvalidInput(partner_message("already_submitted", language))
    reason = (reason or "").strip()[:2000]
    if intent == "will_submit_by":
        if until is None or until <= now.date():
            raise RequestProblems({"until": partner_message("future_date", language)})
        policy = policy_of(submission.cycle.programme)
        if (until - effective_deadline(policy, submission.due_on)).days > 90:
            raise RequestProblems({"until": partner_message("too_far", language)})
        uow.wait_for_mail_in_flight(submission.id)  # no reminder after the pause's commit
        submission.paused_until = until
    elif intent == "cannot_report":
        if not reason:
            raise RequestProblems({"reason": partner_message("reason_missing", language)})
    else:
        raise RequestProblems({"intent-will": partner_message("unknown_intent", language)})
    record(uow, submission, EventKind.INTENT_DECLARED, now, actor, intent=intent,
           until=until.isoformat() if until else None, reason=reason)
    uow.session.flush()
    queue_immediate(uow, submission, "intent_notice", now, wall=utcnow(),
                    occasion=secrets.token_hex(6), audience=Audience.COORDINATORS,
                    payload={"intent": intent,
                             "intent_date": until.isoformat() if until else None,
                             "reason": reason})
    return submission
