"""The `reportcycles` command line: thin adapters over the use cases in workflow/."""
from __future__ import annotations

import argparse
import json
import logging
import sys
from datetime import date, datetime, time
from pathlib import Path
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.exc import OperationalError

from infra.logs import configure_logging
from infra.settings import ConfigError, Settings
from workflow.errors import DomainError, InvalidInput

DATA = Path(__file__).resolve().parent / "data"
DEMO_CSV = DATA / "demo_partners.csv"
DEMO_TEMPLATE = DATA / "report_templates" / "nrw-vielfalt-2027.json"


FIRST_YEAR, LAST_YEAR = 2000, 2100  # the reporting years this service plans for
MAX_ID = 2**31 - 1  # the database's integer ids


def _parse_date(value: str) -> date:
    try:
        day = date.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{value}' ist kein Datum (JJJJ-MM-TT)") from None
    if not FIRST_YEAR <= day.year <= LAST_YEAR:
        raise argparse.ArgumentTypeError(f"'{value}' liegt nicht zwischen {FIRST_YEAR} und "
                                         f"{LAST_YEAR}")
    return day


def _year(value: str) -> int:
    try:
        year = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{value}' ist keine Jahreszahl") from None
    if not FIRST_YEAR <= year <= LAST_YEAR:
        raise argparse.ArgumentTypeError(f"{year} liegt nicht zwischen {FIRST_YEAR} und "
                                         f"{LAST_YEAR}")
    return year


