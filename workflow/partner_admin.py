"""Keeping the partner list in the signed-in pages: search, create, edit, group membership,
deactivate and reactivate, and the CSV import with a preview of what it would do."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import date, datetime

from sqlalchemy import exists, func, or_, select
from sqlalchemy.orm import aliased

from workflow.cycle_setup import MAX_ID, FormProblems
from workflow.errors import InvalidInput, NotFound
from workflow.events import EventKind
from workflow.models import (Contact, Cycle, Event, Partner, PartnerKind, Programme, Submission)
from workflow.partners import (MAX_EMPLOYEES, MAX_NAME, NUL, GroupEntry,
                               ImportResult, group_problems, import_partners, parse_headcount,
                               parse_partner_csv)
from workflow.report_form import parse_date
from workflow.uow import UnitOfWork

PER_PAGE = 50
SHOWN = ("active", "inactive", "all")


# The list ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class PartnerRow:
    id: int
    name: str
    kind: str
    employees: int | None
    active: bool
    group_id: int | None
    group_name: str | None
    members: int


@dataclass(frozen=True)
class PartnerPage:
    rows: list[PartnerRow]
    total: int
    page: int
    pages: int


def _like(text: str) -> str:
    return "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def partner_page(uow: UnitOfWork, programme_id: int, *, query: str = "", shown: str = "all",
                 page: int = 1, per_page: int = PER_PAGE) -> PartnerPage:
    """One page of the programme's partners by name; ``query`` matches the partner's name or a
    contact's name or address. Counted and paged in SQL."""
    conditions = [Partner.programme_id == programme_id]
    if shown == "active":
        conditions.append(Partner.active.is_(True))
    elif shown == "inactive":
        conditions.append(Partner.active.is_(False))
    if query.strip():
        pattern = _like(query.strip())
        conditions.append(or_(
            Partner.name.ilike(pattern, escape="\\"),
            exists().where(Contact.partner_id == Partner.id,
                           or_(Contact.email.ilike(pattern, escape="\\"),
                               Contact.name.ilike(pattern, escape="\\")))))
    total = uow.session.scalar(select(func.count()).select_from(Partner).where(*conditions)) or 0
    pages = max(1, math.ceil(total / per_page))
    page = min(max(1, page), pages)
    group = aliased(Partner)
    member = aliased(Partner)
    members = (select(func.count()).where(member.group_id == Partner.id)
               .correlate(Partner).scalar_subquery())
    rows = uow.session.execute(
        select(Partner.id, Partner.name, Partner.kind, Partner.employees, Partner.active,
               Partner.group_id, group.name, members)
        .outerjoin(group, group.id == Partner.group_id)
        .where(*conditions).order_by(Partner.name, Partner.id)
        .limit(per_page).offset((page - 1) * per_page)).all()
    return PartnerPage(rows=[PartnerRow(id=r[0], name=r[1], kind=str(PartnerKind(r[2])),
                                        employees=r[3], active=r[4], group_id=r[5],
                                        group_name=r[6], members=r[7]) for r in rows],
                       total=total, page=page, pages=pages)


# One partner ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Named:
    id: int
    name: str
    active: bool = True


@dataclass(frozen=True)
class ContactRow:
    name: str
    email: str
    role: str
    language: str
    bouncing: bool


@dataclass(frozen=True)
class PartnerDetail:
    id: int
    name: str
    kind: str
    employees: int | None
    joined_on: date | None
    active: bool
    group: Named | None
    members: list[Named]
    contacts: list[ContactRow]
    submissions: list[tuple[int, int, str]]  # (submission id, year, state), newest first


def get_partner(uow: UnitOfWork, programme_id: int, partner_id: int) -> Partner:
    partner = uow.session.get(Partner, partner_id) if 0 < partner_id <= MAX_ID else None
    if partner is None or partner.programme_id != programme_id:
        raise NotFound(f"Es gibt keinen Partner {partner_id}.")
    return partner


def partner_detail(uow: UnitOfWork, programme_id: int, partner_id: int) -> PartnerDetail:
    partner = get_partner(uow, programme_id, partner_id)
    session = uow.session
    group = session.get(Partner, partner.group_id) if partner.group_id else None
    members = [Named(p.id, p.name, p.active) for p in session.execute(
        select(Partner.id, Partner.name, Partner.active).where(Partner.group_id == partner.id)
        .order_by(Partner.name, Partner.id))]
    contacts = [ContactRow(c.name, c.email, str(c.role), c.language, c.bounced_at is not None)
                for c in session.scalars(select(Contact).where(Contact.partner_id == partner.id)
                                         .order_by(Contact.role, Contact.id))]
    submissions = [(row.id, row.year, str(row.state)) for row in session.execute(
        select(Submission.id, Cycle.year, Submission.state)
        .join(Cycle, Cycle.id == Submission.cycle_id)
        .where(Submission.partner_id == partner.id).order_by(Cycle.year.desc()).limit(10))]
    return PartnerDetail(id=partner.id, name=partner.name, kind=str(partner.kind),
                         employees=partner.employees, joined_on=partner.joined_on,
                         active=partner.active,
                         group=Named(group.id, group.name, group.active) if group else None,
                         members=members, contacts=contacts, submissions=submissions)


