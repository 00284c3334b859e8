"""Importing partners again and again (SQLite and PostgreSQL); the scheduler opening their year."""
from __future__ import annotations

import logging
from contextlib import contextmanager
from datetime import date

import pytest
from sqlalchemy import event, func, select

from reportcycles.cli import main
from tests.integration.conftest import berlin
from tests.support.report import load_shipped_template
from tests.support.servers import ROOT
from workflow.cycles import open_due_cycles
from workflow.errors import InvalidInput
from workflow.models import (Contact, ContactRole, Cycle, MemberPart, Notification, Partner,
                             Programme, Submission)
from workflow.partners import ensure_programme, import_partners

DEMO_CSV = ROOT / "reportcycles" / "data" / "demo_partners.csv"
HEADER = ("name,kind,contact_name,contact_email,deputy_email,head_name,head_email,language,"
          "joined_on,employees,group")
GROUP_CSV = "\n".join([
    HEADER,
    "Kooperation Ruhr,Kooperation,Nesrin Aksoy,berichte@koop.example.org,,,,de,2013-07-09,,",
    "Stadt Bochum,Kommune,Derya Şahin,integration@bochum.example.org,"
    "vertretung@bochum.example.org,OB Bochum,leitung@bochum.example.org,de,2013-07-09,6500,"
    "Kooperation Ruhr",
    "Stadt Herne,Kommune,Ebru Koç,integration@herne.example.org,,,,de,2013-07-09,,"
    "Kooperation Ruhr",
    '"Verein ""Vielfalt"" e.V.",Verband,Kim Berg,berichte@vielfalt.example.org,,,,en,,,',
]) + "\n"


