"""The submission state machine: one table of allowed moves."""
from __future__ import annotations

from enum import StrEnum

from workflow.errors import IllegalTransition


class SubmissionState(StrEnum):
    INVITED = "invited"
    OPENED = "opened"
    DRAFT = "draft"
    SUBMITTED = "submitted"
    RETURNED = "returned"
    ACCEPTED = "accepted"
    EXEMPTED = "exempted"


class Action(StrEnum):
    OPEN = "open"
    SAVE_DRAFT = "save_draft"
    SUBMIT = "submit"
    RETURN = "return"
    ACCEPT = "accept"
    EXEMPT = "exempt"
    REVOKE_EXEMPTION = "revoke_exemption"


S, A = SubmissionState, Action

TRANSITIONS: dict[tuple[SubmissionState, Action], SubmissionState] = {
    (S.INVITED, A.OPEN): S.OPENED,
    (S.INVITED, A.SAVE_DRAFT): S.DRAFT,
    (S.OPENED, A.SAVE_DRAFT): S.DRAFT,
    (S.DRAFT, A.SAVE_DRAFT): S.DRAFT,
    (S.RETURNED, A.SAVE_DRAFT): S.RETURNED,
    (S.INVITED, A.SUBMIT): S.SUBMITTED,
    (S.OPENED, A.SUBMIT): S.SUBMITTED,
    (S.DRAFT, A.SUBMIT): S.SUBMITTED,
    (S.RETURNED, A.SUBMIT): S.SUBMITTED,
    (S.SUBMITTED, A.RETURN): S.RETURNED,
    (S.SUBMITTED, A.ACCEPT): S.ACCEPTED,
    (S.INVITED, A.EXEMPT): S.EXEMPTED,
    (S.OPENED, A.EXEMPT): S.EXEMPTED,
    (S.DRAFT, A.EXEMPT): S.EXEMPTED,
    (S.RETURNED, A.EXEMPT): S.EXEMPTED,
    (S.EXEMPTED, A.REVOKE_EXEMPTION): S.INVITED,
}

# States in which the partner still owes a report: reminders and escalation apply only here.
AWAITING_REPORT = frozenset({S.INVITED, S.OPENED, S.DRAFT, S.RETURNED})
# States in which nothing more is asked of the partner.
SETTLED = frozenset({S.SUBMITTED, S.ACCEPTED, S.EXEMPTED})


def transition(state: SubmissionState | str, action: Action | str) -> SubmissionState:
    """Return the state ``action`` leads to from ``state``; raise IllegalTransition otherwise."""
    state, action = SubmissionState(state), Action(action)
    try:
        return TRANSITIONS[(state, action)]
    except KeyError:
        raise IllegalTransition(state, action) from None


def awaits_report(state: SubmissionState | str) -> bool:
    return SubmissionState(state) in AWAITING_REPORT
