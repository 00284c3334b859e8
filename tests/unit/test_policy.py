from datetime import UTC, date, datetime, time
from zoneinfo import ZoneInfo

import pytest

from workflow.calendar import WorkingCalendar
from workflow.errors import InvalidInput
from workflow.policy import (DueRung, ReportingPolicy, choose_rungs_to_send, effective_deadline,
                             in_send_window, plan_submission_rungs, send_instant)

BERLIN = ZoneInfo("Europe/Berlin")
POLICY = ReportingPolicy()
NRW = WorkingCalendar("DE", "NW")


def test_nrw_holidays_are_not_working_days():
    assert not NRW.is_working_day(date(2027, 5, 27))  # Fronleichnam, a holiday in NRW
    assert not NRW.is_working_day(date(2027, 11, 1))  # Allerheiligen
    assert NRW.is_working_day(date(2027, 10, 29))
    assert not NRW.is_working_day(date(2027, 10, 30))  # Saturday


def test_fronleichnam_is_a_working_day_in_berlin_but_not_in_nrw():
    assert WorkingCalendar("DE", "BE").is_working_day(date(2027, 5, 27))


def test_adding_working_days_skips_weekends_and_holidays():
    # Thursday before Easter 2027 + 1 working day: Good Friday and Easter Monday are skipped.
    assert NRW.add_working_days(date(2027, 3, 25), 1) == date(2027, 3, 30)
    assert NRW.add_working_days(date(2027, 3, 30), -1) == date(2027, 3, 25)
    assert NRW.working_days_between(date(2027, 3, 25), date(2027, 3, 30)) == 1
    assert NRW.working_days_between(date(2027, 3, 30), date(2027, 3, 25)) == -1


def test_deadline_on_a_holiday_moves_to_the_next_working_day():
    assert effective_deadline(POLICY, date(2027, 5, 27)) == date(2027, 5, 28)
    assert effective_deadline(POLICY.with_changes(roll_deadline_to_working_day=False),
                              date(2027, 5, 27)) == date(2027, 5, 27)


def test_default_ladder_has_the_documented_steps():
    rungs = plan_submission_rungs(POLICY, date(2027, 2, 1), date(2027, 4, 30))
    assert [r.rung for r in rungs] == [
        "invitation", "reminder-28", "reminder-14", "reminder-7", "reminder-2",
        "overdue-3", "overdue-10", "overdue-20", "overdue-30"]
    assert [r.seq for r in rungs] == list(range(9))
    by_name = {r.rung: r for r in rungs}
    assert NRW.working_days_between(by_name["reminder-2"].send_on, date(2027, 4, 30)) == 2
    assert NRW.working_days_between(date(2027, 4, 30), by_name["overdue-20"].send_on) == 20
    assert [r.escalation_level for r in rungs][-4:] == [1, 2, 3, 4]
    assert by_name["overdue-30"].flags_non_reporting
    assert all(NRW.is_working_day(r.send_on) for r in rungs)


def test_reminders_before_the_invitation_are_left_out():
    rungs = plan_submission_rungs(POLICY, date(2027, 4, 20), date(2027, 4, 30))
    assert [r.rung for r in rungs][:4] == ["invitation", "reminder-7", "reminder-2", "overdue-3"]


def test_mails_are_due_at_window_start_local_time_across_daylight_saving():
    # DST starts on Sunday 28 March 2027: 08:00 local is 07:00 UTC before, 06:00 UTC after.
    assert send_instant(POLICY, date(2027, 3, 26)) == datetime(2027, 3, 26, 7, 0, tzinfo=UTC)
    assert send_instant(POLICY, date(2027, 3, 30)) == datetime(2027, 3, 30, 6, 0, tzinfo=UTC)
    rungs = plan_submission_rungs(POLICY, date(2027, 2, 1), date(2027, 4, 30))
    assert all(r.due_at.astimezone(BERLIN).time() == time(8, 0) for r in rungs)
    assert len({r.send_on for r in rungs}) == len(rungs)


def test_send_window_is_a_working_morning_in_berlin():
    assert in_send_window(POLICY, datetime(2027, 3, 30, 8, 30, tzinfo=BERLIN))
    assert not in_send_window(POLICY, datetime(2027, 3, 30, 10, 0, tzinfo=BERLIN))
    assert not in_send_window(POLICY, datetime(2027, 3, 30, 7, 59, tzinfo=BERLIN))
    assert not in_send_window(POLICY, datetime(2027, 3, 29, 9, 0, tzinfo=BERLIN))  # Easter Monday
    # 06:30 UTC is 08:30 in summer time but 07:30 in winter time.
    assert in_send_window(POLICY, datetime(2027, 3, 30, 6, 30, tzinfo=UTC))
    assert not in_send_window(POLICY, datetime(2027, 3, 26, 6, 30, tzinfo=UTC))


def test_only_the_latest_due_rung_of_a_submission_is_sent():
    due = [DueRung(1, 10, 2), DueRung(2, 10, 3), DueRung(3, 10, 5), DueRung(4, 11, 0),
           DueRung(5, None, 0)]
    send, skip = choose_rungs_to_send(due)
    assert sorted(send) == [3, 4, 5]
    assert skip == [1, 2]


def test_policy_round_trips_through_a_mapping():
    changed = POLICY.with_changes(reminders_before=(10, 5), window_start=time(9, 0))
    assert ReportingPolicy.from_dict(changed.to_dict()) == changed


