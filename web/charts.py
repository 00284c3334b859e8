"""Geometry of the burn-up chart: pure arithmetic, drawn as inline SVG by the cycle page."""
from __future__ import annotations

import math
from dataclasses import dataclass

WIDTH, HEIGHT = 640, 300
LEFT, RIGHT, TOP, BOTTOM = 56, 120, 16, 44  # room for the axes and the series' labels


@dataclass(frozen=True)
class Series:
    points: str  # "x,y x,y ..." for a <polyline>
    end_x: float
    end_y: float
    total: int


@dataclass(frozen=True)
class BurnUpChart:
    width: int
    height: int
    left: int
    top: int
    right: float  # x of the plot's right edge
    bottom: float  # y of the plot's bottom edge
    this_year: Series
    last_year: Series | None
    deadline_x: float
    x_ticks: list[tuple[float, int]]  # (x, day since opening)
    y_ticks: list[tuple[float, int]]  # (y, count)


def nice_ceiling(value: int) -> int:
    """The smallest of 1, 2, 2.5, 5 × 10^n at or above ``value`` (at least 1)."""
    if value <= 1:
        return 1
    power = 10 ** math.floor(math.log10(value))
    for factor in (1, 2, 2.5, 5, 10):
        if factor * power >= value:
            return int(math.ceil(factor * power))
    return 10 * power


def _day_step(days: int) -> int:
    for step in (7, 14, 28, 56):
        if days / step <= 10:
            return step
    return 7 * math.ceil(days / 70)


def step_points(steps: list[tuple[int, int]], until_day: int, x, y) -> list[tuple[float, float]]:
    """A staircase from (0, 0): each day's new submissions rise at that day, flat in between."""
    points = [(x(0), y(0))]
    current = 0
    for day, cumulative in steps:
        points.append((x(day), y(current)))
        points.append((x(day), y(cumulative)))
        current = cumulative
    points.append((x(max(until_day, steps[-1][0] if steps else 0)), y(current)))
    return points


def burn_up_chart(this_year, last_year, expected: int) -> BurnUpChart:
    """``this_year``/``last_year``: workflow.cycle_overview.BurnUp (last_year may be None);
    ``expected``: this year's partners not exempted, the height the line climbs towards."""
    days = max(this_year.until_day, this_year.deadline_day,
               last_year.until_day if last_year else 0, 1)
    days = _day_step(days) * math.ceil(days / _day_step(days))
    top_count = nice_ceiling(max(expected, this_year.total, last_year.total if last_year else 0))
    right, bottom = WIDTH - RIGHT, HEIGHT - BOTTOM

    def x(day: int) -> float:
        return round(LEFT + (right - LEFT) * min(max(day, 0), days) / days, 1)

    def y(count: int) -> float:
        return round(bottom - (bottom - TOP) * count / top_count, 1)

    def series(burn_up) -> Series:
        points = step_points(burn_up.steps, burn_up.until_day, x, y)
        return Series(points=" ".join(f"{px},{py}" for px, py in points),
                      end_x=points[-1][0], end_y=points[-1][1], total=burn_up.total)

    step = _day_step(days)
    count_step = top_count / 4
    return BurnUpChart(
        width=WIDTH, height=HEIGHT, left=LEFT, top=TOP, right=right, bottom=bottom,
        this_year=series(this_year), last_year=series(last_year) if last_year else None,
        deadline_x=x(this_year.deadline_day),
        x_ticks=[(x(day), day) for day in range(0, days + 1, step)],
        y_ticks=[(y(round(count_step * n)), round(count_step * n)) for n in range(5)
                 if count_step * n == int(count_step * n) or n in (0, 4)])


def table_days(this_year, last_year) -> list[int]:
    """The days the data table lists: every day on which either line rises, and the deadline."""
    days = {day for day, _ in this_year.steps} | {this_year.deadline_day}
    if last_year is not None:
        days |= {day for day, _ in last_year.steps}
    return sorted(days)
