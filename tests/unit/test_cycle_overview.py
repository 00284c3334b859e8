"""Pure rules of the cycle overview: what counts as overdue, the order of rungs, the burn-up's
series and the chart's geometry."""
from __future__ import annotations

import threading

import pytest
from datetime import date

from web.charts import burn_up_chart, nice_ceiling, step_points, table_days
from workflow.cycle_overview import BurnUp, VersionedCache, overdue_cutoff, rung_order
from workflow.policy import ReportingPolicy

POLICY = ReportingPolicy()


def burn(steps, until_day=60, deadline_day=40, year=2027):
    return BurnUp(year=year, opens_on=date(2027, 2, 1), deadline_day=deadline_day,
                  until_day=until_day, steps=steps)


def test_a_deadline_is_overdue_from_the_day_after_it():
    # Thursday 29 April 2027: a deadline of Wednesday has passed, Thursday's has not.
    assert overdue_cutoff(POLICY, date(2027, 4, 29)) == date(2027, 4, 28)


def test_a_deadline_on_a_weekend_counts_from_the_monday_it_rolls_to():
    # Saturday 1 May 2027 is a holiday and a weekend: a deadline on Fri 30 April has passed by
    # Monday 3 May, but a deadline on Sat 1 or Sun 2 May rolls to that Monday and is not overdue.
    assert overdue_cutoff(POLICY, date(2027, 5, 3)) == date(2027, 4, 30)
    assert overdue_cutoff(POLICY, date(2027, 5, 4)) == date(2027, 5, 3)


def test_without_rolling_every_calendar_day_counts():
    policy = POLICY.with_changes(roll_deadline_to_working_day=False)
    assert overdue_cutoff(policy, date(2027, 5, 3)) == date(2027, 5, 2)


def test_rungs_are_ordered_as_the_ladder_runs():
    rungs = ["overdue-10", "reminder-2", "invitation", "overdue-3", "reminder-28", "receipt"]
    assert sorted(rungs, key=rung_order) == ["invitation", "reminder-28", "reminder-2",
                                             "overdue-3", "overdue-10", "receipt"]


def test_the_series_counts_up_and_reads_by_day():
    series = burn([(2, 1), (14, 3)])
    assert [series.on_day(day) for day in (0, 2, 13, 14, 90)] == [0, 1, 1, 3, 3]
    assert series.total == 3 and burn([]).total == 0


def test_a_staircase_rises_on_the_day_and_runs_flat_to_the_end():
    points = step_points([(2, 1), (5, 3)], 10, lambda d: d, lambda c: -c)
    assert points == [(0, 0), (2, 0), (2, -1), (5, -1), (5, -3), (10, -3)]


def test_nice_ceilings():
    assert [nice_ceiling(n) for n in (0, 1, 3, 7, 19, 20, 21, 230, 20000)] == \
        [1, 1, 5, 10, 20, 20, 25, 250, 20000]


def test_the_chart_puts_the_deadline_and_both_years_on_one_scale():
    this_year = burn([(2, 1), (14, 4)], until_day=20, deadline_day=88)
    last_year = burn([(3, 2), (100, 10)], until_day=100, deadline_day=87, year=2026)
    chart = burn_up_chart(this_year, last_year, expected=20)
    days = chart.x_ticks[-1][1]
    assert days >= 100 and chart.x_ticks[0] == (chart.left, 0)
    width = chart.right - chart.left
    assert abs(chart.deadline_x - (chart.left + width * 88 / days)) < 0.1
    assert chart.y_ticks[0] == (chart.bottom, 0) and chart.y_ticks[-1] == (chart.top, 20)
    assert chart.this_year.end_x < chart.last_year.end_x  # this year runs to today only
    assert chart.last_year.end_y == chart.top + (chart.bottom - chart.top) / 2  # 10 of 20


def test_the_chart_without_last_year_or_submissions():
    chart = burn_up_chart(burn([], until_day=0), None, expected=0)
    assert chart.last_year is None and chart.this_year.points.startswith(f"{chart.left}.0,")


def test_the_data_table_lists_every_rise_and_the_deadline():
    assert table_days(burn([(2, 1), (14, 4)]), burn([(3, 2), (14, 5)])) == [2, 3, 14, 40]


def test_the_figures_are_computed_once_per_version():
    cache, calls = VersionedCache(), []

    def compute():
        calls.append(1)
        return len(calls)

    assert [cache.get(7, "v1", compute) for _ in range(3)] == [("v1", 1)] * 3
    assert cache.get(7, "v2", compute) == ("v2", 2) and cache.get(8, "v2", compute) == ("v2", 3)
    assert cache.get(7, "v2", compute) == ("v2", 2) and len(calls) == 3


def test_requests_waiting_for_stale_figures_share_one_computation():
    cache, calls, started = VersionedCache(), [], threading.Event()
    release = threading.Event()

    def slow():
        calls.append(1)
        started.set()
        release.wait(5)
        return "figures"

    results = []
    first = threading.Thread(target=lambda: results.append(cache.get(1, "v", slow)))
    first.start()
    started.wait(5)
    others = [threading.Thread(target=lambda: results.append(cache.get(1, "v", slow)))
              for _ in range(3)]
    for thread in others:
        thread.start()
    release.set()
    for thread in [first, *others]:
        thread.join(5)
    assert results == [("v", "figures")] * 4 and len(calls) == 1


def test_while_new_figures_are_computed_others_get_the_previous_ones_with_their_version():
    cache, started, release = VersionedCache(), threading.Event(), threading.Event()
    cache.get(1, "v1", lambda: "old")

    def slow():
        started.set()
        release.wait(5)
        return "new"

    computing = threading.Thread(target=lambda: cache.get(1, "v2", slow, stale_ok=True))
    computing.start()
    started.wait(5)
    assert cache.get(1, "v2", slow, stale_ok=True) == ("v1", "old")
    release.set()
    computing.join(5)
    assert cache.get(1, "v2", slow, stale_ok=True) == ("v2", "new")


def test_the_cache_keeps_at_most_its_size_and_drops_the_least_recently_used():
    cache, calls = VersionedCache(max_entries=2), []

    def compute():
        calls.append(1)
        return len(calls)

    cache.get("a", "v", compute)
    cache.get("b", "v", compute)
    cache.get("a", "v", compute)  # "a" used again: "b" is now the oldest
    cache.get("c", "v", compute)
    assert cache.get("a", "v", compute) == ("v", 1) and len(calls) == 3
    assert cache.get("b", "v", compute) == ("v", 4)  # computed again


def test_a_failed_computation_keeps_nothing_and_the_next_request_computes_again():
    cache = VersionedCache()

    def failing():
        raise RuntimeError("database gone")

    with pytest.raises(RuntimeError):
        cache.get("k", "v", failing)
    assert cache._computing == {} and cache.get("k", "v", lambda: 1) == ("v", 1)
