"""The read side of the coordinators' partner table: one cycle's submissions, filtered, sorted and
paginated in the database (one query for the page, one for the count), fast at 20,000 partners.

What the page asks for comes in as text (query parameters); ``TableQuery.from_args`` keeps what it
understands and drops the rest, so no address can break the page.
"""
from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import date, datetime
from urllib.parse import urlencode

from sqlalchemy import Integer, Select, bindparam, case, func, or_, select

from workflow.cycle_overview import overdue_cutoff
from workflow.models import Contact, Cycle, Partner, PartnerKind, Programme, Submission
from workflow.policy import ReportingPolicy
from workflow.states import AWAITING_REPORT, SubmissionState
from workflow.uow import UnitOfWork

PAGE_SIZE = 50
QUERY_LIMIT = 200  # characters of free text taken
SORT_KEYS = ("name", "state", "level", "due", "submitted")
DEFAULT_SORT = "name"
# The order of the states in the table: the way through a cycle.
STATE_ORDER = (SubmissionState.INVITED, SubmissionState.OPENED, SubmissionState.DRAFT,
               SubmissionState.RETURNED, SubmissionState.SUBMITTED, SubmissionState.ACCEPTED,
               SubmissionState.EXEMPTED)


@dataclass(frozen=True)
class TableQuery:
    """The filters, sort and page of the table; defaults mean 'no filter'."""

    state: SubmissionState | None = None
    kind: PartnerKind | None = None
    level: int | None = None
    overdue: bool = False
    q: str = ""
    sort: str = DEFAULT_SORT  # a key of SORT_KEYS, "-" in front for descending
    page: int = 1

    @classmethod
    def from_args(cls, args: Mapping[str, str]) -> "TableQuery":
        """Read the page's query parameters; unknown or malformed values are ignored."""
        def enum(kind, raw):
            try:
                return kind(raw)
            except ValueError:
                return None

        level = _int(args.get("level"))
        sort = (args.get("sort") or "").strip()
        page = _int(args.get("page"))
        return cls(state=enum(SubmissionState, args.get("state") or ""),
                   kind=enum(PartnerKind, args.get("kind") or ""),
                   level=level if level is not None and 0 <= level <= 9 else None,
                   overdue=args.get("overdue") == "1",
                   q=_text(args.get("q")),
                   sort=sort if sort.lstrip("-") in SORT_KEYS and sort.count("-") <= 1
                   and not sort.endswith("-") else DEFAULT_SORT,
                   page=page if page is not None and page >= 1 else 1)

    @property
    def sort_key(self) -> str:
        return self.sort.lstrip("-")

    @property
    def descending(self) -> bool:
        return self.sort.startswith("-")

    @property
    def filtered(self) -> bool:
        return any((self.state, self.kind, self.level is not None, self.overdue, self.q))

    def params(self, **changes) -> dict[str, str | int]:
        """The query parameters that differ from the defaults (for links), with ``changes``."""
        query = replace(self, **changes)
        params = {"state": query.state and query.state.value,
                  "kind": query.kind and query.kind.value,
                  "level": query.level, "overdue": 1 if query.overdue else None, "q": query.q,
                  "sort": query.sort if query.sort != DEFAULT_SORT else None,
                  "page": query.page if query.page != 1 else None}
        return {key: value for key, value in params.items() if value not in (None, "")}

    def link(self, **changes) -> str:
        """The query string of ``params(**changes)`` with its "?", empty for the defaults."""
        params = self.params(**changes)
        return "?" + urlencode(params) if params else ""

    def sort_link(self, key: str) -> str:
        """The query string for a column header: sort by ``key``, the other way if it is the
        sort now, from the first page."""
        sort = f"-{key}" if self.sort_key == key and not self.descending else key
        return self.link(sort=sort, page=1)


