import itertools

import pytest

from workflow.errors import IllegalTransition
from workflow.states import TRANSITIONS, Action, SubmissionState, awaits_report, transition

S, A = SubmissionState, Action

EXPECTED = {
    (S.INVITED, A.OPEN): S.OPENED,
    (S.INVITED, A.SAVE_DRAFT): S.DRAFT, (S.OPENED, A.SAVE_DRAFT): S.DRAFT,
    (S.DRAFT, A.SAVE_DRAFT): S.DRAFT, (S.RETURNED, A.SAVE_DRAFT): S.RETURNED,
    (S.INVITED, A.SUBMIT): S.SUBMITTED, (S.OPENED, A.SUBMIT): S.SUBMITTED,
    (S.DRAFT, A.SUBMIT): S.SUBMITTED, (S.RETURNED, A.SUBMIT): S.SUBMITTED,
    (S.SUBMITTED, A.RETURN): S.RETURNED, (S.SUBMITTED, A.ACCEPT): S.ACCEPTED,
    (S.INVITED, A.EXEMPT): S.EXEMPTED, (S.OPENED, A.EXEMPT): S.EXEMPTED,
    (S.DRAFT, A.EXEMPT): S.EXEMPTED, (S.RETURNED, A.EXEMPT): S.EXEMPTED,
    (S.EXEMPTED, A.REVOKE_EXEMPTION): S.INVITED,
}


@pytest.mark.parametrize(("state", "action"), sorted(EXPECTED))
def test_every_allowed_move_leads_where_expected(state, action):
    assert transition(state, action) == EXPECTED[(state, action)]


FORBIDDEN = sorted(set(itertools.product(S, A)) - set(EXPECTED))


@pytest.mark.parametrize(("state", "action"), FORBIDDEN)
def test_every_other_move_raises_a_named_error(state, action):
    with pytest.raises(IllegalTransition) as caught:
        transition(state, action)
    assert caught.value.state == state and caught.value.action == action


def test_the_table_is_exactly_the_documented_moves():
    assert TRANSITIONS == EXPECTED


def test_accepted_report_cannot_be_submitted_again():
    with pytest.raises(IllegalTransition, match="submit"):
        transition("accepted", "submit")


def test_only_unsettled_states_await_a_report():
    assert {s for s in S if awaits_report(s)} == {S.INVITED, S.OPENED, S.DRAFT, S.RETURNED}
