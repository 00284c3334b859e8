"""Working days: weekends and public holidays of one region (NRW by default)."""
from __future__ import annotations

from datetime import date, timedelta
from functools import lru_cache

import holidays


class WorkingCalendar:
    def __init__(self, country: str = "DE", subdivision: str | None = "NW"):
        self.country = country
        self.subdivision = subdivision
        self._holidays = holidays.country_holidays(country, subdiv=subdivision)
        self._between: dict[tuple[date, date], int] = {}  # asked once per mail: remembered

    def holiday_name(self, day: date) -> str | None:
        return self._holidays.get(day)

    def is_working_day(self, day: date) -> bool:
        return day.weekday() < 5 and day not in self._holidays

    def on_or_after(self, day: date) -> date:
        """The first working day on or after ``day``."""
        while not self.is_working_day(day):
            day += timedelta(days=1)
        return day

    def add_working_days(self, day: date, count: int) -> date:
        """Move ``count`` working days from ``day`` (negative: backwards); ``day`` itself never counts."""
        step = timedelta(days=1 if count >= 0 else -1)
        remaining = abs(count)
        while remaining:
            day += step
            if self.is_working_day(day):
                remaining -= 1
        return day

    def working_days_between(self, start: date, end: date) -> int:
        """Working days after ``start`` up to and including ``end`` (negative when end < start)."""
        if end < start:
            return -self.working_days_between(end, start)
        key = (start, end)
        if key not in self._between:
            if len(self._between) > 10_000:
                self._between.clear()
            self._between[key] = sum(1 for n in range(1, (end - start).days + 1)
                                     if self.is_working_day(start + timedelta(days=n)))
        return self._between[key]


@lru_cache(maxsize=16)
def calendar_for(country: str, subdivision: str | None) -> WorkingCalendar:
    return WorkingCalendar(country, subdivision)