def _text(raw: str | None) -> str:
    """Free text as a person typed it: control characters (NUL breaks PostgreSQL) dropped,
    spaces collapsed, at most QUERY_LIMIT characters."""
    printable = "".join(c for c in (raw or "")[:QUERY_LIMIT * 2] if c.isprintable() or c.isspace())
    return " ".join(printable.split())[:QUERY_LIMIT]


def _int(raw: str | None) -> int | None:
    try:
        return int((raw or "").strip())
    except ValueError:
        return None


@dataclass(frozen=True)
class TableRow:
    id: int
    partner_id: int
    partner_name: str
    kind: str
    state: str
    escalation_level: int
    due_on: date
    submitted_at: datetime | None  # local time of the programme
    reminders_paused: bool
    paused_until: date | None  # the partner promised to submit by then
    non_reporting: bool
    overdue: bool


@dataclass(frozen=True)
class TablePage:
    cycle_id: int
    year: int
    cycle_reminders_paused: bool
    query: TableQuery  # with the page actually shown
    rows: list[TableRow]
    total: int  # rows matching the filters, over all pages
    pages: int

    @property
    def first_row(self) -> int:
        return (self.query.page - 1) * PAGE_SIZE + 1 if self.rows else 0

    @property
    def last_row(self) -> int:
        return self.first_row + len(self.rows) - 1 if self.rows else 0

    def page_numbers(self, around: int = 2) -> list[int | None]:
        """The pages to link: the first, the last and a few around the current one; None marks
        a gap."""
        shown = sorted({1, self.pages, *range(max(1, self.query.page - around),
                                             min(self.pages, self.query.page + around) + 1)})
        numbers: list[int | None] = []
        for number in shown:
            if numbers and number - numbers[-1] > 1:
                numbers.append(None)
            numbers.append(number)
        return numbers


def like_pattern(text: str) -> str:
    """A LIKE pattern (escape character backslash) for ``text`` anywhere, in lower case: the
    user's % and _ are matched literally."""
    escaped = text.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _register_lower(uow: UnitOfWork):
    """SQL's lower() for any letter: PostgreSQL's lower() folds Ö and Ä, SQLite's only A to Z,
    so on SQLite Python's str.lower stands in as rc_lower (registered on the connection, cheap
    to repeat)."""
    if not uow.database.is_postgres:
        uow.session.connection().connection.driver_connection.create_function(
            "rc_lower", 1, lambda value: value.lower() if isinstance(value, str) else value,
            deterministic=True)


def matching_partners(postgres: bool, programme_id, pattern) -> Select:
    """Ids of the partners who report for a partner whose name, or whose contact's name or
    address, matches the LIKE ``pattern`` in any case (a member city finds its group)."""
    lower = func.lower if postgres else func.rc_lower

    def contains(column):
        return lower(column).like(pattern, escape="\\")

    by_contact = select(Contact.partner_id).where(or_(contains(Contact.name),
                                                      contains(Contact.email)))
    return select(func.coalesce(Partner.group_id, Partner.id)).where(
        Partner.programme_id == programme_id,
        or_(contains(Partner.name), Partner.id.in_(by_contact)))


def _order(sort: str):
    key, descending = sort.lstrip("-"), sort.startswith("-")
    column = {
        "name": Partner.name,
        "state": case({state: position for position, state in enumerate(STATE_ORDER)},
                      value=Submission.state, else_=len(STATE_ORDER)),
        "level": Submission.escalation_level,
        "due": Submission.due_on,
        "submitted": Submission.submitted_at,
    }[key]
    first = column.desc() if descending else column.asc()
    if key == "submitted":
        first = first.nulls_last()  # not submitted yet: at the end either way
    if key == "name":
        # Along the unique index (programme_id, name): the first page reads 50 partners, not all.
        return [first, Partner.id.desc() if descending else Partner.id]
    # Ties in submission order, the same way: an index (cycle_id, column, id) serves the page.
    return [first, Submission.id.desc() if descending else Submission.id]