@contextmanager
def statements(database):
    """The SQL verbs (SELECT, INSERT, …) the block sends to the database."""
    seen = []

    def record(conn, cursor, statement, parameters, context, executemany):
        verb = statement.lstrip().split(None, 1)[0].upper()
        if verb not in ("BEGIN", "SAVEPOINT", "RELEASE"):
            seen.append(verb)

    event.listen(database.engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(database.engine, "before_cursor_execute", record)


def run_import(services, text, slug="nrw-vielfalt"):
    with services.database.unit_of_work() as uow:
        programme = ensure_programme(uow, slug=slug)
        result = import_partners(uow, programme, text)
        uow.commit()
    return result


def stored(services):
    """Every partner and contact row, ids included."""
    with services.database.unit_of_work() as uow:
        partners = uow.session.execute(select(
            Partner.id, Partner.name, Partner.kind, Partner.joined_on, Partner.employees,
            Partner.active, Partner.group_id).order_by(Partner.id)).all()
        contacts = uow.session.execute(select(
            Contact.id, Contact.partner_id, Contact.role, Contact.email, Contact.name,
            Contact.language).order_by(Contact.id)).all()
    return partners, contacts


def contacts_of(services, name):
    with services.database.unit_of_work() as uow:
        return {(c.role, c.email): (c.id, c.name, c.language) for c in uow.session.scalars(
            select(Contact).join(Partner).where(Partner.name == name))}


def test_reimporting_the_same_file_changes_nothing(services):
    text = DEMO_CSV.read_text(encoding="utf-8")
    first = run_import(services, text)
    assert (first.created, first.updated, first.unchanged) == (38, 0, 0)
    before = stored(services)
    with services.database.unit_of_work() as uow:
        programme = ensure_programme(uow)
        with statements(services.database) as sent:
            again = import_partners(uow, programme, text)
            uow.commit()
    assert (again.created, again.updated, again.unchanged) == (0, 0, 38)
    assert again.warnings == []
    # Nothing written, and partners and contacts were read with one query each.
    assert [verb for verb in sent if verb != "COMMIT"] == ["SELECT", "SELECT"]
    assert stored(services) == before


def test_a_changed_contact_email_updates_the_partner_in_place(services):
    run_import(services, GROUP_CSV)
    partners_before, _ = stored(services)
    bochum, herne = contacts_of(services, "Stadt Bochum"), contacts_of(services, "Stadt Herne")
    changed = (GROUP_CSV.replace("integration@bochum.example.org", "vielfalt@bochum.example.org")
               .replace("OB Bochum", "Oberbürgermeisterin Bochum")
               .replace(",vertretung@bochum.example.org,", ",,"))
    result = run_import(services, changed)
    assert (result.created, result.updated, result.unchanged) == (0, 1, 3)
    partners_after, _ = stored(services)
    assert partners_after == partners_before  # same rows, same ids, same groups
    now = contacts_of(services, "Stadt Bochum")
    assert set(now) == {(ContactRole.REPORTING, "vielfalt@bochum.example.org"),
                        (ContactRole.HEAD, "leitung@bochum.example.org")}
    head = (ContactRole.HEAD, "leitung@bochum.example.org")
    assert now[head] == (bochum[head][0], "Oberbürgermeisterin Bochum", "de")  # same row
    assert now[(ContactRole.REPORTING, "vielfalt@bochum.example.org")][0] not in {
        contact_id for contact_id, _, _ in bochum.values()}
    # The other partners' contacts kept their rows.
    assert contacts_of(services, "Stadt Herne") == herne
    assert run_import(services, changed).unchanged == 4


def test_changing_only_the_case_of_an_address_keeps_the_contact(services):
    run_import(services, GROUP_CSV)
    before = contacts_of(services, "Stadt Herne")
    result = run_import(services, GROUP_CSV.replace("integration@herne", "Integration@Herne"))
    assert result.updated == 1
    after = contacts_of(services, "Stadt Herne")
    assert list(after) == [(ContactRole.REPORTING, "Integration@Herne.example.org")]
    assert [v[0] for v in after.values()] == [v[0] for v in before.values()]


def test_a_group_change_and_a_reactivated_partner_count_as_updates(services):
    run_import(services, GROUP_CSV)
    with services.database.unit_of_work() as uow:
        uow.session.scalars(select(Partner).where(Partner.name == "Stadt Bochum")).one() \
            .active = False
        uow.commit()
    result = run_import(services, GROUP_CSV.replace(",,Kooperation Ruhr\n", ",,\n"))
    assert (result.created, result.updated, result.unchanged) == (0, 2, 2)
    with services.database.unit_of_work() as uow:
        rows = dict(uow.session.execute(select(Partner.name, Partner.group_id)).all())
        assert rows["Stadt Herne"] is None and rows["Stadt Bochum"] is not None
        assert all(uow.session.scalars(select(Partner.active)))


def test_a_group_loop_through_a_stored_partner_is_refused_and_nothing_is_written(services):
    run_import(services, GROUP_CSV)
    before = stored(services)
    loop = "\n".join([HEADER, "Kooperation Ruhr,Kooperation,Nesrin Aksoy,berichte@koop.example.org"
                      ",,,,de,2013-07-09,,Stadt Bochum",
                      "Neuer Verein,Verband,Kim,neu@example.org,,,,de,,,"]) + "\n"
    with pytest.raises(InvalidInput) as caught:
        run_import(services, loop)
    assert caught.value.problems == [
        "Zeile 2: Gruppen im Kreis ('Kooperation Ruhr' → 'Stadt Bochum' → 'Kooperation Ruhr'); "
        "ein Gruppenpartner kann nicht selbst Mitglied einer Gruppe sein"]
    assert stored(services) == before  # not even the new partner of line 3


def test_a_member_of_a_stored_member_is_refused_naming_the_line(services):
    run_import(services, GROUP_CSV)
    nested = "\n".join([HEADER, "Bezirk Wattenscheid,Kommune,Kim,w@example.org,,,,de,,,"
                                "Stadt Bochum"]) + "\n"
    with pytest.raises(InvalidInput) as caught:
        run_import(services, nested)
    assert caught.value.problems == [
        "bereits gespeichert: 'Stadt Bochum' ist Mitglied von 'Kooperation Ruhr' (bereits "
        "gespeichert) und hat selbst Mitglieder: 'Bezirk Wattenscheid' (Zeile 2); Mitglieder "
        "einer Gruppe können keine eigenen Mitglieder haben"]
    with services.database.unit_of_work() as uow:
        assert uow.session.scalar(select(func.count()).select_from(Partner)) == 4


def test_one_reporting_address_for_several_partners_is_imported_with_a_warning(services):
    run_import(services, GROUP_CSV)
    shared = "\n".join([HEADER, "Neuer Verein,Verband,Kim,Berichte@Koop.example.org,,,,de,,,",
                        "Zweiter Verein,Verband,Jo,zwei@example.org,,,,de,,,",
                        "Dritter Verein,Verband,Al,zwei@example.org,,,,de,,,"]) + "\n"
    result = run_import(services, shared)
    assert result.created == 3
    assert result.warnings == [
        "Zeile 2: die E-Mail-Adresse Berichte@Koop.example.org ist Berichtskontakt mehrerer "
        "Partner ('Kooperation Ruhr' (bereits gespeichert), 'Neuer Verein'); sie erhält die Mails "
        "aller dieser Partner.",
        "Zeilen 3, 4: die E-Mail-Adresse zwei@example.org ist Berichtskontakt mehrerer Partner "
        "('Zweiter Verein', 'Dritter Verein'); sie erhält die Mails aller dieser Partner."]


# --- the scheduler opening the year -----------------------------------------------------------

def seed(services, slug, text, *, template=True):
    with services.database.unit_of_work() as uow:
        programme = ensure_programme(uow, slug=slug, name=slug,
                                     coordinator_emails=("koordination@example.org",))
        import_partners(uow, programme, text)
        if template:
            load_shipped_template(uow, programme)
        uow.commit()
        return programme.id


def cycles_by_programme(services):
    with services.database.unit_of_work() as uow:
        return dict(uow.session.execute(select(Programme.slug, func.count(Cycle.id))
                                        .outerjoin(Cycle).group_by(Programme.slug)).all())


def test_the_scheduler_opens_the_year_of_a_group_and_its_members(services):
    seed(services, "gruppe", GROUP_CSV)
    with services.database.unit_of_work() as uow:
        opened = open_due_cycles(uow, berlin(date(2027, 2, 1), 8, 15))
        uow.commit()
        assert [c.year for c in opened] == [2027]
        # The group and the Verein report; the two cities through their group.
        assert uow.session.scalar(select(func.count()).select_from(Submission)) == 2
        assert uow.session.scalar(select(func.count()).select_from(MemberPart)) == 2


def test_active_members_of_an_inactive_group_do_not_stop_the_scheduler(services):
    members_only = seed(services, "nur-mitglieder", GROUP_CSV)
    seed(services, "andere", GROUP_CSV.replace("example.org", "example.net"))
    with services.database.unit_of_work() as uow:
        for partner in uow.session.scalars(select(Partner).where(
                Partner.programme_id == members_only, Partner.group_id.is_(None))):
            partner.active = False  # left are the two cities, which report through the group
        uow.commit()
    with services.database.unit_of_work() as uow:
        opened = open_due_cycles(uow, berlin(date(2027, 2, 1), 8, 15))
        uow.commit()
    assert len(opened) == 1
    assert cycles_by_programme(services) == {"nur-mitglieder": 0, "andere": 1}


def test_a_programme_that_cannot_open_its_year_does_not_stop_the_others_or_the_sweep(
        services, smtp, caplog):
    from tasks.scheduler import tick
    seed(services, "ohne-vorlage", GROUP_CSV, template=False)  # first: its refusal comes first
    seed(services, "mit-vorlage", GROUP_CSV.replace("example.org", "example.net"))
    with caplog.at_level(logging.WARNING, logger="workflow.cycles"):
        tick(services, berlin(date(2027, 2, 1), 8, 15))
    assert cycles_by_programme(services) == {"ohne-vorlage": 0, "mit-vorlage": 1}
    assert any("ohne-vorlage" in r.getMessage() and "keine Berichtsvorlage" in r.getMessage()
               for r in caplog.records)
    recipients = sorted(to for m in smtp[1].messages for to in m["envelope_to"])
    assert "berichte@koop.example.net" in recipients
    assert not any(to.endswith("example.org") for to in recipients)
    with services.database.unit_of_work() as uow:
        assert uow.session.scalar(select(func.count()).select_from(Notification)
                                  .where(Notification.status == "sent")) > 0


# --- the command line ------------------------------------------------------------------------

@pytest.fixture
def cli_env(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    for key in ("SMTP_URL", "SMTP_HOST", "COORDINATOR_EMAILS", "SECRET_KEY"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'cli.sqlite'}")
    monkeypatch.setenv("INSTANCE_PATH", str(tmp_path / "instance"))
    monkeypatch.setenv("CELERY_BROKER_URL", "memory://")
    return tmp_path


def test_demo_runs_twice_and_keeps_the_data_of_the_first_run(cli_env, capsys):
    from workflow.uow import Database

    assert main(["demo"]) == 0
    first = capsys.readouterr().out
    assert "38 Partner angelegt" in first and "Zyklus 2027 geöffnet" in first
    database = Database(f"sqlite:///{cli_env / 'cli.sqlite'}")

    def everything():
        with database.unit_of_work() as uow:
            return [uow.session.execute(select(*table.__table__.c).order_by(table.id)).all()
                    for table in (Partner, Contact, Cycle, Submission, MemberPart, Notification)]

    try:
        before = everything()
        assert main(["demo"]) == 0
        second = capsys.readouterr().out
        assert "früherer Läufe bleiben erhalten" in second
        assert "0 Partner angelegt, 0 aktualisiert, 38 unverändert" in second
        assert "besteht schon" in second
        assert everything() == before
    finally:
        database.dispose()


def test_partners_import_reads_excel_windows_1252_and_says_what_happened(cli_env, capsys):
    text = "\n".join([HEADER.replace(",", ";"),
                      '"Verein ""Vielfalt"" Münster";Verband;Jürgen Weiß;berichte@example.org;;;;'
                      'de;;;',
                      "Stadt Jülich;Kommune;Anna Möller;berichte@example.org;;;;de;;;"]) + "\r\n"
    path = cli_env / "partner.csv"
    path.write_bytes(text.encode("cp1252"))
    assert main(["init"]) == 0
    capsys.readouterr()
    assert main(["partners", "import", str(path)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out == [
        "Hinweis: Datei war nicht UTF-8; als Windows-1252 gelesen.",
        "2 Partner angelegt, 0 aktualisiert, 0 unverändert.",
        "Warnung: Zeilen 2, 3: die E-Mail-Adresse berichte@example.org ist Berichtskontakt "
        "mehrerer Partner ('Verein \"Vielfalt\" Münster', 'Stadt Jülich'); sie erhält die Mails "
        "aller dieser Partner."]
    assert main(["partners", "import", str(path)]) == 0
    assert "0 Partner angelegt, 0 aktualisiert, 2 unverändert – nichts geändert." in \
        capsys.readouterr().out


def test_partners_import_refuses_a_group_loop_naming_the_lines(cli_env, capsys):
    path = cli_env / "schleife.csv"
    path.write_text("\n".join([HEADER, "A,Verband,Kim,a@example.org,,,,de,,,B",
                               "B,Verband,Jo,b@example.org,,,,de,,,A"]) + "\n", encoding="utf-8")
    assert main(["init"]) == 0
    assert main(["partners", "import", str(path)]) == 2
    err = capsys.readouterr().err
    assert "nichts wurde gespeichert" in err
    assert "Zeilen 2, 3: Gruppen im Kreis ('A' → 'B' → 'A')" in err