def _id(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{value}' ist keine Nummer") from None
    if not 1 <= number <= MAX_ID:
        raise argparse.ArgumentTypeError(f"{value} ist keine gültige Nummer")
    return number


def _parse_instant(value: str, zone: ZoneInfo) -> datetime:
    """ISO-8601; a bare date means 09:00 local time, a time without offset means local time."""
    try:
        if len(value) == 10:
            instant = datetime.combine(date.fromisoformat(value), time(9, 0), tzinfo=zone)
        else:
            instant = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidInput(f"'{value}' ist kein Zeitpunkt nach ISO 8601 "
                           "(z. B. 2027-03-01T09:00 oder 2027-03-01T08:30+01:00).") from None
    if not FIRST_YEAR <= instant.year <= LAST_YEAR:
        raise InvalidInput(f"'{value}' liegt nicht zwischen {FIRST_YEAR} und {LAST_YEAR}.")
    return instant if instant.tzinfo else instant.replace(tzinfo=zone)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="reportcycles", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("init", help="create or migrate the database")
    demo = sub.add_parser("demo", help="load the demo partners and open the demo cycle")
    demo.add_argument("--year", type=_year, default=2027)
    demo.add_argument("--due", type=_parse_date)

    partners = sub.add_parser("partners", help="manage partners").add_subparsers(
        dest="partners_command", required=True)
    imp = partners.add_parser("import", help="import partners from a CSV file (all or nothing)")
    imp.add_argument("file", type=Path)

    cycles = sub.add_parser("cycles", help="open cycles and look at them").add_subparsers(
        dest="cycles_command", required=True)
    open_ = cycles.add_parser("open", help="open the cycle of a year")
    open_.add_argument("--year", type=_year, required=True)
    open_.add_argument("--opens", type=_parse_date)
    open_.add_argument("--due", type=_parse_date)
    status = cycles.add_parser("status", help="counts per state of a cycle")
    status.add_argument("year", type=_year)
    status.add_argument("--json", action="store_true")

    sweep = sub.add_parser("sweep", help="send what is due at an instant (default: now)")
    sweep.add_argument("--at", help="ISO-8601 instant; rehearse a year by stepping through it")
    sweep.add_argument("--dry-run", action="store_true", help="show what would be sent")
    sweep.add_argument("--json", action="store_true")

    preview = sub.add_parser("preview", help="every planned mail per partner, with dates")
    preview.add_argument("--year", type=_year, required=True)
    preview.add_argument("--partner")

    programme = sub.add_parser("programme", help="the programme and its coordinators") \
        .add_subparsers(dest="programme_command", required=True)
    programme.add_parser("show", help="name, coordinators (and where they come from), policy")
    coordinators = programme.add_parser("coordinators", help="set the coordinators' addresses")
    coordinators.add_argument("emails", nargs="+", metavar="EMAIL")

    policy = sub.add_parser("policy", help="the programme's reporting policy").add_subparsers(
        dest="policy_command", required=True)
    policy.add_parser("show", help="print the policy as TOML")
    policy_set = policy.add_parser("set", help="load the policy from a TOML or JSON file")
    policy_set.add_argument("file", type=Path)

    templates = sub.add_parser("templates", help="report templates").add_subparsers(
        dest="templates_command", required=True)
    load = templates.add_parser("load", help="load a report template (JSON) into the database")
    load.add_argument("file", type=Path, help="a JSON file, or the name of a bundled template: "
                      + ", ".join(sorted(p.stem for p in (DATA / "report_templates").glob("*.json"))))

    reports = sub.add_parser("reports", help="coordinators' decisions on reports").add_subparsers(
        dest="reports_command", required=True)
    ret = reports.add_parser("return", help="return a report for revision, with comments")
    ret.add_argument("--year", type=_year, required=True)
    ret.add_argument("--partner", required=True)
    ret.add_argument("--comment", default="", help="a general comment")
    ret.add_argument("--field", action="append", default=[], metavar="QUESTION=COMMENT")
    acc = reports.add_parser("accept", help="accept a submitted report")
    acc.add_argument("--year", type=_year, required=True)
    acc.add_argument("--partner", required=True)

    extensions = sub.add_parser("extensions", help="extension requests").add_subparsers(
        dest="extensions_command", required=True)
    extensions.add_parser("list", help="pending requests")
    decide = extensions.add_parser("decide", help="grant or refuse a request")
    decide.add_argument("request_id", type=_id)
    choice = decide.add_mutually_exclusive_group(required=True)
    choice.add_argument("--grant", action="store_true")
    choice.add_argument("--refuse", action="store_true")
    decide.add_argument("--due", type=_parse_date, help="another date than the one asked for")
    decide.add_argument("--comment", default="")

    users = sub.add_parser("users", help="coordinators' accounts (sign-in)").add_subparsers(
        dest="users_command", required=True)
    create = users.add_parser("create", help="create an account; prints a one-time link to set "
                              "its password (no password on the command line)")
    create.add_argument("email")
    create.add_argument("--role", required=True, choices=("admin", "coordinator", "viewer"))
    create.add_argument("--name", default="")
    create.add_argument("--language", choices=("de", "en"), default="de",
                        help="language of the account's mails")
    users.add_parser("list", help="every account with its role")
    user_link = users.add_parser("link", help="a new one-time link to set the password of an "
                                 "account (invitation lost, password forgotten)")
    user_link.add_argument("email")

    user_token = users.add_parser("token", help="a token for the read-only JSON API of an "
                                  "account (printed once; revoke it on the account's page)")
    user_token.add_argument("email")
    user_token.add_argument("--name", required=True, help="what the token is for")

    export = sub.add_parser("export", help="a cycle's reports, or its yearly summary, as a file")
    export.add_argument("--year", type=_year, required=True)
    export.add_argument("--summary", action="store_true",
                        help="the yearly summary across partners instead of a row per partner")
    export.add_argument("--format", choices=("xlsx", "csv"), default="xlsx")
    export.add_argument("--language", choices=("de", "en"), default="de")
    export.add_argument("--output", "-o", type=Path, required=True, metavar="FILE")

    contacts = sub.add_parser("contacts", help="data care for one contact").add_subparsers(
        dest="contacts_command", required=True)
    contact_data = contacts.add_parser("data", help="everything stored about a contact (JSON)")
    contact_data.add_argument("contact_id", type=_id)
    contact_erase = contacts.add_parser("erase", help="erase a contact; the history keeps a "
                                        "pseudonym")
    contact_erase.add_argument("contact_id", type=_id)
    sub.add_parser("retention", help="apply the programmes' retention rule now (the scheduler "
                   "does it every 6 hours)")

    sub.add_parser("relay", help="re-dispatch outbox rows a crash left behind")
    outbox = sub.add_parser("outbox", help="the outbox: what waits, what failed") \
        .add_subparsers(dest="outbox_command", required=True)
    outbox_status = outbox.add_parser("status", help="mails by status, a pause, failed mails")
    outbox_status.add_argument("--json", action="store_true")
    retry = outbox.add_parser("retry", help="put failed mails back in the outbox")
    retry.add_argument("ids", type=_id, nargs="*", metavar="ID", help="only these (default: all)")
    retry.add_argument("--year", type=_year, help="only this year's cycle")
    bounces = sub.add_parser("bounces", help="bounces that came back by mail") \
        .add_subparsers(dest="bounces_command", required=True)
    bounces.add_parser("fetch", help="read new bounces from BOUNCE_MAILDIR and mark the "
                       "contacts as bouncing")
    health = sub.add_parser("health", help="exit 0 if a worker or the scheduler is alive")
    health.add_argument("component", choices=("worker", "scheduler"))
    worker = sub.add_parser("worker", help="run a Celery worker")
    worker.add_argument("--concurrency", type=int, default=2)
    sub.add_parser("scheduler", help="run the scheduler (sweeps, cycle opening, relay)")
    serve = sub.add_parser("serve", help="serve the web UI")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    run = sub.add_parser("run", help="everything in one process on the embedded default")
    run.add_argument("--host", default="127.0.0.1")
    run.add_argument("--port", type=int, default=8000)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    for argument in argv:
        try:
            argument.encode("utf-8")
        except UnicodeEncodeError:
            print("Fehler: ein Argument ist kein gültiger Text (UTF-8).", file=sys.stderr)
            return 2
    args = build_parser().parse_args(argv)
    configure_logging(logging.INFO if args.verbose or args.command in
                      ("worker", "scheduler", "serve", "run") else logging.WARNING)
    try:
        settings = Settings.from_env()
        if args.command in ("worker",):
            settings.require_smtp()
    except ConfigError as exc:
        print(f"Fehler in der Konfiguration: {exc}", file=sys.stderr)
        return 2
    try:
        return COMMANDS[args.command](args, settings) or 0
    except DomainError as exc:
        print(f"Fehler: {exc}", file=sys.stderr)
        return 2
    except OperationalError as exc:
        print(f"Datenbankfehler: {exc.orig}. Wurde `reportcycles init` ausgeführt?",
              file=sys.stderr)
        return 3


def _services(settings: Settings, dispatch: str | None = None):
    from reportcycles.bootstrap import build
    return build(settings, dispatch or ("inline" if settings.embedded else "celery"))


def cmd_init(args, settings):
    from infra.migrate import upgrade
    upgrade(settings.database_url)
    print(f"Datenbank bereit: {_redact(settings.database_url)}")


def cmd_demo(args, settings):
    """Idempotent: a second run keeps everything earlier runs created (drafts, mails, links)."""
    from infra.migrate import upgrade
    from workflow.cycles import open_cycle
    from workflow.models import Cycle, Programme, utcnow
    from workflow.partners import DEFAULT_PROGRAMME_SLUG, ensure_programme, import_partners
    from workflow.policy import END_OF_DAY, ReportingPolicy
    from workflow.report_templates import load_template_file
    from workflow.users import ensure_demo_account

    upgrade(settings.database_url)
    services = _services(settings, "none")
    now = utcnow()
    with services.database.unit_of_work() as uow:
        earlier = uow.session.scalar(select(Programme.id).where(
            Programme.slug == DEFAULT_PROGRAMME_SLUG)) is not None
        # The demo sends at any hour on any day, so that `make run` shows mail at once.
        policy = ReportingPolicy(window_start=time(0, 0), window_end=END_OF_DAY,
                                 window_working_days_only=False, auto_open=False)
        programme = ensure_programme(uow, policy=policy,
                                     coordinator_emails=settings.coordinator_emails)
        result = import_partners(uow, programme, DEMO_CSV.read_text(encoding="utf-8"))
        load_template_file(uow, programme, DEMO_TEMPLATE)
        account, account_created = ensure_demo_account(uow, settings.coordinator_emails[0],
                                                       now=now)
        cycle = uow.session.scalars(select(Cycle).where(Cycle.programme_id == programme.id,
                                                        Cycle.year == args.year)).first()
        opened = cycle is None
        if opened:
            today = now.astimezone(ZoneInfo(settings.timezone)).date()
            due = args.due or date(args.year, 4, 30)
            cycle = open_cycle(uow, programme, args.year, now=now,
                               opens_on=min(today, due.replace(day=1)), due_on=due, actor="demo")
        uow.commit()
    partners = (f"{result.created} Partner angelegt, {result.updated} aktualisiert, "
                f"{result.unchanged} unverändert")
    if earlier:
        print(f"Demo-Daten früherer Läufe bleiben erhalten ({_redact(settings.database_url)}): "
              f"{partners}.")
    else:
        print(f"Demo: {partners}.")
    if opened:
        print(f"Zyklus {cycle.year} geöffnet (Frist {cycle.due_on:%d.%m.%Y}); die Einladungen "
              "gehen beim ersten Sweep hinaus.")
    else:
        print(f"Zyklus {cycle.year} besteht schon (Frist {cycle.due_on:%d.%m.%Y}) und bleibt, "
              "wie er ist: Entwürfe, Einreichungen und Mails sind noch da.")
    if account_created:
        print(f"Koordinationskonto {account.email} (admin) angelegt; `reportcycles run` zeigt "
              "einen Einmal-Link zum Anmelden.")


def cmd_partners(args, settings):
    from workflow.models import utcnow
    from workflow.partner_admin import import_partner_csv
    from workflow.partners import decode_partner_csv, ensure_programme
    try:
        data = args.file.read_bytes()
    except FileNotFoundError:
        raise InvalidInput(f"Datei nicht gefunden: {args.file}") from None
    except OSError as exc:
        raise InvalidInput(f"{args.file} lässt sich nicht lesen: {exc.strerror}.") from None
    text, notes = decode_partner_csv(data)
    for note in notes:  # before the import, so that they stand next to any error too
        print(f"Hinweis: {note}")
    services = _services(settings, "none")
    with services.database.unit_of_work() as uow:
        programme = ensure_programme(uow, coordinator_emails=settings.coordinator_emails)
        result = import_partner_csv(uow, programme, text, now=utcnow(), actor="cli")
        uow.commit()
    print(f"{result.created} Partner angelegt, {result.updated} aktualisiert, "
          f"{result.unchanged} unverändert" +
          (" – nichts geändert." if not result.created and not result.updated else "."))
    for warning in result.warnings:
        print(f"Warnung: {warning}")


def cmd_cycles(args, settings):
    from workflow.cycles import (cycle_status, find_cycle, get_programme, open_cycle,
                                 template_carried_from)
    from workflow.models import utcnow
    services = _services(settings)
    with services.database.unit_of_work() as uow:
        programme = get_programme(uow)
        if args.cycles_command == "open":
            cycle = open_cycle(uow, programme, args.year, now=utcnow(), opens_on=args.opens,
                               due_on=args.due, actor="cli")
            carried_from = template_carried_from(uow, cycle)
            uow.commit()
            print(f"Zyklus {cycle.year} geöffnet: {cycle.opens_on:%d.%m.%Y} bis "
                  f"{cycle.due_on:%d.%m.%Y}.")
            if carried_from:
                print(f"Hinweis: Für {cycle.year} gab es keine eigene Berichtsvorlage; die Vorlage "
                      f"von {carried_from} wurde übernommen. Eine neue Version lädt "
                      "`reportcycles templates load DATEI.json`.")
            return
        status = cycle_status(uow, find_cycle(uow, programme, args.year))
    if args.json:
        print(json.dumps(status.to_dict(), ensure_ascii=False, indent=2))
        return
    print(f"Zyklus {status.year} ({status.state}): {status.opens_on:%d.%m.%Y} – Frist "
          f"{status.effective_due_on:%d.%m.%Y}, {status.partners} Partner, "
          f"{status.submitted_share:.0%} eingereicht")
    for state, count in status.by_state.items():
        print(f"  {state:<10} {count:>6}")
    if status.escalation_levels:
        print("  Eskalationsstufen: " + ", ".join(
            f"{level}: {count}" for level, count in status.escalation_levels.items()))
    print("  Mails: " + ", ".join(f"{k} {v}" for k, v in status.notifications.items()))


def cmd_sweep(args, settings):
    from workflow.models import utcnow
    from workflow.sweep import describe_mails, sweep
    services = _services(settings)
    zone = ZoneInfo(settings.timezone)
    now = _parse_instant(args.at, zone) if args.at is not None else utcnow()
    with services.database.unit_of_work() as uow:
        result = sweep(uow, now, dry_run=args.dry_run)
        if not args.dry_run:
            uow.commit()
    with services.database.unit_of_work() as uow:
        describe_mails(uow, result)
    if args.json:
        print(json.dumps(result.to_dict(), ensure_ascii=False, indent=2))
        return
    local = now.astimezone(zone)
    verb = "würde senden" if args.dry_run else "sendet"
    print(f"Sweep {local:%d.%m.%Y %H:%M %Z}: {verb} {result.count('send')}, übersprungen "
          f"{result.count('skip')}, storniert {result.count('cancel')}, eskaliert {result.escalated}")
    for slug in result.outside_window:
        print(f"  {slug}: außerhalb des Versandfensters – fällige Mails warten auf das nächste.")
    for mail in result.mails:
        print(f"  {mail.action:<6} {mail.rung:<16} {mail.partner or '(Koordination)'}")


def cmd_preview(args, settings):
    from workflow.cycles import find_cycle, get_programme, policy_of
    from workflow.models import Notification, Partner, Submission
    from workflow.partners import name_contains
    services = _services(settings, "none")
    with services.database.unit_of_work() as uow:
        programme = get_programme(uow)
        cycle = find_cycle(uow, programme, args.year)
        zone = policy_of(programme).zone
        query = (select(Partner.name, Notification.rung, Notification.email, Notification.due_at,
                        Notification.status, Notification.sent_at)
                 .join(Submission, Submission.id == Notification.submission_id, isouter=True)
                 .join(Partner, Partner.id == Submission.partner_id, isouter=True)
                 .where(Notification.cycle_id == cycle.id)
                 .order_by(Partner.name.nullsfirst(), Notification.due_at, Notification.id))
        if args.partner:
            query = query.where(name_contains(_partner_name(args.partner)))
        rows = uow.session.execute(query).all()
    if not rows:
        raise InvalidInput(f"Kein Partner passt zu '{args.partner}'.")
    current = object()
    for row in rows:
        if row.name != current:
            current = row.name
            print(f"\n{row.name or 'Koordination (ganzer Zyklus)'}")
        when = row.due_at.astimezone(zone)
        print(f"  {when:%a %d.%m.%Y %H:%M}  {row.rung:<18} {row.email:<22} {row.status}")


def cmd_programme(args, settings):
    from workflow.cycles import get_programme, policy_of
    from workflow.models import utcnow
    from workflow.programmes import coordinators_of, set_coordinators
    services = _services(settings, "none")
    with services.database.unit_of_work() as uow:
        programme = get_programme(uow)
        if args.programme_command == "coordinators":
            emails = set_coordinators(uow, programme, args.emails, now=utcnow(), actor="cli")
            name = programme.name
            uow.commit()
            print(f"Koordination von {name}: {', '.join(emails)}")
            return
        coordinators = coordinators_of(uow, programme, settings.coordinator_emails)
        policy, name = policy_of(programme), programme.name
    if coordinators.source == "environment":
        origin = ("aus COORDINATOR_EMAILS, solange das Programm keine eigene Liste hat"
                  if settings.coordinator_emails_source == "COORDINATOR_EMAILS"
                  else "Voreinstellung, COORDINATOR_EMAILS ist nicht gesetzt")
    elif coordinators.changed_at:
        origin = (f"im Programm gespeichert, zuletzt geändert am "
                  f"{coordinators.changed_at.astimezone(policy.zone):%d.%m.%Y %H:%M} von "
                  f"{coordinators.changed_by}")
    else:
        origin = ("im Programm gespeichert, beim Anlegen aus COORDINATOR_EMAILS übernommen; "
                  "ändern mit `reportcycles programme coordinators ADRESSE …`")
    print(f"Programm:     {name}\n"
          f"Koordination: {', '.join(coordinators.emails)}\n"
          f"  Herkunft:   {origin}\n")
    print(_as_toml(policy.to_dict()))


def cmd_policy(args, settings):
    import tomllib

    from workflow.cycles import get_programme, policy_of, replace_policy
    from workflow.models import utcnow
    services = _services(settings, "none")
    with services.database.unit_of_work() as uow:
        programme = get_programme(uow)
        if args.policy_command == "show":
            print(_as_toml(policy_of(programme).to_dict()))
            return
        try:
            raw = args.file.read_text(encoding="utf-8")
            data = json.loads(raw) if args.file.suffix == ".json" else tomllib.loads(raw)
        except FileNotFoundError:
            raise InvalidInput(f"Datei nicht gefunden: {args.file}") from None
        except (tomllib.TOMLDecodeError, json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise InvalidInput(f"{args.file} ist kein gültiges TOML/JSON: {exc}") from None
        except OSError as exc:
            raise InvalidInput(f"{args.file} lässt sich nicht lesen: {exc.strerror or exc}") \
                from None
        replace_policy(uow, programme, data, now=utcnow(), actor="cli")
        uow.commit()
    print(f"Berichtsregel von {programme.name} gesetzt; gilt für Zyklen, die ab jetzt öffnen.")


def _as_toml(data: dict) -> str:
    lines, tables = [], []
    for key, value in data.items():
        if isinstance(value, list) and value and isinstance(value[0], dict):
            tables.extend((key, item) for item in value)
        elif value is None:
            lines.append(f"# {key}: not set")
        else:
            lines.append(f"{key} = {json.dumps(value, ensure_ascii=False)}")
    for key, item in tables:
        lines.append(f"\n[[{key}]]")
        lines.extend(f"{k} = {json.dumps(v, ensure_ascii=False)}" for k, v in item.items())
    return "\n".join(lines)


def cmd_templates(args, settings):
    from workflow.cycles import get_programme
    from workflow.report_templates import load_template_file
    bundled = DATA / "report_templates" / f"{args.file}.json"
    path = args.file if args.file.exists() or not bundled.exists() else bundled
    services = _services(settings, "none")
    with services.database.unit_of_work() as uow:
        row = load_template_file(uow, get_programme(uow), path)
        uow.commit()
        print(f"Berichtsvorlage {row.year} Version {row.version} geladen.")


def _partner_name(text: str) -> str:
    """A part of a partner's name as typed after --partner: no longer than a name can be."""
    from workflow.partners import MAX_NAME
    if len(text) > MAX_NAME:
        raise InvalidInput(f"Ein Partnername hat höchstens {MAX_NAME} Zeichen; "
                           f"--partner hat {len(text)}.")
    return text


def _submission_of(uow, year, partner_name):
    from workflow.cycles import find_cycle, get_programme
    from workflow.models import Partner, Submission
    from workflow.partners import name_contains
    cycle = find_cycle(uow, get_programme(uow), year)
    matches = uow.session.execute(
        select(Submission.id, Partner.name).join(Partner, Partner.id == Submission.partner_id)
        .where(Submission.cycle_id == cycle.id,
               name_contains(_partner_name(partner_name)))).all()
    exact = [m for m in matches if m.name.casefold() == partner_name.casefold()]
    matches = exact or matches
    if len(matches) != 1:
        names = ", ".join(m.name for m in matches[:10]) or "keiner"
        raise InvalidInput(f"'{partner_name}' passt zu {len(matches)} Partnern ({names}).")
    return matches[0].id


def cmd_reports(args, settings):
    from workflow.models import utcnow
    from workflow.review import accept_report, return_report
    services = _services(settings)
    with services.database.unit_of_work() as uow:
        submission_id = _submission_of(uow, args.year, args.partner)
        if args.reports_command == "accept":
            accept_report(uow, submission_id, now=utcnow(), actor="cli")
            uow.commit()
            print("Bericht angenommen.")
            return
        comments = {"_general": args.comment} if args.comment else {}
        for item in args.field:
            question, sep, text = item.partition("=")
            if not sep:
                raise InvalidInput(f"--field erwartet FRAGE=KOMMENTAR, nicht '{item}'.")
            comments[question.strip()] = text
        return_report(uow, submission_id, comments=comments, now=utcnow(), actor="cli")
        uow.commit()
    print("Bericht zur Überarbeitung zurückgegeben; der Partner wird benachrichtigt.")


def cmd_extensions(args, settings):
    from workflow.models import ExtensionRequest, Partner, Submission, utcnow
    from workflow.requests import decide_extension
    services = _services(settings)
    with services.database.unit_of_work() as uow:
        if args.extensions_command == "list":
            rows = uow.session.execute(
                select(ExtensionRequest.id, Partner.name, Submission.due_on,
                       ExtensionRequest.proposed_due, ExtensionRequest.reason)
                .join(Submission, Submission.id == ExtensionRequest.submission_id)
                .join(Partner, Partner.id == Submission.partner_id)
                .where(ExtensionRequest.status == "pending").order_by(ExtensionRequest.id)).all()
            for row in rows:
                print(f"{row.id:>5}  {row.name}: {row.due_on:%d.%m.%Y} → "
                      f"{row.proposed_due:%d.%m.%Y}  {row.reason}")
            if not rows:
                print("Keine offenen Anträge.")
            return
        decide_extension(uow, args.request_id, grant=args.grant, new_due=args.due,
                         comment=args.comment, now=utcnow(), actor="cli")
        uow.commit()
    print("Entscheidung gespeichert; der Partner wird benachrichtigt.")


def cmd_outbox(args, settings):
    from workflow.cycles import find_cycle, get_programme
    from workflow.delivery import outbox_state, retry_failed
    from workflow.models import utcnow
    services = _services(settings)
    with services.database.unit_of_work() as uow:
        if args.outbox_command == "retry":
            cycle_id = find_cycle(uow, get_programme(uow), args.year).id if args.year else None
            ids = retry_failed(uow, now=utcnow(), actor="cli", ids=args.ids, cycle_id=cycle_id)
            uow.commit()
            print(f"{len(ids)} fehlgeschlagene Mails wieder in den Postausgang gelegt."
                  if ids else "Keine fehlgeschlagenen Mails (mehr) – nichts zu tun.")
            return
        state = outbox_state(uow)
    if args.json:
        print(json.dumps({**vars(state), "paused_until": _iso(state.paused_until),
                          "paused_since": _iso(state.paused_since)}, ensure_ascii=False, indent=2))
        return
    print("Mails: " + (", ".join(f"{k} {v}" for k, v in state.by_status.items()) or "keine"))
    if state.handed_over:
        print(f"  davon an den Versand übergeben (noch planned): {state.handed_over}")
    if state.paused_until:
        print(f"Postausgang pausiert seit {state.paused_since:%d.%m.%Y %H:%M} UTC, nächster "
              f"Versuch {state.paused_until:%H:%M} UTC: {state.reason}")
    for failed in state.failed:
        print(f"  fehlgeschlagen {failed['id']:>7}  {failed['rung']:<18} "
              f"{failed['partner'] or '(Koordination)'}: {failed['error'][:120]}")
    if state.failed:
        print("Nach Behebung der Ursache: `reportcycles outbox retry` (oder einzelne IDs).")


def _iso(value):
    return value.isoformat() if value else None


def cmd_users(args, settings):
    from workflow.models import LinkPurpose, utcnow
    from workflow.api_tokens import issue_token
    from workflow.users import create_account, find_account, issue_link, list_accounts
    services = _services(settings, "none")
    with services.database.unit_of_work() as uow:
        if args.users_command == "list":
            accounts = list_accounts(uow)
            for account in accounts:
                access = "Passwort gesetzt" if account.has_password else "Einladung offen"
                print(f"{account.email:<40} {account.role.value:<12} {access:<17} "
                      f"{account.name}")
            if not accounts:
                print("Noch kein Konto. `reportcycles users create EMAIL --role admin` legt das "
                      "erste an.")
            return
        if args.users_command == "token":
            account = find_account(uow, args.email)
            if account is None or not account.active:
                raise InvalidInput(f"Kein aktives Konto für {args.email}. "
                                   "`reportcycles users list` zeigt alle.")
            issued = issue_token(uow, account.id, args.name, now=utcnow(), actor="cli")
            uow.commit()
            print(f"API-Token „{issued.view.name}“ für {account.email} (wird nur jetzt "
                  f"gezeigt):\n  {issued.token}\nAbfrage: curl -H 'Authorization: Bearer …' "
                  f"{settings.base_url}/api/v1/cycles")
            return
        if args.users_command == "create":
            account = create_account(uow, args.email, args.role, name=args.name,
                                     language=args.language, now=utcnow(), actor="cli")
        else:
            account = find_account(uow, args.email)
            if account is None:
                raise InvalidInput(f"Kein Konto für {args.email}. "
                                   "`reportcycles users list` zeigt alle.")
        link = issue_link(uow, account.id,
                          LinkPurpose.RESET if account.has_password else LinkPurpose.INVITE,
                          now=utcnow(), actor="cli")
        uow.commit()
    if args.users_command == "create":
        print(f"Konto {account.email} ({account.role.value}) angelegt.")
    until = link.expires_at.astimezone(ZoneInfo(settings.timezone))
    print(f"Einmal-Link zum Festlegen des Passworts, gültig bis {until:%d.%m.%Y %H:%M} "
          f"({settings.timezone}):\n  {settings.base_url}{link.path}\n"
          "Geben Sie ihn nur der Person selbst; `reportcycles users link EMAIL` erzeugt einen "
          "neuen.")


def cmd_export(args, settings):
    from infra.spreadsheets import csv_lines, write_xlsx
    from workflow.cycles import find_cycle, get_programme
    from workflow.exports import cycle_table, summary_table
    services = _services(settings, "none")
    make_table = summary_table if args.summary else cycle_table
    with services.database.unit_of_work() as uow:
        cycle = find_cycle(uow, get_programme(uow), args.year)
        table = make_table(uow, cycle.id, args.language)
        try:
            if args.format == "xlsx":
                with open(args.output, "wb") as file:
                    write_xlsx([table], file)
            else:
                with open(args.output, "w", encoding="utf-8", newline="") as file:
                    file.writelines(csv_lines(table, args.language))
        except OSError as exc:
            raise InvalidInput(f"{args.output} lässt sich nicht schreiben: "
                               f"{exc.strerror or exc}.") from None
    print(f"{args.output} geschrieben.")


def cmd_contacts(args, settings):
    from workflow.models import utcnow
    from workflow.retention import contact_data_json, erase_contact
    services = _services(settings, "none")
    with services.database.unit_of_work() as uow:
        if args.contacts_command == "data":
            print(contact_data_json(uow, args.contact_id))
            return
        erased = erase_contact(uow, args.contact_id, now=utcnow(), actor="cli")
        uow.commit()
    print(f"Kontakt {args.contact_id} gelöscht; die Historie nennt ihn „{erased.pseudonym}“ "
          f"({erased.events} Ereignisse, {erased.mails} E-Mails angepasst).")


def cmd_retention(args, settings):
    from tasks.scheduler import care_for_data
    for result in care_for_data(_services(settings, "none")):
        print(f"{result.programme}: {result.mails_blanked} E-Mail-Kopien geleert, "
              f"{result.links_deleted} Links gelöscht, {result.contacts_erased} Kontakte "
              "ausgeschiedener Partner gelöscht.")


def cmd_relay(args, settings):
    from tasks.scheduler import relay_outbox
    ids = relay_outbox(_services(settings))
    print(f"{len(ids)} Mails erneut übergeben.")


def cmd_bounces(args, settings):
    from infra.bounce_mailbox import fetch_configured
    if settings.bounce_maildir is None:
        raise InvalidInput("BOUNCE_MAILDIR ist nicht gesetzt: das Maildir, in das der Mailserver "
                           "die Rückläufer an BOUNCE_ADDRESS zustellt.")
    report = fetch_configured(_services(settings, "none"))
    if report.missing:
        print(f"{settings.bounce_maildir} gibt es (noch) nicht: es kam noch kein Rückläufer an.")
        return
    if report.busy:
        print("Ein anderer Prozess liest die Rückläufer gerade; nichts getan.")
        return
    for bounce in report.bounces:
        who = bounce.partner or "Koordination"
        roles = f" ({', '.join(bounce.roles)})" if bounce.roles else ""
        print(f"  Mail {bounce.notification_id} an {who}: {BOUNCE_RESULTS[bounce.result]}{roles}")
    print(f"Rückläufer: {len(report.bounces)} verbucht, {len(report.ignored)} nur verzögert "
          f"(ignoriert), {len(report.kept)} nicht verstanden.")
    for name, why in report.kept:
        print(f"  behalten (ungelesen, markiert): {name}: {why}")
    if report.waiting:
        print(f"{len(report.waiting)} warten auf die Datenbank und werden beim nächsten Lauf "
              "gelesen.")
        return 3


BOUNCE_RESULTS = {
    "marked": "Kontakt als unzustellbar markiert",
    "already_bouncing": "Kontakt war schon als unzustellbar markiert",
    "coordinator": "Adresse der Koordination unzustellbar (nur im Verlauf vermerkt)",
    "no_such_contact": "Adresse gehört zu keinem Kontakt (nur im Verlauf vermerkt)",
    "recorded_before": "schon früher verbucht",
    "not_hard": "nur vorläufig",
    "unknown_notification": "Mail nicht im Ledger",
}


WORKER_NAME = "reportcycles@{host}"


def cmd_worker(args, settings):
    from reportcycles.bootstrap import make_celery
    make_celery(settings).worker_main([
        "worker", "--loglevel=INFO", f"--concurrency={args.concurrency}", "--without-gossip",
        "--without-mingle", "-n", WORKER_NAME.format(host="%h")])


def cmd_scheduler(args, settings):
    from reportcycles.bootstrap import warn_when_no_mail_leaves
    from tasks.scheduler import make_scheduler
    warn_when_no_mail_leaves(settings)
    make_scheduler(_services(settings, "celery")).start()


def cmd_health(args, settings):
    """For container health checks: 0 alive, 1 not (with the reason on stderr)."""
    import socket
    if args.component == "scheduler":
        from tasks.scheduler import heartbeat_age
        age = heartbeat_age(settings)
        limit = 2 * max(settings.sweep_interval_seconds, settings.relay_interval_seconds) + 60
        if age is None or age > limit:
            print(f"Scheduler: kein Lebenszeichen seit {age or '–'} s (Grenze {limit} s)",
                  file=sys.stderr)
            return 1
        return 0
    from reportcycles.bootstrap import make_celery
    node = WORKER_NAME.format(host=socket.gethostname())
    replies = make_celery(settings).control.ping(destination=[node], timeout=5.0)
    if not replies:
        print(f"Worker {node} antwortet nicht.", file=sys.stderr)
        return 1
    return 0


def cmd_serve(args, settings):
    from reportcycles.bootstrap import warn_when_no_mail_leaves
    from web import create_app
    warn_when_no_mail_leaves(settings)
    create_app(settings=settings, services=_services(settings)).run(host=args.host,
                                                                    port=args.port)


def cmd_run(args, settings):
    from reportcycles.embedded import run_embedded
    run_embedded(settings, host=args.host, port=args.port)


def _redact(url: str) -> str:
    from sqlalchemy.engine import make_url
    return make_url(url).render_as_string(hide_password=True)


COMMANDS = {
    "init": cmd_init, "demo": cmd_demo, "partners": cmd_partners, "cycles": cmd_cycles,
    "sweep": cmd_sweep, "preview": cmd_preview, "programme": cmd_programme, "policy": cmd_policy,
    "templates": cmd_templates, "reports": cmd_reports, "extensions": cmd_extensions,
    "users": cmd_users, "relay": cmd_relay, "outbox": cmd_outbox, "bounces": cmd_bounces,
    "export": cmd_export, "contacts": cmd_contacts, "retention": cmd_retention,
    "health": cmd_health, "worker": cmd_worker, "scheduler": cmd_scheduler,
    "serve": cmd_serve, "run": cmd_run}

if __name__ == "__main__":
    sys.exit(main())