def group_choices(uow: UnitOfWork, programme_id: int, partner_id: int | None = None) -> list[Named]:
    """Partners that can take members: cooperations and partners that have members already
    (never a member itself, never the partner being edited), by name."""
    member = aliased(Partner)
    query = select(Partner.id, Partner.name, Partner.active).where(
        Partner.programme_id == programme_id, Partner.group_id.is_(None),
        or_(Partner.kind == PartnerKind.KOOPERATION,
            exists().where(member.group_id == Partner.id)))
    if partner_id is not None:
        query = query.where(Partner.id != partner_id)
    return [Named(*row) for row in uow.session.execute(query.order_by(Partner.name, Partner.id))]


@dataclass
class PartnerValues:
    name: str
    kind: PartnerKind
    employees: int | None
    joined_on: date | None
    group_id: int | None


def parse_partner_form(form: dict[str, str]) -> PartnerValues:
    """The partner form's fields (name, kind, employees, joined_on, group_id), checked on their
    own; FormProblems names each field that is wrong."""
    problems: dict[str, tuple[str, dict]] = {}
    name = " ".join(form.get("name", "").split())
    if not name:
        problems["name"] = ("required", {})
    elif len(name) > MAX_NAME or NUL in name:
        problems["name"] = ("too_long", {"most": MAX_NAME})
    try:
        kind = PartnerKind(form.get("kind", ""))
    except ValueError:
        kind = None
        problems["kind"] = ("choose", {})
    employees = None
    try:
        employees = parse_headcount(form.get("employees", ""))
    except ValueError:
        problems["employees"] = ("count", {"most": MAX_EMPLOYEES})
    joined_on = None
    if form.get("joined_on", "").strip():
        try:
            joined_on = parse_date(form["joined_on"])  # only years from 1900 to 2100
        except ValueError:
            problems["joined_on"] = ("date", {})
    group_id = None
    raw = form.get("group_id", "").strip()
    if raw:
        if raw.isascii() and raw.isdigit() and len(raw) < 10:
            group_id = int(raw)
        else:
            problems["group_id"] = ("choose", {})
    if problems:
        raise FormProblems(problems)
    return PartnerValues(name=name, kind=kind, employees=employees, joined_on=joined_on,
                         group_id=group_id)


def _check_name_and_group(uow: UnitOfWork, programme_id: int, values: PartnerValues,
                          partner: Partner | None, language: str):
    session = uow.session
    problems: dict[str, tuple[str, dict]] = {}
    same_name = session.scalar(select(Partner.id).where(
        Partner.programme_id == programme_id,
        func.lower(Partner.name) == values.name.lower()).limit(1))
    if same_name is not None and (partner is None or same_name != partner.id):
        problems["name"] = ("name_taken", {})
    group = None
    if values.group_id is not None:
        group = session.get(Partner, values.group_id)
        if group is None or group.programme_id != programme_id:
            problems["group_id"] = ("choose", {})
        elif partner is not None and group.id == partner.id:
            problems["group_id"] = ("own_group", {})
    if group is not None and not problems:
        # The group rule on the partners it concerns: this one, its members, its new group and
        # that group's own group (groups are one level deep, so there are no loops).
        own_id = partner.id if partner is not None else None
        above = session.get(Partner, group.group_id) if group.group_id else None
        entries = [GroupEntry(values.name, None, group.name),
                   GroupEntry(group.name, None, "" if above is None else
                              values.name if above.id == own_id else above.name)]
        if above is not None and above.id != own_id:
            entries.append(GroupEntry(above.name, None, ""))
        if partner is not None:
            entries += [GroupEntry(member, None, values.name) for member in session.scalars(
                select(Partner.name).where(Partner.group_id == partner.id,
                                           Partner.id != group.id))]
        found = group_problems(entries, language=language)
        if found:
            problems["group_id"] = ("group_rule", {"detail": " ".join(found)})
    if problems:
        raise FormProblems(problems)


def create_partner(uow: UnitOfWork, programme: Programme, values: PartnerValues, *,
                   now: datetime, actor: str, language: str = "de") -> Partner:
    """A new partner (its contacts are added on its contacts page); the group rule's refusal is
    worded in ``language``."""
    _check_name_and_group(uow, programme.id, values, None, language)
    partner = Partner(programme_id=programme.id, name=values.name, kind=values.kind,
                      employees=values.employees, joined_on=values.joined_on,
                      group_id=values.group_id, active=True)
    uow.session.add(partner)
    uow.session.flush()
    uow.session.add(Event(programme_id=programme.id, kind=EventKind.PARTNER_CREATED, at=now,
                          actor=actor, payload={"partner_id": partner.id, "name": partner.name,
                                                "group_id": partner.group_id}))
    uow.session.flush()
    return partner


