"""The notification ledger's rules: every status move, the keys, and whether a mail is owed."""
import itertools
from datetime import UTC, date, datetime, timedelta

import pytest

from workflow.delivery import backoff, pause_length
from workflow.errors import IllegalTransition
from workflow.ledger import (MOVES, LedgerMove, Verdict, cycle_key, immediate_key, member_key,
                             moved, sources, still_owed, submission_key, target, window_bound)
from workflow.models import Notification, NotificationStatus
from workflow.policy import Audience, ReportingPolicy, in_send_window, next_window_start

N, M = NotificationStatus, LedgerMove

EXPECTED = {
    (N.PLANNED, M.QUEUE): N.QUEUED, (N.PLANNED, M.SKIP): N.SKIPPED,
    (N.PLANNED, M.CANCEL): N.CANCELLED,
    # handed over by the sweep, as a worker finds it
    (N.PLANNED, M.CLAIM): N.SENDING, (N.PLANNED, M.HOLD): N.PLANNED,
    (N.PLANNED, M.DEFER): N.QUEUED, (N.PLANNED, M.FAIL): N.FAILED,
    (N.QUEUED, M.CANCEL): N.CANCELLED, (N.QUEUED, M.HOLD): N.PLANNED,
    (N.QUEUED, M.CLAIM): N.SENDING, (N.QUEUED, M.DEFER): N.QUEUED, (N.QUEUED, M.FAIL): N.FAILED,
    (N.SENDING, M.CLAIM): N.SENDING, (N.SENDING, M.CANCEL): N.CANCELLED,
    (N.SENDING, M.HOLD): N.PLANNED, (N.SENDING, M.RECORD_SENT): N.SENT,
    (N.SENDING, M.RETRY): N.QUEUED, (N.SENDING, M.DEFER): N.QUEUED,
    (N.SENDING, M.FAIL): N.FAILED,
    (N.FAILED, M.REQUEUE): N.QUEUED, (N.CANCELLED, M.REPLAN): N.PLANNED,
}


@pytest.mark.parametrize(("status", "move"), sorted(EXPECTED))
def test_every_allowed_move_leads_where_expected(status, move):
    assert moved(status, move) == EXPECTED[(status, move)]


@pytest.mark.parametrize(("status", "move"), sorted(set(itertools.product(N, M)) - set(EXPECTED)))
def test_every_other_move_raises_a_named_error(status, move):
    with pytest.raises(IllegalTransition):
        moved(status, move)


def test_the_table_is_exactly_the_documented_moves():
    assert MOVES == EXPECTED


def test_a_sent_mail_never_moves_again():
    assert not [move for (status, move) in MOVES if status is N.SENT]


def test_set_based_moves_start_only_where_the_table_allows():
    assert sources(M.QUEUE) == [N.PLANNED]
    assert set(sources(M.DEFER)) == {N.PLANNED, N.QUEUED, N.SENDING}
    assert all(target(move) == MOVES[(sources(move)[0], move)] for move in M)


def test_keys_are_unique_per_deadline_except_the_invitation():
    assert submission_key(7, "invitation", date(2027, 4, 30)) == "s7:invitation"
    assert submission_key(7, "reminder-14", date(2027, 4, 30)) == "s7:reminder-14@2027-04-30"
    assert submission_key(7, "reminder-14", date(2027, 5, 31)) != submission_key(
        7, "reminder-14", date(2027, 4, 30))
    assert cycle_key(3, "deadline_notice", date(2027, 4, 30)) == "c3:deadline_notice@2027-04-30"
    assert member_key(5) == "m5:invitation"
    assert immediate_key(7, "receipt", "v3") == "s7:receipt:v3"


TODAY = date(2027, 3, 10)


def owed(**overrides):
    facts = {"needs_open_report": True, "state": "invited", "paused_until": None,
             "reminders_paused": False, "part_completed": False, "today": TODAY, **overrides}
    return still_owed(**facts).verdict


def test_a_mail_about_the_report_goes_while_the_report_is_owed():
    assert {s: owed(state=s) for s in ("invited", "opened", "draft", "returned")} == dict.fromkeys(
        ("invited", "opened", "draft", "returned"), Verdict.SEND)


def test_no_mail_about_the_report_after_it_was_submitted_accepted_or_exempted():
    assert {owed(state=s) for s in ("submitted", "accepted", "exempted")} == {Verdict.CANCEL}


def test_a_pause_holds_mails_until_its_day_is_over():
    assert owed(paused_until=TODAY) is Verdict.WAIT
    assert owed(paused_until=TODAY - timedelta(days=1)) is Verdict.SEND


def test_a_coordinators_pause_holds_ladder_mails_until_it_is_lifted():
    assert owed(reminders_paused=True) is Verdict.WAIT
    assert owed(reminders_paused=False) is Verdict.SEND


def test_a_coordinators_pause_does_not_keep_a_settled_report_owed():
    assert owed(reminders_paused=True, state="submitted") is Verdict.CANCEL


def test_a_coordinators_pause_holds_no_receipt_or_notice():
    assert owed(needs_open_report=False, reminders_paused=True) is Verdict.SEND


def test_a_finished_member_part_gets_no_more_mail():
    assert owed(part_completed=True) is Verdict.CANCEL


def test_answers_and_notices_go_whatever_the_state():
    assert owed(needs_open_report=False, state="submitted", paused_until=TODAY) is Verdict.SEND


def test_only_ladder_mails_to_partners_wait_for_the_window():
    def row(needs, audience):
        return Notification(needs_open_report=needs, audience=audience)
    assert window_bound(row(True, Audience.CONTACT))
    assert window_bound(row(True, Audience.HEAD))
    assert not window_bound(row(True, Audience.COORDINATORS))  # the non-reporting notice
    assert not window_bound(row(False, Audience.CONTACT))  # a receipt


def test_the_next_window_opens_on_the_next_working_morning():
    policy = ReportingPolicy()
    friday_night = datetime(2027, 3, 12, 21, 0, tzinfo=UTC)
    opens = next_window_start(policy, friday_night)
    assert opens == datetime(2027, 3, 15, 7, 0, tzinfo=UTC)  # Monday 08:00 in Berlin
    assert in_send_window(policy, opens)
    inside = datetime(2027, 3, 15, 8, 30, tzinfo=UTC)
    assert next_window_start(policy, inside) == inside
    before_easter = datetime(2027, 3, 25, 12, 0, tzinfo=UTC)  # Thursday; Good Friday, Easter
    assert next_window_start(policy, before_easter).date() == date(2027, 3, 30)


def test_retries_back_off_and_an_outage_is_probed_at_least_every_fifteen_minutes():
    assert [backoff(n) for n in (1, 2, 3)] == [timedelta(minutes=m) for m in (1, 2, 4)]
    assert backoff(20) == timedelta(hours=1)
    assert pause_length(1) == timedelta(seconds=30)
    assert max(pause_length(n) for n in range(1, 400)) == timedelta(minutes=15)


def test_a_negative_minimum_gap_is_refused():
    from workflow.errors import InvalidInput
    with pytest.raises(InvalidInput, match="min_gap"):
        ReportingPolicy.from_dict({"min_gap_working_days": -1})
    assert ReportingPolicy().min_gap_working_days == 3
