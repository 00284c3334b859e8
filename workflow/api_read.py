"""What the read-only JSON API answers: cycles with their figures, and submissions page by page
(keyset pages by id: as fast on page 400 as on page 1)."""
from __future__ import annotations

from sqlalchemy import select

from workflow.cycles import cycle_status
from workflow.errors import NotFound
from workflow.models import Cycle, Partner, Submission
from workflow.states import SubmissionState
from workflow.uow import UnitOfWork

MAX_PAGE = 500


def _cycle_summary(uow: UnitOfWork, cycle: Cycle) -> dict:
    return {"id": cycle.id, "programme": cycle.programme.slug, **cycle_status(uow, cycle).to_dict()}


def cycles(uow: UnitOfWork) -> list[dict]:
    return [_cycle_summary(uow, cycle) for cycle in uow.session.scalars(
        select(Cycle).order_by(Cycle.year.desc(), Cycle.id))]


def cycle(uow: UnitOfWork, cycle_id: int) -> dict:
    found = uow.session.get(Cycle, cycle_id)
    if found is None:
        raise NotFound(f"Berichtszyklus {cycle_id} gibt es nicht.")
    return _cycle_summary(uow, found)


def _submission(row, *, with_answers: bool) -> dict:
    item = {"id": row.Submission.id, "cycle_id": row.Submission.cycle_id,
            "partner": {"id": row.Partner.id, "name": row.Partner.name,
                        "kind": row.Partner.kind.value, "employees": row.Partner.employees,
                        "group_id": row.Partner.group_id},
            "state": row.Submission.state.value, "due_on": row.Submission.due_on.isoformat(),
            "escalation_level": row.Submission.escalation_level,
            "non_reporting": row.Submission.non_reporting,
            "reminders_paused": row.Submission.reminders_paused,
            "submitted_at": row.Submission.submitted_at.isoformat()
            if row.Submission.submitted_at else None}
    if with_answers:
        item["answers"] = row.Submission.answers or {}
    return item


def submissions(uow: UnitOfWork, cycle_id: int, *, state: str | None = None, after: int = 0,
                limit: int = 100, with_answers: bool = False) -> dict:
    if uow.session.get(Cycle, cycle_id) is None:
        raise NotFound(f"Berichtszyklus {cycle_id} gibt es nicht.")
    limit = max(1, min(limit, MAX_PAGE))
    query = (select(Submission, Partner).join(Partner, Partner.id == Submission.partner_id)
             .where(Submission.cycle_id == cycle_id, Submission.id > after)
             .order_by(Submission.id).limit(limit + 1))
    if state is not None:
        query = query.where(Submission.state == SubmissionState(state))
    rows = uow.session.execute(query).all()
    items = [_submission(row, with_answers=with_answers) for row in rows[:limit]]
    return {"items": items,
            "next_after": items[-1]["id"] if len(rows) > limit else None}


def submission(uow: UnitOfWork, submission_id: int) -> dict:
    row = uow.session.execute(
        select(Submission, Partner).join(Partner, Partner.id == Submission.partner_id)
        .where(Submission.id == submission_id)).first()
    if row is None:
        raise NotFound(f"Meldung {submission_id} gibt es nicht.")
    return _submission(row, with_answers=True)
