"""Partners: the programme they belong to and the CSV import (all lines or none)."""
from __future__ import annotations

import csv
import io
import re
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date

from sqlalchemy import select
from sqlalchemy.orm.attributes import set_committed_value

from workflow.addresses import is_address
from workflow.errors import InvalidInput
from workflow.models import (PARTNER_KIND_LABELS, Contact, ContactRole, Partner, PartnerKind,
                             Programme)
from workflow.policy import ReportingPolicy
from workflow.report_form import MEANT_YEARS
from workflow.uow import UnitOfWork
from workflow.wording import worded

DEFAULT_PROGRAMME_SLUG = "nrw-vielfalt"
DEFAULT_PROGRAMME_NAME = "Erfolgsfaktor Interkulturelle Öffnung – NRW stärkt Vielfalt!"
REQUIRED_COLUMNS = ("name", "kind", "contact_name", "contact_email", "deputy_email", "head_name",
                    "head_email", "language", "joined_on")
KINDS = {**{k.value: k for k in PartnerKind},
         **{label.casefold(): kind for kind, label in PARTNER_KIND_LABELS.items()}}
MAX_NAME = 300


def name_contains(text: str):
    """"The partner's name contains ``text``" (case-insensitive), with LIKE's wildcards (% and
    _) taken literally."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return Partner.name.ilike(f"%{escaped}%", escape="\\")


MAX_EMPLOYEES = 10_000_000
# A headcount as people write it: 1234, 1.234 or 1 234 (thousands grouped by three), no more.
HEADCOUNT = re.compile(r"[0-9]{1,3}(?:([. ])[0-9]{3}(?:\1[0-9]{3})*)?|[0-9]+")


def parse_headcount(text: str) -> int | None:
    """The number of employees typed in a form or a CSV cell; None when empty. ValueError for
    anything else than a whole number up to MAX_EMPLOYEES ("1.5" is not 15)."""
    text = text.strip()
    if not text:
        return None
    if not HEADCOUNT.fullmatch(text):
        raise ValueError(text)
    value = int(text.replace(".", "").replace(" ", ""))
    if value > MAX_EMPLOYEES:
        raise ValueError(text)
    return value
FIELD_LIMITS = {"contact_name": 300, "head_name": 300, "contact_email": 320, "deputy_email": 320,
                "head_email": 320, "group": MAX_NAME}  # the columns' sizes
NUL = "\x00"  # no database stores it in text
DELIMITERS = (",", ";", "\t")

# What the import tells the person who uploaded the file, in the page's language (German on the
# command line). The column names (contact_email, …) are the file's own and stay as they are.
IMPORT_MESSAGES = {
    "aborted": {"de": "Import abgebrochen, nichts wurde gespeichert:",
                "en": "Import cancelled, nothing was saved:"},
    "read_as_cp1252": {"de": "Datei war nicht UTF-8; als Windows-1252 gelesen.",
                       "en": "The file was not UTF-8; it was read as Windows-1252."},
    "workbook": {"de": "Die Datei ist eine Arbeitsmappe (Excel oder LibreOffice), keine "
                       "CSV-Datei: beim Speichern „CSV UTF-8 (durch Trennzeichen getrennt)“ "
                       "wählen.",
                 "en": "The file is a workbook (Excel or LibreOffice), not a CSV file: when "
                       "saving it, choose “CSV UTF-8 (Comma delimited)”."},
    "not_utf16": {"de": "Die Datei beginnt wie UTF-16, ist aber keines.",
                  "en": "The file starts like UTF-16 but is not UTF-16."},
    "not_text": {"de": "Die Datei ist keine Textdatei (sie enthält Null-Bytes).",
                 "en": "The file is not a text file (it contains null bytes)."},
    "not_cp1252": {"de": "Die Datei ist weder UTF-8 noch Windows-1252 (Byte 0x{byte:02X} an "
                         "Stelle {position}): bitte als „CSV UTF-8“ speichern.",
                   "en": "The file is neither UTF-8 nor Windows-1252 (byte 0x{byte:02X} at "
                         "position {position}): please save it as “CSV UTF-8”."},
    "header_unreadable": {"de": "Die Kopfzeile der CSV-Datei ist nicht lesbar ({reason}); "
                                "nichts wurde gespeichert.",
                          "en": "The header line of the CSV file cannot be read ({reason}); "
                                "nothing was saved."},
    "columns_missing": {"de": "Der CSV-Datei fehlen Spalten: {missing} (Zeile 1: {header}).",
                        "en": "Columns missing from the CSV file: {missing} (line 1: {header})."},
    "empty_header": {"de": "leer", "en": "empty"},
    "no_partners": {"de": "die Datei enthält keine Partner",
                    "en": "the file contains no partners"},
    # Where a problem lies, at the start of its message ...
    "at_line": {"de": "Zeile {line}", "en": "Line {line}"},
    "at_lines": {"de": "Zeilen {lines}", "en": "Lines {lines}"},
    "at_stored": {"de": "bereits gespeichert", "en": "Already saved"},
    "at_stored_partners": {"de": "Gespeicherte Partner", "en": "Saved partners"},
    # ... and within it.
    "in_line": {"de": "Zeile {line}", "en": "line {line}"},
    "in_stored": {"de": "bereits gespeichert", "en": "already saved"},
    # A line's problems, joined by "; " after "Zeile 3: ".
    "unreadable": {"de": "nicht lesbar ({reason})", "en": "cannot be read ({reason})"},
    "too_many_fields": {"de": "mehr Felder als Spalten ({fields} statt {columns})",
                        "en": "more fields than columns ({fields} instead of {columns})"},
    "nul": {"de": "ein Feld enthält ein NUL-Zeichen", "en": "a field contains a NUL character"},
    "field_too_long": {"de": "{column} länger als {most} Zeichen",
                       "en": "{column} longer than {most} characters"},
    "name_missing": {"de": "Name fehlt", "en": "name missing"},
    "name_too_long": {"de": "Name länger als {most} Zeichen",
                      "en": "name longer than {most} characters"},
    "name_twice": {"de": "Name doppelt (schon in Zeile {line})",
                   "en": "name appears twice (already in line {line})"},
    "unknown_kind": {"de": "unbekannte Art '{kind}' (erlaubt: {allowed})",
                     "en": "unknown kind '{kind}' (allowed: {allowed})"},
    "bad_email": {"de": "{column}: ungültige E-Mail-Adresse '{email}'",
                  "en": "{column}: invalid email address '{email}'"},
    "bad_language": {"de": "language: '{value}' (erlaubt: de, en)",
                     "en": "language: '{value}' (allowed: de, en)"},
    "bad_joined_on": {"de": "joined_on: '{value}' ist kein Datum (JJJJ-MM-TT)",
                      "en": "joined_on: '{value}' is not a date (YYYY-MM-DD)"},
    "bad_employees": {"de": "employees: '{value}' ist keine Anzahl",
                      "en": "employees: '{value}' is not a valid number of employees"},
    # Groups.
    "own_group": {"de": "ein Partner kann nicht seine eigene Gruppe sein",
                  "en": "a partner cannot be its own group"},
    "unknown_group": {"de": "Gruppe '{group}' ist kein bekannter Partner",
                      "en": "group '{group}' is not a known partner"},
    "group_loop": {"de": "Gruppen im Kreis ({chain}); ein Gruppenpartner kann nicht selbst "
                         "Mitglied einer Gruppe sein",
                   "en": "groups in a loop ({chain}); a group partner cannot itself be a member "
                         "of a group"},
    "member_with_members": {"de": "'{name}' ist Mitglied von '{group}' ({group_where}) und hat "
                                  "selbst Mitglieder: {members}; Mitglieder einer Gruppe können "
                                  "keine eigenen Mitglieder haben",
                            "en": "'{name}' is a member of '{group}' ({group_where}) and has "
                                  "members of its own: {members}; members of a group cannot have "
                                  "members of their own"},
    "shared_email": {"de": "die E-Mail-Adresse {email} ist Berichtskontakt mehrerer Partner "
                           "({names}); sie erhält die Mails aller dieser Partner.",
                     "en": "the email address {email} is the reporting contact of several "
                           "partners ({names}); it receives the emails of all these partners."},
}
ABORTED = IMPORT_MESSAGES["aborted"]["de"]
CP1252_NOTE = IMPORT_MESSAGES["read_as_cp1252"]["de"]


def import_message(key: str, language: str = "de", /, **values) -> str:
    return worded(IMPORT_MESSAGES, key, language, **values)


def _at_line(line: int, text: str, language: str) -> str:
    """A problem of one line of the file: "Zeile 3: …"."""
    return f"{import_message('at_line', language, line=line)}: {text}"


def ensure_programme(uow: UnitOfWork, slug: str = DEFAULT_PROGRAMME_SLUG,
                     name: str = DEFAULT_PROGRAMME_NAME, policy: ReportingPolicy | None = None,
                     coordinator_emails: tuple[str, ...] = ()) -> Programme:
    programme = uow.session.scalars(select(Programme).where(Programme.slug == slug)).first()
    if programme is None:
        programme = Programme(slug=slug, name=name,
                              policy=(policy or ReportingPolicy()).to_dict(),
                              coordinator_emails=list(coordinator_emails))
        uow.session.add(programme)
        uow.session.flush()
    return programme


@dataclass
class PartnerRow:
    line: int
    name: str
    kind: PartnerKind
    contact_name: str
    contact_email: str
    deputy_email: str
    head_name: str
    head_email: str
    language: str
    joined_on: date | None
    employees: int | None
    group: str

    def contacts(self) -> list[tuple[ContactRole, str, str]]:
        """(role, e-mail, name) of each contact the line names."""
        wanted = [(ContactRole.REPORTING, self.contact_email, self.contact_name)]
        if self.deputy_email:
            wanted.append((ContactRole.DEPUTY, self.deputy_email, ""))
        if self.head_email:
            wanted.append((ContactRole.HEAD, self.head_email, self.head_name))
        return wanted


@dataclass
class ImportResult:
    created: int
    updated: int
    unchanged: int = 0
    warnings: list[str] = field(default_factory=list)


def decode_partner_csv(data: bytes, *, language: str = "de") -> tuple[str, list[str]]:
    """The text of an uploaded CSV file and notes on how it was read: UTF-8 (with or without
    BOM), UTF-16 with BOM (Excel's "Unicode text"), else Windows-1252 (Excel's "CSV")."""
    if data.startswith(b"PK\x03\x04"):
        raise InvalidInput(import_message("workbook", language))
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            return data.decode("utf-16"), []
        except UnicodeDecodeError:
            raise InvalidInput(import_message("not_utf16", language)) from None
    try:
        return data.decode("utf-8-sig"), []
    except UnicodeDecodeError:
        pass
    if b"\x00" in data:
        raise InvalidInput(import_message("not_text", language))
    try:
        return data.decode("cp1252"), [import_message("read_as_cp1252", language)]
    except UnicodeDecodeError as exc:
        raise InvalidInput(import_message("not_cp1252", language, byte=data[exc.start],
                                          position=exc.start + 1)) from None


def guess_delimiter(header_line: str) -> str:
    """The delimiter used most often in the header line outside quotes (a comma if none)."""
    counts = dict.fromkeys(DELIMITERS, 0)
    quoted = False
    for char in header_line:
        if char == '"':
            quoted = not quoted
        elif not quoted and char in counts:
            counts[char] += 1
    best = max(DELIMITERS, key=lambda d: counts[d])
    return best if counts[best] else ","


def parse_partner_csv(text: str, *, language: str = "de") -> list[PartnerRow]:
    """Validate every line; raise InvalidInput listing each bad line by its number (worded in
    ``language``)."""

    def say(key: str, /, **values) -> str:
        return import_message(key, language, **values)

    if text.startswith("\ufeff"):
        text = text[1:]
    header_line = re.split(r"\r\n|\r|\n", text, maxsplit=1)[0]  # Excel for Mac ends lines in CR
    reader = csv.reader(io.StringIO(text, newline=""), csv.excel,
                        delimiter=guess_delimiter(header_line))
    try:
        header = [h.strip().lower() for h in next(reader, [])]
    except csv.Error as exc:
        raise InvalidInput(say("header_unreadable", reason=exc)) from None
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    if missing:
        raise InvalidInput(say("columns_missing", missing=", ".join(missing),
                               header=", ".join(h for h in header if h) or say("empty_header")))
    rows, problems, seen = [], [], {}
    while True:
        line = reader.line_num + 1  # where the record starts (a quoted field may span lines)
        try:
            record = next(reader, None)
        except csv.Error as exc:
            problems.append(_at_line(line, say("unreadable", reason=exc), language))
            break
        if record is None:
            break
        if len(record) > len(header) and any(v.strip() for v in record[len(header):]):
            problems.append(_at_line(line, say("too_many_fields", fields=len(record),
                                               columns=len(header)), language))
            continue
        values = {k: v.strip() for k, v in zip(header, record) if k}
        if not any(values.values()):
            continue
        errors = []
        if any(NUL in v for v in values.values()):
            errors.append(say("nul"))
        for column, limit in FIELD_LIMITS.items():
            if len(values.get(column, "")) > limit:
                errors.append(say("field_too_long", column=column, most=limit))
        name = values.get("name", "")
        if not name:
            errors.append(say("name_missing"))
        elif len(name) > MAX_NAME:
            errors.append(say("name_too_long", most=MAX_NAME))
        elif name.casefold() in seen:
            errors.append(say("name_twice", line=seen[name.casefold()]))
        kind = KINDS.get(values.get("kind", "").casefold())
        if kind is None:
            errors.append(say("unknown_kind", kind=values.get("kind", ""),
                              allowed=", ".join(PARTNER_KIND_LABELS.values())))
        for column in ("contact_email", "deputy_email", "head_email"):
            email = values.get(column, "")
            if (email or column == "contact_email") and not is_address(email):
                errors.append(say("bad_email", column=column, email=email))
        contact_language = values.get("language", "").lower() or "de"
        if contact_language not in ("de", "en"):
            errors.append(say("bad_language", value=contact_language))
        joined_on = None
        if values.get("joined_on"):
            try:
                joined_on = date.fromisoformat(values["joined_on"])
                if not MEANT_YEARS[0] <= joined_on.year <= MEANT_YEARS[1]:
                    raise ValueError
            except ValueError:
                errors.append(say("bad_joined_on", value=values["joined_on"]))
        employees = None
        try:
            employees = parse_headcount(values.get("employees", ""))
        except ValueError:
            errors.append(say("bad_employees", value=values["employees"]))
        if errors:
            problems.append(_at_line(line, "; ".join(errors), language))
            continue
        seen[name.casefold()] = line
        rows.append(PartnerRow(line, name, kind, values.get("contact_name", ""),
                               values["contact_email"], values.get("deputy_email", ""),
                               values.get("head_name", ""), values.get("head_email", ""),
                               contact_language, joined_on, employees, values.get("group", "")))
    if not problems and not rows:
        problems.append(say("no_partners"))
    for row in rows:
        if row.group and row.group.casefold() == row.name.casefold():
            problems.append(_at_line(row.line, say("own_group"), language))
    if problems:
        raise InvalidInput(say("aborted"), problems)
    problems = group_problems([GroupEntry(r.name, r.line, r.group) for r in rows],
                              language=language)
    if problems:
        raise InvalidInput(say("aborted"), problems)
    return rows


@dataclass(frozen=True)
class GroupEntry:
    """A partner as the group check sees it: its line in the file (None: only in the database)."""
    name: str
    line: int | None
    group: str


def _where(entry: GroupEntry, language: str, *, first: bool = False) -> str:
    """Where a partner lies: its line in the file, else among the stored partners; ``first``
    when it opens a message."""
    if entry.line:
        return import_message("at_line" if first else "in_line", language, line=entry.line)
    return import_message("at_stored" if first else "in_stored", language)


def _at_lines(lines: list[int], language: str) -> str:
    """The start of a message about several lines of the file (one at least)."""
    if len(lines) > 1:
        return import_message("at_lines", language, lines=", ".join(map(str, lines)))
    return import_message("at_line", language, line=lines[0])


def group_problems(entries: list[GroupEntry], *, language: str = "de") -> list[str]:
    """Groups are one level deep: a group partner's members have no members of their own (so
    there are no loops). Groups named but not among ``entries`` are left to the caller."""
    by_key = {e.name.casefold(): e for e in entries}

    def group_of(entry: GroupEntry) -> GroupEntry | None:
        target = by_key.get(entry.group.casefold()) if entry.group else None
        return target if target is not entry else None  # own group: reported on its own

    members = defaultdict(list)
    for entry in entries:
        if (group := group_of(entry)) is not None:
            members[group.name.casefold()].append(entry)
    problems, in_loop = [], set()
    for start in entries:
        path, entry = [], start
        while entry is not None and entry not in path and entry.name.casefold() not in in_loop:
            path.append(entry)
            entry = group_of(entry)
        if entry is None or entry not in path:
            continue
        loop = path[path.index(entry):]
        in_loop.update(e.name.casefold() for e in loop)
        lines = sorted(e.line for e in loop if e.line)
        chain = " → ".join(f"'{e.name}'" for e in [*loop, loop[0]])
        where = (_at_lines(lines, language) if lines else
                 import_message("at_stored_partners", language))
        problems.append(f"{where}: {import_message('group_loop', language, chain=chain)}")
    for entry in entries:
        key = entry.name.casefold()
        group = group_of(entry)
        if group is None or key in in_loop or not members.get(key):
            continue
        below = ", ".join(f"'{m.name}' ({_where(m, language)})" for m in members[key])
        problems.append(f"{_where(entry, language, first=True)}: " + import_message(
            "member_with_members", language, name=entry.name, group=group.name,
            group_where=_where(group, language), members=below))
    return problems


def shared_email_warnings(entries: list[tuple[str, str, int | None]], *,
                          language: str = "de") -> list[str]:
    """Warnings for a reporting e-mail address shared by several partners; entries are
    (e-mail, partner name, line in the file or None when only in the database)."""
    by_email = defaultdict(list)
    for email, name, line in entries:
        by_email[email.casefold()].append((email, name, line))
    warnings = []
    for users in by_email.values():
        lines = sorted(line for _, _, line in users if line)
        if len(users) < 2 or not lines:  # a sharing only among stored partners is not news
            continue
        stored = import_message("in_stored", language)
        names = ", ".join(f"'{name}'" + ("" if line else f" ({stored})")
                          for _, name, line in sorted(users, key=lambda u: u[2] or 0))
        warnings.append(f"{_at_lines(lines, language)}: " + import_message(
            "shared_email", language, email=users[0][0], names=names))
    return warnings


def import_partners(uow: UnitOfWork, programme: Programme, text: str, *,
                    language: str = "de") -> ImportResult:
    """Create or update partners and their contacts from CSV text; any bad line imports nothing.

    Nothing unchanged is written. A contact is known by its role and e-mail address: while
    both stay, its row (and id) stays and name or language are updated in place; a contact the
    file no longer names is deleted, a new one added. Partners missing from the file are kept.
    Refusals and warnings are worded in ``language``.
    """
    rows = parse_partner_csv(text, language=language)
    session = uow.session
    stored = {p.name.casefold(): p for p in session.scalars(
        select(Partner).where(Partner.programme_id == programme.id))}
    contacts = defaultdict(list)
    for contact in session.scalars(select(Contact).join(Partner).where(
            Partner.programme_id == programme.id).order_by(Contact.id)):
        contacts[contact.partner_id].append(contact)
    for partner in stored.values():  # the collections are loaded: no query per partner
        set_committed_value(partner, "contacts", contacts[partner.id])

    in_file = {row.name.casefold() for row in rows}
    by_id = {p.id: p for p in stored.values()}
    entries = [GroupEntry(r.name, r.line, r.group) for r in rows]
    entries += [GroupEntry(p.name, None, by_id[p.group_id].name if p.group_id in by_id else "")
                for key, p in stored.items() if key not in in_file]
    known = in_file | set(stored)
    problems = [_at_line(r.line, import_message("unknown_group", language, group=r.group),
                         language)
                for r in rows if r.group and r.group.casefold() not in known]
    problems += group_problems(entries, language=language)
    if problems:
        raise InvalidInput(import_message("aborted", language), problems)
    warnings = shared_email_warnings(
        [(r.contact_email, r.name, r.line) for r in rows] +
        [(c.email, p.name, None) for key, p in stored.items() if key not in in_file
         for c in contacts[p.id] if c.role == ContactRole.REPORTING], language=language)

    imported, changed = {}, set()
    for row in rows:
        key = row.name.casefold()
        partner = stored.get(key)
        if partner is None:
            partner = Partner(programme_id=programme.id, name=row.name, kind=row.kind,
                              joined_on=row.joined_on, employees=row.employees, active=True)
            partner.contacts = [Contact(name=name, email=email, role=role, language=row.language)
                                for role, email, name in row.contacts()]
            session.add(partner)
        elif _update_partner(partner, row):
            changed.add(key)
        imported[key] = partner
    session.flush()  # new partners get their ids, which their members point to
    for row in rows:
        key = row.name.casefold()
        group = (imported.get(row.group.casefold()) or stored.get(row.group.casefold())
                 if row.group else None)
        group_id = group.id if group is not None else None
        if imported[key].group_id != group_id:
            imported[key].group_id = group_id
            changed.add(key)
    session.flush()
    created = len(in_file - stored.keys())
    return ImportResult(created=created, updated=len(changed & stored.keys()),
                        unchanged=len(rows) - created - len(changed & stored.keys()),
                        warnings=warnings)


def _update_partner(partner: Partner, row: PartnerRow) -> bool:
    """Bring a stored partner in line with its CSV line; True if anything changed."""
    changed = False
    for attribute, value in (("name", row.name), ("kind", row.kind),
                             ("joined_on", row.joined_on), ("employees", row.employees),
                             ("active", True)):
        if getattr(partner, attribute) != value:
            setattr(partner, attribute, value)
            changed = True
    existing, doubles = {}, []
    for contact in partner.contacts:
        key = (contact.role, contact.email.casefold())
        if key in existing:
            doubles.append(contact)
        else:
            existing[key] = contact
    for role, email, name in row.contacts():
        contact = existing.pop((role, email.casefold()), None)
        if contact is None:
            partner.contacts.append(Contact(name=name, email=email, role=role,
                                            language=row.language))
            changed = True
            continue
        for attribute, value in (("email", email), ("name", name), ("language", row.language)):
            if getattr(contact, attribute) != value:
                setattr(contact, attribute, value)
                changed = True
    for gone in [*existing.values(), *doubles]:
        partner.contacts.remove(gone)  # delete-orphan: the row is deleted at flush
        changed = True
    return changed
