"""The coordinators' review of a submitted report: accept, or return it with a comment per field."""
from __future__ import annotations

from datetime import datetime

from workflow.cycles import plan_rungs_for_submission, policy_of
from workflow.errors import InvalidInput, NotFound
from workflow.ledger import queue_immediate
from workflow.models import Submission, utcnow
from workflow.report_form import text_in
from workflow.report_templates import template_of
from workflow.states import Action
from workflow.submissions import apply_action, load_submission
from workflow.uow import UnitOfWork


def return_report(uow: UnitOfWork, submission_id: int, *, comments: dict[str, str],
                  now: datetime, actor: str) -> Submission:
    """A coordinator sends the report back with comments; the partner is mailed, the ladder
    resumes."""
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
    plan_rungs_for_submission(uow, submission, policy_of(submission.cycle.programme), after=now)
    queue_immediate(uow, submission, "returned", now, wall=utcnow(),
                    occasion=f"v{submission.version}")
    return submission


def accept_report(uow: UnitOfWork, submission_id: int, *, now: datetime, actor: str):
    submission = apply_action(uow, submission_id, Action.ACCEPT, now=now, actor=actor)
    submission.review_comments = None
    return submission


def comment_labels(uow: UnitOfWork, submission: Submission, language: str) -> dict[str, str]:
    try:
        template = template_of(uow, submission)
    except NotFound:
        return {}
    return {q.id: text_in(q.label, language) for q in template.questions}
