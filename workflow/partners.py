"""Partners: the programme they belong to and the CSV import (all lines or none)."""
from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass
from datetime import date

from sqlalchemy import select

from workflow.errors import InvalidInput
from workflow.models import (PARTNER_KIND_LABELS, Contact, ContactRole, Partner, PartnerKind,
                             Programme)
from workflow.policy import ReportingPolicy
from workflow.uow import UnitOfWork

DEFAULT_PROGRAMME_SLUG = "nrw-vielfalt"
DEFAULT_PROGRAMME_NAME = "Erfolgsfaktor Interkulturelle Öffnung – NRW stärkt Vielfalt!"
REQUIRED_COLUMNS = ("name", "kind", "contact_name", "contact_email", "deputy_email", "head_name",
                    "head_email", "language", "joined_on")
EMAIL = re.compile(r"^[^@\s<>,;\"']+@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9-]+)+$")
KINDS = {**{k.value: k for k in PartnerKind},
         **{label.casefold(): kind for kind, label in PARTNER_KIND_LABELS.items()}}
MAX_NAME = 300


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


@dataclass
class ImportResult:
    created: int
    updated: int


def parse_partner_csv(text: str) -> list[PartnerRow]:
    """Validate every line; raise InvalidInput listing each bad line by its number."""
    if text.startswith("\ufeff"):
        text = text[1:]
    try:
        dialect = csv.Sniffer().sniff(text.split("\n", 1)[0], delimiters=",;\t")
    except csv.Error:
        dialect = csv.excel
    reader = csv.DictReader(io.StringIO(text), dialect=dialect)
    header = [h.strip().lower() for h in (reader.fieldnames or [])]
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    if missing:
        raise InvalidInput(f"Der CSV-Datei fehlen Spalten: {', '.join(missing)} "
                           f"(Zeile 1: {', '.join(header) or 'leer'}).")
    reader.fieldnames = header
    rows, problems, seen = [], [], {}
    for record in reader:
        line = reader.line_num
        values = {k: (v or "").strip() for k, v in record.items() if k is not None}
        if None in record:
            problems.append(f"Zeile {line}: mehr Felder als Spalten")
            continue
        if not any(values.values()):
            continue
        errors = []
        name = values.get("name", "")
        if not name:
            errors.append("Name fehlt")
        elif len(name) > MAX_NAME:
            errors.append(f"Name länger als {MAX_NAME} Zeichen")
        elif name.casefold() in seen:
            errors.append(f"Name doppelt (schon in Zeile {seen[name.casefold()]})")
        kind = KINDS.get(values.get("kind", "").casefold())
        if kind is None:
            errors.append(f"unbekannte Art '{values.get('kind', '')}' (erlaubt: "
                          f"{', '.join(PARTNER_KIND_LABELS.values())})")
        for column in ("contact_email", "deputy_email", "head_email"):
            email = values.get(column, "")
            if (email or column == "contact_email") and not EMAIL.match(email):
                errors.append(f"{column}: ungültige E-Mail-Adresse '{email}'")
        language = values.get("language", "").lower() or "de"
        if language not in ("de", "en"):
            errors.append(f"language: '{language}' (erlaubt: de, en)")
        joined_on = None
        if values.get("joined_on"):
            try:
                joined_on = date.fromisoformat(values["joined_on"])
            except ValueError:
                errors.append(f"joined_on: '{values['joined_on']}' ist kein Datum (JJJJ-MM-TT)")
        employees = None
        if values.get("employees"):
            try:
                employees = int(values["employees"].replace(".", "").replace("_", ""))
                if employees < 0:
                    raise ValueError
            except ValueError:
                errors.append(f"employees: '{values['employees']}' ist keine Anzahl")
        if errors:
            problems.append(f"Zeile {line}: " + "; ".join(errors))
            continue
        seen[name.casefold()] = line
        rows.append(PartnerRow(line, name, kind, values.get("contact_name", ""),
                               values["contact_email"], values.get("deputy_email", ""),
                               values.get("head_name", ""), values.get("head_email", ""),
                               language, joined_on, employees, values.get("group", "")))
    if not problems and not rows:
        problems.append("die Datei enthält keine Partner")
    for row in rows:
        if row.group and row.group.casefold() == row.name.casefold():
            problems.append(f"Zeile {row.line}: ein Partner kann nicht seine eigene Gruppe sein")
    if problems:
        raise InvalidInput("Import abgebrochen, nichts wurde gespeichert:", problems)
    return rows


def import_partners(uow: UnitOfWork, programme: Programme, text: str) -> ImportResult:
    """Create or update partners and their contacts from CSV text; any bad line imports nothing."""
    rows = parse_partner_csv(text)
    session = uow.session
    existing = {p.name.casefold(): p for p in session.scalars(
        select(Partner).where(Partner.programme_id == programme.id))}
    created = updated = 0
    by_name = {}
    for row in rows:
        partner = existing.get(row.name.casefold())
        if partner is None:
            partner = Partner(programme_id=programme.id, name=row.name)
            session.add(partner)
            created += 1
        else:
            updated += 1
            partner.contacts.clear()
        partner.kind = row.kind
        partner.joined_on = row.joined_on
        partner.employees = row.employees
        partner.active = True
        partner.contacts.append(Contact(name=row.contact_name, email=row.contact_email,
                                        role=ContactRole.REPORTING, language=row.language))
        if row.deputy_email:
            partner.contacts.append(Contact(name="", email=row.deputy_email,
                                            role=ContactRole.DEPUTY, language=row.language))
        if row.head_email:
            partner.contacts.append(Contact(name=row.head_name, email=row.head_email,
                                            role=ContactRole.HEAD, language=row.language))
        by_name[row.name.casefold()] = partner
    session.flush()
    problems = []
    for row in rows:
        if not row.group:
            by_name[row.name.casefold()].group_id = None
            continue
        group = by_name.get(row.group.casefold()) or existing.get(row.group.casefold())
        if group is None:
            problems.append(f"Zeile {row.line}: Gruppe '{row.group}' ist kein bekannter Partner")
        else:
            by_name[row.name.casefold()].group_id = group.id
    if problems:
        raise InvalidInput("Import abgebrochen, nichts wurde gespeichert:", problems)
    session.flush()
    return ImportResult(created, updated)