_CYCLE = (select(Cycle.id, Cycle.year, Cycle.programme_id, Cycle.reminders_paused,
                 Programme.policy)
          .join(Programme, Programme.id == Cycle.programme_id)
          .where(Cycle.id == bindparam("cycle_id")))


@functools.lru_cache(maxsize=512)
def _statements(state: bool, kind: bool, level: bool, overdue_only: bool, text: bool, sort: str,
                postgres: bool) -> tuple[Select, Select]:
    """The count and the page statement for which filters are set and the sort; their values
    (cycle, cutoff, text, page …) are bound at execution. Built once per kind of query: building
    a statement costs more than running it from SQLAlchemy's compiled cache."""
    overdue = Submission.state.in_(AWAITING_REPORT) & (Submission.due_on <= bindparam("cutoff"))
    conditions = [Submission.cycle_id == bindparam("cycle_id")]
    if state:
        conditions.append(Submission.state == bindparam("state"))
    if level:
        conditions.append(Submission.escalation_level == bindparam("level"))
    if overdue_only:
        conditions.append(overdue)
    if kind:
        conditions.append(Partner.kind == bindparam("kind"))
    if text:
        conditions.append(Submission.partner_id.in_(matching_partners(
            postgres, bindparam("programme_id"), bindparam("pattern"))))
    counted = select(func.count()).select_from(Submission)
    if kind:
        counted = counted.join(Partner, Partner.id == Submission.partner_id)
    page = (select(Submission.id, Submission.partner_id, Partner.name, Partner.kind,
                   Submission.state, Submission.escalation_level, Submission.due_on,
                   Submission.submitted_at, Submission.reminders_paused, Submission.paused_until,
                   Submission.non_reporting, overdue.label("overdue"))
            .join(Partner, Partner.id == Submission.partner_id)
            .where(Partner.programme_id == bindparam("programme_id"), *conditions)
            .order_by(*_order(sort))
            .limit(PAGE_SIZE).offset(bindparam("offset", type_=Integer)))
    return counted.where(*conditions), page


def partner_table(uow: UnitOfWork, cycle_id: int, query: TableQuery, *,
                  now: datetime) -> TablePage | None:
    """One page of the cycle's submissions; None if there is no such cycle. A page past the
    last shows the last."""
    cycle = uow.session.execute(_CYCLE, {"cycle_id": cycle_id}).one_or_none()
    if cycle is None:
        return None
    policy = ReportingPolicy.from_dict(cycle.policy)
    if query.q:
        _register_lower(uow)
    counted, page = _statements(query.state is not None, query.kind is not None,
                                query.level is not None, query.overdue, bool(query.q),
                                query.sort, uow.database.is_postgres)
    values = {"cycle_id": cycle.id, "programme_id": cycle.programme_id,
              "cutoff": overdue_cutoff(policy, now.astimezone(policy.zone).date()),
              "state": query.state, "level": query.level, "kind": query.kind,
              "pattern": like_pattern(query.q)}
    total = uow.session.execute(counted, values).scalar() or 0
    pages = max(1, math.ceil(total / PAGE_SIZE))
    query = replace(query, page=min(query.page, pages))
    found = uow.session.execute(page, {**values, "offset": (query.page - 1) * PAGE_SIZE}).all()
    rows = [TableRow(id=r.id, partner_id=r.partner_id, partner_name=r.name, kind=str(r.kind),
                     state=str(SubmissionState(r.state)), escalation_level=r.escalation_level,
                     due_on=r.due_on, submitted_at=r.submitted_at and r.submitted_at.astimezone(
                         policy.zone), reminders_paused=bool(r.reminders_paused),
                     paused_until=r.paused_until, non_reporting=bool(r.non_reporting),
                     overdue=bool(r.overdue)) for r in found]
    return TablePage(cycle_id=cycle.id, year=cycle.year,
                     cycle_reminders_paused=bool(cycle.reminders_paused), query=query, rows=rows,
                     total=total, pages=pages)