def change_partner(uow: UnitOfWork, programme_id: int, partner_id: int, values: PartnerValues, *,
                   now: datetime, actor: str, language: str = "de") -> bool:
    """Name, kind, employees, joined on and group of a partner; False if nothing changed. The
    group rule's refusal is worded in ``language``."""
    partner = get_partner(uow, programme_id, partner_id)
    _check_name_and_group(uow, programme_id, values, partner, language)
    changes = {}
    for attribute in ("name", "kind", "employees", "joined_on", "group_id"):
        old, new = getattr(partner, attribute), getattr(values, attribute)
        if old != new:
            changes[attribute] = {"old": _plain(old), "new": _plain(new)}
            setattr(partner, attribute, new)
    if changes:
        uow.session.add(Event(programme_id=programme_id, kind=EventKind.PARTNER_CHANGED, at=now,
                              actor=actor, payload={"partner_id": partner.id,
                                                    "changes": changes}))
        uow.session.flush()
    return bool(changes)


def _plain(value):
    return value.isoformat() if isinstance(value, date) else \
        str(value) if isinstance(value, PartnerKind) else value


def set_partner_active(uow: UnitOfWork, programme_id: int, partner_id: int, active: bool, *,
                       now: datetime, actor: str) -> bool:
    """Deactivate (not invited to cycles that open later; its current submission stays) or
    reactivate a partner; False if it already was."""
    partner = get_partner(uow, programme_id, partner_id)
    if partner.active == active:
        return False
    partner.active = active
    uow.session.add(Event(programme_id=programme_id, at=now, actor=actor,
                          kind=EventKind.PARTNER_REACTIVATED if active
                          else EventKind.PARTNER_DEACTIVATED,
                          payload={"partner_id": partner.id, "name": partner.name}))
    uow.session.flush()
    return True


# The CSV import with a preview ------------------------------------------------------------------

MAX_CSV_BYTES = 4 * 1024 * 1024  # about 25,000 partners; kept in the preview page's form


@dataclass(frozen=True)
class ImportLine:
    line: int
    name: str
    status: str  # "new", "changed" or "unchanged"


@dataclass
class ImportPreview:
    lines: list[ImportLine] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # each names its line where it has one
    error_title: str = ""

    def count(self, status: str) -> int:
        return sum(1 for line in self.lines if line.status == status)


class _DryRun(Exception):
    """Raised inside the preview's savepoint so that it is always rolled back."""


def preview_import(uow: UnitOfWork, programme: Programme | None, text: str, *,
                   language: str = "de") -> ImportPreview:
    """What importing ``text`` would do, line by line, by running the import itself inside a
    savepoint that is always rolled back: nothing is kept, and the preview cannot disagree with
    the import. Errors and warnings as the import words them, in ``language``."""
    try:
        rows = parse_partner_csv(text, language=language)
    except InvalidInput as refused:
        return ImportPreview(errors=refused.problems or [str(refused)],
                             error_title=refused.args[0])
    session = uow.session
    try:
        with session.begin_nested():
            if programme is None:
                from workflow.partners import ensure_programme
                programme = ensure_programme(uow)
            before = _snapshot(uow, programme.id)
            try:
                result = import_partners(uow, programme, text, language=language)
            except InvalidInput as refused:
                preview = ImportPreview(errors=refused.problems or [str(refused)],
                                        error_title=refused.args[0])
            else:
                after = _snapshot(uow, programme.id)
                preview = ImportPreview(warnings=result.warnings, lines=[ImportLine(
                    row.line, row.name,
                    "new" if row.name.casefold() not in before else
                    "unchanged" if before[row.name.casefold()] == after[row.name.casefold()]
                    else "changed") for row in rows])
            raise _DryRun
    except _DryRun:
        pass
    return preview


def _snapshot(uow: UnitOfWork, programme_id: int) -> dict[str, tuple]:
    """Every partner of the programme as the import sees it, by its name's casefold."""
    session = uow.session
    session.flush()
    contacts: dict[int, list] = {}
    for row in session.execute(select(Contact.partner_id, Contact.role, Contact.email,
                                      Contact.name, Contact.language)
                               .join(Partner, Partner.id == Contact.partner_id)
                               .where(Partner.programme_id == programme_id)):
        contacts.setdefault(row[0], []).append(tuple(str(v) for v in row[1:]))
    return {row.name.casefold(): (row.name, str(row.kind), row.joined_on, row.employees,
                                  row.active, row.group_id, sorted(contacts.get(row.id, [])))
            for row in session.execute(
                select(Partner.id, Partner.name, Partner.kind, Partner.joined_on,
                       Partner.employees, Partner.active, Partner.group_id)
                .where(Partner.programme_id == programme_id))}


def import_partner_csv(uow: UnitOfWork, programme: Programme, text: str, *, now: datetime,
                       actor: str) -> ImportResult:
    """Import the CSV (all lines or none, import_partners); an event says what it did."""
    result = import_partners(uow, programme, text)
    if result.created or result.updated:
        uow.session.add(Event(programme_id=programme.id, kind=EventKind.PARTNERS_IMPORTED,
                              at=now, actor=actor,
                              payload={"created": result.created, "updated": result.updated,
                                       "unchanged": result.unchanged}))
        uow.session.flush()
    return result