@pytest.mark.parametrize("bad", [{"window_start": "11:00"}, {"timezone": "Mars/Olympus"},
                                 {"cycle_due": "13-45"}, {"unknown_key": 1},
                                 {"overdue_steps": [{"after_working_days": 3}]}])
def test_bad_policy_is_refused_with_a_clear_error(bad):
    with pytest.raises(InvalidInput):
        ReportingPolicy.from_dict(bad)


def test_an_all_day_window_includes_the_last_minute_before_midnight():
    from datetime import UTC, datetime, time

    from workflow.policy import END_OF_DAY, ReportingPolicy, in_send_window
    policy = ReportingPolicy(window_start=time(0, 0), window_end=END_OF_DAY,
                             window_working_days_only=False)
    assert in_send_window(policy, datetime(2026, 11, 25, 22, 59, 30, tzinfo=UTC))  # 23:59:30
    stored = policy.to_dict()
    assert stored["window_end"] == "24:00"
    assert ReportingPolicy.from_dict(stored) == policy


@pytest.mark.parametrize("change, said", [
    ({"holiday_country": "XX"}, "Keine Feiertage bekannt für XX-NW"),
    ({"holiday_subdivision": "ZZ"}, "Keine Feiertage bekannt für DE-ZZ"),
    ({"link_grace_days": 999999999}, "link_grace_days muss eine ganze Zahl zwischen 0 und 3650"),
    ({"link_grace_days": -5}, "link_grace_days muss eine ganze Zahl"),
    ({"min_gap_working_days": 100000}, "min_gap_working_days muss eine ganze Zahl"),
    ({"retention_cycles": 0}, "retention_cycles muss eine ganze Zahl zwischen 1 und 100"),
    ({"cycle_due": "02-29"}, "cycle_due muss ein Tag sein, den es in jedem Jahr gibt"),
    ({"cycle_opens": "13-01"}, "cycle_opens muss ein Tag sein"),
    ({"reminders_before": [9223372036854775807]}, "reminders_before muss eine ganze Zahl"),
    ({"reminders_before": [1e308]}, "reminders_before muss eine ganze Zahl"),
    ({"reminders_before": [-1, 0]}, "reminders_before muss eine ganze Zahl zwischen 1 und 250"),
    ({"reminders_before": [7, 7]}, "reminders_before: jede Zahl von Tagen nur einmal"),
    ({"overdue_steps": [{"after_working_days": 99999999, "email": "overdue_reminder",
                         "audience": "contact"}]}, "after_working_days muss eine ganze Zahl"),
    ({"overdue_steps": [{"after_working_days": -3, "email": "overdue_reminder",
                         "audience": "contact"}]}, "after_working_days muss eine ganze Zahl"),
    ({"overdue_steps": [{"after_working_days": 3, "email": "overdue_reminder",
                         "audience": "contact"}] * 2}, "after_working_days: jede Zahl"),
    ({"auto_open": "yes"}, "auto_open muss true oder false sein"),
    ({"deadline_notice": 1}, "deadline_notice muss true oder false sein"),
    # Said in the policy's own words, not Python's ("hour must be in 0..23"):
    ({"window_start": "25:00"}, 'window_start braucht eine Uhrzeit wie "08:00"'),
    ({"window_end": "8"}, 'window_end braucht eine Uhrzeit wie "08:00"'),
    ({"digest_at": "24:00"}, 'digest_at braucht eine Uhrzeit wie "07:00" oder "off"'),
    ({"overdue_steps": [{"after_working_days": 3, "email": "overdue_reminder",
                         "audience": "contact", "flag_non_reporting": True}]},
     "Stufe 1: unbekannt: flag_non_reporting"),
    ({"overdue_steps": [{"after_working_days": 3, "audience": "contact"}]},
     "Stufe 1: es fehlt email"),
    ({"overdue_steps": [{"after_working_days": 3, "email": "overdue_reminder",
                         "audience": "boss"}]}, 'audience muss eines von contact'),
    ({"overdue_steps": [{"after_working_days": 3, "email": "overdue_reminder",
                         "audience": "head", "flags_non_reporting": "yes"}]},
     "flags_non_reporting muss true oder false sein"),
    ({"overdue_steps": ["overdue_reminder"]}, "Stufe 1: keine Tabelle"),
])
def test_a_policy_that_would_fail_later_is_refused_when_it_is_set(change, said):
    # The TOML file of `policy set` and the ladder page go through this one check: a policy
    # accepted here must open cycles, plan and compose every mail.
    with pytest.raises(InvalidInput) as refused:
        ReportingPolicy.from_dict({**ReportingPolicy().to_dict(), **change})
    assert said in str(refused.value)


def test_the_refusal_of_a_policy_is_worded_in_the_pages_language():
    with pytest.raises(InvalidInput) as refused:
        ReportingPolicy.from_dict({"auto_open": "yes"}, language="en")
    assert "auto_open must be true or false" in str(refused.value)


def test_a_deadline_before_the_opening_in_the_year_is_refused():
    with pytest.raises(InvalidInput, match="cycle_due muss im Jahr nach cycle_opens liegen"):
        ReportingPolicy.from_dict({"cycle_opens": "05-01", "cycle_due": "04-30"})
